"""The demo's Video tab handler: segment a short clip with ids kept across frames, as
``segment-video`` does (:mod:`ovpanoptic.video`), into the session's folder.

A plain function like :mod:`.handlers`' (no gradio here). The clip is cut to
:data:`MAX_DEMO_FRAMES` processed frames at most; the run holds the demo's model lock, reports
progress per frame and stops at the next report after Cancel.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

from ..errors import Cancelled, InputError, WeightsError
from ..video import FrameSelection, TrackingOptions, open_frames, segment_video
from ..video.output import VideoOutput
from ..video.tracks import MAX_KEYFRAME_EVERY
from .resources import DemoResources
from .downloads import jpeg_bytes, zip_member
from .handlers import STAGE_KINDS, ProgressFn, cancelled_text, find_weights, name_weights_setting, request_run, weights_setting
from .render import plural
from .state import RunRequest, Session, VideoClip

__all__ = ["MAX_DEMO_FRAMES", "TRACK_HEADERS", "segment_clip"]

#: Most frames a clip is cut to in the demo (the command line has no limit).
MAX_DEMO_FRAMES = 300
#: Columns of the tracks table.
TRACK_HEADERS: tuple[str, ...] = ("id", "class", "kind", "first frame", "last frame", "frames", "mean score", "ended")


def _clip_path(video: Any) -> Path:
    if video is None or (isinstance(video, dict) and not video.get("path")):
        raise InputError("No video: upload a short clip (mp4, webm, mov, ...) first")
    path = Path(video["path"] if isinstance(video, dict) else video)
    if path.is_dir():
        raise InputError("The demo takes one video file: upload a clip (folders of frames: ovpanoptic segment-video)")
    if not path.is_file():
        raise InputError("The uploaded video is gone from the server (it was cleaned up): upload it again")
    return path


def _whole(value: Any, what: str, low: int, high: int) -> int:
    """A slider's value as an integer in ``low..high``, or an :class:`InputError` naming the field."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise InputError(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    return int(number)


class _ClipProgress:
    """The clip's progress callback: ``"frame"`` reports become "frame i/N" (the page's bar), and
    every report while frames run says which frame it is on ("frame 3/5 · classification", the bar
    staying at the frames done); raises :class:`Cancelled` at the first report after the session's
    Cancel. :attr:`stage` is the last pipeline stage reported (whose weights a failure concerns)."""

    def __init__(self, session: Session, progress: ProgressFn | None) -> None:
        self.session, self.progress = session, progress
        self.started = time.perf_counter()
        self.done, self.total = 0, 0
        self.stage = "starting"

    def __call__(self, message: str, done: int, total: int) -> None:
        if self.session.cancel.is_set():
            kept = "the previous clip's result is kept" if self.session.video is not None else "nothing was segmented"
            raise Cancelled(
                cancelled_text(self.session, time.perf_counter() - self.started, f"with {self.done} of {self.total or '?'} frames done", kept)
            )
        if message in STAGE_KINDS:
            self.stage = message
        if message == "frame":
            self.done = done
            message, total = f"frame {done}/{self.total}", self.total
        elif self.total and self.done < self.total:
            message, done, total = f"frame {min(self.done + 1, self.total)}/{self.total} · {message}", self.done, self.total
        if self.progress is not None:
            self.progress(message, done, total)


def segment_clip(
    app: DemoResources,
    session: Session,
    video: Any,
    request: RunRequest,
    *,
    keyframe_every: int = 10,
    max_frames: int = 60,
    tracker: str = "",
    progress: ProgressFn | None = None,
    fresh: bool = True,
) -> None:
    """Segment the uploaded clip; the result (overlay video, tracks table, zip) goes into
    ``session.video``.

    :param video: the upload (a path, or Gradio's file dict).
    :param request: class names and preset, as for an image.
    :param keyframe_every: K: the image pipeline runs on every K-th frame, the tracker in between.
    :param max_frames: frames processed at most (1 .. :data:`MAX_DEMO_FRAMES`).
    :param tracker: a tracker component's name ("" = the preset's ``pipeline.tracker``).
    :param fresh: forget an earlier Cancel first (the page already did when the button was clicked).
    :raises OvpanopticError: no clip, not a video, bad names or options, missing weights, a plugin's
        fault, :class:`~ovpanoptic.errors.Cancelled`.
    """
    session.video_error = session.video_notice = ""
    if fresh:
        request_run(session)
    try:
        _segment_clip(app, session, video, request, keyframe_every, max_frames, tracker, progress)
    finally:
        session.running = False


def _segment_clip(
    app: DemoResources, session: Session, video: Any, request: RunRequest, keyframe_every: int, max_frames: int, tracker: str, progress: ProgressFn | None
) -> None:
    path = _clip_path(video)
    max_frames = _whole(max_frames, f"Frames (at most {MAX_DEMO_FRAMES} in the demo; the command line has no limit)", 1, MAX_DEMO_FRAMES)
    options = TrackingOptions(keyframe_every=_whole(keyframe_every, "Keyframe every K frames", 1, MAX_KEYFRAME_EVERY))
    report = _ClipProgress(session, progress)
    report("starting", 0, 0)
    with app.lock:
        pipe = app.video_pipeline(request.preset, tracker)
        name = tracker or pipe.tracker
        pipe.component("tracker", name)  # an unknown or broken tracker is refused before decoding
        # Missing weights are named (with their setting) before any frame runs.
        find_weights(app, pipe, ("proposal_generator", "classifier", "tracker"), report, ("", "", name))
        try:
            _run_clip(app, session, pipe, path, request, options, max_frames, name, report)
        except WeightsError as exc:
            raise name_weights_setting(exc, weights_setting(pipe, STAGE_KINDS.get(report.stage, "classifier"))) from None


def _run_clip(
    app: DemoResources, session: Session, pipe: Any, path: Path, request: RunRequest, options: TrackingOptions, max_frames: int,
    name: str, report: _ClipProgress,
) -> None:
    """Decode, segment and track the clip into the session's folder, and zip it (under the app's lock)."""
    started = report.started
    vocab = app.vocabulary_for(pipe, request)
    pipe.prepare_vocabulary(vocab, progress=lambda m, d, t: report(f"encoding class names {d}/{t}" if t else m, d, t))
    source = open_frames(path, FrameSelection(max_frames=max_frames), max_pixels=pipe.config.pipeline.max_pixels or None)
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:10]
    folder = app.session_dir(session) / f"video-{digest}"
    zipped = folder.with_suffix(".zip")
    partial = folder.with_suffix(".zip.partial")
    settings = {"clip": digest, "tracking": options.keyframe_every, "frames": max_frames, "tracker": name, "vocabulary": vocab.to_dict()}
    try:
        # The zip is self-contained: panoptic.json at its root names the frames as SOURCE/NNNNNN.jpg
        # and the PNGs as NNNNNN.png in panoptic/; the frames go in as they arrive.
        with VideoOutput(folder, settings, overwrite=True) as output, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            report.total = source.expected or int(max_frames)
            book, frames, keyframes = None, 0, 0
            output.stream_overlay(source.fps)  # drawn as frames arrive
            for item in segment_video(pipe, source, vocab, options, tracker=name, progress=report):
                output.write(item)
                zf.writestr(zip_member(f"{source.name}/{item.index:06d}.jpg"), jpeg_bytes(item.image), compress_type=zipfile.ZIP_STORED)
                book, frames, keyframes = item.book, frames + 1, keyframes + item.keyframe
            if book is None:
                raise InputError(source.no_frame_message())
            shortfall = source.shortfall()
            report("writing the overlay video", report.done, report.total)
            output.finish(book, source, overlay=True)
            for f in sorted(folder.rglob("*")):
                if f.is_file() and ".video" not in f.relative_to(folder).parts:
                    zf.writestr(zip_member(f.relative_to(folder).as_posix()), f.read_bytes())
        partial.replace(zipped)
    finally:
        partial.unlink(missing_ok=True)
    records = book.records()
    rows = tuple(
        (r.id, vocab.by_id(r.category_id).name, "thing" if r.isthing else "stuff", r.first_frame, r.last_frame, r.frames_seen,
         round(r.score, 3), "yes" if r.ended else "")
        for r in records
    )
    things = sum(r.isthing for r in records)
    session.video = VideoClip(
        summary=(
            f"**{plural(frames, 'frame')}** of {source.name} ({keyframes} keyframes, every {options.keyframe_every}) · "
            f"{plural(things, 'thing track')}, {len(records) - things} stuff · tracker {name} · "
            f"{time.perf_counter() - started:.1f} s"
        ),
        overlay=folder / "overlay.mp4",
        rows=rows,
        download=zipped,
    )
    shutil.rmtree(folder / ".video", ignore_errors=True)
    for old in app.session_dir(session).glob("video-*"):  # one clip's results per session: the last one
        if old.name not in (folder.name, zipped.name):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    if shortfall:
        session.video_notice = f"Warning: {shortfall}."
