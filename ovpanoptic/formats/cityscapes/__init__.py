"""Cityscapes: its gtFine images (``cityscapes``) and its panoptic format (``cityscapes-panoptic``),
written and read by Cityscapes' own rules (cityscapesScripts, the optional ``cityscapesscripts``).

* :mod:`.writer`: :class:`CityscapesExporter` (``--format cityscapes``:
  ``OUTDIR/labelIds/gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` and
  ``OUTDIR/instanceIds/gtFine/<split>/<city>/<name>_gtFine_instanceIds.png``) and
  :class:`CityscapesPanopticExporter` (``--format cityscapes-panoptic``:
  ``OUTDIR/cityscapes_panoptic_<split>.json`` + PNGs, made by cityscapesscripts' ``convert2panoptic``);
* :mod:`.reader`: :func:`read_cityscapes` (``--gt-format cityscapes``: every
  ``*_gtFine_instanceIds.png`` below a folder), :func:`read_cityscapes_panoptic`
  (``--gt-format cityscapes-panoptic``), the label table (:func:`cityscapes_labels`,
  :func:`cityscapes_categories`) and the instanceIds decoding (:func:`decode_instance_ids`).

Detection: :func:`detect_panoptic` (a ``cityscapes_panoptic*.json`` object, or a folder holding a
``cityscapes_panoptic_*.json``) and :func:`detect` (a ``gtFine`` folder, a folder holding one, or a
folder with ``*_gtFine_instanceIds.png`` below it).
"""

from __future__ import annotations

from ..probe import Probe
from .reader import (
    CITYSCAPES_INSTANCE_DIVISOR,
    CITYSCAPES_INSTANCE_IDS_SUFFIX,
    CITYSCAPES_LABEL_IDS_SUFFIX,
    CITYSCAPES_UNLABELED_ID,
    cityscapes_categories,
    cityscapes_labels,
    decode_instance_ids,
    read_cityscapes,
    read_cityscapes_panoptic,
)
from .writer import (
    INSTANCE_IDS_FOLDER,
    LABEL_IDS_FOLDER,
    CityscapesConfig,
    CityscapesExporter,
    CityscapesPanopticExporter,
    city_of,
    cityscapes_name,
    encode_instance_ids,
    label_ids_image,
    label_ids_of,
)

__all__ = [
    "CITYSCAPES_INSTANCE_DIVISOR",
    "CITYSCAPES_INSTANCE_IDS_SUFFIX",
    "CITYSCAPES_LABEL_IDS_SUFFIX",
    "CITYSCAPES_UNLABELED_ID",
    "FORMAT",
    "INSTANCE_IDS_FOLDER",
    "LABEL_IDS_FOLDER",
    "PANOPTIC_FORMAT",
    "CityscapesConfig",
    "CityscapesExporter",
    "CityscapesPanopticExporter",
    "city_of",
    "cityscapes_categories",
    "cityscapes_labels",
    "cityscapes_name",
    "decode_instance_ids",
    "detect",
    "detect_panoptic",
    "encode_instance_ids",
    "label_ids_image",
    "label_ids_of",
    "read_cityscapes",
    "read_cityscapes_panoptic",
]

#: The gtFine format's name (exporter, ``--gt-format``).
FORMAT = "cityscapes"

#: The panoptic format's name (exporter, ``--gt-format``).
PANOPTIC_FORMAT = "cityscapes-panoptic"


def detect_panoptic(probe: Probe) -> bool:
    """A ``.json`` object named ``cityscapes_panoptic*``, or a folder holding ``cityscapes_panoptic_*.json``."""
    if probe.is_file:
        return probe.json_object() and probe.path.name.startswith("cityscapes_panoptic")
    return any(probe.path.glob("cityscapes_panoptic_*.json"))


def detect(probe: Probe) -> bool:
    """A folder named ``gtFine``, holding ``gtFine/``, or with ``*_gtFine_instanceIds.png`` below it."""
    if probe.is_file:
        return False
    p = probe.path
    return p.name == "gtFine" or (p / "gtFine").is_dir() or next(p.rglob(f"*{CITYSCAPES_INSTANCE_IDS_SUFFIX}"), None) is not None
