"""YOLO segmentation labels (the Ultralytics ``YOLO-seg`` text format) and ``data.yaml``.

``labels/SPLIT/STEM.txt``: one line per connected part of a segment, ``CLASS x1 y1 x2 y2 ...``
with the polygon's vertices normalised by the image's width and height (6 decimals). The
polygons are the outer boundaries that OpenCV's ``findContours`` traces through the pixel centres
(``CHAIN_APPROX_NONE``); filling them with ``cv2.fillPoly`` gives back the part's pixels exactly.
The format has no holes: a hole inside a part is filled (counted in :attr:`YoloLabels.holes`).
A part of one or two boundary points repeats its points to make the three a polygon needs.

Written by ``ovpanoptic package`` (:mod:`ovpanoptic.packaging`); no ovpanoptic reader and no
detection rule: the polygons fill holes, so the labels do not read back as the panoptic map they came
from (Ultralytics' own loader, or OpenCV's ``fillPoly`` as the round-trip test does, reads them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["YoloLabels", "data_yaml", "mask_polygons", "yolo_labels"]


def _cv2() -> Any:
    import cv2

    return cv2


def mask_polygons(mask: npt.NDArray[np.bool_]) -> tuple[list[npt.NDArray[np.int32]], int]:
    """The outer boundary polygon (``(N, 2)`` x, y pixel centres) of each connected part, and how
    many pixels of holes they enclose."""
    cv2 = _cv2()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polygons = [c.reshape(-1, 2).astype(np.int32) for c in contours]
    filled = np.zeros(mask.shape, np.uint8)
    if polygons:
        cv2.fillPoly(filled, polygons, 1)
    holes = int(filled.astype(bool).sum() - mask.sum())
    return polygons, max(holes, 0)


@dataclass(frozen=True)
class YoloLabels:
    """One image's label file text, and the hole pixels the polygons filled."""

    text: str
    holes: int
    parts: int


def yolo_labels(
    ids: npt.NDArray[np.integer[Any]], segments: Sequence[Mapping[str, Any]], train_index: Mapping[int, int]
) -> YoloLabels:
    """The label file of one image (see the module docstring); crowd segments are left out."""
    height, width = ids.shape
    lines: list[str] = []
    holes = 0
    for segment in segments:
        index = train_index.get(int(segment["category_id"]))
        if index is None or int(segment.get("iscrowd", 0) or 0) == 1:
            continue
        polygons, hole = mask_polygons(ids == int(segment["id"]))
        holes += hole
        for poly in polygons:
            if len(poly) < 3:
                poly = np.concatenate([poly] * 3)[:3]
            coords = " ".join(f"{x / width:.6f} {y / height:.6f}" for x, y in poly.tolist())
            lines.append(f"{index} {coords}")
    return YoloLabels("\n".join(lines) + ("\n" if lines else ""), holes, len(lines))


def data_yaml(names: Sequence[str], splits: Sequence[str]) -> str:
    """``data.yaml`` for Ultralytics: the dataset root is the folder holding it."""
    import json

    lines = ["# YOLO segmentation dataset written by ovpanoptic package (the root is this file's folder)"]
    for split in splits:
        lines.append(f"{split}: images/{split}")
    lines.append("names:")
    lines.extend(f"  {k}: {json.dumps(name)}" for k, name in enumerate(names))
    return "\n".join(lines) + "\n"
