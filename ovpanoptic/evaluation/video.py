"""Video panoptic metrics: VPQ, STQ, and the evaluation of a video panoptic result.

Both files are in the video panoptic format of :mod:`ovpanoptic.formats.video_panoptic`: COCO panoptic JSON + PNGs
with a ``video_id`` and a ``frame_index`` per image, where a segment id names the same object in
every frame of a video. Ground-truth and prediction videos pair by ``video_id``, frames by
``frame_index``. All values are fractions in ``[0, 1]``.

**VPQ** -- Video Panoptic Quality, D. Kim, S. Woo, J.-Y. Lee, I. S. Kweon, "Video Panoptic
Segmentation", CVPR 2020 (arXiv:2006.11339), with the Cityscapes-VPS benchmark. For a *span*
``k`` (a number of consecutive frames of the files), every window of ``k`` consecutive frames of a
video (frames ``t .. t+k-1`` for ``t = 0 .. T-k``, stride 1) is scored as one image whose segments
are *tubes*: the pixels of all the window's frames that carry one segment id (and one category,
see below) in the ground truth, resp. the prediction. Tubes are matched and counted with the PQ
rules of :mod:`.pq` (panopticapi): a (gt, pred) tube pair of one category is a true positive when
``IoU > 0.5``, with ``IoU = inter / (pred + gt - inter - pred pixels on gt void)``; unmatched
non-crowd gt tubes are false negatives; an unmatched prediction tube is ignored when more than
half of it lies on gt void plus the gt crowd region of its category, else it is a false positive.
TP, FP, FN and IoU sums are accumulated per category over all windows of all videos, and
``VPQ^k`` per category, All, Things and Stuff follow as PQ does. ``VPQ`` is the mean of
``VPQ^k`` over the spans. This is the concatenation the reference implementations use (the
window's frames side by side, scored by image PQ), computed here by summing per-frame pixel
tables: a window keeps its frames' (small) pixel tables, never their pixels.

*Spans.* The paper's ``k in {0, 5, 10, 15}`` are frame *offsets* on Cityscapes-VPS, whose 30-frame
clips are annotated every 5th frame: a window reaching ``k`` frames ahead holds ``k/5 + 1``
annotated frames, i.e. windows of 1, 2, 3, 4 annotated frames. Here a span is a window length
counted in the frames present in the files (``spans=(1, 2, 3, 4)`` on Cityscapes-VPS's annotated
frames reproduces the paper's protocol). The default, :data:`DEFAULT_SPANS` ``(1, 5, 10, 15)``,
suits densely labelled videos. A span longer than a video is clipped to the video's length (the
video is then one window for that span), so short videos still count in every span.

*A class change inside a track* (the same id with different categories in different frames of a
window, common in open-vocabulary predictions): the tube of a segment is the pixels with the
same id **and** the same category, so a track labelled "car" in two frames and "truck" in one
is a "car" tube and a separate "truck" tube. This is what datasets whose ids encode the class
(``class * divisor + instance``, Cityscapes-VPS, KITTI-STEP) mean by "same id", it reduces to
PQ in a single frame, and it charges a class flip to both the IoU and the matching. Likewise a
ground-truth id that is crowd in some frames is a separate crowd tube there. *Crowd regions*:
as panopticapi, the crowd region of a category in a frame is its last-listed crowd segment; a
window's crowd region of a category is the union of its frames' crowd regions.

**STQ** -- Segmentation and Tracking Quality, M. Weber et al., "STEP: Segmenting and Tracking
Every Pixel", NeurIPS 2021 Datasets and Benchmarks track (arXiv:2102.11859). ``STQ = sqrt(AQ *
SQ)``, per video and over the dataset, with no threshold and no matching:

* ``SQ`` is the mean IoU over semantic classes (the categories), from a class confusion matrix
  accumulated over every frame of a video (over every frame of every video for the dataset). A
  pixel's class is the category of its segment, crowd included; ground-truth void pixels (id 0 or
  an id without a ``segments_info`` entry) are ignored; a prediction's void pixel on a labelled
  pixel is a false negative of the gt class. The mean runs over the classes with a non-zero union
  (``TP + FP + FN > 0``). Void is not a class (deeplab2's code also averages in a void column,
  IoU 0, when predictions leave labelled pixels void; the paper's mIoU does not).
* ``AQ = 1/|G| * sum_g 1/|g| * sum_{p : |p ∩ g| > 0} TPA(p, g) * IoU_id(p, g)``, with
  ``IoU_id = TPA / (TPA + FPA + FNA)``, ``TPA = |p ∩ g|``, ``FPA = |p \\ g|``, ``FNA = |g \\ p|``.
  A track is the set of pixels, over all frames of one video, of one segment id of one *thing*
  category (ground truth: non-crowd segments; prediction: segments whose category is a thing).
  The association is class-agnostic, as in the paper: a pred track overlapping a gt track counts
  whatever their categories (classes are SQ's business). Pixels on a ground-truth crowd region
  count for no track; a prediction's pixels on ground-truth void count in ``|p|`` (as in the
  authors' reference code). ``|G|`` is the number of ground-truth tracks with at least one pixel.
* *Aggregation*: per video, AQ over that video's tracks and SQ over its frames. For the dataset,
  as the authors' code does, AQ sums ``1/|g| * sum_p ...`` over the tracks of all videos and
  divides by the number of all tracks (each track weighs the same), and SQ is the mean IoU of the
  confusion matrix summed over all videos; neither is a mean of per-video values.
* AQ is undefined (``None``) without ground-truth thing tracks (e.g. stuff-only videos), SQ without
  any class; STQ is then ``None`` too (the reference code would report 0).

**Temporal consistency** of the prediction: see :mod:`.consistency`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..constants import DEFAULT_MAX_PIXELS, VOID_ID
from ..formats.common import CategoryInfo, EvaluationError
from ..formats.video_panoptic import (
    VideoFrame,
    VideoFrameRecord,
    VideoId,
    VideoPanoptic,
    list_ids,
    read_video_panoptic,
)
from .categories import pair_categories, prediction_categories, remap_segments
from .consistency import (
    DEFAULT_CONSISTENCY_THRESHOLD,
    ClassChange,
    ConsistencyIssue,
    ConsistencyReport,
    TrackConsistency,
    VideoConsistency,
    check_temporal_consistency,
    check_threshold,
    combine_reports,
    json_category_names,
)
from .pq import PixelTable, PQAccumulator, PQReport, SegmentInfo, tabulate

__all__ = [
    "DEFAULT_SPANS",
    "ClassChange",
    "ConsistencyIssue",
    "ConsistencyReport",
    "STQReport",
    "STQStats",
    "TrackConsistency",
    "VPQReport",
    "VideoFrame",
    "VideoFrameRecord",
    "VideoId",
    "VideoPanoptic",
    "VideoReport",
    "check_temporal_consistency",
    "evaluate_video",
    "read_video_panoptic",
]

#: Default VPQ spans: window lengths in frames of the files (module docstring, "Spans").
DEFAULT_SPANS: tuple[int, ...] = (1, 5, 10, 15)


# --------------------------------------------------------------------------------------------
# Report types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VPQReport:
    """VPQ of an evaluation (module docstring).

    ``per_span[k]`` is the :class:`~.pq.PQReport` of span ``k`` (its ``pq`` values are ``VPQ^k``,
    its ``n_images`` the number of windows scored). ``all`` is the mean of ``per_span[k].all.pq``
    over the spans; ``things`` / ``stuff`` the mean over the spans where the group has a counted
    category (``None`` when none has); ``per_category[c]`` the mean of category ``c``'s ``VPQ^k``
    over the spans where ``c`` is counted (``tp + fp + fn > 0``).
    """

    spans: tuple[int, ...]
    per_span: Mapping[int, PQReport]
    all: float
    things: float | None
    stuff: float | None
    per_category: Mapping[int, float]

    def __post_init__(self) -> None:
        """Check that every span has its report."""
        if tuple(self.per_span) != self.spans:
            raise EvaluationError(
                f"VPQReport.per_span must hold the spans {self.spans} in order, got {tuple(self.per_span)}"
            )


@dataclass(frozen=True)
class STQStats:
    """STQ, AQ and SQ of one video or of a dataset (``None`` where undefined, module docstring).

    ``n_tracks``: ground-truth thing tracks (AQ's ``|G|``); ``n_frames``: frames accumulated;
    ``class_iou``: the IoU of every class counted in SQ, by category id.
    """

    stq: float | None
    aq: float | None
    sq: float | None
    n_tracks: int
    n_frames: int
    class_iou: Mapping[int, float]

    def to_dict(self, *, percent: bool = False) -> dict[str, Any]:
        """Return STQ/AQ/SQ and the counts as a JSON-ready dict (``class_iou`` left out)."""
        scale = 100.0 if percent else 1.0
        return {
            "stq": _scaled(self.stq, scale),
            "aq": _scaled(self.aq, scale),
            "sq": _scaled(self.sq, scale),
            "n_tracks": self.n_tracks,
            "n_classes": len(self.class_iou),
            "n_frames": self.n_frames,
        }


@dataclass(frozen=True)
class STQReport:
    """STQ of the dataset (``overall``, accumulated over all videos) and of each video."""

    overall: STQStats
    per_video: Mapping[VideoId, STQStats]


@dataclass(frozen=True)
class VideoReport:
    """Result of :func:`evaluate_video`.

    ``vpq`` and ``stq`` score the prediction against the ground truth; ``consistency`` is the
    temporal consistency of the prediction alone (every frame of every evaluated prediction video,
    including frames the ground truth does not annotate). ``categories`` are the ground truth's.
    """

    vpq: VPQReport
    stq: STQReport
    consistency: ConsistencyReport
    categories: Mapping[int, CategoryInfo]
    n_videos: int
    n_frames: int
    notes: tuple[str, ...] = ()

    def _keys(self, category_ids: Iterable[int]) -> dict[int, str]:
        """A unique display/JSON key per category id: its name, or ``"name [id N]"`` when shared."""
        ids = list(category_ids)
        names = [self.categories[cid].name for cid in ids]
        return {
            cid: name if names.count(name) == 1 else f"{name} [id {cid}]" for cid, name in zip(ids, names, strict=True)
        }

    def _sorted(self, category_ids: Iterable[int]) -> list[int]:
        """Category ids sorted by name, then id."""
        return sorted(category_ids, key=lambda cid: (self.categories[cid].name, cid))

    def to_dict(self, *, percent: bool = False) -> dict[str, Any]:
        """Return a JSON-ready dict of the report.

        Layout::

            {"n_videos": int, "n_frames": int,
             "vpq": {"spans": [k, ...], "all": x, "things": x | None, "stuff": x | None,
                     "per_category": {name: {"id", "isthing", "vpq"}},
                     "per_span": {"k": PQReport.to_dict()}},
             "stq": {"stq", "aq", "sq", "n_tracks", "n_classes", "n_frames",
                     "class_iou": {name: x}, "per_video": {"video id": {...}}},
             "consistency": ConsistencyReport.to_dict(),
             "notes": [...]}  # only when there are notes

        Categories are ordered by name; video ids become strings. ``percent=True`` scales every
        quality (VPQ, PQ/SQ/RQ, STQ/AQ/SQ, IoUs, the consistency threshold) by 100.
        """
        scale = 100.0 if percent else 1.0
        vpq_ids = self._sorted(self.vpq.per_category)
        vpq_keys = self._keys(vpq_ids)
        iou_ids = self._sorted(self.stq.overall.class_iou)
        iou_keys = self._keys(iou_ids)
        result: dict[str, Any] = {
            "n_videos": self.n_videos,
            "n_frames": self.n_frames,
            "vpq": {
                "spans": list(self.vpq.spans),
                "all": self.vpq.all * scale,
                "things": _scaled(self.vpq.things, scale),
                "stuff": _scaled(self.vpq.stuff, scale),
                "per_category": {
                    vpq_keys[cid]: {
                        "id": cid,
                        "isthing": self.categories[cid].isthing,
                        "vpq": self.vpq.per_category[cid] * scale,
                    }
                    for cid in vpq_ids
                },
                "per_span": {str(k): report.to_dict(percent=percent) for k, report in self.vpq.per_span.items()},
            },
            "stq": {
                **self.stq.overall.to_dict(percent=percent),
                "class_iou": {iou_keys[cid]: self.stq.overall.class_iou[cid] * scale for cid in iou_ids},
                "per_video": {str(vid): stats.to_dict(percent=percent) for vid, stats in self.stq.per_video.items()},
            },
            "consistency": self.consistency.to_dict(percent=percent),
        }
        if self.notes:
            result["notes"] = list(self.notes)
        return result

    def format_table(self) -> str:
        """Return a human-readable report (values in percent, 3 decimals; ``-`` where undefined).

        VPQ: All / Things / Stuff, then one row per category, with one column per span and the
        mean; STQ / AQ / SQ of the dataset and of each video; the consistency summary and issues.
        """
        spans = self.vpq.spans
        ids = self._sorted(self.vpq.per_category)
        keys = self._keys(ids)
        width = max([10, *(len(key) for key in keys.values())])
        columns = "  ".join(f"{'VPQ' + str(k):>8s}" for k in spans) + f"  {'VPQ':>8s}"
        lines = [
            f"VPQ over {self.n_videos} video(s), {self.n_frames} frame(s); spans are window lengths in frames",
            f"{'':{width}s} | {columns}",
            "-" * (width + 1) + "+" + "-" * (len(columns) + 1),
        ]
        groups: list[tuple[str, list[float | None], float | None]] = [
            ("All", [r.all.pq for r in self.vpq.per_span.values()], self.vpq.all),
            ("Things", [r.things.pq if r.things.n else None for r in self.vpq.per_span.values()], self.vpq.things),
            ("Stuff", [r.stuff.pq if r.stuff.n else None for r in self.vpq.per_span.values()], self.vpq.stuff),
        ]
        for label, values, mean in groups:
            lines.append(f"{label:{width}s} | " + "  ".join(_pct(v) for v in [*values, mean]))
        lines += [
            "",
            f"{'category':{width}s} | " + "  ".join(f"{'VPQ' + str(k):>8s}" for k in spans) + f"  {'VPQ':>8s}  kind",
        ]
        for cid in ids:
            values = [r.per_category[cid].pq if cid in r.per_category else None for r in self.vpq.per_span.values()]
            kind = "thing" if self.categories[cid].isthing else "stuff"
            lines.append(
                f"{keys[cid]:{width}s} | "
                + "  ".join(_pct(v) for v in [*values, self.vpq.per_category[cid]])
                + f"  {kind}"
            )
        lines += ["", f"{'STQ':{width}s} | {'STQ':>8s}  {'AQ':>8s}  {'SQ':>8s}  {'tracks':>6s}  {'frames':>6s}"]
        lines.append("-" * (width + 1) + "+" + "-" * 47)
        rows = [("all videos", self.stq.overall), *((f"video {vid}", s) for vid, s in self.stq.per_video.items())]
        for label, stats in rows:
            lines.append(
                f"{label:{width}s} | {_pct(stats.stq)}  {_pct(stats.aq)}  {_pct(stats.sq)}  "
                f"{stats.n_tracks:6d}  {stats.n_frames:6d}"
            )
        lines += ["", self.consistency.format_table(max_rows=20)]
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def _scaled(value: float | None, scale: float) -> float | None:
    """``value * scale``, keeping ``None``."""
    return None if value is None else value * scale


def _pct(value: float | None) -> str:
    """A fraction as an 8-wide percentage, ``-`` when undefined."""
    return f"{'-':>8s}" if value is None else f"{100 * value:8.3f}"


# --------------------------------------------------------------------------------------------
# VPQ: frame tables keyed by tube, summed over windows
# --------------------------------------------------------------------------------------------

#: A tube key: ``("seg", id, category)`` for a segment, ``("crowd", category)`` for a window's
#: crowd region of a category, ``("other",)`` for ground-truth pixels that are neither void nor a
#: counted segment; ``None`` is void.
_Key = tuple[Any, ...] | None
_OTHER: tuple[str] = ("other",)


@dataclass(frozen=True)
class _FrameTubes:
    """One frame's pixel table with ids replaced by tube keys (see :data:`_Key`).

    ``gt_segments``: key -> (category, iscrowd, area) of the frame's ground-truth segments, in the
    frame's ``segments_info`` order (area: JSON ``area``, else PNG pixels); ``pred_segments``:
    key -> category; ``pred_area``: key -> PNG pixels; ``pairs``: (gt key, pred key) -> pixels.
    """

    gt_segments: Mapping[_Key, tuple[int, bool, float]]
    pred_segments: Mapping[_Key, int]
    pred_area: Mapping[_Key, int]
    pairs: Mapping[tuple[_Key, _Key], int]
    frame_index: int


def _frame_tubes(table: PixelTable, frame_index: int) -> _FrameTubes:
    """Re-key one frame's validated PQ table by tube (module docstring: class changes, crowd)."""
    crowd_region: dict[int, int] = {}
    for gt_id, segment in table.gt_segs.items():
        if segment.iscrowd:
            crowd_region[segment.category_id] = gt_id  # the last listed crowd segment wins, as in panopticapi
    gt_key: dict[int, _Key] = {VOID_ID: None}
    gt_segments: dict[_Key, tuple[int, bool, float]] = {}
    for gt_id, segment in table.gt_segs.items():
        area = segment.area if segment.area is not None else table.gt_pixels.get(gt_id, 0)
        if not segment.iscrowd:
            key: _Key = ("seg", gt_id, segment.category_id)
        elif crowd_region[segment.category_id] == gt_id:
            key = ("crowd", segment.category_id)
        else:
            gt_key[gt_id] = _OTHER
            continue
        gt_key[gt_id] = key
        gt_segments[key] = (segment.category_id, segment.iscrowd, area)
    pred_key: dict[int, _Key] = {VOID_ID: None}
    pred_segments: dict[_Key, int] = {}
    pred_area: dict[_Key, int] = {}
    for pred_id, area in table.pred_area.items():
        category = table.pred_segs[pred_id].category_id
        key = ("seg", pred_id, category)
        pred_key[pred_id] = key
        pred_segments[key] = category
        pred_area[key] = area
    pairs: dict[tuple[_Key, _Key], int] = {}
    for (gt_id, pred_id), count in table.pairs.items():
        pair = (gt_key.get(gt_id, _OTHER), pred_key[pred_id])
        pairs[pair] = pairs.get(pair, 0) + count
    return _FrameTubes(
        gt_segments=gt_segments, pred_segments=pred_segments, pred_area=pred_area, pairs=pairs, frame_index=frame_index
    )


def _window_table(frames: Sequence[_FrameTubes], video_id: VideoId) -> tuple[PixelTable, dict[int, str]]:
    """Sum the frames of one window into one PQ table of tubes (ids renumbered from 1).

    :return: the table and a description of each ground-truth tube id for error messages.
    """
    gt_info: dict[_Key, list[Any]] = {}
    for frame in frames:
        for key, (category, iscrowd, area) in frame.gt_segments.items():
            entry = gt_info.setdefault(key, [category, iscrowd, 0.0])
            entry[2] += area
    # Crowd regions last, so that each category's merged region is "the last crowd listed".
    segments = [key for key in gt_info if key is not None]
    gt_order = [key for key in segments if key[0] == "seg"] + [key for key in segments if key[0] == "crowd"]
    gt_number: dict[_Key, int] = {None: VOID_ID}
    gt_names: dict[int, str] = {}
    for number, key in enumerate(gt_order, start=1):
        gt_number[key] = number
        what = (
            f"ground-truth segment id {key[1]}"
            if key[0] == "seg"
            else f"ground-truth crowd region of category {key[1]}"
        )
        first, last = frames[0].frame_index, frames[-1].frame_index
        gt_names[number] = f"{what} (video {video_id!r}, frames {first}..{last})"
    gt_number[_OTHER] = len(gt_order) + 1
    pred_number: dict[_Key, int] = {None: VOID_ID}
    pred_segs: dict[int, SegmentInfo] = {}
    pred_area: dict[int, int] = {}
    for frame in frames:
        for key, category in frame.pred_segments.items():
            number = pred_number.setdefault(key, len(pred_number))
            pred_segs[number] = SegmentInfo(category_id=category, iscrowd=False, area=None)
            pred_area[number] = pred_area.get(number, 0) + frame.pred_area[key]
    pairs: dict[tuple[int, int], int] = {}
    gt_pixels: dict[int, int] = {}
    for frame in frames:
        for (gt_key, pred_key), count in frame.pairs.items():
            pair = (gt_number[gt_key], pred_number[pred_key])
            pairs[pair] = pairs.get(pair, 0) + count
            gt_pixels[pair[0]] = gt_pixels.get(pair[0], 0) + count
    gt_segs = {
        gt_number[key]: SegmentInfo(category_id=gt_info[key][0], iscrowd=gt_info[key][1], area=gt_info[key][2])
        for key in gt_order
    }
    table = PixelTable(gt_segs=gt_segs, pred_segs=pred_segs, pairs=pairs, pred_area=pred_area, gt_pixels=gt_pixels)
    return table, gt_names


# --------------------------------------------------------------------------------------------
# STQ
# --------------------------------------------------------------------------------------------


@dataclass
class _STQCounts:
    """Pixel counts of one video (or, merged, of a dataset) that STQ reads."""

    #: (gt category, pred category or None for void) -> pixels; gt void pixels are not counted.
    confusion: dict[tuple[int, int | None], int] = field(default_factory=dict)
    #: gt track (id, category) -> pixels; pred track (id, category) -> pixels off gt crowd.
    gt_size: dict[tuple[int, int], int] = field(default_factory=dict)
    pred_size: dict[tuple[int, int], int] = field(default_factory=dict)
    #: (gt track, pred track) -> pixels (TPA).
    inter: dict[tuple[tuple[int, int], tuple[int, int]], int] = field(default_factory=dict)
    n_frames: int = 0

    def add(self, table: PixelTable, categories: Mapping[int, CategoryInfo]) -> None:
        """Add one frame's validated pixel table."""
        for (gt_id, pred_id), count in table.pairs.items():
            gt_seg = table.gt_segs.get(gt_id)
            pred_seg = table.pred_segs.get(pred_id)
            pred_class = pred_seg.category_id if pred_seg is not None else None
            if gt_seg is not None:
                cell = (gt_seg.category_id, pred_class)
                self.confusion[cell] = self.confusion.get(cell, 0) + count
            on_crowd = gt_seg is not None and gt_seg.iscrowd
            gt_track = (
                (gt_id, gt_seg.category_id)
                if gt_seg is not None and not on_crowd and categories[gt_seg.category_id].isthing
                else None
            )
            pred_track = (
                (pred_id, pred_class)
                if pred_class is not None and not on_crowd and categories[pred_class].isthing
                else None
            )
            if gt_track is not None:
                self.gt_size[gt_track] = self.gt_size.get(gt_track, 0) + count
            if pred_track is not None:
                self.pred_size[pred_track] = self.pred_size.get(pred_track, 0) + count
            if gt_track is not None and pred_track is not None:
                both = (gt_track, pred_track)
                self.inter[both] = self.inter.get(both, 0) + count
        self.n_frames += 1

    def association_sum(self) -> float:
        """``sum_g 1/|g| * sum_p TPA * IoU_id`` over this video's ground-truth tracks."""
        inner: dict[tuple[int, int], list[float]] = {}
        for (gt_track, pred_track), tpa in self.inter.items():
            union = self.gt_size[gt_track] + self.pred_size[pred_track] - tpa
            inner.setdefault(gt_track, []).append(tpa * tpa / union)
        return math.fsum(math.fsum(terms) / self.gt_size[gt_track] for gt_track, terms in inner.items())


def _class_iou(
    confusion: Mapping[tuple[int, int | None], int], categories: Mapping[int, CategoryInfo]
) -> dict[int, float]:
    """IoU of every category with ``TP + FP + FN > 0`` in a confusion matrix (void is no class)."""
    tp: dict[int, int] = {}
    gt_total: dict[int, int] = {}
    pred_total: dict[int, int] = {}
    for (gt_class, pred_class), count in confusion.items():
        gt_total[gt_class] = gt_total.get(gt_class, 0) + count
        if pred_class is not None:
            pred_total[pred_class] = pred_total.get(pred_class, 0) + count
            if pred_class == gt_class:
                tp[gt_class] = tp.get(gt_class, 0) + count
    ious: dict[int, float] = {}
    for category_id in categories:
        hits = tp.get(category_id, 0)
        union = gt_total.get(category_id, 0) + pred_total.get(category_id, 0) - hits
        if union > 0:
            ious[category_id] = hits / union
    return ious


def _stq_stats(
    association: float,
    n_tracks: int,
    confusion: Mapping[tuple[int, int | None], int],
    n_frames: int,
    categories: Mapping[int, CategoryInfo],
) -> STQStats:
    """STQ/AQ/SQ from an association sum, a track count and a confusion matrix."""
    ious = _class_iou(confusion, categories)
    aq = association / n_tracks if n_tracks else None
    sq = math.fsum(ious.values()) / len(ious) if ious else None
    stq = math.sqrt(aq * sq) if aq is not None and sq is not None else None
    return STQStats(stq=stq, aq=aq, sq=sq, n_tracks=n_tracks, n_frames=n_frames, class_iou=MappingProxyType(ious))


# --------------------------------------------------------------------------------------------
# evaluate_video
# --------------------------------------------------------------------------------------------


def _check_spans(spans: Sequence[int]) -> tuple[int, ...]:
    """Return ``spans`` as a tuple of distinct positive ints, or raise."""
    if isinstance(spans, str | bytes) or not isinstance(spans, Sequence) or not spans:
        raise EvaluationError(f"spans must be a non-empty sequence of window lengths in frames, got {spans!r}")
    for span in spans:
        if isinstance(span, bool) or not isinstance(span, int) or span < 1:
            raise EvaluationError(
                f"each VPQ span must be a positive integer number of frames, got {span!r} in {spans!r}"
            )
    if len(set(spans)) != len(spans):
        raise EvaluationError(f"the VPQ spans {tuple(spans)} repeat a value; give each span once")
    return tuple(spans)


def _pair_videos(gt: VideoPanoptic, pred: VideoPanoptic) -> list[str]:
    """Check that every ground-truth frame has a prediction; return notes on what is left over.

    :raises EvaluationError: a ground-truth video or frame without prediction.
    """
    for video_id, gt_frames in gt.videos.items():
        if video_id not in pred.videos:
            same_text = [other for other in pred.videos if str(other) == str(video_id)]
            if same_text:
                raise EvaluationError(
                    f"no prediction for the ground-truth video {video_id!r}: the ground truth's video_id is {video_id!r} "
                    f"({type(video_id).__name__}) and {pred.json_path} has {same_text[0]!r} "
                    f"({type(same_text[0]).__name__}); video ids must have the same type in both files"
                )
            raise EvaluationError(
                f"no prediction for the ground-truth video {video_id!r} ({len(gt_frames)} frame(s)): {pred.json_path} "
                f"has no annotated image with this video_id (its videos: {list_ids(pred.videos)}); predict every "
                "ground-truth video"
            )
        predicted = {record.frame_index for record in pred.videos[video_id]}
        for record in gt_frames:
            if record.frame_index not in predicted:
                raise EvaluationError(
                    f"no prediction for {record.describe('ground-truth')}: {pred.json_path} has no annotated frame "
                    f"with frame_index {record.frame_index} in video {video_id!r} ({len(predicted)} of its "
                    f"{len(gt_frames)} ground-truth frames are predicted). If the prediction skipped frames on purpose "
                    "(segment-video --every N), evaluate against a ground truth of those frames only, or segment every "
                    "frame; if nothing was predicted on a frame, add it with an empty segments_info and an all-black PNG"
                )
    notes = []
    extra_videos = [video_id for video_id in pred.videos if video_id not in gt.videos]
    if extra_videos:
        notes.append(f"prediction videos not in the ground truth are ignored: {list_ids(extra_videos)}")
    extra_frames = sum(len(pred.videos[v]) - len(gt.videos[v]) for v in gt.videos)
    if extra_frames:
        notes.append(
            f"{extra_frames} prediction frame(s) have no ground truth: they count only for the temporal consistency"
        )
    if gt.unannotated:
        notes.append(f"{gt.unannotated} ground-truth image(s) have no annotation and are not evaluated")
    return notes


def evaluate_video(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    *,
    spans: Sequence[int] = DEFAULT_SPANS,
    consistency_threshold: float = DEFAULT_CONSISTENCY_THRESHOLD,
    match_categories: str = "id",
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> VideoReport:
    """Evaluate a video panoptic prediction against ground truth: VPQ, STQ and consistency.

    Both files are video panoptic JSONs (:mod:`ovpanoptic.formats.video_panoptic`) with their PNG folders. Videos pair
    by ``video_id`` and frames by ``frame_index``; prediction frames the ground truth does not
    annotate are used only for the temporal consistency of the prediction, prediction videos the
    ground truth lacks are ignored (both noted in the report). Categories come from the ground
    truth; ``match_categories`` pairs prediction categories with them as in
    :func:`~.pq.evaluate_panoptic` (``"id"``: same ids, refused when the names differ; ``"name"``:
    by name, segments of unmatched prediction categories become void).

    :param spans: VPQ window lengths in frames (module docstring, "Spans"); each a distinct
        positive integer, clipped to each video's length.
    :param consistency_threshold: IoU in ``[0, 1]`` below which consecutive masks of a predicted
        segment id are reported (see :mod:`.consistency`).
    :param progress: called as ``progress(done, total)`` after each ground-truth frame.
    :param max_pixels: a frame PNG declaring more pixels is refused from its header, before it is
        decoded (``None`` or 0: no limit; default 50 megapixels).
    :return: the :class:`VideoReport`. Frames are read one at a time (windows keep pixel tables,
        not pixels).
    :raises EvaluationError: bad ``spans``, threshold or ``match_categories``; any
        :func:`~ovpanoptic.formats.video_panoptic.read_video_panoptic` error; a ground truth without ``categories``
        or without annotated frames; a ground-truth video or frame without prediction; any
        :meth:`~.pq.PQAccumulator.add_image` error of a frame (size mismatch, PNG ids and
        ``segments_info`` disagreeing, unknown categories); frames of one prediction video with
        different sizes; no category occurring at all.
    """
    span_list = _check_spans(spans)
    check_threshold(consistency_threshold)
    if match_categories not in ("id", "name"):
        raise EvaluationError(f"match_categories must be 'id' or 'name', got {match_categories!r}")
    gt = read_video_panoptic(gt_json, gt_dir, role="ground-truth", max_pixels=max_pixels)
    if gt.data.get("categories") is None:
        raise EvaluationError(f"ground-truth JSON file {gt.json_path} has no 'categories' list")
    if not gt.videos:
        raise EvaluationError(f"ground-truth JSON file {gt.json_path} has no annotated frame: nothing to evaluate")
    pred = read_video_panoptic(pred_json, pred_dir, role="prediction", max_pixels=max_pixels)
    categories = dict(gt.categories)
    mapping, notes = pair_categories(
        categories, prediction_categories(pred.data, pred.json_path), pred.json_path, match_categories
    )
    notes += _pair_videos(gt, pred)

    accumulators = {span: PQAccumulator(categories=categories) for span in span_list}
    stq_per_video: dict[VideoId, _STQCounts] = {}
    consistency: list[VideoConsistency] = []
    total, done = gt.n_frames, 0
    for video_id, gt_frames in gt.videos.items():
        length = len(gt_frames)
        window_of = {span: min(span, length) for span in span_list}
        recent: deque[_FrameTubes] = deque(maxlen=max(window_of.values()))
        gt_by_index = {record.frame_index: record for record in gt_frames}
        stq = stq_per_video.setdefault(video_id, _STQCounts())
        video_consistency = VideoConsistency(video_id, consistency_threshold, pred.role)
        for pred_record in pred.videos[video_id]:
            pred_frame = pred.read(pred_record)
            video_consistency.add(pred_frame)
            gt_record = gt_by_index.get(pred_record.frame_index)
            if gt_record is None:
                continue
            gt_frame = gt.read(gt_record)
            pred_segments, dropped = remap_segments(list(pred_record.segments_info), mapping)
            pred_ids = pred_frame.ids
            if dropped:
                pred_ids = np.where(np.isin(pred_ids, list(dropped)), VOID_ID, pred_ids)
            name = f"video {video_id!r} frame {gt_record.frame_index} (gt {gt_record.file_name}, pred {pred_record.file_name})"
            table = tabulate(
                gt_frame.ids, list(gt_record.segments_info), pred_ids, pred_segments, known=categories, image=name
            )
            stq.add(table, categories)
            recent.append(_frame_tubes(table, gt_record.frame_index))
            for span, window in window_of.items():
                if len(recent) >= window:
                    frames = list(recent)[-window:]
                    window_table, gt_names = _window_table(frames, video_id)
                    label = f"video {video_id!r} window of frames {frames[0].frame_index}..{frames[-1].frame_index}"
                    accumulators[span]._add_table(window_table, image=label, gt_names=gt_names)
            done += 1
            if progress is not None:
                progress(done, total)
        consistency.append(video_consistency)

    per_span = {span: accumulators[span].report() for span in span_list}
    names = {cid: info.name for cid, info in categories.items()}
    names.update(json_category_names(pred.data))
    return VideoReport(
        vpq=_vpq_report(span_list, per_span),
        stq=_stq_report(stq_per_video, categories),
        consistency=combine_reports(consistency, consistency_threshold, names),
        categories=MappingProxyType(categories),
        n_videos=len(gt.videos),
        n_frames=total,
        notes=tuple(notes),
    )


def _mean(values: Sequence[float]) -> float | None:
    """Plain mean, ``None`` for no values."""
    return math.fsum(values) / len(values) if values else None


def _vpq_report(spans: tuple[int, ...], per_span: Mapping[int, PQReport]) -> VPQReport:
    """Average the per-span reports into VPQ (see :class:`VPQReport`)."""
    reports = list(per_span.values())
    per_category: dict[int, list[float]] = {}
    for report in reports:
        for category_id, stats in report.per_category.items():
            per_category.setdefault(category_id, []).append(stats.pq)
    return VPQReport(
        spans=spans,
        per_span=MappingProxyType(dict(per_span)),
        all=math.fsum(report.all.pq for report in reports) / len(reports),
        things=_mean([report.things.pq for report in reports if report.things.n]),
        stuff=_mean([report.stuff.pq for report in reports if report.stuff.n]),
        per_category=MappingProxyType({cid: math.fsum(v) / len(v) for cid, v in per_category.items()}),
    )


def _stq_report(per_video: Mapping[VideoId, _STQCounts], categories: Mapping[int, CategoryInfo]) -> STQReport:
    """Per-video STQ and the dataset STQ accumulated over all videos (module docstring)."""
    video_stats: dict[VideoId, STQStats] = {}
    association = 0.0
    n_tracks = 0
    confusion: dict[tuple[int, int | None], int] = {}
    n_frames = 0
    for video_id, counts in per_video.items():
        video_association = counts.association_sum()
        video_stats[video_id] = _stq_stats(
            video_association, len(counts.gt_size), counts.confusion, counts.n_frames, categories
        )
        association += video_association
        n_tracks += len(counts.gt_size)
        n_frames += counts.n_frames
        for cell, count in counts.confusion.items():
            confusion[cell] = confusion.get(cell, 0) + count
    overall = _stq_stats(association, n_tracks, confusion, n_frames, categories)
    return STQReport(overall=overall, per_video=MappingProxyType(video_stats))
