"""COCO panoptic and COCO instances files of a packaged split.

``annotations/panoptic_SPLIT.json`` + ``annotations/panoptic_SPLIT/STEM.png`` (the layout of
``panoptic_val2017``, which ``read_coco_panoptic`` and panopticapi find by name) and
``annotations/instances_SPLIT.json`` (the thing segments as RLE masks encoded by pycocotools).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from ..evaluation import CategoryInfo, id_to_rgb

__all__ = ["coco_categories", "instance_annotations", "panoptic_png", "panoptic_segments"]


def coco_categories(categories: Sequence[CategoryInfo], *, panoptic: bool) -> list[dict[str, Any]]:
    """The ``categories`` list (panoptic: with ``isthing``; instances: the things only)."""
    if panoptic:
        return [{"id": c.id, "name": c.name, "supercategory": "", "isthing": int(c.isthing)} for c in categories]
    return [{"id": c.id, "name": c.name, "supercategory": ""} for c in categories if c.isthing]


def panoptic_png(ids: npt.NDArray[np.integer[Any]]) -> bytes:
    """The id map as a COCO panoptic RGB PNG."""
    buffer = io.BytesIO()
    Image.fromarray(id_to_rgb(ids)).save(buffer, format="PNG")
    return buffer.getvalue()


def panoptic_segments(ids: npt.NDArray[np.integer[Any]], segments: Sequence[Mapping[str, Any]], known: set[int]) -> list[dict[str, Any]]:
    """``segments_info`` with ``area`` and ``bbox`` (XYWH) measured on the map; segments of unknown
    categories or without pixels are left out."""
    out = []
    for segment in segments:
        if int(segment["category_id"]) not in known:
            continue
        ys, xs = np.nonzero(ids == int(segment["id"]))
        if xs.size == 0:
            continue
        out.append({
            "id": int(segment["id"]), "category_id": int(segment["category_id"]), "iscrowd": int(segment.get("iscrowd", 0) or 0),
            "area": int(xs.size), "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
        })
    return out


def instance_annotations(
    ids: npt.NDArray[np.integer[Any]], segments: Sequence[Mapping[str, Any]], things: set[int], image_id: int, first_id: int
) -> list[dict[str, Any]]:
    """COCO instance annotations (RLE, pycocotools) of the thing segments, ids from ``first_id``."""
    import pycocotools.mask as mask_utils

    chosen = [s for s in segments if int(s["category_id"]) in things]
    if not chosen:
        return []
    stack = np.zeros((ids.shape[0], ids.shape[1], len(chosen)), np.uint8, order="F")
    for k, segment in enumerate(chosen):
        stack[:, :, k] = ids == int(segment["id"])
    out = []
    for k, (segment, rle) in enumerate(zip(chosen, mask_utils.encode(stack), strict=True)):
        area = int(mask_utils.area(rle))
        if area == 0:
            continue
        out.append({
            "id": first_id + k, "image_id": image_id, "category_id": int(segment["category_id"]),
            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": area, "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": int(segment.get("iscrowd", 0) or 0),
        })
    return out
