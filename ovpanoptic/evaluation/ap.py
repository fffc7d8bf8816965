"""Mask AP of the thing segments, computed by pycocotools' ``COCOeval`` (``iouType="segm"``).

The thing segments of each pair of panoptic annotations become COCO instance annotations (RLE
masks encoded by ``pycocotools.mask``; a first-side segment with ``iscrowd`` 1 is a crowd region),
the second side's become detections (score: the segment's ``score``, else 1.0), and ``COCOeval``
matches them with its own rules. The numbers read from its ``precision`` array: AP at IoU 0.50,
0.75 and 0.95, and AP[.50:.95] (the mean over the ten thresholds, ``stats[0]``), each over area
"all" and the largest ``maxDets``; per class AP[.50:.95]. Stuff categories are left out (COCO's
instance-segmentation protocol).

pycocotools is imported lazily (it is an optional dependency: ``pip install pycocotools``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..formats.coco_instances import pycocotools_mask

__all__ = ["AP_THRESHOLDS", "MaskAP", "MaskAPAccumulator"]

#: The IoU thresholds reported one by one (COCOeval evaluates .50:.05:.95).
AP_THRESHOLDS: tuple[float, ...] = (0.50, 0.75, 0.95)

#: COCOeval's ``maxDets`` (its default, with the last raised to the most detections in one image).
_MAX_DETS: tuple[int, int, int] = (1, 10, 100)


@dataclass(frozen=True)
class MaskAP:
    """Mask AP (fractions) of the things; ``None`` where nothing was there to measure.

    :param ap: AP[.50:.95].
    :param ap50: AP at IoU 0.50.
    :param ap75: AP at IoU 0.75.
    :param ap95: AP at IoU 0.95.
    :param per_category: ``{category id: AP[.50:.95]}`` of the thing classes with ground truth.
    :param n_gt: first-side thing segments (crowd excluded).
    :param n_dt: second-side thing segments.
    """

    ap: float | None
    ap50: float | None
    ap75: float | None
    ap95: float | None
    per_category: Mapping[int, float] = field(default_factory=dict)
    n_gt: int = 0
    n_dt: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"ap": self.ap, "ap50": self.ap50, "ap75": self.ap75, "ap95": self.ap95, "n_gt": self.n_gt, "n_dt": self.n_dt}


def _mean_valid(values: npt.NDArray[np.float64]) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


class MaskAPAccumulator:
    """Collects the thing segments of image pairs, then runs ``COCOeval`` once (:meth:`compute`).

    :param things: the thing category ids (first-side ids).
    """

    def __init__(self, things: Sequence[int]) -> None:
        self._things = frozenset(int(t) for t in things)
        self._images: list[dict[str, Any]] = []
        self._gt: list[dict[str, Any]] = []
        self._dt: list[dict[str, Any]] = []
        self._most = 0

    def _encode(self, ids: npt.NDArray[np.integer[Any]], segments: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Any]]:
        mask_utils = pycocotools_mask("mask AP")
        chosen = [s for s in segments if int(s["category_id"]) in self._things]
        if not chosen:
            return []
        stack = np.zeros((ids.shape[0], ids.shape[1], len(chosen)), np.uint8, order="F")
        for k, segment in enumerate(chosen):
            stack[:, :, k] = ids == int(segment["id"])
        rles = mask_utils.encode(stack)
        return list(zip(chosen, rles, strict=True))

    def add_image(
        self,
        gt_ids: npt.NDArray[np.integer[Any]],
        gt_segments: Sequence[Mapping[str, Any]],
        pred_ids: npt.NDArray[np.integer[Any]],
        pred_segments: Sequence[Mapping[str, Any]],
    ) -> None:
        """Add one image (``pred_segments`` in first-side category ids)."""
        image_id = len(self._images) + 1
        height, width = gt_ids.shape
        self._images.append({"id": image_id, "height": int(height), "width": int(width)})
        mask_utils = pycocotools_mask("mask AP")
        for segment, rle in self._encode(gt_ids, gt_segments):
            crowd = int(segment.get("iscrowd", 0) or 0)
            self._gt.append({
                "id": len(self._gt) + 1, "image_id": image_id, "category_id": int(segment["category_id"]), "segmentation": rle,
                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": crowd,
            })
        found = self._encode(pred_ids, pred_segments)
        self._most = max(self._most, len(found))
        for segment, rle in found:
            score = segment.get("score")
            self._dt.append({
                "id": len(self._dt) + 1, "image_id": image_id, "category_id": int(segment["category_id"]), "segmentation": rle,
                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0,
                "score": float(score) if isinstance(score, int | float) and not isinstance(score, bool) else 1.0,
            })

    def compute(self) -> MaskAP:
        """Run ``COCOeval`` over everything added."""
        n_gt = sum(1 for a in self._gt if not a["iscrowd"])
        if not self._things or not self._images or n_gt == 0:
            return MaskAP(None, None, None, None, {}, n_gt, len(self._dt))
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        categories = [{"id": c, "name": str(c)} for c in sorted(self._things)]
        quiet = io.StringIO()  # pycocotools prints its progress
        with contextlib.redirect_stdout(quiet):
            gt = COCO()
            gt.dataset = {"images": self._images, "annotations": self._gt, "categories": categories}
            gt.createIndex()
            dt = COCO()
            dt.dataset = {"images": self._images, "annotations": self._dt, "categories": categories}
            dt.createIndex()
            evaluator = COCOeval(gt, dt, iouType="segm")
            evaluator.params.maxDets = [_MAX_DETS[0], _MAX_DETS[1], max(_MAX_DETS[2], self._most)]
            evaluator.evaluate()
            evaluator.accumulate()
        precision = np.asarray(evaluator.eval["precision"])  # [T, R, K, A, M]
        thresholds = np.asarray(evaluator.params.iouThrs)
        at = {t: _mean_valid(precision[int(np.argmin(np.abs(thresholds - t))), :, :, 0, -1]) for t in AP_THRESHOLDS}
        per_category: dict[int, float] = {}
        for k, cid in enumerate(evaluator.params.catIds):
            value = _mean_valid(precision[:, :, k, 0, -1])
            if value is not None:
                per_category[int(cid)] = value
        return MaskAP(_mean_valid(precision[:, :, :, 0, -1]), at[0.50], at[0.75], at[0.95], per_category, n_gt, len(self._dt))
