"""The demo workbench through its handlers (plain functions of app and session), the page's
outputs, the download, the command line, and a run on the real SAM 2 generator with a
random-init checkpoint. The browser tests are in test_demo_browser.py.

Most tests use the deterministic fake components of ``ovpanoptic.testing`` (``tiles`` proposes a
2x2 grid and answers prompts with tiles and boxes, ``cycling`` gives proposal i the class in
column i % C with probability 0.9, ``paint`` fuses in order), so the expected segments are known
exactly.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovpanoptic.cli import main
from ovpanoptic.config import Config
from ovpanoptic.errors import Cancelled, ConfigError, ImageReadError, InputError, VocabularyError
from ovpanoptic.evaluation import rgb_to_id
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import FakeComponentsPlugin, make_shapes_image, registry_with

gr = pytest.importorskip("gradio")

from ovpanoptic.demo import (  # noqa: E402
    CUSTOM_VOCABULARY,
    DemoApp,
    DemoSettings,
    build_demo,
    check_exposure,
    parse_auth,
    read_auth_file,
)
from ovpanoptic.demo import handlers  # noqa: E402
from ovpanoptic.demo.layout import page  # noqa: E402
from ovpanoptic.demo.render import segment_labels  # noqa: E402
from ovpanoptic.demo.state import RunRequest  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "demo" / "examples"
STREET = EXAMPLES / "street.jpg"
ROOM = EXAMPLES / "room.jpg"


def fake_pipeline(*plugins: object, tables: dict | None = None, **pipeline: object) -> Pipeline:
    settings = {"proposal_generator": "tiles", "classifier": "cycling", "fuser": "paint", "exporters": [], "device": "cpu"}
    settings.update(pipeline)
    config = Config.from_dict({"pipeline": settings, **(tables or {})})
    return Pipeline(config, registry=registry_with(FakeComponentsPlugin(), *plugins))


@pytest.fixture
def app():
    demo_app = DemoApp(fake_pipeline())
    yield demo_app
    demo_app.close()


def run(app: DemoApp, session, image=STREET, classes="car, street lamp", stuff="sky, road", **request):
    handlers.image_changed(app, session, str(image) if isinstance(image, Path) else image)
    handlers.segment(app, session, RunRequest(classes, stuff, **request))
    return session.result


def rows_of(app, session) -> list[list]:
    return page(app, session)[5]


# -- running, re-querying, what the page says -------------------------------------------------


def test_importing_the_demo_loads_nothing():
    code = "import sys, ovpanoptic.demo, ovpanoptic.demo_app; print('gradio' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_run_fills_the_page(app):
    s = app.session("a")
    result = run(app, s)
    assert [(seg.id, segment_labels(result)[seg.id], seg.area) for seg in result.segments] == [
        (1, "car #1", 76800), (2, "street lamp #1", 76800), (3, "sky", 76800), (4, "road", 76800)
    ]
    error, status, view, shown, klass, table, timings, *_ = page(app, s)
    assert error["visible"] is False
    assert status == "**4 segments** (2 things, 2 stuff) · 640 x 480 px · street.jpg · 4 classes"
    assert view.shape == (480, 640, 3) and view.dtype == np.uint8
    assert shown["choices"] == ["car", "street lamp", "sky", "road"] and shown["value"] == shown["choices"]
    assert klass["choices"] == ["car", "street lamp", "sky", "road"]
    assert table[0] == ["", 1, "car #1", "car", "thing", 0.9, "25.00 %"]
    assert "- **4 proposals** from tiles" in timings and "- **4 segments** after fusion by paint" in timings
    assert "| proposals | 0.0" in timings


def test_one_segment_is_singular(app):
    s = app.session("a")
    run(app, s, classes="", stuff="sky")
    assert page(app, s)[1].startswith("**1 segment** (0 things, 1 stuff)")


def test_requery_answers_from_the_cache_and_says_so_only_to_the_session_that_ran_it(app):
    a, b = app.session("a"), app.session("b")
    run(app, a)
    generator = app.pipeline_for().component("proposal_generator")
    assert generator.calls == 1
    run(app, a, classes="bus, lamp post", stuff="")
    assert generator.calls == 1 and a.cached
    assert "| proposals | cached |" in page(app, a)[6] and "Same image as before" in page(app, a)[6]
    assert [r[2] for r in rows_of(app, a)] == ["bus #1", "lamp post #1", "bus #2", "lamp post #2"]
    # Another browser session with the same image reuses the cache but is not told about it.
    run(app, b)
    assert generator.calls == 1 and not b.cached and "Same image as before" not in page(app, b)[6]


def test_a_trailing_new_line_and_trailing_commas_are_not_classes(app):
    s = app.session("a")
    run(app, s, classes="car, street lamp,\n", stuff="sky, road\n\n")
    assert [r[3] for r in rows_of(app, s)] == ["car", "street lamp", "sky", "road"]


def test_an_empty_class_in_the_middle_says_what_the_parser_read(app):
    s = app.session("a")
    handlers.image_changed(app, s, str(STREET))
    from ovpanoptic.demo.layout import _guard

    _guard(s, lambda: handlers.segment(app, s, RunRequest("car,,tree\n", "")))
    assert s.error == (
        "class 2 of the Class names box is empty (two commas in a row): the Class names box was read as the "
        "entries 'car' | '' | 'tree'. Remove the extra comma."
    )
    assert page(app, s)[0]["visible"] is True and s.result is None
    _guard(s, lambda: handlers.segment(app, s, RunRequest("car", "")))  # the next action clears it
    assert s.error == "" and page(app, s)[0]["visible"] is False


def test_the_boxes_are_what_runs_a_named_vocabulary_only_while_they_hold_its_names(app):
    from ovpanoptic.vocabulary import format_class_lists

    pipe = app.pipeline_for()
    lists = format_class_lists(pipe.vocabulary(name="indoor-navigation"))
    named = app.vocabulary_for(pipe, RunRequest(lists.classes, lists.stuff, lists.things, "indoor-navigation"))
    assert named.name == "indoor-navigation"
    # An example filled the boxes after the menu was set: the example's names run.
    example = app.vocabulary_for(pipe, RunRequest("car, tree, street lamp", "sky, road", "", "indoor-navigation"))
    assert example.name == "custom" and example.names == ("car", "tree", "street lamp", "sky", "road")
    # An edited named vocabulary runs as edited, thing/stuff flags included.
    edited = app.vocabulary_for(pipe, RunRequest(lists.classes + ", pallet", lists.stuff, lists.things, "indoor-navigation"))
    assert edited.names[-1] == "pallet" and [c.isthing for c in edited][:-1] == [c.isthing for c in named]


def test_the_menu_says_how_many_names_and_prompts_a_vocabulary_encodes():
    app = DemoApp(fake_pipeline(tables={"classifier": {"cycling": {}}}))
    info = app.vocabulary_info("indoor-navigation")
    assert "7 classes (3 things, 4 stuff) with 38 names" in info and "Loaded into the boxes" in info
    app.close()


def test_progress_names_each_stage_and_cancel_keeps_the_old_result(app):
    s = app.session("a")
    first = run(app, s)
    seen = []

    def progress(message, done, total):
        seen.append(message)
        if message.startswith("proposals"):
            handlers.cancel(s)

    handlers.image_changed(app, s, str(ROOM))
    with pytest.raises(Cancelled, match=r"Cancelled [\d.]+ s after you pressed Cancel \(\d+\.\d s into the run, during proposals\); the previous result is kept"):
        handlers.segment(app, s, RunRequest("chair", "floor"), progress)
    assert s.result is first
    assert seen[:3] == ["starting", "loading the classifier to encode 2 class names", seen[2]]
    assert seen[2].startswith("proposals: mask proposals of the image")
    seen.clear()
    handlers.segment(app, s, RunRequest("chair", "floor"), lambda m, d, t: seen.append(m))  # the flag was reset
    assert [m.split(":")[0] for m in seen[2:]] == ["proposals", "proposals", "image features (loads the classifier's weights on first use)", "classification", "fusion"]


# -- zero segments explained, thresholds -----------------------------------------------------


def test_zero_segments_are_explained_and_a_fusion_threshold_refuses_from_the_cache():
    app = DemoApp(fake_pipeline(fuser="maskformer", tables={"fuser": {"maskformer": {"min_class_prob": 0.95}}}))
    s = app.session("a")
    assert [c.key for c in app.tuning_controls()] == [
        "fuser.maskformer.min_class_prob", "fuser.maskformer.object_mask_threshold", "fuser.maskformer.overlap_threshold"
    ]
    result = run(app, s)
    assert result.segments == ()
    explanation = page(app, s)[6]
    assert "- **4 proposals** from tiles" in explanation
    assert "- **0 of 4** reach the class probability 0.95 (best 0.90, median 0.90)" in explanation
    assert "- **0 segments** after fusion by maskformer (min_class_prob 0.95, object_mask_threshold 0.5, overlap_threshold 0.8)" in explanation
    assert "Nothing survived: lower the class probability or the fusion thresholds" in explanation
    generator = app.pipeline_for().component("proposal_generator")
    handlers.retune(app, s, ("fuser.maskformer.min_class_prob=0.5",))
    assert generator.calls == 1 and len(s.result.segments) == 4
    assert "| proposals | cached |" in page(app, s)[6] and "Re-fused from the cache" in s.notice
    assert s.request.tuning == ("fuser.maskformer.min_class_prob=0.5",)
    handlers.undo(app, s)
    assert s.result.segments == ()
    app.close()


def test_a_proposal_setting_waits_for_segment():
    app = DemoApp(fake_pipeline(fuser="maskformer"))
    s = app.session("a")
    run(app, s)
    before = s.result
    handlers.retune(app, s, ("proposal_generator.tiles.rows=3",))
    assert s.result is before and s.notice == "Proposal settings changed: press Segment to recompute the proposals with them."
    app.close()


# -- uploads -------------------------------------------------------------------------------


def test_a_non_image_upload_is_refused_at_once(app, tmp_path):
    s = app.session("a")
    fake = tmp_path / "notes.jpg"
    fake.write_text("not an image")
    with pytest.raises(ImageReadError, match=r"notes\.jpg.*Upload a JPEG, PNG, WebP, BMP or TIFF image\."):
        handlers.image_changed(app, s, {"path": str(fake), "orig_name": "notes.jpg"})
    assert s.image is None


def test_a_new_image_marks_the_result_stale_and_the_same_image_does_not(app):
    s = app.session("a")
    run(app, s)
    handlers.image_changed(app, s, {"path": str(ROOM), "orig_name": "room.jpg"})
    status = page(app, s)[1]
    assert "Not segmented yet: press Segment to segment room.jpg (the result of the previous image is kept: open that image again to go back)." in status
    assert page(app, s)[5] == [] and handlers.download(app, s) is None
    with pytest.raises(InputError, match="The result is stale"):
        handlers.click(app, s, 10, 10, handlers.MODES[0], (480, 640))
    handlers.image_changed(app, s, {"path": str(STREET), "orig_name": "street.jpg"})
    assert s.stale == "" and len(page(app, s)[5]) == 4


def test_huge_images_are_refused_before_decoding(tmp_path):
    app = DemoApp(fake_pipeline(), settings=DemoSettings(max_pixels=100))
    s = app.session("a")
    with pytest.raises(InputError, match="640 x 480 pixels .* the demo accepts up to 0.0001 megapixels"):
        handlers.image_changed(app, s, str(STREET))
    app.close()


# -- corrections -----------------------------------------------------------------------------


def test_click_to_mask_then_add_relabel_merge_delete_undo(app):
    s = app.session("a")
    run(app, s)  # 640x480, shown at 640x480: tiles of 320x240
    display = (480, 640)
    handlers.click(app, s, 100, 100, handlers.MODES[1], display)  # positive point in tile 0 (car #1)
    assert int(s.candidate.sum()) == 76800 and s.points == [(100.5, 100.5, 1)]
    handlers.click(app, s, 5, 5, handlers.MODES[3], display)  # a box replaces the points
    handlers.click(app, s, 14, 24, handlers.MODES[3], display)
    assert s.box == (5.0, 5.0, 15.0, 25.0) and int(s.candidate.sum()) == 200
    handlers.accept(app, s, "pallet")  # a new class, typed: a thing
    assert s.selected == [5] and s.result.segment_by_id(5).area == 200
    assert s.result.category_of(s.result.segment_by_id(5)).name == "pallet"
    assert s.result.segment_by_id(1).area == 76800 - 200 and s.notice == "Added segment 5 (pallet #1, 200 pixels)."
    s.selected = [5]
    handlers.relabel(app, s, "car")
    assert s.result.category_of(s.result.segment_by_id(5)).name == "car"
    handlers.click(app, s, 100, 100, handlers.SELECT_MANY, display)  # select car #1 too (segment 1)
    assert s.selected == [5, 1]
    handlers.merge(app, s)
    assert s.selected == [5] and s.result.segment_by_id(5).area == 76800 and 1 not in {x.id for x in s.result.segments}
    handlers.delete(app, s)
    assert 5 not in {x.id for x in s.result.segments} and int((s.result.panoptic_map == 0).sum()) == 76800
    for expected in ("delete 1 segment", "merge 5, 1", "relabel 1 segment to car", "add pallet #1"):
        handlers.undo(app, s)
        assert s.notice == f"Undone: {expected}."
    assert [x.id for x in s.result.segments] == [1, 2, 3, 4]
    handlers.undo(app, s)
    assert s.notice == "Nothing to undo."


def test_stuff_added_by_prompt_joins_the_class_segment(app):
    s = app.session("a")
    run(app, s)
    handlers.click(app, s, 400, 100, handlers.MODES[1], (480, 640))  # tile 1: street lamp #1
    handlers.accept(app, s, "sky")
    assert s.selected == [3] and s.result.segment_by_id(3).area == 2 * 76800 and 2 not in {x.id for x in s.result.segments}


@pytest.mark.parametrize(
    ("act", "message"),
    [
        (lambda app, s: handlers.accept(app, s, "car"), "No proposed mask: choose a prompt mode"),
        (lambda app, s: handlers.delete(app, s), "Select a segment first"),
        (lambda app, s: handlers.merge(app, s), "Select 2 or more segments first"),
        (lambda app, s: handlers.relabel(app, s, ""), "Select a segment first"),
    ],
)
def test_corrections_without_what_they_need_say_what_to_do(app, act, message):
    s = app.session("a")
    run(app, s)
    with pytest.raises(InputError, match=message):
        act(app, s)


def test_corrections_before_any_run_say_to_segment_first(app):
    s = app.session("a")
    with pytest.raises(InputError, match="No result yet: upload an image, type class names and press Segment first"):
        handlers.click(app, s, 1, 1, handlers.MODES[1], (10, 10))


def test_a_generator_without_prompts_says_so():
    class NoPrompts:
        from ovpanoptic.hookspecs import hookimpl

        @hookimpl
        def register_proposal_generators(self, register):
            from ovpanoptic.types import ProposalSet

            class Plain:
                def __init__(self, config=None, context=None):
                    pass

                def generate(self, image, *, progress=None):
                    return ProposalSet.from_masks(np.ones((1, *image.shape[:2]), bool))

            register("plain", Plain)

    app = DemoApp(fake_pipeline(NoPrompts(), proposal_generator="plain"))
    s = app.session("a")
    run(app, s)
    with pytest.raises(InputError, match="plain"):
        handlers.click(app, s, 10, 10, handlers.MODES[1], (480, 640))
    app.close()


# -- download --------------------------------------------------------------------------------


def test_the_zip_holds_image_labels_overlay_and_table_named_by_image_and_result():
    app = DemoApp(fake_pipeline(exporters=["coco-panoptic"]))
    s = app.session("a")
    run(app, s)
    first = handlers.download(app, s)
    assert first.name.startswith("street-") and len(first.stem) == len("street-") + 10
    with zipfile.ZipFile(first) as zf:
        assert sorted(zf.namelist()) == [
            "cvat/annotations.xml", "cvat/images/street.jpg", "instances.json", "instances_results.json", "label-studio.json",
            "label-studio.xml", "panoptic.json", "panoptic/street.png", "street.jpg", "street.overlay.jpg", "street.segments.csv",
        ]
        (task,) = json.loads(zf.read("label-studio.json"))
        assert task["data"]["image"] == "/data/local-files/?d=street.jpg" and task["predictions"][0]["result"]
        data = json.loads(zf.read("panoptic.json"))
        assert data["images"][0]["file_name"] == "street.jpg"  # the image in the zip
        assert zf.read("street.jpg") == STREET.read_bytes()
        ids = rgb_to_id(np.asarray(Image.open(io.BytesIO(zf.read("panoptic/street.png"))).convert("RGB")))
        table = list(csv.DictReader(io.StringIO(zf.read("street.segments.csv").decode())))
    assert np.array_equal(ids, s.result.panoptic_map)
    assert [(r["id"], r["label"], r["area_px"]) for r in table] == [
        ("1", "car #1", "76800"), ("2", "street lamp #1", "76800"), ("3", "sky", "76800"), ("4", "road", "76800")
    ]
    # A correction is a new result: a new name, and its segment is in the PNG and JSON.
    handlers.click(app, s, 5, 5, handlers.MODES[3], (480, 640))
    handlers.click(app, s, 14, 24, handlers.MODES[3], (480, 640))
    handlers.accept(app, s, "pallet")
    second = handlers.download(app, s)
    assert second != first and second.name.startswith("street-")
    with zipfile.ZipFile(second) as zf:
        data = json.loads(zf.read("panoptic.json"))
        ids = rgb_to_id(np.asarray(Image.open(io.BytesIO(zf.read("panoptic/street.png"))).convert("RGB")))
    info = {seg["id"]: seg for seg in data["annotations"][0]["segments_info"]}
    assert info[5]["area"] == 200 and int((ids == 5).sum()) == 200
    pallet = next(c for c in data["categories"] if c["name"] == "pallet")
    assert info[5]["category_id"] == pallet["id"] and pallet["isthing"] == 1
    app.close()


# -- sessions, server, command line -----------------------------------------------------------


def test_sessions_are_separate_and_bounded_and_empty_ones_go_first():
    app = DemoApp(fake_pipeline(), settings=DemoSettings(max_sessions=2))
    a = app.session("a")
    run(app, a)
    b = app.session("b")
    assert b.result is None and b is not a
    app.session("c")  # over the bound: b (no result) is dropped, not a (someone's work)
    assert app.session("a") is a and set(app._sessions) == {"a", "c"}
    run(app, app.session("c"))
    app.session("d")  # every other session has a result: the least recently used one goes
    assert set(app._sessions) == {"c", "d"}
    app.close()


def test_auth_parsing_and_exposure_rules(tmp_path):
    assert parse_auth("ann:se:cret") == ("ann", "se:cret")
    with pytest.raises(InputError, match="--auth: write USER:PASSWORD"):
        parse_auth("ann")
    path = tmp_path / "users"
    path.write_text("# team\nann:one\n\nbob:two\n")
    assert read_auth_file(path) == [("ann", "one"), ("bob", "two")]
    path.write_text("ann\n")
    with pytest.raises(InputError, match=r"line 1: write USER:PASSWORD"):
        read_auth_file(path)
    check_exposure("127.0.0.1", [], False)
    check_exposure("0.0.0.0", [("a", "b")], False)
    check_exposure("0.0.0.0", [], True)
    with pytest.raises(InputError, match="refusing to serve the demo on 0.0.0.0 without a login"):
        check_exposure("0.0.0.0", [], False)


def test_cli_refuses_an_open_address_without_auth_before_building(capsys):
    assert main(["demo", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve the demo on 0.0.0.0 without a login" in err and "--auth USER:PASSWORD" in err
    assert main(["demo", "--auth", "a:b", "--no-auth"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_cli_demo_reports_a_bad_config_before_serving(capsys):
    assert main(["demo", "--config", "defualt"]) == 2
    err = capsys.readouterr().err
    assert "no preset named 'defualt'. Did you mean 'default'?" in err and "Traceback" not in err


def test_cli_demo_help_lists_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    for option in ("--host", "--port", "--config", "--max-file-size", "--set", "--disable-plugin", "--auth", "--auth-file", "--no-auth"):
        assert option in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_script_serves_on_loopback_with_auth_and_cleans_up_on_sigterm(tmp_path):
    """``python demo/app.py`` (i.e. ``ovpanoptic demo``) serves on 127.0.0.1, asks for a login, and on
    SIGTERM removes its temporary folder (downloads and Gradio's uploads)."""
    import urllib.request

    port = free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(temp)}
    env.pop("GRADIO_TEMP_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "demo" / "app.py"), "--port", str(port), "--auth", "ann:secret"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = json.loads(response.read())
                break
            except urllib.error.HTTPError as exc:  # the login wall answers
                config = {"status": exc.code}
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the demo did not start: {proc.stdout.read() if proc.poll() is not None else 'timeout'}")
                time.sleep(0.5)
        assert config.get("auth_required") is True or config.get("status") == 401, config
        folders = [p.name for p in temp.iterdir() if p.name.startswith("ovpanoptic-demo-")]
        assert len(folders) == 1 and (temp / folders[0] / "gradio").is_dir()
        # The address is printed once the server listens (launch_demo's ready callback).
        announced = ""
        while "ovpanoptic demo:" not in announced and time.monotonic() < deadline:
            announced = proc.stdout.readline()
        assert announced.strip() == f"ovpanoptic demo: http://127.0.0.1:{port}, login required for 1 user (Ctrl+C stops it)"
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert [p.name for p in temp.iterdir() if p.name.startswith("ovpanoptic-demo-")] == []


# -- the real SAM 2 generator on a random-init checkpoint --------------------------------------


@pytest.mark.slow
def test_workbench_with_a_random_init_sam2_checkpoint(sam2_tiny_checkpoint):
    config = Config.from_dict(
        {
            "pipeline": {"proposal_generator": "sam2", "classifier": "cycling", "fuser": "maskformer", "exporters": ["coco-panoptic"], "device": "cpu"},
            "proposal_generator": {
                "sam2": {
                    "model": str(sam2_tiny_checkpoint), "points_per_side": 4, "pred_iou_thresh": 0.0,
                    "stability_score_thresh": 0.0, "box_nms_thresh": 0.9,
                }
            },
        }
    )
    app = DemoApp(Pipeline(config, registry=registry_with(FakeComponentsPlugin())))
    s = app.session("a")
    image = np.array(Image.fromarray(make_shapes_image(96, 128)).resize((160, 120)))
    run(app, s, image=image, classes="red square, blue bar", stuff="wall")
    assert s.timings["proposals"] > 0
    generator = app.pipeline_for().component("proposal_generator")
    calls = []
    original = generator.generate
    generator.generate = lambda *a, **k: calls.append(1) or original(*a, **k)
    handlers.click(app, s, 20, 20, handlers.MODES[3], (120, 160))
    handlers.click(app, s, 60, 50, handlers.MODES[3], (120, 160))
    assert s.candidate is not None and s.candidate.shape == (120, 160) and calls == []
    if s.candidate.any():
        handlers.accept(app, s, "pallet")
        sid = s.selected[0]
        with zipfile.ZipFile(handlers.download(app, s)) as zf:
            ids = rgb_to_id(np.asarray(Image.open(io.BytesIO(zf.read("panoptic/image.png"))).convert("RGB")))
        assert int((ids == sid).sum()) == s.result.segment_by_id(sid).area
    app.close()


def test_the_menu_counts_the_prompts_the_classifier_encodes():
    """With CLIP's 'short' templates (7 prompts a name); nothing is loaded to say so."""
    app = DemoApp(config="interactive")
    assert "7 classes (3 things, 4 stuff) with 38 names = 266 prompts to encode the first time" in app.vocabulary_info("indoor-navigation")
    assert app.prompt_count(2) == 14
    app.close()


def test_threshold_values_apply_to_the_selected_presets_components():
    app = DemoApp(fake_pipeline(fuser="maskformer"))
    values = {("fuser", "min_class_prob"): 0.5, ("fuser", "instances_score_thresh"): 0.1, ("fuser", "overlap_threshold"): 0.8}
    # maskformer has no instances_score_thresh; overlap_threshold 0.8 is its own value: no override
    assert app.tuning_overrides(None, values) == ("fuser.maskformer.min_class_prob=0.5",)
    # the default preset's fuser is detectron2 (overlap 0.5): the same controls set its options
    assert app.tuning_overrides("default", values) == (
        "fuser.detectron2.min_class_prob=0.5", "fuser.detectron2.instances_score_thresh=0.1", "fuser.detectron2.overlap_threshold=0.8"
    )
    assert app.tuning_overrides(None, {("proposal_generator", "points_per_side"): 7.6}) == ()  # tiles has no such option
    app.close()


@pytest.mark.parametrize(("delay", "sig"), [(0.5, signal.SIGTERM), (2.0, signal.SIGTERM), (2.0, signal.SIGHUP)])
def test_sigterm_while_the_demo_starts_leaves_no_temporary_folder(tmp_path, delay, sig):
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(temp)}
    env.pop("GRADIO_TEMP_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovpanoptic", "demo", "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )
    time.sleep(delay)
    proc.send_signal(sig)
    output = proc.communicate(timeout=60)[0]
    # Killed before the handler is installed (the signal's default), or stopped by it (0): never a leak.
    assert proc.returncode in (0, -sig), output
    assert "Traceback" not in output
    assert [p.name for p in temp.iterdir() if p.name.startswith("ovpanoptic-demo-")] == []


def test_the_undo_history_is_bounded_by_steps_and_bytes(monkeypatch):
    from ovpanoptic.demo import state
    from ovpanoptic.types import Category, PanopticResult, Vocabulary

    vocab = Vocabulary((Category(1, "sky", False),))
    results = [PanopticResult.from_map(np.full((10, 10), 1, np.int32), {1: (1, i / 100)}, vocab) for i in range(60)]
    s = state.Session("a")
    for r in results:
        s.push("edit", r)
    assert len(s.history) == state.MAX_UNDO and s.history[0].result is results[9]
    monkeypatch.setattr(state, "MAX_UNDO_BYTES", 3 * 400)  # three 10x10 int32 maps
    s.push("edit", results[0])
    assert len(s.history) == 3 and s.history[-1].result is results[59]


def test_a_cancel_while_the_run_waits_in_the_queue_stops_it(app):
    s = app.session("a")
    handlers.cancel(s)
    assert s.notice == "Nothing is running: Cancel stops a Segment run while it waits or runs."
    handlers.image_changed(app, s, str(STREET))
    handlers.request_run(s)  # the click, before queueing
    handlers.cancel(s)  # pressed while waiting
    with pytest.raises(Cancelled, match=r"during starting\); nothing was segmented\."):
        handlers.segment(app, s, RunRequest("car"), fresh=False)
    assert s.result is None and not s.running
    handlers.segment(app, s, RunRequest("car"))  # a new click runs
    assert len(s.result.segments) == 4


def test_undo_of_a_threshold_change_brings_back_its_thresholds_and_explanation():
    app = DemoApp(fake_pipeline(fuser="maskformer"))
    s = app.session("a")
    run(app, s)
    explanation = s.explanation
    handlers.retune(app, s, ("fuser.maskformer.min_class_prob=0.95",))
    assert s.result.segments == () and s.request.tuning == ("fuser.maskformer.min_class_prob=0.95",)
    handlers.undo(app, s)
    assert s.notice == "Undone: threshold change." and len(s.result.segments) == 4
    assert s.request.tuning == () and s.explanation == explanation
    assert "1 step to undo" not in page(app, s)[1]
    app.close()


def test_undo_refuses_while_the_result_is_stale(app):
    s = app.session("a")
    run(app, s)
    handlers.click(app, s, 5, 5, handlers.MODES[3], (480, 640))
    handlers.click(app, s, 14, 24, handlers.MODES[3], (480, 640))
    handlers.accept(app, s, "pallet")
    handlers.image_changed(app, s, str(ROOM))
    with pytest.raises(InputError, match="The result is stale .* Undo works on the result shown"):
        handlers.undo(app, s)
    assert len(s.history) == 1


def test_names_typed_in_the_class_menu_match_like_class_names_and_take_the_kind_chosen(app):
    s = app.session("a")
    run(app, s)
    handlers.click(app, s, 5, 5, handlers.MODES[3], (480, 640))
    handlers.click(app, s, 14, 24, handlers.MODES[3], (480, 640))
    handlers.accept(app, s, "Street  Lamp")  # two spaces, other case: the existing class
    assert s.result.category_of(s.result.segment_by_id(5)).name == "street lamp" and len(s.result.vocabulary) == 4
    s.selected = [5]
    handlers.relabel(app, s, "puddle", "stuff")
    puddle = s.result.category_of(s.result.segment_by_id(5))
    assert (puddle.name, puddle.isthing) == ("puddle", False)
    with pytest.raises(InputError, match="'sky' is stuff in this vocabulary: add it as stuff"):
        handlers.relabel(app, s, "sky", "thing")
    with pytest.raises(InputError, match="the kind of a new class is one of auto, thing, stuff"):
        handlers.relabel(app, s, "x", "(stuff)")


def test_names_show_as_typed_never_as_markup(app):
    s = app.session("a")
    run(app, s, classes="<img src=x onerror=alert(1)>, **bold**", stuff="")
    s.selected = [1, 2]
    status = page(app, s)[1]
    assert "<img" not in status and "&lt;img src=x onerror=alert(1)&gt; #1 (id 1)" in status
    assert "\\*\\*bold\\*\\* #1 (id 2)" in status


def test_two_images_with_one_name_and_one_result_get_two_zips():
    app = DemoApp(fake_pipeline(exporters=["coco-panoptic"]))
    s = app.session("a")
    run(app, s, image={"path": str(STREET), "orig_name": "photo.jpg"})
    first = handlers.download(app, s)
    run(app, s, image={"path": str(ROOM), "orig_name": "photo.jpg"})
    second = handlers.download(app, s)
    assert first.name != second.name and first.name.startswith("photo-") and second.name.startswith("photo-")
    with zipfile.ZipFile(second) as zf:
        assert zf.read("photo.jpg") == ROOM.read_bytes()
    app.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "99999"], "the port must be a number from 1 to 65535, got 99999 (--port)"),
        (["--port", "-5"], "the port must be a number from 1 to 65535, got -5 (--port)"),
        (["--max-file-size", "banana"], "the upload limit must be a size like 25mb, 500kb or 1gb, got 'banana' (--max-file-size)"),
    ],
)
def test_cli_demo_checks_port_and_upload_limit_before_building(capsys, args, message):
    assert main(["demo", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_weights_say_how_to_give_the_demo_a_checkpoint():
    from ovpanoptic.demo.layout import page_message
    from ovpanoptic.errors import WeightsError

    message = page_message(WeightsError("CLIP convnext_base_w is not in the local cache ... or pass a local checkpoint path"))
    assert message.endswith(
        "or pass a local checkpoint path: restart the demo with it, e.g. --set \"classifier.clip.pretrained='/path/clip.pt'\" "
        "or --set \"proposal_generator.sam2.model='/path/sam2.pt'\" (`ovpanoptic presets interactive` lists the options)"
    )


# -- issue 29: the workbench as an annotator uses it -------------------------------------------


def test_a_click_selects_one_segment_and_the_page_says_what_delete_acts_on(app):
    s = app.session("a")
    run(app, s)
    display = (480, 640)
    handlers.click(app, s, 100, 100, handlers.SELECT, display)  # car #1
    handlers.click(app, s, 400, 100, handlers.SELECT, display)  # street lamp #1: replaces the selection
    assert s.selected == [2]
    handlers.click(app, s, 400, 100, handlers.SELECT, display)  # clicking it again keeps it selected
    assert s.selected == [2]
    out = page(app, s)
    assert "**Selected:** street lamp #1 (id 2)" in out[1]
    assert [r[0] for r in out[5]] == ["", "✓", "", ""]  # the table marks the selected row
    assert out[7]["value"] == "Relabel street lamp #1" and out[8]["value"] == "Delete street lamp #1"
    assert out[9]["interactive"] is False  # Merge needs two
    handlers.click(app, s, 100, 100, handlers.SELECT_MANY, display)  # "select several" adds car #1
    assert s.selected == [2, 1] and page(app, s)[9]["value"] == "Merge 2 segments (into street lamp #1)"
    handlers.click(app, s, 100, 100, handlers.SELECT_MANY, display)  # and toggles it off again
    handlers.delete(app, s)
    assert s.notice == "Deleted 1 segment: street lamp #1 (id 2)."
    handlers.select(s, 1)  # a table row: one selected
    handlers.select(s, 3)
    assert s.selected == [3]
    handlers.select(s, 1, several=True)
    assert s.selected == [3, 1]


def test_a_new_segment_is_selected_and_a_click_on_it_keeps_it_selected(app):
    s = app.session("a")
    run(app, s)
    display = (480, 640)
    handlers.click(app, s, 5, 5, handlers.BOX, display)
    handlers.click(app, s, 14, 24, handlers.BOX, display)
    handlers.accept(app, s, "pallet")
    assert s.selected == [5]
    handlers.click(app, s, 10, 10, handlers.SELECT, display)
    assert s.selected == [5]
    handlers.relabel(app, s, "car")
    assert s.notice == "Relabelled 1 segment as car: car #2 (id 5)."


def test_the_zip_unzips_readable_by_all_and_the_page_lists_what_it_holds(tmp_path):
    from ovpanoptic.demo.downloads import zip_contents

    app = DemoApp(fake_pipeline(exporters=["coco-panoptic"]))
    try:
        s = app.session("a")
        run(app, s)
        path = handlers.download(app, s)
        with zipfile.ZipFile(path) as zf:
            modes = {info.filename: (info.external_attr >> 16) & 0o777 for info in zf.infolist()}
            zf.extractall(tmp_path)
        assert set(modes.values()) == {0o644}, modes
        listing = zip_contents(path)
        for line in (
            "- `street.jpg`: the image",
            "- `panoptic.json` + `panoptic/street.png`: COCO panoptic",
            "- `instances.json`: COCO instances (RLE masks of the things)",
            "- `label-studio.json` + `label-studio.xml`: a Label Studio task with the segments as predictions, and its labelling config",
            "- `cvat/annotations.xml` + `cvat/images/street.jpg`: CVAT for images 1.1",
            "- `street.overlay.jpg`: the image as drawn here",
            "- `street.segments.csv`: the segment table",
        ):
            assert line in listing, listing
    finally:
        app.close()


class CountingTiles:
    """A plugin: ``counting-tiles``, the tiles generator reporting 10 steps of 0.02 s (a clock to estimate from)."""

    from ovpanoptic.hookspecs import hookimpl

    @hookimpl
    def register_proposal_generators(self, register):
        from ovpanoptic.testing import TilesConfig, TilesGenerator

        class Counting(TilesGenerator):
            def generate(self, image, *, progress=None):
                for i in range(10):
                    time.sleep(0.02)
                    if progress is not None:
                        progress("points", i + 1, 10)
                return super().generate(image, progress=progress)

        register("counting-tiles", Counting, config=TilesConfig)


def test_each_stage_is_named_with_its_own_progress_and_an_estimate():
    app = DemoApp(fake_pipeline(CountingTiles(), proposal_generator="counting-tiles"))
    try:
        s = app.session("a")
        handlers.image_changed(app, s, str(STREET))
        seen = []
        handlers.segment(app, s, RunRequest("car", "sky"), lambda m, d, t: seen.append((m, d, t)))
        stages = [m.split(":")[0] for m, _, _ in seen]
        assert [x for x in dict.fromkeys(stages) if x in ("proposals", "image features (loads the classifier's weights on first use)",
                                                          "classification", "fusion")] == [
            "proposals", "image features (loads the classifier's weights on first use)", "classification", "fusion"
        ]
        counted = [(m, d, t) for m, d, t in seen if m.startswith("proposals: points")]
        assert [(d, t) for _, d, t in counted] == [(i, 10) for i in range(1, 11)]
        assert counted[0][0].startswith("proposals: points 1/10 · about ") and counted[0][0].endswith(" s left")
        assert counted[-1][0] == "proposals: points 10/10"
    finally:
        app.close()


def test_cancel_says_how_long_after_the_click_it_landed():
    app = DemoApp(fake_pipeline(CountingTiles(), proposal_generator="counting-tiles"))
    try:
        s = app.session("a")
        handlers.image_changed(app, s, str(STREET))
        handlers.request_run(s)

        def progress(message, done, total):
            if message.startswith("proposals: points 3/"):
                handlers.cancel(s)

        with pytest.raises(Cancelled, match=r"^Cancelled 0\.0\d s after you pressed Cancel \([\d.]+ s into the run, during proposals\); nothing was segmented"):
            handlers.segment(app, s, RunRequest("car", "sky"), progress, fresh=False)
    finally:
        app.close()


def many_things(n: int = 8, size: int = 40):
    """A result with ``n`` cars in a row of ``size`` px squares, and a 1-pixel car in a corner."""
    from ovpanoptic.types import PanopticResult

    vocab = fake_pipeline().vocabulary("car", "sky")
    car = next(c for c in vocab if c.name == "car")
    panoptic_map = np.zeros((100, 400), np.int32)
    labels = {}
    for i in range(n):
        panoptic_map[10:10 + size, i * 45:i * 45 + size] = i + 1
        labels[i + 1] = (car.id, 0.9)
    panoptic_map[99, 399] = n + 1
    labels[n + 1] = (car.id, 0.9)
    return PanopticResult.from_map(panoptic_map, labels, vocab, {})


def test_instances_of_one_class_get_clearly_different_colours():
    from ovpanoptic.demo.render import segment_colors

    colors = list(segment_colors(many_things()).values())
    distances = [np.linalg.norm(np.subtract(a, b)) for i, a in enumerate(colors) for b in colors[i + 1:]]
    assert min(distances) >= 60, min(distances)


def test_labels_stay_inside_the_image_and_never_overlap():
    from ovpanoptic.demo.render import label_boxes, segment_labels

    result = many_things()
    image = np.zeros((100, 400, 3), np.uint8)
    boxes = label_boxes(image.shape[:2], result, segment_labels(result), list(segment_labels(result)))
    assert boxes, "no label placed"
    for x0, y0, x1, y1 in boxes.values():
        assert 0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 100
    placed = list(boxes.values())
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    assert 9 in boxes  # the tiny car in the bottom-right corner: its label is pulled inside


def test_instance_numbers_stay_with_their_segment_through_edits_and_undo(app):
    s = app.session("a")
    run(app, s, classes="car", stuff="")  # 4 cars
    assert [r[2] for r in rows_of(app, s)] == ["car #1", "car #2", "car #3", "car #4"]
    s.selected = [1]
    handlers.delete(app, s)
    assert [r[2] for r in rows_of(app, s)] == ["car #2", "car #3", "car #4"]
    display = (480, 640)
    handlers.click(app, s, 5, 5, handlers.BOX, display)
    handlers.click(app, s, 14, 24, handlers.BOX, display)
    handlers.accept(app, s, "car")
    assert s.notice == "Added segment 5 (car #5, 200 pixels)."
    handlers.undo(app, s)
    handlers.undo(app, s)
    assert sorted(r[2] for r in rows_of(app, s)) == ["car #1", "car #2", "car #3", "car #4"]


def test_tiny_areas_are_given_in_pixels_and_the_legend_has_a_swatch_per_class_shown(app):
    from ovpanoptic.demo.render import legend_html, segment_labels, table_rows

    result = many_things()
    rows = table_rows(result, segment_labels(result))
    assert rows[-1][2] == "car #9" and rows[-1][6] == "1 px"
    assert rows[0][6] == "4.00 %"
    s = app.session("a")
    run(app, s)
    legend = page(app, s)[10]
    assert legend.count("class='ovp-swatch'") == 4
    assert "car (1)" in legend and "background:rgb(" in legend
    assert legend_html(result, frozenset({"car"})) == ""


# -- keep and continue work -------------------------------------------------------------------


def test_each_images_corrected_result_is_kept_when_another_image_comes(app):
    s = app.session("a")
    run(app, s)
    s.selected = [1]
    handlers.delete(app, s)  # a correction of street.jpg
    street = s.result
    handlers.image_changed(app, s, str(ROOM))  # a wrong drop, or the next image
    out = page(app, s)
    assert "Not segmented yet" in out[1] and "segments" not in out[1] and out[6] == ""  # no old counts, no old explanation
    handlers.segment(app, s, RunRequest("chair", "floor"))
    room = s.result
    handlers.image_changed(app, s, str(STREET))  # back: its corrected result, undo history and all
    assert s.result is street and [h.what for h in s.history] == ["delete 1 segment"] and s.stale == ""
    assert "street.jpg" in page(app, s)[1]
    handlers.image_changed(app, s, str(ROOM))
    assert s.result is room and s.history == [] and s.stale == ""
    handlers.image_changed(app, s, str(STREET))
    handlers.undo(app, s)
    assert len(s.result.segments) == 4


def test_a_list_of_images_is_walked_with_next_and_previous(app):
    s = app.session("a")
    handlers.set_images(app, s, [str(STREET), str(ROOM), str(EXAMPLES / "tabletop.jpg")])
    assert s.image.name == "street.jpg" and handlers.position(s) == "image 1 of 3: street.jpg (not segmented yet)"
    handlers.segment(app, s, RunRequest("car", "sky"))
    handlers.step(app, s, +1)
    assert s.image.name == "room.jpg" and handlers.position(s) == "image 2 of 3: room.jpg (not segmented yet)"
    assert "Not segmented yet" in page(app, s)[1]
    handlers.step(app, s, -1)
    assert s.image.name == "street.jpg" and len(s.result.segments) == 3 and not s.stale
    handlers.step(app, s, -1)
    assert s.image.name == "street.jpg" and s.notice == "This is the first image."
    with pytest.raises(InputError, match="No images to walk: upload several images"):
        handlers.step(app, app.session("b"), +1)


def test_labels_from_the_demos_own_zip_or_a_label_studio_export_are_loaded_for_the_image(app, tmp_path):
    s = app.session("a")
    run(app, s)
    s.selected = [2]
    handlers.delete(app, s)
    handlers.download(app, s)
    with zipfile.ZipFile(s.download) as zf:
        zf.extractall(tmp_path / "unzipped")
    expected = s.result
    other = app.session("b")
    handlers.image_changed(app, other, str(STREET))
    handlers.load_labels(app, other, [str(s.download)])
    assert other.result is not None and np.array_equal(other.result.panoptic_map, expected.panoptic_map)
    assert [(x.id, other.result.category_of(x).name) for x in other.result.segments] == [(1, "car"), (3, "sky"), (4, "road")]
    assert other.notice == "Loaded 3 segments for street.jpg from the COCO panoptic file panoptic.json: correct them as usual."
    third = app.session("c")
    handlers.image_changed(app, third, str(STREET))
    handlers.load_labels(app, third, [str(tmp_path / "unzipped" / "label-studio.json")])
    assert np.array_equal(third.result.panoptic_map > 0, expected.panoptic_map > 0)
    assert sorted(third.result.category_of(x).name for x in third.result.segments) == ["car", "road", "sky"]
    handlers.image_changed(app, third, str(ROOM))
    with pytest.raises(InputError, match=r"panoptic\.json has no labels for room\.jpg \(it has: street\)"):
        handlers.load_labels(app, third, [str(s.download)])


# -- brush and eraser --------------------------------------------------------------------------


def disc(shape, cx, cy, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def test_the_brush_paints_exactly_a_disc_into_the_selected_segment_and_the_eraser_clears_only_its_pixels(app):
    s = app.session("a")
    run(app, s)  # car #1 = tile 0 (x < 320, y < 240), street lamp #1 = tile 1
    display = (480, 640)
    before = s.result.panoptic_map.copy()
    handlers.click(app, s, 100, 100, handlers.SELECT, display)
    handlers.click(app, s, 320, 120, handlers.BRUSH, display, radius=10)  # across the border of tiles 0 and 1
    after = s.result.panoptic_map
    painted = disc(before.shape, 320.5, 120.5, 10)
    assert np.array_equal(after != before, painted & (before != 1))
    assert np.all(after[painted] == 1)
    assert s.notice == "Brush: 169 pixels of car #1 (id 1) painted (radius 10 px); Undo takes them back."
    handlers.click(app, s, 100, 100, handlers.ERASER, display, radius=4)
    erased = disc(before.shape, 100.5, 100.5, 4)
    assert np.all(s.result.panoptic_map[erased] == 0) and np.array_equal(s.result.panoptic_map[~erased], after[~erased])
    handlers.click(app, s, 400, 100, handlers.ERASER, display, radius=4)  # on street lamp: not the selected segment
    assert s.notice == "The eraser only clears pixels of the selected segment (car #1 (id 1)): none under the click."
    handlers.undo(app, s)
    handlers.undo(app, s)
    assert np.array_equal(s.result.panoptic_map, before)
    s.selected = []
    with pytest.raises(InputError, match="Select one segment for the brush"):
        handlers.click(app, s, 100, 100, handlers.BRUSH, display)
