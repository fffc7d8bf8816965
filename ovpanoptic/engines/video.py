"""Video jobs: one video segmented into its own folder, resumably; several videos on either engine.

:func:`segment_video_into` is what ``ovpanoptic segment-video`` does for one video (keyframes
through the image pipeline, the tracker between them, the frames written as they come by
:class:`~ovpanoptic.video.output.VideoOutput`, which resumes after the last keyframe a killed run
wrote). :func:`video_folders` gives each video of a job its folder (the output folder itself for
one video, ``OUT/<name>`` for several); :func:`run_videos` runs a job's videos one after another in
this process, and the Ray engine (:func:`~.ray_engine.run_videos_ray`) one video per worker at a
time: a video's frames depend on each other (tracks), so a video is the unit of work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Cancelled, InputError, OvpanopticError
from ..types import Vocabulary
from ..folderlock import FolderLock
from .manifest import clear_batch, plain_stem

__all__ = ["VideoJob", "VideoSettings", "VideoSummary", "run_videos", "segment_video_into", "video_folders"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoSettings:
    """What every video of a job is segmented with (the ``segment-video`` options).

    :param selection: a :class:`~ovpanoptic.video.FrameSelection`.
    :param tracking: a :class:`~ovpanoptic.video.TrackingOptions`.
    :param fps: the frame rate to use instead of the video's own (folders: default 10).
    :param overlay: write ``overlay.mp4``.
    :param overwrite: redo the videos instead of resuming.
    """

    selection: Any
    tracking: Any
    fps: float | None = None
    overlay: bool = True
    overwrite: bool = False


@dataclass(frozen=True)
class VideoJob:
    """One video of a job: its ``input`` (file, folder or glob), its output folder, its id."""

    input: str
    outdir: Path
    video_id: str | None = None


@dataclass(frozen=True)
class VideoSummary:
    """What happened to one video.

    :param status: ``"done"``, ``"finished-before"`` (its folder already held this video's
        results), ``"failed"`` (``error`` says why; nothing written by this run) or ``"stopped"``
        (an error after this run wrote ``written`` frames: they are kept, and the same command
        resumes after the last keyframe written).
    :param frames: frames in its output; ``written``: frames written by this run.
    :param resumed_after: the keyframe this run resumed after, or ``None``.
    """

    input: str
    outdir: Path
    status: str
    video_id: str = ""
    frames: int = 0
    keyframes: int = 0
    written: int = 0
    things: int = 0
    stuff: int = 0
    resumed_after: int | None = None
    warning: str = ""
    error: str = ""
    worker: str = "local"


def video_folders(inputs: Sequence[str], outdir: Path) -> list[VideoJob]:
    """Each input's :class:`VideoJob`: one video is written into ``outdir`` itself, several into
    ``outdir/<name>``: the file's stem or the folder's name; names several inputs share get their
    parent folder's name in front (``a/clip``, ``b/clip`` -> ``a-clip``, ``b-clip``), and, if that
    is not enough, a short digest of the input's path. The names do not depend on the order of the
    inputs, so a rerun with the inputs in another order resumes into the same folders.

    :raises InputError: the same input given twice.
    """
    if len(inputs) == 1:
        return [VideoJob(inputs[0], Path(outdir))]
    paths = [Path(str(i).rstrip("/*") or str(i)) for i in inputs]
    resolved = [str(p.resolve()) for p in paths]
    if len(set(resolved)) != len(resolved):
        twice = next(r for r in resolved if resolved.count(r) > 1)
        raise InputError(f"the video {twice} is given twice: give each video once")
    names = {p: plain_stem(p) for p in paths}
    counts = Counter(n.casefold() for n in names.values())
    for p in paths:
        if counts[names[p].casefold()] > 1:
            names[p] = f"{plain_stem(p.resolve().parent) if p.resolve().parent.name else 'root'}-{names[p]}"
    counts = Counter(n.casefold() for n in names.values())
    for p in paths:
        if counts[names[p].casefold()] > 1:
            names[p] = f"{names[p]}-{hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:8]}"
    return [VideoJob(i, Path(outdir) / names[p]) for i, p in zip(inputs, paths)]


def segment_video_into(
    pipe: Any,
    vocabulary: Vocabulary,
    job: VideoJob,
    settings: VideoSettings,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    on_start: Callable[[VideoJob, Any, Any], None] | None = None,
) -> VideoSummary:
    """Segment one video into ``job.outdir``, resuming a stopped run of the same settings.

    :param pipe: a pipeline with its components and tracker built and the vocabulary prepared.
    :param progress: ``progress("frame", done, total)`` while frames are processed.
    :param on_start: called with ``(job, source, resume point or None)`` before the first frame.
    :raises InputError: the input cannot be read, or no frame was processed.
    :raises OvpanopticError: what the pipeline raises (plugins, weights).
    """
    from ..video import open_frames
    from ..video.output import VideoOutput
    from ..video.run import resolve_bidirectional

    source = open_frames(
        job.input, settings.selection, fps=settings.fps, max_pixels=pipe.config.pipeline.max_pixels or None, name=job.video_id
    )
    # recorded resolved (the tracker's default made explicit): a default run and --bidirectional resume each other
    both_ways = resolve_bidirectional(settings.tracking, pipe.component("tracker", pipe.tracker))
    settings = dataclasses.replace(settings, tracking=dataclasses.replace(settings.tracking, bidirectional=both_ways))
    output_settings = {
        "input": str(Path(job.input).resolve()) if Path(job.input).exists() else job.input,
        "video_id": source.name,
        "fps": source.fps,
        "selection": dataclasses.asdict(settings.selection),
        "tracking": dataclasses.asdict(settings.tracking),
        "vocabulary": vocabulary.to_dict(),
        "config": pipe.config.to_dict(),
    }
    lock = FolderLock.acquire(job.outdir)
    try:
        if settings.overwrite:
            clear_batch(job.outdir)  # an image batch's results: replaced, under the folder's lock
    except BaseException:
        lock.release(remove_if_empty=True)
        raise
    with VideoOutput(job.outdir, output_settings, overwrite=settings.overwrite, lock=lock) as output:
        return _segment_into(pipe, vocabulary, job, settings, source, output, progress, on_start)


def _segment_into(
    pipe: Any,
    vocabulary: Vocabulary,
    job: VideoJob,
    settings: VideoSettings,
    source: Any,
    output: Any,
    progress: Callable[[str, int, int], None] | None,
    on_start: Callable[[VideoJob, Any, Any], None] | None,
) -> VideoSummary:
    from ..video import TrackBook, segment_video

    if output.finished:
        parts = output.parts()
        return VideoSummary(job.input, job.outdir, "finished-before", source.name, len(parts), sum(p["keyframe"] for p in parts))
    resume = output.resume_point(vocabulary)
    if resume is None and settings.overlay:
        output.stream_overlay(source.fps, source.selection.every)  # drawn as frames arrive: no second pass
    if on_start is not None:
        on_start(job, source, resume)
    book = None
    written = 0
    try:
        for item in segment_video(pipe, source, vocabulary, settings.tracking, progress=progress, resume=resume):
            output.write(item)
            book = item.book
            written += 1
            log.info("%s frame %d: %d segments%s", source.name, item.index, len(item.result.segments), " (keyframe)" if item.keyframe else "")
    except OvpanopticError as exc:
        if written == 0 or isinstance(exc, Cancelled):
            raise  # nothing written by this run: the error is the run's
        parts = output.parts()
        log.debug("%s stopped after %d frame(s)", source.name, written, exc_info=exc)
        return VideoSummary(
            job.input, job.outdir, "stopped", source.name, len(parts), sum(p["keyframe"] for p in parts), written,
            resumed_after=resume.index if resume is not None else None, error=str(exc),
        )
    shortfall = source.shortfall()
    if book is None:
        if resume is None:
            raise InputError(f"no frame of {job.input} was processed")
        book = TrackBook(vocabulary, settings.tracking)
        book.restore(resume.state, resume.result)
    files = output.finish(book, source, overlay=settings.overlay)
    for f in files:
        log.info("wrote %s", f)
    records = book.records()
    things = sum(r.isthing for r in records)
    parts = output.parts()
    return VideoSummary(
        job.input, job.outdir, "done", source.name, len(parts), sum(p["keyframe"] for p in parts), written, things,
        len(records) - things, resume.index if resume is not None else None, shortfall or "",
    )


def run_videos(
    pipe: Any,
    vocabulary: Vocabulary,
    jobs: Sequence[VideoJob],
    settings: VideoSettings,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    on_video: Callable[[VideoSummary], None] | None = None,
    on_start: Callable[[VideoJob, Any, Any], None] | None = None,
) -> list[VideoSummary]:
    """Segment ``jobs`` one after another in this process. With one video its errors are raised;
    with several, a video that cannot be read or segmented is reported as ``"failed"`` and the
    job goes on (an error every video would hit, such as missing weights, is raised).

    :raises OvpanopticError: see :func:`segment_video_into`.
    """
    summaries = []
    for job in jobs:
        try:
            summary = segment_video_into(pipe, vocabulary, job, settings, progress=progress, on_start=on_start)
        except InputError as exc:
            if len(jobs) == 1:
                raise
            summary = VideoSummary(job.input, job.outdir, "failed", error=str(exc))
        summaries.append(summary)
        if on_video is not None:
            on_video(summary)
    return summaries
