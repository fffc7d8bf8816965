"""Peak memory and export time of whole CLI runs on large images (issue 11, item 14).

For each size in ``--sizes`` (megapixels, 4:3) and each exporter in ``--exporters``, runs
``python -m ovpanoptic segment IMAGE --format EXPORTER`` in its own process and records that
process's peak RSS (``os.wait4``) and wall time. The components are the test kit's deterministic
ones (``tiles`` 17 x 17 = 289 proposals, ``cycling`` over "person, car, road", ``paint``): 193
thing segments and one stuff segment, so the exporters carry a realistic load while no model runs.
Then it times each exporter's ``export()`` in-process on the same result at each size, with
``coco-panoptic`` as the baseline measured in the same run. Last, a 120-megapixel PNG (116 KB on
disk) is run through the CLI to check that it is refused from its header, before any decoding.

    .venv/bin/python bench/bench_memory.py [--sizes 12,24,50] [--exporters coco-panoptic,coco-instances,overlay,summary]
    .venv/bin/python bench/bench_memory.py --readme [--readme-size 1024x768]   # issue 25: the README command

``--readme`` (issue 25) instead runs the README's command (``segment IMAGE --classes ... --stuff ...
-o OUT``, ``default`` preset, its real SAM 2 and CLIP architectures at random initialisation from
``bench/.weights``, as ``bench/run.py`` writes them) on the COCO fixture photo resized to
``--readme-size``, each run in its own process: with a cold text cache and with a warm one, each
with the text tower released after the vocabulary (today's default) and kept
(``classifier.clip.keep_text_tower=true``, the behaviour before issue 25). Goal: peak RSS <= 2 GB.
Results: ``bench/results/memory_readme.json``.

The orchestrating process stays small (images are made and exports timed in worker processes):
Linux records the spawning process's peak memory as the child's at ``exec`` (vfork), so a large
orchestrator would inflate every child's peak. Results go to ``bench/results/memory.json``. Goals (issue 11): peak RSS of the whole CLI run under
3 GB for any accepted image (up to the 50-megapixel default limit), export time within 3x of
``coco-panoptic``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLASSES = "person, car, road"
TILES = 17


def make_image(path: Path, megapixels: float) -> tuple[int, int]:
    """A 4:3 JPEG with smooth gradients and noise (so it does not compress to nothing)."""
    import numpy as np
    from PIL import Image

    w = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    h = int(w * 3 / 4)  # rounded down: "50 MP" stays within a 50-megapixel limit
    rng = np.random.default_rng(0)
    ys = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    xs = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (ys + 0 * xs).astype(np.uint8)
    img[..., 1] = (xs + 0 * ys).astype(np.uint8)
    img[..., 2] = rng.integers(0, 256, (h, w), dtype=np.uint8)
    Image.fromarray(img).save(path, quality=85)
    return h, w


def install_fakes(target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
         "--target", str(target), str(ROOT / "tests" / "data" / "fake_components")],
        check=True, capture_output=True,
    )


def cli_run(image: Path, exporter: str, out: Path, env: dict[str, str]) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "ovpanoptic", "segment", str(image), "--classes", CLASSES, "-o", str(out), "--format", exporter,
        "--set", "pipeline.proposal_generator='tiles'", "--set", "pipeline.classifier='cycling'", "--set", "pipeline.fuser='paint'",
        "--set", f"proposal_generator.tiles.rows={TILES}", "--set", f"proposal_generator.tiles.cols={TILES}",
        "--device", "cpu", "--no-progress", "--overwrite",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    return {
        "exit_code": os.waitstatus_to_exitcode(status),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "wall_s": round(wall, 2),
        "stderr_tail": stderr.strip().splitlines()[-1:] if stderr.strip() else [],
        "stdout_tail": stdout.strip().splitlines()[-1:],
    }


def export_times(image: Path, exporters: list[str], runs: int) -> dict[str, float]:
    """Median seconds of each exporter's export() on the same result, in this process."""
    from ovpanoptic.config import Config
    from ovpanoptic.imageio import read_image
    from ovpanoptic.pipeline import Pipeline
    from ovpanoptic.testing import registry_with, FakeComponentsPlugin

    config = Config.from_dict({
        "pipeline": {"proposal_generator": "tiles", "classifier": "cycling", "fuser": "paint", "max_pixels": 0},
        "proposal_generator": {"tiles": {"rows": TILES, "cols": TILES}},
    })
    pipe = Pipeline(config, registry=registry_with(FakeComponentsPlugin()), device="cpu")
    rgb = read_image(image)
    result = pipe.segment(rgb, CLASSES)
    times: dict[str, float] = {}
    for name in exporters:
        samples = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as out:
                t0 = time.perf_counter()
                pipe.export(result, rgb, out, "img", [name])
                samples.append(time.perf_counter() - t0)
        times[name] = round(statistics.median(samples), 3)
    times["segments"] = len(result.segments)
    times["things"] = sum(s.isthing for s in result.segments)
    return times


def worker(argv: list[str]) -> int:
    """``--worker make-image PATH MP`` or ``--worker export-times IMAGE EXPORTERS RUNS``: prints JSON."""
    if argv[0] == "make-image":
        h, w = make_image(Path(argv[1]), float(argv[2]))
        print(json.dumps([h, w]))
    else:
        print(json.dumps(export_times(Path(argv[1]), argv[2].split(","), int(argv[3]))))
    return 0


def run_worker(*args: str, env: dict[str, str]) -> Any:
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


README_CLASSES = ("person, car, bus, bicycle, dog, sports ball", "grass, sky, road, tree, building")


def readme_runs(size: str, weights: Path, out: Path) -> int:
    """Peak RSS of the README command (see the module docstring)."""
    from PIL import Image

    sample = Path(os.environ.get("OVPANOPTIC_BENCH_SAMPLE", ROOT.parent / "shared" / "fixtures" / "coco_panoptic_sample"))
    w, h = (int(v) for v in size.split("x"))
    missing = [f for f in ("sam2.1_hiera_tiny.pt", "convnext_base_w.pt") if not (weights / f).is_file()]
    if missing:
        print(f"missing {missing} in {weights}: run bench/run.py once (it writes them)", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_at_start": [round(v, 2) for v in os.getloadavg()]},
        "command": "segment IMAGE --classes ... --stuff ... -o OUT (default preset)", "size": size, "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        image = tmp / "photo.jpg"
        Image.open(sample / "images" / "000000142238.jpg").convert("RGB").resize((w, h)).save(image, quality=92)
        for cache in ("cold", "warm"):
            for tower in ("released", "kept"):
                cache_dir = tmp / f"cache-{tower}"
                if cache == "cold" and cache_dir.exists():
                    import shutil

                    shutil.rmtree(cache_dir)
                env = {**os.environ, "OVPANOPTIC_CACHE_DIR": str(cache_dir), "HF_HUB_OFFLINE": "1"}
                cmd = [
                    sys.executable, "-m", "ovpanoptic", "segment", str(image), "--classes", README_CLASSES[0],
                    "--stuff", README_CLASSES[1], "-o", str(tmp / "out"), "--no-progress", "--overwrite",
                    "--set", f"proposal_generator.sam2.model='{weights / 'sam2.1_hiera_tiny.pt'}'",
                    "--set", f"classifier.clip.pretrained='{weights / 'convnext_base_w.pt'}'",
                    "--set", f"classifier.clip.keep_text_tower={'true' if tower == 'kept' else 'false'}",
                ]
                start = time.perf_counter()
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                _, status, usage = os.wait4(proc.pid, 0)
                stderr = proc.stderr.read().decode()  # type: ignore[union-attr]
                proc.stdout.close()  # type: ignore[union-attr]
                proc.stderr.close()  # type: ignore[union-attr]
                run = {
                    "exit_code": os.waitstatus_to_exitcode(status),
                    "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                    "wall_s": round(time.perf_counter() - start, 2),
                    "stderr_tail": stderr.strip().splitlines()[-2:],
                }
                results["runs"][f"{cache} cache, text tower {tower}"] = run
                print(f"{cache} cache, text tower {tower}: exit {run['exit_code']}, peak {run['peak_rss_mb']:.0f} MB, {run['wall_s']} s", flush=True)
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="12,24,50", help="megapixels, comma-separated")
    parser.add_argument("--exporters", default="coco-panoptic,coco-instances,overlay,summary")
    parser.add_argument("--runs", type=int, default=3, help="in-process export timings per exporter (median)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory.json")
    parser.add_argument("--readme", action="store_true", help="issue 25: peak RSS of the README command instead")
    parser.add_argument("--readme-size", default="1024x768", help="WIDTHxHEIGHT of the --readme photo")
    parser.add_argument("--weights", type=Path, default=ROOT / "bench" / ".weights", help="random-init checkpoints (bench/run.py)")
    args = parser.parse_args(argv)
    if args.readme:
        out = args.out if args.out != ROOT / "bench" / "results" / "memory.json" else ROOT / "bench" / "results" / "memory_readme.json"
        return readme_runs(args.readme_size, args.weights, out)
    sizes = [float(s) for s in args.sizes.split(",")]
    exporters = [e.strip() for e in args.exporters.split(",")]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_at_start": [round(v, 2) for v in os.getloadavg()]},
        "components": f"tiles {TILES}x{TILES}, cycling over {CLASSES!r}, paint",
        "cli": {},
        "export_seconds": {},
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        site = tmp / "site"
        install_fakes(site)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "OVPANOPTIC_DISABLE_PLUGINS": ""}
        for mp in sizes:
            image = tmp / f"{mp:g}mp.jpg"
            h, w = run_worker("make-image", str(image), str(mp), env=env)
            key = f"{mp:g} MP ({w}x{h})"
            results["cli"][key] = {}
            for exporter in exporters:
                run = cli_run(image, exporter, tmp / "out", env)
                results["cli"][key][exporter] = run
                print(f"{key:>22} {exporter:>15}: exit {run['exit_code']}, peak {run['peak_rss_mb']:7.1f} MB, {run['wall_s']:6.2f} s", flush=True)
            times = run_worker("export-times", str(image), ",".join(exporters), str(args.runs), env=env)
            base = times.get("coco-panoptic")
            results["export_seconds"][key] = {
                **times,
                **({f"{e} / coco-panoptic": round(times[e] / base, 2) for e in exporters if base and e in times}),
            }
            print(f"{key:>22} export seconds: {results['export_seconds'][key]}", flush=True)
            image.unlink()
        huge = tmp / "declares-120mp.png"
        subprocess.run(
            [sys.executable, "-c", f"from PIL import Image; Image.new('L', (12000, 10000)).save({str(huge)!r}, optimize=True)"],
            check=True,
        )
        results["cli"]["120 MP PNG header (12000x10000)"] = {
            "file_kb": round(huge.stat().st_size / 1024, 1),
            "coco-panoptic": cli_run(huge, "coco-panoptic", tmp / "out-huge", env),
        }
        print("120 MP:", results["cli"]["120 MP PNG header (12000x10000)"], flush=True)
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
