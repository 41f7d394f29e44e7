"""TaskFlow decorators of the xAI provider."""
