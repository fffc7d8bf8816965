"""Refiners on loaded labels (``ovpanoptic package --refine NAME``).

A refiner (:class:`~ovpanoptic.components.Refiner`) works on a :class:`~ovpanoptic.types.PanopticResult`;
labels read from a file are :class:`~ovpanoptic.formats.annotations.AnnotatedImage` objects. This
module converts one into the other and back, so a refiner runs on each image as it is packaged:

* the category table becomes a vocabulary (things and stuff as the table says);
* segment ids are renumbered ``1..N`` for the refiner and given back their own ids after;
* pixels of segments whose category is not in the table are void for the refiner (packaging leaves
  such segments out anyway); two segments of one stuff class are merged into the first (one segment
  per stuff class, the COCO panoptic rule);
* each kept segment keeps its ``segments_info`` entry (``iscrowd``, ``score``, ...), with its
  ``area`` recomputed; a segment the refiner dropped is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..constants import VOID_ID
from ..errors import InputError, VocabularyError
from ..formats.annotations import AnnotatedImage
from ..formats.common import CategoryInfo
from ..types import Category, PanopticResult, Vocabulary

__all__ = ["annotation_refiner"]


def _vocabulary(categories: Mapping[int, CategoryInfo]) -> Vocabulary:
    try:
        return Vocabulary(tuple(Category(int(c.id), c.name, bool(c.isthing)) for c in categories.values()), name="labels")
    except (VocabularyError, ValueError) as exc:
        raise InputError(f"--refine cannot use the labels' category table: {exc}") from None


def annotation_refiner(
    categories: Mapping[int, CategoryInfo], refine: Callable[[PanopticResult], PanopticResult]
) -> Callable[[AnnotatedImage], AnnotatedImage]:
    """A function that refines one loaded image's labels with ``refine`` (see the module docstring).

    :param categories: the label set's category table.
    :param refine: the refiners, e.g. ``lambda r: pipeline.refine(r, None, names=["cleanup"])``.
    :raises InputError: the category table cannot be a vocabulary (names that clash).
    """
    vocabulary = _vocabulary(categories)
    stuff = {c.id for c in vocabulary if not c.isthing}
    known = set(vocabulary.ids)

    def apply(image: AnnotatedImage) -> AnnotatedImage:
        ids = image.panoptic_map
        if ids.size == 0:
            return image
        entries: dict[int, Mapping[str, Any]] = {}
        for s in image.segments:
            if isinstance(s, Mapping) and "id" in s:
                entries.setdefault(int(s["id"]), s)
        present, inverse = np.unique(ids, return_inverse=True)
        lookup = np.zeros(len(present), np.int32)  # present id -> the refiner's id (0 = void)
        labels: dict[int, tuple[int, float]] = {}
        own_id: dict[int, int] = {}  # the refiner's id -> the label's id
        stuff_seen: dict[int, int] = {}
        for k, sid in enumerate(present.tolist()):
            entry = entries.get(int(sid))
            if sid == VOID_ID or entry is None or int(entry.get("category_id", -1)) not in known:
                continue
            category = int(entry["category_id"])
            if category in stuff_seen:
                lookup[k] = stuff_seen[category]
                continue
            new = len(labels) + 1
            score = entry.get("score", 1.0)
            labels[new] = (category, float(score) if isinstance(score, (int, float)) and 0.0 <= score <= 1.0 else 1.0)
            own_id[new] = int(sid)
            lookup[k] = new
            if category in stuff:
                stuff_seen[category] = new
        result = PanopticResult.from_map(lookup[inverse.reshape(ids.shape)], labels, vocabulary)
        refined = refine(result)
        back = np.zeros(max(own_id, default=0) + 1, np.int64)
        for new, sid in own_id.items():
            back[new] = sid
        out = back[refined.panoptic_map]
        segments = []
        for s in refined.segments:
            entry = dict(entries[own_id[s.id]])
            entry["area"] = s.area
            segments.append(entry)
        return AnnotatedImage(image.name, out, tuple(segments))

    return apply
