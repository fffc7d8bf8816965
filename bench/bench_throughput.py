"""Dataset-scale throughput (issue 25): ``segment`` of a folder of 640x480 photos into a folder
(default preset, formats ``coco-panoptic`` + ``summary``), today's sequential local engine against
the overlapped one (read ahead, export behind: :mod:`ovpanoptic.engines.local`) **in the same
run**, then the same work with two single-threaded busy processes beside it (the contention
scenario), the slowdown against the quiet run of the same invocation.

Components: the default preset's real architectures at random initialisation (``bench/.weights``,
written by ``bench/run.py``), with ``bench/run.py``'s method: SAM 2 runs for real on every image,
its output is replaced by 100 fixed realistic masks (the COCO fixture's ground truth and parts of
it), the real CLIP classifier computes their features and scores, the scores are made decisive,
so fusion and the exporters carry a real answer's load. Images: the COCO fixture photos resized to
``--size``, each shifted by a few pixels so that no two are alike (the pipeline caches by content).
Both paths must write the same files byte for byte (stage timings aside): checked, recorded.

    .venv/bin/python bench/bench_throughput.py                 # 200 images x 2 paths + contention: ~1 hour on 2 CPU cores
    .venv/bin/python bench/bench_throughput.py --quick         # 12 images: a few minutes
    .venv/bin/python bench/bench_throughput.py --device cuda   # the GPU row (goal: >= 8 images/s)

Results: ``bench/results/throughput.json`` (``--out``). Goals (issue 25): overlapped >= 1.2x
sequential on the CPU; contention slowdown <= 2.2x with the quiet run no more than 5 % slower than
today's; on one H100/H200 >= 8 images/s.
"""

from __future__ import annotations

import argparse
import importlib.util
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
FORMATS = ("coco-panoptic", "summary")
BUSY = "while True: pass"


def _bench_run() -> Any:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def make_images(folder: Path, count: int, size: tuple[int, int], sample: Path) -> list[Path]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    photos = [np.asarray(Image.open(p).convert("RGB").resize(size)) for p in sorted((sample / "images").glob("*.jpg"))]
    paths = []
    for i in range(count):
        img = np.roll(photos[i % len(photos)], 3 * (i // len(photos)), axis=1)
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(img).save(path, quality=92)
        paths.append(path)
    return paths


def folder_bytes(out: Path) -> dict[str, bytes]:
    """Files of a batch folder, stage timings removed from the manifest and summaries."""
    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file() and ".lock" not in p.name):
        data = path.read_bytes()
        if path.suffix in (".json", ".jsonl") and ("summary" in path.name or "manifest" in path.name):
            lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()] if path.suffix == ".jsonl" else [json.loads(data)]
            for line in lines:
                line.pop("timings", None)
            data = json.dumps(lines, sort_keys=True).encode()
        files[str(path.relative_to(out))] = data
    return files


def run_path(pipe: Any, vocab: Any, inputs: list[Path], out: Path, overlap: bool, reset: Any = None) -> dict[str, Any]:
    """One batch into ``out``; ``reset()`` first empties the pipelines' caches (every pass must
    compute every image: the caches are keyed by content)."""
    from ovpanoptic.engines.local import run_local

    if reset is not None:
        reset()
    stages: dict[str, list[float]] = {}

    def on_image(outcome: Any) -> None:
        for k, v in outcome.timings.items():
            stages.setdefault(k, []).append(v)

    t0 = time.perf_counter()
    report = run_local(pipe, vocab, inputs, out, list(FORMATS), overwrite=True, on_image=on_image, overlap=overlap)
    wall = time.perf_counter() - t0
    return {
        "images": len(inputs), "done": report.done, "wall_s": round(wall, 2), "images_per_s": round(report.done / wall, 3),
        "s_per_image": round(wall / max(1, report.done), 3),
        "stage_median_s": {k: round(statistics.median(v), 4) for k, v in stages.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="12 images (a smoke run of the whole bench)")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--scenarios", default="throughput,contention", help="comma-separated: throughput, contention")
    parser.add_argument("--busy", type=int, default=2, help="single-threaded busy processes of the contention scenario")
    parser.add_argument("--weights", type=Path, default=ROOT / "bench" / ".weights")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "throughput.json")
    args = parser.parse_args(argv)
    count = 12 if args.quick else args.images
    size = tuple(int(v) for v in args.size.split("x"))
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    run = _bench_run()
    run.make_weights(args.weights)
    import torch

    from ovpanoptic.pipeline import Pipeline
    from ovpanoptic.plugins import Registry

    overrides = [
        f"proposal_generator.sam2.model='{args.weights / run.WEIGHTS['sam2']}'",
        f"classifier.clip.pretrained='{args.weights / run.WEIGHTS['convnext_base_w']}'",
    ]
    inner = Pipeline(args.preset, overrides=overrides, device=args.device)
    watch = run.Stopwatch(args.device)
    cache: dict[tuple[int, int], Any] = {}

    def fixed(h: int, w: int) -> Any:
        if (h, w) not in cache:
            cache[(h, w)] = run.fixed_masks(h, w)
        return cache[(h, w)]

    registry = Registry.create(plugins=[("bench", run.bench_plugin(inner, watch, fixed))])
    pipe = Pipeline(
        args.preset,
        overrides=[*overrides, "pipeline.proposal_generator=bench-fixed", "pipeline.classifier=bench-decisive"],
        device=args.device, registry=registry,
    )
    pipe.build_components(list(FORMATS))
    generator = inner.component("proposal_generator")

    def reset() -> None:
        pipe.clear_cache()
        inner.clear_cache()
        getattr(generator, "_cache", {}).clear()

    vocab = pipe.vocabulary(name="coco")
    pipe.prepare_vocabulary(vocab)
    inner.prepare_vocabulary(vocab)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "device": pipe.device,
                    "gpu": torch.cuda.get_device_name() if pipe.device.startswith("cuda") else None,
                    "load_average_at_start": [round(v, 2) for v in os.getloadavg()]},
        "preset": args.preset, "formats": list(FORMATS), "size": args.size, "images": count,
        "components": "real architectures at random init; SAM 2 output replaced by 100 fixed masks, decisive scores (bench/run.py)",
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        inputs = make_images(tmp / "in", count, size, run.SAMPLE)
        warm = make_images(tmp / "warm", 2, (size[0] - 8, size[1]), run.SAMPLE)
        run_path(pipe, vocab, warm, tmp / "out-warm", overlap=False, reset=reset)  # weights, first-call costs
        if "throughput" in scenarios:
            seq = run_path(pipe, vocab, inputs, tmp / "out-seq", overlap=False, reset=reset)
            print("sequential:", seq, flush=True)
            ovl = run_path(pipe, vocab, inputs, tmp / "out-ovl", overlap=True, reset=reset)
            print("overlapped:", ovl, flush=True)
            same = folder_bytes(tmp / "out-seq") == folder_bytes(tmp / "out-ovl")
            results["throughput"] = {"sequential": seq, "overlapped": ovl, "speedup": round(seq["wall_s"] / ovl["wall_s"], 3),
                                     "files_identical": same}
            print("throughput speedup", results["throughput"]["speedup"], "identical", same, flush=True)
        if "contention" in scenarios:
            quiet = results.get("throughput", {}).get("overlapped") or run_path(pipe, vocab, inputs, tmp / "out-quiet", overlap=True, reset=reset)
            busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
            try:
                time.sleep(1.0)  # let the busy processes be scheduled
                loaded = run_path(pipe, vocab, inputs, tmp / "out-busy", overlap=True, reset=reset)
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()
            print("contended:", loaded, flush=True)
            results["contention"] = {
                "busy_processes": args.busy, "busy_code": BUSY, "quiet": quiet, "contended": loaded,
                "slowdown": round(loaded["wall_s"] / quiet["wall_s"], 3),
                "stage_slowdown": {k: round(v / quiet["stage_median_s"][k], 2) for k, v in loaded["stage_median_s"].items()
                                   if quiet["stage_median_s"].get(k)},
            }
            print("contention slowdown", results["contention"]["slowdown"], flush=True)
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
