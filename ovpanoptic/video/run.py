"""The video loop: keyframes through the image pipeline, the frames between through a tracker.

For every window of ``K + 1`` processed frames (a keyframe, the ``K - 1`` frames after it, and the
next keyframe), the tracker gets the keyframe's segments as seeds and carries them through the
window; the frames inside the window are composed from its masks, and on the next keyframe the
image pipeline's new detections are matched to where the tracker carried each object
(:class:`~ovpanoptic.video.tracks.TrackBook`). Windows are independent tracker calls, so memory is
bounded by ``K`` whatever the video's length. Tracking and composition run at the pipeline's
working size (``pipeline.max_side``); results are returned at the frames' size.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .. import boundary
from ..components import Progress
from ..config import Config
from ..constants import VOID_ID
from ..errors import InputError, MissingDependencyError
from ..imageio import resize_longest_side
from ..types import ClassScores, PanopticResult, ProposalSet, TrackMasks, Vocabulary
from .sources import Frame, FrameSource
from .tracks import TrackBook, TrackingOptions, fuse_bidirectional, segment_embeddings

__all__ = ["ImagePipeline", "KeyframeRun", "ResumePoint", "VideoFrameResult", "resolve_bidirectional", "segment_video"]


class KeyframeRun(Protocol):
    """What the video loop reads of one keyframe's image-pipeline run
    (:class:`ovpanoptic.pipeline.SegmentationRun` is one)."""

    @property
    def result(self) -> PanopticResult:
        """The panoptic result at the keyframe's size."""
        ...

    @property
    def proposals(self) -> ProposalSet:
        """The proposals at the working size, before fusion."""
        ...

    @property
    def scores(self) -> ClassScores:
        """Their class scores (with the classifier's image embeddings, when it gives them)."""
        ...


class ImagePipeline(Protocol):
    """What the video loop needs of the image pipeline (:class:`ovpanoptic.pipeline.Pipeline` is one).

    The loop takes the pipeline as an argument typed by this protocol, so this package never imports
    :mod:`ovpanoptic.pipeline` (which imports this package for :meth:`Pipeline.segment_video`).
    """

    @property
    def config(self) -> Config:
        """The pipeline's config (``config.pipeline.max_side``/``min_side`` give the working size)."""
        ...

    @property
    def tracker(self) -> str:
        """The configured tracker component's name."""
        ...

    def component(self, kind: str, name: str | None = None) -> Any:
        """The built component of ``kind`` named ``name`` (the configured one by default)."""
        ...

    def target(self, kind: str, name: str | None = None) -> boundary.Target:
        """The plugin code behind that component, for guarded calls and messages."""
        ...

    def segment_run(
        self,
        image: Any,
        vocabulary: Vocabulary | str,
        *,
        progress: Progress | None = None,
        source: str = "<array>",
        refine: bool = True,
    ) -> KeyframeRun:
        """Segment one image, returning the result with the proposals and scores it came from."""
        ...

    def refine(self, result: PanopticResult, image: Any = None, names: Sequence[str] | None = None) -> PanopticResult:
        """Apply the configured refiners to a result of ``image``."""
        ...


@dataclass(frozen=True, eq=False)
class VideoFrameResult:
    """The result of one processed frame.

    :param index: the frame's source index.
    :param time_s: its presentation time (seconds).
    :param keyframe: whether the image pipeline segmented it (else the tracker carried it).
    :param result: the panoptic result at the frame's size; thing segment ids are track ids and a
        stuff class keeps one id over the video; categories are the tracks' votes so far.
    :param image: the frame, ``(H, W, 3)`` uint8 RGB, read-only.
    :param book: the video's track bookkeeping (its state after this frame; shared, not a copy).
    """

    index: int
    time_s: float
    keyframe: bool
    result: PanopticResult
    image: np.ndarray
    book: TrackBook


@dataclass(frozen=True, eq=False)
class ResumePoint:
    """Where a resumed run starts: right after the keyframe ``index``.

    :param index: the keyframe's source index.
    :param state: :meth:`TrackBook.state` saved after that keyframe.
    :param result: the keyframe's composed result (read back from its PNG), at the frame's size.
    """

    index: int
    state: dict[str, Any]
    result: PanopticResult


@dataclass(frozen=True, eq=False)
class _Keyframe:
    """A keyframe segmented by the image pipeline, not yet matched to the tracks."""

    frame: Frame
    result: PanopticResult  # at the frame's size
    small: PanopticResult  # at the working size
    features: dict[int, np.ndarray]


def resolve_bidirectional(options: TrackingOptions, tracker: Any) -> bool:
    """Whether a run with ``options`` and the tracker component ``tracker`` runs both ways:
    ``options.bidirectional`` when set, else the tracker's own default, its ``bidirectional`` class
    attribute (opt-in: absent means ``False``, since a tracker written before it may assume frames in
    time order). Output folders record this resolved value, so a default and the flag that means the
    same thing resume each other."""
    return options.bidirectional if options.bidirectional is not None else bool(getattr(tracker, "bidirectional", False))


def _small(result: PanopticResult, size: tuple[int, int]) -> PanopticResult:
    return result if result.image_size == size else result.resized(*size)


def segment_video(
    pipeline: ImagePipeline,
    source: FrameSource,
    vocabulary: Vocabulary,
    options: TrackingOptions | None = None,
    *,
    tracker: str | None = None,
    progress: Progress | None = None,
    resume: ResumePoint | None = None,
) -> Iterator[VideoFrameResult]:
    """Segment a video frame by frame with ids that stay the same across frames.

    :param pipeline: the image pipeline (its proposal generator, classifier and fuser segment the keyframes):
        a :class:`~ovpanoptic.pipeline.Pipeline`, or anything with its :class:`ImagePipeline` members.
    :param source: the frames (:func:`~ovpanoptic.video.sources.open_frames`).
    :param vocabulary: the classes.
    :param options: keyframe interval, match threshold, track ends (:class:`TrackingOptions`).
    :param tracker: the tracker component's name (default ``pipeline.tracker``: the config's ``pipeline.tracker``,
        or the device profile's where the config does not state one).
    :param progress: ``progress(message, done, total)``: ``"frame"`` with the frames done and the
        expected total (0 when unknown), plus the components' own messages.
    :param resume: start after a saved keyframe instead of at the first frame.
    :return: an iterator of :class:`VideoFrameResult`, one per processed frame, in order.
    :raises InputError: no frame is selected, or frames differ in size.
    :raises ComponentError: the tracker broke its contract (wrong number of frames, foreign ids, ...).
    """
    options = options or TrackingOptions()
    if importlib.util.find_spec("scipy") is None:
        raise MissingDependencyError(
            "segment-video matches ids with scipy's Hungarian assignment, and scipy is not installed: "
            "pip install 'ovpanoptic[video]' (or pip install scipy)"
        )
    name = tracker or pipeline.tracker  # the config's, else the device profile's (Pipeline.tracker)
    component = pipeline.component("tracker", name)
    target = pipeline.target("tracker", name)
    settings = pipeline.config.pipeline
    book = TrackBook(vocabulary, options)
    frames = iter(source)
    expected = source.expected or 0
    done = 0
    k = options.keyframe_every
    both_ways = resolve_bidirectional(options, component)
    sides = (settings.max_side, settings.min_side)

    def track(window: Sequence[Frame], seeds: TrackMasks, size: tuple[int, int]) -> Iterator[TrackMasks]:
        return _tracked(component, target, window, seeds, size, sides, progress)

    def report() -> None:
        if progress is not None:
            progress("frame", done, expected)

    def work_size(image: np.ndarray) -> tuple[int, int]:
        from ..imageio import working_size

        return working_size(image.shape[0], image.shape[1], settings.max_side, settings.min_side)

    def detect(frame: Frame) -> _Keyframe:
        # pipeline.refiners apply to the frames as written (below), not to the keyframe's tracking input.
        run = pipeline.segment_run(frame.image, vocabulary, progress=progress, source=f"{source.name}#{frame.index}", refine=False)
        size = work_size(frame.image)
        # The classifier's image features of each thing segment (re-identification evidence), from
        # the fused result at the proposals' size (the working size).
        fused = _small(run.result, run.proposals.image_size)
        features = segment_embeddings(fused, run.proposals.masks, run.scores.embeddings)
        if run.proposals.image_size != size:
            features = {}  # cannot happen with the pipeline's own working size; no evidence rather than wrong evidence
        return _Keyframe(frame, run.result, _small(run.result, size), features)

    def record(key: _Keyframe, predicted: TrackMasks | None, plan: dict[int, int] | None = None) -> tuple[VideoFrameResult, PanopticResult]:
        frame = key.frame
        composed = book.keyframe(frame.index, key.small, predicted, key.features, plan=plan)
        full = pipeline.refine(_small(composed, frame.image.shape[:2]), frame.image).with_timings(key.result.timings)
        return VideoFrameResult(frame.index, frame.time_s, True, full, frame.image, book), composed

    def keyframe(frame: Frame, predicted: TrackMasks | None) -> tuple[VideoFrameResult, PanopticResult]:
        return record(detect(frame), predicted)

    def between(frame: Frame, composed: PanopticResult, elapsed: float) -> VideoFrameResult:
        full = pipeline.refine(_small(composed, frame.image.shape[:2]), frame.image).with_timings({"track": elapsed, "total": elapsed})
        return VideoFrameResult(frame.index, frame.time_s, False, full, frame.image, book)

    if resume is None:
        first = next(frames, None)
        if first is None:
            raise InputError(source.no_frame_message())
        item, current_small = keyframe(first, None)
        done += 1
        yield item
        report()
        current = first
    else:
        current = None
        for frame in frames:
            done += 1
            if frame.index == resume.index:
                current = frame
                break
        if current is None:
            raise InputError(f"cannot resume: frame {resume.index} of {source.spec} is not among the selected frames; run with --overwrite")
        current_small = _small(resume.result, work_size(current.image))
        book.restore(resume.state, current_small)
        report()

    while True:
        window: list[Frame] = [current]
        for frame in frames:
            window.append(frame)
            if len(window) == k + 1:
                break
        if len(window) == 1:
            return
        full_window = len(window) == k + 1
        size = current_small.image_size
        seeds = book.seeds(current_small)
        if full_window and k > 1 and both_ways:
            # Bidirectional (TrackingOptions.bidirectional): the forward pass composed on a fork of the
            # bookkeeping (as a forward-only run would), the next keyframe segmented and matched there,
            # the tracker run backward from it over the frames between, the two fused frame by frame.
            shadow = book.fork()
            forward: list[np.ndarray] = []
            spent: list[float] = []
            predicted = None
            started = time.perf_counter()
            for j, masks in enumerate(track(window, seeds, size), start=1):
                if j == k:
                    predicted = masks
                else:
                    forward.append(np.asarray(shadow.tracked(window[j].index, masks).panoptic_map))
                    spent.append(time.perf_counter() - started)
                started = time.perf_counter()
            key = detect(window[-1])
            ahead = shadow.keyframe(key.frame.index, key.small, predicted, key.features)
            plan = TrackBook.assignment(key.small, ahead)
            # Only tracks alive on both keyframes come from the backward pass.
            allowed = set(np.unique(np.asarray(current_small.panoptic_map)).tolist()) & set(np.unique(np.asarray(ahead.panoptic_map)).tolist())
            allowed.discard(VOID_ID)
            ahead_seeds = shadow.seeds(ahead)
            keep = np.isin(ahead_seeds.ids, np.fromiter(allowed, np.int64))
            backward: list[np.ndarray] = [forward[0]] * (k - 1)
            started = time.perf_counter()
            for i, masks in enumerate(track(window[:0:-1], TrackMasks(ahead_seeds.ids[keep], ahead_seeds.masks[keep]), size), start=1):
                backward[k - i - 1] = shadow.compose(masks)
                spent[k - i - 1] += time.perf_counter() - started
                started = time.perf_counter()
            things = {t.id for t in shadow.tracks.values() if t.isthing}
            for j in range(1, k):
                started = time.perf_counter()
                fused = book.composed(window[j].index, fuse_bidirectional(forward[j - 1], backward[j - 1], j, k, allowed, things))
                done += 1
                yield between(window[j], fused, spent[j - 1] + time.perf_counter() - started)
                report()
            del forward, backward
            current = window[-1]
            item, current_small = record(key, predicted, plan)
            done += 1
            yield item
            report()
            continue
        started = time.perf_counter()
        tracked = track(window, seeds, size)
        predicted: TrackMasks | None = None
        for j, masks in enumerate(tracked, start=1):
            frame = window[j]
            if full_window and j == len(window) - 1:
                predicted = masks  # the next keyframe: segmented once the tracker has let go of its window
                continue
            done += 1
            yield between(frame, book.tracked(frame.index, masks), time.perf_counter() - started)
            report()
            started = time.perf_counter()
        if not full_window:
            return
        current = window[-1]
        item, current_small = keyframe(current, predicted)
        done += 1
        yield item
        report()


def _tracked(
    component: Any,
    target: boundary.Target,
    window: Sequence[Frame],
    seeds: TrackMasks,
    size: tuple[int, int],
    sides: tuple[int, int],
    progress: Progress | None,
) -> Iterator[TrackMasks]:
    """The tracker's masks for ``window[1:]``, each checked (:func:`boundary.check_track_masks`)."""
    wanted = len(window) - 1
    if len(seeds) == 0:  # nothing to carry: no tracker call
        for _ in range(wanted):
            yield TrackMasks.from_dict({}, *size)
        return
    images = [boundary.readonly_image(resize_longest_side(f.image, *sides)) for f in window]
    returned = boundary.call(target, "track()", component.track, images, seeds, progress=progress)
    try:
        iterator = iter(returned)
    except TypeError:
        raise target.error(
            "track()", f"it returned {type(returned).__name__}, which cannot be iterated",
            "track() returns an iterable of TrackMasks, one per frame after the keyframe (write it as a generator: yield)",
        ) from None
    seed_ids = seeds.ids.tolist()
    count = 0
    end = object()  # not None: a tracker that yields None is told so by check_track_masks
    while True:
        item = boundary.call(target, "track()", next, iterator, end)
        if item is end:
            break
        count += 1
        if count > wanted:
            raise target.error("track()", f"it yielded more than {wanted} items for a window of {len(window)} frames", "Yield one TrackMasks per frame after the keyframe")
        yield boundary.check_track_masks(target, item, seed_ids, size, count)
    if count < wanted:
        raise target.error("track()", f"it yielded {count} items for a window of {len(window)} frames (expected {wanted})", "Yield one TrackMasks per frame after the keyframe")
