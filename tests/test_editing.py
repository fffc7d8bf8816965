"""Corrections of a panoptic result (ovpanoptic.editing): exact ids, areas, classes and scores."""

from __future__ import annotations

import numpy as np
import pytest

from ovpanoptic.editing import CORRECTED_SCORE, add_category, add_segment, delete_segment, merge_segments, relabel_segment
from ovpanoptic.errors import InputError
from ovpanoptic.types import Category, PanopticResult, Vocabulary

VOCAB = Vocabulary((Category(1, "car", True), Category(2, "road", False), Category(3, "sky", False)))


@pytest.fixture
def result() -> PanopticResult:
    """8x10: sky (id 1) rows 0-1, road (id 2) rows 6-7, car #1 (id 3) rows 3-4 cols 0-3, car #2 (id 4) rows 3-4 cols 6-9."""
    pm = np.zeros((8, 10), np.int32)
    pm[0:2] = 1
    pm[6:8] = 2
    pm[3:5, 0:4] = 3
    pm[3:5, 6:10] = 4
    return PanopticResult.from_map(pm, {1: (3, 0.9), 2: (2, 0.8), 3: (1, 0.7), 4: (1, 0.5)}, VOCAB)


def areas(result: PanopticResult) -> dict[int, tuple[str, int, float]]:
    return {s.id: (result.category_of(s).name, s.area, round(s.score, 4)) for s in result.segments}


def test_add_a_thing_takes_pixels_and_gets_a_new_id(result):
    mask = np.zeros((8, 10), bool)
    mask[1:4, 2:8] = True  # 18 px: 6 from sky, 6 void (row 2), 2 from car #1, 2 from car #2... row 3
    new, sid = add_segment(result, mask, 1)
    assert sid == 5
    assert areas(new) == {1: ("sky", 14, 0.9), 2: ("road", 20, 0.8), 3: ("car", 6, 0.7), 4: ("car", 6, 0.5), 5: ("car", 18, CORRECTED_SCORE)}
    assert (new.panoptic_map[mask] == 5).all()
    assert areas(result)[1] == ("sky", 20, 0.9)  # the old result is unchanged (undo keeps it)


def test_add_stuff_joins_the_class_segment_and_a_covered_segment_is_gone(result):
    mask = np.zeros((8, 10), bool)
    mask[3:5, 0:4] = True  # exactly car #1
    new, sid = add_segment(result, mask, 2)
    assert sid == 2
    assert areas(new) == {1: ("sky", 20, 0.9), 2: ("road", 28, 1.0), 4: ("car", 8, 0.5)}


def test_add_a_new_class_typed_by_the_user(result):
    vocab, cat = add_category(result.vocabulary, "Pallet", isthing=True)
    assert (cat.id, cat.name, vocab.names) == (4, "Pallet", ("car", "road", "sky", "Pallet"))
    assert add_category(vocab, "pallet", isthing=True) == (vocab, cat)
    mask = np.zeros((8, 10), bool)
    mask[7, 9] = True
    new, sid = add_segment(result, mask, cat.id, vocabulary=vocab)
    assert (sid, new.category_of(new.segment_by_id(5)).name, new.segment_by_id(5).area) == (5, "Pallet", 1)
    with pytest.raises(InputError, match="'road' is stuff in this vocabulary: add it as stuff"):
        add_category(vocab, "ROAD", isthing=True)


def test_relabel_delete_merge(result):
    relabelled, sid = relabel_segment(result, 4, 3)  # car #2 -> sky joins the sky segment
    assert sid == 1 and areas(relabelled) == {1: ("sky", 28, 1.0), 2: ("road", 20, 0.8), 3: ("car", 8, 0.7)}
    deleted = delete_segment(result, 3)
    assert sorted(areas(deleted)) == [1, 2, 4] and int((deleted.panoptic_map == 0).sum()) == 80 - 48
    merged, mid = merge_segments(result, [4, 3])
    assert mid == 4 and areas(merged)[4] == ("car", 16, 0.6)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: delete_segment(r, 9), r"no segment 9 in this result \(segments: 1, 2, 3, 4\)"),
        (lambda r: merge_segments(r, [3]), "select two or more segments of one class to merge"),
        (lambda r: merge_segments(r, [3, 1]), r"different classes: 3 \(car\), 1 \(sky\). Relabel first"),
        (lambda r: relabel_segment(r, 3, 7), "no class with id 7"),
        (lambda r: add_segment(r, np.zeros((8, 10), bool), 1), "the mask is empty"),
        (lambda r: add_segment(r, np.ones((4, 4), bool), 1), r"^the mask must be a bool array of the result's size, 10x8 \(width x height\), i.e. of shape \(8, 10\); got bool of shape \(4, 4\)$"),
    ],
)
def test_bad_edits_say_what_is_wrong(result, edit, message):
    with pytest.raises(InputError, match=message):
        edit(result)


def test_add_category_without_a_kind_keeps_an_existing_class_and_asks_the_lexicon_for_a_new_one(result):
    assert add_category(result.vocabulary, "ROAD") == (result.vocabulary, result.vocabulary.by_id(2))
    vocab, grass = add_category(result.vocabulary, "grass")
    _, pallet = add_category(result.vocabulary, "pallet")
    assert (grass.isthing, pallet.isthing) == (False, True)
    relabelled, sid = relabel_segment(result, 3, grass.id, vocabulary=vocab)
    assert relabelled.category_of(relabelled.segment_by_id(sid)).name == "grass"
