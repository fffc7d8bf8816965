"""The built-in ``sam2-video`` tracker: the real ``sam2`` video predictor (hiera-tiny at random init,
checkpoint written by the test) through the product path, on CPU."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from video_clip import CLASSES, STUFF, ground_truth, write_clip

from ovpanoptic.cli import main
from ovpanoptic.components import ComponentContext
from ovpanoptic.errors import WeightsError
from ovpanoptic.evaluation import rgb_to_id
from ovpanoptic.types import TrackMasks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip2x"), frames=8, scale=2)  # 8 frames of 128 x 96


def test_the_video_predictor_runs_end_to_end_through_segment_video(clip, sam2_tiny_checkpoint, tmp_path, capsys):
    import av

    gt = f'gt_json = "{clip["gt_json"]}"\ngt_dir = "{clip["gt_dir"]}"\nimages_dir = "{clip["frames"]}"\n'
    config = tmp_path / "video.toml"
    config.write_text(
        '[pipeline]\nproposal_generator = "oracle"\nclassifier = "oracle"\nfuser = "detectron2"\ntracker = "sam2-video"\n'
        f'max_side = 0\ndevice = "cpu"\ndevice_profile = "none"\n[proposal_generator.oracle]\n{gt}[classifier.oracle]\n{gt}'
        f'[fuser.detectron2]\nstuff_area_thresh = 0\n[tracker.sam2-video]\nmodel = "{sam2_tiny_checkpoint}"\n'
    )
    out = tmp_path / "out"
    argv = ["segment-video", str(clip["frames"]), "--classes", CLASSES, "--stuff", STUFF, "--config", str(config),
            "--keyframe-every", "4", "--video-id", "clip", "-o", str(out)]
    assert main(argv) == 0
    assert "8 frame(s) of clip segmented (2 keyframes)" in capsys.readouterr().out
    data = json.loads((out / "panoptic.json").read_text())
    assert [(i["frame_index"], i["keyframe"], i["width"], i["height"]) for i in data["images"]] == [
        (t, t in (0, 4), 128, 96) for t in range(8)
    ]
    parts = {p.stem: json.loads(p.read_text()) for p in (out / ".video" / "frames").glob("*.json")}
    assert all("track" in parts[f"{t:06d}"]["timings"] for t in (1, 2, 3, 5, 6, 7))
    maps = [rgb_to_id(np.asarray(Image.open(out / "panoptic" / f"{t:06d}.png").convert("RGB"))) for t in range(8)]
    # Keyframe 0 is the oracle's segmentation, ids renamed; frames 1-3 hold only ids seeded from it
    # (random weights decide the masks, the ids come from the seeds).
    pairs = set(zip(ground_truth(0, 2).ravel().tolist(), maps[0].ravel().tolist()))
    assert len(pairs) == len({g for g, _ in pairs}) == len({p for _, p in pairs}) == 5
    seeded = set(np.unique(maps[0]).tolist())
    for t in (1, 2, 3):
        assert set(np.unique(maps[t]).tolist()) - {0} <= seeded
    for a in data["annotations"]:
        ids = set(np.unique(maps[a["image_id"]]).tolist()) - {0}
        assert {s["id"] for s in a["segments_info"]} == ids
    rows = list(csv.DictReader((out / "tracks.csv").open()))
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), key=int) and {"wall", "floor"} <= {r["class"] for r in rows}
    with av.open(str(out / "overlay.mp4")) as container:
        assert len(list(container.decode(video=0))) == 8


def test_no_inference_mode_or_autocast_leaks_to_the_caller(sam2_tiny_checkpoint):
    import torch

    from ovpanoptic.builtins.trackers import Sam2VideoConfig, Sam2VideoTracker

    tracker = Sam2VideoTracker(Sam2VideoConfig(model=str(sam2_tiny_checkpoint), precision="bfloat16"), ComponentContext(device="cpu"))
    frames = [np.full((48, 64, 3), 40 * t, np.uint8) for t in range(3)]
    masks = np.zeros((2, 48, 64), bool)
    masks[0, 4:20, 4:20] = True
    masks[1, 30:46, 30:60] = True
    seen = []
    for item in tracker.track(frames, TrackMasks(np.array([5, 9], np.int64), masks)):
        seen.append((item.ids.tolist(), item.masks.shape, torch.is_inference_mode_enabled(), torch.is_autocast_enabled("cpu")))
    assert seen == [([5, 9], (2, 48, 64), False, False)] * 2


def test_a_missing_checkpoint_names_the_fix(tmp_path):
    from ovpanoptic.builtins.trackers import Sam2VideoConfig, Sam2VideoTracker

    with pytest.raises(WeightsError, match=r"SAM 2 checkpoint not found: .*nope.pt does not exist"):
        Sam2VideoTracker(Sam2VideoConfig(model=str(tmp_path / "nope.pt")), ComponentContext(device="cpu"))
    with pytest.raises(ValueError, match="jpeg_quality must be an integer in 1..100"):
        Sam2VideoConfig(jpeg_quality=0)
    with pytest.raises(ValueError, match="image_size must be 0 .* or a multiple of 64 in 256..1024, got 500"):
        Sam2VideoConfig(image_size=500)


def test_a_smaller_image_size_builds_the_predictor_at_that_size(sam2_tiny_checkpoint):
    from ovpanoptic.builtins.trackers import Sam2VideoConfig, Sam2VideoTracker

    tracker = Sam2VideoTracker(Sam2VideoConfig(model=str(sam2_tiny_checkpoint), image_size=256), ComponentContext(device="cpu"))
    assert tracker.loader.get().image_size == 256
    masks = np.zeros((1, 48, 64), bool)
    masks[0, 10:30, 10:30] = True
    frames = [np.full((48, 64, 3), 60 * t, np.uint8) for t in range(2)]
    (item,) = list(tracker.track(frames, TrackMasks(np.array([3], np.int64), masks)))
    assert item.ids.tolist() == [3] and item.masks.shape == (1, 48, 64)
