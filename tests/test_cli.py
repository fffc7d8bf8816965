"""The command line, in process and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovpanoptic import __version__
from ovpanoptic.cli import build_parser, main
from ovpanoptic.testing import make_shapes_image

from conftest import FAKE_OVERRIDES, outputs


def fake_args():
    return [arg for o in FAKE_OVERRIDES for arg in ("--set", o)] + ["--no-progress", "--device", "cpu"]


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(make_shapes_image()).save(folder / "one.png")
    Image.fromarray(make_shapes_image()[:, ::-1]).save(folder / "two.jpg")
    return folder


def test_segment_folder_writes_outputs_and_reports(with_plugins, images, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["segment", str(images), "--classes", "person, road", "-o", str(out), "--format", "fake-json,segments-csv", *fake_args()])
    assert code == 0
    assert outputs(out) == [
        "one.fake.json", "one.segments.csv", "two.fake.json", "two.segments.csv",
    ]
    summary = json.loads((out / "one.fake.json").read_text())
    assert [(s["category"], s["area"]) for s in summary["segments"]] == [("person", 768), ("road", 1536), ("person", 768)]
    csv_lines = (out / "one.segments.csv").read_text().splitlines()
    assert csv_lines[0] == "id,class,kind,score,area,x0,y0,x1,y1"
    assert csv_lines[2] == "2,road,stuff,0.9000,1536,32,0,64,48"
    assert "2 of 2 image(s) segmented" in capsys.readouterr().out


def test_corrupt_file_fails_alone_and_the_batch_continues(with_plugins, images, tmp_path, capsys):
    (images / "broken.png").write_bytes(b"garbage")
    out = tmp_path / "out"
    code = main(["segment", str(images), "--classes", "person", "-o", str(out), *fake_args()])
    captured = capsys.readouterr()
    assert code == 1
    assert "broken.png: not an image file Pillow can read" in captured.err
    assert outputs(out) == ["one.fake.json", "two.fake.json"]
    assert "2 of 3 image(s) segmented" in captured.out


def test_bad_vocabulary_fails_before_any_output(with_plugins, images, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["segment", str(images), "--classes", "person,,car", "-o", str(out), *fake_args()])
    assert code == 2
    assert "error: class 2 of --classes is empty" in capsys.readouterr().err
    assert not out.exists()


def test_unknown_format_fails_before_any_output(with_plugins, images, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["segment", str(images), "--classes", "person", "-o", str(out), "--format", "fake-jsn", *fake_args()])
    assert code == 2
    assert "exporter 'fake-jsn' is not provided by any installed, enabled plugin. Did you mean 'fake-json'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("value", ["", " ", ",,", "fake-json,", "fake-json, ,segments-csv"])
def test_an_empty_format_name_is_refused_before_any_output(with_plugins, images, tmp_path, capsys, value):
    out = tmp_path / "out"
    code = main(["segment", str(images), "--classes", "person", "-o", str(out), "--format", value, *fake_args()])
    assert code == 2
    assert capsys.readouterr().err == (
        f"error: --format {value!r} holds an empty exporter name: give names such as --format coco-panoptic,cvat "
        "('ovpanoptic plugins' lists exporters), or leave --format out for the config's pipeline.exporters\n"
    )
    assert not out.exists()


def test_eval_says_which_file_and_format_it_read_for_each_side(coco_sample, capsys):
    code = main(["eval", "--gt", str(coco_sample), "--pred", str(coco_sample / "panoptic.json"), "--json"])
    assert code == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["all"]["pq"] == 1.0
    assert captured.err == (
        f"ground truth: {coco_sample / 'panoptic.json'} (coco-panoptic)\nprediction: {coco_sample / 'panoptic.json'} (coco-panoptic)\n"
    )


def test_named_vocabulary_and_class_file_plugin(with_plugins, images, tmp_path, capsys):
    classes = tmp_path / "classes.txt"
    classes.write_text("# warehouse\nforklift|lift truck\npallet\n[stuff]\nfloor\n")
    out = tmp_path / "out"
    code = main(["segment", str(images / "one.png"), "--classes", f"@{classes}", "-o", str(out), *fake_args()])
    assert code == 0
    summary = json.loads((out / "one.fake.json").read_text())
    assert summary["vocabulary"] == "classes"
    assert [s["category"] for s in summary["segments"]] == ["forklift", "pallet", "floor", "forklift"]
    before = (out / "one.fake.json").read_bytes()
    code = main(["segment", str(images / "one.png"), "--vocabulary", "tabletop", "-o", str(out), *fake_args()])
    assert code == 2  # the folder holds results of another vocabulary: refused before anything is written
    assert (
        f"error: {out} holds results made with other settings: the vocabulary (category 1 is 'forklift' (thing) there, "
        "'target_object' (thing) now). Mixing them would leave results that disagree in one folder. Choose another "
        "output folder with -o, or add --overwrite to replace the 1 result(s) there"
    ) in capsys.readouterr().err
    assert (out / "one.fake.json").read_bytes() == before
    code = main(["segment", str(images / "one.png"), "--vocabulary", "tabletop", "-o", str(out), "--overwrite", *fake_args()])
    assert code == 0
    assert json.loads((out / "one.fake.json").read_text())["vocabulary"] == "tabletop"


def test_default_preset_without_weights_says_how_to_get_them(images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "out"
    code = main(["segment", str(images), "--classes", "person", "--no-progress", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2  # the whole batch stops before any image: class names are encoded first
    assert err.startswith("error: CLIP convnext_base_w checkpoint (laion2b_s13b_b82k_augreg) is not in the local cache and offline mode is on")
    assert "ovpanoptic download clip --model convnext_base_w" in err and "Traceback" not in err
    assert not out.exists()


def test_missing_component_is_named_without_traceback(images, capsys):
    code = main(["segment", str(images), "--classes", "person", "--no-progress", "--disable-plugin", "sam2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: proposal generator 'sam2' (pipeline.proposal_generator in ")
    assert "Traceback" not in err


def test_max_side_option_keeps_output_size(with_plugins, images, tmp_path):
    out = tmp_path / "out"
    assert main(["segment", str(images / "one.png"), "--classes", "person, road", "--max-side", "32", "-o", str(out), *fake_args()]) == 0
    summary = json.loads((out / "one.fake.json").read_text())
    assert (summary["height"], summary["width"]) == (48, 64)
    assert [s["area"] for s in summary["segments"]] == [768, 1536, 768]


def test_vocabularies_and_presets_commands(capsys):
    assert main(["vocabularies"]) == 0
    assert "coco                 COCO panoptic: 133 classes" in capsys.readouterr().out
    assert main(["vocabularies", "indoor-navigation"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.split()[:3] == ["1", "stuff", "traversable_ground"]
    assert main(["presets"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["clean", "cpu-fast", "default", "interactive"]
    assert main(["presets", "cpu-fast", "--set", "pipeline.max_side=640"]) == 0
    assert json.loads(capsys.readouterr().out)["pipeline"]["max_side"] == 640


def test_segment_help_documents_every_option():
    seg = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "segment")[1]
    text = seg.format_help()
    for action in seg._actions:
        for flag in action.option_strings:
            assert flag in text
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings} has no help"
    for word in ("--classes", "--stuff", "--config", "--set", "--format", "--device", "--max-side", "-o", "--disable-plugin"):
        assert word in text


def test_each_command_is_run_by_the_module_that_defines_its_options():
    """Issue 28: a command's options are defined beside the function that runs it; ``build_parser`` only
    assembles the commands, in the order of ``cli.COMMANDS``."""
    import argparse

    from ovpanoptic import cli

    names = []
    for add in cli.COMMANDS:
        sub = argparse.ArgumentParser().add_subparsers()
        add(sub)
        [(name, parser)] = sub.choices.items()
        handler = parser.get_default("handler")
        assert callable(handler), name
        assert (handler.__module__, add.__module__.startswith("ovpanoptic.cli.")) == (add.__module__, True), name
        names.append(name)
    commands = build_parser()._subparsers._group_actions[0].choices
    assert names == list(commands) and len(set(names)) == 16
    assert {name: parser.get_default("handler").__module__ for name, parser in commands.items()} == {
        "segment": "ovpanoptic.cli.segment", "segment-video": "ovpanoptic.cli.segment",
        "eval": "ovpanoptic.cli.evaluate", "eval-video": "ovpanoptic.cli.evaluate", "evaluate": "ovpanoptic.cli.evaluate",
        "qa": "ovpanoptic.cli.qa", "package": "ovpanoptic.cli.qa",
        "push": "ovpanoptic.cli.labelling", "serve": "ovpanoptic.cli.labelling",
        "plugins": "ovpanoptic.cli.info", "doctor": "ovpanoptic.cli.info", "new-plugin": "ovpanoptic.cli.info",
        "vocabularies": "ovpanoptic.cli.info", "download": "ovpanoptic.cli.info", "presets": "ovpanoptic.cli.info",
        "demo": "ovpanoptic.cli.demo",
    }


def test_version_and_help_in_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "ovpanoptic", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == f"ovpanoptic {__version__}"
    proc = subprocess.run([sys.executable, "-m", "ovpanoptic", "segment", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--classes" in proc.stdout


# -- issue 27 ------------------------------------------------------------------------------------


def test_names_clip_reads_alike_stop_the_default_preset_before_anything(images, tmp_path, capsys):
    """The default preset's CLIP tokenizer (built into open_clip, no weights needed) keys the names."""
    out = tmp_path / "out"
    code = main(["segment", str(images), "--classes", "t-shirt, man's shoe, t - shirt", "--no-progress", "-o", str(out)])
    assert code == 2
    assert capsys.readouterr().err == (
        "error: class name 't - shirt' appears twice (as 't-shirt' and 't - shirt'): the classifier 'clip' reads both "
        "names as the same text, so one of them could never win: remove or rename one\n"
    )
    assert not out.exists()


def test_runs_with_sam2_and_detectron2_print_no_deprecation_warnings(with_plugins, images, sam2_tiny_checkpoint, tmp_path):
    """A real subprocess: sam2 (its predictor scripts transforms with torch.jit.script), the detectron2
    fuser and the overlay exporter (detectron2 scripts functions at import); then a video run with the
    sam2-video tracker. torch warns "`torch.jit.script` is deprecated" for each; nothing may reach stderr."""
    sam2 = [
        "--set", f"proposal_generator.sam2.model={str(sam2_tiny_checkpoint)!r}", "--set", "proposal_generator.sam2.points_per_side=4",
        "--set", "proposal_generator.sam2.pred_iou_thresh=0.0", "--set", "proposal_generator.sam2.stability_score_thresh=0.0",
        "--set", "pipeline.classifier='cycling'", "--set", "pipeline.fuser='detectron2'", "--no-progress", "--device", "cpu",
    ]
    cli = [sys.executable, "-m", "ovpanoptic"]
    proc = subprocess.run(
        [*cli, "segment", str(images / "one.png"), "--classes", "person, road", "-o", str(tmp_path / "out"), "--format", "overlay,coco-panoptic", *sam2],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "one.overlay.png").is_file()
    assert proc.stderr == ""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(make_shapes_image(), 2 * i, axis=1)).save(frames / f"frame_{i}.png")
    tracker = ["--tracker", "sam2-video", "--set", f"tracker.sam2-video.model={str(sam2_tiny_checkpoint)!r}", "--keyframe-every", "2"]
    proc = subprocess.run(
        [*cli, "segment-video", str(frames), "--classes", "person, road", "-o", str(tmp_path / "video"), *tracker, *sam2],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 frame(s) of frames segmented (2 keyframes)" in proc.stdout
    assert proc.stderr == ""


def test_output_folders_of_image_and_video_runs_get_one_check(with_plugins, images, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for command in (["segment", str(images / "one.png")], ["segment-video", str(images), "--tracker", "hold"]):
        for outdir, message in (
            (afile, f"error: the output folder {afile} is a file, not a folder: choose another output folder with -o\n"),
            (afile / "sub", f"error: cannot create the output folder {afile / 'sub'}: {afile} is a file; choose another output folder with -o\n"),
            (Path("/proc/ovp"), "error: cannot create the output folder /proc/ovp: cannot write into /proc (it is on the kernel's proc file "
                                "system, which holds no files); choose another output folder with -o\n"),
        ):
            if str(outdir).startswith("/proc") and not Path("/proc/self").is_dir():
                continue  # not Linux
            code = main([*command, "--classes", "person", "-o", str(outdir), *fake_args()])
            assert (code, capsys.readouterr().err) == (2, message), command
    assert afile.read_text() == "x"
