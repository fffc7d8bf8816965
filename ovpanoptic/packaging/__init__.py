"""Training-ready dataset folders (``ovpanoptic package``).

* :mod:`.splits`: deterministic train/val/test splits that keep every class in every split;
* :mod:`.coco`: COCO panoptic and COCO instances files;
* :mod:`.semantic`: class-index PNGs and ``id2label.json`` (SegFormer, Mask2Former-semantic);
* :mod:`.yolo`: YOLO segmentation polygons and ``data.yaml``;
* :mod:`.hf`: Parquet splits that Hugging Face ``datasets`` loads;
* :mod:`.card`: the dataset card (``README.md``, the Hugging Face template);
* :mod:`.build`: :func:`package_dataset`, which reads labels through
  :func:`ovpanoptic.evaluation.readers.read_annotations` and writes them all.

The format modules are one per training format so they can move to ``ovpanoptic/formats/``. The
package may import :mod:`ovpanoptic.evaluation`, the core leaf modules, numpy, Pillow, OpenCV,
pycocotools and pyarrow (the last three lazily); never the pipeline, the CLI or the built-ins.
"""

from __future__ import annotations

from .build import PackageOptions, PackageSummary, package_dataset
from .splits import SPLIT_NAMES, Splits, make_splits

__all__ = ["SPLIT_NAMES", "PackageOptions", "PackageSummary", "Splits", "make_splits", "package_dataset"]
