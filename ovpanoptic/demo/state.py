"""Per-browser-session state of the demo, and the inputs of a run.

One :class:`Session` per browser tab (keyed by Gradio's session hash): its image, its result and
the corrections made to it (with an undo history), the prompt being drawn, the selection, the
display options, the last error and a cancel flag. Heavy things (pipelines, decoded uploads, the
proposal and feature caches) are shared between sessions by the app and keyed by content; what a
session is told ("same image as before") depends only on what that session did.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..types import PanopticResult
from .render import segment_labels

__all__ = ["MAX_KEPT_IMAGES", "MAX_UNDO", "MAX_UNDO_BYTES", "LoadedImage", "RunRequest", "Session", "Snapshot", "Work"]

#: Corrections kept for undo, per session...
MAX_UNDO = 50
#: ... and at most this many bytes of panoptic maps (a 12-megapixel map is 48 MB).
MAX_UNDO_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded upload.

    :param rgb: ``(H, W, 3)`` uint8 RGB at the uploaded size.
    :param display: the same image at most ``display_max_side`` on its long side.
    :param stem: file-name-safe stem of the upload's name (``"my photo.jpg"`` -> ``"my_photo"``).
    :param name: the upload's name as the user knows it.
    :param path: the uploaded file (copied into the download when it is a JPEG).
    :param digest: content digest of ``rgb`` (the key of the shared caches).
    """

    rgb: np.ndarray
    display: np.ndarray
    stem: str
    name: str
    path: Path | None
    digest: str


@dataclass(frozen=True)
class RunRequest:
    """The inputs of one Segment click.

    :param classes: the Class names box (``"person, tv|television"``).
    :param stuff: the Stuff box.
    :param things: the Things box (names kept as things even when they sound like stuff).
    :param vocabulary: the Named vocabulary menu's value (the boxes are what runs, see
        :meth:`~ovpanoptic.demo.resources.DemoResources.vocabulary_for`).
    :param preset: the Preset menu's value.
    :param tuning: ``--set`` style overrides from the threshold controls that differ from the preset.
    """

    classes: str = ""
    stuff: str = ""
    things: str = ""
    vocabulary: str = ""
    preset: str = ""
    tuning: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One step of the undo history: a result and what produced it.

    :param what: the step that replaced it (``"add pallet #1"``, ``"threshold change"``).
    """

    what: str
    result: PanopticResult
    request: RunRequest | None
    explanation: tuple[str, ...]
    timings: dict[str, float]
    cached: bool


#: Images whose corrected results a session keeps while it works on others (oldest dropped first).
MAX_KEPT_IMAGES = 64


@dataclass
class Work:
    """One image's work, kept while the session is on another image: the result with its undo
    history, what produced it, the instance numbers, the selection and the display options."""

    result: PanopticResult
    request: RunRequest | None
    explanation: tuple[str, ...]
    timings: dict[str, float]
    cached: bool
    history: list[Snapshot]
    numbers: dict[tuple[int, int], int]
    selected: list[int]
    shown: tuple[str, ...] | None
    download: Path | None


@dataclass(frozen=True)
class VideoClip:
    """The Video tab's last result.

    :param summary: one line (frames, keyframes, tracks, seconds).
    :param overlay: the overlay video (``overlay.mp4``).
    :param rows: the tracks table (:data:`~.handlers.TRACK_HEADERS` columns).
    :param download: a zip of the output folder (PNGs, JSON, tracks, overlay).
    """

    summary: str
    overlay: Path
    rows: tuple[tuple[Any, ...], ...]
    download: Path


@dataclass
class Session:
    """Mutable state of one browser session (see the module docstring)."""

    key: str
    image: LoadedImage | None = None
    #: The uploaded image differs from the one the result is for: the result is marked stale.
    stale: str = ""
    result: PanopticResult | None = None
    #: Digest of the image the result is for.
    result_image: str = ""
    request: RunRequest | None = None
    #: One line per stage ("proposals: 37 ...") explaining the last run.
    explanation: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    #: Digests of the images this session has segmented ("same image as before" is per session).
    seen: set[str] = field(default_factory=set)
    #: Undo steps, newest last.
    history: list[Snapshot] = field(default_factory=list)
    #: A segmentation of this session is queued or running.
    running: bool = False
    points: list[tuple[float, float, int]] = field(default_factory=list)
    box_start: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    candidate: np.ndarray | None = None
    selected: list[int] = field(default_factory=list)
    #: Instance numbers of things, ``(segment id, category id) -> k``: kept through edits and undo
    #: (see :func:`~.render.segment_labels`), reset by a new run.
    numbers: dict[tuple[int, int], int] = field(default_factory=dict)
    shown: tuple[str, ...] | None = None
    opacity: float = 0.55
    #: Thresholds typed into a box and applied by the correction clicked next (the box's own late
    #: "release" of the same values is then ignored).
    typed_applied: tuple[str, ...] | None = None
    error: str = ""
    #: The last upload was refused (the page clears it; that clearing keeps the error shown).
    refused_upload: bool = False
    notice: str = ""
    download: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    #: When Cancel was pressed (``time.perf_counter()``; 0: not pressed).
    cancel_at: float = 0.0
    #: Other images' work, by image digest (see :meth:`keep` and :meth:`resume`).
    works: dict[str, Work] = field(default_factory=dict)
    #: Images uploaded together (walked with Previous / Next) and the one shown.
    images: list[Any] = field(default_factory=list)
    position: int = 0
    #: The Video tab: its last result, error and notice (kept apart from the image's).
    video: VideoClip | None = None
    video_error: str = ""
    video_notice: str = ""

    def keep(self) -> None:
        """Keep the current result's work under its image (the session moves to another image)."""
        if self.result is None or not self.result_image:
            return
        self.works.pop(self.result_image, None)
        self.works[self.result_image] = Work(
            self.result, self.request, self.explanation, dict(self.timings), self.cached, list(self.history),
            dict(self.numbers), list(self.selected), self.shown, self.download,
        )
        while len(self.works) > MAX_KEPT_IMAGES:
            del self.works[next(iter(self.works))]

    def resume(self, digest: str) -> bool:
        """Make the kept work of image ``digest`` current (the current one is kept first); ``False``
        when that image has none."""
        work = self.works.pop(digest, None)
        if work is None:
            return False
        self.keep()
        self.result, self.result_image, self.request = work.result, digest, work.request
        self.explanation, self.timings, self.cached = work.explanation, work.timings, work.cached
        self.history, self.numbers, self.selected = work.history, work.numbers, work.selected
        self.shown, self.download, self.stale = work.shown, work.download, ""
        return True

    def labels(self, result: PanopticResult | None = None) -> dict[int, str]:
        """Segment id -> label of ``result`` (default: the current result), with the session's
        stable instance numbers."""
        result = result if result is not None else self.result
        return segment_labels(result, self.numbers) if result is not None else {}

    def clear_prompt(self) -> None:
        """Forget the clicks, the box and the mask they proposed."""
        self.points.clear()
        self.box_start = None
        self.box = None
        self.candidate = None

    def snapshot(self, what: str) -> Snapshot:
        """The current result with what produced it, labelled ``what`` (for the undo history)."""
        assert self.result is not None
        return Snapshot(what, self.result, self.request, self.explanation, dict(self.timings), self.cached)

    def push(self, what: str, new: PanopticResult) -> None:
        """Make ``new`` the result (a correction), keeping the current state for :meth:`undo`."""
        self.remember(what)
        self.result = new
        self._keep_selected()

    def remember(self, what: str) -> None:
        """Keep the current state for :meth:`undo` (newest last; bounded in steps and bytes)."""
        if self.result is None:
            return
        self.history.append(self.snapshot(what))
        del self.history[:-MAX_UNDO]
        while len(self.history) > 1 and sum(h.result.panoptic_map.nbytes for h in self.history) > MAX_UNDO_BYTES:
            del self.history[0]

    def undo(self) -> str:
        """Go back one step (a correction or a threshold change: the result, the request with its
        thresholds, the explanation); returns what was undone (``""`` when nothing was)."""
        if not self.history:
            return ""
        before = self.history.pop()
        self.result, self.request, self.explanation = before.result, before.request, before.explanation
        self.timings, self.cached = dict(before.timings), before.cached
        self._keep_selected()
        return before.what

    def _keep_selected(self) -> None:
        """Drop selected ids the result no longer has."""
        ids = {seg.id for seg in self.result.segments} if self.result is not None else set()
        self.selected = [s for s in self.selected if s in ids]
