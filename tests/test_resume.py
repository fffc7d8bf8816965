"""Resumable batches: a real ``ovpanoptic segment`` subprocess killed with SIGKILL mid-batch and
mid-write, then resumed, ends with the very bytes of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ovpanoptic.testing import make_shapes_image

from conftest import FAKE_OVERRIDES, outputs

MANIFEST = "ovpanoptic-manifest.jsonl"
N_IMAGES = 12


def make_images(folder: Path) -> Path:
    folder.mkdir()
    for i in range(N_IMAGES):
        img = np.roll(make_shapes_image(48, 64), 3 * i, axis=1)
        Image.fromarray(img).save(folder / (f"{i:03d}.png" if i % 3 else f"frame{i}.png"))
    return folder


def command(images: Path, out: Path) -> list[str]:
    sets = [a for o in FAKE_OVERRIDES[:3] for a in ("--set", o)]
    return [
        sys.executable, "-m", "ovpanoptic", "segment", str(images), "--classes", "square, bar, wall", "-o", str(out),
        "--format", "coco-panoptic,coco-instances,slow-json", "--no-progress", "--device", "cpu", *sets,
    ]


def env_for(site: Path, delay: float) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "OVPANOPTIC_TEST_SLOW_EXPORT": str(delay),
        "OVPANOPTIC_DISABLE_PLUGINS": "",
    }


def done_records(out: Path) -> int:
    path = out / MANIFEST
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines()[1:] if '"status": "done"' in line)


def kill_when(proc: subprocess.Popen, condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def test_killed_batch_resumes_to_the_bytes_of_an_uninterrupted_run(tmp_path, plugin_site):
    images = make_images(tmp_path / "imgs")
    reference = tmp_path / "reference"
    proc = subprocess.run(command(images, reference), env=env_for(plugin_site, 0), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"{N_IMAGES} of {N_IMAGES} image(s) segmented" in proc.stdout

    out = tmp_path / "out"
    env = env_for(plugin_site, 0.15)
    # 1. killed in the middle of a write: after 3 images, while slow-json's temporary file exists
    first = subprocess.Popen(command(images, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(first, lambda: done_records(out) >= 3 and any(out.glob(".*.slow.json.*.tmp")))
    stale = list(out.glob(".*.tmp"))
    assert stale, "the kill was meant to leave a temporary file behind"
    # 2. killed again at an arbitrary moment later on
    second = subprocess.Popen(command(images, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(second, lambda: done_records(out) >= 7)
    # 3. resumed to the end
    third = subprocess.run(command(images, out), env=env_for(plugin_site, 0), capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    last = third.stdout.strip().splitlines()[-1]
    skipped = int(last.rsplit("(", 1)[1].split()[0])
    assert 7 <= skipped < N_IMAGES and last == f"{N_IMAGES} of {N_IMAGES} image(s) segmented into {out} ({skipped} done by an earlier run)"
    assert not list(out.rglob(".*.tmp"))  # the killed runs' temporary files are gone
    assert tree(out) == tree(reference)  # byte for byte
    stems = [p.stem for p in images.iterdir()]
    assert sorted(tree(out)) == sorted(
        [f"panoptic/{s}.png" for s in stems] + [f"{s}.slow.json" for s in stems] + ["instances.json", "instances_results.json", "panoptic.json"]
        + [f".ovpanoptic/{j}.parts/{s}.json" for s in stems for j in ("panoptic.json", "instances.json")]
        + [".ovpanoptic/panoptic.json.categories.json", ".ovpanoptic/instances.json.categories.json"]
    )
    # ids: numeric stems keep their number, the others follow in input order, whatever run wrote them
    panoptic = json.loads((out / "panoptic.json").read_text())
    assert [(i["id"], i["file_name"]) for i in panoptic["images"]] == [
        (1, "001.jpg"), (2, "002.jpg"), (4, "004.jpg"), (5, "005.jpg"), (7, "007.jpg"), (8, "008.jpg"), (10, "010.jpg"),
        (11, "011.jpg"), (12, "frame0.jpg"), (13, "frame3.jpg"), (14, "frame6.jpg"), (15, "frame9.jpg"),
    ]

    def records(folder):
        lines = (folder / MANIFEST).read_text().splitlines()
        header = json.loads(lines[0])
        latest = {}
        for line in lines[1:]:
            r = json.loads(line)
            if "input" in r:  # not the "finished" lines (combined files written at the end of a run)
                latest[r["input"]] = (r["stem"], r["status"], r["digest"], tuple(r["files"]))
        return header["config_digest"], header["vocabulary_digest"], {Path(k).name: v for k, v in latest.items()}

    assert records(out) == records(reference)


def test_rerun_skips_done_images_redoes_changed_ones_and_overwrite_redoes_all(tmp_path, plugin_site):
    images = make_images(tmp_path / "imgs")
    out = tmp_path / "out"
    env = env_for(plugin_site, 0)
    assert subprocess.run(command(images, out), env=env, capture_output=True, timeout=300).returncode == 0
    Image.fromarray(make_shapes_image(48, 64)[::-1]).save(images / "001.png")  # changed content
    proc = subprocess.run(command(images, out), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{images / '001.png'}: 4 segments, ")  # only the changed image ran
    assert lines[1] == f"{N_IMAGES} of {N_IMAGES} image(s) segmented into {out} ({N_IMAGES - 1} done by an earlier run)"
    proc = subprocess.run([*command(images, out), "--overwrite"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == f"{N_IMAGES} of {N_IMAGES} image(s) segmented into {out}"
    assert len(outputs(out)) == N_IMAGES + 5  # slow-json files, panoptic.json, instances.json, instances_results.json, panoptic/, .ovpanoptic/


def video_command(frames: Path, out: Path, k: int) -> list[str]:
    sets = [a for o in ("pipeline.proposal_generator='tiles'", "pipeline.classifier='gated'", "pipeline.fuser='paint'") for a in ("--set", o)]
    return [
        sys.executable, "-m", "ovpanoptic", "segment-video", str(frames), "--classes", "square, bar, wall", "-o", str(out),
        "--keyframe-every", str(k), "--tracker", "hold", "--no-overlay", "--no-progress", "--device", "cpu", *sets,
    ]


def test_two_runs_racing_into_one_folder_the_second_is_refused_until_the_first_ends(tmp_path, plugin_site):
    """A real ``segment-video`` process holds its folder (held at a known state by the ``gated``
    classifier: its first keyframe written); a second video run with another K, an identical one
    and, with --overwrite, a video run and an image batch into the same folder are refused (exit 2,
    nothing touched); the first ends
    with its own settings throughout."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(10):
        Image.fromarray(np.roll(make_shapes_image(48, 64), 3 * i, axis=1)).save(frames / f"frame_{i}.png")
    out, gate = tmp_path / "out", tmp_path / "gate"
    plain = env_for(plugin_site, 0)
    first = subprocess.Popen(video_command(frames, out, 3), env={**plain, "OVPANOPTIC_TEST_GATE": str(gate)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not Path(f"{gate}.waiting").exists():  # the first keyframe is written, the run holds the folder
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never reached its second keyframe"
            time.sleep(0.01)
        held = tree(out)
        racers = (video_command(frames, out, 5), video_command(frames, out, 3), [*video_command(frames, out, 5), "--overwrite"],
                  [*command(frames, out), "--overwrite"])
        for racer in racers:
            proc = subprocess.run(racer, env=plain, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 2, proc.stderr
            assert f"another ovpanoptic run is writing into {out}: wait for it to end" in proc.stderr and "Traceback" not in proc.stderr
            assert tree(out) == held
        gate.touch()
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr
    settings = json.loads((out / ".video" / "settings.json").read_text())
    assert settings["tracking"]["keyframe_every"] == 3
    images = json.loads((out / "panoptic.json").read_text())["images"]
    assert [i["frame_index"] for i in images if i["keyframe"]] == [0, 3, 6, 9]
    assert not (out / MANIFEST).exists()
    again = subprocess.run(video_command(frames, out, 3), env=plain, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already holds this video's results" in again.stdout  # not redone
