"""The one internal form of panoptic annotations that every format reader produces.

Readers of foreign formats (COCO panoptic, Label Studio exports, CVAT folders, Cityscapes folders)
turn what they read into a :class:`PanopticAnnotations`: a category table and, per image, an
:class:`AnnotatedImage` (an id map and its ``segments_info``), read lazily one image at a time.
:func:`ovpanoptic.evaluation.evaluate_annotations` pairs two sets by image name.

Image names: each reader gives every image a *name* used for pairing: the file name without its
folder and extension (``frankfurt_000000_000294`` for Cityscapes, whose suffixes such as
``_gtFine_panoptic`` and ``_leftImg8bit`` are removed). Two sets pair the images of equal names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from ..constants import VOID_ID
from .common import CategoryInfo, EvaluationError, category_key

__all__ = [
    "AnnotatedImage",
    "PanopticAnnotations",
    "categories_by_name",
    "image_name",
    "paint_segments",
]

#: Suffixes that some formats add to an image's file name; removed to get its name.
_NAME_SUFFIXES: tuple[str, ...] = ("_gtFine_panoptic", "_gtFine_instanceIds", "_gtFine_labelIds", "_leftImg8bit")


def image_name(file_name: str) -> str:
    """The pairing name of an image file: no folder, no extension, no Cityscapes suffix.

    ``"a/b/frankfurt_000000_000294_leftImg8bit.png"`` -> ``"frankfurt_000000_000294"``;
    ``"000000139.jpg"`` -> ``"000000139"``.
    """
    stem = PurePosixPath(str(file_name).replace("\\", "/")).name
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    for suffix in _NAME_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


@dataclass(frozen=True)
class AnnotatedImage:
    """One image's panoptic annotation in the internal form.

    :param name: the image's pairing name (:func:`image_name`).
    :param panoptic_map: ``(H, W)`` int64 segment ids, ``VOID_ID`` (0) = void; ``(0, 0)`` when the
        image has no segment and its size is unknown (a Label Studio task without regions): the
        evaluation takes the other side's size.
    :param segments: ``segments_info`` dicts with ``id``, ``category_id`` and optionally
        ``iscrowd`` (1 = crowd), ``area`` (pixels) and ``score``; every non-void id of the map has one.
    """

    name: str
    panoptic_map: npt.NDArray[np.int64]
    segments: tuple[Mapping[str, Any], ...]

    def __post_init__(self) -> None:
        pm = self.panoptic_map
        if not isinstance(pm, np.ndarray) or pm.ndim != 2 or not np.issubdtype(pm.dtype, np.integer):
            raise EvaluationError(f"{self.name}: the panoptic map must be an (H, W) integer array")
        if not isinstance(self.segments, tuple):
            object.__setattr__(self, "segments", tuple(self.segments))


@dataclass(frozen=True)
class PanopticAnnotations:
    """A set of panoptic annotations: categories and lazily read images.

    :param source: where it was read from, for messages (``"label-studio export.json"``).
    :param format: the format name (``"coco-panoptic"``, ``"label-studio"``, ``"cvat"``, ...).
    :param categories: the category table by id.
    :param names: the images' pairing names, in the source's order, unique.
    :param reader: ``reader(name) -> AnnotatedImage``; raises :class:`EvaluationError` for bad data.
    :param notes: what the reader chose or skipped that the report should say (regions of other
        types, tasks without annotation, ...).
    :param sizes: ``sizes(name) -> (width, height)`` that the file declares for an image, read
        without decoding anything (``None``: unknown); :func:`evaluate_annotations` compares the two
        sides' sizes before it reads either image.
    """

    source: str
    format: str
    categories: Mapping[int, CategoryInfo]
    names: tuple[str, ...]
    reader: Callable[[str], AnnotatedImage] = field(repr=False, compare=False)
    notes: tuple[str, ...] = ()
    sizes: Callable[[str], tuple[int, int] | None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", MappingProxyType(dict(self.categories)))
        seen: set[str] = set()
        for name in self.names:
            if name in seen:
                raise EvaluationError(
                    f"{self.source}: two images have the name {name!r}; images are paired by file name, so names "
                    "must be unique within a set"
                )
            seen.add(name)

    def read(self, name: str) -> AnnotatedImage:
        """The annotation of the image called ``name``.

        :raises EvaluationError: no such image, or its data is malformed.
        """
        if name not in self.names:
            raise EvaluationError(f"{self.source} has no image named {name!r}")
        return self.reader(name)

    def size(self, name: str) -> tuple[int, int] | None:
        """The ``(width, height)`` the set declares for the image ``name`` (nothing is decoded), or
        ``None`` when it declares none (a Label Studio task without regions)."""
        return None if self.sizes is None else self.sizes(name)


def paint_segments(
    name: str, height: int, width: int, layers: Iterable[tuple[CategoryInfo, npt.NDArray[np.bool_]]]
) -> AnnotatedImage:
    """Paint shapes into one id map, in the order given (later on top), the way labelling tools'
    regions become panoptic segments: each thing shape is a segment, the shapes of one stuff class
    are one segment; a segment left with no pixel is dropped.

    :param layers: ``(category, (height, width) bool mask)`` per shape, bottom first (read lazily).
    :return: the image, with ``segments_info`` of ``id``, ``category_id``, ``iscrowd`` (0) and ``area``.
    """
    ids = np.full((height, width), VOID_ID, np.int64)
    category_of: dict[int, int] = {}
    stuff_ids: dict[int, int] = {}
    for category, mask in layers:
        if category.isthing:
            segment_id = len(category_of) + 1
        else:
            segment_id = stuff_ids.setdefault(category.id, len(category_of) + 1)
        category_of[segment_id] = category.id
        ids[mask] = segment_id
    areas = np.bincount(ids.ravel(), minlength=len(category_of) + 1)
    segments = tuple(
        {"id": sid, "category_id": cid, "iscrowd": 0, "area": int(areas[sid])} for sid, cid in category_of.items() if areas[sid] > 0
    )
    return AnnotatedImage(name, ids, segments)


def categories_by_name(categories: Sequence[CategoryInfo] | Mapping[int, CategoryInfo]) -> dict[str, CategoryInfo]:
    """``{name key: category}`` for readers of formats that name classes but give no ids (Label
    Studio, CVAT): names compare like :func:`~.common.category_key` (case, width, spaces)."""
    values = categories.values() if isinstance(categories, Mapping) else categories
    return {category_key(c.name): c for c in values}
