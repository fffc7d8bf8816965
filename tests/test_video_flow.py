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


def run_tracker(clip, tracker: str, outdir):
    pipe = oracle_pipeline(clip, tracker=tracker)
    vocab = pipe.vocabulary(clip["classes"], clip["stuff"])
    source = open_frames(clip["frames"], name="motion")
    output = VideoOutput(outdir, {"tracker": tracker})
    book = None
    for item in segment_video(pipe, source, vocab, TrackingOptions(keyframe_every=10)):
        output.write(item)
        book = item.book
    output.finish(book, source, overlay=False)
    output.close()
    return evaluate_video(clip["gt_json"], clip["gt_dir"], outdir / "panoptic.json", outdir / "panoptic")


def test_vpq_and_stq_of_each_tracker_on_the_camera_motion_clip(tmp_path):
    """60 frames, 640 x 360, oracle keyframes every 10 frames. A perfect tracker (the ground truth's
    own masks between keyframes) against ``flow`` and ``hold``. Stuff is held from the keyframe
    for all three (so even the perfect tracker loses some stuff quality as the camera moves)."""
    clip = motion_clip.write_motion_clip(tmp_path / "clip", frames=60)
    scores = {}
    for tracker in ("ground-truth", "flow", "hold"):
        report = run_tracker(clip, tracker, tmp_path / tracker)
        scores[tracker] = (report.vpq.all, report.vpq.things, report.stq.overall.stq)
    # (VPQ all, VPQ things, STQ); measured: 0.892 / 0.997 / 0.916, 0.776 / 0.844 / 0.797, 0.161 / 0.077 / 0.155.
    assert scores["ground-truth"] == pytest.approx((0.892, 0.997, 0.916), abs=0.005)
    assert scores["flow"] == pytest.approx((0.776, 0.844, 0.797), abs=0.01)
    assert scores["hold"] == pytest.approx((0.161, 0.077, 0.155), abs=0.01)
    # Not met: the goal of flow within 0.05 VPQ of the perfect tracker (the gap is 0.116):
    # parts of objects the keyframe did not see (coming out from behind another) appear only at the
    # next keyframe.
    assert scores["ground-truth"][0] - scores["flow"][0] == pytest.approx(0.116, abs=0.01)
