"""Batches in the situations a data team meets: inputs inside the output folder, moved folders,
deleted outputs, broken manifests, full disks, closed pipes, odd file names."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovpanoptic import hookimpl
from ovpanoptic.cli import main
from ovpanoptic.evaluation import evaluate_panoptic
from ovpanoptic.testing import SummaryJSONExporter, make_shapes_image

from conftest import FAKE_OVERRIDES, outputs

FAKES = [arg for o in FAKE_OVERRIDES[:3] for arg in ("--set", o)] + ["--no-progress", "--device", "cpu"]
COCO = ["--format", "coco-panoptic"]
MANIFEST = "ovpanoptic-manifest.jsonl"


def images(folder: Path, n: int = 3, names: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names or [f"img{k:03d}.png" for k in range(n)]):
        Image.fromarray(np.roll(make_shapes_image(), 5 * i, axis=1)).save(folder / name)
    return folder


def segment(*args: str, classes: str = "person, car, road", out=None, err=None) -> int:
    return main(["segment", *args, "--classes", classes, *FAKES], stdout=out, stderr=err)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def panoptic_files(out: Path) -> list[str]:
    return [i["file_name"] for i in json.loads((out / "panoptic.json").read_text())["images"]]


def test_inputs_inside_the_output_folder_are_refused_and_untouched(tmp_path, capsys, with_plugins):
    data = images(tmp_path / "data" / "panoptic")
    before = {p.name: md5(p) for p in data.iterdir()}
    assert segment(str(data), "-o", str(tmp_path / "data"), *COCO) == 2
    err = capsys.readouterr().err
    assert f"input {data / 'img000.png'} is inside the output folder {tmp_path / 'data'} (3 input(s) are)" in err
    assert {p.name: md5(p) for p in data.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["panoptic"]
    # The output folder as its own input folder, and a glob that would pick up the outputs
    assert segment(str(data), "-o", str(data), *COCO) == 2
    tree = images(tmp_path / "tree")
    assert segment(str(tree / "*.png"), "-o", str(tree / "out"), *COCO) == 0
    assert segment(str(tree / "**" / "*.png"), "-o", str(tree / "out"), *COCO) == 2
    assert "is inside the output folder" in capsys.readouterr().err


def test_a_refused_run_never_touches_the_manifest_of_the_run_holding_the_folder(tmp_path, capsys, with_plugins):
    data = images(tmp_path / "in")
    out = tmp_path / "out"
    assert segment(str(data), "-o", str(out), *COCO) == 0
    manifest = (out / MANIFEST).read_text()
    with open(out / MANIFEST, "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert segment(str(data), "-o", str(out), *COCO, "--overwrite") == 2
    assert "another ovpanoptic run is writing into" in capsys.readouterr().err
    assert (out / MANIFEST).read_text() == manifest
    assert segment(str(data), "-o", str(out), *COCO) == 0
    assert "(3 done by an earlier run)" in capsys.readouterr().out


def test_file_names_that_are_not_utf8_work(tmp_path, capsys, with_plugins):
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/bad\xffname.png"
    Image.fromarray(make_shapes_image()).save(raw.decode(errors="surrogateescape"))
    out = tmp_path / "out"
    assert segment(str(folder), "-o", str(out), *COCO) == 0
    assert outputs(out / "panoptic") == ["bad_name.png"]
    assert "1 of 1 image(s) segmented" in capsys.readouterr().out


def test_resume_notices_deleted_outputs_and_rebuilds_combined_files(tmp_path, capsys, with_plugins):
    data = images(tmp_path / "in", 4)
    out = tmp_path / "out"
    assert segment(str(data), "-o", str(out), *COCO) == 0
    reference = (out / "panoptic.json").read_bytes()
    (out / "panoptic" / "img002.png").unlink()
    capsys.readouterr()
    assert segment(str(data), "-o", str(out), *COCO) == 0
    assert "4 of 4 image(s) segmented into" in capsys.readouterr().out and (out / "panoptic" / "img002.png").exists()
    (out / "panoptic.json").unlink()
    images(tmp_path / "in", names=("new1.png", "new2.png"))
    assert segment(str(data), "-o", str(out), *COCO) == 0
    assert panoptic_files(out) == ["img000.jpg", "img001.jpg", "img002.jpg", "img003.jpg", "new1.jpg", "new2.jpg"]
    assert reference != (out / "panoptic.json").read_bytes()


def test_a_closed_stdout_does_not_stop_the_batch(tmp_path, with_plugins):
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    data = images(tmp_path / "in", 5)
    out = tmp_path / "out"
    assert segment(str(data), "-o", str(out), *COCO, out=Closed(), err=io.StringIO()) == 0
    lines = (out / MANIFEST).read_text().splitlines()
    assert sum('"status": "done"' in line for line in lines) == 5


def test_user_files_named_like_temporaries_survive(tmp_path, with_plugins):
    out = tmp_path / "out"
    (out / "mine" / "deep").mkdir(parents=True)
    (out / "mine" / "deep" / ".report.tmp").write_text("keep")
    (out / ".notes.tmp").write_text("keep")
    (out / ".x.png.abcd1234.tmp").write_text("an atomic write a killed run left")
    assert segment(str(images(tmp_path / "in")), "-o", str(out), *COCO) == 0
    assert (out / "mine" / "deep" / ".report.tmp").read_text() == "keep"
    assert (out / ".notes.tmp").read_text() == "keep"
    assert not (out / ".x.png.abcd1234.tmp").exists()


def test_a_moved_input_folder_is_recognised_by_content(tmp_path, capsys, with_plugins):
    data = images(tmp_path / "in")
    out = tmp_path / "out"
    assert segment(str(data), "-o", str(out), *COCO) == 0
    data.rename(tmp_path / "moved")
    capsys.readouterr()
    assert segment(str(tmp_path / "moved"), "-o", str(out), *COCO) == 0
    assert "3 of 3 image(s) segmented into" in capsys.readouterr().out
    assert panoptic_files(out) == ["img000.jpg", "img001.jpg", "img002.jpg"]  # no img000-1 duplicates


@pytest.mark.parametrize(
    ("damage", "code", "words"),
    [
        (lambda m: m.write_text(m.read_text() + "42\nnull\n{\"input\": 1}\n\xff\xfe\n"), 0, "(3 done by an earlier run)"),
        (lambda m: m.write_text("[1, 2]\n" + "\n".join(m.read_text().splitlines()[1:])), 2, "is not an ovpanoptic manifest of version 1"),
        (lambda m: (m.unlink(), m.mkdir()), 2, "is a folder, not a manifest"),
    ],
    ids=["garbage lines", "first line edited", "a folder"],
)
def test_damaged_manifests_give_messages_not_tracebacks(tmp_path, capsys, with_plugins, damage, code, words):
    data = images(tmp_path / "in")
    out = tmp_path / "out"
    assert segment(str(data), "-o", str(out), *COCO) == 0
    damage(out / MANIFEST)
    capsys.readouterr()
    assert segment(str(data), "-o", str(out), *COCO) == code
    captured = capsys.readouterr()
    assert words in captured.out + captured.err and "Traceback" not in captured.err


def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path, with_plugins):
    data = images(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert segment(str(data / "img000.png"), "-o", str(out), *COCO) == 0
    manifest = out / MANIFEST
    manifest.write_bytes(manifest.read_bytes()[:-20])  # the run was killed while writing
    assert segment(str(data), "-o", str(out), *COCO) == 0
    records = [json.loads(line) for line in manifest.read_text().splitlines()[1:] if line.startswith('{"digest"')]
    assert sorted(Path(r["input"]).name for r in records if r["status"] == "done") == ["img000.png", "img001.png"]


class DiskFullOnSecond(SummaryJSONExporter):
    calls = 0

    def export(self, result, image, outdir, stem):
        type(self).calls += 1
        if type(self).calls >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(outdir) / f"{stem}.x"))
        return super().export(result, image, outdir, stem)


class DiskFull:
    @hookimpl
    def register_exporters(self, register):
        register("disk-full", lambda config, context: DiskFullOnSecond())


def test_a_full_disk_stops_the_batch_with_a_clear_message(tmp_path, capsys, monkeypatch):
    import ovpanoptic.pipeline as pipeline_module
    from ovpanoptic.plugins import Registry, make_plugin_manager
    from ovpanoptic.testing import FakeComponentsPlugin

    monkeypatch.setattr(
        pipeline_module.Registry, "create",
        lambda disable=(), **kw: Registry(make_plugin_manager(disable, plugins=[("fakes", FakeComponentsPlugin()), ("full", DiskFull())], env={})),
    )
    DiskFullOnSecond.calls = 0
    out = tmp_path / "out"
    assert segment(str(images(tmp_path / "in")), "-o", str(out), "--format", "disk-full") == 1
    err = capsys.readouterr().err
    assert f"error: the batch stopped at {tmp_path / 'in' / 'img001.png'}: cannot write into {out} (No space left on device" in err
    assert "The 1 image(s) done are kept" in err and "Traceback" not in err
    assert outputs(out) == ["img000.fake.json"]
    DiskFullOnSecond.calls = 1  # the first image already hits it: nothing done, folder as it was
    assert segment(str(images(tmp_path / "in2")), "-o", str(tmp_path / "out2"), "--format", "disk-full") == 2
    assert "then run the same command again" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_a_redone_image_that_fails_leaves_no_earlier_result(tmp_path, with_plugins):
    data = images(tmp_path / "in")
    out = tmp_path / "out"
    assert segment(str(data), "-o", str(out), *COCO) == 0
    (data / "img001.png").write_bytes(b"now garbage")
    assert segment(str(data), "-o", str(out), *COCO) == 1
    assert outputs(out / "panoptic") == ["img000.png", "img002.png"]
    assert panoptic_files(out) == ["img000.jpg", "img002.jpg"]


def test_exporter_options_cannot_escape_the_output_folder(tmp_path, capsys, with_plugins):
    out = tmp_path / "out"
    assert segment(str(images(tmp_path / "in")), "-o", str(out), *COCO, "--set", "exporter.coco-panoptic.png_dir='../escape'") == 2
    assert "png_dir '../escape' must be a plain file or folder name inside the output folder" in capsys.readouterr().err
    assert not (tmp_path / "escape").exists() and not out.exists()


def test_overwrite_removes_only_recorded_files_inside_the_folder(tmp_path, with_plugins):
    data = images(tmp_path / "in")
    out = tmp_path / "out"
    assert segment(str(data), "-o", str(out), *COCO) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (out / "notes.txt").write_text("mine too")
    lines = (out / MANIFEST).read_text().splitlines()
    record = json.loads(lines[1])
    record["files"].append("../victim.txt")
    (out / MANIFEST).write_text("\n".join([lines[0], json.dumps(record), *lines[2:]]) + "\n")
    assert segment(str(data), "-o", str(out), *COCO, "--overwrite", classes="dog, cat") == 0
    assert victim.read_text() == "mine" and (out / "notes.txt").read_text() == "mine too"


def test_hidden_files_in_a_folder_are_not_inputs_and_formats_order_does_not_matter(tmp_path, capsys, with_plugins):
    data = images(tmp_path / "in", names=("a.png", "._a.png", ".thumb.png"))
    (data / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    out = tmp_path / "out"
    assert segment(str(data), "-o", str(out), "--format", "coco-panoptic,summary") == 0
    assert "1 of 1 image(s) segmented" in capsys.readouterr().out
    assert segment(str(data), "-o", str(out), "--format", "summary,coco-panoptic") == 0
    assert "(1 done by an earlier run)" in capsys.readouterr().out
    assert segment(str(data), "-o", "", *COCO) == 2
    assert "the output folder is empty (-o '')" in capsys.readouterr().err


def test_eval_notes_images_paired_by_id_whose_files_differ(tmp_path, with_plugins):
    gt = tmp_path / "gt"
    assert segment(str(images(tmp_path / "a", names=("1.png", "2.png"))), "-o", str(gt), *COCO) == 0
    pred = tmp_path / "pred"
    assert segment(str(images(tmp_path / "b", names=("x.png", "1.png"))), "-o", str(pred), *COCO) == 0
    # numeric stems keep their number, the others follow the largest: 1.png -> 1, x.png -> 2
    assert [(i["id"], i["file_name"]) for i in json.loads((pred / "panoptic.json").read_text())["images"]] == [(1, "1.jpg"), (2, "x.jpg")]
    report = evaluate_panoptic(gt / "panoptic.json", gt / "panoptic", pred / "panoptic.json", pred / "panoptic")
    assert report.notes[-1] == "1 image(s) paired by image_id have differently named PNGs (2.png <-> x.png): check that the ids name the same images"
    with pytest.raises(Exception, match="is a folder: pass the JSON file"):
        evaluate_panoptic(gt / "panoptic.json", gt / "panoptic", pred, pred / "panoptic")


def test_nan_pixels_and_int32_images_name_their_problem(tmp_path):
    from ovpanoptic.errors import ImageReadError, InputError
    from ovpanoptic.imageio import read_image

    Image.fromarray(np.full((4, 4), np.nan, np.float32), mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match=r"nan.tif: the image has NaN or infinite pixel values$"):
        read_image(tmp_path / "nan.tif")
    Image.fromarray(np.full((4, 4), 70000, np.int32), mode="I").save(tmp_path / "big.tif")
    with pytest.raises(InputError, match="this int32 image has 70000..70000"):
        read_image(tmp_path / "big.tif")


def _batch_files(out: Path) -> dict[str, bytes]:
    """Every file of a batch folder; the manifest and summaries without their stage timings
    (seconds differ between any two runs)."""
    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file() and ".lock" not in p.name):
        data = path.read_bytes()
        if path.name == MANIFEST:
            lines = [json.loads(line) for line in data.decode().splitlines()]
            for line in lines:
                line.pop("timings", None)
                for key in [k for k in line if "time" in k or k in ("created", "started", "pid", "host")]:
                    line.pop(key)
            data = json.dumps(lines, sort_keys=True).encode()
        elif path.name.endswith(".summary.json"):
            summary = json.loads(data)
            assert summary.pop("timings")
            data = json.dumps(summary, sort_keys=True).encode()
        files[str(path.relative_to(out))] = data
    return files


def test_overlapped_batch_writes_the_sequential_files_byte_for_byte(tmp_path):
    """Reading ahead and exporting behind (the local engine's default) changes no byte: the
    images' files, the combined files and the manifest's records (in input order) are those of
    the sequential order, with an unreadable image and a skipped one among them."""
    from ovpanoptic.engines.local import run_local
    from ovpanoptic.pipeline import Pipeline
    from ovpanoptic.testing import FakeComponentsPlugin, registry_with

    data = images(tmp_path / "in", 7)
    (data / "img003.png").write_bytes(b"not an image")
    inputs = sorted(data.iterdir())
    formats = ["coco-panoptic", "overlay", "summary"]
    folders = {}
    for overlap in (False, True):
        pipe = Pipeline(overrides=list(FAKE_OVERRIDES[:3]), device="cpu", registry=registry_with(FakeComponentsPlugin()))
        vocabulary = pipe.vocabulary("person, car, road")
        pipe.build_components(formats)
        out = tmp_path / f"out-{overlap}"
        run_local(pipe, vocabulary, inputs[:2], out, formats, overlap=overlap)  # a resumed folder: 2 skipped
        seen = []
        report = run_local(pipe, vocabulary, inputs, out, formats, overlap=overlap, on_image=lambda o: seen.append((o.path.name, o.status)))
        assert seen == [(p.name, "skipped" if i < 2 else "failed" if p.name == "img003.png" else "done") for i, p in enumerate(inputs)]
        assert report.done == 4 and len(report.failed) == 1
        folders[overlap] = _batch_files(out)
    assert list(folders[True]) == list(folders[False])
    for name, content in folders[False].items():
        assert folders[True][name] == content, name
    assert len(folders[True]) >= 3 * 6


def test_an_overlapped_batch_stopped_early_records_only_exported_images(tmp_path, capsys, monkeypatch):
    """A full disk at the second export stops the batch: the image segmented ahead is not
    written or recorded (test_a_full_disk_stops_the_batch_with_a_clear_message checks the message)."""
    import ovpanoptic.pipeline as pipeline_module
    from ovpanoptic.plugins import Registry, make_plugin_manager
    from ovpanoptic.testing import FakeComponentsPlugin

    monkeypatch.setattr(
        pipeline_module.Registry, "create",
        lambda disable=(), **kw: Registry(make_plugin_manager(disable, plugins=[("fakes", FakeComponentsPlugin()), ("full", DiskFull())], env={})),
    )
    DiskFullOnSecond.calls = 0
    out = tmp_path / "out"
    assert segment(str(images(tmp_path / "in", 5)), "-o", str(out), "--format", "disk-full") == 1
    assert outputs(out) == ["img000.fake.json"]
    records = [r for line in (out / MANIFEST).read_text().splitlines() if "status" in (r := json.loads(line))]
    assert [(Path(r["input"]).name, r["status"]) for r in records] == [("img000.png", "done")]


def test_a_run_killed_while_probing_its_output_folder_leaves_nothing_the_next_run_keeps(tmp_path, monkeypatch):
    """Found by a full run: a run killed between creating and removing its write probe left
    ``.ovpanoptic-probe-XXXX`` in the output folder for good. The probe is named like an atomic write's
    temporary, which the next run's clean-up removes."""
    from ovpanoptic.atomic import check_output_folder
    from ovpanoptic.engines.batch import remove_stale_temporaries

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(os, "unlink", lambda name: None)  # the run "dies" before it removes the probe
    check_output_folder(out, "pick another folder")
    monkeypatch.undo()
    (left,) = list(out.iterdir())
    assert left.name.startswith(".ovpanoptic-probe.")
    assert remove_stale_temporaries(out) == [left] and not list(out.iterdir())
