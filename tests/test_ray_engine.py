"""The Ray engine against a real local Ray cluster (``ray start --head`` on 127.0.0.1, 2 CPUs):
byte-identical outputs to the local engine, a worker killed mid-run, a driver killed mid-run, the
checks that refuse a job before anything is written, and videos and dataset evaluation on Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, FAKE_OVERRIDES, _pip_install_target
from PIL import Image

from ovpanoptic.cli import main
from ovpanoptic.testing import make_shapes_image

pytest.importorskip("ray", reason="the Ray engine's tests need Ray: pip install 'ovpanoptic[ray]'")

MANIFEST = "ovpanoptic-manifest.jsonl"
N_IMAGES = 20
FORMATS = "coco-panoptic,coco-instances,slow-json"
#: seconds the slow-json exporter of the cluster's workers takes per image (a window to kill in)
SLOW_EXPORT = "0.4"
RAY_BIN = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A real Ray cluster on 127.0.0.1 with 2 CPUs and token authentication, whose workers see the
    fake components only (not the example plugin) and whose slow-json exporter takes SLOW_EXPORT
    seconds. The token is in the environment of this module's tests (drivers need it)."""
    import secrets

    site = tmp_path_factory.mktemp("ray-site")
    _pip_install_target(site, DATA / "fake_components")
    temp_dir = tempfile.mkdtemp(prefix="ovr", dir="/tmp")  # Ray's socket paths must stay short
    token = Path(temp_dir) / "token"
    token.write_text(secrets.token_hex(32))
    port = _free_port()
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
    env = {
        **os.environ,
        **auth,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "OVPANOPTIC_TEST_SLOW_EXPORT": SLOW_EXPORT,
        "OVPANOPTIC_DISABLE_PLUGINS": "",
    }
    cmd = [str(RAY_BIN), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
           "--num-gpus", "0", "--object-store-memory", str(200 * 1024**2), "--include-dashboard", "false",
           "--temp-dir", temp_dir, "--disable-usage-stats"]
    started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert started.returncode == 0, started.stdout + started.stderr
    with pytest.MonkeyPatch.context() as mp:
        for key, value in auth.items():
            mp.setenv(key, value)
        try:
            yield {"address": f"127.0.0.1:{port}", "site": site, "token": str(token)}
        finally:
            stop_cluster(temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)


def _processes_with(marker: str, where: str) -> list[int]:
    """Processes whose command line (``where="cmdline"``) or environment (``"environ"``) holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / where).read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def stop_cluster(temp_dir: str) -> None:
    """Stop this module's cluster only (``ray stop`` would stop every Ray on the machine): its
    processes carry its temp dir in their command line or its token path in their environment."""
    marker = str(Path(temp_dir) / "token")
    pids = set(_processes_with(temp_dir, "cmdline")) | set(_processes_with(marker, "environ"))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.2)


def make_images(folder: Path, n: int = N_IMAGES) -> Path:
    folder.mkdir()
    for i in range(n):
        img = np.roll(make_shapes_image(48, 64), 3 * i, axis=1)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


def segment_argv(images: Path, out: Path, *extra: str) -> list[str]:
    sets = [a for o in FAKE_OVERRIDES[:3] for a in ("--set", o)]
    return ["segment", str(images), "--classes", "square, bar, wall", "-o", str(out), "--format", FORMATS, "--no-progress",
            "--device", "cpu", *sets, *extra]


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but the manifest, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def records_of(folder: Path) -> dict[str, tuple]:
    """The manifest's latest record per input, without the timings (they differ run to run)."""
    out = {}
    for line in (folder / MANIFEST).read_text().splitlines()[1:]:
        data = json.loads(line)
        if "input" in data:
            out[data["input"]] = (data["digest"], data["stem"], data["status"], tuple(data["files"]))
    return out


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, plugin_site):
    """The local engine's output for the images (the files every Ray run must reproduce)."""
    root = tmp_path_factory.mktemp("reference")
    images = make_images(root / "images")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]),
           "OVPANOPTIC_DISABLE_PLUGINS": "", "OVPANOPTIC_TEST_SLOW_EXPORT": "0"}
    done = subprocess.run([sys.executable, "-m", "ovpanoptic", *segment_argv(images, root / "out")], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return {"images": images, "out": root / "out", "files": files_of(root / "out"), "records": records_of(root / "out")}


def driver(ray_cluster, argv: list[str], *, site: Path | None = None, code: str | None = None) -> subprocess.Popen:
    """``ovpanoptic ARGV`` (or ``python -c CODE``) in a new process, as a user runs it (Ray reads its
    token from the environment when it is imported, so drivers get a process of their own)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site or ray_cluster["site"]), os.environ.get("PYTHONPATH", "")]),
           "OVPANOPTIC_DISABLE_PLUGINS": "", "OVPANOPTIC_TEST_SLOW_EXPORT": "0"}
    command = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "ovpanoptic", *argv]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def done_records(out: Path) -> int:
    """Whole "done" lines of the manifest (a killed driver may leave its last line torn)."""
    path = out / MANIFEST
    if not path.exists():
        return 0
    count = 0
    for line in path.read_text().splitlines()[1:]:
        try:
            count += json.loads(line).get("status") == "done"
        except ValueError:
            pass
    return count


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended too early: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def worker_pids(ray_cluster) -> list[int]:
    """This cluster's processes whose title Ray set to the PipelineWorker actor's."""
    pids = []
    for pid in _processes_with(ray_cluster["token"], "environ"):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::PipelineWorker"):
            pids.append(pid)
    return pids


def test_the_ray_engine_writes_the_local_engines_files_byte_for_byte(ray_cluster, local_reference, tmp_path, capsys):
    out = tmp_path / "out"
    proc = driver(ray_cluster, segment_argv(local_reference["images"], out, "--engine", "ray", "--address", ray_cluster["address"],
                                            "--workers", "2", "-v"))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"{N_IMAGES} of {N_IMAGES} image(s) segmented into {out}" in stdout
    assert files_of(out) == local_reference["files"]
    assert records_of(out) == local_reference["records"]


RUN_RAY = """
import json, sys
from pathlib import Path
from ovpanoptic.engines.ray_engine import RayOptions, run_ray
from ovpanoptic.imageio import collect_inputs
from ovpanoptic.pipeline import Pipeline
pipe = Pipeline(overrides=[*json.loads(sys.argv[1]), "pipeline.device='cpu'"])
vocab = pipe.vocabulary("square, bar, wall")
formats = ["coco-panoptic", "coco-instances", "slow-json"]
pipe.build_components(formats)
seen = []
report = run_ray(pipe, vocab, collect_inputs([sys.argv[2]]), Path(sys.argv[3]), formats, RayOptions(address=sys.argv[4]), on_image=seen.append)
print(json.dumps({"done": report.done, "stats": report.engine["stats"],
                  "seen": [[o.path.name, o.worker, o.segments, o.timings["total"], o.result is None] for o in seen]}))
"""


def test_each_worker_builds_one_pipeline_for_the_whole_job(ray_cluster, local_reference, tmp_path):
    code = RUN_RAY + "\n"
    argv = [json.dumps(list(FAKE_OVERRIDES[:3])), str(local_reference["images"]), str(tmp_path / "out"), ray_cluster["address"]]
    proc = driver(ray_cluster, [], code=f"import sys; sys.argv[1:] = {argv!r}\n" + code)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    got = json.loads(stdout.strip().splitlines()[-1])
    seen, stats = got["seen"], got["stats"]
    assert got["done"] == N_IMAGES and len(seen) == N_IMAGES
    assert sorted(name for name, *_ in seen) == sorted(p.name for p in local_reference["images"].iterdir())
    assert len(stats) == 2  # --workers defaults to the cluster's 2 CPUs
    assert [s["pipelines_built"] for s in stats] == [1, 1]
    assert sum(s["images"] for s in stats) == N_IMAGES and min(s["images"] for s in stats) >= 5  # both worked
    assert {worker for _, worker, *_ in seen} == {s["worker"] for s in stats}
    assert all(segments == 4 and total > 0 and no_result for _, _, segments, total, no_result in seen)
    assert files_of(tmp_path / "out") == local_reference["files"]


def test_workers_put_their_batch_size_of_images_through_the_encoders_together(ray_cluster, local_reference, tmp_path):
    """pipeline.batch_size = 3: each call carries 3 images (the last 2), which the worker encodes
    together; the files and records are the local engine's (batch size 1)."""
    argv = [json.dumps([*FAKE_OVERRIDES[:3], "pipeline.batch_size=3"]), str(local_reference["images"]), str(tmp_path / "out"),
            ray_cluster["address"]]
    proc = driver(ray_cluster, [], code=f"import sys; sys.argv[1:] = {argv!r}\n" + RUN_RAY)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    got = json.loads(stdout.strip().splitlines()[-1])
    assert got["done"] == N_IMAGES
    batches: dict[str, int] = {}
    for stat in got["stats"]:
        for size, calls in stat["encode_batches"].items():
            batches[str(size)] = batches.get(str(size), 0) + calls
    assert batches == {"3": 6, "2": 1}  # 20 images: 6 calls of 3, then 2
    assert files_of(tmp_path / "out") == local_reference["files"]
    assert records_of(tmp_path / "out") == local_reference["records"]


def test_a_killed_worker_is_replaced_and_its_images_redone(ray_cluster, local_reference, tmp_path):
    out = tmp_path / "out"
    proc = driver(ray_cluster, segment_argv(local_reference["images"], out, "--engine", "ray", "--address", ray_cluster["address"]))
    wait_for(lambda: done_records(out) >= 4, proc)
    victims = worker_pids(ray_cluster)
    assert len(victims) == 2, victims
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "a Ray worker died" in stderr
    assert f"{N_IMAGES} of {N_IMAGES} image(s) segmented" in stdout
    assert files_of(out) == local_reference["files"]
    assert records_of(out) == local_reference["records"]


def test_a_killed_driver_resumes_to_the_same_files(ray_cluster, local_reference, tmp_path):
    out = tmp_path / "out"
    argv = segment_argv(local_reference["images"], out, "--engine", "ray", "--address", ray_cluster["address"])
    proc = driver(ray_cluster, argv)
    wait_for(lambda: done_records(out) >= 6, proc)
    proc.kill()
    proc.communicate(timeout=60)
    before = done_records(out)
    assert 6 <= before < N_IMAGES
    assert not (out / "panoptic.json").exists()  # combined files come at the end of a run
    resumed = driver(ray_cluster, argv)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    # the images recorded with all their files are skipped (an image whose file is missing is redone:
    # seen once under load, see the closing note of issue 15)
    skipped = int(stdout.rsplit("(", 1)[1].split(" done by an earlier run")[0])
    assert before - 1 <= skipped <= before, stdout
    assert f"{N_IMAGES} of {N_IMAGES} image(s) segmented into {out} ({skipped} done by an earlier run)" in stdout
    assert files_of(out) == local_reference["files"]
    assert not [p for p in out.rglob("*.tmp")]


def test_workers_without_a_plugin_the_driver_uses_are_refused_before_writing(ray_cluster, local_reference, tmp_path, plugin_site):
    out = tmp_path / "out"
    argv = [*segment_argv(local_reference["images"], out, "--engine", "ray", "--address", ray_cluster["address"])]
    argv[argv.index("--format") + 1] = "coco-panoptic,segments-csv"  # the example plugin: not on the cluster
    proc = driver(ray_cluster, argv, site=plugin_site)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert "error: a Ray worker failed building its pipeline: exporter 'segments-csv'" in stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "3"], "--workers 3 needs 3 CPU(s) and 0 GPU(s); the Ray cluster has 2 and 0: use --workers 2 or fewer"),
        (["--gpus-per-worker", "1"], "the Ray cluster has 2 CPU(s) and 0 GPU(s); one worker needs 1 CPU(s) and 1 GPU(s)"),
    ],
)
def test_a_job_the_cluster_cannot_hold_is_refused_before_writing(ray_cluster, local_reference, tmp_path, extra, message):
    out = tmp_path / "out"
    argv = segment_argv(local_reference["images"], out, "--engine", "ray", "--address", ray_cluster["address"], *extra)
    argv[argv.index("--device") + 1] = "auto"
    proc = driver(ray_cluster, argv)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert message in stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("device", "extra", "message"),
    [
        ("cpu", ["--workers", "0"], "--workers must be a whole number >= 1, got 0"),
        ("cpu", ["--gpus-per-worker", "-1"], "--gpus-per-worker must be a number >= 0, got -1.0"),
        ("cpu", ["--gpus-per-worker", "1.5"], "--gpus-per-worker above 1 must be a whole number, got 1.5"),
        ("cpu", ["--address", " "], "--address is empty"),
        ("cuda:1", [], "--device cuda:1: with --engine ray, Ray gives each worker its GPU"),
        ("cuda", [], "--device cuda with --engine ray needs --gpus-per-worker"),
        ("cpu", ["--gpus-per-worker", "1"], "--device cpu contradicts --gpus-per-worker 1.0"),
    ],
)
def test_engine_options_that_cannot_work_are_refused_before_ray_starts(local_reference, tmp_path, with_plugins, monkeypatch, capsys,
                                                                      device, extra, message):
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    out = tmp_path / "out"
    argv = segment_argv(local_reference["images"], out, "--engine", "ray", *extra)
    argv[argv.index("--device") + 1] = device
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_ray_options_need_the_ray_engine(tmp_path, capsys):
    assert main(["segment", str(tmp_path), "--classes", "a", "--workers", "2", "-o", str(tmp_path / "out")]) == 2
    assert "--workers applies to --engine ray: add --engine ray, or leave --workers out" in capsys.readouterr().err


def test_without_ray_the_engine_says_what_to_install(local_reference, tmp_path, with_plugins, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    monkeypatch.setattr(builtins, "__import__", no_ray)
    out = tmp_path / "out"
    assert main(segment_argv(local_reference["images"], out, "--engine", "ray")) == 2
    err = capsys.readouterr().err
    assert "--engine ray needs Ray, which is not installed" in err and "pip install 'ovpanoptic[ray]'" in err
    assert not out.exists()


def test_evaluate_on_ray_gives_the_local_numbers(ray_cluster, coco_sample, tmp_path):
    from test_evaluate_dataset import coco_oracle

    results = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        argv = ["evaluate", str(coco_sample), "--format", "coco-panoptic", "-o", str(out), "--no-progress", *coco_oracle(coco_sample)]
        if engine == "ray":
            argv += ["--engine", "ray", "--address", ray_cluster["address"]]
        proc = driver(ray_cluster, argv)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        results[engine] = json.loads((out / "evaluation.json").read_text())
    assert results["ray"]["results"] == results["local"]["results"] and results["ray"]["results"]["all"]["pq"] == 100.0
    assert results["ray"]["protocol"]["engine"]["engine"] == "ray"
    assert [s["pipelines_built"] for s in results["ray"]["protocol"]["engine"]["stats"]] == [1, 1]
    assert files_of(tmp_path / "ray") .keys() == files_of(tmp_path / "local").keys()
    assert {k: v for k, v in files_of(tmp_path / "ray").items() if k != "evaluation.json"} == {
        k: v for k, v in files_of(tmp_path / "local").items() if k != "evaluation.json"
    }


def test_segment_video_on_ray_writes_each_video_as_the_local_engine_does(ray_cluster, tmp_path):
    from test_video import oracle_toml
    from video_clip import write_clip

    clip = write_clip(tmp_path / "clip")
    videos = tmp_path / "videos"
    for name in ("left", "right"):
        shutil.copytree(clip["frames"], videos / name)
    config = oracle_toml(clip, tmp_path)
    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"out-{engine}"
        argv = ["segment-video", str(videos / "left"), str(videos / "right"), "--classes", "box, ball", "--stuff", "wall, floor",
                "--config", str(config), "--keyframe-every", "3", "--no-overlay", "-o", str(out), "--no-progress"]
        if engine == "ray":
            argv += ["--engine", "ray", "--address", ray_cluster["address"]]
        proc = driver(ray_cluster, argv)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        assert "2 of 2 video(s) segmented into" in stdout and "12 frame(s) of left segmented (4 keyframes)" in stdout
        outputs[engine] = files_of(out)
    assert sorted({k.split("/")[0] for k in outputs["ray"]}) == ["left", "right"]
    assert "left/panoptic.json" in outputs["ray"] and "right/tracks.json" in outputs["ray"]
    # every result file byte for byte; the resume bookkeeping of each frame (.video/frames/*.json)
    # records how long the frame took, which differs between any two runs: equal without that
    def without_timings(files: dict[str, bytes]) -> dict[str, object]:
        return {k: ({**json.loads(v), "timings": None} if "/.video/frames/" in k else v) for k, v in files.items()}

    assert outputs["ray"].keys() == outputs["local"].keys()
    assert without_timings(outputs["ray"]) == without_timings(outputs["local"])
    assert {k: v for k, v in outputs["ray"].items() if "/.video/" not in k} == {k: v for k, v in outputs["local"].items() if "/.video/" not in k}


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("host:99999", "--address 'host:99999' is not HOST:PORT with a port from 1 to 65535"),
        ("nocolon", "--address 'nocolon' is not HOST:PORT"),
        ("127.0.0.1:{closed}", "cannot reach the Ray cluster at --address 127.0.0.1:{closed} (Connection refused)"),
    ],
)
def test_an_address_nobody_answers_at_is_refused_at_once(local_reference, tmp_path, with_plugins, monkeypatch, capsys, address, message):
    """Found by a tester: Ray retried an unreachable head for 12 minutes, deaf to Ctrl-C."""
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    closed = _free_port()  # bound, then released: nothing listens there
    out = tmp_path / "out"
    started = time.monotonic()
    assert main(segment_argv(local_reference["images"], out, "--engine", "ray", "--address", address.format(closed=closed))) == 2
    assert message.format(closed=closed) in capsys.readouterr().err
    assert time.monotonic() - started < 30
    assert not out.exists()


@pytest.mark.parametrize(
    ("reply", "said"),
    [(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "it answered 'HTTP/1.1 400 Bad Request'"), (None, "it did not answer within 5 s")],
)
def test_an_address_where_something_else_listens_is_refused_within_seconds(local_reference, tmp_path, with_plugins, monkeypatch, capsys,
                                                                            reply, said):
    """Found by a tester: a port where a web server (or anything that is not Ray) listens gave Ray's
    'Failed to connect to GCS' for 240 s. A real listener that is not Ray, answering or silent."""
    import threading

    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", "")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done = threading.Event()

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(100)
            if reply is not None:
                conn.sendall(reply)
            done.wait(60)  # keep the connection open (silent) until the test is over

    threading.Thread(target=answer, daemon=True).start()
    out = tmp_path / "out"
    started = time.monotonic()
    try:
        assert main(segment_argv(local_reference["images"], out, "--engine", "ray", "--address", f"127.0.0.1:{port}")) == 2
    finally:
        done.set()
        server.close()
    err = capsys.readouterr().err
    assert f"--address 127.0.0.1:{port} is not a Ray cluster: something listens there, but {said}" in err
    assert "Give the port of the head node's GCS" in err and "Failed to connect to GCS" not in err and "Traceback" not in err
    assert time.monotonic() - started < 20
    assert not out.exists()


def test_without_address_the_engine_starts_its_own_ray_not_the_running_cluster(ray_cluster, monkeypatch):
    """A cluster already runs on this machine (and RAY_ADDRESS names it): without --address the
    engine still starts a Ray instance of its own, as the help says; --address joins the cluster,
    whose head answers the probe."""
    from ovpanoptic.engines.ray_engine import RayOptions, RaySession

    RaySession(RayOptions(address=ray_cluster["address"]))._probe()  # a real Ray head passes the handshake
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster["address"])
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):  # this process imported Ray before the token was set: no auth for its own
        monkeypatch.delenv(key, raising=False)
    with RaySession(RayOptions()) as session:
        gcs = session.ray.get_runtime_context().gcs_address
        assert session._owned
    assert gcs != ray_cluster["address"]


def test_a_worker_reads_and_exports_while_it_segments_one_image_at_a_time(tmp_path, monkeypatch):
    """The worker's overlap (``RayOptions.overlap``; two calls at a time in Ray's actor threads), driven here by two
    plain threads: image b is segmented while image a is exported (a rendezvous of the two: a worker that did one
    image after another would never reach it and the barrier breaks), and no two segmentations run at once."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from ovpanoptic.engines import batch, ray_engine
    from ovpanoptic.engines.batch import ImageOutcome
    from ovpanoptic.types import Category, Vocabulary

    for stem in "ab":
        Image.fromarray(make_shapes_image()).save(tmp_path / f"{stem}.png")
    meet = threading.Barrier(2, timeout=60)
    a_segmenting = threading.Event()
    active, most, guard = [0], [0], threading.Lock()

    def segment(pipe, vocabulary, image, path, stem, outdir):
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        if stem == "a":
            a_segmenting.set()
        else:
            meet.wait()  # b's segmentation meets a's export
        with guard:
            active[0] -= 1
        return f"result {stem}"

    def export(pipe, result, image, path, stem, outdir, formats):
        if stem == "a":
            meet.wait()
        return ImageOutcome(path, stem, "done", segments=0)

    monkeypatch.setattr(batch, "segment_image", segment)
    monkeypatch.setattr(batch, "export_image", export)
    vocabulary = Vocabulary((Category(1, "person", True),))
    worker = ray_engine.PipelineWorker(None, vocabulary.to_dict(), ["summary"], str(tmp_path / "out"), ())
    worker._pipe = SimpleNamespace(config=SimpleNamespace(pipeline=SimpleNamespace(max_pixels=0)))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(worker.process, str(tmp_path / "a.png"), "a")
        assert a_segmenting.wait(60)
        second = pool.submit(worker.process, str(tmp_path / "b.png"), "b")
        outcomes = [first.result(timeout=120), second.result(timeout=120)]
    assert [(o.stem, o.status, o.worker) for o in outcomes] == [("a", "done", worker._name), ("b", "done", worker._name)]
    assert most[0] == 1 and worker.images == 2
