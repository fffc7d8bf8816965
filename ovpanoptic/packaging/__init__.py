"""Training-ready dataset folders (``ovpanoptic package``).

* :mod:`.splits`: deterministic train/val/test splits that keep every class in every split;
* :mod:`.card`: the dataset card (``README.md``, the Hugging Face template);
* :mod:`.refine`: the optional mask clean-up of the labels before they are written;
* :mod:`.build`: :func:`package_dataset`, which reads labels through
  :func:`ovpanoptic.formats.read_annotations` and writes them in the training formats of
  :mod:`ovpanoptic.formats`: COCO panoptic and instances (:mod:`~ovpanoptic.formats.coco_panoptic`,
  :mod:`~ovpanoptic.formats.coco_instances`), class-index PNGs (:mod:`~ovpanoptic.formats.semantic`),
  YOLO segmentation (:mod:`~ovpanoptic.formats.yolo`) and Hugging Face Parquet (:mod:`~ovpanoptic.formats.hf`).

The package may import :mod:`ovpanoptic.formats`, the core leaf modules, numpy and Pillow; never the
pipeline, the CLI, :mod:`ovpanoptic.evaluation` or the built-ins.
"""

from __future__ import annotations

from .build import PackageOptions, PackageSummary, package_dataset
from .splits import SPLIT_NAMES, Splits, make_splits

__all__ = ["SPLIT_NAMES", "PackageOptions", "PackageSummary", "Splits", "make_splits", "package_dataset"]
