"""Bad and odd inputs, as a user meets them: exact exit codes, the message's key words, and exactly
what the output folder holds afterwards (nothing partial).

CLI cases run ``ovpanoptic segment`` (or another command) in-process with the test kit's fast
components; value cases check the one documented rule per input kind with exact pixel values.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovpanoptic.cli import main
from ovpanoptic.errors import InputError
from ovpanoptic.imageio import as_rgb_array, read_image, working_size
from ovpanoptic.pipeline import Pipeline, check_stem
from ovpanoptic.testing import FakeComponentsPlugin, make_shapes_image, registry_with

from conftest import FAKE_OVERRIDES, outputs

FAKES = [arg for o in FAKE_OVERRIDES[:3] for arg in ("--set", o)] + ["--no-progress", "--device", "cpu"]
FAKE_JSON = ["--format", "fake-json"]


def png(path: Path, array: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_shapes_image() if array is None else array).save(path)
    return path


@dataclass
class Case:
    """One CLI case: ``setup(tmp)`` makes the inputs and returns the arguments after the command."""

    id: str
    setup: Callable[[Path], list[str]]
    code: int
    says: tuple[str, ...] = ()
    #: the output folder's files afterwards (manifest left out); None: the folder must not exist
    outputs: list[str] | None = field(default_factory=list)
    command: str = "segment"


def seg(*extra: str, classes: str = "person, road") -> list[str]:
    return [*([] if classes is None else ["--classes", classes]), *FAKES, *FAKE_JSON, *extra]


def one(tmp: Path) -> str:
    return str(png(tmp / "in" / "one.png"))


def out(tmp: Path) -> str:
    return str(tmp / "out")


def previous_run(tmp: Path, *args: str) -> None:
    assert main(["segment", one(tmp), "-o", out(tmp), *seg(*args)]) == 0


def with_previous(args_before: tuple[str, ...], args_now: list[str], classes_now: str = "person, road"):
    def setup(tmp: Path) -> list[str]:
        previous_run(tmp, *args_before)
        return [one(tmp), "-o", out(tmp), *seg(*args_now, classes=classes_now)]

    return setup


def holding_lock(tmp: Path) -> list[str]:
    previous_run(tmp)
    fh = open(tmp / "out" / "ovpanoptic-manifest.jsonl", "a")  # noqa: SIM115 - held while main() runs
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    tmp.joinpath(".lock-holder").write_text("")
    _HELD.append(fh)
    return [one(tmp), "-o", out(tmp), *seg()]


_HELD: list = []


CASES = [
    # -- output names and folders --------------------------------------------------------------
    Case("same file name in three folders", lambda t: [str(png(t / "a" / "x.jpg")), str(png(t / "b" / "x.jpg")), str(png(t / "c" / "x-1.png")), "-o", out(t), *seg()],
         0, (), ["x-1.fake.json", "x-2.fake.json", "x.fake.json"]),
    Case("hidden input file", lambda t: [str(png(t / "in" / ".x.png")), "-o", out(t), *seg()], 0, (), ["x.fake.json"]),
    Case("output is a file", lambda t: [one(t), "-o", str((t / "f").write_text("x") and t / "f"), *seg()], 2,
         ("the output folder", "is a file, not a folder: choose another output folder with -o"), None),
    Case("output under a file", lambda t: [one(t), "-o", str((t / "f").write_text("x") and t / "f" / "sub"), *seg()], 2,
         ("cannot create the output folder", "is a file; choose another output folder with -o"), None),
    Case("another vocabulary in the folder", with_previous((), [], classes_now="dog, cat"), 2,
         ("holds results made with other settings: the vocabulary (category 1 is 'person' (thing) there, 'dog' (thing) now)", "--overwrite"),
         ["one.fake.json"]),
    Case("stuff became a thing", with_previous((), ["--things", "road"]), 2,
         ("the vocabulary (category 2 is 'road' (stuff) there, 'road' (thing) now)",), ["one.fake.json"]),
    Case("another config in the folder", with_previous((), ["--max-side", "512"]), 2,
         ("the config (pipeline.max_side 1024 there, 512 now)",), ["one.fake.json"]),
    Case("other formats in the folder", with_previous((), ["--format", "summary"]), 2,
         ("the formats (fake-json there, fake-json, summary now)",), ["one.fake.json"]),
    Case("--overwrite replaces another config's results", with_previous((), ["--max-side", "512", "--overwrite"]), 0, (), ["one.fake.json"]),
    Case("same command again resumes", with_previous((), []), 0, ("(1 done by an earlier run)",), ["one.fake.json"]),
    Case("another run holds the folder", holding_lock, 2, ("another ovpanoptic run is writing into",), ["one.fake.json"]),
    # -- devices and config, resolved before anything is written ---------------------------------
    Case("cuda without CUDA", lambda t: [one(t), "-o", out(t), *seg("--device", "cuda")], 2, ("device 'cuda' requested but CUDA is not available",), None),
    Case("cuda:1 without CUDA", lambda t: [one(t), "-o", out(t), *seg("--device", "cuda:1")], 2, ("device 'cuda:1' requested",), None),
    Case("mps without MPS", lambda t: [one(t), "-o", out(t), *seg("--device", "mps")], 2, ("device 'mps' requested but Apple MPS is not available",), None),
    Case("unknown device", lambda t: [one(t), "-o", out(t), *seg("--device", "tpu")], 2, ("pipeline.device 'tpu' is invalid",), None),
    Case("config is a folder", lambda t: [one(t), "-o", out(t), "--config", str(t), *seg()], 2, ("is a folder: pass a preset name or the path of a .toml file",), None),
    Case("config file missing", lambda t: [one(t), "-o", out(t), "--config", str(t / "no.toml"), *seg()], 2, ("config file", "no.toml does not exist"), None),
    Case("format typo", lambda t: [one(t), "-o", out(t), *seg("--format", "pngs")], 2, ("exporter 'pngs' is not provided", "choose another with --format NAME"), None),
    Case("unknown --set key", lambda t: [one(t), "-o", out(t), *seg("--set", "fuser.paint.min_scor=0.1")], 2, ("unknown key 'min_scor' in [fuser.paint]. Did you mean 'min_score'?",), None),
    Case("--set not KEY=VALUE", lambda t: [one(t), "-o", out(t), *seg("--set", "pipeline.max_side")], 2, ("is not KEY=VALUE",), None),
    Case("max side too small", lambda t: [one(t), "-o", out(t), *seg("--max-side", "10")], 2, ("pipeline.max_side 10 is too small",), None),
    Case("negative pixel limit", lambda t: [one(t), "-o", out(t), *seg("--set", "pipeline.max_pixels=-1")], 2, ("pipeline.max_pixels must be >= 0",), None),
    # -- vocabularies ------------------------------------------------------------------------------
    Case("two spaces make no new class", lambda t: [one(t), "-o", out(t), *seg(classes="traffic light, traffic  light")], 2, ("class name 'traffic light' appears twice",), None),
    Case("composed and decomposed café", lambda t: [one(t), "-o", out(t), *seg(classes="café, " + unicodedata.normalize("NFD", "café"))], 2, ("class name 'café' appears twice",), None),
    Case("full-width person", lambda t: [one(t), "-o", out(t), *seg(classes="person, ｐｅｒｓｏｎ")], 2, ("class name 'person' appears twice",), None),
    Case("empty entry", lambda t: [one(t), "-o", out(t), *seg(classes="person,,road")], 2, ("class 2 of --classes is empty",), None),
    Case("trailing new line is no entry", lambda t: [one(t), "-o", out(t), *seg(classes="person, road\n")], 0, (), ["one.fake.json"]),
    Case("no classes", lambda t: [one(t), "-o", out(t), *seg(classes="  ")], 2, ("no class names given",), None),
    Case("stuff and thing at once", lambda t: [one(t), "-o", out(t), *seg("--stuff", "road", "--things", "road")], 2, ("'road' is listed in both --stuff and --things",), None),
    Case("unknown named vocabulary", lambda t: [one(t), "-o", out(t), "--vocabulary", "cocoo", *FAKES, *FAKE_JSON], 2, ("no vocabulary named 'cocoo'. Did you mean 'coco'?",), None),
    Case("name over 200 characters", lambda t: [one(t), "-o", out(t), *seg(classes="x" * 201)], 2, ("201 characters long; the limit is 200",), None),
    # -- inputs ------------------------------------------------------------------------------------
    Case("missing input", lambda t: [str(t / "nope.png"), "-o", out(t), *seg()], 2, ("does not exist",), None),
    Case("folder without images", lambda t: [str((t / "empty").mkdir() or t / "empty"), "-o", out(t), *seg()], 2, ("contains no image files",), None),
    Case("glob matching nothing", lambda t: [str(t / "*.png"), "-o", out(t), *seg()], 2, ("matches no file",), None),
    Case("corrupt file fails alone", lambda t: [one(t), str((t / "in" / "bad.png").write_bytes(b"garbage") and t / "in" / "bad.png"), "-o", out(t), *seg()], 1,
         ("bad.png: not an image file Pillow can read",), ["one.fake.json"]),
    Case("empty file fails alone", lambda t: [one(t), str(_write(t / "in" / "empty.png", b"")), "-o", out(t), *seg()], 1,
         ("empty.png: not an image file Pillow can read",), ["one.fake.json"]),
    Case("text file named explicitly", lambda t: [one(t), str((t / "in" / "notes.txt").write_text("hi") and t / "in" / "notes.txt"), "-o", out(t), *seg()], 1,
         ("notes.txt: not an image file Pillow can read",), ["one.fake.json"]),
    Case("truncated PNG", lambda t: [one(t), str(_write(t / "in" / "cut.png", png(t / "whole.png").read_bytes()[:120])), "-o", out(t), *seg()], 1,
         ("cut.png: cannot decode image",), ["one.fake.json"]),
    Case("120-megapixel header refused before decoding", lambda t: [one(t), str(_huge(t)), "-o", out(t), *seg()], 1,
         ("huge.png is 12000 x 10000 pixels (120 megapixels), over the limit of 50 megapixels", "--set pipeline.max_pixels=N"), ["one.fake.json"]),
    Case("pixel limit can be raised", lambda t: [one(t), "-o", out(t), *seg("--set", "pipeline.max_pixels=100")], 1,
         ("one.png is 64 x 48 pixels (0.00307 megapixels), over the limit of 0.0001 megapixels",), []),
    # -- other commands ------------------------------------------------------------------------
    Case("presets with an invalid value", lambda t: ["default", "--set", "classifier.clip.mode=densee"], 2, ("classifier.clip.mode: 'densee' is not one of",), None, "presets"),
    Case("eval with a missing prediction file", lambda t: ["--gt-json", str(t / "g.json"), "--gt-dir", str(t), "--pred-json", str(t / "p.json"), "--pred-dir", str(t)], 2,
         ("ground-truth JSON file", "does not exist"), None, "eval"),
    Case("new-plugin into a non-empty folder", lambda t: [str((t / "p").mkdir() or (t / "p" / "x").write_text("") or t / "p")], 2,
         ("exists and is not an empty folder",), None, "new-plugin"),
]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _huge(tmp: Path) -> Path:
    path = tmp / "in" / "huge.png"
    Image.new("L", (12000, 10000)).save(path, optimize=True)
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_case(case: Case, tmp_path, capsys, with_plugins):
    args = case.setup(tmp_path)
    capsys.readouterr()
    try:
        code = main([case.command, *args])
    finally:
        while _HELD:
            _HELD.pop().close()
    captured = capsys.readouterr()
    assert code == case.code, captured.err
    for words in case.says:
        assert words in captured.err + captured.out, f"{words!r} not in:\n{captured.err}"
    assert "Traceback" not in captured.err
    folder = tmp_path / "out"
    if case.outputs is None:
        assert not folder.exists(), sorted(p.name for p in folder.rglob("*"))
    else:
        assert outputs(folder) == case.outputs
        assert not list(folder.rglob(".*.tmp"))


def test_the_battery_has_at_least_40_cases():
    assert len(CASES) >= 40


# -- one documented rule per input kind, with exact values -----------------------------------------


def _pil(mode: str, array: np.ndarray) -> Image.Image:
    return Image.fromarray(array).convert(mode) if mode != array.dtype else Image.fromarray(array)


VALUE_CASES = [
    ("uint8 as is", np.full((2, 2, 3), 77, np.uint8), 77),
    ("bool", np.ones((2, 2), bool), 255),
    ("uint16 scaled by 1/257", np.full((2, 2), 257 * 10, np.uint16), 10),
    ("int32 within 0..255 is 8-bit", np.full((2, 2), 200, np.int32), 200),
    ("int32 within 0..65535 is 16-bit", np.full((2, 2), 257 * 100, np.int32), 100),
    ("float in [0, 1]", np.full((2, 2), 0.5, np.float32), 128),
    ("float 128.0 is 128, never stretched", np.full((2, 2, 3), 128.0, np.float64), 128),
    ("float in [0, 255]", np.full((2, 2), 254.6, np.float32), 255),
]


@pytest.mark.parametrize(("name", "array", "value"), VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_array_rules(name, array, value):
    rgb = as_rgb_array(array)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3) and (rgb == value).all()


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((2, 2), -1.0, np.float32), "float pixel values must be in [0, 1] or [0, 255]; this image has -1..-1"),
        (np.full((2, 2), 300.0, np.float32), "this image has 300..300"),
        (np.full((2, 2), 70000, np.int32), "integer pixel values must be 8-bit (0..255) or 16-bit (0..65535); this int32 image has 70000..70000"),
        (np.full((2, 2), -5, np.int16), "this int16 image has -5..-5"),
    ],
)
def test_values_outside_the_rules_are_refused(array, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        as_rgb_array(array)


def test_pil_i_mode_and_files_follow_the_same_rules(tmp_path):
    values = np.arange(0, 256, 64, dtype=np.int32).reshape(1, 4)  # 0, 64, 128, 192
    assert as_rgb_array(Image.fromarray(values, mode="I"))[0, :, 0].tolist() == [0, 64, 128, 192]
    Image.fromarray((values * 257).astype(np.uint16)).save(tmp_path / "16bit.png")
    assert read_image(tmp_path / "16bit.png")[0, :, 0].tolist() == [0, 64, 128, 192]
    Image.fromarray(np.full((2, 2), 128.0, np.float32), mode="F").save(tmp_path / "f.tif")
    assert read_image(tmp_path / "f.tif").tolist() == [[[128] * 3] * 2] * 2


def test_exif_orientation_is_applied_to_pil_images_as_to_files(tmp_path):
    img = Image.fromarray(make_shapes_image(20, 40))  # 40 wide, 20 tall
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    from_file = read_image(tmp_path / "rotated.jpg")
    with Image.open(tmp_path / "rotated.jpg") as opened:
        from_pil = as_rgb_array(opened)
    assert from_file.shape == from_pil.shape == (40, 20, 3)  # upright: tall
    assert np.array_equal(from_file, from_pil)


@pytest.mark.parametrize(("size", "work"), [((40, 4000), (32, 3200)), ((4000, 5), (4000, 5)), ((768, 1024), (768, 1024)), ((3000, 4000), (768, 1024))])
def test_thin_images_keep_the_minimum_side(size, work):
    assert working_size(*size, 1024, 32) == work


@pytest.mark.parametrize(("stem", "message"), [("", "must be a non-empty string"), ("../x", "plain file name"), ("sub/x", "plain file name"), (".x", "starts with '.'")])
def test_bad_stems_write_nothing(stem, message, tmp_path):
    pipe = Pipeline(registry=registry_with(FakeComponentsPlugin()), overrides=list(FAKE_OVERRIDES), device="cpu")
    image = make_shapes_image()
    result = pipe.segment(image, "person")
    with pytest.raises(InputError, match=message):
        pipe.export(result, image, tmp_path / "out", stem)
    assert not (tmp_path / "out").exists() or outputs(tmp_path / "out") == []
    assert check_stem("ok-name") == "ok-name"


def test_outputs_get_the_usual_permissions(tmp_path, with_plugins):
    old = os.umask(0o022)
    try:
        assert main(["segment", one(tmp_path), "-o", out(tmp_path), *seg("--format", "coco-panoptic")]) == 0
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert modes == {
        "one.fake.json": "0o644", "one.png": "0o644", "panoptic.json": "0o644", "ovpanoptic-manifest.jsonl": "0o644",
        "one.json": "0o644", "panoptic.json.categories.json": "0o644",  # the exporter's per-image part and category table
    }


def test_api_argument_types():
    with pytest.raises(InputError, match=r"overrides must be a list of 'KEY=VALUE' strings"):
        Pipeline(overrides="pipeline.max_side=512")
    pipe = Pipeline(registry=registry_with(FakeComponentsPlugin()), device="cpu")
    with pytest.raises(InputError, match="no class names given"):
        pipe.vocabulary(None)


def test_a_cli_run_prints_no_library_warnings(tmp_path, plugin_site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]), "OVPANOPTIC_DISABLE_PLUGINS": ""}
    sets = [a for o in FAKE_OVERRIDES[:2] for a in ("--set", o)]
    proc = subprocess.run(
        [sys.executable, "-m", "ovpanoptic", "segment", one(tmp_path), "--classes", "person, road", "-o", out(tmp_path), *sets,
         "--device", "cpu", "--no-progress", "--format", "overlay", "-v"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr  # detectron2's import-time FutureWarnings are silenced at the source
    # -v: ovpanoptic's loggers only
    lines = proc.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["INFO ovpanoptic.pipeline", "INFO ovpanoptic.cli"], proc.stderr
    assert lines[0] == "INFO ovpanoptic.pipeline: device cpu (pipeline.device = 'cpu')"  # resolved once, for the name check
    assert json.loads((tmp_path / "out" / "ovpanoptic-manifest.jsonl").read_text().splitlines()[1])["status"] == "done"
