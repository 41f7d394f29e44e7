"""operators of the xAI provider."""
