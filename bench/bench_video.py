"""Benchmark of ``segment-video`` (issue 13): seconds per frame and memory, keyframes every K frames
with SAM 2's video predictor against segmenting every frame.

The clip: a camera pan over the COCO fixture photo (``000000142238``: 14 people, a ball, tree, sky,
grass), upscaled 1.5x, a 640 x 360 window moving 8 px right and 3 px down per frame, written as PNG
frames; its ground truth is the photo's COCO panoptic map cut the same way, so every frame has the
objects a real one has.

Components (the default preset's, random initialisation; speed does not depend on weight values):
the real SAM 2.1 hiera-tiny generator runs on every keyframe, then its proposals are replaced by the
frame's ground-truth segments (random SAM 2 weights pass no mask); the real CLIP ``convnext_base_w``
computes features and scores, which are replaced by each segment's true class (so keyframes have as
many segments as a real answer); the real detectron2 fuser and the real video output folder
(PNGs, JSON, tracks, overlay video) follow. The tracker is the real ``sam2-video`` (SAM 2.1
hiera-tiny video predictor, random weights) for K > 1 and ``hold`` (no model: ids by IoU between
consecutive frames) for K = 1.

Scenarios, each in its own process (its peak RSS is the process's):

``k1``        30 frames, K = 1 (the image pipeline on every frame).
``k10``       30 frames, K = 10, sam2-video, every thing of the frame tracked (~15 objects).
``k10-few``   30 frames, K = 10, sam2-video, only the 2 largest things kept in the ground truth
              (the others become void): a scene with few objects.
``k10-long``  60 frames of ``k10-few``: memory against clip length (RSS after every window).
``k10-512``, ``k10-few-512``  ``k10`` and ``k10-few`` with the predictor at 512 px
              (``tracker.sam2-video.image_size = 512``).
``objects``   the tracker alone on one 10-frame window: seconds per frame for 1, 4, 8 and all 9 things
              of the first frame.

    .venv/bin/python bench/bench_video.py [--scenarios k1,k10,...] [--out bench/results/video.json]
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
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import SAMPLE, SAMPLE_ID, WEIGHTS, make_weights

WEIGHTS_DIR = ROOT / "bench" / ".weights"
SIZE = (640, 360)
STEP = (8, 3)
SCALE = 1.5


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_clip(folder: Path, frames: int, few: bool) -> tuple[Path, dict[str, Any]]:
    """Write the pan's frames; return (frames folder, {digest: (ids map, {id: class name})})."""
    from ovpanoptic.evaluation import rgb_to_id
    from ovpanoptic.imageio import image_digest, read_image

    gt = json.loads((SAMPLE / "panoptic.json").read_text())
    names = {c["id"]: (c["name"], c["isthing"]) for c in gt["categories"]}
    ann = next(a for a in gt["annotations"] if a["file_name"].startswith(SAMPLE_ID))
    photo = Image.open(SAMPLE / "images" / f"{SAMPLE_ID}.jpg").convert("RGB")
    big = (round(photo.width * SCALE), round(photo.height * SCALE))
    photo = np.asarray(photo.resize(big, Image.Resampling.BICUBIC))
    ids = rgb_to_id(np.asarray(Image.open(SAMPLE / "panoptic" / ann["file_name"]).convert("RGB").resize(big, Image.Resampling.NEAREST)))
    labels = {s["id"]: names[s["category_id"]] for s in ann["segments_info"]}
    if few:
        things = sorted((s for s in ann["segments_info"] if names[s["category_id"]][1]), key=lambda s: -s["area"])
        for s in things[2:]:
            ids[ids == s["id"]] = 0
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {}
    w, h = SIZE
    for t in range(frames):
        x, y = (STEP[0] * t) % (big[0] - w), (STEP[1] * t) % (big[1] - h)
        path = folder / f"{t:04d}.png"
        Image.fromarray(photo[y : y + h, x : x + w]).save(path)
        crop = ids[y : y + h, x : x + w]
        index[image_digest(read_image(path))] = (crop, {int(i): labels[int(i)][0] for i in np.unique(crop) if int(i) in labels})
    return folder, index


def pipeline_with_ground_truth(index: dict[str, Any], tracker: str, image_size: int = 0) -> Any:
    """The default preset's real components, wrapped: proposals and scores replaced by the frame's truth."""
    from ovpanoptic.components import NoConfig
    from ovpanoptic.config import load_config
    from ovpanoptic.hookspecs import hookimpl
    from ovpanoptic.imageio import image_digest
    from ovpanoptic.pipeline import Pipeline
    from ovpanoptic.plugins import Registry, make_plugin_manager
    from ovpanoptic.types import ClassScores, ProposalSet

    overrides = [
        f"proposal_generator.sam2.model='{WEIGHTS_DIR / WEIGHTS['sam2']}'",
        f"classifier.clip.pretrained='{WEIGHTS_DIR / WEIGHTS['convnext_base_w']}'",
        f"tracker.sam2-video.model='{WEIGHTS_DIR / WEIGHTS['sam2']}'",
        f"tracker.sam2-video.image_size={image_size}",
    ]
    inner = Pipeline("default", overrides=overrides, device="cpu")
    state: dict[str, Any] = {}

    class Generator:
        def generate(self, image: Any, *, progress: Any = None) -> ProposalSet:
            inner.component("proposal_generator").generate(image)
            crop, labels = index[image_digest(image)]
            keys = sorted(labels)
            state["labels"] = [labels[k] for k in keys]
            return ProposalSet.from_masks(np.stack([crop == k for k in keys]), np.full(len(keys), 0.9, np.float32))

    class Classifier:
        def prepare(self, image: Any, proposals: ProposalSet) -> Any:
            return inner.component("classifier").prepare(image, proposals)

        def score(self, prepared: Any, vocabulary: Any) -> ClassScores:
            real = inner.component("classifier").score(prepared, vocabulary)
            column = {c.name: j for j, c in enumerate(vocabulary.categories)}
            probs = np.zeros(real.probs.shape, np.float32)
            for i, name in enumerate(state["labels"]):
                probs[i, column[name]] = 0.9
            return ClassScores(logits=probs * 10, probs=probs, category_ids=vocabulary.ids, temperature=real.temperature)

    class Plugin:
        @hookimpl
        def register_proposal_generators(self, register: Any) -> None:
            register("bench-truth", lambda c, x: Generator(), config=NoConfig)

        @hookimpl
        def register_classifiers(self, register: Any) -> None:
            register("bench-truth", lambda c, x: Classifier(), config=NoConfig)

    registry = Registry(make_plugin_manager((), entry_points=False, plugins=[("bench", Plugin())], env={}))
    config = load_config("default", [*overrides, "pipeline.proposal_generator=bench-truth", "pipeline.classifier=bench-truth",
                                     f"pipeline.tracker={tracker}", "pipeline.device=cpu"])
    return Pipeline(config, registry=registry), inner


def classes_of(index: dict[str, Any]) -> tuple[str, str]:
    gt = json.loads((SAMPLE / "panoptic.json").read_text())
    names = sorted({n for _, labels in index.values() for n in labels.values()})
    stuff = {c["name"] for c in gt["categories"] if not c["isthing"]}
    return ", ".join(names), ", ".join(n for n in names if n in stuff)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from ovpanoptic.video import FrameSelection, TrackingOptions, open_frames, segment_video
    from ovpanoptic.video.output import VideoOutput

    work = Path(spec["work"])
    folder, index = make_clip(work / "frames", spec["frames"], spec["few"])
    pipe, inner = pipeline_with_ground_truth(index, spec["tracker"], spec.get("image_size", 0))
    classes, stuff = classes_of(index)
    vocab = pipe.vocabulary(classes, stuff)
    t = time.perf_counter()
    inner.component("proposal_generator").loader.get()
    inner.prepare_vocabulary(vocab)
    warm = time.perf_counter() - t
    if spec["tracker"] == "sam2-video":
        pipe.component("tracker").loader.get()
    source = open_frames(folder, FrameSelection())
    output = VideoOutput(work / "out", {"bench": spec})
    rss_after_window: list[float] = []
    frame_seconds: dict[str, list[float]] = {"keyframe": [], "tracked": []}
    objects: list[int] = []
    book = None
    t0 = time.perf_counter()
    last = t0
    for item in segment_video(pipe, source, vocab, TrackingOptions(keyframe_every=spec["k"])):
        output.write(item)
        now = time.perf_counter()
        frame_seconds["keyframe" if item.keyframe else "tracked"].append(now - last)
        last = now
        book = item.book
        if item.keyframe:
            rss_after_window.append(round(_rss_mb()))
            objects.append(sum(s.isthing for s in item.result.segments))
    loop = time.perf_counter() - t0
    t1 = time.perf_counter()
    output.finish(book, source)
    finish = time.perf_counter() - t1
    n = spec["frames"]
    return {
        "frames": n,
        "k": spec["k"],
        "tracker": spec["tracker"],
        "image_size": spec.get("image_size", 0) or 1024,
        "seconds_per_frame": round(loop / n, 3),
        "keyframe_seconds_mean": round(float(np.mean(frame_seconds["keyframe"])), 3),
        "tracked_seconds_mean": round(float(np.mean(frame_seconds["tracked"])), 3) if frame_seconds["tracked"] else None,
        "things_per_keyframe": objects,
        "finish_seconds": round(finish, 2),
        "warm_up_seconds": round(warm, 2),
        "rss_mb_at_keyframes": rss_after_window,
        "tracks": len(book.records()) if book else 0,
    }


def objects_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from ovpanoptic.builtins.trackers import Sam2VideoConfig, Sam2VideoTracker
    from ovpanoptic.components import ComponentContext
    from ovpanoptic.types import TrackMasks

    work = Path(spec["work"])
    folder, index = make_clip(work / "frames", 11, False)
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]
    crop, labels = index[next(iter(index))]
    things = sorted((k for k, name in labels.items() if name in ("person", "sports ball")), key=lambda k: -int((crop == k).sum()))
    from ovpanoptic.config import load_config
    from ovpanoptic.device import DEVICE_PROFILES  # noqa: F401  (the profile decides precision below)
    from ovpanoptic.pipeline import Pipeline

    precision = Pipeline(load_config("default"), device="cpu").component_config("tracker", "sam2-video").precision
    tracker = Sam2VideoTracker(Sam2VideoConfig(model=str(WEIGHTS_DIR / WEIGHTS["sam2"]), precision=precision), ComponentContext(device="cpu"))
    tracker.loader.get()
    out = {"precision": precision, "per_frame_seconds": {}}
    for n in spec["counts"]:
        keys = things[:n]
        seeds = TrackMasks(np.asarray(keys, np.int64), np.stack([crop == k for k in keys]))
        t = time.perf_counter()
        count = sum(1 for _ in tracker.track(frames, seeds))
        out["per_frame_seconds"][str(len(keys))] = round((time.perf_counter() - t) / count, 3)  # the first frame has 9 things
    return out


SCENARIOS = {
    "k1": {"frames": 30, "k": 1, "tracker": "hold", "few": False},
    "k10": {"frames": 30, "k": 10, "tracker": "sam2-video", "few": False},
    "k1-few": {"frames": 30, "k": 1, "tracker": "hold", "few": True},
    "k10-few": {"frames": 30, "k": 10, "tracker": "sam2-video", "few": True},
    "k10-long": {"frames": 60, "k": 10, "tracker": "sam2-video", "few": True},
    "k10-512": {"frames": 30, "k": 10, "tracker": "sam2-video", "few": False, "image_size": 512},
    "k10-few-512": {"frames": 30, "k": 10, "tracker": "sam2-video", "few": True, "image_size": 512},
    "objects": {"counts": [1, 4, 8, 15]},
}


def run_worker(name: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    spec = {**spec, "name": name, "work": str(work / name)}
    log = work / f"{name}.log"
    t = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], stdout=subprocess.PIPE, stderr=fh, text=True)
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed; log {log}:\n{log.read_text()[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024)
    result["wall_seconds"] = round(time.perf_counter() - t, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "video.json"))
    parser.add_argument("--merge", action="store_true", help="add the scenarios run to the results already in --out")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        result = objects_worker(spec) if spec["name"] == "objects" else worker(spec)
        print(json.dumps(result))
        return 0
    make_weights(WEIGHTS_DIR)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ovpanoptic-bench-video-") as tmp:
        for name in args.scenarios.split(","):
            print(f"{name} ...", flush=True)
            results[name] = run_worker(name, SCENARIOS[name], Path(tmp))
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    if args.merge and Path(args.out).is_file():
        results = {**json.loads(Path(args.out).read_text())["results"], **results}
    data = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "clip": f"pan over COCO {SAMPLE_ID} (x{SCALE}), {SIZE[0]}x{SIZE[1]}, {STEP} px per frame",
        "results": results,
    }
    Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
