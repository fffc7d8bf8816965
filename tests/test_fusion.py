"""The detectron2 and maskformer fusers: exact segments, thresholds, and where they differ."""

from __future__ import annotations

import functools
from pathlib import Path

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


# -- the detectron2 fuser against detectron2's own combine function, at scale -------------------------


def _reference_detectron2_fuse(fuser, proposals, scores, vocabulary):
    """The detectron2 fuser as it was: the inputs handed to detectron2's
    ``combine_semantic_and_instance_outputs`` (full-image passes per instance)."""
    import math

    import torch
    from detectron2.modeling.meta_arch.panoptic_fpn import combine_semantic_and_instance_outputs
    from detectron2.structures import Boxes, Instances

    from ovpanoptic.builtins.fusion import label_proposals
    from ovpanoptic.types import PanopticResult

    cfg = fuser.config
    h, w = proposals.image_size
    keep, cols, sc = label_proposals(proposals, scores, cfg.min_class_prob, cfg.use_proposal_score)
    cats = [vocabulary.categories[c] for c in cols]
    thing_idx = [i for i, c in enumerate(cats) if c.isthing]
    stuff_idx = [i for i, c in enumerate(cats) if not c.isthing]
    thing_ids = sorted({cats[i].id for i in thing_idx})
    thing_contig = {cid: k for k, cid in enumerate(thing_ids)}
    instances = Instances((h, w))
    t_keep = keep[thing_idx]
    instances.pred_masks = torch.from_numpy(np.ascontiguousarray(proposals.masks[t_keep])).reshape(len(t_keep), h, w)
    instances.pred_boxes = Boxes(torch.from_numpy(np.ascontiguousarray(proposals.boxes_xyxy[t_keep])).reshape(-1, 4))
    instances.scores = torch.from_numpy(sc[thing_idx].astype(np.float32))
    instances.pred_classes = torch.tensor([thing_contig[cats[i].id] for i in thing_idx], dtype=torch.int64)
    stuff_ids = sorted({cats[i].id for i in stuff_idx})
    stuff_label = {cid: k + 1 for k, cid in enumerate(stuff_ids)}
    semantic = np.zeros((h, w), np.uint8 if len(stuff_ids) < 255 else np.int32)
    stuff_score = {}
    for i in sorted(stuff_idx, key=lambda i: (sc[i], -i)):
        semantic[proposals.masks[keep[i]]] = stuff_label[cats[i].id]
        stuff_score[cats[i].id] = max(stuff_score.get(cats[i].id, 0.0), float(sc[i]))
    panoptic, infos = combine_semantic_and_instance_outputs(
        instances,
        torch.from_numpy(semantic),
        overlap_threshold=cfg.overlap_threshold,
        stuff_area_thresh=min(cfg.stuff_area_thresh, math.ceil(cfg.stuff_area_fraction * h * w)),
        instances_score_thresh=cfg.instances_score_thresh,
    )
    labels = {}
    for info in infos:
        if info["isthing"]:
            labels[info["id"]] = (thing_ids[info["category_id"]], float(info["score"]))
        else:
            cid = stuff_ids[info["category_id"] - 1]
            labels[info["id"]] = (cid, stuff_score[cid])
    return PanopticResult.from_map(panoptic.numpy().astype(np.int32), labels, vocabulary)


def _coco_vocabulary():
    from ovpanoptic.builtins.vocabularies import _load_shipped

    return _load_shipped("coco.json", "coco")


@functools.lru_cache(maxsize=4)
def _fixed_masks_800(h, w):
    return _fixed_masks_uncached(h, w, 800)


def _fixed_masks(h, w, count):
    """The first ``count`` of 800 fixed masks (the same as asking for ``count``)."""
    masks, names = _fixed_masks_800(h, w)
    return masks[:count], names[:count]


def _fixed_masks_uncached(h, w, count):
    """bench/run.py's fixed realistic masks: the COCO fixture's ground-truth segments and their parts."""
    import importlib.util
    import sys

    from conftest import COCO_SAMPLE

    if not COCO_SAMPLE.is_dir():
        pytest.skip(f"the COCO fixture is not at {COCO_SAMPLE}")
    spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).resolve().parents[1] / "bench" / "run.py")
    module = sys.modules.get("bench_run") or importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.fixed_masks(h, w, count)


def _realistic(count, decisive, h=240, w=320, seed=0):
    """Fixed realistic masks with COCO scores: decisive (each mask's true class at 0.9: ties
    everywhere) or varied (the true class at a random probability, proposal scores random)."""
    vocab = _coco_vocabulary()
    masks, names = _fixed_masks(h, w, count)
    rng = np.random.default_rng(seed)
    by_name = {c.name: j for j, c in enumerate(vocab.categories)}
    probs = np.full((len(masks), len(vocab)), 0.0, np.float32)
    for i, name in enumerate(names):
        probs[i, by_name[name]] = 0.9 if decisive else rng.uniform(0.2, 1.0)
    ps = ProposalSet.from_masks(masks, rng.uniform(0.3, 1.0, len(masks)).astype(np.float32))
    return ps, ClassScores(np.log(np.maximum(probs, 1e-6)).astype(np.float32), probs, vocab.ids), vocab


def _random(count, h=120, w=160, seed=0):
    """Random rectangles and blobs over a small vocabulary, random scores (many overlaps)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, h, w), bool)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(count):
        y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        y1, x1 = rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)
        if i % 2:
            masks[i, y0:y1, x0:x1] = True
        else:
            cy, cx, r = (y0 + y1) / 2, (x0 + x1) / 2, max(1.0, (y1 - y0) / 2)
            masks[i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    probs = rng.dirichlet(np.full(3, 0.3), count).astype(np.float32)
    ps = ProposalSet.from_masks(masks, rng.uniform(0.3, 1.0, count).astype(np.float32))
    return ps, ClassScores(np.log(np.maximum(probs, 1e-6)).astype(np.float32), probs, VOCAB.ids), VOCAB


def _same(a, b):
    assert np.array_equal(a.panoptic_map, b.panoptic_map)
    assert [(s.id, s.category_id, s.isthing, s.score, s.area, s.bbox_xyxy) for s in a.segments] == [
        (s.id, s.category_id, s.isthing, s.score, s.area, s.bbox_xyxy) for s in b.segments
    ]


D2_SETTINGS = [
    {},
    {"stuff_area_thresh": 0, "instances_score_thresh": 0.0, "min_class_prob": 0.0},
    {"overlap_threshold": 0.9, "use_proposal_score": True, "instances_score_thresh": 0.3},
]


@pytest.mark.parametrize("count", [100, 400, 800])
@pytest.mark.parametrize("decisive", [True, False], ids=["decisive", "varied"])
def test_detectron2_fuser_equals_detectron2_combine_on_realistic_proposals(count, decisive):
    ps, cs, vocab = _realistic(count, decisive)
    assert len(ps) == count
    for settings in D2_SETTINGS:
        fuser = Detectron2Fuser(Detectron2FuserConfig(**settings))
        new, ref = fuser.fuse(ps, cs, vocab), _reference_detectron2_fuse(fuser, ps, cs, vocab)
        assert len(ref.segments) > 10
        _same(new, ref)


@pytest.mark.parametrize("count", [100, 400, 800])
def test_detectron2_fuser_equals_detectron2_combine_on_random_proposals(count):
    for seed in range(3):
        ps, cs, vocab = _random(count, seed=seed)
        for settings in D2_SETTINGS:
            fuser = Detectron2Fuser(Detectron2FuserConfig(**settings))
            new, ref = fuser.fuse(ps, cs, vocab), _reference_detectron2_fuse(fuser, ps, cs, vocab)
            assert len(ref.segments) > 0
            _same(new, ref)


def _torch_combined(device):
    from ovpanoptic.components import ComponentContext

    return Detectron2Fuser(Detectron2FuserConfig(), ComponentContext(device=device))


def test_detectron2_torch_combine_equals_numpy_combine(monkeypatch):
    """The device path's code, run on the CPU: the same segments as the numpy path."""
    from ovpanoptic.builtins import fusion

    cases = (_realistic(400, True), _realistic(400, False), _random(400, seed=1))
    expected = [Detectron2Fuser(Detectron2FuserConfig()).fuse(*case) for case in cases]
    monkeypatch.setattr(fusion, "_combine_numpy", fusion._combine_torch)  # the CPU device through the torch code
    for case, numpy_result in zip(cases, expected):
        _same(Detectron2Fuser(Detectron2FuserConfig()).fuse(*case), numpy_result)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs CUDA")
def test_detectron2_fuser_on_cuda_equals_cpu():
    fuser = _torch_combined("cuda")
    assert fuser.device == "cuda"
    for ps, cs, vocab in (_realistic(800, True), _realistic(800, False), _random(800, seed=2)):
        _same(fuser.fuse(ps, cs, vocab), Detectron2Fuser(Detectron2FuserConfig()).fuse(ps, cs, vocab))
