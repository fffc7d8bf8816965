"""Benchmark of the demo's re-query (issue 6): same image, other class names, 150 classes.

What a user does in the demo: upload an image, run once (proposals and image features are computed
and cached), then change only the class names and run again. This measures that second run through
the demo's own handler (:meth:`ovpanoptic.demo_app.DemoApp.run`: ``Pipeline.segment`` with cached
proposals and features, then the page's outputs: display masks, segment table, COCO-panoptic zip)
and, for "page", also the annotated image's files for the page (``annotated_payload``: one PNG per
segment), with each
``--presets`` preset's components at random initialisation (speed does not depend on weight values):
``interactive`` (the demo's: SAM 2.1 hiera-tiny 16x16 adaptive, CLIP ``convnext_base_w`` dense at
512 px, the ``maskformer`` fuser) and ``default`` (32x32, dense at 768 px, the ``detectron2``
fuser); SAM 2's thresholds are loosened so random weights give masks, at most ``--proposals``;
CLIP's template set is ``single`` (it changes only the one-off text encoding, not the cached
scoring timed here). Queries alternate between the ADE20K vocabulary (150 classes,
picked in the menu) and the same names typed in reverse order; their text embeddings are cached by
a first query, which is not timed.

Random weights decide badly: CLIP gives every proposal about the same near-uniform probabilities
(``as_is``: nothing passes the fuser's thresholds) and random SAM 2 masks are a few large,
overlapping blobs, so a random-weight answer has 0-1 segments, far less output work than a real
one. Two stand-ins give the load of a real answer; everything else stays real:

``decisive``
    the real ``score`` runs (its time counts), then each proposal's probabilities become
    ``0.2 x real + 0.8 x one-hot`` of a different ADE20K class (``37 i mod 150``);
scenario ``scene``
    the proposals are ``--proposals`` ellipses of radii 2-25 % of the image side (the scene of
    ``bench_clip.py``) instead of SAM 2's blobs; CLIP's features are computed on them as usual.

    .venv/bin/python bench/bench_demo.py [--runs 5] [--sizes 640x480,1024x768,4000x3000] [--scenarios sam2,scene] [--presets interactive,default]

Times are medians of ``--runs`` queries; each scenario records the load average around it (this
machine's 2 cores are shared, and torch's threads slow down badly when other processes compete). Without torch, sam2, open_clip, gradio or the ``clip``,
``sam2`` and ``detectron2`` components it prints why and exits 0 without results.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ovpanoptic.config import load_config  # noqa: E402
from ovpanoptic.demo_app import CUSTOM_VOCABULARY, DemoApp, annotated_payload  # noqa: E402
from ovpanoptic.pipeline import Pipeline  # noqa: E402
from ovpanoptic.plugins import Registry  # noqa: E402

EXAMPLE = ROOT / "demo" / "examples" / "street.jpg"


def missing_requirement(registry: Registry) -> str | None:
    for module in ("torch", "sam2", "open_clip", "gradio"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    for kind, name in (("proposal_generator", "sam2"), ("classifier", "clip"), ("fuser", "detectron2")):
        if name not in registry.components.get(kind, {}):
            return f"no {kind.replace('_', ' ')} named {name!r} is registered (plugin missing or disabled)"
    return None


def random_checkpoints(folder: Path) -> tuple[Path, Path]:
    import open_clip
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    sam = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    sam_path = folder / "sam2.1_hiera_tiny.pt"
    torch.save({"model": sam.state_dict()}, sam_path)
    torch.manual_seed(0)
    clip = open_clip.create_model("convnext_base_w", pretrained=None)
    clip_path = folder / "convnext_base_w-random.pt"
    torch.save(clip.state_dict(), clip_path)
    return sam_path, clip_path


def typed(vocabulary: Any) -> tuple[str, str]:
    """The vocabulary's names as a user would type them (reversed order), things and stuff apart."""
    cats = list(reversed(vocabulary.categories))
    things = ", ".join("|".join(c.names) for c in cats if c.isthing)
    stuff = ", ".join("|".join(c.names) for c in cats if not c.isthing)
    return things, stuff


class Decisive:
    """Wraps the classifier's ``score``: runs it, then makes each proposal choose a class."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier
        self.original = classifier.score
        self.on = False

    def __call__(self, prepared: Any, vocabulary: Any) -> Any:
        from ovpanoptic.types import ClassScores

        scores = self.original(prepared, vocabulary)
        if not self.on:
            return scores
        n, c = scores.probs.shape
        onehot = np.zeros((n, c), np.float32)
        onehot[np.arange(n), (37 * np.arange(n)) % c] = 1.0
        probs = (0.2 * scores.probs + 0.8 * onehot).astype(np.float32)
        return ClassScores(logits=np.log(np.maximum(probs, 1e-6)), probs=probs, category_ids=scores.category_ids)


def scene_proposals(image: np.ndarray, count: int) -> Any:
    """``count`` elliptic masks of radii 2..25 % of the image side (seed 0), like bench_clip.py's scene."""
    from ovpanoptic.types import ProposalSet

    h, w = image.shape[:2]
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    masks = np.zeros((count, h, w), bool)
    for i in range(count):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.02, 0.25, size=2) * max(h, w)
        masks[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        if not masks[i].any():
            masks[i, int(min(cy, h - 1)), int(min(cx, w - 1))] = True
    return ProposalSet.from_masks(masks, rng.uniform(0.5, 1.0, count).astype(np.float32))


def requery(app: DemoApp, cache_dir: Path, path: str, things: str, stuff: str, runs: int) -> dict[str, Any]:
    """``runs`` class-name changes on an image already seen: ADE20K from the menu, then typed, ..."""
    handler, page, pipeline_total, stages, segments = [], [], [], [], []
    for i in range(runs):
        query = (path, "", "", "ade20k") if i % 2 == 0 else (path, things, stuff, CUSTOM_VOCABULARY)
        t_handler, out = timed(lambda: app.run(*query))
        if not out.cached:
            raise RuntimeError("the re-query did not re-use the cached proposals")
        t_post, _ = timed(lambda: annotated_payload(out.annotated, out.colors, cache_dir))
        handler.append(t_handler)
        page.append(t_handler + t_post)
        pipeline_total.append(out.timings["total"])
        stages.append(out.timings)
        segments.append(len(out.result.segments))
    return {
        "segments": int(statistics.median(segments)),
        "pipeline_median_s": round(statistics.median(pipeline_total), 4),
        "handler_median_s": round(statistics.median(handler), 4),
        "page_median_s": round(statistics.median(page), 4),
        "handler_runs_s": [round(t, 4) for t in handler],
        "stage_medians_s": {
            k: round(statistics.median(s[k] for s in stages), 4) for k in ("classify", "fuse", "resize", "total", "outputs")
        },
    }


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="640x480,1024x768,4000x3000", help="image sizes WxH, comma-separated")
    parser.add_argument("--proposals", type=int, default=100, help="max_proposals of sam2")
    parser.add_argument("--scenarios", default="sam2,scene", help="which scenarios to run (others are kept from --out)")
    parser.add_argument("--presets", default="interactive,default", help="presets to run each scenario with")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "demo.json")
    args = parser.parse_args(argv)

    registry = Registry.create()
    reason = missing_requirement(registry)
    if reason:
        print(f"bench_demo: skipped: {reason}; the default components are needed (run scripts/bootstrap.sh)")
        return 0

    import gradio
    import torch


    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "gradio": gradio.__version__,
        },
        "setup": {
            "presets": {
                "interactive": "the demo's: sam2 fast 16x16 adaptive, clip dense 512, maskformer fuser",
                "default": "sam2 fast 32x32, clip dense 768, detectron2 fuser",
            },
            "weights": "random init (SAM 2.1 hiera-tiny, convnext_base_w)",
            "sam2": f"the preset's points per side, loose thresholds for random weights, max_proposals {args.proposals}",
            "clip_templates": "single (text embeddings are cached before timing)",
            "decisive": "real score, then probs = 0.2 x real + 0.8 x one-hot(class (37 i) mod 150) for proposal i",
            "scenario_scene": "proposals = ellipses of radii 2-25 % of the image side instead of SAM 2's",
            "classes": 150,
            "runs": args.runs,
            "requery": "handler = DemoApp.run (pipeline with cached proposals/features + table, masks, zip); "
            "page = handler + the annotated image's files for the page (annotated_payload: JPEG + one mask PNG per segment)",
        },
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["OVPANOPTIC_CACHE_DIR"] = str(folder / "cache")
        t_ckpt, (sam_path, clip_path) = timed(lambda: random_checkpoints(folder))
        print(f"random checkpoints written in {t_ckpt:.1f} s", flush=True)
        overrides = [
            f"proposal_generator.sam2.model={str(sam_path)!r}",
            "proposal_generator.sam2.pred_iou_thresh=0.0",
            "proposal_generator.sam2.stability_score_thresh=0.0",
            "proposal_generator.sam2.stability_score_offset=0.05",
            "proposal_generator.sam2.box_nms_thresh=0.9",
            f"proposal_generator.sam2.max_proposals={args.proposals}",
            f"classifier.clip.pretrained={str(clip_path)!r}",
            "classifier.clip.templates='single'",
            "pipeline.device='cpu'",
        ]
        things, stuff = typed(registry.vocabulary("ade20k"))
        base = Image.open(EXAMPLE).convert("RGB")
        runs = [
            (preset.strip(), scenario.strip())
            for preset in args.presets.split(",") if preset.strip()
            for scenario in args.scenarios.split(",") if scenario.strip()
        ]
        for preset, scenario in runs:
            key = f"{preset}/{scenario}"
            print(f"== {key}", flush=True)
            load_start = [round(v, 2) for v in os.getloadavg()]
            app = DemoApp(Pipeline(load_config(preset, overrides), registry=registry))
            pipe = app.pipeline_for(None)
            if scenario == "scene":
                pipe.component("proposal_generator").generate = lambda image, progress=None: scene_proposals(image, args.proposals)
            classifier = pipe.component("classifier")
            decisive = Decisive(classifier)
            classifier.score = decisive
            results["scenarios"][key] = {"load_average_at_start": load_start}
            for width, height in sizes:
                path = folder / f"street-{width}x{height}.png"
                base.resize((width, height), Image.Resampling.BICUBIC).save(path)
                label = f"{width}x{height}"
                t_first, first = timed(lambda: app.run(str(path), things, stuff))
                print(f"{key} {label}: first run {t_first:.1f} s", flush=True)
                entry: dict[str, Any] = {
                    "first_run_s": round(t_first, 3),
                    "first_run_timings_s": {k: round(v, 4) for k, v in first.timings.items()},
                    "proposals": len(next(reversed(pipe._cache.values())).proposals),
                }
                t_cold, _ = timed(lambda: app.run(str(path), "", "", "ade20k"))
                entry["first_ade20k_query_s"] = round(t_cold, 3)
                for variant in ("as_is", "decisive") if scenario == "sam2" else ("decisive",):
                    decisive.on = variant == "decisive"
                    entry[variant] = requery(app, folder / "page-cache", str(path), things, stuff, args.runs)
                    print(
                        f"{key} {label} {variant}: {entry[variant]['segments']} segments; re-query pipeline "
                        f"{entry[variant]['pipeline_median_s']:.3f} s, handler {entry[variant]['handler_median_s']:.3f} s, "
                        f"with the page's mask PNGs {entry[variant]['page_median_s']:.3f} s",
                        flush=True,
                    )
                decisive.on = False
                results["scenarios"][key][label] = entry
            results["scenarios"][key]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
            app.close()
    if args.out.is_file():  # keep the preset/scenario pairs not run this time (older layouts are dropped)
        previous = json.loads(args.out.read_text()).get("scenarios", {})
        kept = {k: v for k, v in previous.items() if "/" in k and k not in results["scenarios"]}
        results["scenarios"] = {**kept, **results["scenarios"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
