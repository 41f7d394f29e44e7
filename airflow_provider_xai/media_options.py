"""What xAI's image and video requests take (models, aspect ratios, resolutions, lengths), in
one leaf module with no imports: the operators check them at DAG parse, the request models
when a task runs."""

DEFAULT_IMAGE_MODEL = "grok-imagine-image"
DEFAULT_VIDEO_MODEL = "grok-imagine-video"
#: Images one request may ask for.
MAX_IMAGES = 10
IMAGE_ASPECT_RATIOS = (
    "1:1", "3:4", "4:3", "9:16", "16:9", "2:3", "3:2", "9:19.5", "19.5:9", "9:20", "20:9", "1:2", "2:1",
    "21:9", "5:2", "auto",
)  # fmt: skip
IMAGE_RESOLUTIONS = ("1k", "1.5k", "2k")
IMAGE_FORMATS = ("url", "b64_json")
VIDEO_ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
VIDEO_RESOLUTIONS = ("480p", "720p", "1080p")
#: Seconds of video a generation (1-15) and an extension (2-10) may ask for.
GENERATION_SECONDS = (1, 15)
EXTENSION_SECONDS = (2, 10)
#: The most reference images of an image-to-video generation.
MAX_REFERENCE_IMAGES = 7
VIDEO_ACTIONS = ("generate", "edit", "extend")
#: What a task does when xAI's moderation withholds an image or video it asked for.
ON_MODERATED = ("fail", "skip", "continue")
