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

The batched scenario (``--scenarios batched``) runs the overlapped path with ``pipeline.batch_size``
1 and ``--batch`` (images through the image encoders together: SAM 2's encoder and CLIP's dense
pass), in the same run; files compared byte for byte.

    .venv/bin/python bench/bench_throughput.py --device cuda --scenarios throughput,batched   # the GPU rows

The contention scenario runs, ``--repeats`` times interleaved: quiet and contended, each with
``pipeline.threads`` fixed at the process's count (today's behaviour) and with ``"auto"`` (the
load-aware choice, :mod:`ovpanoptic.threads`); it reports medians, per-stage seconds (SAM 2's
encoder and decoder apart) and the thread counts chosen.

    .venv/bin/python bench/bench_throughput.py --scenarios contention --images 4 --repeats 2 --out /tmp/c.json  # ~10 min

Results: ``bench/results/throughput.json`` (``--out``). Goals (issue 25): overlapped >= 1.2x
sequential on the CPU; contention slowdown <= 2.2x with the quiet run no more than 5 % slower than
today's; on one H100/H200 >= 8 images/s.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
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


class ThreadLog(logging.Handler):
    """Collects the intra-op thread counts :mod:`ovpanoptic.threads` chooses (its debug log)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("intra-op threads"):
            self.counts.append(int(record.args[0]))  # type: ignore[index]


def run_path(
    pipe: Any, vocab: Any, inputs: list[Path], out: Path, overlap: bool, reset: Any = None, watch: Any = None
) -> dict[str, Any]:
    """One batch into ``out``; ``reset()`` first empties the pipelines' caches (every pass must
    compute every image: the caches are keyed by content). With ``watch`` (``bench/run.py``'s
    stopwatch of the real components), its seconds per image are recorded too (``sub_stage_s``),
    and the thread counts chosen (``threads_chosen``: count -> images)."""
    from ovpanoptic.engines.local import run_local

    if reset is not None:
        reset()
    if watch is not None:
        watch.seconds.clear()
    threads = ThreadLog()
    logger = logging.getLogger("ovpanoptic.threads")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(threads)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    stages: dict[str, list[float]] = {}

    def on_image(outcome: Any) -> None:
        for k, v in outcome.timings.items():
            stages.setdefault(k, []).append(v)

    t0 = time.perf_counter()
    try:
        report = run_local(pipe, vocab, inputs, out, list(FORMATS), overwrite=True, on_image=on_image, overlap=overlap)
    finally:
        logger.removeHandler(threads)
        logger.setLevel(level)
        logger.propagate = propagate
    wall = time.perf_counter() - t0
    row = {
        "images": len(inputs), "done": report.done, "wall_s": round(wall, 2), "images_per_s": round(report.done / wall, 3),
        "s_per_image": round(wall / max(1, report.done), 3),
        "stage_median_s": {k: round(statistics.median(v), 4) for k, v in stages.items()},
        "threads_chosen": {str(n): threads.counts.count(n) for n in sorted(set(threads.counts))},
    }
    if watch is not None:
        row["sub_stage_s"] = {k: round(v / max(1, report.done), 4) for k, v in sorted(watch.seconds.items())}
    return row


def with_batch_size(pipe: Any, size: int) -> None:
    """Set ``pipeline.batch_size`` of a built pipeline, as a stated value (a device profile's does not apply)."""
    import dataclasses

    pipe.config = dataclasses.replace(
        pipe.config, pipeline=dataclasses.replace(pipe.config.pipeline, batch_size=size), stated=pipe.config.stated | {"batch_size"}
    )


def with_threads(pipe: Any, setting: int | str) -> None:
    """Set ``pipeline.threads`` of a built pipeline (the engine reads it per image)."""
    import dataclasses

    pipe.config = dataclasses.replace(pipe.config, pipeline=dataclasses.replace(pipe.config.pipeline, threads=setting))


def contention(
    pipe: Any, vocab: Any, inputs: list[Path], tmp: Path, reset: Any, watch: Any, busy: int, repeats: int
) -> dict[str, Any]:
    """Quiet and contended runs, ``pipeline.threads`` fixed at the process's count (today's
    behaviour) and ``"auto"``, interleaved ``repeats`` times; medians and per-stage seconds."""
    import torch

    fixed = torch.get_num_threads()
    runs: dict[str, list[dict[str, Any]]] = {}
    for rep in range(repeats):
        for load in ("quiet", "contended"):
            for setting in (fixed, "auto"):
                name = f"{load} threads={setting}"
                with_threads(pipe, setting)
                procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy if load == "contended" else 0)]
                try:
                    if procs:
                        time.sleep(1.0)  # let the busy processes be scheduled
                    load_avg = os.getloadavg()[0]
                    row = run_path(pipe, vocab, inputs, tmp / f"out-{load}-{setting}-{rep}", overlap=True, reset=reset, watch=watch)
                finally:
                    for proc in procs:
                        proc.kill()
                        proc.wait()
                row["load_average_1min_at_start"] = round(load_avg, 2)
                print(f"{name} #{rep}:", row, flush=True)
                runs.setdefault(name, []).append(row)
    with_threads(pipe, "auto")

    def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
        keys = {k for r in rows for k in {**r["stage_median_s"], **r.get("sub_stage_s", {})}}
        chosen: dict[str, int] = {}
        for r in rows:
            for n, c in r["threads_chosen"].items():
                chosen[n] = chosen.get(n, 0) + c
        return {
            "s_per_image_median": round(statistics.median(r["s_per_image"] for r in rows), 3),
            "s_per_image_runs": [r["s_per_image"] for r in rows],
            "stage_s_median": {k: round(statistics.median({**r["stage_median_s"], **r.get("sub_stage_s", {})}.get(k, 0.0) for r in rows), 3)
                               for k in sorted(keys)},
            "threads_chosen": chosen,
            "load_average_1min_at_start": [r["load_average_1min_at_start"] for r in rows],
        }

    out = {name: summary(rows) for name, rows in runs.items()}
    for setting in (fixed, "auto"):
        quiet, loaded = out[f"quiet threads={setting}"], out[f"contended threads={setting}"]
        out[f"slowdown threads={setting}"] = round(loaded["s_per_image_median"] / quiet["s_per_image_median"], 3)
    out["quiet auto vs fixed"] = round(out["quiet threads=auto"]["s_per_image_median"] / out[f"quiet threads={fixed}"]["s_per_image_median"], 3)
    return {"busy_processes": busy, "busy_code": BUSY, "repeats": repeats, "images": len(inputs), "runs": runs, "summary": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="12 images (a smoke run of the whole bench)")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--scenarios", default="throughput,contention", help="comma-separated: throughput, batched, contention")
    parser.add_argument("--batch", type=int, default=8, help="pipeline.batch_size of the batched scenario (against 1, in the same run)")
    parser.add_argument("--busy", type=int, default=2, help="single-threaded busy processes of the contention scenario")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of the contention scenario's four runs")
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
        getattr(generator, "_embeddings", {}).clear()  # image embeddings kept for prompts

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
        if "batched" in scenarios:
            rows = {}
            for batch in (1, args.batch):
                with_batch_size(pipe, batch)
                rows[batch] = run_path(pipe, vocab, inputs, tmp / f"out-batch{batch}", overlap=True, reset=reset, watch=watch)
                print(f"batch size {batch}:", rows[batch], flush=True)
            with_batch_size(pipe, 1)
            same = folder_bytes(tmp / "out-batch1") == folder_bytes(tmp / f"out-batch{args.batch}")
            results["batched"] = {"batch_1": rows[1], f"batch_{args.batch}": rows[args.batch],
                                  "speedup": round(rows[1]["wall_s"] / rows[args.batch]["wall_s"], 3), "files_identical": same}
            print("batched speedup", results["batched"]["speedup"], "identical", same, flush=True)
        if "contention" in scenarios:
            results["contention"] = contention(pipe, vocab, inputs, tmp, reset, watch, args.busy, args.repeats)
            print("contention:", json.dumps(results["contention"]["summary"], indent=1), flush=True)
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
