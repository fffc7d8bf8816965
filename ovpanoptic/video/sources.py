"""Frame sources: a video file (decoded with PyAV), a folder of frames, or a glob of frames.

Frames are streamed: one decoded frame is held at a time, whatever the video's length. Every
source numbers its frames from 0 in presentation order (a video's decode order, a folder's file
names in natural order: ``frame_2`` before ``frame_10``); :class:`FrameSelection` picks which of
them are processed (``--start``, ``--end``, ``--every``, ``--max-frames``), and the frame index in
every output is the *source* index, so results line up with the video whatever the stride.
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import ImageReadError, InputError, MissingDependencyError
from ..imageio import IMAGE_SUFFIXES, check_pixels, read_image, upright_size

__all__ = [
    "VIDEO_SUFFIXES",
    "Frame",
    "FrameSelection",
    "FrameSource",
    "open_frames",
]

#: File suffixes read as video files (anything FFmpeg inside PyAV decodes also works when named).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ogv", ".gif"})

_Indexed = TypeVar("_Indexed", bound=tuple)  # type: ignore[type-arg]

#: Frame rate assumed for a folder or glob of frames (the overlay video's rate); ``--fps`` sets it.
DEFAULT_FOLDER_FPS = 10.0


@dataclass(frozen=True)
class FrameSelection:
    """Which source frames are processed.

    :param every: process every N-th frame (stride, >= 1), counted from ``start``.
    :param start: first source frame index (>= 0).
    :param end: source frame index to stop before (exclusive); ``None`` = the end of the source.
    :param max_frames: process at most this many frames (>= 1); ``None`` = no limit.
    :raises InputError: a value out of range, with the flag that sets it.
    """

    every: int = 1
    start: int = 0
    end: int | None = None
    max_frames: int | None = None

    def __post_init__(self) -> None:
        for name, value, low in (("every", self.every, 1), ("start", self.start, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"--{name} ({name}=) must be an integer >= {low}, got {value!r}")
        if self.end is not None and (isinstance(self.end, bool) or not isinstance(self.end, int) or self.end <= self.start):
            raise InputError(f"--end (end=) must be an integer greater than --start ({self.start}), got {self.end!r}")
        if self.max_frames is not None and (
            isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int) or self.max_frames < 1
        ):
            raise InputError(f"--max-frames (max_frames=) must be an integer >= 1, got {self.max_frames!r}")

    def wants(self, index: int) -> bool:
        """Whether source frame ``index`` is processed (``max_frames`` aside)."""
        return index >= self.start and (index - self.start) % self.every == 0 and (self.end is None or index < self.end)

    def done(self, index: int, taken: int) -> bool:
        """Whether nothing at or after source frame ``index`` is wanted once ``taken`` frames are taken."""
        return (self.end is not None and index >= self.end) or (self.max_frames is not None and taken >= self.max_frames)

    def pick(self, indexed: Iterable[_Indexed]) -> Iterator[_Indexed]:
        """The selected items of ``indexed`` (tuples whose first element is the source frame index,
        in order), stopping at the end of the range or after ``max_frames``."""
        taken = 0
        for item in indexed:
            index = item[0]
            if self.done(index, taken):
                return
            if self.wants(index):
                taken += 1
                yield item

    def count(self, total: int | None) -> int | None:
        """How many frames are processed from a source of ``total`` frames (``None`` if unknown)."""
        if total is None:
            return self.max_frames
        stop = total if self.end is None else min(total, self.end)
        n = max(0, -(-(stop - self.start) // self.every))
        return n if self.max_frames is None else min(n, self.max_frames)


@dataclass(frozen=True, eq=False)
class Frame:
    """One processed frame.

    :param index: the frame's index in the source (0-based, before the selection's stride).
    :param time_s: its presentation time in seconds (``index / fps`` for frame folders).
    :param image: ``(H, W, 3)`` uint8 RGB, read-only.
    """

    index: int
    time_s: float
    image: np.ndarray


def _natural_key(path: Path) -> tuple[object, ...]:
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name))


class FrameSource:
    """A sequence of frames from a video file, a folder or a glob (see :func:`open_frames`).

    :ivar name: the video's name (file stem or folder name): its ``video_id`` in the outputs.
    :ivar fps: frames per second of the source.
    :ivar total: number of frames in the source, when known before decoding (``None`` otherwise).
    :ivar decoded: source frames decoded by the last full pass (every frame up to the selection's
        end is decoded, selected or not).
    """

    def __init__(
        self, spec: str | Path, selection: FrameSelection, *, fps: float | None = None, max_pixels: int | None = None, name: str | None = None
    ) -> None:
        if not isinstance(spec, (str, os.PathLike)):
            raise InputError(
                f"a video input is a path (a video file, a folder of frames or a glob), got {type(spec).__name__}; "
                "for frames in memory, write them to a folder first"
            )
        self.spec = str(spec)
        self.selection = selection
        self.max_pixels = max_pixels
        self.decoded = 0
        self._fps_given = fps is not None
        self._declared: tuple[int, str] | None = None  # (frames, how the file says so) without a frame count
        path = Path(spec)
        self._files: list[Path] | None = None
        self._video: Path | None = None
        if path.is_dir():
            files = sorted(
                (f for f in path.iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES),
                key=_natural_key,
            )
            if not files:
                raise InputError(
                    f"folder {path} holds no frame images ({', '.join(sorted(IMAGE_SUFFIXES))}); give a video file, "
                    "a folder of frames, or a glob such as 'frames/*.png'"
                )
            self._files, self.name = files, path.resolve().name
        elif path.is_file():
            if path.suffix.lower() in IMAGE_SUFFIXES and path.suffix.lower() != ".gif":
                raise InputError(
                    f"{path} is a single image, not a video: use 'ovpanoptic segment' for images, or give a video "
                    "file, a folder of frames or a glob of frames"
                )
            self._video, self.name = path, path.stem
        elif glob.has_magic(self.spec):
            files = sorted((Path(f) for f in glob.glob(self.spec, recursive=True) if Path(f).is_file()), key=_natural_key)
            if not files:
                raise InputError(f"pattern {self.spec!r} matches no file")
            self._files, self.name = files, Path(self.spec.split("*")[0].rstrip("/_-") or "frames").name or "frames"
        elif path.exists():
            raise InputError(f"video input {self.spec!r} is not a regular file or folder (a device or a pipe?): save the video to a file first")
        else:
            raise InputError(f"video input {self.spec!r} does not exist (give a video file, a folder of frames or a glob)")
        if name is not None:
            if not isinstance(name, str) or not name.strip() or any(ch in name for ch in "/\\") or name in (".", ".."):
                raise InputError(f"--video-id must be a plain name (no '/' or '\\'), got {name!r}")
            self.name = name
        self.fps = float(fps) if fps else DEFAULT_FOLDER_FPS
        self.total: int | None = len(self._files) if self._files is not None else None
        self.size: tuple[int, int] | None = None
        if self._video is not None:
            self._probe(fps)
        else:
            self._check_folder_sizes()

    def _check_folder_sizes(self) -> None:
        """Refuse, before anything is processed, selected frames that are not images or that differ
        in size (image headers only: the format, the size as EXIF orientation turns it, the pixel
        limit), so a bad frame never stops a run half-way."""
        import warnings

        from PIL import Image, UnidentifiedImageError

        assert self._files is not None
        first: tuple[int, int] | None = None
        for index, f in self.selection.pick(enumerate(self._files)):
            where = f"frame {index} ({f.name})"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
                    with Image.open(f) as img:
                        size = upright_size(img)  # as the frame is read: upright
            except UnidentifiedImageError:
                raise ImageReadError(
                    f"{where} in {f.parent} is not an image file Pillow can read (is it corrupt, or another kind of file "
                    "with an image name?): remove it from the frames, or select around it with --start/--end; nothing was processed"
                ) from None
            except (OSError, SyntaxError, ValueError) as exc:
                raise ImageReadError(
                    f"{where} in {f.parent} cannot be read ({exc}): replace or remove it, or select around it with "
                    "--start/--end; nothing was processed"
                ) from None
            check_pixels(size[0], size[1], self.max_pixels, f"{where} in {f.parent}")
            if first is None:
                first, first_name = size, f.name
            elif size != first:
                raise InputError(
                    f"frame {index} ({f.name}) is {size[0]}x{size[1]} but frame {first_name} is {first[0]}x{first[1]}"
                    f"{' (as its EXIF orientation turns it)' if size == first[::-1] else ''}: all "
                    "frames of a video must have one size; resize them, or split the folder"
                )

    def _open(self):  # type: ignore[no-untyped-def]
        try:
            import av
        except ImportError:
            raise MissingDependencyError(
                "reading video files needs PyAV: pip install 'ovpanoptic[video]' (or pip install av); "
                "a folder of frames needs nothing more"
            ) from None
        try:
            container = av.open(str(self._video))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"{self._video}: not a video FFmpeg can read ({exc}); is it corrupt or another format?") from None
        if not container.streams.video:
            container.close()
            raise InputError(f"{self._video} has no video stream (audio only?)")
        return container

    def _probe(self, fps: float | None) -> None:
        container = self._open()
        try:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.fps = float(fps) if fps else (float(rate) if rate else DEFAULT_FOLDER_FPS)
            self.total = int(stream.frames) or None
            if self.total is None and rate:  # containers without a frame count (mkv, webm): from the duration
                seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else (
                    container.duration / 1e6 if container.duration else 0.0
                )
                if seconds > 0:
                    self._declared = (round(seconds * float(rate)), f"a duration of {seconds:.2f} s (about {round(seconds * float(rate))} frames)")
            if stream.codec_context.width and stream.codec_context.height:
                self.size = (int(stream.codec_context.height), int(stream.codec_context.width))
                check_pixels(self.size[1], self.size[0], self.max_pixels, f"{self._video} (each frame)")
        finally:
            container.close()

    def shortfall(self) -> str:
        """After a full pass: a warning when a video file declares more frames than could be decoded
        in the selected range (a truncated or damaged file), else ``""``."""
        if self._video is None:
            return ""
        if self.total:
            declared, said, slack = self.total, f"{self.total} frames", 0
        elif self._declared is not None:
            declared, said, slack = self._declared[0], self._declared[1], 1  # a duration rounds: one frame of slack
        else:
            return ""
        wanted = declared if self.selection.end is None else min(declared, self.selection.end)
        if self.decoded >= wanted - slack or (
            self.selection.max_frames is not None and self.selection.count(self.decoded) == self.selection.max_frames
        ):
            return ""
        return (
            f"{self._video} declares {said} but only {self.decoded} could be decoded: the file may be truncated "
            "or damaged (the frames after it are missing from the results)"
        )

    def no_frame_message(self) -> str:
        """Why a pass selected no frame (for the error the caller raises)."""
        if self.decoded == 0:
            return f"no frame of {self.spec} could be decoded: the file may be truncated or damaged"
        sel = self.selection
        return (
            f"no frame of {self.spec} is selected: it has {self.decoded} frame(s) and --start is {sel.start}"
            f"{f', --end {sel.end}' if sel.end is not None else ''}; lower --start"
        )

    @property
    def expected(self) -> int | None:
        """How many frames will be processed, when the source's length is known."""
        return self.selection.count(self.total)

    def _decoded(self) -> Iterator[tuple[int, float, np.ndarray | Path | None]]:
        if self._files is not None:
            for index, f in enumerate(self._files):
                self.decoded = index + 1
                yield index, index / self.fps, f
            return
        import av

        container = self._open()
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            base = stream.time_base or Fraction(1, 1)
            for index, frame in enumerate(container.decode(stream)):
                self.decoded = index + 1
                if not self.selection.wants(index):  # not converted; pick() stops the decoding at the end
                    yield index, 0.0, None
                    continue
                if self._fps_given or frame.pts is None:
                    t = index / self.fps  # --fps given: the user's rate rules the timeline as well
                else:
                    t = float(frame.pts * base)
                yield index, t, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise InputError(f"{self._video}: decoding failed at a frame ({exc}); the file may be truncated or corrupt") from None
        finally:
            container.close()

    def __iter__(self) -> Iterator[Frame]:
        """The selected frames, in order, one decoded at a time.

        :raises InputError: a frame of another size than the first, or a video that cannot be decoded.
        :raises ImageReadError: a frame file that cannot be read.
        """
        size = self.size
        self.decoded = 0
        for index, t, item in self.selection.pick(self._decoded()):
            if isinstance(item, Path):
                try:
                    image = read_image(item, self.max_pixels)
                except ImageReadError as exc:
                    raise ImageReadError(f"frame {index}: {exc}") from None
                where = f"frame {index} ({item.name})"
            else:
                image = np.ascontiguousarray(item)
                where = f"frame {index}"
            if size is None:
                size = image.shape[:2]
            elif image.shape[:2] != size:
                raise InputError(
                    f"{where} is {image.shape[1]}x{image.shape[0]} but the first frame is {size[1]}x{size[0]}: all frames "
                    "of a video must have one size; resize them, or split the folder"
                )
            image.flags.writeable = False
            yield Frame(index, t, image)


def open_frames(
    spec: str | Path,
    selection: FrameSelection | None = None,
    *,
    fps: float | None = None,
    max_pixels: int | None = None,
    name: str | None = None,
) -> FrameSource:
    """Open a video file, a folder of frame images, or a glob of frame images.

    :param spec: the input (``clip.mp4``, ``frames/``, ``'frames/*.png'``).
    :param selection: which frames (default: all).
    :param fps: the frame rate (folders default to :data:`DEFAULT_FOLDER_FPS`; a video file uses its
        own unless given, and a given one also sets its frames' times: ``index / fps``).
    :param max_pixels: refuse frames with more pixels (``pipeline.max_pixels``).
    :param name: the video's id in the outputs (default: the file's stem or the folder's name).
    :raises InputError: the input does not exist, is a single image, holds no frames, or is not a
        video FFmpeg can read.
    :raises MissingDependencyError: a video file without PyAV installed.
    """
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0):
        raise InputError(f"--fps (fps=) must be a finite number > 0, got {fps!r}")
    return FrameSource(spec, selection or FrameSelection(), fps=fps, max_pixels=max_pixels, name=name)
