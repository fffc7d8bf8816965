"""The ``flow`` tracker (issue 26): DIS optical flow carries every object at once, on a camera-motion
clip with ground truth (``motion_clip.py``); VPQ / STQ of each tracker with oracle keyframes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import motion_clip
from test_video import oracle_pipeline

from ovpanoptic.builtins.trackers import FlowConfig, FlowTracker
from ovpanoptic.evaluation.video import evaluate_video
from ovpanoptic.types import TrackMasks
from ovpanoptic.video import TrackingOptions, open_frames, segment_video
from ovpanoptic.video.output import VideoOutput

pytestmark = pytest.mark.skipif(not motion_clip.available(), reason="the COCO fixture photos are not here")


def test_flow_is_registered_as_the_default_tracker_and_checks_its_options():
    from ovpanoptic.config import Config

    assert Config.from_dict({}).pipeline.tracker == "flow"
    with pytest.raises(ValueError, match="preset must be one of ultrafast, fast, medium, got 'slow'"):
        FlowConfig(preset="slow")
    with pytest.raises(ValueError, match="max_side must be 0 .* or an integer >= 32, got 16"):
        FlowConfig(max_side=16)


def test_flow_carries_every_object_of_a_panning_zooming_clip():
    """Seeds: the ground truth of frame 0 (10 people, a ball, 4 pasted objects moving across each
    other); after 10 frames of camera pan and zoom the flow tracker's masks still cover them."""
    data = list(itertools.islice(motion_clip.render(60, 4), 11))
    gt0, labels = data[0][1], data[0][2]
    things = [k for k, name in labels.items() if name in ("person", "sports ball") or k >= motion_clip.PASTED_BASE]
    seeds = TrackMasks(np.asarray(things, np.int64), np.stack([gt0 == k for k in things]))
    out = list(FlowTracker(FlowConfig()).track([d[0] for d in data], seeds))
    assert len(out) == 10 and all(m.ids.tolist() == things for m in out)
    last, gt = out[-1], data[10][1]
    ious = [float((last.masks[i] & (gt == k)).sum() / (last.masks[i] | (gt == k)).sum()) for i, k in enumerate(things)]
    held = [float(((gt0 == k) & (gt == k)).sum() / ((gt0 == k) | (gt == k)).sum()) for k in things]
    assert np.mean(ious) >= 0.75 > np.mean(held) + 0.35  # holding the keyframe's masks: below 0.4
    assert min(ious[-4:]) >= 0.8  # the pasted objects, which move across each other


def test_flow_brings_an_object_the_frame_edge_cuts_into_view_as_the_camera_pans():
    """The keyframe (320 x 120) sees 30 px of an object the right edge cuts (world x 290..); the
    camera pans 4 px a frame to the right, so after 5 frames the object covers frame x 270..319.
    Its labels are continued past the edge (8 % of 320 = 26 px): the carried mask covers what came
    into view (IoU 0.6 without)."""
    import cv2

    rng = np.random.default_rng(3)
    world = cv2.GaussianBlur((rng.random((120, 420, 3)) * 255).astype(np.uint8), (5, 5), 0)
    frames = [np.ascontiguousarray(world[:, 4 * t : 4 * t + 320]) for t in range(6)]
    seed = np.zeros((120, 320), bool)
    seed[30:90, 290:] = True
    out = list(FlowTracker(FlowConfig()).track(frames, TrackMasks(np.array([7], np.int64), seed[None])))
    truth = np.zeros_like(seed)
    truth[30:90, 270:] = True
    mask = out[-1].masks[0]
    assert (mask & truth).sum() / (mask | truth).sum() >= 0.95


def run_tracker(clip, tracker: str, outdir, bidirectional=None):
    pipe = oracle_pipeline(clip, tracker=tracker)
    vocab = pipe.vocabulary(clip["classes"], clip["stuff"])
    source = open_frames(clip["frames"], name="motion")
    output = VideoOutput(outdir, {"tracker": tracker})
    book = None
    for item in segment_video(pipe, source, vocab, TrackingOptions(keyframe_every=10, bidirectional=bidirectional)):
        output.write(item)
        book = item.book
    output.finish(book, source, overlay=False)
    output.close()
    return evaluate_video(clip["gt_json"], clip["gt_dir"], outdir / "panoptic.json", outdir / "panoptic")


def test_vpq_and_stq_of_each_tracker_on_the_camera_motion_clip(tmp_path):
    """60 frames, 640 x 360, oracle keyframes every 10 frames. A perfect tracker (the ground truth's
    own masks between keyframes) against ``flow`` and ``hold``, each with its default
    ``bidirectional`` (on for the perfect tracker and ``flow``, off for ``hold``). Stuff is held from
    the keyframes for all three (so even the perfect tracker loses some stuff quality as the camera
    moves; run both ways, the frames nearer the next keyframe hold its stuff)."""
    clip = motion_clip.write_motion_clip(tmp_path / "clip", frames=60)
    scores = {}
    for tracker in ("ground-truth", "flow", "hold"):
        report = run_tracker(clip, tracker, tmp_path / tracker)
        scores[tracker] = (report.vpq.all, report.vpq.things, report.stq.overall.stq)
    # (VPQ all, VPQ things, STQ); measured: 0.909 / 0.996 / 0.926, 0.868 / 0.943 / 0.879, 0.162 / 0.079 / 0.151.
    assert scores["ground-truth"] == pytest.approx((0.909, 0.996, 0.926), abs=0.005)
    assert scores["flow"] == pytest.approx((0.868, 0.943, 0.879), abs=0.005)
    assert scores["hold"] == pytest.approx((0.161, 0.077, 0.155), abs=0.01)
    # Met: the goal of flow within 0.05 VPQ of the perfect tracker (0.042). The gap was 0.116;
    # robust motion fits and the keyframe's labels continued past the frame's edges made it 0.091;
    # layers (every motion refined directly on the images, a mostly hidden layer coasting on its
    # last motion, uncovered pixels given to the nearby layer whose motion their flow follows) made
    # it 0.069 (forward only: 0.892 against 0.823). Bidirectional propagation (the tracker also run
    # backward from the next keyframe, fused per pixel: a thing over held stuff, else the nearer
    # keyframe) gives what a forward pass cannot know, per class (perfect, flow forward only -> flow
    # both ways): car 1.00, 0.79 -> 0.90 (it goes wholly behind the dog and comes out on the far side
    # with a part no earlier keyframe saw), dog 1.00, 0.90 -> 0.95 and horse 1.00, 0.94 -> 0.96
    # (parts hidden on a keyframe, uncovered as the others move away), person 0.98, 0.90 -> 0.93
    # (still people uncovered by the pasted objects: they move like the grass behind them), grass
    # 0.96, 0.87 -> 0.92. Fusing by the nearer keyframe alone (no thing over stuff) gave 0.857.
    assert scores["ground-truth"][0] - scores["flow"][0] == pytest.approx(0.042, abs=0.005)


def test_flow_forward_only_on_the_camera_motion_clip(tmp_path):
    """``bidirectional=False``: the forward pass alone, as before bidirectional propagation
    (perfect tracker forward only: 0.892 / 0.997 / 0.916)."""
    clip = motion_clip.write_motion_clip(tmp_path / "clip", frames=60)
    report = run_tracker(clip, "flow", tmp_path / "flow", bidirectional=False)
    assert (report.vpq.all, report.vpq.things, report.stq.overall.stq) == pytest.approx((0.823, 0.909, 0.837), abs=0.005)
