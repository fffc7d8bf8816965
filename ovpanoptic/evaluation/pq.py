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
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from ..constants import DEFAULT_MAX_PIXELS, ID_BASE, VOID_ID
from ..errors import EvaluationError
from ..formats.common import (
    ID_LIMIT,
    CategoryInfo,
    as_int,
    categories_from_json,
    check_annotation_pixels,
    id_to_rgb,
    load_json,
    normalize_categories,
    png_size,
    read_id_png,
    rgb_text,
    rgb_to_id,
    size_mismatch,
)
from .categories import pair_categories, prediction_categories, remap_segments

__all__ = [
    "ID_BASE",
    "VOID_ID",
    "CategoryInfo",
    "check_annotation_pixels",
    "EvaluationError",
    "PQAccumulator",
    "PQReport",
    "PQStats",
    "PixelTable",
    "SegmentInfo",
    "evaluate_panoptic",
    "id_to_rgb",
    "index_segments",
    "rgb_to_id",
    "tabulate",
]

#: A (gt, pred) pair is a match when its IoU is strictly greater than this.
_MATCH_IOU: float = 0.5

#: An unmatched prediction is ignored when strictly more than this fraction is VOID/crowd.
_IGNORE_FRACTION: float = 0.5


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
# Input normalisation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentInfo:
    """The fields of a ``segments_info`` entry that the evaluation uses."""

    category_id: int
    iscrowd: bool
    area: int | float | None


def index_segments(
    segments: Sequence[Mapping[str, Any]], *, role: str, image: str, with_area: bool
) -> dict[int, SegmentInfo]:
    """Index ``segments_info`` by segment id (a repeated id keeps its last entry, as the reference).

    ``with_area`` keeps the JSON ``area`` (used for ground truth only).
    """
    if isinstance(segments, str | bytes) or not isinstance(segments, Iterable):
        raise EvaluationError(f"{image}: {role} segments_info must be a list of segment dicts")
    indexed: dict[int, SegmentInfo] = {}
    for position, segment in enumerate(segments):
        where = f"{image}: {role} segments_info[{position}]"
        if not isinstance(segment, Mapping):
            raise EvaluationError(f"{where} must be a dict, got {type(segment).__name__}")
        for key in ("id", "category_id"):
            if key not in segment:
                raise EvaluationError(f"{where} has no {key!r} key; every segment needs one")
        segment_id = as_int(segment["id"], "'id'", where)
        category_id = as_int(segment["category_id"], "'category_id'", where)
        iscrowd = bool(segment.get("iscrowd", 0) == 1)
        area: int | float | None = None
        if with_area and segment.get("area") is not None:
            raw_area = segment["area"]
            if isinstance(raw_area, bool) or not isinstance(raw_area, numbers.Real):
                raise EvaluationError(f"{where} (segment id {segment_id}): 'area' must be a number, got {raw_area!r}")
            area = int(raw_area) if isinstance(raw_area, numbers.Integral) else float(raw_area)
        indexed[segment_id] = SegmentInfo(category_id=category_id, iscrowd=iscrowd, area=area)
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
    if array.size and (array.min() < 0 or array.max() >= ID_LIMIT):
        raise EvaluationError(
            f"{image}: the {role} id map has ids outside 0..{ID_LIMIT - 1} (min {array.min()}, max {array.max()})"
        )
    return array.astype(np.int64, copy=False)


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
class PixelTable:
    """The pixel statistics of one image that the PQ rules read.

    Ids are segment ids (``VOID_ID`` is void). ``pairs`` maps ``(gt id, pred id)`` to the number of
    pixels with that pair of ids (only pairs that occur); ``pred_area`` is the PNG pixel count of
    every predicted segment (every id of ``pred_segs`` has one); ``gt_pixels`` the PNG pixel count of
    every ground-truth id in the PNG. Video windows build one table by summing their frames' tables.
    """

    gt_segs: Mapping[int, SegmentInfo]
    pred_segs: Mapping[int, SegmentInfo]
    pairs: Mapping[tuple[int, int], int]
    pred_area: Mapping[int, int]
    gt_pixels: Mapping[int, int]


def tabulate(
    gt_ids: npt.NDArray[Any],
    gt_segments: Sequence[Mapping[str, Any]],
    pred_ids: npt.NDArray[Any],
    pred_segments: Sequence[Mapping[str, Any]],
    *,
    known: Mapping[int, CategoryInfo] | None,
    image: str,
) -> PixelTable:
    """Validate one image (see :meth:`PQAccumulator.add_image`) and count its pixels.

    ``known``: the categories a predicted segment may have (``None``: not checked here).

    :raises EvaluationError: as :meth:`PQAccumulator.add_image`.
    """
    gt = _as_id_map(gt_ids, role="ground-truth", image=image)
    pred = _as_id_map(pred_ids, role="prediction", image=image)
    if gt.shape != pred.shape:
        raise size_mismatch(image, (gt.shape[1], gt.shape[0]), (pred.shape[1], pred.shape[0]))
    gt_segs = index_segments(gt_segments, role="ground-truth", image=image, with_area=True)
    pred_segs = index_segments(pred_segments, role="prediction", image=image, with_area=False)

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
                f"({rgb_text(segment_id)}, {count} pixels) that is not in the prediction "
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
            f"(expected colour {rgb_text(missing[0])} for id {missing[0]}); remove these "
            "entries or paint their pixels in the PNG"
        )

    # Pixel counts of every (gt id, pred id) pair, in ascending (gt id, pred id) order.
    keys, key_counts = np.unique(gt * ID_LIMIT + pred, return_counts=True)
    pairs: dict[tuple[int, int], int] = {
        (key // ID_LIMIT, key % ID_LIMIT): count
        for key, count in zip(keys.tolist(), key_counts.tolist(), strict=True)
    }
    gt_pixels: dict[int, int] = {}
    for (gt_id, _), count in pairs.items():
        gt_pixels[gt_id] = gt_pixels.get(gt_id, 0) + count
    return PixelTable(gt_segs=gt_segs, pred_segs=pred_segs, pairs=pairs, pred_area=pred_area, gt_pixels=gt_pixels)


def _match(table: PixelTable, *, image: str, gt_names: Mapping[int, str] | None = None) -> _ImageCounts:
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
            self.categories = normalize_categories(self.categories)

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
        table = tabulate(gt_ids, gt_segments, pred_ids, pred_segments, known=known, image=image)
        self._add_table(table, image=image)

    def _add_table(self, table: PixelTable, *, image: str, gt_names: Mapping[int, str] | None = None) -> None:
        """Match the segments of one validated :class:`PixelTable` (an image, or a video window whose
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
            cats = normalize_categories(categories)
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


def annotation_field(annotation: object, key: str, path: Path, position: int) -> Any:
    """Return ``annotation[key]`` or raise a message naming the file and the entry."""
    if not isinstance(annotation, Mapping) or key not in annotation:
        raise EvaluationError(f"{path}: annotations[{position}] has no {key!r}")
    return annotation[key]


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
    gt_data = load_json(gt_json_path, "ground-truth")
    pred_data = load_json(pred_json_path, "prediction")
    categories = categories_from_json(gt_data, gt_json_path)
    mapping, notes = pair_categories(
        categories, prediction_categories(pred_data, pred_json_path), pred_json_path, match_categories
    )
    for folder, role in ((gt_folder, "ground-truth"), (pred_folder, "prediction")):
        if not folder.is_dir():
            raise EvaluationError(f"{role} PNG folder {folder} does not exist")

    pred_by_image: dict[Any, tuple[Mapping[str, Any], int]] = {}
    for position, annotation in enumerate(pred_data["annotations"]):
        image_id = annotation_field(annotation, "image_id", pred_json_path, position)
        if isinstance(image_id, list | dict):
            raise EvaluationError(f"{pred_json_path}: annotations[{position}] has a bad image_id")
        pred_by_image[image_id] = (annotation, position)

    jobs: list[tuple[str, Any, str, Any, str, set[int]]] = []
    renamed: list[str] = []
    for position, gt_annotation in enumerate(gt_data["annotations"]):
        image_id = annotation_field(gt_annotation, "image_id", gt_json_path, position)
        gt_file = annotation_field(gt_annotation, "file_name", gt_json_path, position)
        gt_segments = annotation_field(gt_annotation, "segments_info", gt_json_path, position)
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
        pred_file = annotation_field(pred_annotation, "file_name", pred_json_path, pred_position)
        pred_segments, dropped = remap_segments(
            annotation_field(pred_annotation, "segments_info", pred_json_path, pred_position), mapping
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
        gt_ids = read_id_png(gt_folder / gt_file, "ground-truth", name, max_pixels)
        pred_ids = read_id_png(pred_folder / pred_file, "prediction", name, max_pixels)
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
