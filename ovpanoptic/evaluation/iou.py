"""Per-class IoU and class confusion of two panoptic annotations (pixels and matched segments).

Both sides of a pair are turned into *class maps* (each pixel's category, or void) with the category
table of the first side; then, per image:

* the **pixel confusion** ``C[g, p]``: how many pixels the first side labels ``g`` and the second
  ``p`` (index 0 = void / unlabelled, then the categories in ascending id order);
* the **segment confusion** ``S[g, p]``: segments matched class-agnostically with the COCO panoptic
  API's IoU (``inter / (gt_area + pred_area - inter - pred pixels on gt void)``, a match when it is
  above 0.5, so a match is unique); row 0 counts the second side's segments matched by nothing
  (``extra``), column 0 the first side's (``missed``). Crowd segments of the first side are not
  matched, and an unmatched segment of the second side that lies more than half on void or crowd is
  not counted (the PQ rules).

Per-class IoU is ``C[c, c] / (row_c + col_c - C[c, c])`` summed over the images. Against a
ground truth (``ignore_void=True``) pixels that the ground truth leaves void are ignored, as
semantic-segmentation benchmarks do; between two annotators (``ignore_void=False``) they count,
so the measure is symmetric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..constants import VOID_ID

__all__ = ["VOID_INDEX", "ConfusionAccumulator", "ImageConfusion", "class_iou", "class_map", "compare_image"]

#: Row and column of the confusion matrices that stand for void (pixels) or "no match" (segments).
VOID_INDEX: int = 0

#: A segment match needs an IoU strictly above this (the COCO panoptic rule: matches are unique).
_MATCH_IOU: float = 0.5

#: An unmatched second-side segment is not counted when strictly more than this fraction of it lies
#: on first-side void or crowd pixels (the COCO panoptic API's false-positive rule).
_VOID_FRACTION: float = 0.5

#: Id maps whose largest id is below this are compacted with a lookup table, larger ones with
#: ``np.unique`` (COCO RGB ids reach 2**24).
_LUT_LIMIT: int = 1 << 20


def _compact(ids: npt.NDArray[np.integer[Any]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(segment ids present, sorted; per-pixel index into them)`` of an id map."""
    flat = ids.ravel()
    top = int(flat.max()) if flat.size else 0
    if 0 <= int(flat.min() if flat.size else 0) and top < _LUT_LIMIT:
        counts = np.bincount(flat, minlength=top + 1)
        present = np.flatnonzero(counts)
        lut = np.zeros(top + 1, np.int64)
        lut[present] = np.arange(present.size)
        return present.astype(np.int64), lut[flat]
    present, inverse = np.unique(flat, return_inverse=True)
    return present.astype(np.int64), inverse.astype(np.int64).ravel()


def class_map(
    ids: npt.NDArray[np.integer[Any]], segments: Sequence[Mapping[str, Any]], index: Mapping[int, int]
) -> npt.NDArray[np.int64]:
    """Each pixel's class index: ``index[category_id]`` of its segment, :data:`VOID_INDEX` for void
    and for segments whose category is not in ``index``.

    :param ids: ``(H, W)`` segment ids.
    :param segments: ``segments_info`` dicts (``id``, ``category_id``).
    :param index: ``{category id: row of the confusion matrices}`` (1-based).
    """
    present, inverse = _compact(ids)
    category = {int(s["id"]): int(s["category_id"]) for s in segments}
    rows = np.array([index.get(category.get(int(sid), -1), VOID_INDEX) if sid != VOID_ID else VOID_INDEX for sid in present], np.int64)
    return rows[inverse].reshape(ids.shape) if rows.size else np.zeros(ids.shape, np.int64)


def class_iou(confusion: npt.NDArray[np.int64], *, ignore_void: bool) -> npt.NDArray[np.float64]:
    """Per-class IoU from a pixel confusion matrix (``NaN`` where a class has no pixel on either side).

    :param ignore_void: drop row 0 (pixels the first side leaves void) first.
    :return: ``(K,)`` for the classes 1..K.
    """
    c = confusion.astype(np.float64)
    if ignore_void:
        c = c.copy()
        c[VOID_INDEX, :] = 0
    inter = np.diag(c)[1:]
    union = c.sum(axis=1)[1:] + c.sum(axis=0)[1:] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)


@dataclass(frozen=True)
class ImageConfusion:
    """One image's confusion counts.

    :param pixels: ``(K+1, K+1)`` pixel confusion (:mod:`this module's <.iou>` layout).
    :param segments: ``(K+1, K+1)`` matched-segment confusion.
    :param matches: ``(first-side segment id, second-side segment id, IoU)`` of each match.
    """

    pixels: npt.NDArray[np.int64]
    segments: npt.NDArray[np.int64]
    matches: tuple[tuple[int, int, float], ...] = ()

    def iou(self, *, ignore_void: bool) -> npt.NDArray[np.float64]:
        """This image's per-class IoU (:func:`class_iou`)."""
        return class_iou(self.pixels, ignore_void=ignore_void)


def compare_image(
    gt_ids: npt.NDArray[np.integer[Any]],
    gt_segments: Sequence[Mapping[str, Any]],
    pred_ids: npt.NDArray[np.integer[Any]],
    pred_segments: Sequence[Mapping[str, Any]],
    index: Mapping[int, int],
) -> ImageConfusion:
    """The pixel and segment confusion of one image (see the module docstring).

    ``pred_segments`` carry first-side category ids already (the caller maps them). Both maps have
    the same shape.
    """
    size = len(index) + 1
    g_present, g_inv = _compact(gt_ids)
    p_present, p_inv = _compact(pred_ids)
    g_cat = {int(s["id"]): int(s["category_id"]) for s in gt_segments}
    p_cat = {int(s["id"]): int(s["category_id"]) for s in pred_segments}
    g_crowd = {int(s["id"]) for s in gt_segments if int(s.get("iscrowd", 0) or 0) == 1}
    g_row = np.array([index.get(g_cat.get(int(i), -1), VOID_INDEX) if i != VOID_ID else VOID_INDEX for i in g_present], np.int64)
    p_row = np.array([index.get(p_cat.get(int(i), -1), VOID_INDEX) if i != VOID_ID else VOID_INDEX for i in p_present], np.int64)
    n_p = max(p_present.size, 1)
    pair = np.bincount(g_inv * n_p + p_inv, minlength=max(g_present.size, 1) * n_p).reshape(max(g_present.size, 1), n_p)
    pixels = np.zeros((size, size), np.int64)
    if g_row.size and p_row.size:
        np.add.at(pixels, (g_row[:, None].repeat(p_row.size, 1), p_row[None, :].repeat(g_row.size, 0)), pair[: g_row.size, : p_row.size])
    g_area = pair.sum(axis=1)
    p_area = pair.sum(axis=0)
    g_void = [k for k, i in enumerate(g_present) if i == VOID_ID or g_row[k] == VOID_INDEX]
    g_crowdish = [k for k, i in enumerate(g_present) if int(i) in g_crowd]
    p_on_void = pair[g_void, :].sum(axis=0) if g_void else np.zeros(n_p, np.int64)
    segments = np.zeros((size, size), np.int64)
    matched_g: set[int] = set()
    matched_p: set[int] = set()
    matches: list[tuple[int, int, float]] = []
    g_real = [k for k in range(g_present.size) if g_present[k] != VOID_ID and g_row[k] != VOID_INDEX and int(g_present[k]) not in g_crowd]
    p_real = [k for k in range(p_present.size) if p_present[k] != VOID_ID and p_row[k] != VOID_INDEX]
    p_real_set = set(p_real)
    for gk in g_real:
        for pk in np.flatnonzero(pair[gk]):
            if int(pk) not in p_real_set:
                continue
            inter = int(pair[gk, pk])
            union = int(g_area[gk] + p_area[pk] - inter - p_on_void[pk])
            iou = inter / union if union > 0 else 0.0
            if iou > _MATCH_IOU:
                matched_g.add(gk)
                matched_p.add(int(pk))
                segments[g_row[gk], p_row[pk]] += 1
                matches.append((int(g_present[gk]), int(p_present[pk]), iou))
    for gk in g_real:
        if gk not in matched_g:
            segments[g_row[gk], VOID_INDEX] += 1
    ignorable = pair[g_void + g_crowdish, :].sum(axis=0) if g_void or g_crowdish else np.zeros(n_p, np.int64)
    for pk in p_real:
        if pk not in matched_p and not ignorable[pk] > _VOID_FRACTION * p_area[pk]:
            segments[VOID_INDEX, p_row[pk]] += 1
    return ImageConfusion(pixels, segments, tuple(matches))


@dataclass
class ConfusionAccumulator:
    """Sums :class:`ImageConfusion` counts over images.

    :param size: ``K + 1`` (void plus the categories).
    """

    size: int
    pixels: npt.NDArray[np.int64] = field(init=False)
    segments: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.pixels = np.zeros((self.size, self.size), np.int64)
        self.segments = np.zeros((self.size, self.size), np.int64)

    def add(self, image: ImageConfusion) -> None:
        """Add one image's counts."""
        self.pixels += image.pixels
        self.segments += image.segments
