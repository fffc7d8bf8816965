"""The data model validates itself and computes geometry exactly."""

from __future__ import annotations

import numpy as np
import pytest

from ovpanoptic.errors import InputError, VocabularyError
from ovpanoptic.types import (
    Category,
    ClassScores,
    PanopticResult,
    Prompt,
    ProposalSet,
    Segment,
    TrackMasks,
    Vocabulary,
    masks_to_boxes_xyxy,
)


def vocab() -> Vocabulary:
    return Vocabulary((Category(1, "person", True), Category(2, "road", False), Category(7, "car", True)))


def test_category_rejects_bad_ids_and_names():
    with pytest.raises(VocabularyError, match="positive integer"):
        Category(0, "person", True)
    with pytest.raises(VocabularyError, match="empty"):
        Category(1, "  ", True)
    with pytest.raises(VocabularyError, match="201 characters long; the limit is 200"):
        Category(1, "x" * 201, True)
    assert Category(1, "ｔｒａｆｆｉｃ\u3000 light", True).name == "traffic light"  # NFKC, one space
    with pytest.raises(VocabularyError, match="separator"):
        Category(1, "a|b", True)
    with pytest.raises(VocabularyError, match="synonym 'TV' of 'tv' is given twice"):
        Category(1, "tv", True, synonyms=("TV",))


def test_vocabulary_duplicate_names_ignore_case_and_include_synonyms():
    with pytest.raises(VocabularyError, match="'Person' appears twice"):
        Vocabulary((Category(1, "person", True), Category(2, "Person", True)))
    with pytest.raises(VocabularyError, match=r"'tv' appears twice \(in 'monitor' and 'tv'\)"):
        Vocabulary((Category(1, "monitor", True, synonyms=("tv",)), Category(2, "tv", True)))
    with pytest.raises(VocabularyError, match="category id 1 is used by both 'a' and 'b'"):
        Vocabulary((Category(1, "a", True), Category(1, "b", True)))
    with pytest.raises(VocabularyError, match="vocabulary is empty"):
        Vocabulary(())


def test_vocabulary_lookup_and_roundtrip():
    v = vocab()
    assert v.ids == (1, 2, 7)
    assert [c.name for c in v.things] == ["person", "car"]
    assert v.index_of(7) == 2
    assert v.by_id(2).name == "road"
    with pytest.raises(KeyError, match="no category with id 3"):
        v.by_id(3)
    assert Vocabulary.from_dict(v.to_dict()) == v


def test_boxes_are_tight_with_exclusive_max():
    masks = np.zeros((3, 5, 6), bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4, 5] = True
    boxes = masks_to_boxes_xyxy(masks)
    np.testing.assert_array_equal(boxes, [[2, 1, 5, 3], [5, 4, 6, 5], [0, 0, 0, 0]])


def test_proposal_set_validates_and_is_read_only():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2] = True
    masks[1, 2:, 1:3] = True
    ps = ProposalSet.from_masks(masks, [0.5, 0.25])
    assert len(ps) == 2 and ps.image_size == (4, 4)
    np.testing.assert_array_equal(ps.areas, [8, 4])
    with pytest.raises(ValueError, match="read-only"):
        ps.masks[0, 0, 0] = False
    with pytest.raises(ValueError, match=r"masks must be an \(N, H, W\) bool array"):
        ProposalSet(masks.astype(np.uint8), ps.boxes_xyxy, ps.scores)
    with pytest.raises(ValueError, match=r"scores must be \(2,\) float32"):
        ProposalSet(masks, np.zeros((2, 4), np.float32), np.zeros(3, np.float32))
    assert len(ProposalSet.empty(3, 5)) == 0


def test_class_scores_rows_may_leave_room_for_no_object():
    probs = np.array([[0.5, 0.25], [0.0, 0.0]], np.float32)
    cs = ClassScores(np.zeros((2, 2), np.float32), probs, (4, 9))
    np.testing.assert_allclose(cs.no_object, [0.25, 1.0])
    with pytest.raises(ValueError, match="sum to <= 1"):
        ClassScores(np.zeros((1, 2), np.float32), np.array([[0.7, 0.7]], np.float32), (1, 2))
    with pytest.raises(ValueError, match=r"\(N, 3\) float32"):
        ClassScores(np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32), (1, 2, 3))


def test_panoptic_result_from_map_computes_exact_area_and_bbox():
    pm = np.zeros((4, 6), np.int32)
    pm[0:2, 0:3] = 5  # person: 6 px
    pm[3, :] = 2      # road: 6 px
    pm[1, 5] = 9      # car: 1 px
    r = PanopticResult.from_map(pm, {5: (1, 0.9), 2: (2, 0.8), 9: (7, 0.7), 11: (7, 0.1)}, vocab())
    assert [(s.id, s.category_id, s.isthing, s.area, s.bbox_xyxy) for s in r.segments] == [
        (2, 2, False, 6, (0, 3, 6, 4)),
        (5, 1, True, 6, (0, 0, 3, 2)),
        (9, 7, True, 1, (5, 1, 6, 2)),
    ]
    assert r.segment_by_id(5).bbox_xywh == (0, 0, 3, 2)
    assert r.to_dict()["segments"][0]["category"] == "road"


def test_panoptic_result_rejects_inconsistent_segments():
    v = vocab()
    pm = np.zeros((2, 2), np.int32)
    pm[0, 0] = 1
    good = Segment(1, 1, True, 0.5, 1, (0, 0, 1, 1))
    with pytest.raises(ValueError, match=r"area/bbox 2/\(0, 0, 1, 1\) do not match the map \(1/\(0, 0, 1, 1\)\)"):
        PanopticResult(pm, (Segment(1, 1, True, 0.5, 2, (0, 0, 1, 1)),), v)
    with pytest.raises(ValueError, match=r"ids in the map without a segment \[1\]"):
        PanopticResult(pm, (), v)
    with pytest.raises(ValueError, match="isthing=True but 'road' has isthing=False"):
        PanopticResult(pm, (Segment(1, 2, True, 0.5, 1, (0, 0, 1, 1)),), v)
    pm2 = pm.copy()
    pm2[1, 1] = 2
    with pytest.raises(ValueError, match="stuff class 'road' has two segments"):
        PanopticResult(pm2, (Segment(1, 2, False, 0.5, 1, (0, 0, 1, 1)), Segment(2, 2, False, 0.5, 1, (1, 1, 2, 2))), v)
    with pytest.raises(ValueError, match="int32"):
        PanopticResult(pm.astype(np.int64), (good,), v)
    assert PanopticResult(pm, (good,), v).image_size == (2, 2)


def _brute_geometry(pm: np.ndarray) -> dict[int, tuple[int, tuple[int, int, int, int]]]:
    out = {}
    for sid in np.unique(pm).tolist():
        if sid == 0:
            continue
        ys, xs = np.nonzero(pm == sid)
        out[sid] = (len(ys), (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return out


@pytest.mark.parametrize("step", [1, 700, 100_003])  # dense ids, sparse ids counted by id, ids sorted
def test_segment_geometry_matches_a_per_id_scan(step):
    rng = np.random.default_rng(3)
    pm = np.zeros((37, 53), np.int32)
    for k in range(1, 12):
        y, x = rng.integers(0, 37), rng.integers(0, 53)
        pm[y : y + rng.integers(1, 20), x : x + rng.integers(1, 20)] = k * step
    pm[5, 7] = 2 * step  # a scattered pixel widens segment 2's box
    labels = {int(sid): (1, 0.5) for sid in np.unique(pm) if sid}
    r = PanopticResult.from_map(pm, labels, vocab())
    assert {s.id: (s.area, s.bbox_xyxy) for s in r.segments} == _brute_geometry(pm)


@pytest.mark.parametrize("size", [(9, 14), (30, 41), (4, 5), (10, 20)])
def test_resized_is_nearest_neighbour_with_exact_geometry(size):
    rng = np.random.default_rng(4)
    pm = np.zeros((10, 20), np.int32)
    pm[2:7, 3:9] = 1
    pm[0, 19] = 3
    pm[8:10, 0:20] = 2
    pm[rng.random((10, 20)) < 0.05] = 3
    r = PanopticResult.from_map(pm, {1: (1, 0.9), 2: (2, 0.8), 3: (7, 0.4)}, vocab(), {"fuse": 0.5})
    height, width = size
    big = r.resized(height, width)
    rows = (np.arange(height) * 10) // height
    cols = (np.arange(width) * 20) // width
    expected = pm[rows[:, None], cols[None, :]]
    np.testing.assert_array_equal(big.panoptic_map, expected)
    assert {s.id: (s.area, s.bbox_xyxy) for s in big.segments} == _brute_geometry(expected)
    assert {s.id: (s.category_id, s.score) for s in big.segments} == {
        s.id: (s.category_id, s.score) for s in r.segments if s.id in _brute_geometry(expected)
    }
    assert big.timings == {"fuse": 0.5}
    with pytest.raises(ValueError, match=r"^cannot resize a panoptic result to 5x0 \(width x height\)$"):
        r.resized(0, 5)


def test_proposal_set_resized_is_the_panoptic_rule_with_tight_boxes():
    masks = np.zeros((2, 10, 20), bool)
    masks[0, 2:7, 3:9] = True
    masks[1, 9, 19] = True
    ps = ProposalSet.from_masks(masks, [0.75, 0.5])
    big = ps.resized(25, 30)
    rows, cols = (np.arange(25) * 10) // 25, (np.arange(30) * 20) // 30
    np.testing.assert_array_equal(big.masks, masks[:, rows[:, None], cols[None, :]])
    pm = PanopticResult.from_map(masks[0].astype(np.int32), {1: (1, 0.9)}, vocab()).resized(25, 30)
    np.testing.assert_array_equal(big.masks[0], pm.panoptic_map == 1)  # the same pixels as a resized result
    np.testing.assert_array_equal(big.boxes_xyxy, [[5, 5, 14, 18], [29, 23, 30, 25]])
    np.testing.assert_array_equal(big.scores, ps.scores)
    assert ps.resized(10, 20) is ps
    small = ps.resized(4, 7)  # shrinking drops rows and columns: boxes measured on the small masks
    rows, cols = (np.arange(4) * 10) // 4, (np.arange(7) * 20) // 7
    np.testing.assert_array_equal(small.masks, masks[:, rows[:, None], cols[None, :]])
    np.testing.assert_array_equal(small.boxes_xyxy, masks_to_boxes_xyxy(small.masks))
    with pytest.raises(ValueError, match=r"^cannot resize proposals to 5x0 \(width x height\)$"):
        ps.resized(0, 5)


def test_prompt_coerces_to_read_only_arrays_and_scales():
    p = Prompt([[10, 20.5], [3, 4]], [1, 0], box_xyxy=np.array([1, 2, 30, 40]))
    assert p.points_xy.dtype == np.float32 and p.points_xy.shape == (2, 2)
    assert p.point_labels.dtype == np.int32 and p.point_labels.tolist() == [1, 0]
    assert p.box_xyxy == (1.0, 2.0, 30.0, 40.0) and all(type(v) is float for v in p.box_xyxy)
    with pytest.raises(ValueError, match="read-only"):
        p.points_xy[0, 0] = 0
    box_only = Prompt(box_xyxy=(0, 0, 4, 4))
    assert box_only.points_xy.shape == (0, 2) and box_only.point_labels.shape == (0,) and len(box_only) == 0
    half = p.scaled(0.5, 0.25)
    np.testing.assert_array_equal(half.points_xy, [[5, 5.125], [1.5, 1]])
    assert half.point_labels.tolist() == [1, 0] and half.box_xyxy == (0.5, 0.5, 15.0, 10.0)
    assert len(Prompt(np.zeros((0, 2)), [], (0, 0, 1, 1))) == 0
    with pytest.raises(InputError, match="Prompt.scaled: sx must be a positive finite number, got 0"):
        p.scaled(0, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points_xy": [10, 20], "point_labels": [1]}, r"points_xy must be an \(N, 2\) array of \(x, y\) pixel coordinates, got shape \(2,\): write \[\[x, y\], ...\] \(one point is \[\[x, y\]\]\)"),
        ({"points_xy": [["a", "b"]], "point_labels": [1]}, r"Prompt.points_xy must be numbers, e.g. \[\[x, y\], ...\]"),
        ({"points_xy": [[np.nan, 1]], "point_labels": [1]}, "Prompt.points_xy contains NaN or infinity: give finite pixel coordinates"),
        ({"points_xy": [[1, 1], [2, 2]], "point_labels": [1]}, r"Prompt.point_labels has shape \(1,\) for 2 points: give one label per point \(1 on the object, 0 not on it\)"),
        ({"points_xy": [[1, 1]], "point_labels": [2]}, r"Prompt.point_labels must be 1 \(positive: on the object\) or 0 \(negative: not on the object\), got 2"),
        ({"points_xy": [[1, 1]], "point_labels": [0]}, r"^a prompt needs at least one positive point \(label 1\) or a box: negative points alone select nothing; click on the object or draw a box around it$"),
        ({}, "a prompt needs at least one positive point"),
        ({"box_xyxy": (5, 0, 5, 9)}, r"Prompt.box_xyxy must be \(x0, y0, x1, y1\) with x0 < x1 and y0 < y1, got \(5.0, 0.0, 5.0, 9.0\): give the top-left corner first"),
        ({"box_xyxy": (0, 0, 9)}, r"Prompt.box_xyxy must be 4 numbers \(x0, y0, x1, y1\), got \(0, 0, 9\)"),
        ({"box_xyxy": (0, 0, np.inf, 9)}, "Prompt.box_xyxy contains NaN or infinity"),
    ],
)
def test_prompt_errors_say_the_fix(kwargs, message):
    with pytest.raises(InputError, match=message):
        Prompt(**kwargs)


def test_prompt_check_inside_names_the_point_and_the_image():
    p = Prompt([[0, 0], [63.9, 47.9], [64, 10]], [1, 1, 0])
    with pytest.raises(
        InputError,
        match=r"^prompt point 2 \(x=64, y=10\) lies outside the 64 x 48 \(width x height\) image: x must be in \[0, 64\) "
        r"and y in \[0, 48\); give pixel coordinates of the image the prompt is for \(scale them if it was shown resized\)$",
    ):
        p.check_inside(48, 64)
    p.check_inside(48, 65)
    Prompt(box_xyxy=(0, 0, 64, 48)).check_inside(48, 64)  # the box may reach the borders
    with pytest.raises(InputError, match=r"the prompt box \(-1, 0, 10, 10\) reaches outside the 64 x 48 \(width x height\) image"):
        Prompt(box_xyxy=(-1, 0, 10, 10)).check_inside(48, 64)


# -- masks in another dtype than bool: one rule (types.binary_masks) for every constructor that takes them


def _soft() -> np.ndarray:
    """Two 6x8 probability maps (as models return): each about one quarter of the image, > 0 everywhere."""
    soft = np.full((2, 6, 8), 0.02, np.float32)
    soft[0, :3, :4] = 0.9
    soft[1, 3:, 4:] = 0.7
    return soft


SOFT = (
    "ProposalSet.from_masks masks are soft float32 masks with values from 0.02 to 0.9, not 0/1: say where a pixel is "
    "inside with threshold= (0.5 for probabilities, 0.0 for logits), or pass bool masks (masks > 0.5)"
)


def test_soft_float_masks_are_refused_not_made_full_image_masks():
    with pytest.raises(ValueError) as info:
        ProposalSet.from_masks(_soft(), [0.9, 0.8])
    assert str(info.value) == SOFT


def test_soft_masks_with_a_threshold_and_binary_masks_of_any_dtype():
    ps = ProposalSet.from_masks(_soft(), [0.9, 0.8], threshold=0.5)
    assert ps.areas.tolist() == [12, 12]
    assert ps.boxes_xyxy.tolist() == [[0, 0, 4, 3], [4, 3, 8, 6]]
    logits = np.log(_soft() / (1 - _soft()))
    assert np.array_equal(ProposalSet.from_masks(logits, threshold=0.0).masks, ps.masks)
    for binary in (ps.masks.astype(np.float32), ps.masks.astype(np.uint8) * 255, ps.masks.astype(np.int64)):
        assert np.array_equal(ProposalSet.from_masks(binary).masks, ps.masks), binary.dtype
    with pytest.raises(ValueError, match=r"^ProposalSet.from_masks masks contain NaN"):
        ProposalSet.from_masks(np.where(ps.masks, np.nan, 0.0))
    with pytest.raises(ValueError, match=r"^threshold must be a finite number \(0.5 for probabilities, 0.0 for logits\), got nan$"):
        ProposalSet.from_masks(_soft(), threshold=float("nan"))
    with pytest.raises(ValueError, match=r"threshold=0.5\) turns soft masks into bool ones\)$"):
        ProposalSet(_soft(), np.zeros((2, 4), np.float32), np.ones(2, np.float32))


def test_track_masks_from_dict_follows_the_same_rule():
    soft = _soft()
    with pytest.raises(ValueError, match=r"^TrackMasks.from_dict mask of track 3 are soft float32 masks with values from 0.02 to 0.9"):
        TrackMasks.from_dict({3: soft[0]}, 6, 8)
    tm = TrackMasks.from_dict({3: soft[0], 1: soft[1]}, 6, 8, threshold=0.5)
    assert tm.ids.tolist() == [1, 3] and [int(m.sum()) for m in tm.masks] == [12, 12]
    assert TrackMasks.from_dict({2: (soft[0] > 0.5).astype(np.uint8)}, 6, 8).masks.sum() == 12
