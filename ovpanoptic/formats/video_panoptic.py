"""The video panoptic format: COCO panoptic with a video id and a frame index per image.

A video panoptic JSON is a COCO panoptic dict (``images``, ``annotations``, ``categories``) in
which every entry of ``images`` also has

* ``video_id`` (a string or an integer): the video the frame belongs to, and
* ``frame_index`` (an integer): the frame's position in its video (frames are ordered by it; the
  numbers need not be consecutive, e.g. every fifth frame of a sparsely annotated clip).

Annotations pair with images by ``image_id``; each annotation's ``file_name`` names a COCO
panoptic RGB PNG (``id = R + 256 G + 256^2 B``, see :func:`~.common.rgb_to_id`) in the PNG folder.
A thing's segment id is its track id in every frame, and a stuff class keeps one segment id
across the frames of a video, so the same id in two frames of a video is the same object.

:func:`read_video_panoptic` reads and checks the JSON (and that every PNG exists) but no pixel;
:meth:`VideoPanoptic.frames` then reads the PNGs of one video one at a time, so a whole dataset
is never held in memory.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from ..constants import DEFAULT_MAX_PIXELS
from .common import CategoryInfo, EvaluationError, as_int, categories_from_json, load_json, read_id_png

__all__ = ["VideoFrame", "VideoFrameRecord", "VideoId", "VideoPanoptic", "list_ids", "read_video_panoptic"]

#: The id of a video: the ``video_id`` of its images, as written in the JSON.
VideoId = str | int


@dataclass(frozen=True)
class VideoFrameRecord:
    """One annotated frame of a video, as listed in the JSON (its PNG is not read).

    ``segments_info`` is the annotation's list of segment dicts, unchanged (``id``,
    ``category_id``, optional ``iscrowd`` and ``area``); ``png_path`` is ``png_dir / file_name``.
    """

    video_id: VideoId
    frame_index: int
    image_id: Any
    file_name: str
    segments_info: tuple[Mapping[str, Any], ...]
    png_path: Path

    def describe(self, role: str) -> str:
        """Name the frame in messages, e.g. ``"prediction video 'a' frame 3 (a_003.png)"``."""
        return f"{role} video {self.video_id!r} frame {self.frame_index} ({self.file_name})"


@dataclass(frozen=True)
class VideoFrame:
    """One frame with its pixels: ``ids`` is the ``(H, W)`` int64 segment id map of its PNG."""

    record: VideoFrameRecord
    ids: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        """Check that ``ids`` is a 2-D int64 array."""
        if not isinstance(self.ids, np.ndarray) or self.ids.ndim != 2 or self.ids.dtype != np.int64:
            shape = getattr(self.ids, "shape", None)
            dtype = getattr(self.ids, "dtype", type(self.ids).__name__)
            raise EvaluationError(
                f"VideoFrame.ids must be an (H, W) int64 array, got shape {shape} and dtype {dtype}; "
                "read PNGs with rgb_to_id"
            )


@dataclass(frozen=True)
class VideoPanoptic:
    """A video panoptic JSON file and its PNG folder, checked, with no pixel read yet.

    ``videos`` maps each video id to its annotated frames sorted by ``frame_index``, videos in
    the order of their first image in the JSON. ``categories`` holds the JSON's category table
    (empty when it has none; a prediction file may omit it). ``unannotated`` counts the images
    without an annotation, which are not part of any video here. ``data`` is the parsed JSON.
    """

    json_path: Path
    png_dir: Path
    role: str
    categories: Mapping[int, CategoryInfo]
    videos: Mapping[VideoId, tuple[VideoFrameRecord, ...]]
    unannotated: int
    data: Mapping[str, Any]
    #: a PNG declaring more pixels is refused from its header (``None`` or 0: no limit)
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    @property
    def n_frames(self) -> int:
        """Number of annotated frames over all videos."""
        return sum(len(frames) for frames in self.videos.values())

    def frames(self, video_id: VideoId) -> Iterator[VideoFrame]:
        """Yield the frames of one video in ``frame_index`` order, reading one PNG at a time.

        :raises EvaluationError: an unknown video id, or a PNG that cannot be read (see
            :func:`~.common.rgb_to_id` for the encoding).
        """
        if video_id not in self.videos:
            raise EvaluationError(
                f"{self.json_path} has no video {video_id!r}; its videos are {list_ids(self.videos)}"
            )
        for record in self.videos[video_id]:
            yield self.read(record)

    def read(self, record: VideoFrameRecord) -> VideoFrame:
        """Read the PNG of one frame.

        :raises EvaluationError: the PNG is missing, unreadable or not RGB.
        """
        return VideoFrame(record=record, ids=read_id_png(record.png_path, self.role, record.describe(self.role), self.max_pixels))


def list_ids(ids: Sequence[VideoId] | Mapping[VideoId, Any], limit: int = 10) -> str:
    """Show up to ``limit`` video ids, e.g. ``"'a', 'b' and 3 more"``."""
    items = list(ids)
    shown = ", ".join(repr(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "") if items else "none"


def _video_id(image: Mapping[str, Any], where: str) -> VideoId:
    """Return the ``video_id`` of an ``images`` entry (a str or an int, not a bool)."""
    if "video_id" not in image:
        raise EvaluationError(
            f"{where} has no 'video_id': every image of a video panoptic JSON needs the id of its video "
            "(a string or an integer) and its 'frame_index'"
        )
    value = image["video_id"]
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    raise EvaluationError(f"{where}: 'video_id' must be a string or an integer, got {value!r}")


def _frame_index(image: Mapping[str, Any], where: str) -> int:
    """Return the ``frame_index`` of an ``images`` entry (an integer)."""
    if "frame_index" not in image:
        raise EvaluationError(
            f"{where} has no 'frame_index': every image of a video panoptic JSON needs the integer "
            "position of the frame in its video"
        )
    return as_int(image["frame_index"], "'frame_index'", where)


def read_video_panoptic(
    json_path: str | Path, png_dir: str | Path, *, role: str = "video", max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> VideoPanoptic:
    """Read a video panoptic JSON (module docstring) and check it against its PNG folder.

    :param json_path: the COCO panoptic JSON whose ``images`` carry ``video_id`` and ``frame_index``.
    :param png_dir: the folder of the annotations' PNGs (by ``file_name``).
    :param role: what the file is (``"ground-truth"``, ``"prediction"``), used in messages.
    :param max_pixels: a frame PNG declaring more pixels (width x height) is refused from its header
        when it is read (``None`` or 0: no limit; default 50 megapixels).
    :return: the checked :class:`VideoPanoptic`; no PNG is read, each is only checked to exist.
    :raises EvaluationError: the JSON is missing, unreadable or not a COCO panoptic dict; it has
        no ``images`` list; an image lacks ``id``, ``video_id`` or ``frame_index`` or has a bad
        one; two images share an ``id``; two frames of one video share a ``frame_index``; two
        video ids differ only by type (``1`` and ``"1"``); an annotation has no ``image_id``,
        ``file_name`` or ``segments_info``, names an image not in ``images`` or repeats one;
        a bad ``categories`` table; the PNG folder or a PNG does not exist.
    """
    path, folder = Path(json_path), Path(png_dir)
    data = load_json(path, role)
    categories: Mapping[int, CategoryInfo] = {}
    if data.get("categories") is not None:
        categories = categories_from_json(data, path)
    images = data.get("images")
    if not isinstance(images, list):
        raise EvaluationError(
            f"{role} JSON file {path} has no 'images' list: a video panoptic JSON lists every frame in "
            "'images' with its 'id', 'video_id' and 'frame_index'"
        )
    if not folder.is_dir():
        raise EvaluationError(f"{role} PNG folder {folder} does not exist")

    frame_of_image: dict[Any, tuple[VideoId, int, int]] = {}
    seen_frames: dict[tuple[VideoId, int], int] = {}
    video_order: dict[VideoId, None] = {}
    text_ids: dict[str, VideoId] = {}
    for position, image in enumerate(images):
        where = f"{path}: images[{position}]"
        if not isinstance(image, Mapping) or "id" not in image:
            raise EvaluationError(f"{where} must be a dict with an 'id'")
        image_id = image["id"]
        if isinstance(image_id, list | dict) or image_id is None:
            raise EvaluationError(f"{where} has a bad 'id' {image_id!r}; use an integer or a string")
        video_id = _video_id(image, where)
        frame_index = _frame_index(image, where)
        if image_id in frame_of_image:
            raise EvaluationError(f"{where}: image id {image_id!r} is used by two images; image ids must be unique")
        other = text_ids.setdefault(str(video_id), video_id)
        if other != video_id or type(other) is not type(video_id):
            raise EvaluationError(
                f"{where}: video ids {other!r} and {video_id!r} differ only by type; use one spelling per video"
            )
        first = seen_frames.setdefault((video_id, frame_index), position)
        if first != position:
            raise EvaluationError(
                f"{where}: video {video_id!r} has two images with frame_index {frame_index} "
                f"(images[{first}] and images[{position}]); each frame of a video needs its own frame_index"
            )
        frame_of_image[image_id] = (video_id, frame_index, position)
        video_order.setdefault(video_id, None)

    records: dict[VideoId, list[VideoFrameRecord]] = {video_id: [] for video_id in video_order}
    annotated: dict[Any, int] = {}
    missing_png: list[Path] = []
    for position, annotation in enumerate(data["annotations"]):
        where = f"{path}: annotations[{position}]"
        if not isinstance(annotation, Mapping):
            raise EvaluationError(f"{where} must be a dict")
        for key in ("image_id", "file_name", "segments_info"):
            if key not in annotation:
                raise EvaluationError(f"{where} has no {key!r}")
        image_id = annotation["image_id"]
        if isinstance(image_id, list | dict) or image_id not in frame_of_image:
            raise EvaluationError(
                f"{where} has image_id {image_id!r}, which is not the id of an entry of 'images'; "
                "every annotated frame must be listed in 'images' with its video_id and frame_index"
            )
        if image_id in annotated:
            raise EvaluationError(
                f"{where}: image_id {image_id!r} already has an annotation (annotations[{annotated[image_id]}]); "
                "give each frame one annotation"
            )
        annotated[image_id] = position
        segments = annotation["segments_info"]
        if isinstance(segments, str | bytes) or not isinstance(segments, Sequence):
            raise EvaluationError(f"{where}: 'segments_info' must be a list of segment dicts")
        video_id, frame_index, _ = frame_of_image[image_id]
        file_name = str(annotation["file_name"])
        png_path = folder / file_name
        if not png_path.is_file():
            missing_png.append(png_path)
        records[video_id].append(
            VideoFrameRecord(
                video_id=video_id,
                frame_index=frame_index,
                image_id=image_id,
                file_name=file_name,
                segments_info=tuple(segments),
                png_path=png_path,
            )
        )
    if missing_png:
        more = f" and {len(missing_png) - 1} more" if len(missing_png) > 1 else ""
        raise EvaluationError(
            f"{role} PNG {missing_png[0]} does not exist{more}: every annotation's file_name must name a PNG "
            f"in {folder}"
        )
    videos = {
        video_id: tuple(sorted(frames, key=lambda record: record.frame_index))
        for video_id, frames in records.items()
        if frames
    }
    return VideoPanoptic(
        json_path=path,
        png_dir=folder,
        role=role,
        categories=MappingProxyType(dict(categories)),
        videos=MappingProxyType(videos),
        unannotated=len(frame_of_image) - len(annotated),
        data=MappingProxyType(data),
        max_pixels=max_pixels,
    )
