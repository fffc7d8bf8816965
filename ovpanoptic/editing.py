"""Corrections of a panoptic result, as a labelling tool makes them: add a segment from a mask,
relabel, delete, merge, and brush or erase pixels of a segment.

Every function is pure: it takes a :class:`~ovpanoptic.types.PanopticResult` and returns a new
one (validated by its constructor), so an editor keeps the old results for undo. The rules are
those of the COCO-panoptic format (Kirillov et al., "Panoptic Segmentation", CVPR 2019): each
pixel belongs to at most one segment, a thing class has one segment per instance, a stuff class
at most one segment per image. Hence:

* a mask added as a **thing** becomes a new segment with a new id (``max id + 1``); added as
  **stuff**, it joins the class's segment when there is one (same id);
* the mask's pixels are taken from whatever held them; a segment left without pixels is gone;
* corrected segments score :data:`CORRECTED_SCORE` (a person drew them).

Imports only :mod:`ovpanoptic.types`, :mod:`ovpanoptic.vocabulary`, :mod:`ovpanoptic.constants` and
:mod:`ovpanoptic.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .constants import VOID_ID
from .errors import InputError
from .types import Category, PanopticResult, Vocabulary, normalize_name, size_text
from .vocabulary import StuffLexicon

__all__ = [
    "CORRECTED_SCORE",
    "add_category",
    "add_segment",
    "delete_segment",
    "erase_segment",
    "merge_segments",
    "paint_segment",
    "relabel_segment",
]

#: Score of a segment a person drew or relabelled.
CORRECTED_SCORE = 1.0


def _labels(result: PanopticResult) -> dict[int, tuple[int, float]]:
    return {s.id: (s.category_id, s.score) for s in result.segments}


def _segment(result: PanopticResult, segment_id: int) -> None:
    if segment_id not in {s.id for s in result.segments}:
        shown = ", ".join(str(s.id) for s in result.segments[:20]) or "none"
        raise InputError(f"no segment {segment_id} in this result (segments: {shown})")


def add_category(vocabulary: Vocabulary, name: str, isthing: bool | None = None) -> tuple[Vocabulary, Category]:
    """The vocabulary with a class named ``name`` (the existing one when a name or synonym matches,
    compared ignoring case, Unicode width and repeated spaces; else a new category with id ``max id + 1``, appended).

    :param isthing: the kind the class must have; ``None``: an existing class's kind, and for a new
        name stuff when the stuff lexicon knows it, else a thing
        (:meth:`~ovpanoptic.vocabulary.StuffLexicon.is_stuff`).
    :raises InputError: the name exists with the other thing/stuff kind.
    :raises VocabularyError: the name is not a valid class name.
    """
    key = normalize_name(name).casefold()
    for cat in vocabulary:
        if key in (n.casefold() for n in cat.names):
            if isthing is not None and cat.isthing != isthing:
                kind = "a thing" if cat.isthing else "stuff"
                raise InputError(f"{cat.name!r} is {kind} in this vocabulary: add it as {kind}, or type another name")
            return vocabulary, cat
    if isthing is None:
        isthing = not StuffLexicon.default().is_stuff(name)
    new = Category(id=max(vocabulary.ids) + 1, name=name, isthing=isthing)
    return Vocabulary((*vocabulary.categories, new), name=vocabulary.name), new


def _class(result: PanopticResult, category_id: int, vocabulary: Vocabulary | None) -> tuple[Vocabulary, Category]:
    """The vocabulary an edit's result gets (``vocabulary``, the result's own extended by
    :func:`add_category`; default the result's) and the category ``category_id`` in it.

    :raises InputError: the class is unknown, or ``vocabulary`` lacks classes of the result.
    """
    vocab = vocabulary if vocabulary is not None else result.vocabulary
    try:
        cat = vocab.by_id(category_id)
    except KeyError:
        raise InputError(f"no class with id {category_id} in the vocabulary {vocab.name!r}") from None
    missing = {s.category_id for s in result.segments} - set(vocab.ids)
    if missing:
        raise InputError(f"the vocabulary given lacks classes {sorted(missing)} of the result: extend the result's own")
    return vocab, cat


def add_segment(
    result: PanopticResult, mask: np.ndarray, category_id: int, *, vocabulary: Vocabulary | None = None, score: float = CORRECTED_SCORE
) -> tuple[PanopticResult, int]:
    """Paint ``mask`` as a segment of class ``category_id`` over ``result``.

    :param mask: ``(H, W)`` bool at the result's size.
    :param vocabulary: the result's vocabulary extended by :func:`add_category` (default: the
        result's own).
    :return: the new result and the id of the segment that holds the mask.
    :raises InputError: the mask has another size or no pixel, or the class is unknown.
    """
    mask = np.asarray(mask)
    if mask.shape != result.image_size or mask.dtype != bool:
        raise InputError(
            f"the mask must be a bool array of the result's size, {size_text(result.image_size)} (width x height), i.e. of shape "
            f"{result.image_size}; got {mask.dtype} of shape {mask.shape}"
        )
    if not mask.any():
        raise InputError("the mask is empty: click inside the object, or draw a larger box")
    vocab, cat = _class(result, category_id, vocabulary)
    labels = _labels(result)
    segment_id = None
    if not cat.isthing:
        segment_id = next((s.id for s in result.segments if s.category_id == cat.id), None)
    if segment_id is None:
        segment_id = max(labels, default=VOID_ID) + 1
    labels[segment_id] = (cat.id, float(score))
    panoptic_map = np.array(result.panoptic_map, dtype=np.int32)
    panoptic_map[mask] = segment_id
    return PanopticResult.from_map(panoptic_map, labels, vocab, result.timings), segment_id


def relabel_segment(
    result: PanopticResult, segment_id: int, category_id: int, *, vocabulary: Vocabulary | None = None
) -> tuple[PanopticResult, int]:
    """Give segment ``segment_id`` the class ``category_id``.

    A segment relabelled to a stuff class that already has a segment joins it.

    :param vocabulary: the result's vocabulary extended by :func:`add_category` (default: the
        result's own).
    :return: the new result and the id of the segment that now holds the pixels.
    :raises InputError: unknown segment or class.
    """
    _segment(result, segment_id)
    vocab, cat = _class(result, category_id, vocabulary)
    labels = _labels(result)
    target = segment_id
    if not cat.isthing:
        target = next((s.id for s in result.segments if s.category_id == cat.id and s.id != segment_id), segment_id)
    panoptic_map = np.array(result.panoptic_map, dtype=np.int32)
    if target != segment_id:
        panoptic_map[panoptic_map == segment_id] = target
        del labels[segment_id]
    labels[target] = (cat.id, CORRECTED_SCORE)
    return PanopticResult.from_map(panoptic_map, labels, vocab, result.timings), target


def _brush_mask(result: PanopticResult, mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != result.image_size or mask.dtype != bool:
        raise InputError(
            f"the brush mask must be a bool array of the result's size, {size_text(result.image_size)} (width x height); "
            f"got {mask.dtype} of shape {mask.shape}"
        )
    return mask


def paint_segment(result: PanopticResult, segment_id: int, mask: np.ndarray) -> PanopticResult:
    """A brush stroke: the pixels of ``mask`` join segment ``segment_id`` (taken from whatever held
    them; a segment left without pixels is gone). The segment keeps its class and score.

    :raises InputError: unknown segment, or a mask of another size.
    """
    _segment(result, segment_id)
    mask = _brush_mask(result, mask)
    panoptic_map = np.array(result.panoptic_map, dtype=np.int32)
    panoptic_map[mask] = segment_id
    return PanopticResult.from_map(panoptic_map, _labels(result), result.vocabulary, result.timings)


def erase_segment(result: PanopticResult, segment_id: int, mask: np.ndarray) -> PanopticResult:
    """An eraser stroke: the pixels of segment ``segment_id`` under ``mask`` become void; other
    segments' pixels stay (a segment erased entirely is gone).

    :raises InputError: unknown segment, or a mask of another size.
    """
    _segment(result, segment_id)
    mask = _brush_mask(result, mask)
    panoptic_map = np.array(result.panoptic_map, dtype=np.int32)
    panoptic_map[mask & (panoptic_map == segment_id)] = VOID_ID
    return PanopticResult.from_map(panoptic_map, _labels(result), result.vocabulary, result.timings)


def delete_segment(result: PanopticResult, segment_id: int) -> PanopticResult:
    """Remove a segment: its pixels become void (id 0, unlabelled).

    :raises InputError: unknown segment.
    """
    _segment(result, segment_id)
    labels = _labels(result)
    del labels[segment_id]
    panoptic_map = np.array(result.panoptic_map, dtype=np.int32)
    panoptic_map[panoptic_map == segment_id] = VOID_ID
    return PanopticResult.from_map(panoptic_map, labels, result.vocabulary, result.timings)


def merge_segments(result: PanopticResult, segment_ids: Sequence[int]) -> tuple[PanopticResult, int]:
    """Merge segments of one class into the first of ``segment_ids`` (e.g. one object split in two).

    The merged segment keeps the first id and scores the area-weighted mean of the scores.

    :return: the new result and the merged segment's id.
    :raises InputError: fewer than two distinct segments, an unknown one, or segments of different classes.
    """
    ids = list(dict.fromkeys(int(i) for i in segment_ids))
    if len(ids) < 2:
        raise InputError("select two or more segments of one class to merge")
    for sid in ids:
        _segment(result, sid)
    segments = [result.segment_by_id(i) for i in ids]
    classes = {s.category_id for s in segments}
    if len(classes) > 1:
        names = ", ".join(f"{s.id} ({result.category_of(s).name})" for s in segments)
        raise InputError(f"only segments of one class can be merged; these are of different classes: {names}. Relabel first")
    area = sum(s.area for s in segments)
    score = sum(s.score * s.area for s in segments) / area
    labels = _labels(result)
    panoptic_map = np.array(result.panoptic_map, dtype=np.int32)
    panoptic_map[np.isin(panoptic_map, ids[1:])] = ids[0]
    for sid in ids[1:]:
        del labels[sid]
    labels[ids[0]] = (segments[0].category_id, score)
    return PanopticResult.from_map(panoptic_map, labels, result.vocabulary, result.timings), ids[0]
