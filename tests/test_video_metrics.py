"""Tests of ovpanoptic.evaluation.video (VPQ, STQ), .consistency and the video panoptic reader (ovpanoptic.formats.video_panoptic).

Every expected number is worked out by hand in the comments from tiny 4x6 id maps; none is
copied from a run. The scene used by most tests (ids; 30 sky, 40 road, 11 person, 12 car)::

    row 0:  30 30 30 30 30 30
    row 1:  11 11 30 30 12 12
    row 2:  11 11 40 40 12 12
    row 3:  40 40 40 40 40 40

so per frame: person 4 px, car 4 px, sky 8 px, road 8 px.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from ovpanoptic.evaluation import (
    EvaluationError,
    check_temporal_consistency,
    evaluate_panoptic,
    evaluate_video,
    id_to_rgb,
    read_video_panoptic,
)
from ovpanoptic.formats.common import load_json, read_id_png

PERSON, CAR, SKY, ROAD = 1, 2, 3, 4
CATEGORIES = [
    {"id": PERSON, "name": "person", "isthing": 1},
    {"id": CAR, "name": "car", "isthing": 1},
    {"id": SKY, "name": "sky", "isthing": 0},
    {"id": ROAD, "name": "road", "isthing": 0},
]
#: segment id -> category of the scene's ids (21: the person under a switched id)
CATS = {11: PERSON, 21: PERSON, 12: CAR, 30: SKY, 40: ROAD}

#: A frame: its id map and {segment id: category id or (category id, iscrowd)}.
Frame = tuple[npt.NDArray[np.int64], Mapping[int, Any]]


def scene(*, person: int | None = 11, car: bool = True) -> npt.NDArray[np.int64]:
    """The 4x6 scene of the module docstring (person and car optional)."""
    ids = np.full((4, 6), 30, dtype=np.int64)
    ids[2:, :] = 40
    if person is not None:
        ids[1:3, 0:2] = person
    if car:
        ids[1:3, 4:6] = 12
    return ids


def write_videos(
    folder: Path, videos: Mapping[Any, Sequence[Frame]], *, categories: bool = True, step: int = 1
) -> tuple[Path, Path]:
    """Write a video panoptic JSON + PNGs; frame ``i`` of a video gets ``frame_index = i * step``.

    Only the ids present in a frame are listed in its segments_info. Returns (json, png dir).
    """
    png_dir = folder / "png"
    png_dir.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"images": [], "annotations": []}
    if categories:
        data["categories"] = CATEGORIES
    for video_id, frames in videos.items():
        for position, (ids, cats) in enumerate(frames):
            image_id = f"{video_id}-{position}"
            file_name = f"{video_id}_{position:03d}.png"
            Image.fromarray(id_to_rgb(ids)).save(png_dir / file_name)
            data["images"].append(
                {
                    "id": image_id,
                    "file_name": file_name.replace(".png", ".jpg"),
                    "video_id": video_id,
                    "frame_index": position * step,
                    "width": ids.shape[1],
                    "height": ids.shape[0],
                }
            )
            segments = []
            for segment_id in sorted(int(i) for i in np.unique(ids) if i != 0):
                spec = cats[segment_id]
                category, crowd = spec if isinstance(spec, tuple) else (spec, 0)
                segments.append({"id": segment_id, "category_id": category, "iscrowd": crowd})
            data["annotations"].append({"image_id": image_id, "file_name": file_name, "segments_info": segments})
    json_path = folder / "panoptic.json"
    json_path.write_text(json.dumps(data))
    return json_path, png_dir


def evaluate(tmp_path: Path, gt: Mapping[Any, Sequence[Frame]], pred: Mapping[Any, Sequence[Frame]], **kwargs: Any):
    """Write both sides and run evaluate_video."""
    gt_json, gt_dir = write_videos(tmp_path / "gt", gt)
    pred_json, pred_dir = write_videos(tmp_path / "pred", pred)
    return evaluate_video(gt_json, gt_dir, pred_json, pred_dir, **kwargs)


def same(frames: int, **scene_kwargs: Any) -> list[Frame]:
    """``frames`` identical frames of the scene."""
    return [(scene(**scene_kwargs), CATS) for _ in range(frames)]


# ---------------------------------------------------------------------------------------------
# VPQ and STQ
# ---------------------------------------------------------------------------------------------


def test_a_perfect_prediction_scores_one_everywhere(tmp_path):
    video = same(3)
    report = evaluate(tmp_path, {"v": video}, {"v": video}, spans=(1, 2, 3))
    assert report.vpq.spans == (1, 2, 3)
    for span, windows in ((1, 3), (2, 2), (3, 1)):  # T - k + 1 windows of a 3-frame video
        result = report.vpq.per_span[span]
        assert result.n_images == windows
        assert result.all.pq == 1.0
        # each of the 4 categories has one matched tube per window
        assert {cid: (s.tp, s.fp, s.fn) for cid, s in result.per_category.items()} == {
            c: (windows, 0, 0) for c in (PERSON, CAR, SKY, ROAD)
        }
    assert (report.vpq.all, report.vpq.things, report.vpq.stuff) == (1.0, 1.0, 1.0)
    overall = report.stq.overall
    assert (overall.stq, overall.aq, overall.sq, overall.n_tracks, overall.n_frames) == (1.0, 1.0, 1.0, 2, 3)
    assert dict(overall.class_iou) == {PERSON: 1.0, CAR: 1.0, SKY: 1.0, ROAD: 1.0}
    assert report.consistency.issues == ()
    assert (report.n_videos, report.n_frames, report.notes) == (1, 3, ())


def test_an_id_switch_in_the_middle_frame_keeps_pq_but_lowers_vpq_and_aq(tmp_path):
    gt = same(3)
    # The prediction calls the person 21 in frame 1 and 11 in frames 0 and 2: every frame alone is perfect.
    pred = [(scene(), CATS), (scene(person=21), CATS), (scene(), CATS)]
    report = evaluate(tmp_path, {"v": gt}, {"v": pred}, spans=(1, 2, 3))
    vpq = report.vpq
    # span 1: per-frame PQ, all perfect
    assert vpq.per_span[1].all.pq == 1.0
    # span 2, windows (0,1) and (1,2): gt person tube 4+4 = 8 px; pred tubes 11 and 21 have 4 px each,
    # IoU 4/8 = 0.5, not > 0.5: no match -> person FN 1, FP 2 per window; car, sky, road matched.
    person2 = vpq.per_span[2].per_category[PERSON]
    assert (person2.pq, person2.tp, person2.fp, person2.fn) == (0.0, 0, 4, 2)
    assert vpq.per_span[2].all.pq == 0.75  # (0 + 1 + 1 + 1) / 4
    assert vpq.per_span[2].things.pq == 0.5  # (0 + 1) / 2
    # span 3, one window: gt person tube 12 px; pred 11 has 8 px, IoU 8/12 = 2/3 -> TP; pred 21 (4 px) FP.
    # person PQ = (2/3) / (1 + 1/2) = 4/9; All = (4/9 + 3) / 4 = 31/36
    person3 = vpq.per_span[3].per_category[PERSON]
    assert (person3.tp, person3.fp, person3.fn) == (1, 1, 0)
    assert person3.pq == pytest.approx(4 / 9, abs=1e-15)
    assert person3.sq == pytest.approx(2 / 3, abs=1e-15)
    assert vpq.per_span[3].all.pq == pytest.approx(31 / 36, abs=1e-15)
    # VPQ = (1 + 3/4 + 31/36) / 3 = (36 + 27 + 31) / 108 = 47/54; person (1 + 0 + 4/9) / 3 = 13/27
    assert vpq.all == pytest.approx(47 / 54, abs=1e-15)
    assert vpq.per_category[PERSON] == pytest.approx(13 / 27, abs=1e-15)
    assert vpq.per_category[SKY] == 1.0
    assert vpq.things == pytest.approx((1 + 0.5 + (4 / 9 + 1) / 2) / 3, abs=1e-15)
    assert vpq.stuff == 1.0
    # AQ: person track (12 px): pred 11 TPA 8, IoU_id 8/12 -> 8 * 2/3 = 16/3; pred 21 TPA 4, IoU_id 4/12 -> 4/3;
    # (16/3 + 4/3) / 12 = 5/9. Car: 12 * 1 / 12 = 1. AQ = (5/9 + 1) / 2 = 7/9; SQ = 1; STQ = sqrt(7/9).
    stq = report.stq.overall
    assert stq.aq == pytest.approx(7 / 9, abs=1e-15)
    assert stq.sq == 1.0
    assert stq.stq == pytest.approx(math.sqrt(7) / 3, abs=1e-15)
    # The prediction's consistency: 11 is absent from frame 1, so it has no consecutive pair; 21 is in one frame.
    tracks = {t.track_id: t for t in report.consistency.tracks}
    assert (tracks[11].n_frames, tracks[11].n_pairs, tracks[11].mean_iou) == (2, 0, None)
    assert (tracks[21].n_frames, tracks[21].n_pairs) == (1, 0)
    assert (tracks[30].n_pairs, tracks[30].min_iou) == (2, 1.0)


def test_dataset_aq_weighs_every_track_not_every_video(tmp_path):
    gt = {"a": same(3), "b": same(3, car=False)}
    pred = {"a": [(scene(), CATS), (scene(person=21), CATS), (scene(), CATS)], "b": same(3, car=False)}
    report = evaluate(tmp_path, gt, pred, spans=(1,))
    per_video = report.stq.per_video
    # video a as in the id-switch test: AQ 7/9 over 2 tracks; video b perfect: AQ 1 over 1 track
    assert per_video["a"].aq == pytest.approx(7 / 9, abs=1e-15)
    assert (per_video["a"].n_tracks, per_video["b"].n_tracks, per_video["b"].aq) == (2, 1, 1.0)
    # dataset: (5/9 + 1 + 1) / 3 tracks = 23/27, not the mean of the videos' 7/9 and 1 (8/9)
    assert report.stq.overall.aq == pytest.approx(23 / 27, abs=1e-15)
    assert report.stq.overall.n_frames == 6


def test_a_missed_object_is_a_false_negative_tube_and_a_lost_track(tmp_path):
    gt = same(3)
    missed = scene()
    missed[missed == 12] = 0  # the car's pixels are left void by the prediction
    report = evaluate(tmp_path, {"v": gt}, {"v": [(missed.copy(), CATS) for _ in range(3)]}, spans=(1, 3))
    for span, windows in ((1, 3), (3, 1)):
        car = report.vpq.per_span[span].per_category[CAR]
        assert (car.pq, car.tp, car.fp, car.fn) == (0.0, 0, 0, windows)
        assert report.vpq.per_span[span].all.pq == 0.75  # (1 + 0 + 1 + 1) / 4
    # AQ = (person 1 + car 0) / 2 = 1/2; SQ: car IoU 0 (12 px FN), the others 1 -> 3/4; STQ = sqrt(3/8)
    stq = report.stq.overall
    assert (stq.aq, stq.sq) == (0.5, 0.75)
    assert stq.stq == pytest.approx(math.sqrt(3 / 8), abs=1e-15)
    assert stq.class_iou[CAR] == 0.0


def test_void_pixels_are_left_out_of_pq_unions_but_count_for_aq_as_the_reference_does(tmp_path):
    gt_ids = scene(car=False)
    gt_ids[0, 0:2] = 0  # 2 void pixels above the person
    pred_ids = gt_ids.copy()
    pred_ids[0, 0:2] = 11  # the prediction's person also covers them (6 px)
    pred_ids[0, 4:6] = 12  # a pred car of 2 px on gt sky (not void)
    pred_ids[3, 0] = 0  # one road pixel left void by the prediction
    # Per frame: gt person 4, sky 8 (row 0: 4, row 1: 4), road 10 (row 2: 4, row 3: 6), void 2;
    # pred person 6, car 2, sky 6, road 9.
    gt_frames = [(gt_ids.copy(), CATS) for _ in range(2)]
    pred_frames = [(pred_ids.copy(), CATS) for _ in range(2)]
    report = evaluate(tmp_path, {"v": gt_frames}, {"v": pred_frames}, spans=(2,))
    result = report.vpq.per_span[2]
    # person tube: inter 8, pred 12, gt 8, pred on void 4: IoU = 8 / (12 + 8 - 8 - 4) = 1
    person = result.per_category[PERSON]
    assert (person.tp, person.sq) == (1, 1.0)
    # car tube (4 px, all on sky, none on void): unmatched and not ignorable -> FP
    car = result.per_category[CAR]
    assert (car.tp, car.fp, car.fn) == (0, 1, 0)
    # sky tube: gt 16, pred 12 inside it -> 12/16; road tube: gt 20, pred 18 inside it -> 18/20
    assert result.per_category[SKY].sq == pytest.approx(12 / 16, abs=1e-15)
    assert result.per_category[ROAD].sq == pytest.approx(18 / 20, abs=1e-15)
    # STQ. AQ: person track gt 8 px; pred 11 has 12 px (4 on void count): IoU_id 8/12 -> 8 * 2/3 / 8 = 2/3.
    # The pred car is no gt track's business (it overlaps only sky). AQ = 2/3.
    # SQ: void gt pixels ignored; person 8/8 = 1; car: 4 FP, union 4 -> 0; sky: tp 12, fn 4 -> 12/16;
    # road: tp 18, fn 2 (pred void) -> 18/20. SQ = (1 + 0 + 3/4 + 9/10) / 4 = 53/80.
    stq = report.stq.overall
    assert stq.aq == pytest.approx(2 / 3, abs=1e-15)
    assert stq.sq == pytest.approx(53 / 80, abs=1e-15)
    assert stq.stq == pytest.approx(math.sqrt(2 / 3 * 53 / 80), abs=1e-15)


def test_a_prediction_mostly_on_void_is_ignored_not_a_false_positive(tmp_path):
    gt_ids = scene(car=False)
    gt_ids[1:3, 4:6] = 0  # where the car was, gt is void (4 px)
    pred_ids = gt_ids.copy()
    pred_ids[1:3, 4:6] = 12  # pred car fully on void
    report = evaluate(tmp_path, {"v": [(gt_ids, CATS)]}, {"v": [(pred_ids, CATS)]}, spans=(1,))
    assert CAR not in report.vpq.per_span[1].per_category
    assert report.vpq.all == 1.0


def test_a_window_merges_the_crowd_regions_of_its_frames(tmp_path):
    crowd = {**CATS, 50: (PERSON, 1), 51: (PERSON, 1)}
    # gt: the person is a crowd region, id 50 in frame 0 and id 51 in frame 1; pred: person 11 exactly there.
    gt = [(scene(person=50), crowd), (scene(person=51), crowd)]
    report = evaluate(tmp_path, {"v": gt}, {"v": same(2)}, spans=(1, 2))
    # The window's crowd region of "person" is 50 and 51 together, so the 8 px pred tube lies wholly on it and
    # is ignored (with only the last crowd segment, 51, it would be 4/8 on crowd, not > 1/2: a false positive).
    for span in (1, 2):
        assert PERSON not in report.vpq.per_span[span].per_category
        assert report.vpq.per_span[span].all.pq == 1.0
    # STQ: crowd pixels belong to no track (AQ: the car alone, 1) but keep their class (person IoU 8/8)
    stq = report.stq.overall
    assert (stq.aq, stq.n_tracks, stq.class_iou[PERSON], stq.stq) == (1.0, 1, 1.0, 1.0)


def test_a_class_change_inside_a_track_splits_its_tube(tmp_path):
    gt = same(3, car=False)
    cats_as_car = {**CATS, 11: CAR}
    pred = [(scene(car=False), CATS), (scene(car=False), cats_as_car), (scene(car=False), CATS)]
    report = evaluate(tmp_path, {"v": gt}, {"v": pred}, spans=(1, 2, 3))
    vpq = report.vpq
    # span 1: frame 1 person FN + car FP; person tp 2 fn 1 -> 2 / 2.5 = 0.8; car fp 1 -> 0; All = 2.8 / 4 = 0.7
    assert vpq.per_span[1].per_category[PERSON].pq == pytest.approx(0.8, abs=1e-15)
    assert (vpq.per_span[1].per_category[CAR].fp, vpq.per_span[1].per_category[CAR].pq) == (1, 0.0)
    assert vpq.per_span[1].all.pq == pytest.approx(0.7, abs=1e-15)
    # span 2: each window, (11, person) covers 4 of the 8 gt px: IoU 1/2, no match -> person 0, car FP -> All 2/4
    assert vpq.per_span[2].all.pq == 0.5
    # span 3: (11, person) 8 of 12 -> IoU 2/3, TP, person PQ 2/3; (11, car) FP; All = (2/3 + 0 + 2) / 4 = 2/3
    assert vpq.per_span[3].per_category[PERSON].pq == pytest.approx(2 / 3, abs=1e-15)
    assert vpq.per_span[3].all.pq == pytest.approx(2 / 3, abs=1e-15)
    assert vpq.all == pytest.approx((0.7 + 0.5 + 2 / 3) / 3, abs=1e-15)
    # AQ is class-agnostic: gt person (12 px) vs (11, person) TPA 8 -> 8*8/12; (11, car) TPA 4 -> 4*4/12;
    # (64 + 16) / 12 / 12 = 5/9. SQ: person 8/12, car 0/4, sky 1, road 1 -> (2/3 + 2) / 4 = 2/3.
    stq = report.stq.overall
    assert stq.aq == pytest.approx(5 / 9, abs=1e-15)
    assert stq.sq == pytest.approx(2 / 3, abs=1e-15)
    assert stq.stq == pytest.approx(math.sqrt(10 / 27), abs=1e-15)
    changes = [
        (c.track_id, c.previous_frame_index, c.frame_index, c.previous_category_id, c.category_id)
        for c in report.consistency.class_changes
    ]
    assert changes == [(11, 0, 1, PERSON, CAR), (11, 1, 2, CAR, PERSON)]


def test_stuff_only_videos_have_vpq_but_no_stq(tmp_path):
    gt_ids = np.full((4, 6), 30, dtype=np.int64)
    gt_ids[2:, :] = 40
    grown = gt_ids.copy()
    grown[2, 0:3] = 30  # frame 1: the prediction's sky takes 3 road pixels
    report = evaluate(
        tmp_path, {"v": [(gt_ids, CATS), (gt_ids, CATS)]}, {"v": [(gt_ids, CATS), (grown, CATS)]}, spans=(1, 2, 5)
    )
    vpq = report.vpq
    # span 1: frame 0 perfect; frame 1 sky 12/15 = 0.8, road 9/12 = 0.75. sky (1 + 0.8) / 2 = 0.9,
    # road (1 + 0.75) / 2 = 0.875, All 0.8875 = 71/80
    assert vpq.per_span[1].per_category[SKY].pq == pytest.approx(0.9, abs=1e-15)
    assert vpq.per_span[1].all.pq == pytest.approx(71 / 80, abs=1e-15)
    # span 2 (one window): sky 24/27 = 8/9, road 21/24 = 7/8 -> All (8/9 + 7/8) / 2 = 127/144;
    # span 5 is clipped to the video's 2 frames: the same window
    for span in (2, 5):
        assert vpq.per_span[span].n_images == 1
        assert vpq.per_span[span].all.pq == pytest.approx(127 / 144, abs=1e-15)
    assert vpq.all == pytest.approx((71 / 80 + 2 * 127 / 144) / 3, abs=1e-15)
    assert (vpq.things, vpq.stuff) == (None, pytest.approx(vpq.all, abs=1e-15))
    stq = report.stq.overall
    assert (stq.stq, stq.aq, stq.n_tracks) == (None, None, 0)
    assert stq.sq == pytest.approx(127 / 144, abs=1e-15)  # sky 24/27, road 21/24
    assert report.to_dict()["stq"]["stq"] is None
    assert "     -" in report.format_table()


def test_span_one_is_exactly_image_pq_on_a_varied_scene(tmp_path):
    """VPQ^1 must reproduce evaluate_panoptic, crowd and void included (the JSONs are COCO panoptic too)."""
    rng = np.random.default_rng(7)
    gt_frames, pred_frames = [], []
    cats = {**CATS, 50: (PERSON, 1), 51: (PERSON, 1), 13: CAR}
    for _ in range(4):
        gt_ids = scene()
        gt_ids[0, 3:6] = 50  # a person crowd region
        gt_ids[3, 4:6] = 51  # a second crowd segment of the same category (the last listed one counts)
        gt_ids[0, 0] = 0
        pred_ids = scene()
        flips = rng.random((4, 6)) < 0.25
        pred_ids[flips] = rng.choice([0, 11, 12, 13, 30, 40], size=int(flips.sum()))
        gt_frames.append((gt_ids, cats))
        pred_frames.append((pred_ids, cats))
    gt_json, gt_dir = write_videos(tmp_path / "gt", {"v": gt_frames})
    pred_json, pred_dir = write_videos(tmp_path / "pred", {"v": pred_frames})
    video = evaluate_video(gt_json, gt_dir, pred_json, pred_dir, spans=(1, 4)).vpq.per_span[1]
    image = evaluate_panoptic(gt_json, gt_dir, pred_json, pred_dir)
    assert video.n_images == image.n_images == 4
    assert set(video.per_category) == set(image.per_category)
    for cid, stats in image.per_category.items():
        mine = video.per_category[cid]
        assert (mine.tp, mine.fp, mine.fn) == (stats.tp, stats.fp, stats.fn)
        assert mine.pq == pytest.approx(stats.pq, rel=1e-12)
    assert video.all.pq == pytest.approx(image.all.pq, rel=1e-12)


def test_report_to_dict_and_table(tmp_path):
    pred = [(scene(), CATS), (scene(person=21), CATS), (scene(), CATS)]
    calls: list[tuple[int, int]] = []
    report = evaluate(tmp_path, {"v": same(3)}, {"v": pred}, spans=(1, 3), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    data = json.loads(json.dumps(report.to_dict(percent=True)))
    assert data["vpq"]["spans"] == [1, 3]
    # span 1 100, span 3 31/36 -> mean (100 + 8611.1...) / 2
    assert data["vpq"]["all"] == pytest.approx((100 + 100 * 31 / 36) / 2, abs=1e-12)
    assert data["vpq"]["per_category"]["person"] == {
        "id": PERSON,
        "isthing": True,
        "vpq": pytest.approx((100 + 100 * 4 / 9) / 2, abs=1e-12),
    }
    assert data["vpq"]["per_span"]["3"]["per_category"]["person"]["fp"] == 1
    assert data["stq"]["aq"] == pytest.approx(100 * 7 / 9, abs=1e-12)
    assert data["stq"]["per_video"]["v"]["n_tracks"] == 2
    assert data["stq"]["class_iou"] == {"car": 100.0, "person": 100.0, "road": 100.0, "sky": 100.0}
    assert data["consistency"]["threshold"] == 50.0
    table = report.format_table().splitlines()
    assert table[0] == "VPQ over 1 video(s), 3 frame(s); spans are window lengths in frames"
    all_row = next(line for line in table if line.startswith("All "))
    # VPQ1 100, VPQ3 31/36 = 86.111, mean 93.056
    assert all_row.split("|")[1].split() == ["100.000", "86.111", "93.056"]
    stq_row = next(line for line in table if line.startswith("all videos"))
    assert stq_row.split("|")[1].split() == [f"{100 * math.sqrt(7) / 3:.3f}", "77.778", "100.000", "2", "3"]


def test_prediction_frames_without_ground_truth_count_only_for_consistency(tmp_path):
    gt_json, gt_dir = write_videos(tmp_path / "gt", {"v": same(2)}, step=2)  # frames 0 and 2
    pred_json, pred_dir = write_videos(tmp_path / "pred", {"v": same(3), "extra": same(1)})  # frames 0, 1, 2
    report = evaluate_video(gt_json, gt_dir, pred_json, pred_dir, spans=(2,))
    assert report.vpq.per_span[2].n_images == 1 and report.vpq.all == 1.0
    assert report.consistency.n_frames == 3 and report.consistency.n_videos == 1
    assert report.notes == (
        "prediction videos not in the ground truth are ignored: 'extra'",
        "1 prediction frame(s) have no ground truth: they count only for the temporal consistency",
    )


# ---------------------------------------------------------------------------------------------
# Temporal consistency
# ---------------------------------------------------------------------------------------------


def _moving_person() -> list[Frame]:
    """Person 11 moves (4 px, then 6 px overlapping 4, then 4 px elsewhere); car 12 skips frame 1;
    road 40 (row 3) is still; the rest is void."""
    frames = []
    for person_cols, car in (((0, 2), True), ((0, 3), False), ((4, 6), True)):
        ids = np.zeros((4, 6), dtype=np.int64)
        ids[3, :] = 40
        if car:
            ids[0, 0:2] = 12
        ids[1:3, person_cols[0] : person_cols[1]] = 11
        frames.append((ids, CATS))
    return frames


def test_consistency_reports_low_iou_between_consecutive_frames(tmp_path):
    json_path, png_dir = write_videos(tmp_path, {7: _moving_person()})
    report = check_temporal_consistency(json_path, png_dir)
    # person 0->1: inter 4, union 4 + 6 - 4 = 6 -> 2/3; 1->2: no overlap -> 0 (an issue below 0.5)
    assert [(i.video_id, i.track_id, i.previous_frame_index, i.frame_index, i.iou) for i in report.issues] == [
        (7, 11, 1, 2, 0.0)
    ]
    tracks = {t.track_id: t for t in report.tracks}
    assert (tracks[11].n_frames, tracks[11].n_pairs, tracks[11].min_iou) == (3, 2, 0.0)
    assert tracks[11].mean_iou == pytest.approx(1 / 3, abs=1e-15)  # (2/3 + 0) / 2
    assert (tracks[12].n_frames, tracks[12].n_pairs, tracks[12].mean_iou) == (2, 0, None)  # no consecutive pair
    assert (tracks[40].n_pairs, tracks[40].mean_iou, tracks[40].category_ids) == (2, 1.0, (ROAD,))
    assert (report.n_videos, report.n_frames, report.class_changes) == (1, 3, ())
    strict = check_temporal_consistency(json_path, png_dir, threshold=0.7)
    assert [(i.frame_index, round(i.iou, 12)) for i in strict.issues] == [(1, round(2 / 3, 12)), (2, 0.0)]
    text = report.format_table()
    assert text.splitlines()[0] == (
        "temporal consistency: 3 segment ids in 1 video(s), 3 frame(s); 1 consecutive-frame IoU(s) below 50.0%, "
        "0 class change(s)"
    )
    assert report.to_dict()["issues"] == [
        {"video_id": 7, "track_id": 11, "category_id": PERSON, "previous_frame_index": 1, "frame_index": 2, "iou": 0.0}
    ]


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "0.5", True])
def test_consistency_refuses_a_bad_threshold(tmp_path, threshold):
    json_path, png_dir = write_videos(tmp_path, {"v": same(1)})
    with pytest.raises(EvaluationError, match=r"threshold must be a number in \[0, 1\]"):
        check_temporal_consistency(json_path, png_dir, threshold=threshold)


def test_consistency_refuses_frames_of_different_sizes(tmp_path):
    small = np.full((2, 6), 40, dtype=np.int64)
    json_path, png_dir = write_videos(tmp_path, {"v": [(scene(), CATS), (small, CATS)]})
    with pytest.raises(EvaluationError, match=r"frame 1 \(v_001.png\) is 6x2 \(WxH\) but the previous frame 0 is 6x4"):
        check_temporal_consistency(json_path, png_dir)


# ---------------------------------------------------------------------------------------------
# Reader and pairing errors
# ---------------------------------------------------------------------------------------------


def _edit_json(json_path: Path, edit) -> None:
    data = json.loads(json_path.read_text())
    edit(data)
    json_path.write_text(json.dumps(data))


def test_reader_orders_frames_and_streams_them(tmp_path):
    json_path, png_dir = write_videos(tmp_path, {"b": same(2), 3: same(1)}, step=5)
    _edit_json(json_path, lambda d: d["images"].reverse())
    dataset = read_video_panoptic(json_path, png_dir, role="ground-truth")
    assert list(dataset.videos) == [3, "b"]  # order of first image (reversed list)
    assert [r.frame_index for r in dataset.videos["b"]] == [0, 5]
    assert (dataset.n_frames, dataset.unannotated, set(dataset.categories)) == (3, 0, {1, 2, 3, 4})
    frames = list(dataset.frames("b"))
    assert [f.record.file_name for f in frames] == ["b_000.png", "b_001.png"]
    assert frames[1].ids.dtype == np.int64 and frames[1].ids.tolist() == scene().tolist()
    with pytest.raises(EvaluationError, match=r"has no video 'c'; its videos are 3, 'b'"):
        next(dataset.frames("c"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["images"][0].pop("video_id"), r"images\[0\] has no 'video_id': every image"),
        (lambda d: d["images"][1].pop("frame_index"), r"images\[1\] has no 'frame_index'"),
        (
            lambda d: d["images"][1].update(frame_index=0),
            r"video 'v' has two images with frame_index 0 \(images\[0\] and images\[1\]\)",
        ),
        (lambda d: d["images"][0].update(video_id=[1]), r"'video_id' must be a string or an integer, got \[1\]"),
        (lambda d: d["images"][1].update(frame_index="1"), r"'frame_index' must be an integer, got '1'"),
        (lambda d: d.pop("images"), r"has no 'images' list: a video panoptic JSON lists every frame"),
        (
            lambda d: d["annotations"][0].update(image_id="nope"),
            r"annotations\[0\] has image_id 'nope', which is not the id of an entry of 'images'",
        ),
        (
            lambda d: d["annotations"].append(dict(d["annotations"][0])),
            r"annotations\[2\]: image_id 'v-0' already has an annotation \(annotations\[0\]\)",
        ),
        (
            lambda d: d["annotations"][1].update(file_name="gone.png"),
            r"PNG .*gone.png does not exist: every annotation",
        ),
        (
            lambda d: (
                d["images"].append({"id": "x", "video_id": "1", "frame_index": 0})
                or d["images"].append({"id": "y", "video_id": 1, "frame_index": 0})
            ),
            r"video ids '1' and 1 differ only by type",
        ),
    ],
)
def test_reader_errors_name_the_problem(tmp_path, edit, message):
    json_path, png_dir = write_videos(tmp_path, {"v": same(2)})
    _edit_json(json_path, edit)
    with pytest.raises(EvaluationError, match=message):
        read_video_panoptic(json_path, png_dir)


def test_unannotated_images_are_counted_and_skipped(tmp_path):
    json_path, png_dir = write_videos(tmp_path, {"v": same(2)})
    _edit_json(json_path, lambda d: d["images"].append({"id": "z", "video_id": "v", "frame_index": 9}))
    dataset = read_video_panoptic(json_path, png_dir)
    assert (dataset.unannotated, [r.frame_index for r in dataset.videos["v"]]) == (1, [0, 1])


def test_a_ground_truth_frame_without_prediction_is_an_error_naming_it(tmp_path):
    gt_json, gt_dir = write_videos(tmp_path / "gt", {"v": same(3)})
    pred_json, pred_dir = write_videos(tmp_path / "pred", {"v": same(2)})
    with pytest.raises(
        EvaluationError,
        match=r"no prediction for ground-truth video 'v' frame 2 \(v_002.png\): "
        r".* has no annotated frame with frame_index 2 in video 'v'",
    ):
        evaluate_video(gt_json, gt_dir, pred_json, pred_dir)


def test_a_ground_truth_video_without_prediction_is_an_error(tmp_path):
    gt_json, gt_dir = write_videos(tmp_path / "gt", {1: same(1)})
    pred_json, pred_dir = write_videos(tmp_path / "pred", {"1": same(1)})
    with pytest.raises(EvaluationError, match=r"the ground truth's video_id is 1 \(int\) and .* has '1' \(str\)"):
        evaluate_video(gt_json, gt_dir, pred_json, pred_dir)
    other_json, other_dir = write_videos(tmp_path / "other", {"w": same(1)})
    with pytest.raises(
        EvaluationError, match=r"no prediction for the ground-truth video 1 \(1 frame\(s\)\): .* \(its videos: 'w'\)"
    ):
        evaluate_video(gt_json, gt_dir, other_json, other_dir)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spans": ()}, r"spans must be a non-empty sequence"),
        ({"spans": (1, 0)}, r"each VPQ span must be a positive integer number of frames, got 0"),
        ({"spans": (2, 2)}, r"the VPQ spans \(2, 2\) repeat a value"),
        ({"consistency_threshold": 2}, r"threshold must be a number in \[0, 1\]"),
        ({"match_categories": "both"}, r"match_categories must be 'id' or 'name', got 'both'"),
    ],
)
def test_evaluate_video_refuses_bad_options(tmp_path, kwargs, message):
    with pytest.raises(EvaluationError, match=message):
        evaluate(tmp_path, {"v": same(1)}, {"v": same(1)}, **kwargs)


def test_a_prediction_of_another_size_is_refused_with_the_frame_named(tmp_path):
    small = np.full((2, 6), 40, dtype=np.int64)
    with pytest.raises(
        EvaluationError, match=r"video 'v' frame 0 \(gt v_000.png, pred v_000.png\): prediction size 6x2"
    ):
        evaluate(tmp_path, {"v": same(1)}, {"v": [(small, CATS)]})


def test_the_private_pq_helpers_stay_importable(tmp_path):
    json_path, png_dir = write_videos(tmp_path, {"v": same(1)})
    assert len(load_json(json_path, "ground-truth")["annotations"]) == 1
    assert read_id_png(png_dir / "v_000.png", "ground-truth", "frame").tolist() == scene().tolist()
