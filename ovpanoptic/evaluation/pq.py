"""Panoptic Quality (PQ) evaluation with the exact rules of the COCO panoptic API.

This module reproduces the numbers of ``panopticapi.evaluation.pq_compute``
(cocodataset/panopticapi) without depending on it. The rules, per image:

* A panoptic PNG encodes one segment id per pixel as ``R + 256*G + 256**2*B``; id ``0`` is VOID.
* Prediction areas are the PNG pixel counts (the JSON ``area`` of a prediction is ignored).
  Ground-truth areas are taken from the JSON ``area`` like the reference does (they equal the PNG
  pixel counts in well-formed COCO files); when a ground-truth segment has no ``area`` key its
  PNG pixel count is used.
* For every (gt, pred) pair that overlaps, with the same category and a non-crowd gt segment,
  ``IoU = inter / (pred_area + gt_area - inter - pred_pixels_on_gt_VOID)``. ``IoU > 0.5`` is a
  true positive (TP) and the IoU is added to the category's IoU sum.
* An unmatched non-crowd gt segment is a false negative (FN) of its category.
* An unmatched prediction is ignored when more than half of it lies on gt VOID plus the gt crowd
  region of its own category, otherwise it is a false positive (FP) of its category. As in the
  reference, when a ground truth image has several crowd segments of one category, only the last
  one listed in ``segments_info`` counts as "the crowd region" of that category.

Per category ``PQ = iou_sum / (tp + fp/2 + fn/2)``, ``SQ = iou_sum / tp`` (0 without TP) and
``RQ = tp / (tp + fp/2 + fn/2)``. A category is counted only when ``tp + fp + fn > 0``; the
All / Things / Stuff numbers are plain means over the counted categories. All values are
fractions in ``[0, 1]``; :meth:`PQReport.format_table` and ``PQReport.to_dict(percent=True)``
show percentages.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from ..constants import DEFAULT_MAX_PIXELS, ID_BASE, VOID_ID
from ..errors import OvpanopticError

__all__ = [
    "ID_BASE",
    "VOID_ID",
    "CategoryInfo",
    "check_annotation_pixels",
    "EvaluationError",
    "PQAccumulator",
    "PQReport",
    "PQStats",
    "evaluate_panoptic",
    "id_to_rgb",
    "rgb_to_id",
]

#: Number of distinct ids an RGB PNG can encode (``ID_BASE**3``); also the pair-key multiplier.
_ID_LIMIT: int = ID_BASE**3

#: A (gt, pred) pair is a match when its IoU is strictly greater than this.
_MATCH_IOU: float = 0.5

#: An unmatched prediction is ignored when strictly more than this fraction is VOID/crowd.
_IGNORE_FRACTION: float = 0.5


class EvaluationError(OvpanopticError, ValueError):
    """The evaluation inputs are inconsistent (missing prediction, unknown id, bad PNG, ...)."""


# --------------------------------------------------------------------------------------------
# Public value types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PQStats:
    """PQ, SQ and RQ (fractions in ``[0, 1]``) of one category or of a group of categories.

    ``tp``, ``fp`` and ``fn`` are counts (summed over the group's categories for a group);
    ``n`` is the number of categories averaged (1 for a single category, 0 for an empty group).
    """

    pq: float
    sq: float
    rq: float
    tp: int
    fp: int
    fn: int
    n: int = 1

    def to_dict(self, *, percent: bool = False) -> dict[str, float | int]:
        """Return the stats as a JSON-ready dict; ``percent=True`` scales PQ/SQ/RQ by 100."""
        scale = 100.0 if percent else 1.0
        return {
            "pq": self.pq * scale,
            "sq": self.sq * scale,
            "rq": self.rq * scale,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "n": self.n,
        }


@dataclass(frozen=True)
class CategoryInfo:
    """One category of the evaluation: its id, name and whether it is a thing (else stuff)."""

    id: int
    name: str
    isthing: bool


@dataclass(frozen=True)
class PQReport:
    """Result of a PQ evaluation.

    ``per_category`` holds only the categories that occur (``tp + fp + fn > 0``), keyed by
    category id, in the order of the category list. ``categories`` holds every category the
    evaluation was run with.
    """

    all: PQStats
    things: PQStats
    stuff: PQStats
    per_category: Mapping[int, PQStats]
    categories: Mapping[int, CategoryInfo]
    n_images: int
    #: what the reader should know about how categories were matched (unmatched categories, ...)
    notes: tuple[str, ...] = ()

    def _category_keys(self) -> dict[int, str]:
        """Map each reported category id to a unique display/JSON key (its name if unique)."""
        names = [self.categories[cat_id].name for cat_id in self.per_category]
        keys: dict[int, str] = {}
        for cat_id in self.per_category:
            name = self.categories[cat_id].name
            keys[cat_id] = name if names.count(name) == 1 else f"{name} [id {cat_id}]"
        return keys

    def _sorted_category_ids(self) -> list[int]:
        """Return the reported category ids sorted by name (then id)."""
        return sorted(self.per_category, key=lambda cid: (self.categories[cid].name, cid))

    def to_dict(self, *, percent: bool = False) -> dict[str, Any]:
        """Return a JSON-ready dict of the report.

        Layout: ``{"all": stats, "things": stats, "stuff": stats, "n_images": int,
        "per_category": {name: {"id": int, "isthing": bool, **stats}}}`` with ``stats`` as in
        :meth:`PQStats.to_dict`; categories are ordered by name. Two categories sharing a name
        are keyed ``"name [id N]"``. ``percent=True`` reports PQ/SQ/RQ in percent.
        """
        keys = self._category_keys()
        per_category: dict[str, dict[str, Any]] = {}
        for cat_id in self._sorted_category_ids():
            info = self.categories[cat_id]
            entry: dict[str, Any] = {"id": cat_id, "isthing": info.isthing}
            entry.update(self.per_category[cat_id].to_dict(percent=percent))
            per_category[keys[cat_id]] = entry
        return {
            "all": self.all.to_dict(percent=percent),
            "things": self.things.to_dict(percent=percent),
            "stuff": self.stuff.to_dict(percent=percent),
            "n_images": self.n_images,
            "per_category": per_category,
            **({"notes": list(self.notes)} if self.notes else {}),
        }

    def format_table(self) -> str:
        """Return a human-readable table (values in percent, 3 decimals).

        First the All / Things / Stuff rows with PQ, SQ, RQ and N (number of categories
        averaged), then one row per occurring category sorted by name with TP, FP and FN.
        """
        keys = self._category_keys()
        width = max([10, *(len(key) for key in keys.values())])
        lines = [
            f"{'':{width}s} | {'PQ':>7s}  {'SQ':>7s}  {'RQ':>7s}  {'N':>5s}",
            "-" * (width + 1) + "+" + "-" * 36,
        ]
        for label, stats in (("All", self.all), ("Things", self.things), ("Stuff", self.stuff)):
            lines.append(
                f"{label:{width}s} | {100 * stats.pq:7.3f}  {100 * stats.sq:7.3f}  {100 * stats.rq:7.3f}  {stats.n:5d}"
            )
        lines.append("")
        lines.append(
            f"{'category':{width}s} | {'id':>5s} {'kind':>5s}  {'PQ':>7s}  {'SQ':>7s}  "
            f"{'RQ':>7s}  {'TP':>6s} {'FP':>6s} {'FN':>6s}"
        )
        lines.append("-" * (width + 1) + "+" + "-" * 61)
        for cat_id in self._sorted_category_ids():
            stats = self.per_category[cat_id]
            kind = "thing" if self.categories[cat_id].isthing else "stuff"
            lines.append(
                f"{keys[cat_id]:{width}s} | {cat_id:5d} {kind:>5s}  {100 * stats.pq:7.3f}  "
                f"{100 * stats.sq:7.3f}  {100 * stats.rq:7.3f}  "
                f"{stats.tp:6d} {stats.fp:6d} {stats.fn:6d}"
            )
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Id encoding
# --------------------------------------------------------------------------------------------


def rgb_to_id(rgb: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Convert an ``(H, W, 3)`` RGB panoptic image to an ``(H, W)`` int64 id map.

    ``id = R + ID_BASE * G + ID_BASE**2 * B``. Any integer dtype is accepted as long as every
    value is in ``0..255``.

    Raises:
        ValueError: the array is not ``(H, W, 3)`` of integers in ``0..255``.
    """
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"rgb_to_id expects an (H, W, 3) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"rgb_to_id expects an integer array, got dtype {array.dtype}")
    if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError("rgb_to_id expects channel values in 0..255")
    wide = array.astype(np.int64)
    return wide[..., 0] + ID_BASE * wide[..., 1] + ID_BASE * ID_BASE * wide[..., 2]


def id_to_rgb(ids: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Convert an id map of any shape ``S`` to RGB colours of shape ``S + (3,)``, dtype uint8.

    Inverse of :func:`rgb_to_id`.

    Raises:
        ValueError: the ids are not integers in ``0 .. ID_BASE**3 - 1``.
    """
    array = np.asarray(ids)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"id_to_rgb expects an integer array, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= _ID_LIMIT):
        raise ValueError(f"id_to_rgb expects ids in 0..{_ID_LIMIT - 1}")
    # ID_BASE is 256: the colour is the id's three low bytes, least significant first.
    little = np.ascontiguousarray(array, dtype="<u4")
    return np.ascontiguousarray(little.view(np.uint8).reshape(*array.shape, 4)[..., :3])


def _rgb_text(segment_id: int) -> str:
    """Describe the colour of a segment id, e.g. ``'RGB (78, 180, 255)'``."""
    if not 0 <= segment_id < _ID_LIMIT:
        return "not encodable in an RGB PNG"
    return f"RGB ({segment_id % ID_BASE}, {(segment_id // ID_BASE) % ID_BASE}, {segment_id // (ID_BASE * ID_BASE)})"


# --------------------------------------------------------------------------------------------
# Input normalisation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    """The fields of a ``segments_info`` entry that the evaluation uses."""

    category_id: int
    iscrowd: bool
    area: int | float | None


def _as_int(value: object, what: str, where: str) -> int:
    """Return ``value`` as an int, accepting integral numbers only (not bools)."""
    if isinstance(value, bool):
        raise EvaluationError(f"{where}: {what} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    raise EvaluationError(f"{where}: {what} must be an integer, got {value!r}")


def _index_segments(
    segments: Sequence[Mapping[str, Any]], *, role: str, image: str, with_area: bool
) -> dict[int, _Segment]:
    """Index ``segments_info`` by segment id (a repeated id keeps its last entry, as the reference).

    ``with_area`` keeps the JSON ``area`` (used for ground truth only).
    """
    if isinstance(segments, str | bytes) or not isinstance(segments, Iterable):
        raise EvaluationError(f"{image}: {role} segments_info must be a list of segment dicts")
    indexed: dict[int, _Segment] = {}
    for position, segment in enumerate(segments):
        where = f"{image}: {role} segments_info[{position}]"
        if not isinstance(segment, Mapping):
            raise EvaluationError(f"{where} must be a dict, got {type(segment).__name__}")
        for key in ("id", "category_id"):
            if key not in segment:
                raise EvaluationError(f"{where} has no {key!r} key; every segment needs one")
        segment_id = _as_int(segment["id"], "'id'", where)
        category_id = _as_int(segment["category_id"], "'category_id'", where)
        iscrowd = bool(segment.get("iscrowd", 0) == 1)
        area: int | float | None = None
        if with_area and segment.get("area") is not None:
            raw_area = segment["area"]
            if isinstance(raw_area, bool) or not isinstance(raw_area, numbers.Real):
                raise EvaluationError(f"{where} (segment id {segment_id}): 'area' must be a number, got {raw_area!r}")
            area = int(raw_area) if isinstance(raw_area, numbers.Integral) else float(raw_area)
        indexed[segment_id] = _Segment(category_id=category_id, iscrowd=iscrowd, area=area)
    return indexed


def _as_id_map(ids: npt.NDArray[Any], *, role: str, image: str) -> npt.NDArray[np.int64]:
    """Validate a 2-D integer id map and return it as int64."""
    array = np.asarray(ids)
    if array.ndim != 2:
        raise EvaluationError(
            f"{image}: the {role} id map must be 2-D (H, W), got shape {array.shape}; "
            "convert RGB panoptic images with rgb_to_id first"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise EvaluationError(f"{image}: the {role} id map must have an integer dtype, got {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= _ID_LIMIT):
        raise EvaluationError(
            f"{image}: the {role} id map has ids outside 0..{_ID_LIMIT - 1} (min {array.min()}, max {array.max()})"
        )
    return array.astype(np.int64, copy=False)


def _normalize_categories(
    categories: Sequence[CategoryInfo] | Mapping[int, CategoryInfo],
) -> dict[int, CategoryInfo]:
    """Return the categories as an id-keyed dict, checking types and unique ids."""
    if isinstance(categories, Mapping):
        result: dict[int, CategoryInfo] = {}
        for key, info in categories.items():
            if not isinstance(info, CategoryInfo):
                raise EvaluationError(f"category {key!r} is not a CategoryInfo: {info!r}")
            if key != info.id:
                raise EvaluationError(f"categories mapping key {key!r} differs from its CategoryInfo id {info.id}")
            result[info.id] = info
        return result
    result = {}
    for info in categories:
        if not isinstance(info, CategoryInfo):
            raise EvaluationError(f"categories must hold CategoryInfo objects, got {info!r}")
        if info.id in result:
            raise EvaluationError(f"category id {info.id} appears twice in the category list")
        result[info.id] = info
    return result


# --------------------------------------------------------------------------------------------
# Accumulation
# --------------------------------------------------------------------------------------------


@dataclass
class _CategoryCounts:
    """Mutable TP/FP/FN counts and IoU sum of one category."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou: float = 0.0


@dataclass
class _ImageCounts:
    """Counts of one image, merged into the accumulator only once the image is fully valid."""

    tp: dict[int, list[float]] = field(default_factory=dict)
    fp: dict[int, int] = field(default_factory=dict)
    fn: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Table:
    """The pixel statistics of one image that the PQ rules read.

    Ids are segment ids (``VOID_ID`` is void). ``pairs`` maps ``(gt id, pred id)`` to the number of
    pixels with that pair of ids (only pairs that occur); ``pred_area`` is the PNG pixel count of
    every predicted segment (every id of ``pred_segs`` has one); ``gt_pixels`` the PNG pixel count of
    every ground-truth id in the PNG. Video windows build one table by summing their frames' tables.
    """

    gt_segs: Mapping[int, _Segment]
    pred_segs: Mapping[int, _Segment]
    pairs: Mapping[tuple[int, int], int]
    pred_area: Mapping[int, int]
    gt_pixels: Mapping[int, int]


def _tabulate(
    gt_ids: npt.NDArray[Any],
    gt_segments: Sequence[Mapping[str, Any]],
    pred_ids: npt.NDArray[Any],
    pred_segments: Sequence[Mapping[str, Any]],
    *,
    known: Mapping[int, CategoryInfo] | None,
    image: str,
) -> _Table:
    """Validate one image (see :meth:`PQAccumulator.add_image`) and count its pixels.

    ``known``: the categories a predicted segment may have (``None``: not checked here).

    :raises EvaluationError: as :meth:`PQAccumulator.add_image`.
    """
    gt = _as_id_map(gt_ids, role="ground-truth", image=image)
    pred = _as_id_map(pred_ids, role="prediction", image=image)
    if gt.shape != pred.shape:
        raise size_mismatch(image, (gt.shape[1], gt.shape[0]), (pred.shape[1], pred.shape[0]))
    gt_segs = _index_segments(gt_segments, role="ground-truth", image=image, with_area=True)
    pred_segs = _index_segments(pred_segments, role="prediction", image=image, with_area=False)

    # Prediction areas come from the PNG; check PNG ids <-> segments_info both ways.
    pred_area: dict[int, int] = {}
    labels, counts = np.unique(pred, return_counts=True)
    for segment_id, count in zip(labels.tolist(), counts.tolist(), strict=True):
        segment = pred_segs.get(segment_id)
        if segment is None:
            if segment_id == VOID_ID:
                continue
            raise EvaluationError(
                f"{image}: the prediction PNG contains segment id {segment_id} "
                f"({_rgb_text(segment_id)}, {count} pixels) that is not in the prediction "
                "segments_info; add a segments_info entry with this id or paint these "
                f"pixels with VOID (id {VOID_ID}, black)"
            )
        pred_area[segment_id] = count
        if known is not None and segment.category_id not in known:
            raise EvaluationError(
                f"{image}: prediction segment id {segment_id} has category_id "
                f"{segment.category_id}, which is not in the ground-truth categories; "
                "use one of the ground-truth category ids"
            )
    missing = [segment_id for segment_id in pred_segs if segment_id not in pred_area]
    if missing:
        raise EvaluationError(
            f"{image}: prediction segment id(s) {missing} are in the prediction "
            "segments_info but have no pixel in the prediction PNG "
            f"(expected colour {_rgb_text(missing[0])} for id {missing[0]}); remove these "
            "entries or paint their pixels in the PNG"
        )

    # Pixel counts of every (gt id, pred id) pair, in ascending (gt id, pred id) order.
    keys, key_counts = np.unique(gt * _ID_LIMIT + pred, return_counts=True)
    pairs: dict[tuple[int, int], int] = {
        (key // _ID_LIMIT, key % _ID_LIMIT): count
        for key, count in zip(keys.tolist(), key_counts.tolist(), strict=True)
    }
    gt_pixels: dict[int, int] = {}
    for (gt_id, _), count in pairs.items():
        gt_pixels[gt_id] = gt_pixels.get(gt_id, 0) + count
    return _Table(gt_segs=gt_segs, pred_segs=pred_segs, pairs=pairs, pred_area=pred_area, gt_pixels=gt_pixels)


def _match(table: _Table, *, image: str, gt_names: Mapping[int, str] | None = None) -> _ImageCounts:
    """Apply the panopticapi matching rules (module docstring) to one table.

    :raises EvaluationError: a ground-truth segment whose JSON ``area`` leaves no union.
    """
    gt_segs, pred_segs, pairs = table.gt_segs, table.pred_segs, table.pairs
    pred_area, gt_pixels = table.pred_area, table.gt_pixels
    result = _ImageCounts()
    gt_matched: set[int] = set()
    pred_matched: set[int] = set()
    for (gt_id, pred_id), inter in pairs.items():
        gt_seg = gt_segs.get(gt_id)
        pred_seg = pred_segs.get(pred_id)
        if gt_seg is None or pred_seg is None or gt_seg.iscrowd:
            continue
        if gt_seg.category_id != pred_seg.category_id:
            continue
        gt_area = gt_seg.area if gt_seg.area is not None else gt_pixels[gt_id]
        union = pred_area[pred_id] + gt_area - inter - pairs.get((VOID_ID, pred_id), 0)
        if union <= 0:
            name = (gt_names or {}).get(gt_id, f"ground-truth segment id {gt_id}")
            raise EvaluationError(
                f"{image}: {name} has JSON area {gt_area}, "
                f"inconsistent with its {gt_pixels.get(gt_id, 0)} PNG pixels; fix its 'area'"
            )
        iou = inter / union
        if iou > _MATCH_IOU:
            result.tp.setdefault(gt_seg.category_id, []).append(iou)
            gt_matched.add(gt_id)
            pred_matched.add(pred_id)

    # Unmatched gt: crowd regions are remembered (the last one per category wins), the
    # others are false negatives.
    crowd_of_category: dict[int, int] = {}
    for gt_id, gt_seg in gt_segs.items():
        if gt_id in gt_matched:
            continue
        if gt_seg.iscrowd:
            crowd_of_category[gt_seg.category_id] = gt_id
            continue
        result.fn[gt_seg.category_id] = result.fn.get(gt_seg.category_id, 0) + 1

    # Unmatched predictions: ignored when mostly on VOID + same-category crowd, else FP.
    for pred_id, pred_seg in pred_segs.items():
        if pred_id in pred_matched:
            continue
        ignorable = pairs.get((VOID_ID, pred_id), 0)
        crowd_id = crowd_of_category.get(pred_seg.category_id)
        if crowd_id is not None:
            ignorable += pairs.get((crowd_id, pred_id), 0)
        if ignorable / pred_area[pred_id] > _IGNORE_FRACTION:
            continue
        result.fp[pred_seg.category_id] = result.fp.get(pred_seg.category_id, 0) + 1
    return result


@dataclass
class PQAccumulator:
    """Accumulates per-category TP/FP/FN counts and IoU sums over images.

    Use one accumulator per evaluation run: call :meth:`add_image` for every image, then
    :meth:`report`. When ``categories`` is given, a predicted category id missing from it raises
    in :meth:`add_image`; otherwise the check happens in :meth:`report`.
    """

    categories: Sequence[CategoryInfo] | Mapping[int, CategoryInfo] | None = None
    n_images: int = field(default=0, init=False)
    _counts: dict[int, _CategoryCounts] = field(default_factory=dict, init=False, repr=False)
    _pred_category_seen: dict[int, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        """Normalise ``categories`` to an id-keyed dict."""
        if self.categories is not None:
            self.categories = _normalize_categories(self.categories)

    def add_image(
        self,
        gt_ids: npt.NDArray[Any],
        gt_segments: Sequence[Mapping[str, Any]],
        pred_ids: npt.NDArray[Any],
        pred_segments: Sequence[Mapping[str, Any]],
        *,
        image_name: str = "",
    ) -> None:
        """Add one image: its gt and predicted id maps (H, W) and their ``segments_info``.

        The accumulator is unchanged when this raises.

        Raises:
            EvaluationError: size mismatch, a predicted PNG id absent from ``pred_segments``, a
                ``pred_segments`` id absent from the PNG, an unknown predicted category (when
                categories are known), malformed segments or id maps.
        """
        image = image_name or "<unnamed image>"
        known = self.categories if isinstance(self.categories, dict) else None
        table = _tabulate(gt_ids, gt_segments, pred_ids, pred_segments, known=known, image=image)
        self._add_table(table, image=image)

    def _add_table(self, table: _Table, *, image: str, gt_names: Mapping[int, str] | None = None) -> None:
        """Match the segments of one validated :class:`_Table` (an image, or a video window whose
        frames' tables were summed) and merge its counts. ``gt_names`` names ground-truth ids in
        error messages (default: ``"ground-truth segment id N"``)."""
        result = _match(table, image=image, gt_names=gt_names)
        self._commit(result)
        for pred_id in table.pred_area:
            self._pred_category_seen.setdefault(
                table.pred_segs[pred_id].category_id, f"{image}: prediction segment id {pred_id}"
            )

    def _commit(self, image: _ImageCounts) -> None:
        """Merge one image's counts into the totals."""
        for category_id, ious in image.tp.items():
            counts = self._counts.setdefault(category_id, _CategoryCounts())
            counts.tp += len(ious)
            for iou in ious:
                counts.iou += iou
        for category_id, fp in image.fp.items():
            self._counts.setdefault(category_id, _CategoryCounts()).fp += fp
        for category_id, fn in image.fn.items():
            self._counts.setdefault(category_id, _CategoryCounts()).fn += fn
        self.n_images += 1

    def merge(self, other: PQAccumulator) -> None:
        """Add the totals of ``other`` (e.g. computed in another process) into this one."""
        for category_id, theirs in other._counts.items():
            mine = self._counts.setdefault(category_id, _CategoryCounts())
            mine.tp += theirs.tp
            mine.fp += theirs.fp
            mine.fn += theirs.fn
            mine.iou += theirs.iou
        for category_id, where in other._pred_category_seen.items():
            self._pred_category_seen.setdefault(category_id, where)
        self.n_images += other.n_images

    def report(self, categories: Sequence[CategoryInfo] | Mapping[int, CategoryInfo] | None = None) -> PQReport:
        """Compute per-category and All/Things/Stuff PQ, SQ, RQ.

        ``categories`` defaults to the ones given at construction. Categories accumulated but
        absent from ``categories`` (ground-truth only) are left out, as in the reference.

        Raises:
            EvaluationError: no categories known, a predicted category id not in
                ``categories``, or no category occurs at all (PQ undefined).
        """
        if categories is not None:
            cats = _normalize_categories(categories)
        elif isinstance(self.categories, dict):
            cats = self.categories
        else:
            raise EvaluationError("no categories: pass them to PQAccumulator(categories=...) or to report()")
        for category_id, where in self._pred_category_seen.items():
            if category_id not in cats:
                raise EvaluationError(
                    f"{where} has category_id {category_id}, which is not in the categories; "
                    "use one of the ground-truth category ids"
                )

        per_category: dict[int, PQStats] = {}
        for category_id in cats:
            counts = self._counts.get(category_id)
            if counts is None or counts.tp + counts.fp + counts.fn == 0:
                continue
            denominator = counts.tp + 0.5 * counts.fp + 0.5 * counts.fn
            per_category[category_id] = PQStats(
                pq=counts.iou / denominator,
                sq=counts.iou / counts.tp if counts.tp != 0 else 0.0,
                rq=counts.tp / denominator,
                tp=counts.tp,
                fp=counts.fp,
                fn=counts.fn,
            )
        if not per_category:
            raise EvaluationError(
                f"no category occurs in the evaluation of {self.n_images} image(s): every "
                "category has tp + fp + fn = 0 (no non-crowd ground-truth segment and no counted "
                "prediction), so PQ is undefined; check that the ground truth has segments and "
                "that its category ids match the category list"
            )
        things = [s for cid, s in per_category.items() if cats[cid].isthing]
        stuff = [s for cid, s in per_category.items() if not cats[cid].isthing]
        return PQReport(
            all=_average(list(per_category.values())),
            things=_average(things),
            stuff=_average(stuff),
            per_category=MappingProxyType(per_category),
            categories=MappingProxyType(dict(cats)),
            n_images=self.n_images,
        )


def _average(stats: Sequence[PQStats]) -> PQStats:
    """Plain mean of PQ/SQ/RQ over categories (sums of counts); zeros with n=0 when empty."""
    if not stats:
        return PQStats(pq=0.0, sq=0.0, rq=0.0, tp=0, fp=0, fn=0, n=0)
    pq = sq = rq = 0.0
    for item in stats:
        pq += item.pq
        sq += item.sq
        rq += item.rq
    n = len(stats)
    return PQStats(
        pq=pq / n,
        sq=sq / n,
        rq=rq / n,
        tp=sum(item.tp for item in stats),
        fp=sum(item.fp for item in stats),
        fn=sum(item.fn for item in stats),
        n=n,
    )


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _load_json(path: Path, role: str) -> dict[str, Any]:
    """Read a COCO panoptic JSON file (a dict with an ``annotations`` list)."""
    if path.is_dir():
        raise EvaluationError(f"{role} JSON file {path} is a folder: pass the JSON file (e.g. OUTDIR/panoptic.json)")
    if not path.is_file():
        raise EvaluationError(f"{role} JSON file {path} does not exist")
    try:
        with path.open("r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise EvaluationError(f"cannot read {role} JSON file {path}: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise EvaluationError(f"{role} JSON file {path} must be a COCO panoptic dict with an 'annotations' list")
    return data


def _categories_from_json(data: Mapping[str, Any], path: Path, role: str = "ground-truth") -> dict[int, CategoryInfo]:
    """Build the categories from the ``categories`` list of a COCO panoptic JSON (``role``: whose,
    for the message)."""
    raw = data.get("categories")
    if not isinstance(raw, list):
        raise EvaluationError(f"{role} JSON file {path} has no 'categories' list")
    infos: list[CategoryInfo] = []
    for position, entry in enumerate(raw):
        where = f"{path}: categories[{position}]"
        if not isinstance(entry, Mapping) or not all(k in entry for k in ("id", "isthing")):
            raise EvaluationError(f"{where} must be a dict with 'id', 'name' and 'isthing'")
        category_id = _as_int(entry["id"], "'id'", where)
        infos.append(
            CategoryInfo(
                id=category_id,
                name=str(entry.get("name", category_id)),
                isthing=entry["isthing"] == 1,
            )
        )
    try:
        return _normalize_categories(infos)
    except EvaluationError as error:
        raise EvaluationError(f"{path}: {error}") from error


def _annotation_field(annotation: object, key: str, path: Path, position: int) -> Any:
    """Return ``annotation[key]`` or raise a message naming the file and the entry."""
    if not isinstance(annotation, Mapping) or key not in annotation:
        raise EvaluationError(f"{path}: annotations[{position}] has no {key!r}")
    return annotation[key]


def size_mismatch(image: str, gt_size: tuple[int, int], pred_size: tuple[int, int]) -> EvaluationError:
    """The error for a prediction whose ``(width, height)`` is not the ground truth's."""
    return EvaluationError(
        f"{image}: prediction size {pred_size[0]}x{pred_size[1]} (WxH) differs from ground-truth size "
        f"{gt_size[0]}x{gt_size[1]}; a prediction must have the size of its ground-truth image"
    )


def check_annotation_pixels(width: int, height: int, max_pixels: int | None, where: str) -> None:
    """Refuse an annotated image whose file declares more than ``max_pixels`` pixels (``None`` or 0:
    no limit), before anything of that size is decoded or allocated.

    :param where: the file and the image, for the message (``"ground-truth CVAT export a.xml, image 'x'"``).
    :raises EvaluationError: naming ``where``, the declared size, the limit and the option that changes it.
    """
    if max_pixels and width * height > max_pixels:
        raise EvaluationError(
            f"{where} declares an image of {width} x {height} pixels ({width * height / 1e6:.4g} megapixels), over the "
            f"limit of {max_pixels / 1e6:.4g} megapixels for one annotated image: check that the file is the export you "
            "meant (a size this large is usually a damaged file), or raise the limit with --max-pixels N "
            "(max_pixels= in Python; 0 = no limit)"
        )


def png_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of an image file from its header (nothing is decoded), or ``None`` when it
    cannot be read as an image (the reader that decodes it says why)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the caller's limit decides
            with Image.open(path) as handle:
                return int(handle.width), int(handle.height)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _open_checked(
    path: Path, role: str, image: str, max_pixels: int | None, expected: tuple[int, int] | None
) -> Image.Image:
    """Open an annotation PNG (header only) and check its size against ``max_pixels`` and the
    ``(width, height)`` its JSON declares, before it is decoded.

    :raises EvaluationError: too large, of another size than declared, or not an image.
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            handle = Image.open(path)
    except Image.DecompressionBombError as error:
        raise EvaluationError(
            f"{image}: {role} PNG {path} is larger than Pillow decodes ({error}); ovpanoptic cannot lift Pillow's own limit"
        ) from None
    except OSError as error:
        raise EvaluationError(f"{image}: cannot read {role} PNG {path}: {error}") from error
    try:
        check_annotation_pixels(handle.width, handle.height, max_pixels, f"{image}: {role} PNG {path}")
        if expected is not None and (handle.width, handle.height) != expected:
            raise EvaluationError(
                f"{image}: {role} PNG {path} is {handle.width} x {handle.height} pixels, but its JSON declares "
                f"{expected[0]} x {expected[1]} (width x height): the PNG does not belong to this annotation; write "
                "the PNG again or correct the size in the JSON's 'images'"
            )
    except EvaluationError:
        handle.close()
        raise
    return handle


def _read_id_png(
    path: Path,
    role: str,
    image: str,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    expected: tuple[int, int] | None = None,
) -> npt.NDArray[np.int64]:
    """Read an RGB(A) or palette panoptic PNG as an (H, W) id map.

    :param max_pixels: refuse a PNG with more pixels, from its header, before decoding it.
    :param expected: the ``(width, height)`` its JSON declares, checked before decoding.
    """
    if not path.is_file():
        raise EvaluationError(f"{image}: {role} PNG {path} does not exist")
    try:
        with _open_checked(path, role, image, max_pixels, expected) as handle:
            handle.load()
            if handle.mode in ("P", "PA"):
                picture = handle.convert("RGBA")
            elif handle.mode in ("RGB", "RGBA"):
                picture = handle.copy()
            else:
                raise EvaluationError(
                    f"{image}: {role} PNG {path} has mode {handle.mode}; panoptic PNGs must be "
                    "RGB (id = R + 256*G + 256^2*B)"
                )
    except OSError as error:
        raise EvaluationError(f"{image}: cannot read {role} PNG {path}: {error}") from error
    array = np.asarray(picture, dtype=np.uint8)
    return rgb_to_id(array[..., :3])


def _category_key(name: str) -> str:
    """Names compare ignoring case, Unicode width/composition and repeated spaces."""
    return " ".join(unicodedata.normalize("NFKC", name).split()).casefold()


def _loose_key(name: str) -> str:
    """:func:`_category_key`, also ignoring ``-``/``_`` and COCO's ``-merged``/``-other``/``-stuff``
    suffixes (``grass-merged`` and ``sky-other-merged`` are "grass" and "sky" to a user)."""
    key = _category_key(name)
    for suffix in ("-merged", "-other", "-stuff"):
        key = key.removesuffix(suffix)
    return " ".join(key.replace("-", " ").replace("_", " ").split())


def _prediction_categories(pred_data: Mapping[str, Any], pred_path: Path) -> dict[int, str] | None:
    """``{id: name}`` of a prediction JSON's ``categories`` list, or ``None`` when it has none."""
    raw = pred_data.get("categories")
    if not isinstance(raw, list):
        return None
    pred: dict[int, str] = {}
    for position, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or "id" not in entry:
            raise EvaluationError(f"{pred_path}: categories[{position}] must be a dict with 'id' and 'name'")
        pred[_as_int(entry["id"], "'id'", f"{pred_path}: categories[{position}]")] = str(entry.get("name", entry["id"]))
    return pred


def _match_categories(
    gt: Mapping[int, CategoryInfo], pred: Mapping[int, str] | None, pred_source: str | Path, mode: str
) -> tuple[dict[int, int | None], list[str]]:
    """Map prediction category ids to ground-truth ids, by ``mode`` (``"id"`` or ``"name"``).

    :param pred: the prediction's ``{id: name}`` table, or ``None`` when it has none.
    :return: ``{pred id: gt id or None (ignored)}`` and notes for the report.
    :raises EvaluationError: ``"id"`` and a category whose name differs from the ground truth's
        under the same id (the predictions were made with another vocabulary); ``"name"`` and a
        prediction without a category table.
    """
    if pred is None:
        if mode == "name":
            raise EvaluationError(f"{pred_source} has no 'categories' list, so its categories cannot be matched by name")
        return {cid: cid for cid in gt}, []
    notes: list[str] = []
    if mode == "id":
        clashes = [(cid, name) for cid, name in pred.items() if cid in gt and _category_key(gt[cid].name) != _category_key(name)]
        if clashes:
            cid, name = clashes[0]
            raise EvaluationError(
                f"prediction category {cid} is {name!r} but ground-truth category {cid} is {gt[cid].name!r} "
                f"({len(clashes)} of {len(pred)} prediction categories differ by name): the predictions were made with "
                "another vocabulary. Evaluate with --match-categories name (match_categories='name') to pair categories "
                "by name, or predict with the ground truth's vocabulary"
            )
        mapping: dict[int, int | None] = {cid: cid for cid in gt}
        extra = sorted(cid for cid in pred if cid not in gt)
        if extra:
            notes.append(f"prediction categories not in the ground truth: {', '.join(f'{pred[c]!r} ({c})' for c in extra[:10])}")
        return mapping, notes
    exact: dict[str, int] = {}
    loose: dict[str, int] = {}
    for cid, info in gt.items():
        exact.setdefault(_category_key(info.name), cid)
        loose.setdefault(_loose_key(info.name), cid)
    mapping = {cid: exact.get(_category_key(name), loose.get(_loose_key(name))) for cid, name in pred.items()}
    unmatched_pred = [f"{pred[c]!r}" for c, g in mapping.items() if g is None]
    matched_gt = {g for g in mapping.values() if g is not None}
    unmatched_gt = [f"{gt[c].name!r}" for c in gt if c not in matched_gt]
    pairs = [f"{pred[c]!r} -> {gt[g].name!r}" for c, g in mapping.items() if g is not None and _category_key(pred[c]) != _category_key(gt[g].name)]
    notes.append(
        f"categories matched by name: {len(matched_gt)} of {len(gt)} ground-truth categories"
        + (f" ({', '.join(pairs[:10])})" if pairs else "")
    )
    if unmatched_pred:
        notes.append(f"prediction categories without a ground-truth namesake (their segments are ignored): {', '.join(unmatched_pred[:20])}")
    if unmatched_gt:
        shown = ", ".join(unmatched_gt[:20]) + (f" and {len(unmatched_gt) - 20} more" if len(unmatched_gt) > 20 else "")
        notes.append(f"ground-truth categories no prediction category is named after (never predicted): {shown}")
    if not matched_gt:
        raise EvaluationError(
            f"no prediction category of {pred_source} has the name of a ground-truth category: nothing can be evaluated"
        )
    return mapping, notes


def _remap_segments(segments: Any, mapping: Mapping[int, int | None]) -> tuple[Any, set[int]]:
    """``segments_info`` with prediction category ids mapped to ground-truth ids, and the segment ids
    of unmatched categories, which are dropped (the caller paints their pixels void)."""
    if not isinstance(segments, list):
        return segments, set()
    out = []
    dropped: set[int] = set()
    for segment in segments:
        if isinstance(segment, Mapping) and "category_id" in segment and isinstance(segment["category_id"], int):
            target = mapping.get(segment["category_id"], segment["category_id"])
            if target is None:
                if isinstance(segment.get("id"), int):
                    dropped.add(segment["id"])
                continue
            segment = {**segment, "category_id": target}
        out.append(segment)
    return out, dropped


def evaluate_panoptic(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    match_categories: str = "id",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> PQReport:
    """Evaluate COCO-panoptic predictions against ground truth, like ``pq_compute``.

    Categories come from the ground-truth JSON. With ``match_categories="id"`` (the default) a
    prediction category table, when the prediction JSON has one, must agree with the ground truth's
    by name for every shared id, or the evaluation is refused (predictions made with another
    vocabulary would otherwise be scored against the wrong classes). With ``"name"``, prediction
    categories are paired with ground-truth categories of the same name (ignoring case, Unicode
    width and repeated spaces); segments of prediction categories without a namesake are ignored,
    and the report's ``notes`` list the unmatched categories on both sides. Ground-truth annotations are matched to
    prediction annotations by ``image_id`` (predictions for images absent from the ground
    truth are ignored; a repeated prediction ``image_id`` keeps the last one). PNGs are read
    from ``gt_dir`` / ``pred_dir`` by each annotation's ``file_name``. ``progress(done, total)``
    is called after each image. A PNG over ``max_pixels`` pixels (``None`` or 0: no limit), or of
    another size than the other side's, is refused from its header, before it is decoded.

    Raises:
        EvaluationError: a missing file or folder, a ground-truth image without prediction (or
            image ids of another type than the ground truth's), a PNG over the pixel limit or of
            another size than the other side's, any :meth:`PQAccumulator.add_image` error, or no
            category occurring at all.
    """
    gt_json_path, pred_json_path = Path(gt_json), Path(pred_json)
    gt_folder, pred_folder = Path(gt_dir), Path(pred_dir)
    if match_categories not in ("id", "name"):
        raise EvaluationError(f"match_categories must be 'id' or 'name', got {match_categories!r}")
    gt_data = _load_json(gt_json_path, "ground-truth")
    pred_data = _load_json(pred_json_path, "prediction")
    categories = _categories_from_json(gt_data, gt_json_path)
    mapping, notes = _match_categories(
        categories, _prediction_categories(pred_data, pred_json_path), pred_json_path, match_categories
    )
    for folder, role in ((gt_folder, "ground-truth"), (pred_folder, "prediction")):
        if not folder.is_dir():
            raise EvaluationError(f"{role} PNG folder {folder} does not exist")

    pred_by_image: dict[Any, tuple[Mapping[str, Any], int]] = {}
    for position, annotation in enumerate(pred_data["annotations"]):
        image_id = _annotation_field(annotation, "image_id", pred_json_path, position)
        if isinstance(image_id, list | dict):
            raise EvaluationError(f"{pred_json_path}: annotations[{position}] has a bad image_id")
        pred_by_image[image_id] = (annotation, position)

    jobs: list[tuple[str, Any, str, Any, str, set[int]]] = []
    renamed: list[str] = []
    for position, gt_annotation in enumerate(gt_data["annotations"]):
        image_id = _annotation_field(gt_annotation, "image_id", gt_json_path, position)
        gt_file = _annotation_field(gt_annotation, "file_name", gt_json_path, position)
        gt_segments = _annotation_field(gt_annotation, "segments_info", gt_json_path, position)
        if isinstance(image_id, list | dict):
            raise EvaluationError(f"{gt_json_path}: annotations[{position}] has a bad image_id")
        if image_id not in pred_by_image:
            same_text = [k for k in pred_by_image if str(k) == str(image_id)]
            if same_text:
                raise EvaluationError(
                    f"no prediction for the ground-truth image {gt_file}: the ground truth's image_id is {image_id!r} "
                    f"({type(image_id).__name__}) and {pred_json_path} has {same_text[0]!r} ({type(same_text[0]).__name__}); "
                    "image ids must have the same type in both files (COCO uses integers)"
                )
            pred_types = sorted({type(k).__name__ for k in pred_by_image} - {type(image_id).__name__})
            if pred_types:
                shown = ", ".join(repr(k) for k in list(pred_by_image)[:3])
                raise EvaluationError(
                    f"no prediction for the ground-truth image {gt_file}: the ground truth's image_id is {image_id!r} "
                    f"({type(image_id).__name__}), and {pred_json_path} has image_ids of type {', '.join(pred_types)} "
                    f"({shown}); image ids pair only when value and type are equal (COCO uses integers): write each "
                    "prediction's image_id as the ground truth's id of the same image, or compare by file name "
                    "with --gt GT.json --pred PRED.json"
                )
            raise EvaluationError(
                f"no prediction for the ground-truth image {gt_file} (image_id {image_id!r}): "
                f"{pred_json_path} has no annotation with this image_id; add one (an empty "
                "segments_info and an all-black PNG if nothing is predicted)"
            )
        pred_annotation, pred_position = pred_by_image[image_id]
        pred_file = _annotation_field(pred_annotation, "file_name", pred_json_path, pred_position)
        pred_segments, dropped = _remap_segments(
            _annotation_field(pred_annotation, "segments_info", pred_json_path, pred_position), mapping
        )
        name = f"image_id {image_id!r} (gt {gt_file}, pred {pred_file})"
        if Path(str(gt_file)).stem != Path(str(pred_file)).stem:
            renamed.append(f"{gt_file} <-> {pred_file}")
        jobs.append((str(gt_file), gt_segments, str(pred_file), pred_segments, name, dropped))

    accumulator = PQAccumulator(categories=categories)
    for done, (gt_file, gt_segments, pred_file, pred_segments, name, dropped) in enumerate(jobs, start=1):
        gt_size, pred_size = png_size(gt_folder / gt_file), png_size(pred_folder / pred_file)
        if gt_size is not None and pred_size is not None and gt_size != pred_size:
            raise size_mismatch(name, gt_size, pred_size)
        gt_ids = _read_id_png(gt_folder / gt_file, "ground-truth", name, max_pixels)
        pred_ids = _read_id_png(pred_folder / pred_file, "prediction", name, max_pixels)
        if dropped:
            pred_ids[np.isin(pred_ids, list(dropped))] = VOID_ID
        accumulator.add_image(gt_ids, gt_segments, pred_ids, pred_segments, image_name=name)
        if progress is not None:
            progress(done, len(jobs))
    if renamed:
        notes.append(
            f"{len(renamed)} image(s) paired by image_id have differently named PNGs ({', '.join(renamed[:3])}"
            f"{', ...' if len(renamed) > 3 else ''}): check that the ids name the same images"
        )
    report = accumulator.report()
    return dataclasses.replace(report, notes=tuple(notes)) if notes else report
