"""hooks of the xAI provider."""
