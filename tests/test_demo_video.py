"""The demo's Video tab handler (called directly, like the page calls it)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ovpanoptic.config import Config
from ovpanoptic.errors import Cancelled, ComponentNotFoundError, InputError
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import FakeComponentsPlugin, registry_with

pytest.importorskip("gradio")

from ovpanoptic.demo import DemoApp  # noqa: E402
from ovpanoptic.demo import handlers  # noqa: E402
from ovpanoptic.demo.state import RunRequest  # noqa: E402
from ovpanoptic.demo.video import MAX_DEMO_FRAMES, segment_clip  # noqa: E402

import video_clip  # noqa: E402


def write_mp4(path: Path, frames: int = 6) -> Path:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)  # H.264: what browsers play
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for t in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(video_clip.frame(t), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def app():
    config = Config.from_dict(
        {"pipeline": {"proposal_generator": "tiles", "classifier": "cycling", "fuser": "paint", "exporters": [], "tracker": "hold", "device": "cpu"}}
    )
    demo_app = DemoApp(Pipeline(config, registry=registry_with(FakeComponentsPlugin())))
    yield demo_app
    demo_app.close()


def test_a_clip_gets_an_overlay_video_a_tracks_table_and_a_zip(app, tmp_path):
    s = app.session("v")
    segment_clip(app, s, str(write_mp4(tmp_path / "clip.mp4")), RunRequest("car, street lamp", "sky, road"), keyframe_every=2, max_frames=5)
    clip = s.video
    assert clip is not None and s.video_error == ""
    # The tiles generator cuts every frame into the same 4 tiles: 2 things and 2 stuff, kept over the 5 frames.
    assert clip.rows == (
        (1, "car", "thing", 0, 4, 5, 0.9, ""),
        (2, "street lamp", "thing", 0, 4, 5, 0.9, ""),
        (3, "sky", "stuff", 0, 4, 5, 0.9, ""),
        (4, "road", "stuff", 0, 4, 5, 0.9, ""),
    )
    assert clip.summary.startswith("**5 frames** of clip (3 keyframes, every 2) · 2 thing tracks, 2 stuff · tracker hold · ")
    assert clip.overlay.is_file() and clip.overlay.parent.parent == app.session_dir(s)
    with zipfile.ZipFile(clip.download) as zf:
        names = set(zf.namelist())
        data = json.loads(zf.read("panoptic.json"))
    assert {"overlay.mp4", "tracks.csv", "tracks.json", "panoptic/000004.png", "clip/000004.jpg"} <= names
    assert not any(".video/" in n for n in names)
    assert [(i["frame_index"], i["keyframe"]) for i in data["images"]] == [(0, True), (1, False), (2, True), (3, False), (4, True)]


@pytest.mark.parametrize(
    ("video", "kwargs", "error", "message"),
    [
        (None, {}, InputError, "No video: upload a short clip"),
        ("not-a-video", {}, InputError, "not a video FFmpeg can read"),
        ("clip", {"max_frames": MAX_DEMO_FRAMES + 1}, InputError, rf"Frames \(at most {MAX_DEMO_FRAMES} in the demo.*\) must be a whole number"),
        ("clip", {"keyframe_every": 0}, InputError, "Keyframe every K frames must be a whole number from 1 to 300, got 0"),
        ("clip", {"tracker": "sam3"}, ComponentNotFoundError, "tracker 'sam3' is not provided"),
    ],
)
def test_bad_clips_and_options_are_refused_and_keep_the_last_result(app, tmp_path, video, kwargs, error, message):
    s = app.session("v")
    clip = str(write_mp4(tmp_path / "clip.mp4", 3))
    segment_clip(app, s, clip, RunRequest("car", "sky"), keyframe_every=2, max_frames=3)
    before = s.video
    if video == "not-a-video":
        (tmp_path / "x.mp4").write_bytes(b"\x00" * 64)
        video = str(tmp_path / "x.mp4")
    elif video == "clip":
        video = clip
    with pytest.raises(error, match=message):
        segment_clip(app, s, video, RunRequest("car", "sky"), **{"keyframe_every": 2, "max_frames": 3, **kwargs})
    assert s.video is before and not s.running


def test_cancel_stops_a_clip_at_its_next_frame(app, tmp_path):
    s = app.session("v")
    handlers.request_run(s)
    calls = []

    def progress(message, done, total):
        calls.append(message)
        if message == "frame 2/4":  # frame 2 is done
            handlers.cancel(s)

    with pytest.raises(Cancelled, match=r"Cancelled [\d.]+ s after you pressed Cancel \([\d.]+ s into the run, with 2 of 4 frames done\); nothing was segmented"):
        segment_clip(app, s, str(write_mp4(tmp_path / "clip.mp4", 4)), RunRequest("car", "sky"), keyframe_every=1, max_frames=4,
                     progress=progress, fresh=False)
    assert s.video is None and "frame 3/4" not in calls


@pytest.mark.parametrize(("field", "value"), [("max_frames", None), ("max_frames", "abc"), ("max_frames", float("nan")), ("keyframe_every", 1.5), ("keyframe_every", float("inf"))])
def test_slider_values_that_are_not_whole_numbers_are_refused(app, tmp_path, field, value):
    s = app.session("v")
    kwargs = {"keyframe_every": 2, "max_frames": 3, field: value}
    with pytest.raises(InputError, match="must be a whole number from 1 to"):
        segment_clip(app, s, str(write_mp4(tmp_path / "clip.mp4", 3)), RunRequest("car", "sky"), **kwargs)


def test_a_new_clip_replaces_the_previous_clips_files(app, tmp_path):
    s = app.session("v")
    segment_clip(app, s, str(write_mp4(tmp_path / "a.mp4", 3)), RunRequest("car", "sky"), keyframe_every=2, max_frames=3)
    first = s.video
    segment_clip(app, s, str(write_mp4(tmp_path / "b.mp4", 4)), RunRequest("car", "sky"), keyframe_every=2, max_frames=4)
    assert not first.download.exists() and s.video.download.exists()
    assert sorted(p.name for p in app.session_dir(s).glob("video-*")) == sorted([s.video.download.name, s.video.download.stem])


# -- issue 29: the Video tab's weights, progress and zip ---------------------------------------


def test_every_report_of_a_clip_says_which_frame_it_is_on(app, tmp_path):
    s = app.session("v")
    calls = []
    segment_clip(app, s, str(write_mp4(tmp_path / "clip.mp4", 5)), RunRequest("car", "sky"), keyframe_every=2, max_frames=5,
                 progress=lambda m, d, t: calls.append((m, d, t)))
    running = calls[calls.index(("starting", 0, 0)) + 1:-1]  # between the start and the overlay video
    assert running[0] == ("frame 1/5 · proposals", 0, 5)
    assert all(m.startswith("frame ") and t == 5 for m, d, t in running), running
    assert ("frame 3/5 · classification", 2, 5) in running and ("frame 5/5", 5, 5) in running
    assert calls[-1] == ("writing the overlay video", 5, 5)


def test_the_video_zip_holds_every_file_its_panoptic_json_names_readable_by_all(app, tmp_path):
    s = app.session("v")
    segment_clip(app, s, str(write_mp4(tmp_path / "clip.mp4", 3)), RunRequest("car", "sky"), keyframe_every=2, max_frames=3)
    with zipfile.ZipFile(s.video.download) as zf:
        names = set(zf.namelist())
        data = json.loads(zf.read("panoptic.json"))
        modes = {info.filename: (info.external_attr >> 16) & 0o777 for info in zf.infolist()}
    assert [i["file_name"] for i in data["images"]] == ["clip/000000.jpg", "clip/000001.jpg", "clip/000002.jpg"]
    assert {i["file_name"] for i in data["images"]} <= names
    assert {f"panoptic/{a['file_name']}" for a in data["annotations"]} <= names
    assert {"overlay.mp4", "tracks.csv", "tracks.json"} <= names
    assert set(modes.values()) == {0o644}, modes


def sam2_pipeline(tmp_path, **generator):
    config = Config.from_dict(
        {
            "pipeline": {"proposal_generator": "sam2", "classifier": "cycling", "fuser": "paint", "exporters": [],
                         "tracker": "sam2-video", "device": "cpu"},
            "proposal_generator": {"sam2": generator},
        }
    )
    return DemoApp(Pipeline(config, registry=registry_with(FakeComponentsPlugin())))


def test_the_video_tab_uses_the_sam2_checkpoint_the_demo_was_given(tmp_path):
    app = sam2_pipeline(tmp_path, model=str(tmp_path / "sam2.1_hiera_tiny.pt"))
    try:
        pipe = app.video_pipeline("", "sam2-video")
        assert pipe.component_config("tracker", "sam2-video").model == str(tmp_path / "sam2.1_hiera_tiny.pt")
        assert app.video_pipeline("", "hold") is app.pipeline_for("")  # a tracker without weights: the preset's pipeline
    finally:
        app.close()


def test_missing_tracker_weights_name_the_trackers_own_setting(tmp_path, monkeypatch):
    pytest.importorskip("sam2")
    from ovpanoptic.demo.layout import page_message
    from ovpanoptic.errors import WeightsError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = Config.from_dict(
        {"pipeline": {"proposal_generator": "tiles", "classifier": "cycling", "fuser": "paint", "exporters": [],
                      "tracker": "sam2-video", "device": "cpu"}}
    )
    app = DemoApp(Pipeline(config, registry=registry_with(FakeComponentsPlugin())))
    try:
        s = app.session("v")
        with pytest.raises(WeightsError) as caught:
            segment_clip(app, s, str(write_mp4(tmp_path / "clip.mp4", 3)), RunRequest("car", "sky"), keyframe_every=2, max_frames=3)
        message = page_message(caught.value)
        assert message.endswith(
            "restart the demo with it: --set \"tracker.sam2-video.model='/path/to/checkpoint.pt'\" "
            "(`ovpanoptic presets interactive` lists the options)"
        ), message
        assert "proposal_generator.sam2.model" not in message and s.video is None
    finally:
        app.close()
