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

import numpy as np

from ..types import PanopticResult, Vocabulary

__all__ = ["MAX_UNDO", "MAX_UNDO_BYTES", "LoadedImage", "RunRequest", "Session"]

#: Corrections kept for undo, per session...
MAX_UNDO = 50
#: ... and at most this many bytes of panoptic maps (a 12-megapixel map is 48 MB).
MAX_UNDO_BYTES = 256 * 1024 * 1024


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
        :meth:`~ovpanoptic.demo.app.DemoApp.vocabulary_for`).
    :param preset: the Preset menu's value.
    :param tuning: ``--set`` style overrides from the threshold controls that differ from the preset.
    """

    classes: str = ""
    stuff: str = ""
    things: str = ""
    vocabulary: str = ""
    preset: str = ""
    tuning: tuple[str, ...] = ()


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
    vocabulary: Vocabulary | None = None
    request: RunRequest | None = None
    #: One line per stage ("proposals: 37 ...") explaining the last run.
    explanation: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    #: Digests of the images this session has segmented ("same image as before" is per session).
    seen: set[str] = field(default_factory=set)
    #: ``(what, result before)``, newest last.
    history: list[tuple[str, PanopticResult]] = field(default_factory=list)
    points: list[tuple[float, float, int]] = field(default_factory=list)
    box_start: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    candidate: np.ndarray | None = None
    candidate_score: float = 0.0
    selected: list[int] = field(default_factory=list)
    shown: tuple[str, ...] | None = None
    opacity: float = 0.55
    error: str = ""
    notice: str = ""
    download: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def clear_prompt(self) -> None:
        """Forget the clicks, the box and the mask they proposed."""
        self.points.clear()
        self.box_start = None
        self.box = None
        self.candidate = None
        self.candidate_score = 0.0

    def push(self, what: str, new: PanopticResult) -> None:
        """Make ``new`` the result, keeping the current one for :meth:`undo`."""
        if self.result is not None:
            self.history.append((what, self.result))
            del self.history[:-MAX_UNDO]
            while len(self.history) > 1 and sum(r.panoptic_map.nbytes for _, r in self.history) > MAX_UNDO_BYTES:
                del self.history[0]
        self.result = new
        self.selected = [s for s in self.selected if s in {seg.id for seg in new.segments}]

    def undo(self) -> str:
        """Go back one correction; returns what was undone (``""`` when nothing was)."""
        if not self.history:
            return ""
        what, before = self.history.pop()
        self.result = before
        self.selected = [s for s in self.selected if s in {seg.id for seg in before.segments}]
        return what
