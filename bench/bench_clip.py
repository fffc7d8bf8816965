"""Benchmark of the ``clip`` classifier (issue 4): crop vs dense, and the re-query path.

* image side: 100 masks on a 640x480 image, ``prepare`` in crop mode and in dense mode with the
  same model (the default ConvNeXt CLIP, ``convnext_base_w``), plus ViT-B-16 in crop mode;
* re-query: 150 classes (the ADE20K vocabulary) whose text embeddings are cached, on prepared
  proposals: ``score`` + the built-in ``maskformer`` fuser, i.e. what ``Pipeline.segment`` runs on
  an image it has already seen.

Weights are the default architectures at random initialisation (speed does not depend on weight
values), saved to a temporary checkpoint and loaded through the product's loading path. Times are
medians of ``--runs`` runs on whatever CPU threads torch uses by default.

    .venv/bin/python bench/bench_clip.py [--runs 3] [--threads N] [--out bench/results/clip.json]

The re-query fuses all 100 proposals (fuser thresholds at 0: random weights give near-uniform
probabilities, which the default thresholds would drop), the fuser's worst case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ovpanoptic.builtins.clip import ClipConfig  # noqa: E402
from ovpanoptic.builtins.clip.classifier import ClipClassifier  # noqa: E402
from ovpanoptic.builtins.clip.templates import TEMPLATE_SETS  # noqa: E402
from ovpanoptic.builtins.fusion import MaskFormerFuser, MaskFormerFuserConfig  # noqa: E402
from ovpanoptic.components import ComponentContext  # noqa: E402
from ovpanoptic.plugins import Registry  # noqa: E402
from ovpanoptic.types import ProposalSet  # noqa: E402

HEIGHT, WIDTH, MASKS = 480, 640, 100
TEMPLATES = {name: templates for name, (templates, _) in TEMPLATE_SETS.items()}


def scene(seed: int = 0) -> tuple[np.ndarray, ProposalSet]:
    """A smooth random 640x480 image and 100 elliptic masks of radii 8..160 px."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    for c in range(3):
        for _ in range(4):
            fy, fx, phase = rng.uniform(0.002, 0.03), rng.uniform(0.002, 0.03), rng.uniform(0, 6.3)
            image[..., c] += np.sin(fy * yy + fx * xx + phase)
    image = ((image - image.min()) / (image.max() - image.min()) * 255).astype(np.uint8)
    masks = np.zeros((MASKS, HEIGHT, WIDTH), bool)
    for i in range(MASKS):
        cy, cx = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH)
        ry, rx = rng.uniform(8, 160, size=2)
        masks[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        if not masks[i].any():
            masks[i, int(min(cy, HEIGHT - 1)), int(min(cx, WIDTH - 1))] = True
    return image, ProposalSet.from_masks(masks, rng.uniform(0.5, 1.0, MASKS).astype(np.float32))


def median_time(fn: Callable[[], Any], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), [round(t, 4) for t in times]


def random_checkpoint(arch: str, folder: Path) -> Path:
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None)
    path = folder / f"{arch}-random.pt"
    torch.save(model.state_dict(), path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "clip.json")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--requery-only", action="store_true", help="measure only the re-query (skips the crop runs)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    image, proposals = scene()
    vocabulary = Registry.create(entry_points=False, env={}).vocabulary("ade20k")
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        },
        "setup": {"image": f"{WIDTH}x{HEIGHT}", "masks": MASKS, "runs": args.runs, "weights": "random init, default architectures"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        context = ComponentContext(device="cpu", cache_dir=folder / "cache", prompt_templates=TEMPLATES)

        def classifier(arch: str, checkpoint: Path, **options: Any) -> ClipClassifier:
            clf = ClipClassifier(ClipConfig(model=arch, pretrained=str(checkpoint), templates="single", **options), context)
            t0 = time.perf_counter()
            clf.load()
            results.setdefault("load_s", {})[f"{arch} {options}"] = round(time.perf_counter() - t0, 3)
            return clf

        image_side: dict[str, Any] = {}
        convnext = random_checkpoint("convnext_base_w", folder)
        variants = [
            ("convnext_base_w dense 768", {"mode": "dense", "dense_size": 768}),
            ("convnext_base_w dense 512", {"mode": "dense", "dense_size": 512}),
            ("convnext_base_w crop", {"mode": "crop"}),
        ]
        for label, options in variants[:1] if args.requery_only else variants:
            clf = classifier("convnext_base_w", convnext, **options)
            clf.prepare(image, ProposalSet(proposals.masks[:2], proposals.boxes_xyxy[:2], proposals.scores[:2]))  # warm-up
            median, runs = median_time(lambda: clf.prepare(image, proposals), args.runs)
            image_side[label] = {"median_s": round(median, 3), "runs_s": runs}
            print(f"{label}: {median:.2f} s for {MASKS} masks", flush=True)
            if label == "convnext_base_w dense 768":
                dense = clf
        if args.requery_only:
            image_side = {}
        vit = random_checkpoint("ViT-B-16", folder) if not args.requery_only else None
        if vit is not None:
            vit_crop = classifier("ViT-B-16", vit, mode="crop")
            vit_crop.prepare(image, ProposalSet(proposals.masks[:2], proposals.boxes_xyxy[:2], proposals.scores[:2]))
            median, runs = median_time(lambda: vit_crop.prepare(image, proposals), args.runs)
            image_side["ViT-B-16 crop"] = {"median_s": round(median, 3), "runs_s": runs}
            print(f"ViT-B-16 crop: {median:.2f} s for {MASKS} masks", flush=True)
            crop_s = image_side["convnext_base_w crop"]["median_s"]
            image_side["ratio crop/dense (convnext_base_w, dense 768)"] = round(crop_s / image_side["convnext_base_w dense 768"]["median_s"], 2)
            image_side["ratio crop/dense (convnext_base_w, dense 512)"] = round(crop_s / image_side["convnext_base_w dense 512"]["median_s"], 2)
            results["image_side"] = image_side

        # Re-query: prepared proposals, 150 classes whose text embeddings are cached.
        prepared = dense.prepare(image, proposals)
        fuser = MaskFormerFuser(MaskFormerFuserConfig(min_class_prob=0.0, object_mask_threshold=0.0))
        t0 = time.perf_counter()
        dense.score(prepared, vocabulary)
        cold = time.perf_counter() - t0
        prompts = sum(len(c.names) for c in vocabulary.categories)
        scores = dense.score(prepared, vocabulary)
        score_s, _ = median_time(lambda: dense.score(prepared, vocabulary), max(args.runs, 5))
        fuse_s, _ = median_time(lambda: fuser.fuse(proposals, scores, vocabulary), max(args.runs, 5))
        total_s, runs = median_time(lambda: fuser.fuse(proposals, dense.score(prepared, vocabulary), vocabulary), max(args.runs, 5))
        fresh = ClipClassifier(dense.config, context)  # a new process: embeddings come from the disk cache
        fresh.load()
        fresh_prepared = fresh.prepare(image, ProposalSet(proposals.masks[:1], proposals.boxes_xyxy[:1], proposals.scores[:1]))
        t0 = time.perf_counter()
        fresh.score(fresh_prepared, vocabulary)
        disk_s = time.perf_counter() - t0
        results["requery"] = {
            "classes": len(vocabulary),
            "score_s": round(score_s, 4),
            "fuse_maskformer_s": round(fuse_s, 4),
            "score_plus_fuse_median_s": round(total_s, 4),
            "score_plus_fuse_runs_s": runs,
            "first_score_from_disk_cache_s": round(disk_s, 4),
            "cold_text_encoding": {
                "prompts": prompts,
                "seconds": round(cold, 3),
                "prompts_per_s": round(prompts / cold, 1),
                "note": "templates 'single'; imagenet-80 encodes 80x as many prompts, once ever per class",
            },
        }
        print(f"re-query, 150 cached classes: score {score_s * 1000:.1f} ms + maskformer {fuse_s * 1000:.1f} ms "
              f"= {total_s * 1000:.1f} ms (first from disk cache: {disk_s * 1000:.1f} ms); cold text: "
              f"{prompts} prompts in {cold:.2f} s", flush=True)
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
