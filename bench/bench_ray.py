"""Benchmark of the Ray engine (issue 15): throughput of 1 and 2 Ray workers against the local engine
on the same images, the engine's overhead per image, pipelines built per worker, and what the
driver needs at 100 000 images.

Components: ``tiles`` + ``cpu-bound`` + ``paint`` (``bench/cpu_plugin``: ovpanoptic.testing's
deterministic components, the classifier doing a fixed amount of single-threaded CPU work per image,
``--work`` sorts of 200 000 floats), so the machine's cores are the limit and every engine does the
same work. The plugin is pip-installed into a temporary folder on ``PYTHONPATH`` (Ray workers see it
as they see any installed plugin). Images: ``--images`` small PNGs (64 x 48).

Scenarios (each a fresh output folder; every engine must write the same files):

``local``        the local engine (this process).
``ray-1``        ``--engine ray --workers 1``: Ray started on this machine for the run.
``ray-2``        ``--engine ray --workers 2``.
``overhead``     the same three with ``--work 0`` (about 1 ms of work per image): what the engine
                 itself costs per image.
``real``         (``--real N``) the default preset's real components (SAM 2.1 hiera-tiny and CLIP
                 convnext_base_w at random initialisation, ``bench/.weights``) on N variants of the
                 COCO fixture photo, through the CLI: local (torch on both cores) against 2 Ray
                 workers of 1 core each and 1 Ray worker of 2 cores.
``manifest``     a manifest of 100 000 records like a COCO-train run's, its size on disk, and the
                 time and peak memory (own process) of what the driver does with it when it
                 resumes: read it, assign the output stems of 100 000 inputs.

Throughput is reported twice: over the whole command (Ray's start, the workers building their
pipelines, the combined files at the end), and in steady state (images per second between the first
and the last image finished).

    .venv/bin/python bench/bench_ray.py [--images 60] [--work 16] [--out bench/results/ray.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "bench" / "cpu_plugin"


def install_plugin(target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
         "--target", str(target), str(PLUGIN)],
        check=True, capture_output=True,
    )


def make_images(folder: Path, n: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    from ovpanoptic.testing import make_shapes_image

    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:05d}.png"
        Image.fromarray(np.roll(make_shapes_image(48, 64), i, axis=1)).save(path)
        paths.append(path)
    return paths


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "ovpanoptic-manifest.jsonl"}


def run(engine: str, images: list[Path], out: Path, work: int) -> dict[str, Any]:
    from ovpanoptic.engines.local import run_local
    from ovpanoptic.engines.ray_engine import RayOptions, run_ray
    from ovpanoptic.pipeline import Pipeline

    pipe = Pipeline(overrides=[
        "pipeline.proposal_generator='tiles'", "pipeline.classifier='cpu-bound'", "pipeline.fuser='paint'", "pipeline.device='cpu'",
        f"classifier.cpu-bound.work={work}",
    ])
    vocab = pipe.vocabulary("square, bar, wall")
    formats = ["coco-panoptic", "coco-instances"]
    pipe.build_components(formats)
    stamps: list[float] = []
    started = time.perf_counter()
    if engine == "local":
        report = run_local(pipe, vocab, images, out, formats, on_image=lambda o: stamps.append(time.perf_counter()))
    else:
        workers = int(engine.split("-")[1])
        report = run_ray(pipe, vocab, images, out, formats, RayOptions(workers=workers), on_image=lambda o: stamps.append(time.perf_counter()))
    total = time.perf_counter() - started
    assert report.done == len(images), report.failed
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else None
    stats = report.engine.get("stats", [])
    return {
        "images": len(images),
        "seconds_total": round(total, 3),
        "images_per_s_total": round(len(images) / total, 3),
        "seconds_to_first_image": round(stamps[0] - started, 3),
        "images_per_s_steady": round(steady, 3) if steady else None,
        "seconds_per_image_steady": round(1 / steady, 5) if steady else None,
        "pipelines_built_per_worker": [s["pipelines_built"] for s in stats] if stats else [1],
        "images_per_worker": [s["images"] for s in stats] if stats else [len(images)],
        "torch_threads": [w.get("torch_threads") for w in report.engine.get("workers", [])],
    }


MANIFEST_PROBE = r"""
import json, sys, time, tracemalloc
from pathlib import Path
from ovpanoptic.engines.batch import ImageOutcome
from ovpanoptic.engines.manifest import Manifest, assign_stems

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

outdir = Path(sys.argv[1])
trace = sys.argv[2] == "trace"  # tracemalloc counts Python's memory but slows everything down 3-4x
before = rss_mib()
if trace:
    tracemalloc.start()
t = time.perf_counter()
header, records, finished = Manifest.read(outdir)
read_s = time.perf_counter() - t
inputs = [Path(k) for k in records]
t = time.perf_counter()
stems = assign_stems(inputs, {k: r.stem for k, r in records.items()})
stems_s = time.perf_counter() - t
# what a resumed run keeps per input until its end: one outcome each (skipped, files listed)
outcomes = [ImageOutcome(p, stems[p], "skipped", files=tuple(outdir / f for f in records[str(p)].files)) for p in inputs]
if trace:
    current, peak = tracemalloc.get_traced_memory()
    print(json.dumps({"driver_python_mib_held": round(current / 2**20, 1), "driver_python_mib_peak": round(peak / 2**20, 1)}))
else:
    print(json.dumps({"records": len(records), "read_s": round(read_s, 3), "assign_stems_s": round(stems_s, 3),
                      "driver_rss_mib_before": round(before, 1), "driver_rss_mib_after": round(rss_mib(), 1)}))
"""


def manifest_at_scale(folder: Path, n: int) -> dict[str, Any]:
    from ovpanoptic.engines.manifest import BatchHeader, Manifest, Record
    from ovpanoptic.pipeline import Pipeline

    pipe = Pipeline(device="cpu")
    header = BatchHeader.create(pipe.config.to_dict(), pipe.registry.vocabulary("coco").to_dict(), ["coco-panoptic"])
    timings = {"resize": 0.0021, "proposals": 3.3712, "features": 1.8731, "classify": 0.0012, "fuse": 0.0702, "total": 5.3191}
    started = time.perf_counter()
    with Manifest.open(folder, header) as manifest:
        fh = manifest._fh  # one write for the bench (a run appends and syncs line by line)
        lines = []
        for i in range(n):
            stem = f"{i:012d}"
            files = (f"panoptic/{stem}.png", f".ovpanoptic/panoptic.json.parts/{stem}.json", ".ovpanoptic/panoptic.json.categories.json")
            lines.append(json.dumps(Record(f"/data/coco/train2017/{stem}.jpg", "8c1f0e33a2b7d4c9", stem, "done", "", files, timings).to_dict(), sort_keys=True))
        fh.write("\n".join(lines) + "\n")
    written = time.perf_counter() - started
    size = (folder / "ovpanoptic-manifest.jsonl").stat().st_size
    found = {}
    for mode in ("time", "trace"):
        probe = subprocess.run([sys.executable, "-c", MANIFEST_PROBE, str(folder), mode], capture_output=True, text=True, check=True)
        found.update(json.loads(probe.stdout))
    return {"records": n, "manifest_mib": round(size / 2**20, 2), "bytes_per_record": round(size / n), "write_s": round(written, 2), **found}


def real_models(tmp: Path, n: int) -> dict[str, Any]:
    """The real default pipeline (random weights) through the CLI, local vs Ray."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT / "bench"))
    from run import SAMPLE, SAMPLE_ID, WEIGHTS, make_weights

    weights = ROOT / "bench" / ".weights"
    make_weights(weights)
    photo = np.asarray(Image.open(SAMPLE / "images" / f"{SAMPLE_ID}.jpg").convert("RGB"))
    folder = tmp / "real-images"
    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.roll(photo, 37 * i, axis=1)).save(folder / f"{i:03d}.png")
    sets = ["--set", f"proposal_generator.sam2.model='{weights / WEIGHTS['sam2']}'",
            "--set", f"classifier.clip.pretrained='{weights / WEIGHTS['convnext_base_w']}'"]
    out: dict[str, Any] = {"images": n, "image_size": list(photo.shape[1::-1])}
    for label, extra in (("local", []), ("ray-2x1cpu", ["--engine", "ray", "--workers", "2"]),
                         ("ray-1x2cpu", ["--engine", "ray", "--workers", "1", "--cpus-per-worker", "2"])):
        target = tmp / f"real-out-{label}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ovpanoptic", "segment", str(folder), "--classes", "person, ball, grass, tree, sky",
                        "-o", str(target), "--format", "coco-panoptic", "--no-progress", *sets, *extra], check=True, capture_output=True)
        seconds = time.perf_counter() - started
        records = [json.loads(line) for line in (target / "ovpanoptic-manifest.jsonl").read_text().splitlines()[1:]]
        totals = [r["timings"]["total"] for r in records if "timings" in r]
        out[label] = {"seconds_total": round(seconds, 2), "images_per_s_total": round(n / seconds, 4),
                      "mean_pipeline_s_per_image": round(sum(totals) / len(totals), 3)}
        print("real", label, out[label], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--overhead-images", type=int, default=200)
    parser.add_argument("--work", type=int, default=16)
    parser.add_argument("--manifest-records", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=0, metavar="N", help="also time the real default pipeline on N images")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ray.json"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ovpanoptic-bench-ray-"))
    site = tmp / "site"
    install_plugin(site)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.path.insert(0, str(site))

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "settings": {"images": args.images, "work_sorts_per_image": args.work, "overhead_images": args.overhead_images},
    }
    import ray

    results["machine"]["ray"] = ray.__version__
    for label, count, work in (("throughput", args.images, args.work), ("overhead", args.overhead_images, 0)):
        images = make_images(tmp / f"images-{label}", count)
        section: dict[str, Any] = {}
        reference: dict[str, bytes] | None = None
        for engine in ("local", "ray-1", "ray-2"):
            out = tmp / f"out-{label}-{engine}"
            section[engine] = run(engine, images, out, work)
            files = files_of(out)
            if reference is None:
                reference = files
            section[engine]["files_identical_to_local"] = files == reference
            print(label, engine, section[engine], flush=True)
        local = section["local"]
        for engine in ("ray-1", "ray-2"):
            section[engine]["speedup_steady"] = round(section[engine]["images_per_s_steady"] / local["images_per_s_steady"], 3)
            section[engine]["speedup_total"] = round(section[engine]["images_per_s_total"] / local["images_per_s_total"], 3)
        if label == "overhead":
            section["overhead_ms_per_image_ray_1"] = round(
                (section["ray-1"]["seconds_per_image_steady"] - local["seconds_per_image_steady"]) * 1000, 2
            )
        results[label] = section
    if args.real:
        results["real"] = real_models(tmp, args.real)
    results["manifest_at_scale"] = manifest_at_scale(tmp / "manifest", args.manifest_records)
    print("manifest", results["manifest_at_scale"], flush=True)
    results["goals"] = {
        "ray_2_workers_vs_local_steady_ge_1.7": results["throughput"]["ray-2"]["speedup_steady"] >= 1.7,
        "engine_overhead_per_image_lt_50_ms": results["overhead"]["overhead_ms_per_image_ray_1"] < 50,
    }
    results["measured"] = time.strftime("%Y-%m-%d %H:%M:%S")
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["goals"]))


if __name__ == "__main__":
    main()
