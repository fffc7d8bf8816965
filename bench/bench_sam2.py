"""Benchmark: the fast `sam2` generator against `sam2-stock` (SAM2AutomaticMaskGenerator).

Same model (SAM 2.1 hiera tiny architecture, random initialisation with a fixed seed: speed does not
depend on weight values), same image (1024x768), same settings; each run in its own process so
peak RSS is per run. Reports wall time per stage, masks kept, peak RSS, and how the fast output
matches the stock output (count, one-to-one mask IoU).

    .venv/bin/python bench/bench_sam2.py                 # 16x16 and 32x32, writes bench/results/sam2.json
    .venv/bin/python bench/bench_sam2.py --grids 16      # quicker
    .venv/bin/python bench/bench_sam2.py --grids 32 --settings thresholds-0 --kinds fast --out bench/results/sam2_repeat.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "fixtures" / "coco_panoptic_sample" / "images" / "000000142238.jpg"


def make_image() -> np.ndarray:
    from PIL import Image

    if SAMPLE.is_file():
        return np.asarray(Image.open(SAMPLE).convert("RGB").resize((1024, 768), Image.Resampling.BILINEAR))
    rng = np.random.default_rng(0)
    img = np.full((768, 1024, 3), 120, np.uint8)
    for _ in range(30):
        x, y = rng.integers(0, 900), rng.integers(0, 650)
        img[y : y + rng.integers(30, 200), x : x + rng.integers(30, 200)] = rng.integers(0, 255, 3)
    return img


def make_checkpoint(path: Path) -> None:
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    torch.save({"model": model.state_dict()}, path)


def run_one(kind: str, grid: int, settings: dict, checkpoint: str, out_npz: str) -> dict:
    """In a child process: run one generator once, save masks, report timings."""
    import torch

    from ovpanoptic.builtins import sam2 as plugin
    from ovpanoptic.components import ComponentContext

    image = make_image()
    common = dict(model=checkpoint, points_per_side=grid, **settings)
    ctx = ComponentContext(device="cpu")
    stages: dict[str, float] = {}
    if kind == "stock":
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        def timed(name, fn):
            def wrapper(*args, **kwargs):
                t = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    stages[name] = stages.get(name, 0.0) + time.perf_counter() - t

            return wrapper

        SAM2ImagePredictor.set_image = timed("encoder", SAM2ImagePredictor.set_image)
        SAM2ImagePredictor._predict = timed("decoder+upsample", SAM2ImagePredictor._predict)
        gen = plugin.StockSam2Generator(plugin.Sam2Config(**common), ctx)
    else:
        extra = {"adaptive": kind.endswith("adaptive"), "precision": "bfloat16" if "bf16" in kind else "float32"}
        gen = plugin.FastSam2Generator(plugin.Sam2FastConfig(**common, **extra), ctx)
    gen.loader.get()
    import sam2.automatic_mask_generator  # noqa: F401 - warm imports (torchvision) outside the timing
    import torchvision.ops  # noqa: F401

    t = time.perf_counter()
    proposals = gen.generate(image)
    total = time.perf_counter() - t
    if kind != "stock":
        stages = dict(gen.stage_seconds)
    stages["other"] = max(0.0, total - sum(stages.values()))
    np.savez_compressed(out_npz, masks=proposals.masks, scores=proposals.scores)
    return {
        "kind": kind,
        "grid": grid,
        "seconds": round(total, 3),
        "stages": {k: round(v, 3) for k, v in stages.items()},
        "masks": len(proposals),
        "prompts_decoded": getattr(gen, "prompts_decoded", grid * grid),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--settings", nargs="+", default=["thresholds-0", "pred-iou-0.49"], help="which threshold settings")
    parser.add_argument("--kinds", nargs="+", default=None, help="which generators (stock is always run first)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "sam2.json"))
    parser.add_argument("--child", nargs=5, metavar=("KIND", "GRID", "SETTINGS", "CKPT", "NPZ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, grid, settings, ckpt, npz = args.child
        print(json.dumps(run_one(kind, int(grid), json.loads(settings), ckpt, npz)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-sam2-"))
    ckpt = tmp / "sam2.1_hiera_tiny.pt"
    make_checkpoint(ckpt)
    variants = {
        "thresholds-0": dict(pred_iou_thresh=0.0, stability_score_thresh=0.0),
        "pred-iou-0.49": dict(pred_iou_thresh=0.49, stability_score_thresh=0.0),
    }
    runs: list[dict] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:  # after every run, so an interrupted benchmark keeps what it measured
        report = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()},
            "image": "COCO 000000142238 resized to 1024x768" if SAMPLE.is_file() else "synthetic 1024x768",
            "model": "SAM 2.1 hiera tiny, random init (seed 0)",
            "runs": runs,
        }
        out.write_text(json.dumps(report, indent=1))

    for grid in args.grids:
        for name in args.settings:
            settings = variants[name]
            kinds = ["stock", "fast", "fast-bf16"] + (["fast-bf16-adaptive"] if name == "pred-iou-0.49" else [])
            if args.kinds:
                kinds = ["stock"] + [k for k in kinds[1:] if k in args.kinds]
            results = {}
            for kind in kinds:
                npz = tmp / f"{kind}-{grid}-{name}.npz"
                cmd = [sys.executable, __file__, "--child", kind, str(grid), json.dumps(settings), str(ckpt), str(npz)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                result["settings"] = name
                results[kind] = (result, np.load(npz)["masks"])
                runs.append(result)
                write()
                print(json.dumps(result), flush=True)
            stock, stock_masks = results["stock"]
            for kind in kinds[1:]:
                res, masks = results[kind]
                from ovpanoptic.testing import matched_ious

                ious = matched_ious(stock_masks, masks)
                res["speedup_vs_stock"] = round(stock["seconds"] / res["seconds"], 2)
                res["same_count_as_stock"] = res["masks"] == stock["masks"]
                res["min_matched_iou"] = round(min(ious), 4) if ious else None
                print(f"grid {grid} {name} {kind}: {res['speedup_vs_stock']}x faster, masks {res['masks']} vs {stock['masks']}, "
                      f"min IoU {res['min_matched_iou']}, RSS {res['peak_rss_mb']} vs {stock['peak_rss_mb']} MB", flush=True)
            write()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
