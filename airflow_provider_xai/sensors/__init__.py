"""sensors of the xAI provider."""
