"""Facts every layer needs, in one leaf module (no imports: provider info reads it at discovery)."""

#: xAI's REST API root.
DEFAULT_BASE_URL = "https://api.x.ai/v1"
#: xAI's Management API root (collections, billing, keys), reached with a management key.
DEFAULT_MANAGEMENT_URL = "https://management-api.x.ai"
#: The model used when neither the task nor the connection names one.
DEFAULT_MODEL = "grok-4.3"
#: The environment variable read for the API key when the connection has none.
API_KEY_ENV = "XAI_API_KEY"
#: The environment variable read for the Management API key when the connection has none.
MANAGEMENT_KEY_ENV = "XAI_MANAGEMENT_KEY"
