"""The fusers against the number of proposals (issue 25): ``detectron2`` as it was (the inputs
handed to detectron2's own ``combine_semantic_and_instance_outputs``, full-image passes per
instance), ``detectron2`` now (the same rule inside each instance's box, numpy on the CPU, torch on
CUDA) and ``maskformer``, at 100 / 400 / 800 fixed realistic proposals (``bench/run.py``'s masks:
the COCO fixture's ground-truth segments and their parts) at 640x480, scores decisive (each mask's
true class at 0.9, ties everywhere) and varied (the true class at a random probability). Every timing checks that the new fuser's answer equals the old one's.

    .venv/bin/python bench/bench_fusion.py [--counts 100,400,800] [--runs 3] [--device cpu|cuda] [--busy 2]

``--busy 2`` also times every row with two single-threaded busy processes beside it (the issue's
contention load: the old path's torch operations wait at OpenMP barriers for descheduled threads).

Results: ``bench/results/fusion.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="100,400,800")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--device", default="cpu", help="where the new detectron2 fuser combines (cpu or cuda)")
    parser.add_argument("--skip-old", action="store_true", help="do not time the old detectron2 path")
    parser.add_argument("--busy", type=int, default=0, help="also time every row with this many single-threaded busy processes beside it")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fusion.json")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    import torch

    import test_fusion as tf  # the reference (old) fuser and the fixed masks live with the tests

    from ovpanoptic.builtins.fusion import Detectron2Fuser, Detectron2FuserConfig, MaskFormerFuser, MaskFormerFuserConfig
    from ovpanoptic.components import ComponentContext

    w, h = (int(v) for v in args.size.split("x"))
    counts = [int(c) for c in args.counts.split(",")]
    new = Detectron2Fuser(Detectron2FuserConfig(), ComponentContext(device=args.device))
    mf = MaskFormerFuser(MaskFormerFuserConfig())

    def timed(fn: Any, *a: Any) -> tuple[float, Any]:
        samples, out = [], None
        for _ in range(args.runs):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(*a)
            samples.append(time.perf_counter() - t0)
        return round(statistics.median(samples), 4), out

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
                    "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
        "size": args.size, "device": args.device, "runs": args.runs, "seconds": {},
    }
    import subprocess

    for count, kind, busy in [(c, k, b) for c in counts for k in ("decisive", "varied") for b in sorted({0, args.busy})]:
        ps, cs, vocab = tf._realistic(count, kind == "decisive", h=h, w=w)
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        time.sleep(0.5 if busy else 0.0)
        ps.areas, ps.windows  # measured once per proposal set, as the pipeline's proposals are
        row: dict[str, Any] = {"proposals": len(ps), "scores": kind, "busy_processes": busy}
        new.fuse(ps, cs, vocab)  # warm-up (CUDA context, imports)
        row["detectron2_new_s"], got = timed(new.fuse, ps, cs, vocab)
        if not args.skip_old:
            row["detectron2_old_s"], ref = timed(tf._reference_detectron2_fuse, new, ps, cs, vocab)
            tf._same(got, ref)
            row["same_output"] = True
            row["speedup"] = round(row["detectron2_old_s"] / row["detectron2_new_s"], 1)
        row["maskformer_s"], _ = timed(mf.fuse, ps, cs, vocab)
        for proc in procs:
            proc.kill()
            proc.wait()
        row["segments"] = len(got.segments)
        results["seconds"][f"{count} {kind}" + (f" busy {busy}" if busy else "")] = row
        print(count, row, flush=True)
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
