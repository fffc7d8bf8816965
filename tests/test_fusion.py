"""The detectron2 and maskformer fusers: exact segments, thresholds, and where they differ."""

from __future__ import annotations

import numpy as np
import pytest

from ovpanoptic.builtins.fusion import (
    Detectron2Fuser,
    Detectron2FuserConfig,
    MaskFormerFuser,
    MaskFormerFuserConfig,
)
from ovpanoptic.testing import check_fuser
from ovpanoptic.types import Category, ClassScores, ProposalSet, Vocabulary

VOCAB = Vocabulary((Category(1, "person", True), Category(2, "car", True), Category(3, "road", False)))


def scored(masks, rows, proposal_scores=None):
    """Proposals from masks, and one probability row per proposal (columns person, car, road)."""
    masks = np.asarray(masks, bool)
    ps = ProposalSet.from_masks(masks, proposal_scores)
    probs = np.asarray(rows, np.float32)
    return ps, ClassScores(np.log(np.maximum(probs, 1e-6)).astype(np.float32), probs, VOCAB.ids)


def layout(result):
    """{(category name, score rounded): sorted pixel indices} — comparable across fusers."""
    out = {}
    for s in result.segments:
        pixels = tuple(np.flatnonzero(result.panoptic_map.ravel() == s.id).tolist())
        out[(result.category_of(s).name, round(s.score, 4))] = pixels
    return out


def d2(**kw):
    return Detectron2Fuser(Detectron2FuserConfig(stuff_area_thresh=0, **kw))


def mf(**kw):
    return MaskFormerFuser(MaskFormerFuserConfig(**kw))


def non_overlapping():
    m = np.zeros((4, 10, 10), bool)
    m[0, 0:4] = True          # person, 40 px
    m[1, 4:7, 0:5] = True     # car, 15 px
    m[2, 7:10] = True         # road, 30 px
    m[3, 4:7, 5:10] = True    # road again, 15 px: merges with the other road proposal
    rows = [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.0, 0.0, 0.7], [0.0, 0.0, 0.6]]
    return scored(m, rows)


def test_detectron2_fuser_exact_segments():
    ps, cs = non_overlapping()
    result = check_fuser(d2(), ps, cs, VOCAB)
    # Things pasted by descending score (person 0.9 -> id 1, car 0.8 -> id 2), then stuff.
    assert [(s.id, s.category_id, s.isthing, s.area, s.bbox_xyxy) for s in result.segments] == [
        (1, 1, True, 40, (0, 0, 10, 4)),
        (2, 2, True, 15, (0, 4, 5, 7)),
        (3, 3, False, 45, (0, 4, 10, 10)),
    ]
    assert [round(s.score, 4) for s in result.segments] == [0.9, 0.8, 0.7]  # stuff: best proposal's score
    assert (result.panoptic_map == 0).sum() == 0


def test_fusers_agree_without_overlaps():
    ps, cs = non_overlapping()
    assert layout(d2().fuse(ps, cs, VOCAB)) == layout(mf().fuse(ps, cs, VOCAB))


def overlap_thing_and_stuff():
    m = np.zeros((2, 1, 10), bool)
    m[0, 0, 0:6] = True   # person, score 0.9
    m[1, 0, 3:10] = True  # road, score 0.95, overlaps the person on columns 3-5
    return scored(m, [[0.9, 0.0, 0.1], [0.0, 0.0, 0.95]])


def test_where_masks_overlap_detectron2_lets_things_win():
    ps, cs = overlap_thing_and_stuff()
    result = d2().fuse(ps, cs, VOCAB)
    assert result.panoptic_map.tolist() == [[1, 1, 1, 1, 1, 1, 2, 2, 2, 2]]
    assert [(s.category_id, s.area) for s in result.segments] == [(1, 6), (3, 4)]


def test_where_masks_overlap_maskformer_lets_scores_win():
    ps, cs = overlap_thing_and_stuff()
    # Road (0.95) takes columns 3-9; the person keeps 3 of its 6 pixels = 0.5 < 0.8 and is dropped.
    result = mf().fuse(ps, cs, VOCAB)
    assert result.panoptic_map.tolist() == [[0, 0, 0, 1, 1, 1, 1, 1, 1, 1]]
    assert [(s.category_id, s.area) for s in result.segments] == [(3, 7)]
    # With a lower overlap threshold the person keeps its free pixels.
    kept = mf(overlap_threshold=0.5).fuse(ps, cs, VOCAB)
    assert kept.panoptic_map.tolist() == [[1, 1, 1, 2, 2, 2, 2, 2, 2, 2]]  # ids follow proposal order


def test_detectron2_overlap_threshold_between_instances():
    m = np.zeros((3, 1, 10), bool)
    m[0, 0, 0:6] = True  # person 0.9
    m[1, 0, 2:6] = True  # car 0.8: 4/4 of it overlaps -> dropped (> 0.5)
    m[2, 0, 4:10] = True  # car 0.7: 2/6 overlaps -> keeps its 4 free pixels
    ps, cs = scored(m, [[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    result = d2().fuse(ps, cs, VOCAB)
    assert result.panoptic_map.tolist() == [[1, 1, 1, 1, 1, 1, 2, 2, 2, 2]]
    assert [(s.category_id, round(s.score, 2)) for s in result.segments] == [(1, 0.9), (2, 0.7)]


def test_low_class_probability_means_no_object():
    m = np.zeros((2, 1, 4), bool)
    m[0, 0, :2] = True
    m[1, 0, 2:] = True
    ps, cs = scored(m, [[0.9, 0.0, 0.0], [0.2, 0.1, 0.1]])  # second matches nothing well
    for fuser in (d2(), mf()):
        assert fuser.fuse(ps, cs, VOCAB).panoptic_map.tolist() == [[1, 1, 0, 0]]


def test_detectron2_stuff_area_and_score_thresholds():
    m = np.zeros((2, 1, 10), bool)
    m[0, 0, 0:3] = True  # road, 3 px
    m[1, 0, 3:10] = True  # person 0.4 < instances_score_thresh 0.5
    ps, cs = scored(m, [[0.0, 0.0, 0.9], [0.4, 0.0, 0.0]])
    fuser = Detectron2Fuser(Detectron2FuserConfig(stuff_area_thresh=4, stuff_area_fraction=1.0, min_class_prob=0.3))
    assert fuser.fuse(ps, cs, VOCAB).segments == ()
    fuser = Detectron2Fuser(Detectron2FuserConfig(stuff_area_thresh=3, stuff_area_fraction=1.0, instances_score_thresh=0.4))
    assert [(s.category_id, s.area) for s in fuser.fuse(ps, cs, VOCAB).segments] == [(1, 7), (3, 3)]


def test_proposal_scores_can_weigh_in():
    m = np.zeros((2, 1, 4), bool)
    m[0, 0, :] = True
    m[1, 0, :] = True
    ps, cs = scored(m, [[0.9, 0.0, 0.0], [0.0, 0.8, 0.0]], proposal_scores=[0.5, 1.0])
    assert mf().fuse(ps, cs, VOCAB).segments[0].category_id == 1
    # Weighted: person 0.9 x 0.5 = 0.45 loses every pixel to car 0.8 x 1.0.
    weighted = mf(use_proposal_score=True, object_mask_threshold=0.4).fuse(ps, cs, VOCAB)
    assert [(s.category_id, round(s.score, 3)) for s in weighted.segments] == [(2, 0.8)]


def test_empty_proposals_give_an_all_void_result():
    ps = ProposalSet.empty(5, 7)
    cs = ClassScores(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), VOCAB.ids)
    for fuser in (d2(), mf()):
        result = fuser.fuse(ps, cs, VOCAB)
        assert result.segments == () and result.image_size == (5, 7) and not result.panoptic_map.any()


def test_config_validation():
    with pytest.raises(ValueError, match=r"overlap_threshold must be in \[0, 1\], got 1.5"):
        Detectron2FuserConfig(overlap_threshold=1.5)
    with pytest.raises(ValueError, match="stuff_area_thresh must be >= 0"):
        Detectron2FuserConfig(stuff_area_thresh=-1)
    with pytest.raises(ValueError, match=r"object_mask_threshold must be in \[0, 1\]"):
        MaskFormerFuserConfig(object_mask_threshold=-0.1)


@pytest.mark.parametrize(("h", "w", "band"), [(50, 60, 50), (78, 294, 12)])
def test_default_stuff_threshold_scales_with_small_images(h, w, band):
    # A 60x50 image all sky, and a floor band of 15% of a 294x78 image: kept with the defaults
    # (detectron2's 4096 px alone would drop both).
    vocab = Vocabulary((Category(1, "person", True), Category(2, "sky", False)))
    masks = np.zeros((1, h, w), bool)
    masks[0, h - band :] = True
    ps = ProposalSet.from_masks(masks)
    cs = ClassScores(np.zeros((1, 2), np.float32), np.array([[0.0, 0.95]], np.float32), vocab.ids)
    result = Detectron2Fuser(Detectron2FuserConfig()).fuse(ps, cs, vocab)
    assert [(s.category_id, s.area) for s in result.segments] == [(2, band * w)]
    # At COCO size: 1% of 640x480 is 3072 px (under detectron2's 4096), so 1920 px of stuff is dropped.
    big = np.zeros((1, 480, 640), bool)
    big[0, :3, :] = True
    ps = ProposalSet.from_masks(big)
    assert Detectron2Fuser(Detectron2FuserConfig()).fuse(ps, cs, vocab).segments == ()


def test_both_fusers_agree_where_masks_do_not_overlap_with_thresholds_at_zero():
    ps, cs = non_overlapping()
    a = Detectron2Fuser(Detectron2FuserConfig(stuff_area_thresh=0, instances_score_thresh=0.0)).fuse(ps, cs, VOCAB)
    b = mf(object_mask_threshold=0.0).fuse(ps, cs, VOCAB)
    assert layout(a) == layout(b)
