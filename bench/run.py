"""The benchmark suite (issue 16): per-stage times, peak memory and the speed-up over a naive baseline.

    .venv/bin/python bench/run.py                      # CPU: about 15 minutes on 2 cores
    .venv/bin/python bench/run.py --device cuda --out bench/results/e2e_cuda.json

What runs, each (scenario, image) in its own worker process (peak RSS from ``os.wait4``):

``default``
    the README's command: the ``default`` preset with ``pipeline.device_profile = "auto"`` (on a
    CPU: SAM 2 16x16 adaptive, bfloat16 where the CPU has it; on CUDA: 32x32 bfloat16).
``cpu-fast``
    the ``cpu-fast`` preset.
``all-masks``
    ``default`` with SAM 2's quality filters off and adaptive sampling off, so every prompt builds
    its three masks: the mask-building and NMS cost that random weights hide (trained weights pass
    some of the prompts), an upper bound. 640x480 only by default (SAM 2 works at 1024 px anyway).
``naive``
    the baseline the issue names: stock ``SAM2AutomaticMaskGenerator`` at 32x32 (``sam2-stock``),
    one CLIP ViT-B/16 crop per mask (``classifier.clip.mode = "crop"``), detectron2 fusion, no
    device profile (float32).

Images: the COCO fixture photo 000000142238 (640x427) resized to 640x480 and 1024x768.

Weights: the real architectures (SAM 2.1 hiera-tiny, CLIP convnext_base_w and ViT-B-16) at random
initialisation (seed 0), saved once to ``--weights`` and loaded through the product's loading path;
speed does not depend on weight values, but *output* does: random SAM 2 weights pass no mask through
the quality filters. So each image is timed in two parts, in one pipeline run:

1. the proposal generator runs for real on the image (all its prompts, its real cost up to the
   filters; masks that would pass with trained weights are not built: see ``sam2_masks``);
2. its output is then replaced by 100 fixed, realistic masks (the COCO ground-truth segments of the
   image plus parts of them cut by fixed grids, the way SAM proposes wholes and parts), on which the
   real classifier computes its image features and scores; the scores are then replaced by decisive
   ones (each mask's ground-truth class, 0.9) so that fusion and the exporters carry a real answer's
   load. Both replacements are a plugin of this script (``bench-fixed``, ``bench-decisive``)
   wrapping the real components.

Text embeddings: cold encoding (ADE20K's 150 classes and COCO's 133, ``short`` templates) is
measured once in its own worker with an empty cache; the scenario workers then read that cache
(warm process, cached text), as the issue's goals state.

The COCO fixture is read from ``../shared/fixtures/coco_panoptic_sample`` beside the checkout, or
from ``$OVPANOPTIC_BENCH_SAMPLE``. Results go to ``--out`` (JSON) and, unless ``--no-readme``, to the table in ``bench/README.md``
between the ``e2e:<device>`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("OVPANOPTIC_BENCH_SAMPLE", ROOT.parent / "shared" / "fixtures" / "coco_panoptic_sample"))
SAMPLE_ID = "000000142238"
SIZES = ((640, 480), (1024, 768))
FIXED_MASKS = 100
EXPORTERS = ("coco-panoptic", "overlay", "summary")
WEIGHTS = {
    "sam2": "sam2.1_hiera_tiny.pt",
    "convnext_base_w": "convnext_base_w.pt",
    "ViT-B-16": "ViT-B-16.pt",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    preset: str
    overrides: tuple[str, ...]
    description: str
    clip: str  # the CLIP architecture whose weights it loads


def scenarios(weights: Path) -> dict[str, Scenario]:
    sam = f"'{weights / WEIGHTS['sam2']}'"
    convnext = f"classifier.clip.pretrained='{weights / WEIGHTS['convnext_base_w']}'"
    return {
        "default": Scenario(
            "default", "default", (f"proposal_generator.sam2.model={sam}", convnext),
            "README command: default preset, device profile auto", "convnext_base_w",
        ),
        "cpu-fast": Scenario(
            "cpu-fast", "cpu-fast", (f"proposal_generator.sam2.model={sam}", convnext),
            "cpu-fast preset (device profile auto)", "convnext_base_w",
        ),
        "all-masks": Scenario(
            "all-masks", "default",
            (f"proposal_generator.sam2.model={sam}", convnext, "proposal_generator.sam2.pred_iou_thresh=0",
             "proposal_generator.sam2.stability_score_thresh=0", "proposal_generator.sam2.adaptive=false"),
            "default preset with SAM 2's filters off and no adaptive skipping: every prompt builds its 3 masks "
            "(the mask-building cost random weights hide; an upper bound for trained weights)",
            "convnext_base_w",
        ),
        "naive": Scenario(
            "naive",
            "default",
            (
                "pipeline.device_profile=none",
                "pipeline.proposal_generator=sam2-stock",
                f"proposal_generator.sam2-stock.model={sam}",
                "proposal_generator.sam2-stock.points_per_side=32",
                "classifier.clip.mode=crop",
                "classifier.clip.model=ViT-B-16",
                f"classifier.clip.pretrained='{weights / WEIGHTS['ViT-B-16']}'",
                "pipeline.fuser=detectron2",
            ),
            "naive baseline: stock SAM2AutomaticMaskGenerator 32x32 + ViT-B/16 crop per mask + detectron2, float32",
            "ViT-B-16",
        ),
    }


# -- set-up (parent) ------------------------------------------------------------------------------


def make_weights(folder: Path) -> None:
    """Random-init checkpoints (seed 0) in the formats the product loads; kept between runs."""
    folder.mkdir(parents=True, exist_ok=True)
    missing = [k for k, f in WEIGHTS.items() if not (folder / f).is_file()]
    if not missing:
        return
    code = f"""
import torch, open_clip
from sam2.build_sam import build_sam2
folder = {str(folder)!r}
for key in {missing!r}:
    torch.manual_seed(0)
    if key == "sam2":
        model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
        torch.save({{"model": model.state_dict()}}, folder + "/" + {WEIGHTS['sam2']!r})
    else:
        model = open_clip.create_model(key, pretrained=None)
        torch.save(model.state_dict(), folder + "/" + key + ".pt")
"""
    print(f"writing random-init checkpoints to {folder} ({', '.join(missing)})", flush=True)
    subprocess.run([sys.executable, "-c", code], check=True)


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)``; :class:`ValueError` for anything else."""
    w, sep, h = text.strip().lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or not (32 <= int(w) <= 8192 and 32 <= int(h) <= 8192):
        raise ValueError(f"{text!r} is not a size WIDTHxHEIGHT between 32 and 8192 px, e.g. 640x480")
    return int(w), int(h)


def make_images(folder: Path, sizes: list[tuple[int, int]]) -> dict[str, Path]:
    from PIL import Image

    src = Image.open(SAMPLE / "images" / f"{SAMPLE_ID}.jpg").convert("RGB")
    out = {}
    for w, h in sizes:
        path = folder / f"coco-{w}x{h}.png"
        src.resize((w, h), Image.Resampling.BICUBIC).save(path)
        out[f"{w}x{h}"] = path
    return out


def run_worker(args: list[str], log: Path) -> tuple[dict[str, Any], float, float]:
    """Run ``bench/run.py --worker ...``; returns (its JSON, peak RSS in MB, wall seconds)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", *args], stdout=subprocess.PIPE, stderr=fh, env=env, text=True)
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"worker {' '.join(args[:4])} failed (exit {code}); its log: {log}\n{log.read_text()[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024, wall


def start_time(cache: Path) -> dict[str, Any]:
    """Process start to first work for a pipeline with no model (oracle components), and whether
    the model-free commands import torch."""
    images = SAMPLE / "images"
    oracle = [f"{kind}.oracle.{key}={value}" for kind in ("proposal_generator", "classifier") for key, value in
              (("gt_json", SAMPLE / "panoptic.json"), ("gt_dir", SAMPLE / "panoptic"), ("images_dir", images))]
    cmd = [sys.executable, "-X", "importtime", "-m", "ovpanoptic", "segment", str(images / f"{SAMPLE_ID}.jpg"),
           "--classes", "person, car", "-o", str(cache / "oracle-out"), "--overwrite",
           "--set", "pipeline.proposal_generator=oracle", "--set", "pipeline.classifier=oracle",
           "--set", "pipeline.fuser=maskformer", "--set", "pipeline.exporters=['coco-panoptic']", "--set", "pipeline.max_side=0"]
    for o in oracle:
        cmd += ["--set", o]
    times, torch_loaded = [], {}
    for _ in range(3):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise SystemExit(f"oracle run failed: {proc.stderr[-2000:]}")
        torch_loaded["segment (oracle, maskformer)"] = _imports_torch(proc.stderr)
    for command in (["plugins"], ["presets"], ["vocabularies"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ovpanoptic", *command], capture_output=True, text=True, cwd=ROOT)
        torch_loaded[" ".join(command)] = _imports_torch(proc.stderr)
    return {"no_model_pipeline_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times], "imports_torch": torch_loaded}


def _imports_torch(importtime: str) -> bool:
    """Whether ``python -X importtime`` output shows ``torch`` being imported."""
    return re.search(r"\|\s+torch$", importtime, re.MULTILINE) is not None


# -- the fixed masks ---------------------------------------------------------------------------------


def fixed_masks(height: int, width: int, count: int = FIXED_MASKS) -> tuple[Any, list[str]]:
    """``count`` realistic masks at ``height x width``: the image's COCO ground-truth segments
    (largest first), then the parts of those segments in the cells of a 2x2, 3x3, 4x4 ... grid
    (each part at least 0.1 % of the image and not the whole segment). Returns ``(masks (N, H, W)
    bool, category names)``; deterministic."""
    import numpy as np
    from PIL import Image

    gt = json.loads((SAMPLE / "panoptic.json").read_text())
    names = {c["id"]: c["name"] for c in gt["categories"]}
    ann = next(a for a in gt["annotations"] if a["file_name"].startswith(SAMPLE_ID))
    png = Image.open(SAMPLE / "panoptic" / ann["file_name"]).convert("RGB").resize((width, height), Image.Resampling.NEAREST)
    rgb = np.asarray(png).astype(np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    segments = sorted(ann["segments_info"], key=lambda s: -s["area"])
    masks, labels = [], []
    for s in segments:
        m = ids == s["id"]
        if m.any():
            masks.append(m)
            labels.append(names[s["category_id"]])
    wholes = list(zip(masks, labels))
    min_area = max(1, int(0.001 * height * width))
    k = 2
    while len(masks) < count and k <= 16:
        for m, label in wholes:
            for i in range(k):
                for j in range(k):
                    cell = np.zeros_like(m)
                    cell[i * height // k : (i + 1) * height // k, j * width // k : (j + 1) * width // k] = True
                    part = m & cell
                    area = int(part.sum())
                    if area >= min_area and area < int(m.sum()) and len(masks) < count:
                        masks.append(part)
                        labels.append(label)
        k += 1
    return np.stack(masks[:count]), labels[:count]


# -- worker --------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class Stopwatch:
    """Adds up seconds per stage."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}

    def time(self, stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        _sync(self.device)
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _sync(self.device)
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t


def bench_plugin(inner: Any, watch: Stopwatch, fixed: Callable[[int, int], tuple[Any, list[str]]]) -> object:
    """A plugin registering ``bench-fixed`` (the real generator runs, its output is replaced by the
    fixed masks) and ``bench-decisive`` (the real classifier computes features and scores; the
    scores are replaced by each mask's ground-truth class at 0.9)."""
    import numpy as np

    from ovpanoptic.components import NoConfig
    from ovpanoptic.hookspecs import hookimpl
    from ovpanoptic.types import ClassScores, ProposalSet

    state: dict[str, Any] = {"labels": []}

    class FixedGenerator:
        def encode_batch(self, images: Any) -> None:  # the real generator's batched encoder pass (pipeline.batch_size)
            generator = inner.component("proposal_generator")
            if hasattr(generator, "encode_batch"):
                watch.time("sam2_batch_encode", generator.encode_batch, images)

        def generate(self, image: Any, *, progress: Any = None) -> ProposalSet:
            generator = inner.component("proposal_generator")
            real = watch.time("sam2_total", generator.generate, image)
            state["real_proposals"] = len(real)
            for stage, seconds in getattr(generator, "stage_seconds", {}).items():
                watch.seconds[f"sam2_{stage}"] = watch.seconds.get(f"sam2_{stage}", 0.0) + seconds
            masks, labels = fixed(image.shape[0], image.shape[1])
            state["labels"] = labels
            return ProposalSet.from_masks(masks, np.linspace(0.99, 0.5, len(masks)).astype(np.float32))

    class DecisiveClassifier:
        def encode_batch(self, images: Any) -> None:
            classifier = inner.component("classifier")
            if hasattr(classifier, "encode_batch"):
                watch.time("clip_batch_encode", classifier.encode_batch, images)

        def prepare(self, image: Any, proposals: ProposalSet) -> Any:
            return watch.time("image_features", inner.component("classifier").prepare, image, proposals)

        def score(self, prepared: Any, vocabulary: Any) -> ClassScores:
            real = watch.time("classification", inner.component("classifier").score, prepared, vocabulary)
            by_name = {c.name: j for j, c in enumerate(vocabulary.categories)}
            probs = np.zeros(real.probs.shape, np.float32)
            for i, label in enumerate(state["labels"]):
                probs[i, by_name.get(label, i % max(1, len(vocabulary)))] = 0.9
            return ClassScores(logits=probs * 10, probs=probs, category_ids=vocabulary.ids, temperature=real.temperature)

    class Plugin:
        OVPANOPTIC_PLUGIN_API = "1.0"

        @hookimpl
        def register_proposal_generators(self, register: Any) -> None:
            register("bench-fixed", lambda config, context: FixedGenerator(), config=NoConfig, description="bench: real generator, fixed masks")

        @hookimpl
        def register_classifiers(self, register: Any) -> None:
            register("bench-decisive", lambda config, context: DecisiveClassifier(), config=NoConfig, description="bench: real classifier, decisive scores")

    plugin = Plugin()
    plugin.state = state  # type: ignore[attr-defined]
    return plugin


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["kind"] == "text":
        return text_worker(spec)
    import numpy as np
    import torch
    from PIL import Image

    from ovpanoptic.pipeline import Pipeline
    from ovpanoptic.plugins import Registry

    device = spec["device"]
    scenario = Scenario(**spec["scenario"])
    watch = Stopwatch(device)
    memory: dict[str, float] = {}

    def mark(step: str) -> None:  # the process's peak RSS so far, MB
        memory[step] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    mark("imports")
    t_start = time.perf_counter()
    inner = Pipeline(scenario.preset, overrides=list(scenario.overrides), device=device)
    generator = inner.component("proposal_generator")
    classifier = inner.component("classifier")
    if not hasattr(generator, "stage_seconds"):  # sam2-stock: time its predictor's two calls
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        for method, stage in (("set_image", "sam2_encoder"), ("_predict", "sam2_decoder")):
            original = getattr(SAM2ImagePredictor, method)
            setattr(SAM2ImagePredictor, method, lambda *a, _f=original, _s=stage, **k: watch.time(_s, _f, *a, **k))
    watch.time("weights_load_sam2", generator.loader.get)
    watch.time("weights_load_clip", classifier.load)
    loads = dict(watch.seconds)
    mark("weights loaded")
    cache: dict[tuple[int, int], tuple[Any, list[str]]] = {}

    def fixed(h: int, w: int) -> tuple[Any, list[str]]:
        if (h, w) not in cache:
            cache[(h, w)] = fixed_masks(h, w)
        return cache[(h, w)]

    plugin = bench_plugin(inner, watch, fixed)
    registry = Registry.create(plugins=[("bench", plugin)])
    outer = Pipeline(
        scenario.preset,
        overrides=[*scenario.overrides, "pipeline.proposal_generator=bench-fixed", "pipeline.classifier=bench-decisive"],
        device=device,
        registry=registry,
    )
    coco = outer.vocabulary(name="coco")
    ade = outer.vocabulary(name="ade20k")
    text = Stopwatch(device)
    text.time("text_coco", classifier.prepare_vocabulary, coco)
    text.time("text_ade20k", classifier.prepare_vocabulary, ade)
    mark("text embeddings (cached)")
    image = np.asarray(Image.open(spec["image"]).convert("RGB"))
    outdir = Path(spec["outdir"])
    runs = []
    n_runs = spec["runs"]
    if spec["warmup"]:
        outer.segment(image, coco)
        mark("warm-up segment")
        generator._cache.clear()
        outer.clear_cache()
    for r in range(n_runs):
        watch.seconds = {}
        generator._cache.clear()
        outer.clear_cache()
        _sync(device)
        t = time.perf_counter()
        result = outer.segment(image, coco)
        mark(f"run {r + 1}: segment")
        for name in EXPORTERS:
            watch.time(f"export_{name}", outer.export, result, image, outdir / f"run{r}", "image", [name])
        mark(f"run {r + 1}: exports")
        _sync(device)
        e2e = time.perf_counter() - t
        stages = dict(watch.seconds)
        stages["fusion"] = result.timings["fuse"]
        stages["resize"] = result.timings["resize"]
        # re-query: the same image (proposals and features cached), 150 cached classes
        requery = []
        for _ in range(5):
            t = time.perf_counter()
            again = outer.segment(image, ade)
            requery.append(time.perf_counter() - t)
        runs.append({"e2e_s": e2e, "stages": stages, "requery_150_s": statistics.median(requery), "segments": len(result.segments), "requery_segments": len(again.segments)})
    keys = sorted({k for r in runs for k in r["stages"]})
    median = {k: statistics.median(r["stages"].get(k, 0.0) for r in runs) for k in keys}
    profile = inner.device_profile
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "image": Path(spec["image"]).stem,
        "device": inner.device,
        "device_profile": profile.name if profile else "none",
        "profile_reason": profile.reason if profile else "",
        "generator": {k: v for k, v in vars(generator.config).items()},
        "runs": len(runs),
        "e2e_s": statistics.median(r["e2e_s"] for r in runs),
        "e2e_runs_s": [round(r["e2e_s"], 3) for r in runs],
        "requery_150_s": statistics.median(r["requery_150_s"] for r in runs),
        "stages_s": {**loads, **{k: round(v, 4) for k, v in median.items()}},
        "text_cached_s": {k: round(v, 3) for k, v in text.seconds.items()},
        "real_proposals": plugin.state.get("real_proposals"),  # type: ignore[attr-defined]
        "prompts_decoded": getattr(generator, "prompts_decoded", None),
        "fixed_proposals": FIXED_MASKS,
        "segments": runs[-1]["segments"],
        "setup_s": round(time.perf_counter() - t_start, 1),
        "peak_rss_after_mb": memory,
        "torch_threads": torch.get_num_threads(),
    }


def text_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Cold text encoding of ADE20K and COCO into an empty cache, then the cached reads."""
    from ovpanoptic.builtins.clip.text import TextEmbeddings
    from ovpanoptic.pipeline import Pipeline

    scenario = Scenario(**spec["scenario"])
    pipe = Pipeline(scenario.preset, overrides=list(scenario.overrides), device=spec["device"])
    classifier = pipe.component("classifier")
    watch = Stopwatch(spec["device"])
    watch.time("weights_load_clip", classifier.load)
    out: dict[str, Any] = {"architecture": scenario.clip, "templates": classifier.config.templates, "device": pipe.device}
    for name in ("ade20k", "coco"):
        vocab = pipe.vocabulary(name=name)
        prompts = sum(len(c.names) for c in vocab.categories) * len(classifier.templates)
        watch.time(f"cold_{name}", pipe.prepare_vocabulary, vocab)
        state = classifier._state()
        fresh = TextEmbeddings(state.text._encode, classifier.templates, directory=state.text.directory)
        watch.time(f"disk_{name}", fresh.categories, list(vocab.categories))
        watch.time(f"memory_{name}", state.text.categories, list(vocab.categories))
        out[name] = {"classes": len(vocab), "prompts": prompts}
    out["seconds"] = {k: round(v, 4) for k, v in watch.seconds.items()}
    for name in ("ade20k", "coco"):
        out[name]["prompts_per_s"] = round(out[name]["prompts"] / watch.seconds[f"cold_{name}"], 1)
    return out


# -- report ----------------------------------------------------------------------------------------

STAGE_ROWS = (
    ("weights_load_sam2", "weights load: SAM 2 (once per process)"),
    ("weights_load_clip", "weights load: CLIP (once per process)"),
    ("sam2_encoder", "SAM 2 image encoder"),
    ("sam2_decoder", "SAM 2 prompts (decoder; stock: `_predict`, full-size masks included)"),
    ("sam2_masks", "SAM 2 mask building (random weights: few or none)"),
    ("sam2_other", "SAM 2 filters, NMS, upsampling (stock: its post-processing)"),
    ("sam2_total", "SAM 2 generator, total"),
    ("image_features", "CLIP image features (100 fixed masks)"),
    ("classification", "classification (COCO, 133 cached classes)"),
    ("fusion", "fusion"),
    ("export_coco-panoptic", "export: coco-panoptic"),
    ("export_overlay", "export: overlay"),
    ("export_summary", "export: summary"),
)


def _stage(r: dict[str, Any], key: str) -> float | None:
    s = r["stages_s"]
    if key == "sam2_other":
        if "sam2_encoder" not in s:
            return None
        return max(0.0, s.get("sam2_total", 0.0) - sum(s.get(k, 0.0) for k in ("sam2_encoder", "sam2_decoder", "sam2_masks")))
    return s.get(key)


def markdown(data: dict[str, Any]) -> str:
    results = data["results"]
    cols = [(r["scenario"], r["image"].replace("coco-", "")) for r in results]
    head = "| stage (seconds) | " + " | ".join(f"{s} {i}" for s, i in cols) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]
    for key, label in STAGE_ROWS:
        cells = []
        for r in results:
            v = _stage(r, key)
            cells.append("" if v is None else f"{v:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| **end to end per image** (warm process) | " + " | ".join(f"**{r['e2e_s']:.2f}**" for r in results) + " |")
    lines.append("| images per second | " + " | ".join(f"{1 / r['e2e_s']:.2f}" for r in results) + " |")
    lines.append("| re-query: 150 cached classes, 100 proposals | " + " | ".join(f"{r['requery_150_s']:.3f}" for r in results) + " |")
    lines.append("| peak RSS, MB (whole worker) | " + " | ".join(f"{r['peak_rss_mb']:.0f}" for r in results) + " |")
    lines.append("| prompts decoded / proposals (random weights) | " + " | ".join(f"{r['prompts_decoded'] or '-'} / {r['real_proposals']}" for r in results) + " |")
    lines.append("| device profile | " + " | ".join(r["device_profile"] for r in results) + " |")
    out = "\n".join(lines)
    ratios = data.get("speedup_vs_naive", {})
    if ratios:
        out += "\n\nEnd to end, naive / scenario (same run): " + "; ".join(f"{k}: **{v:.1f}x**" for k, v in ratios.items())
    text = data.get("text")
    if text:
        s = text["seconds"]
        out += (
            f"\n\nCold text encoding ({text['architecture']}, `{text['templates']}` templates, empty cache): ADE20K "
            f"{text['ade20k']['classes']} classes / {text['ade20k']['prompts']} prompts in **{s['cold_ade20k']:.1f} s** "
            f"({text['ade20k']['prompts_per_s']} prompts/s); COCO {text['coco']['classes']} classes in {s['cold_coco']:.1f} s. "
            f"Cached: {s['disk_ade20k'] * 1000:.0f} ms from disk, {s['memory_ade20k'] * 1000:.1f} ms from memory."
        )
    start = data.get("start")
    if start:
        out += (
            f"\n\nProcess start to finished work, pipeline with no model (oracle components, maskformer, coco-panoptic): "
            f"**{start['no_model_pipeline_s']:.2f} s**; imports torch: "
            + ", ".join(f"`{k}` {'yes' if v else 'no'}" for k, v in start["imports_torch"].items())
        )
    return out


def update_readme(data: dict[str, Any], label: str) -> None:
    readme = ROOT / "bench" / "README.md"
    text = readme.read_text()
    begin, end = f"<!-- e2e:{label} -->", f"<!-- /e2e:{label} -->"
    block = f"{begin}\n{data['machine']}\n\n{markdown(data)}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text += f"\n{block}\n"
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    parser.add_argument("--scenarios", default="default,cpu-fast,all-masks,naive",
                        help="comma-separated, from: default, cpu-fast, all-masks, naive")
    parser.add_argument("--all-masks-sizes", default="640x480", help="sizes for the all-masks scenario (its cost does not depend on size)")
    parser.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES), help="comma-separated WIDTHxHEIGHT sizes")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per (scenario, image) after a warm-up; naive: 1 (no warm-up) on a CPU")
    parser.add_argument("--weights", type=Path, default=ROOT / "bench" / ".weights", help="random-init checkpoints (written once)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "e2e.json")
    parser.add_argument("--no-readme", action="store_true", help="do not update the table in bench/README.md")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="an override added to every scenario (e.g. pipeline.device_profile=cpu)")
    parser.add_argument("--render", type=Path, metavar="JSON", help="only write the table of a results file into bench/README.md")
    args = parser.parse_args(argv)
    if args.render:
        try:
            data = json.loads(args.render.read_text())
            results = data["results"]
            label = "cuda" if any(r["device"].startswith("cuda") for r in results) else "cpu"
            table = markdown(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"--render {args.render}: not a results file of this suite ({type(exc).__name__}: {exc})")
        if not results:
            parser.error(f"--render {args.render}: the file has no results")
        print(table)
        if not args.no_readme:
            update_readme(data, label)
        return 0
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if not SAMPLE.is_dir():
        parser.error(f"the COCO fixture is not at {SAMPLE}: set OVPANOPTIC_BENCH_SAMPLE to the coco_panoptic_sample folder")
    known = scenarios(args.weights.resolve())
    wanted = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        parser.error(f"--scenarios: unknown {', '.join(map(repr, unknown)) or 'empty list'}; choose from {', '.join(known)}")
    try:
        sizes = [parse_size(t) for t in args.sizes.split(",") if t.strip()]
        masks_sizes = [parse_size(t) for t in args.all_masks_sizes.split(",") if t.strip()]
    except ValueError as exc:
        parser.error(f"--sizes: {exc}")
    args.scenarios = ",".join(wanted)
    args.sizes = ",".join(f"{w}x{h}" for w, h in sizes)
    make_weights(args.weights)
    plans = {
        name: Scenario(p.name, p.preset, (*p.overrides, *args.extra), p.description + "".join(f"; --set {e}" for e in args.extra), p.clip)
        for name, p in scenarios(args.weights.resolve()).items()
    }
    chosen = [plans[s] for s in args.scenarios.split(",")]
    cpu = args.device == "cpu" or (args.device == "auto" and not _cuda())
    with tempfile.TemporaryDirectory(prefix="ovpanoptic-bench-") as tmp:
        work = Path(tmp)
        os.environ["OVPANOPTIC_CACHE_DIR"] = str(work / "cache")
        os.environ["HF_HUB_OFFLINE"] = "1"
        images = make_images(work, sorted(set(sizes) | set(masks_sizes)))
        data: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": _machine(),
            "argv": sys.argv[1:],
            "results": [],
        }
        print("start-up time of a model-free pipeline ...", flush=True)
        data["start"] = start_time(work)
        print(f"  {data['start']}", flush=True)
        text_scenario = plans["default"]
        spec = {"kind": "text", "scenario": vars(text_scenario), "device": args.device}
        data["text"], rss, _ = run_worker([json.dumps(spec)], work / "text.log")
        data["text"]["peak_rss_mb"] = round(rss)
        print(f"cold text: {data['text']['seconds']}", flush=True)
        for scenario in chosen:
            for size in (args.all_masks_sizes if scenario.name == "all-masks" else args.sizes).split(","):
                naive_cpu = scenario.name == "naive" and cpu
                spec = {
                    "kind": "image", "scenario": vars(scenario), "device": args.device, "image": str(images[size]),
                    "outdir": str(work / f"out-{scenario.name}-{size}"), "runs": 1 if naive_cpu else args.runs, "warmup": not naive_cpu,
                }
                print(f"{scenario.name} {size} ...", flush=True)
                result, rss, wall = run_worker([json.dumps(spec)], work / f"{scenario.name}-{size}.log")
                result["peak_rss_mb"] = round(rss)
                result["worker_wall_s"] = round(wall, 1)
                data["results"].append(result)
                print(f"  e2e {result['e2e_s']:.2f} s (runs {result['e2e_runs_s']}), re-query {result['requery_150_s']:.3f} s, peak {rss:.0f} MB", flush=True)
                _write(args.out, data)
        naive = {r["image"]: r["e2e_s"] for r in data["results"] if r["scenario"] == "naive"}
        data["speedup_vs_naive"] = {
            f"{r['scenario']} {r['image'].replace('coco-', '')}": naive[r["image"]] / r["e2e_s"]
            for r in data["results"] if r["scenario"] not in ("naive", "all-masks") and r["image"] in naive
        }
        _write(args.out, data)
    print(markdown(data))
    if not args.no_readme:
        update_readme(data, "cuda" if not cpu else "cpu")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime())}: {os.cpu_count()} CPU cores ({cpu}){gpu}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}."
    )


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
