"""Tests of ovpanoptic.evaluation (Panoptic Quality with the COCO panoptic API rules).

Every expected number below is derived by hand in comments from the fixture's segment counts
(listed once in ``_FIXTURE_FACTS``) or from the small synthetic arrays, never copied from a run.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from conftest import COCO_SAMPLE
from PIL import Image

from ovpanoptic.evaluation import (
    ID_BASE,
    VOID_ID,
    CategoryInfo,
    EvaluationError,
    PQAccumulator,
    PQReport,
    PQStats,
    evaluate_panoptic,
    id_to_rgb,
    rgb_to_id,
)

FIXTURE = COCO_SAMPLE
# Tests that read the shared COCO sample skip, like conftest's ``coco_sample`` fixture, when it is absent.
needs_sample = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"fixture data not found at {FIXTURE}")
GT_JSON = FIXTURE / "panoptic.json"
GT_DIR = FIXTURE / "panoptic"
IMG1 = "000000142238.png"  # rugby, 640x427, image_id 142238
IMG2 = "000000439180.png"  # horses, 640x360, image_id 439180

# Category ids (names from categories.json).
PERSON, TRUCK, HORSE, SPORTS_BALL = 1, 8, 19, 37  # things
GRAVEL, TREE, SKY, GRASS = 125, 184, 187, 193  # stuff

# Fixture facts read from panoptic.json (segments_info), by hand:
# IMG1: 13 non-crowd persons + 1 person crowd (id 3153362, area 24295), 1 sports ball
#       (id 16757838, area 175), tree, sky (id 11829830, area 8204), grass: 18 segments.
# IMG2: 13 non-crowd persons + 1 person crowd (id 5120499), 2 trucks, 11 non-crowd horses +
#       1 horse crowd (id 16175517, area 421), gravel, tree, sky, grass: 32 segments.
# Non-crowd segments per category over both images (= TP when gt is compared with itself):
_FIXTURE_FACTS = {
    PERSON: 13 + 13,  # 26
    TRUCK: 2,
    HORSE: 11,
    SPORTS_BALL: 1,
    GRAVEL: 1,
    TREE: 1 + 1,
    SKY: 1 + 1,
    GRASS: 1 + 1,
}
# A few IMG1 person segments used below (id: JSON area).
PERSON_A = 4325578  # area 4076
PERSON_B = 4917453  # area 477
PERSON_C = 3937500  # area 3528
PERSON_CROWD_IMG1 = 3153362  # area 24295, iscrowd 1
HORSE_CROWD_IMG2 = 16175517  # area 421, iscrowd 1
SKY_IMG1 = 11829830  # area 8204

APPROX = 1e-12


# ------------------------------------------------------------------------------------------
# Helpers (independent of the code under test: own id decoding/encoding)
# ------------------------------------------------------------------------------------------


def _read_ids(path: Path) -> npt.NDArray[np.int64]:
    """Decode a panoptic PNG: id = R + 256*G + 65536*B."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _write_ids(ids: npt.NDArray[np.int64], path: Path) -> None:
    """Encode an id map as an RGB PNG."""
    rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(path)


class _Prediction:
    """A prediction that starts as an exact copy of the ground truth and can be edited."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = json.loads(GT_JSON.read_text(encoding="utf-8"))
        for annotation in self.data["annotations"]:
            for segment in annotation["segments_info"]:
                segment.pop("area")  # predictions need no area; it is recomputed
        self.ids = {name: _read_ids(GT_DIR / name) for name in (IMG1, IMG2)}

    def segments(self, file_name: str) -> list[dict[str, Any]]:
        """Return the (mutable) segments_info of one image."""
        for annotation in self.data["annotations"]:
            if annotation["file_name"] == file_name:
                result: list[dict[str, Any]] = annotation["segments_info"]
                return result
        raise KeyError(file_name)

    def segment(self, file_name: str, segment_id: int) -> dict[str, Any]:
        """One (mutable) segments_info entry."""
        return next(s for s in self.segments(file_name) if s["id"] == segment_id)

    def remove(self, file_name: str, segment_id: int) -> None:
        """Remove a segments_info entry (pixels untouched)."""
        self.segments(file_name).remove(self.segment(file_name, segment_id))

    def write(self, root: Path) -> tuple[Path, Path]:
        """Write pred JSON + PNG folder under ``root``; return (json path, folder)."""
        folder = root / "pred"
        folder.mkdir()
        for name, ids in self.ids.items():
            _write_ids(ids, folder / name)
        json_path = root / "pred.json"
        json_path.write_text(json.dumps(self.data), encoding="utf-8")
        return json_path, folder

    def evaluate(self, root: Path) -> PQReport:
        """Write and evaluate against the fixture ground truth."""
        json_path, folder = self.write(root)
        return evaluate_panoptic(GT_JSON, GT_DIR, json_path, folder)


def _check(stats: PQStats, pq: float, sq: float, rq: float) -> None:
    assert stats.pq == pytest.approx(pq, abs=APPROX)
    assert stats.sq == pytest.approx(sq, abs=APPROX)
    assert stats.rq == pytest.approx(rq, abs=APPROX)


def _counts(stats: PQStats) -> tuple[int, int, int]:
    return stats.tp, stats.fp, stats.fn


# ------------------------------------------------------------------------------------------
# Id encoding
# ------------------------------------------------------------------------------------------


def test_id_encoding_roundtrip_and_known_colour() -> None:
    # Sports ball id 16757838 = 255*65536 + 180*256 + 78 -> RGB (78, 180, 255).
    assert id_to_rgb(np.array([16757838])).tolist() == [[78, 180, 255]]
    rgb = np.array([[[78, 180, 255], [0, 0, 0], [1, 2, 3]]], dtype=np.uint8)
    # 1 + 2*256 + 3*65536 = 197121
    assert rgb_to_id(rgb).tolist() == [[16757838, VOID_ID, 197121]]
    assert ID_BASE == 256
    ids = np.array([[0, 1, 255, 256, 65535, 65536, 16777215]])
    assert rgb_to_id(id_to_rgb(ids)).tolist() == ids.tolist()
    with pytest.raises(ValueError, match="H, W, 3"):
        rgb_to_id(np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="ids in 0"):
        id_to_rgb(np.array([256**3]))


# ------------------------------------------------------------------------------------------
# Fixture: ground truth against itself and perturbations
# ------------------------------------------------------------------------------------------


@needs_sample
def test_gt_against_itself_is_perfect() -> None:
    calls: list[tuple[int, int]] = []
    report = evaluate_panoptic(
        GT_JSON, GT_DIR, GT_JSON, GT_DIR, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(1, 2), (2, 2)]
    assert report.n_images == 2
    # 8 categories occur: 4 things (person, truck, horse, sports ball), 4 stuff.
    for group, n in ((report.all, 8), (report.things, 4), (report.stuff, 4)):
        _check(group, 1.0, 1.0, 1.0)
        assert group.n == n
        assert group.fp == group.fn == 0
    # TP sums: all 26+2+11+1+1+2+2+2 = 47, things 26+2+11+1 = 40, stuff 1+2+2+2 = 7.
    assert (report.all.tp, report.things.tp, report.stuff.tp) == (47, 40, 7)
    # The crowd segments are predicted too, but they never match and lie 100% on the crowd
    # region of their own category -> ignored, no FP.
    assert set(report.per_category) == set(_FIXTURE_FACTS)
    for category_id, tp in _FIXTURE_FACTS.items():
        stats = report.per_category[category_id]
        _check(stats, 1.0, 1.0, 1.0)
        assert _counts(stats) == (tp, 0, 0)
        assert stats.n == 1


@needs_sample
def test_dropped_segment_is_one_false_negative(tmp_path: Path) -> None:
    pred = _Prediction()
    pred.ids[IMG1][pred.ids[IMG1] == PERSON_B] = VOID_ID
    pred.remove(IMG1, PERSON_B)
    report = pred.evaluate(tmp_path)
    # person: tp 25, fn 1, iou sum 25 -> PQ = 25 / (25 + 0.5) = 50/51, SQ 1, RQ 50/51.
    person = report.per_category[PERSON]
    assert _counts(person) == (25, 0, 1)
    _check(person, 50 / 51, 1.0, 50 / 51)
    # The other 7 categories stay 1.0: All = (7 + 50/51)/8, Things = (3 + 50/51)/4.
    _check(report.all, (7 + 50 / 51) / 8, 1.0, (7 + 50 / 51) / 8)
    _check(report.things, (3 + 50 / 51) / 4, 1.0, (3 + 50 / 51) / 4)
    _check(report.stuff, 1.0, 1.0, 1.0)
    assert report.all.n == 8


@needs_sample
def test_relabelled_segment_is_fn_in_old_and_fp_in_new_category(tmp_path: Path) -> None:
    pred = _Prediction()
    pred.segment(IMG1, PERSON_C)["category_id"] = SPORTS_BALL
    report = pred.evaluate(tmp_path)
    # Old category person: gt PERSON_C unmatched -> tp 25, fn 1 -> 50/51.
    assert _counts(report.per_category[PERSON]) == (25, 0, 1)
    _check(report.per_category[PERSON], 50 / 51, 1.0, 50 / 51)
    # New category sports ball: the prediction lies on a non-crowd person, 0 VOID pixels and
    # sports ball has no crowd region -> ignorable fraction 0/3528 -> FP.
    # sports ball: tp 1 (the real ball), fp 1 -> PQ = RQ = 1 / (1 + 0.5) = 2/3, SQ 1.
    assert _counts(report.per_category[SPORTS_BALL]) == (1, 1, 0)
    _check(report.per_category[SPORTS_BALL], 2 / 3, 1.0, 2 / 3)
    _check(report.things, (50 / 51 + 2 / 3 + 2) / 4, 1.0, (50 / 51 + 2 / 3 + 2) / 4)
    _check(report.all, (50 / 51 + 2 / 3 + 6) / 8, 1.0, (50 / 51 + 2 / 3 + 6) / 8)


@needs_sample
def test_relabelled_crowd_regions_count_only_against_their_own_category(tmp_path: Path) -> None:
    pred = _Prediction()
    # The IMG1 person-crowd region predicted as a sports ball: the void rule only looks at
    # the crowd region of the *prediction's* category (sports ball: none) -> FP sports ball.
    pred.segment(IMG1, PERSON_CROWD_IMG1)["category_id"] = SPORTS_BALL
    # The IMG2 horse-crowd region predicted as a person: person does have a crowd region in
    # IMG2 (5120499), but it does not overlap the horse crowd -> 0/421 ignorable -> FP person.
    pred.segment(IMG2, HORSE_CROWD_IMG2)["category_id"] = PERSON
    report = pred.evaluate(tmp_path)
    # person: tp 26, fp 1 -> 26 / 26.5 = 52/53; sports ball: tp 1, fp 1 -> 2/3.
    assert _counts(report.per_category[PERSON]) == (26, 1, 0)
    _check(report.per_category[PERSON], 52 / 53, 1.0, 52 / 53)
    assert _counts(report.per_category[SPORTS_BALL]) == (1, 1, 0)
    _check(report.per_category[SPORTS_BALL], 2 / 3, 1.0, 2 / 3)
    # horse loses nothing: its crowd gt never produced TP/FN.
    assert _counts(report.per_category[HORSE]) == (11, 0, 0)
    _check(report.things, (52 / 53 + 2 / 3 + 2) / 4, 1.0, (52 / 53 + 2 / 3 + 2) / 4)


@needs_sample
def test_merged_same_category_segments(tmp_path: Path) -> None:
    pred = _Prediction()
    area_a = int((pred.ids[IMG1] == PERSON_A).sum())
    area_b = int((pred.ids[IMG1] == PERSON_B).sum())
    assert (area_a, area_b) == (4076, 477)  # the JSON areas
    # A absorbs B: pred A = gt A + gt B.
    pred.ids[IMG1][pred.ids[IMG1] == PERSON_B] = PERSON_A
    pred.remove(IMG1, PERSON_B)
    report = pred.evaluate(tmp_path)
    # gt A: inter = area_a, union = (area_a + area_b) + area_a - area_a = area_a + area_b.
    iou_a = area_a / (area_a + area_b)  # 4076/4553 > 0.5 -> TP
    # gt B: IoU = 477/4553 < 0.5 -> FN. pred A is matched, so it cannot be an FP.
    # person: tp = 11 untouched + A + 13 in IMG2 = 25, fn 1, iou sum = 24 + iou_a.
    person = report.per_category[PERSON]
    assert _counts(person) == (25, 0, 1)
    pq_person = (24 + iou_a) / 25.5
    sq_person = (24 + iou_a) / 25
    _check(person, pq_person, sq_person, 25 / 25.5)
    _check(report.all, (7 + pq_person) / 8, (7 + sq_person) / 8, (7 + 25 / 25.5) / 8)


@needs_sample
def test_eroded_mask_iou_is_remaining_fraction(tmp_path: Path) -> None:
    pred = _Prediction()
    ids = pred.ids[IMG1]
    inside = ids == SKY_IMG1
    padded = np.pad(inside, 1, mode="edge")
    # 4-neighbour erosion by one pixel: keep pixels whose 4 neighbours are sky too.
    kept = inside & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    removed = int(inside.sum() - kept.sum())
    assert int(inside.sum()) == 8204 and 0 < removed < 8204 // 2
    ids[inside & ~kept] = VOID_ID
    report = pred.evaluate(tmp_path)
    # pred sky = 8204 - removed pixels, all on gt sky; none on gt VOID.
    # union = (8204 - removed) + 8204 - (8204 - removed) - 0 = 8204.
    iou = (8204 - removed) / 8204
    sky = report.per_category[SKY]  # IMG2 sky is perfect: iou sum = 1 + iou over tp 2
    assert _counts(sky) == (2, 0, 0)
    _check(sky, (1 + iou) / 2, (1 + iou) / 2, 1.0)
    _check(report.stuff, (3 + (1 + iou) / 2) / 4, (3 + (1 + iou) / 2) / 4, 1.0)


@needs_sample
@pytest.mark.parametrize("kept", [238, 239])
def test_iou_threshold_on_shrunk_segment(tmp_path: Path, kept: int) -> None:
    pred = _Prediction()
    ids = pred.ids[IMG1]
    rows, cols = np.nonzero(ids == PERSON_B)  # raster order, 477 pixels
    assert rows.size == 477
    ids[rows[kept:], cols[kept:]] = VOID_ID  # keep the first `kept` pixels
    report = pred.evaluate(tmp_path)
    person = report.per_category[PERSON]
    # IoU = kept / (kept + 477 - kept - 0) = kept / 477.
    if kept == 239:
        # 239/477 > 0.5 -> TP: tp 26, iou sum 25 + 239/477.
        assert _counts(person) == (26, 0, 0)
        _check(person, (25 + 239 / 477) / 26, (25 + 239 / 477) / 26, 1.0)
    else:
        # 238/477 < 0.5 -> gt B is an FN, and pred B (0 VOID pixels) an FP.
        # tp 25, fp 1, fn 1 -> PQ = RQ = 25 / (25 + 0.5 + 0.5) = 25/26.
        assert _counts(person) == (25, 1, 1)
        _check(person, 25 / 26, 1.0, 25 / 26)


@needs_sample
def test_prediction_pixels_on_gt_void_cost_nothing(tmp_path: Path) -> None:
    pred = _Prediction()
    ids = pred.ids[IMG1]
    void = ids == VOID_ID
    assert int(void.sum()) > 0
    # Paint every gt-VOID pixel as sky: pred sky = 8204 + v, inter 8204, v on VOID,
    # union = (8204 + v) + 8204 - 8204 - v = 8204 -> IoU 1, everything stays perfect.
    ids[void] = SKY_IMG1
    report = pred.evaluate(tmp_path)
    _check(report.all, 1.0, 1.0, 1.0)
    assert _counts(report.per_category[SKY]) == (2, 0, 0)


@needs_sample
def test_segment_merged_into_crowd_region(tmp_path: Path) -> None:
    pred = _Prediction()
    # Person B (477 px) painted with the person-crowd prediction id (24295 px).
    pred.ids[IMG1][pred.ids[IMG1] == PERSON_B] = PERSON_CROWD_IMG1
    pred.remove(IMG1, PERSON_B)
    report = pred.evaluate(tmp_path)
    # gt B vs pred crowd: IoU = 477 / (24772 + 477 - 477) = 477/24772 < 0.5 -> FN.
    # pred crowd-id segment (person): unmatched; on person crowd 24295 of 24772 px > 0.5
    # -> ignored. person: tp 25, fn 1 -> 50/51.
    assert _counts(report.per_category[PERSON]) == (25, 0, 1)
    _check(report.per_category[PERSON], 50 / 51, 1.0, 50 / 51)


@needs_sample
def test_predictions_for_unknown_images_are_ignored(tmp_path: Path) -> None:
    pred = _Prediction()
    pred.data["annotations"].append({"image_id": 1, "file_name": "does-not-exist.png", "segments_info": []})
    report = pred.evaluate(tmp_path)
    assert report.n_images == 2
    _check(report.all, 1.0, 1.0, 1.0)


@needs_sample
def test_report_to_dict_and_table() -> None:
    report = evaluate_panoptic(GT_JSON, GT_DIR, GT_JSON, GT_DIR)
    data = report.to_dict()
    json.dumps(data)  # JSON-ready
    assert data["all"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "tp": 47, "fp": 0, "fn": 0, "n": 8}
    assert list(data["per_category"]) == sorted(
        ["person", "truck", "horse", "sports ball", "gravel", "tree-merged", "sky-other-merged", "grass-merged"]
    )
    assert data["per_category"]["horse"]["id"] == HORSE
    assert data["per_category"]["horse"]["tp"] == 11
    assert data["per_category"]["gravel"]["isthing"] is False
    assert report.to_dict(percent=True)["stuff"]["pq"] == 100.0
    table = report.format_table()
    lines = table.splitlines()
    assert lines[2].split() == ["All", "|", "100.000", "100.000", "100.000", "8"]
    assert lines[3].split()[:2] == ["Things", "|"] and lines[4].split()[-1] == "4"
    assert table.index("grass-merged") < table.index("gravel") < table.index("truck")


# ------------------------------------------------------------------------------------------
# Synthetic arrays: exact fractions for the VOID and crowd rules
# ------------------------------------------------------------------------------------------

CATS = [
    CategoryInfo(1, "a-thing", True),
    CategoryInfo(2, "b-thing", True),
    CategoryInfo(3, "c-stuff", False),
]


def _seg(segment_id: int, category_id: int, iscrowd: int = 0) -> dict[str, int]:
    return {"id": segment_id, "category_id": category_id, "iscrowd": iscrowd}


def _run(
    gt: npt.NDArray[np.int64],
    gt_segments: Sequence[Mapping[str, Any]],
    pred: npt.NDArray[np.int64],
    pred_segments: Sequence[Mapping[str, Any]],
) -> PQReport:
    accumulator = PQAccumulator(categories=CATS)
    accumulator.add_image(gt, gt_segments, pred, pred_segments, image_name="synthetic.png")
    return accumulator.report()


def test_union_subtracts_only_prediction_pixels_on_gt_void() -> None:
    gt = np.zeros((6, 8), dtype=np.int64)
    gt[:, 0:4] = 10  # cat 1, 24 px
    gt[:, 6:8] = 20  # cat 3, 12 px; columns 4-5 VOID
    pred = np.zeros((6, 8), dtype=np.int64)
    pred[:, 1:5] = 5  # 24 px: 18 on gt 10, 6 on VOID
    pred[:, 5:8] = 6  # 18 px: 6 on VOID, 12 on gt 20
    report = _run(gt, [_seg(10, 1), _seg(20, 3)], pred, [_seg(5, 1), _seg(6, 3)])
    # (10, 5): union = 24 + 24 - 18 - 6 = 24 -> IoU 18/24 = 0.75.
    _check(report.per_category[1], 0.75, 0.75, 1.0)
    # (20, 6): union = 18 + 12 - 12 - 6 = 12 -> IoU 1.
    _check(report.per_category[3], 1.0, 1.0, 1.0)
    _check(report.all, (0.75 + 1) / 2, (0.75 + 1) / 2, 1.0)
    _check(report.things, 0.75, 0.75, 1.0)
    assert (report.all.n, report.things.n, report.stuff.n) == (2, 1, 1)


def test_crowd_pixels_are_not_subtracted_from_the_union() -> None:
    gt = np.zeros((2, 8), dtype=np.int64)
    gt[0] = 50  # crowd, cat 1, 8 px
    gt[1] = 10  # cat 1, 8 px
    pred = np.zeros((2, 8), dtype=np.int64)
    pred[1] = 1
    pred[0, 0:2] = 1  # pred 1: 8 on gt 10 + 2 on the crowd = 10 px
    report = _run(gt, [_seg(50, 1, iscrowd=1), _seg(10, 1)], pred, [_seg(1, 1)])
    # union = 10 + 8 - 8 - 0 (no VOID) = 10 -> IoU 0.8.
    assert _counts(report.per_category[1]) == (1, 0, 0)
    _check(report.per_category[1], 0.8, 0.8, 1.0)


def test_iou_of_exactly_one_half_does_not_match() -> None:
    gt = np.zeros((1, 8), dtype=np.int64)
    gt[0, 0:4] = 10  # cat 1, 4 px
    gt[0, 4:8] = 20  # cat 3, 4 px
    pred = gt.copy()
    pred[0, 2:4] = 0  # pred 10 keeps 2 px
    report = _run(gt, [_seg(10, 1), _seg(20, 3)], pred, [_seg(10, 1), _seg(20, 3)])
    # IoU = 2 / (2 + 4 - 2) = 0.5, not > 0.5 -> gt FN; pred has 0 VOID px -> FP.
    # cat 1: tp 0, fp 1, fn 1 -> PQ = SQ = RQ = 0; cat 3 perfect.
    assert _counts(report.per_category[1]) == (0, 1, 1)
    _check(report.per_category[1], 0.0, 0.0, 0.0)
    _check(report.all, 0.5, 0.5, 0.5)


@pytest.mark.parametrize(("void_px", "ignored"), [(3, True), (2, False)])
def test_prediction_mostly_on_void_is_ignored(void_px: int, ignored: bool) -> None:
    gt = np.zeros((2, 8), dtype=np.int64)
    gt[1] = 10  # cat 3, 8 px; row 0 is VOID
    pred = np.zeros((2, 8), dtype=np.int64)
    pred[1, 2:] = 7  # cat 3: 6 px on gt 10 -> IoU 6/8 = 0.75
    pred[0, :void_px] = 9  # cat 1: void_px on VOID ...
    pred[1, :2] = 9  # ... + 2 px on gt 10
    report = _run(gt, [_seg(10, 3)], pred, [_seg(7, 3), _seg(9, 1)])
    _check(report.per_category[3], 0.75, 0.75, 1.0)
    if ignored:
        # 3 / (3 + 2) = 0.6 > 0.5 -> ignored; cat 1 does not occur at all.
        assert set(report.per_category) == {3}
        _check(report.all, 0.75, 0.75, 1.0)
        # Empty thing group: zeros and n = 0.
        assert report.things == PQStats(0.0, 0.0, 0.0, 0, 0, 0, n=0)
    else:
        # 2 / (2 + 2) = 0.5, not > 0.5 -> FP of cat 1: PQ 0.
        assert _counts(report.per_category[1]) == (0, 1, 0)
        _check(report.all, (0 + 0.75) / 2, (0 + 0.75) / 2, (0 + 1) / 2)
        assert report.things.n == 1 and report.things.fp == 1


def test_crowd_rules() -> None:
    gt = np.zeros((4, 8), dtype=np.int64)
    gt[0:2, 0:4] = 50  # crowd, cat 1, 8 px
    gt[0:2, 4:8] = 60  # crowd, cat 2, 8 px
    gt[2:4, :] = 70  # cat 3, 16 px
    pred = np.zeros((4, 8), dtype=np.int64)
    pred[0:2, 0:4] = 1  # cat 1 exactly on crowd 50 (cat 1)
    pred[0:2, 4:8] = 2  # cat 1 exactly on crowd 60 (cat 2)
    pred[2:4, :] = 3  # cat 3 exact
    report = _run(
        gt,
        [_seg(50, 1, iscrowd=1), _seg(60, 2, iscrowd=1), _seg(70, 3)],
        pred,
        [_seg(1, 1), _seg(2, 1), _seg(3, 3)],
    )
    # pred 1: a crowd gt never matches (IoU would be 1); 8/8 on the cat-1 crowd -> ignored.
    # pred 2: 0 px on the cat-1 crowd (60 is cat 2) and 0 VOID -> FP of cat 1.
    # cat 2 has only a crowd gt and no prediction -> does not occur.
    assert set(report.per_category) == {1, 3}
    assert _counts(report.per_category[1]) == (0, 1, 0)
    _check(report.all, (0 + 1) / 2, (0 + 1) / 2, (0 + 1) / 2)


def test_void_and_crowd_pixels_add_up_for_the_ignore_rule() -> None:
    gt = np.zeros((2, 8), dtype=np.int64)
    gt[0, 0:4] = 50  # crowd, cat 1; row 0 columns 4-7 VOID
    gt[1] = 70  # cat 3, 8 px
    pred = np.zeros((2, 8), dtype=np.int64)
    pred[0, 2:6] = 1  # cat 1: 2 px on crowd 50 + 2 px on VOID ...
    pred[1, 0:2] = 1  # ... + 2 px on gt 70 = 6 px
    pred[1, 2:] = 3  # cat 3: 6 px -> IoU 6/8
    report = _run(gt, [_seg(50, 1, iscrowd=1), _seg(70, 3)], pred, [_seg(1, 1), _seg(3, 3)])
    # (2 VOID + 2 crowd) / 6 = 2/3 > 0.5 -> ignored (either part alone, 2/6, would not be).
    assert set(report.per_category) == {3}
    _check(report.all, 0.75, 0.75, 1.0)


@pytest.mark.parametrize("crowd_50_last", [False, True])
def test_only_the_last_crowd_segment_of_a_category_counts(crowd_50_last: bool) -> None:
    gt = np.zeros((2, 8), dtype=np.int64)
    gt[0, 0:4] = 50  # crowd, cat 1
    gt[0, 4:8] = 51  # crowd, cat 1
    gt[1] = 70  # cat 3
    pred = np.zeros((2, 8), dtype=np.int64)
    pred[0, 0:4] = 1  # cat 1: 4 px on crowd 50 ...
    pred[1, 0:2] = 1  # ... + 2 px on gt 70 = 6 px
    pred[1, 2:] = 3  # cat 3: IoU 6/8
    crowds = [_seg(51, 1, iscrowd=1), _seg(50, 1, iscrowd=1)]
    if not crowd_50_last:
        crowds.reverse()
    report = _run(gt, [*crowds, _seg(70, 3)], pred, [_seg(1, 1), _seg(3, 3)])
    # Reference rule: the crowd region of a category is the last crowd segment listed.
    if crowd_50_last:
        # 4/6 on crowd 50 -> ignored.
        assert 1 not in report.per_category
    else:
        # crowd 51 is "the" cat-1 crowd: 0/6 -> FP.
        assert _counts(report.per_category[1]) == (0, 1, 0)


def test_ground_truth_category_outside_the_list_is_left_out() -> None:
    gt = np.array([[10, 10, 20, 20]], dtype=np.int64)
    pred = np.array([[0, 0, 5, 5]], dtype=np.int64)
    report = _run(gt, [_seg(10, 99), _seg(20, 3)], pred, [_seg(5, 3)])
    # gt 10 (cat 99) is an FN of a category not in CATS -> not reported, no error.
    assert set(report.per_category) == {3}
    _check(report.all, 1.0, 1.0, 1.0)


def test_accumulator_sums_images_and_merges() -> None:
    gt = np.array([[10, 10, 10, 10]], dtype=np.int64)
    half = np.array([[5, 5, 5, 0]], dtype=np.int64)  # IoU 3/4
    first = PQAccumulator()
    first.add_image(gt, [_seg(10, 1)], gt, [_seg(10, 1)])  # IoU 1
    second = PQAccumulator()
    second.add_image(gt, [_seg(10, 1)], half, [_seg(5, 1)])
    first.merge(second)
    report = first.report(CATS)
    # cat 1: tp 2, iou sum 1.75 -> PQ = SQ = 0.875, RQ 1.
    assert report.n_images == 2
    assert _counts(report.per_category[1]) == (2, 0, 0)
    _check(report.per_category[1], 0.875, 0.875, 1.0)


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


@needs_sample
def test_missing_prediction_for_an_image(tmp_path: Path) -> None:
    pred = _Prediction()
    pred.data["annotations"] = [a for a in pred.data["annotations"] if a["file_name"] != IMG2]
    with pytest.raises(EvaluationError, match=r"no prediction .*000000439180\.png.*439180"):
        pred.evaluate(tmp_path)


@needs_sample
def test_png_id_missing_from_json(tmp_path: Path) -> None:
    pred = _Prediction()
    pred.remove(IMG1, SKY_IMG1)
    with pytest.raises(
        EvaluationError,
        match=r"000000142238\.png.*segment id 11829830 .*not in the prediction segments_info",
    ):
        pred.evaluate(tmp_path)


@needs_sample
def test_json_id_missing_from_png(tmp_path: Path) -> None:
    pred = _Prediction()
    pred.segments(IMG2).append({"id": 123456, "category_id": PERSON})
    with pytest.raises(EvaluationError, match=r"000000439180\.png.*\[123456\].*no pixel"):
        pred.evaluate(tmp_path)


@needs_sample
def test_unknown_prediction_category(tmp_path: Path) -> None:
    pred = _Prediction()
    pred.segment(IMG1, PERSON_A)["category_id"] = 9999
    with pytest.raises(EvaluationError, match=r"000000142238\.png.*segment id 4325578 .*category_id 9999"):
        pred.evaluate(tmp_path)


def test_unknown_category_without_categories_upfront_raises_in_report() -> None:
    accumulator = PQAccumulator()
    ids = np.array([[1, 1]], dtype=np.int64)
    accumulator.add_image(ids, [_seg(1, 3)], ids, [_seg(1, 42)], image_name="x.png")
    with pytest.raises(EvaluationError, match=r"x\.png: prediction segment id 1 .*category_id 42"):
        accumulator.report(CATS)


@needs_sample
def test_size_mismatch(tmp_path: Path) -> None:
    pred = _Prediction()
    pred.ids[IMG1] = pred.ids[IMG1][:, :-1]  # 639 columns instead of 640
    with pytest.raises(EvaluationError, match=r"000000142238\.png.*639x427.*640x427"):
        pred.evaluate(tmp_path)


def test_failed_image_leaves_accumulator_unchanged() -> None:
    accumulator = PQAccumulator(categories=CATS)
    ids = np.array([[1, 2]], dtype=np.int64)
    with pytest.raises(EvaluationError, match="segment id 2"):
        accumulator.add_image(ids, [_seg(1, 3), _seg(2, 3)], ids, [_seg(1, 3)])
    assert accumulator.n_images == 0
    with pytest.raises(EvaluationError, match="no category occurs"):
        accumulator.report()


def test_nothing_occurs() -> None:
    # Only a crowd gt region, predicted exactly: no TP/FN (crowd), pred ignored (8/8 crowd).
    gt = np.full((2, 4), 50, dtype=np.int64)
    with pytest.raises(EvaluationError, match=r"no category occurs.*1 image"):
        _run(gt, [_seg(50, 1, iscrowd=1)], gt, [_seg(50, 1)])
    void = np.zeros((2, 4), dtype=np.int64)
    with pytest.raises(EvaluationError, match="no category occurs"):
        _run(void, [], void, [])


@needs_sample
def test_nothing_occurs_with_files(tmp_path: Path) -> None:
    gt = copy.deepcopy(json.loads(GT_JSON.read_text(encoding="utf-8")))
    gt["annotations"] = []
    gt_json = tmp_path / "gt.json"
    gt_json.write_text(json.dumps(gt), encoding="utf-8")
    with pytest.raises(EvaluationError, match=r"no category occurs.*0 image"):
        evaluate_panoptic(gt_json, GT_DIR, GT_JSON, GT_DIR)


def _predictions_with_vocabulary(tmp_path: Path, names: dict[int, tuple[int, str]]) -> tuple[Path, Path]:
    """The ground truth re-expressed as predictions of a user vocabulary: ``names`` maps a COCO
    category id to (new id, name); segments of other categories are dropped (their pixels void)."""
    data = json.loads(GT_JSON.read_text())
    out_dir = tmp_path / "pred"
    out_dir.mkdir()
    annotations = []
    for ann in data["annotations"]:
        ids = rgb_to_id(np.asarray(Image.open(GT_DIR / ann["file_name"]).convert("RGB")))
        kept = []
        for seg in ann["segments_info"]:
            if seg["category_id"] in names:
                kept.append({**seg, "category_id": names[seg["category_id"]][0]})
            else:
                ids[ids == seg["id"]] = VOID_ID
        Image.fromarray(id_to_rgb(ids)).save(out_dir / ann["file_name"])
        annotations.append({**ann, "segments_info": kept})
    categories = [{"id": new, "name": name, "isthing": int(cid in (PERSON, HORSE))} for cid, (new, name) in names.items()]
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps({"images": data["images"], "annotations": annotations, "categories": categories}))
    return pred_json, out_dir


@needs_sample
def test_predictions_of_another_vocabulary_are_refused_by_id_and_matched_by_name(tmp_path: Path) -> None:
    # What `segment --classes "person, horse, grass"` writes: ids 1, 2, 3 (COCO's 2 is bicycle).
    pred_json, pred_dir = _predictions_with_vocabulary(
        tmp_path, {PERSON: (1, "person"), HORSE: (2, "horse"), GRASS: (3, "grass"), SKY: (4, "cloud")}
    )
    with pytest.raises(EvaluationError, match=(
        r"^prediction category 2 is 'horse' but ground-truth category 2 is 'bicycle' \(3 of 4 prediction categories "
        r"differ by name\): the predictions were made with another vocabulary. Evaluate with --match-categories name"
    )):
        evaluate_panoptic(GT_JSON, GT_DIR, pred_json, pred_dir)
    report = evaluate_panoptic(GT_JSON, GT_DIR, pred_json, pred_dir, match_categories="name")
    for cid, tp in ((PERSON, 26), (HORSE, 11), (GRASS, 2)):
        assert _counts(report.per_category[cid]) == (tp, 0, 0) and report.per_category[cid].pq == 1.0
    # "cloud" has no ground-truth namesake: its segments are ignored, so sky is all false negatives
    for cid, fn in ((TRUCK, 2), (SPORTS_BALL, 1), (GRAVEL, 1), (TREE, 2), (SKY, 2)):
        assert _counts(report.per_category[cid]) == (0, 0, fn) and report.per_category[cid].pq == 0.0
    assert (report.all.pq, report.things.pq, report.stuff.pq) == (3 / 8, 2 / 4, 1 / 4)
    n_gt = len(json.loads(GT_JSON.read_text())["categories"])
    assert report.notes[0] == f"categories matched by name: 3 of {n_gt} ground-truth categories ('grass' -> 'grass-merged')"
    assert report.notes[1] == "prediction categories without a ground-truth namesake (their segments are ignored): 'cloud'"
    assert report.notes[2].startswith("ground-truth categories no prediction category is named after (never predicted): 'bicycle', 'car'")
    assert report.to_dict()["notes"] == list(report.notes)
    assert report.format_table().endswith("note: " + report.notes[2])


@needs_sample
def test_image_id_type_mismatch_is_named(tmp_path: Path) -> None:
    data = json.loads(GT_JSON.read_text())
    for ann in data["annotations"]:
        ann["image_id"] = str(ann["image_id"])
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps(data))
    with pytest.raises(EvaluationError, match=(
        r"the ground truth's image_id is 142238 \(int\) and .*pred.json has '142238' \(str\); image ids must have the "
        r"same type in both files"
    )):
        evaluate_panoptic(GT_JSON, GT_DIR, pred_json, GT_DIR)


@needs_sample
def test_image_ids_of_another_type_are_named_with_the_fix(tmp_path: Path) -> None:
    """Prediction image ids written as file-name strings (``"000000142238"``) match no integer id:
    the message says the type is wrong and how to fix it, not "add one"."""
    data = json.loads(GT_JSON.read_text())
    for ann in data["annotations"]:
        ann["image_id"] = Path(ann["file_name"]).stem
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps(data))
    with pytest.raises(EvaluationError) as caught:
        evaluate_panoptic(GT_JSON, GT_DIR, pred_json, GT_DIR)
    assert str(caught.value) == (
        f"no prediction for the ground-truth image {IMG1}: the ground truth's image_id is 142238 (int), and {pred_json} "
        "has image_ids of type str ('000000142238', '000000439180'); image ids pair only when value and type are equal "
        "(COCO uses integers): write each prediction's image_id as the ground truth's id of the same image, or compare "
        "by file name with --gt GT.json --pred PRED.json"
    )


def test_video_frames_over_the_pixel_limit_are_refused_from_the_png_header(tmp_path: Path) -> None:
    from formats.test_labelling_eval import png_header_only

    from ovpanoptic.evaluation import read_video_panoptic

    folder = tmp_path / "panoptic"
    folder.mkdir()
    png_header_only(folder / "f0.png", 9000, 9000)
    data = {
        "images": [{"id": 1, "video_id": "v", "frame_index": 0, "file_name": "f0.jpg", "width": 9000, "height": 9000}],
        "annotations": [{"image_id": 1, "file_name": "f0.png", "segments_info": []}],
        "categories": [{"id": 1, "name": "car", "isthing": 1}],
    }
    (tmp_path / "video.json").write_text(json.dumps(data))
    video = read_video_panoptic(tmp_path / "video.json", folder, role="prediction")
    with pytest.raises(EvaluationError, match=r"prediction PNG .*f0.png declares an image of 9000 x 9000 pixels \(81 megapixels\), over the limit of 50 megapixels"):
        next(video.frames("v"))


def test_eval_video_takes_the_pixel_limit_its_message_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from formats.test_labelling_eval import png_header_only

    from ovpanoptic.cli import main

    folder = tmp_path / "panoptic"
    folder.mkdir()
    png_header_only(folder / "f0.png", 9000, 9000)
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(folder / "f1.png")
    data = {
        "images": [
            {"id": 1, "video_id": "v", "frame_index": 0, "file_name": "f0.jpg", "width": 9000, "height": 9000},
            {"id": 2, "video_id": "w", "frame_index": 0, "file_name": "f1.jpg", "width": 6, "height": 4},
        ],
        "annotations": [
            {"image_id": 1, "file_name": "f0.png", "segments_info": []},
            {"image_id": 2, "file_name": "f1.png", "segments_info": []},
        ],
        "categories": [{"id": 1, "name": "car", "isthing": 1}],
    }
    (tmp_path / "video.json").write_text(json.dumps(data))
    args = ["eval-video", "--pred-json", str(tmp_path / "video.json"), "--pred-dir", str(folder)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "declares an image of 9000 x 9000 pixels (81 megapixels), over the limit of 50 megapixels" in err
    assert "raise the limit with --max-pixels N" in err
    small = {**data, "images": data["images"][1:], "annotations": data["annotations"][1:]}
    (tmp_path / "small.json").write_text(json.dumps(small))
    small_args = ["eval-video", "--pred-json", str(tmp_path / "small.json"), "--pred-dir", str(folder)]
    assert main(small_args) == 0
    capsys.readouterr()
    assert main([*small_args, "--max-pixels", "20"]) == 2  # the option is the one the message names: 6 x 4 > 20
    assert "f1.png declares an image of 6 x 4 pixels" in capsys.readouterr().err
    assert main([*args, "--max-pixels", "-1"]) == 2
    assert "--max-pixels must be >= 0 (0 = no limit), got -1" in capsys.readouterr().err
