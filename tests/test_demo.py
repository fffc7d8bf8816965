"""The Gradio demo: its handler called directly, the page's wiring, a gradio_client round trip
against the app served on 127.0.0.1, the CLI entry points, and a run on the real SAM 2 generator
with a random-init checkpoint.

Most tests use the deterministic fake components of ``ovpanoptic.testing`` (``tiles`` proposes a
grid, ``cycling`` gives proposal i the class in column i % C, ``paint`` fuses in order), so the
expected segments are known exactly.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovpanoptic.cli import main
from ovpanoptic.config import Config
from ovpanoptic.demo_app import (
    APP_PIPELINE,
    CUSTOM_VOCABULARY,
    MASK_ALPHA,
    TABLE_HEADERS,
    DemoApp,
    DemoSettings,
    annotated_payload,
    build_demo,
    launch_demo,
    segment_labels,
)
from ovpanoptic.errors import ConfigError, ImageReadError, InputError, VocabularyError
from ovpanoptic.evaluation import rgb_to_id
from ovpanoptic.hookspecs import hookimpl
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import FakeComponentsPlugin, make_shapes_image, registry_with

gr = pytest.importorskip("gradio")

# gradio's queue builds a pandas frame for Dataframe outputs with options pandas 3 deprecates
pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "demo" / "examples"


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


@pytest.fixture(scope="module")
def page_app():
    """A built page's app: its ``respond`` is the Gradio handler."""
    demo_app = build_demo(fake_pipeline()).ovpanoptic_app
    yield demo_app
    demo_app.close()


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header announces ``width x height`` (1-bit gray) but holds one row of data:
    tiny on disk, huge when decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row)) + chunk(b"IEND", b""))
    return path


def read_download(zip_path: Path) -> tuple[np.ndarray, dict]:
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(zf.namelist())
        png_name = next(n for n in names if n.endswith(".png"))
        assert names == ["panoptic.json", png_name] and png_name.startswith("panoptic/")
        data = json.loads(zf.read("panoptic.json"))
        with zf.open(png_name) as f:
            ids = rgb_to_id(np.asarray(Image.open(f).convert("RGB")))
    return ids, data


# -- the handler, called directly -------------------------------------------------------------


def test_importing_the_demo_loads_nothing():
    code = (
        "import runpy, sys\n"
        "import ovpanoptic.demo_app\n"
        f"ns = runpy.run_path({str(ROOT / 'demo' / 'app.py')!r}, run_name='demo_app_module')\n"
        "assert callable(ns['build_demo']) and callable(ns['launch_demo'])\n"
        "heavy = [m for m in ('gradio', 'torch', 'sam2', 'open_clip', 'detectron2') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_run_segments_and_makes_every_output(app):
    image = make_shapes_image()
    out = app.run(image, "person, car", "road")
    # tiles: 4 quarters; cycling: quarter i -> class i % 3; paint keeps all (stuff 'road' once).
    assert out.table == [
        ["person #1", "person", "thing", 0.9, 25.0],
        ["car #1", "car", "thing", 0.9, 25.0],
        ["road", "road", "stuff", 0.9, 25.0],
        ["person #2", "person", "thing", 0.9, 25.0],
    ]
    display, masks = out.annotated
    assert display.shape == image.shape and np.array_equal(display, image)
    assert [label for _, label in masks] == ["person #1", "car #1", "road", "person #2"]
    stacked = np.stack([m for m, _ in masks])
    assert stacked.shape == (4, 48, 64) and (stacked.sum(axis=0) == 1).all()
    assert masks[0][0][:24, :32].all() and not masks[0][0][24:, :].any()
    assert set(out.colors) == {"person #1", "car #1", "road", "person #2"}
    assert len(set(out.colors.values())) == 4 and all(c.startswith("#") and len(c) == 7 for c in out.colors.values())
    assert not out.cached and "First run on this image" in out.timings_markdown
    for stage in ("proposals", "features", "classify", "fuse", "resize", "total", "outputs"):
        assert out.timings[stage] >= 0.0
    assert "| classification |" in out.timings_markdown and "**4 segments** (3 things, 1 stuff)" in out.timings_markdown
    ids, coco = read_download(out.download)
    assert np.array_equal(ids, out.result.panoptic_map)
    (annotation,) = coco["annotations"]
    assert [(s["id"], s["category_id"], s["area"]) for s in annotation["segments_info"]] == [
        (s.id, s.category_id, s.area) for s in out.result.segments
    ]
    assert [c["name"] for c in coco["categories"]] == ["person", "car", "road"]


def test_requery_reuses_proposals_and_features_and_is_fast():
    app = DemoApp(fake_pipeline(tables={"proposal_generator": {"tiles": {"rows": 8, "cols": 8}}}))
    path = str(EXAMPLES / "street.jpg")  # 640 x 480
    pipe = app.pipeline_for(None)
    first = app.run(path, "car, tree", "sky, road")
    generator, classifier = pipe.component("proposal_generator"), pipe.component("classifier")
    assert (generator.calls, classifier.prepare_calls) == (1, 1) and not first.cached
    times = []  # CPU time of this process: the compute, whatever else the machine runs
    for i in range(5):
        t0 = time.process_time()
        out = app.run(path, "", "", "ade20k")  # 150 classes
        times.append(time.process_time() - t0)
        assert out.cached and len(out.result.vocabulary) == 150
    assert (generator.calls, classifier.prepare_calls, classifier.score_calls) == (1, 1, 6)
    assert "proposals | cached" in out.timings_markdown and "Same image as before" in out.timings_markdown
    assert {row[1] for row in out.table} <= set(out.result.vocabulary.names)
    median = statistics.median(times)
    print(f"re-query of a 640x480 image, 64 proposals, 150 classes (fake components): median {median:.3f} s")
    assert median <= 0.3, f"re-query took {times}"
    app.close()


def test_named_vocabulary_wins_over_typed_names_and_unknown_names_list_the_choices(app):
    out = app.run(make_shapes_image(), "ignored, names", "", "tabletop")
    assert out.result.vocabulary.name == "tabletop"
    assert [row[1] for row in out.table] == [out.result.vocabulary.names[i % len(out.result.vocabulary)] for i in range(4)]
    with pytest.raises(VocabularyError, match=r"no vocabulary named 'tabeltop'. Did you mean 'tabletop'\? Available: ade20k, coco"):
        app.run(make_shapes_image(), "", "", "tabeltop")


def test_synonyms_and_stuff_only(app):
    out = app.run(make_shapes_image(), "tv|television", "")
    assert out.result.vocabulary.categories[0].synonyms == ("television",)
    out = app.run(make_shapes_image(), "", "sky, road")
    assert {row[2] for row in out.table} == {"stuff"} and {row[0] for row in out.table} == {"sky", "road"}


def test_progress_is_reported(app):
    calls = []
    app.run(make_shapes_image(), "person", "", progress=lambda message, done, total: calls.append((message, done, total)))
    assert calls[0][0].startswith("segmenting") and ("tiles", 1, 1) in calls


@pytest.mark.parametrize(
    ("make_input", "classes", "error", "message"),
    [
        (lambda tmp: None, "person", InputError, r"^No image: upload an image \(or click one of the examples\) first$"),
        (lambda tmp: {"path": None}, "person", InputError, "^No image"),
        (lambda tmp: make_shapes_image(), "", VocabularyError, r"^No class names: type the classes .* or pick a named vocabulary$"),
        (lambda tmp: make_shapes_image(), "  ", VocabularyError, "^No class names"),
        (
            lambda tmp: png_header_only(tmp / "huge.png", 20_000, 20_000),
            "person",
            InputError,
            r"^huge.png is too large to open safely \(over 179 megapixels\); the demo accepts up to 50 megapixels: "
            r"downscale it",
        ),
        (
            lambda tmp: png_header_only(tmp / "big.png", 10_000, 6_000),
            "person",
            InputError,
            r"^big.png is 10000 x 6000 pixels \(60 megapixels\); the demo accepts up to 50 megapixels: downscale it",
        ),
        (
            lambda tmp: (tmp / "notes.txt").write_text("not an image") and str(tmp / "notes.txt"),
            "person",
            ImageReadError,
            r"^notes.txt: not an image file Pillow can read",
        ),
        (
            lambda tmp: {"path": str((tmp / "upload.bin").write_bytes(b"") or tmp / "upload.bin"), "orig_name": "holiday.jpg"},
            "person",
            ImageReadError,
            r"^holiday.jpg: not an image file",
        ),
    ],
    ids=["none", "empty-payload", "no-classes", "blank-classes", "20000x20000", "60-megapixels", "text-file", "empty-file"],
)
def test_bad_inputs_give_clear_messages(app, tmp_path, make_input, classes, error, message):
    with pytest.raises(error, match=message):
        app.run(make_input(tmp_path), classes, "")


def test_large_arrays_are_refused_before_segmenting():
    app = DemoApp(fake_pipeline(), settings=DemoSettings(max_pixels=1000))
    with pytest.raises(InputError, match=r"^the image is 64 x 48 pixels \(0.00307 megapixels\); the demo accepts up to 0.001 megapixels"):
        app.run(make_shapes_image(), "person")
    assert app.pipeline_for(None)._components == {}  # nothing was built


def test_display_is_downscaled_but_the_download_keeps_the_image_size():
    app = DemoApp(fake_pipeline(), settings=DemoSettings(display_max_side=32))
    out = app.run(make_shapes_image(), "person, car", "road")
    display, masks = out.annotated
    assert display.shape == (24, 32, 3) and all(m.shape == (24, 32) for m, _ in masks)
    ids, coco = read_download(out.download)
    assert ids.shape == (48, 64) and coco["images"][0]["height"] == 48
    app.close()
    assert not out.download.exists()


def test_uploads_are_decoded_once_per_file(app, tmp_path, monkeypatch):
    import ovpanoptic.demo_app as demo_app

    path = tmp_path / "shapes.png"
    Image.fromarray(make_shapes_image()).save(path)
    reads = []
    monkeypatch.setattr(demo_app, "read_image", lambda p: reads.append(p) or np.asarray(Image.open(p).convert("RGB")))
    payload = {"path": str(path), "orig_name": "my photo.png"}
    first = app.run(payload, "person")
    app.run(payload, "car")
    assert len(reads) == 1
    assert first.download.name == "my_photo-coco-panoptic.zip"
    path.write_bytes(path.read_bytes())  # a new upload at the same path (new mtime)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    app.run(payload, "car")
    assert len(reads) == 2


def test_instance_labels_count_per_class():
    app = DemoApp(fake_pipeline())
    out = app.run(make_shapes_image(), "cat")
    assert segment_labels(out.result) == {1: "cat #1", 2: "cat #2", 3: "cat #3", 4: "cat #4"}
    assert len(set(out.colors.values())) == 4  # instances of one class get distinct shades
    app.close()


def test_presets_and_vocabularies_come_from_the_registry():
    class WarehousePlugin:
        @hookimpl
        def register_vocabularies(self, register):
            from ovpanoptic.types import Category, Vocabulary

            register("warehouse", lambda: Vocabulary((Category(1, "pallet", True),), name="warehouse"), description="pallets")

    pipe = fake_pipeline(WarehousePlugin())
    demo = build_demo(pipe)
    app = demo.ovpanoptic_app
    by_id = {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    vocab_values = [value for _, value in by_id["ovp-vocabulary"].choices]
    assert vocab_values[0] == CUSTOM_VOCABULARY
    assert vocab_values[1:] == sorted(pipe.registry.vocabularies) and "warehouse" in vocab_values
    preset_values = [value for _, value in by_id["ovp-preset"].choices]
    assert preset_values[0] == APP_PIPELINE and {"default", "cpu-fast"} <= set(preset_values)
    assert by_id["ovp-table"].headers == list(TABLE_HEADERS)
    out = app.run(make_shapes_image(), "", "", "warehouse")
    assert {row[1] for row in out.table} == {"pallet"}
    assert app.pipeline_for("cpu-fast").registry is pipe.registry
    with pytest.raises(ConfigError, match=r"no preset named 'nope'; choose one of: this app's pipeline, "):
        app.run(make_shapes_image(), "person", "", CUSTOM_VOCABULARY, "nope")
    app.close()


def test_the_demo_starts_with_the_interactive_preset():
    app = DemoApp()  # loads nothing
    assert app.initial_preset == "interactive"
    assert app.preset_choices()[:1] == ["interactive"] and {"default", "cpu-fast"} <= set(app.preset_choices())
    assert app.pipeline_for(None).config.pipeline.fuser == "maskformer"
    assert DemoApp(config="default").pipeline_for(None).config.pipeline.fuser == "detectron2"
    app.close()


def test_a_config_naming_a_missing_component_fails_at_build(tmp_path):
    from ovpanoptic.errors import ComponentNotFoundError

    toml = tmp_path / "broken.toml"
    toml.write_text('[pipeline]\nproposal_generator = "nope"\n')
    with pytest.raises(ComponentNotFoundError, match="proposal generator 'nope'"):
        build_demo(config=str(toml))


# -- the Gradio handler: errors become gr.Error messages ----------------------------------------


class ExplodingClassifierPlugin:
    """A broken third-party classifier: its score() raises."""

    class Exploding:
        def __init__(self, config, context):
            pass

        def prepare(self, image, proposals):
            return len(proposals)

        def score(self, prepared, vocabulary):
            raise RuntimeError("boom in score\nsecond line")

    @hookimpl
    def register_classifiers(self, register):
        register("exploding", self.Exploding)


def test_respond_returns_the_four_outputs_as_sent_to_the_page(page_app):
    annotated, table, timings, download = page_app.respond(make_shapes_image(), "person, car", "road", CUSTOM_VOCABULARY, None)
    labels = ["person #1", "car #1", "road", "person #2"]
    assert annotated["__type__"] == "update" and list(annotated["color_map"]) == labels
    assert [a["label"] for a in annotated["value"]["annotations"]] == labels
    assert table["headers"] == list(TABLE_HEADERS) and [row[0] for row in table["data"]] == labels
    assert "| stage | seconds |" in timings
    assert download["orig_name"] == "image-coco-panoptic.zip" and Path(download["path"]).is_file()


def test_masks_are_written_as_colored_transparent_pngs(app, tmp_path):
    out = app.run(make_shapes_image(), "person, car", "road")
    data = annotated_payload(out.annotated, out.colors, tmp_path)
    assert [a["label"] for a in data["annotations"]] == ["person #1", "car #1", "road", "person #2"]
    for (mask, label), ann in zip(out.annotated[1], data["annotations"]):
        assert Path(ann["image"]["path"]).parent.parent == tmp_path
        rgba = np.asarray(Image.open(ann["image"]["path"]).convert("RGBA"))
        assert rgba.shape == (48, 64, 4)
        assert (rgba[..., 3][mask] == MASK_ALPHA).all() and not rgba[..., 3][~mask].any()
        color = out.colors[label]
        assert tuple(rgba[mask][0, :3]) == tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
    assert Image.open(data["image"]["path"]).size == (64, 48)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, "person", "", CUSTOM_VOCABULARY, None), "No image: upload an image"),
        ((make_shapes_image(), "", "", CUSTOM_VOCABULARY, None), "No class names"),
        ((make_shapes_image(), "person,,car", "", CUSTOM_VOCABULARY, None), "class 2 of the Class names box is empty"),
        ((make_shapes_image(), "person", "sky,", CUSTOM_VOCABULARY, None), "of the Stuff box is empty"),
        ((make_shapes_image(), "", "", "cocoa", None), "no vocabulary named 'cocoa'. Did you mean 'coco'?"),
    ],
    ids=["no-image", "no-classes", "bad-classes", "bad-stuff", "unknown-vocabulary"],
)
def test_respond_shows_errors_as_gr_error(page_app, args, message):
    with pytest.raises(gr.Error) as info:
        page_app.respond(*args)
    assert message in info.value.message and "Traceback" not in info.value.message
    assert "--classes" not in info.value.message and "--stuff" not in info.value.message


def test_a_broken_plugin_gives_a_message_not_a_traceback(caplog):
    app = build_demo(fake_pipeline(ExplodingClassifierPlugin(), classifier="exploding")).ovpanoptic_app
    with pytest.raises(gr.Error) as info:
        app.respond(make_shapes_image(), "person", "", CUSTOM_VOCABULARY, None)
    message = info.value.message
    assert message == (
        "classifier 'exploding' from plugin 'ExplodingClassifierPlugin' (registered in code) failed in score(): raised "
        "RuntimeError: boom in score (...). This is a fault in the plugin: report it to its authors; meanwhile choose "
        "another classifier with --set pipeline.classifier=NAME, or block the plugin with --disable-plugin "
        "ExplodingClassifierPlugin"
    )
    app.close()


@pytest.mark.slow
def test_missing_weights_say_the_command_that_fixes_them(page_app, tmp_path, monkeypatch):
    pytest.importorskip("sam2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(gr.Error) as info:
        page_app.respond(make_shapes_image(), "person", "", CUSTOM_VOCABULARY, "default")
    assert "offline mode is on" in info.value.message and "ovpanoptic download sam2" in info.value.message


# -- served: gradio_client round trip --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served():
    demo = build_demo(fake_pipeline())
    port = free_port()
    launch_demo(demo, host="127.0.0.1", port=port, max_file_size="1mb", block=False)
    yield f"http://127.0.0.1:{port}/", demo
    demo.close()
    demo.ovpanoptic_app.close()


def test_client_round_trip(served, tmp_path):
    from gradio_client import Client, handle_file

    url, demo = served
    client = Client(url, verbose=False, download_files=str(tmp_path))
    annotated, table, timings, download = client.predict(
        handle_file(str(EXAMPLES / "street.jpg")), "car, street lamp", "sky, road", CUSTOM_VOCABULARY, APP_PIPELINE,
        api_name="/segment",
    )
    assert table["headers"] == list(TABLE_HEADERS)
    assert [row[:3] for row in table["data"]] == [
        ["car #1", "car", "thing"], ["street lamp #1", "street lamp", "thing"], ["sky", "sky", "stuff"], ["road", "road", "stuff"],
    ]
    # the annotated image arrives as an update: its value and the colour of each label
    assert set(annotated["color_map"]) == {"car #1", "street lamp #1", "sky", "road"}
    annotated = annotated["value"]
    assert [a["label"] for a in annotated["annotations"]] == ["car #1", "street lamp #1", "sky", "road"]
    assert all(Path(a["image"]).is_file() for a in annotated["annotations"])  # downloaded by the client
    assert Image.open(annotated["image"]).size == (640, 480)
    assert "First run on this image" in timings
    ids, coco = read_download(Path(download))
    assert ids.shape == (480, 640) and Path(download).name == "street-coco-panoptic.zip"
    assert sorted(s["category_id"] for s in coco["annotations"][0]["segments_info"]) == [1, 2, 3, 4]

    _, table, timings, _ = client.predict(
        handle_file(str(EXAMPLES / "street.jpg")), "bus, lamp post", "", CUSTOM_VOCABULARY, APP_PIPELINE,
        api_name="/segment",
    )
    assert [row[1] for row in table["data"]] == ["bus", "lamp post", "bus", "lamp post"]
    assert "proposals | cached" in timings
    generator = demo.ovpanoptic_app.pipeline_for(None).component("proposal_generator")
    assert generator.calls == 1


def test_client_sees_clear_errors(served, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, _ = served
    client = Client(url, verbose=False, download_files=str(tmp_path))
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    cases = [
        ((None, "car", "", CUSTOM_VOCABULARY, APP_PIPELINE), "No image"),
        ((handle_file(str(EXAMPLES / "room.jpg")), "", "", CUSTOM_VOCABULARY, APP_PIPELINE), "No class names"),
        ((handle_file(str(notes)), "car", "", CUSTOM_VOCABULARY, APP_PIPELINE), "notes.txt: not an image file"),
        ((handle_file(str(png_header_only(tmp_path / "huge.png", 20_000, 20_000))), "car", "", CUSTOM_VOCABULARY, APP_PIPELINE),
         "huge.png is too large to open safely"),
    ]
    for args, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name="/segment")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1_500_000))
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        client.predict(handle_file(str(big)), "car", "", CUSTOM_VOCABULARY, APP_PIPELINE, api_name="/segment")


def test_server_refuses_paths_that_were_not_uploaded(served, tmp_path):
    """The handler reads the upload's path itself (preprocess=False), so Gradio's check that a
    file payload points into its upload folder must still hold: no reading of arbitrary files."""
    import urllib.request

    url, demo = served
    generator = demo.ovpanoptic_app.pipeline_for(None).component("proposal_generator")
    calls = generator.calls
    secret = tmp_path / "secret.png"
    Image.fromarray(make_shapes_image()).save(secret)
    payload = {"path": str(secret), "meta": {"_type": "gradio.FileData"}}
    body = json.dumps({"data": [payload, "car", "", CUSTOM_VOCABULARY, APP_PIPELINE]}).encode()
    request = urllib.request.Request(f"{url}gradio_api/call/segment", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/segment/{event_id}", timeout=30) as response:
        stream = response.read().decode()
    assert "event: error" in stream and "event: complete" not in stream
    assert generator.calls == calls  # the handler never ran


# -- command line ------------------------------------------------------------------------------


def test_cli_demo_reports_a_bad_config_before_serving(capsys):
    assert main(["demo", "--config", "defualt"]) == 2
    err = capsys.readouterr().err
    assert "no preset named 'defualt'. Did you mean 'default'?" in err and "Traceback" not in err


def test_cli_demo_help_lists_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    for option in ("--host", "--port", "--config", "--max-file-size", "--set", "--disable-plugin"):
        assert option in text
    assert "default: 127.0.0.1" in text


def test_demo_script_serves_on_loopback():
    """``python demo/app.py`` (i.e. ``ovpanoptic demo``) serves the page on 127.0.0.1 until stopped."""
    import urllib.request

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "demo" / "app.py"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = json.loads(response.read())
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the demo did not start: {proc.stdout.read() if proc.poll() is not None else 'timeout'}")
                time.sleep(0.5)
        assert config["title"] == "ovpanoptic demo"
        elem_ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
        assert {"ovp-image", "ovp-classes", "ovp-stuff", "ovp-vocabulary", "ovp-preset", "ovp-run", "ovp-annotated", "ovp-table"} <= elem_ids
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert f"ovpanoptic demo: http://127.0.0.1:{port}" in output
    assert "0.0.0.0" not in output


# -- the real SAM 2 generator on a random-init checkpoint --------------------------------------


@pytest.fixture(scope="module")
def sam2_checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    path = tmp_path_factory.mktemp("sam2-demo") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.mark.slow
def test_handler_with_a_random_init_sam2_checkpoint(sam2_checkpoint):
    config = Config.from_dict(
        {
            "pipeline": {"proposal_generator": "sam2", "classifier": "cycling", "fuser": "maskformer", "exporters": [], "device": "cpu"},
            "proposal_generator": {
                "sam2": {
                    "model": str(sam2_checkpoint), "points_per_side": 4, "pred_iou_thresh": 0.49,
                    "stability_score_thresh": 0.0, "stability_score_offset": 0.05, "box_nms_thresh": 0.9,
                }
            },
        }
    )
    app = DemoApp(Pipeline(config, registry=registry_with(FakeComponentsPlugin())))
    image = np.array(Image.fromarray(make_shapes_image(96, 128)).resize((160, 120)))
    progress = []
    first = app.run(image, "red square, blue bar", "wall", progress=lambda *a: progress.append(a))
    assert not first.cached and first.timings["proposals"] > 0
    assert first.result.segments and len(first.table) == len(first.result.segments)
    assert {row[1] for row in first.table} <= {"red square", "blue bar", "wall"}
    assert progress[0][0].startswith("segmenting")
    generator = app.pipeline_for(None).component("proposal_generator")
    calls = []
    original = generator.generate
    generator.generate = lambda *a, **k: calls.append(1) or original(*a, **k)
    t0 = time.process_time()
    second = app.run(image, "pallet, forklift", "floor")
    elapsed = time.process_time() - t0
    assert calls == [] and second.cached and elapsed < 0.3
    assert len(second.result.segments) == len(first.result.segments)  # same proposals, new names
    assert {row[1] for row in second.table} <= {"pallet", "forklift", "floor"}
    ids, _ = read_download(second.download)
    assert np.array_equal(ids, second.result.panoptic_map)
    app.close()
