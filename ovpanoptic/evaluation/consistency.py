"""Temporal consistency of tracks: a quality check of video panoptic labels without ground truth.

What labelling teams look at before trusting a propagated or predicted video: for every segment
id of a video (a thing's track id, or a stuff class's id) the mask IoU between each pair of
*consecutive* frames (adjacent in ``frame_index`` order) where it has pixels in both. A low IoU
flags a jump (an id switch, a mask that leaked or collapsed); a segment whose category changes
between consecutive frames is listed too. A segment that is absent from a frame and comes back
later has no IoU across the gap (its reappearance is not a pair of consecutive frames).

``IoU = |A ∩ B| / |A ∪ B|`` of the segment's pixels ``A`` in one frame and ``B`` in the next,
both frames of the same size. An IoU strictly below the threshold is an issue.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..constants import DEFAULT_MAX_PIXELS, VOID_ID
from ..formats.common import EvaluationError, rgb_text
from ..formats.video_panoptic import VideoFrame, VideoId, read_video_panoptic
from .pq import index_segments

__all__ = [
    "ClassChange",
    "ConsistencyIssue",
    "ConsistencyReport",
    "TrackConsistency",
    "VideoConsistency",
    "json_category_names",
    "check_temporal_consistency",
    "check_threshold",
    "combine_reports",
]

#: Default IoU below which two consecutive masks of one segment id are reported.
DEFAULT_CONSISTENCY_THRESHOLD: float = 0.5


@dataclass(frozen=True)
class ConsistencyIssue:
    """A segment whose mask IoU between two consecutive frames is below the threshold."""

    video_id: VideoId
    track_id: int
    category_id: int
    previous_frame_index: int
    frame_index: int
    iou: float

    def to_dict(self, *, percent: bool = False) -> dict[str, Any]:
        """Return the issue as a JSON-ready dict; ``percent=True`` gives the IoU in percent."""
        return {
            "video_id": self.video_id,
            "track_id": self.track_id,
            "category_id": self.category_id,
            "previous_frame_index": self.previous_frame_index,
            "frame_index": self.frame_index,
            "iou": self.iou * (100.0 if percent else 1.0),
        }


@dataclass(frozen=True)
class ClassChange:
    """A segment id whose category differs between two consecutive frames where it appears."""

    video_id: VideoId
    track_id: int
    previous_frame_index: int
    frame_index: int
    previous_category_id: int
    category_id: int

    def to_dict(self) -> dict[str, Any]:
        """Return the change as a JSON-ready dict."""
        return {
            "video_id": self.video_id,
            "track_id": self.track_id,
            "previous_frame_index": self.previous_frame_index,
            "frame_index": self.frame_index,
            "previous_category_id": self.previous_category_id,
            "category_id": self.category_id,
        }


@dataclass(frozen=True)
class TrackConsistency:
    """Consistency of one segment id of one video.

    ``category_ids``: its categories in order of first appearance (one unless it changes class);
    ``n_frames``: frames where it has pixels; ``n_pairs``: consecutive frame pairs where it has
    pixels in both; ``mean_iou`` / ``min_iou``: over those pairs (``None`` without a pair).
    """

    video_id: VideoId
    track_id: int
    category_ids: tuple[int, ...]
    n_frames: int
    n_pairs: int
    mean_iou: float | None
    min_iou: float | None

    def to_dict(self, *, percent: bool = False) -> dict[str, Any]:
        """Return the track's numbers as a JSON-ready dict; ``percent=True`` gives IoUs in percent."""
        scale = 100.0 if percent else 1.0
        return {
            "video_id": self.video_id,
            "track_id": self.track_id,
            "category_ids": list(self.category_ids),
            "n_frames": self.n_frames,
            "n_pairs": self.n_pairs,
            "mean_iou": None if self.mean_iou is None else self.mean_iou * scale,
            "min_iou": None if self.min_iou is None else self.min_iou * scale,
        }


@dataclass(frozen=True)
class ConsistencyReport:
    """Temporal consistency of the segment ids of a set of videos (module docstring).

    ``tracks`` in video order then track id; ``issues`` (IoU below ``threshold``) and
    ``class_changes`` in video, frame and track order. ``category_names`` names the category ids
    the file's category table knows.
    """

    threshold: float
    tracks: tuple[TrackConsistency, ...]
    issues: tuple[ConsistencyIssue, ...]
    class_changes: tuple[ClassChange, ...]
    n_videos: int
    n_frames: int
    category_names: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        """Check the threshold."""
        check_threshold(self.threshold)

    def to_dict(self, *, percent: bool = False) -> dict[str, Any]:
        """Return a JSON-ready dict: threshold, counts, tracks, issues and class changes.

        ``percent=True`` gives the threshold and the IoUs in percent.
        """
        return {
            "threshold": self.threshold * (100.0 if percent else 1.0),
            "n_videos": self.n_videos,
            "n_frames": self.n_frames,
            "n_tracks": len(self.tracks),
            "n_issues": len(self.issues),
            "tracks": [track.to_dict(percent=percent) for track in self.tracks],
            "issues": [issue.to_dict(percent=percent) for issue in self.issues],
            "class_changes": [change.to_dict() for change in self.class_changes],
        }

    def _name(self, category_id: int) -> str:
        """The category's name, or its id when the names are unknown."""
        return self.category_names.get(category_id, str(category_id))

    def format_table(self, *, max_rows: int = 50) -> str:
        """Return a readable text report: a summary, then the issues, class changes and the tracks
        with the lowest minimum IoU (at most ``max_rows`` rows each, IoU in percent)."""
        summary = (
            f"temporal consistency: {len(self.tracks)} segment ids in {self.n_videos} video(s), "
            f"{self.n_frames} frame(s); {len(self.issues)} consecutive-frame IoU(s) below "
            f"{100 * self.threshold:.1f}%, {len(self.class_changes)} class change(s)"
        )
        lines = [summary]
        if self.issues:
            lines += ["", f"{'video':>12s} {'track':>8s} {'category':>16s} {'frames':>13s} {'IoU':>7s}"]
            for issue in self.issues[:max_rows]:
                frames = f"{issue.previous_frame_index}->{issue.frame_index}"
                lines.append(
                    f"{issue.video_id!s:>12s} {issue.track_id:8d} {self._name(issue.category_id):>16s} "
                    f"{frames:>13s} {100 * issue.iou:7.3f}"
                )
            if len(self.issues) > max_rows:
                lines.append(f"... and {len(self.issues) - max_rows} more")
        if self.class_changes:
            lines += ["", f"{'video':>12s} {'track':>8s} {'frames':>13s}  class change"]
            for change in self.class_changes[:max_rows]:
                frames = f"{change.previous_frame_index}->{change.frame_index}"
                lines.append(
                    f"{change.video_id!s:>12s} {change.track_id:8d} {frames:>13s}  "
                    f"{self._name(change.previous_category_id)} -> {self._name(change.category_id)}"
                )
            if len(self.class_changes) > max_rows:
                lines.append(f"... and {len(self.class_changes) - max_rows} more")
        paired = sorted((t for t in self.tracks if t.min_iou is not None), key=lambda t: (t.min_iou, str(t.video_id)))
        if paired:
            lines += ["", f"{'video':>12s} {'track':>8s} {'frames':>6s} {'pairs':>6s} {'mean IoU':>9s} {'min IoU':>8s}"]
            for track in paired[:max_rows]:
                lines.append(
                    f"{track.video_id!s:>12s} {track.track_id:8d} {track.n_frames:6d} {track.n_pairs:6d} "
                    f"{100 * (track.mean_iou or 0.0):9.3f} {100 * (track.min_iou or 0.0):8.3f}"
                )
        return "\n".join(lines)


def check_threshold(threshold: float) -> None:
    """Refuse a threshold that is not a number in ``[0, 1]``."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        raise EvaluationError(f"the consistency threshold must be a number in [0, 1] (an IoU), got {threshold!r}")


@dataclass
class _TrackState:
    """Running numbers of one segment id while a video's frames stream past."""

    categories: list[int] = field(default_factory=list)
    n_frames: int = 0
    ious: list[float] = field(default_factory=list)


class VideoConsistency:
    """Consumes the frames of one video in order and collects its consistency numbers."""

    def __init__(self, video_id: VideoId, threshold: float, role: str) -> None:
        """Start an empty video."""
        self.video_id = video_id
        self.threshold = threshold
        self.role = role
        self.tracks: dict[int, _TrackState] = {}
        self.issues: list[ConsistencyIssue] = []
        self.changes: list[ClassChange] = []
        self.n_frames = 0
        self._previous: tuple[VideoFrame, dict[int, int], dict[int, int]] | None = None

    def add(self, frame: VideoFrame) -> None:
        """Add the next frame (frames must come in ``frame_index`` order).

        :raises EvaluationError: a PNG id without a ``segments_info`` entry, or a frame whose size
            differs from the previous frame's.
        """
        where = frame.record.describe(self.role)
        segments = index_segments(list(frame.record.segments_info), role=self.role, image=where, with_area=False)
        labels, counts = np.unique(frame.ids, return_counts=True)
        area: dict[int, int] = {}
        category: dict[int, int] = {}
        for segment_id, count in zip(labels.tolist(), counts.tolist(), strict=True):
            if segment_id == VOID_ID:
                continue
            segment = segments.get(segment_id)
            if segment is None:
                raise EvaluationError(
                    f"{where}: the PNG contains segment id {segment_id} ({rgb_text(segment_id)}, {count} pixels) "
                    "that is not in its segments_info; add a segments_info entry with this id or paint these "
                    f"pixels with VOID (id {VOID_ID}, black)"
                )
            area[segment_id] = count
            category[segment_id] = segment.category_id
            state = self.tracks.setdefault(segment_id, _TrackState())
            state.n_frames += 1
            if segment.category_id not in state.categories:
                state.categories.append(segment.category_id)
        if self._previous is not None:
            self._compare(self._previous, frame, area, category)
        self._previous = (frame, area, category)
        self.n_frames += 1

    def _compare(
        self,
        previous: tuple[VideoFrame, dict[int, int], dict[int, int]],
        frame: VideoFrame,
        area: Mapping[int, int],
        category: Mapping[int, int],
    ) -> None:
        """IoU and class of every segment id present in both the previous and this frame."""
        before, before_area, before_category = previous
        shared = [segment_id for segment_id in area if segment_id in before_area]
        if not shared:
            return
        if before.ids.shape != frame.ids.shape:
            raise EvaluationError(
                f"{frame.record.describe(self.role)} is {frame.ids.shape[1]}x{frame.ids.shape[0]} (WxH) but the "
                f"previous frame {before.record.frame_index} is {before.ids.shape[1]}x{before.ids.shape[0]}; "
                "the frames of a video must have one size"
            )
        same = before.ids == frame.ids
        kept_ids, kept_counts = np.unique(frame.ids[same], return_counts=True)
        intersection = dict(zip(kept_ids.tolist(), kept_counts.tolist(), strict=True))
        for segment_id in sorted(shared):
            inter = intersection.get(segment_id, 0)
            iou = inter / (before_area[segment_id] + area[segment_id] - inter)
            self.tracks[segment_id].ious.append(iou)
            if iou < self.threshold:
                self.issues.append(
                    ConsistencyIssue(
                        video_id=self.video_id,
                        track_id=segment_id,
                        category_id=category[segment_id],
                        previous_frame_index=before.record.frame_index,
                        frame_index=frame.record.frame_index,
                        iou=iou,
                    )
                )
            if before_category[segment_id] != category[segment_id]:
                self.changes.append(
                    ClassChange(
                        video_id=self.video_id,
                        track_id=segment_id,
                        previous_frame_index=before.record.frame_index,
                        frame_index=frame.record.frame_index,
                        previous_category_id=before_category[segment_id],
                        category_id=category[segment_id],
                    )
                )

    def track_results(self) -> list[TrackConsistency]:
        """The per-track numbers of this video, by track id."""
        results = []
        for track_id in sorted(self.tracks):
            state = self.tracks[track_id]
            results.append(
                TrackConsistency(
                    video_id=self.video_id,
                    track_id=track_id,
                    category_ids=tuple(state.categories),
                    n_frames=state.n_frames,
                    n_pairs=len(state.ious),
                    mean_iou=math.fsum(state.ious) / len(state.ious) if state.ious else None,
                    min_iou=min(state.ious) if state.ious else None,
                )
            )
        return results


def combine_reports(
    videos: Sequence[VideoConsistency], threshold: float, category_names: Mapping[int, str]
) -> ConsistencyReport:
    """Assemble the report of several videos (in the given order)."""
    return ConsistencyReport(
        threshold=threshold,
        tracks=tuple(track for video in videos for track in video.track_results()),
        issues=tuple(issue for video in videos for issue in video.issues),
        class_changes=tuple(change for video in videos for change in video.changes),
        n_videos=len(videos),
        n_frames=sum(video.n_frames for video in videos),
        category_names=MappingProxyType(dict(category_names)),
    )


def json_category_names(data: Mapping[str, Any]) -> dict[int, str]:
    """Category id -> name from a JSON's ``categories`` list (entries without an int id skipped)."""
    names: dict[int, str] = {}
    raw = data.get("categories")
    if isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, Mapping) and isinstance(entry.get("id"), int) and not isinstance(entry["id"], bool):
                names[entry["id"]] = str(entry.get("name", entry["id"]))
    return names


def check_temporal_consistency(
    json_path: str | Path,
    png_dir: str | Path,
    threshold: float = DEFAULT_CONSISTENCY_THRESHOLD,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ConsistencyReport:
    """Check the temporal consistency of a video panoptic result, without ground truth.

    :param json_path: a video panoptic JSON (see :mod:`ovpanoptic.formats.video_panoptic`).
    :param png_dir: the folder of its PNGs.
    :param threshold: an IoU in ``[0, 1]``; consecutive-frame IoUs strictly below it are issues.
    :param max_pixels: a frame PNG declaring more pixels is refused from its header (``None`` or 0:
        no limit).
    :return: the :class:`ConsistencyReport` of every video of the file, frames read one at a time.
    :raises EvaluationError: a bad threshold, any :func:`~ovpanoptic.formats.video_panoptic.read_video_panoptic`
        error, a PNG id without a ``segments_info`` entry, or frames of one video with different sizes.
    """
    check_threshold(threshold)
    dataset = read_video_panoptic(json_path, png_dir, role="video", max_pixels=max_pixels)
    videos = []
    for video_id in dataset.videos:
        video = VideoConsistency(video_id, threshold, dataset.role)
        for frame in dataset.frames(video_id):
            video.add(frame)
        videos.append(video)
    return combine_reports(videos, threshold, json_category_names(dataset.data))
