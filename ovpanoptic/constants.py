"""Named constants shared across ovpanoptic.

Image convention (used everywhere, documented once): an image is a ``numpy.ndarray`` of shape
``(H, W, 3)``, dtype ``uint8``, RGB channel order, rows top to bottom (HWC).
"""

from __future__ import annotations

#: Panoptic-map value of pixels that belong to no segment.
VOID_ID: int = 0

#: Base of the COCO-panoptic colour encoding: ``id = R + ID_BASE * G + ID_BASE**2 * B``.
ID_BASE: int = 256

#: Largest segment id the COCO-panoptic PNG encoding can store.
MAX_SEGMENT_ID: int = ID_BASE**3 - 1

#: Longest class name or synonym accepted in a vocabulary, in characters: a sanity bound. What
#: fits a text encoder is counted in tokens by the classifier (CLIP: 77 tokens with the template).
MAX_NAME_LENGTH: int = 200

#: Most pixels (width x height) of one image: a bigger input image is refused before it is decoded
#: (``pipeline.max_pixels``), and so is an annotated image whose file declares a bigger size
#: (``ovpanoptic eval --max-pixels``): 50 megapixels.
DEFAULT_MAX_PIXELS: int = 50_000_000

#: The most images ``pipeline.batch_size`` puts through the image encoders together.
MAX_BATCH_SIZE: int = 64

#: Label of a prompt point on the object to segment (SAM's foreground click).
POSITIVE_POINT: int = 1

#: Label of a prompt point beside the object, which the mask must leave out (SAM's background click).
NEGATIVE_POINT: int = 0

#: Most candidate masks a prompt segmenter returns for one prompt (SAM's three-way multimask output).
MAX_PROMPT_MASKS: int = 3

#: Entry-point group that third-party plugin packages use.
ENTRY_POINT_GROUP: str = "ovpanoptic"

#: Environment variable with a comma-separated list of plugin names to block.
DISABLE_PLUGINS_ENV: str = "OVPANOPTIC_DISABLE_PLUGINS"

#: Environment variable listing extra directories (``os.pathsep``-separated) searched for presets.
CONFIG_PATH_ENV: str = "OVPANOPTIC_CONFIG_PATH"

#: Environment variable overriding the cache directory (text embeddings, downloads bookkeeping).
CACHE_DIR_ENV: str = "OVPANOPTIC_CACHE_DIR"

#: Name of the preset used when none is given.
DEFAULT_PRESET: str = "default"

#: Name of the preset the demo starts with when none is given (fast first run, fast re-query).
DEMO_PRESET: str = "interactive"

#: The plugin API this ovpanoptic provides, ``"MAJOR.MINOR"``. MAJOR changes when a hook, a
#: component Protocol or a data type changes incompatibly (a plugin written for another MAJOR is
#: refused at start-up); MINOR when something is added (a plugin needing a newer MINOR is refused).
PLUGIN_API_VERSION: str = "1.0"

#: Module or plugin-object attribute where a plugin declares the plugin API it was written for.
API_ATTRIBUTE: str = "OVPANOPTIC_PLUGIN_API"

#: Annotation formats ``ovpanoptic eval`` reads (:mod:`ovpanoptic.formats.detect`).
ANNOTATION_FORMATS: tuple[str, ...] = ("coco-panoptic", "cityscapes-panoptic", "cityscapes", "label-studio", "cvat")
