"""triggers of the xAI provider."""
