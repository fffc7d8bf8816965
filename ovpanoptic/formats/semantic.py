"""Semantic label maps for semantic-segmentation trainers (SegFormer, Mask2Former-semantic).

One class-index PNG per image: pixel value = the class's *training index* (0..K-1, the categories
in ascending id order), void = :data:`IGNORE_INDEX_8` (``uint8``, K <= 255) or
:data:`IGNORE_INDEX_16` (``uint16`` PNG, more classes); ``id2label.json`` maps index -> name,
the form ``transformers`` configs take (``id2label``).

Written by ``ovpanoptic package`` (:mod:`ovpanoptic.packaging`); no ovpanoptic reader and no
detection rule: a class map has no instances, so it does not read back as panoptic annotations
(Pillow reads the PNGs as they are).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = ["IGNORE_INDEX_8", "IGNORE_INDEX_16", "id2label", "ignore_index", "semantic_map", "semantic_png"]

#: Void in 8-bit semantic PNGs (the ``ignore_index`` of SegFormer / Mask2Former configs).
IGNORE_INDEX_8: int = 255
#: Void in 16-bit semantic PNGs (vocabularies of more than 255 classes).
IGNORE_INDEX_16: int = 65535


def ignore_index(n_classes: int) -> int:
    """The void value for ``n_classes`` classes."""
    return IGNORE_INDEX_8 if n_classes <= IGNORE_INDEX_8 else IGNORE_INDEX_16


def id2label(names: Sequence[str]) -> dict[str, str]:
    """``{"0": name, ...}`` of the training indices."""
    return {str(k): name for k, name in enumerate(names)}


def semantic_map(
    ids: npt.NDArray[np.integer[Any]], segments: Sequence[Mapping[str, Any]], train_index: Mapping[int, int]
) -> npt.NDArray[np.uint16]:
    """Each pixel's training index (void and unknown categories: the ignore index)."""
    void = ignore_index(len(train_index))
    out = np.full(ids.shape, void, np.uint16)
    for segment in segments:
        index = train_index.get(int(segment["category_id"]))
        if index is not None:
            out[ids == int(segment["id"])] = index
    return out


def semantic_png(label_map: npt.NDArray[np.uint16], n_classes: int) -> bytes:
    """The map as PNG bytes (8-bit ``L`` when the classes fit, else 16-bit ``I;16``)."""
    buffer = io.BytesIO()
    if n_classes <= IGNORE_INDEX_8:
        Image.fromarray(label_map.astype(np.uint8), mode="L").save(buffer, format="PNG")
    else:
        Image.fromarray(label_map.astype(np.uint16), mode="I;16").save(buffer, format="PNG")
    return buffer.getvalue()
