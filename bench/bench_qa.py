"""QA and packaging at dataset size: 500 images of 640x480 with 30 segments each.

Writes a synthetic COCO-panoptic ground truth and a perturbed copy (segments shifted, one
relabelled, one dropped per image), then times ``run_qa`` + the HTML report and ``package_dataset``
(without original images), each through the CLI in a fresh child process that reports its own
peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``); seconds include the child's start-up. Goal: each under a minute and under 1 GB on 2 cores.

    .venv/bin/python bench/bench_qa.py [--images 500] [--out bench/results/qa.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ovpanoptic.evaluation import id_to_rgb  # noqa: E402

WIDTH, HEIGHT, SEGMENTS, CLASSES = 640, 480, 30, 20


def _image(rng: np.random.Generator, perturb: bool) -> tuple[np.ndarray, list[dict]]:
    """A 6x5 grid of blocks (segments 1..30), thing and stuff classes; ``perturb`` shifts blocks by 3 px,
    relabels segment 1 and drops segment 2."""
    ids = np.zeros((HEIGHT, WIDTH), np.int64)
    cw, ch = WIDTH // 6, HEIGHT // 5
    segments = []
    for k in range(SEGMENTS):
        r, c = divmod(k, 6)
        shift = 3 if perturb else 0
        ids[r * ch + 4 + shift: (r + 1) * ch - 4 + shift, c * cw + 4: (c + 1) * cw - 4] = k + 1
        segments.append({"id": k + 1, "category_id": int(rng.integers(1, CLASSES + 1))})
    if perturb:
        segments[0]["category_id"] = segments[0]["category_id"] % CLASSES + 1
        ids[ids == 2] = 0
        segments = [s for s in segments if s["id"] != 2]
    for s in segments:
        s["area"] = int((ids == s["id"]).sum())
        s["iscrowd"] = 0
    return ids, segments


def make_sets(folder: Path, n: int) -> tuple[Path, Path]:
    categories = [{"id": k, "name": f"class{k}", "isthing": int(k <= 14)} for k in range(1, CLASSES + 1)]
    paths = []
    for side, perturb in (("gt", False), ("pred", True)):
        rng = np.random.default_rng(0)
        (folder / side / "panoptic").mkdir(parents=True)
        annotations, images = [], []
        for i in range(n):
            ids, segments = _image(rng, perturb)
            Image.fromarray(id_to_rgb(ids)).save(folder / side / "panoptic" / f"{i:06d}.png")
            annotations.append({"image_id": i, "file_name": f"{i:06d}.png", "segments_info": segments})
            images.append({"id": i, "file_name": f"{i:06d}.jpg", "width": WIDTH, "height": HEIGHT})
        path = folder / side / "panoptic.json"
        path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
        paths.append(path)
    return paths[0], paths[1]


_ARGS = {
    "qa": "['qa', '--gt', sys.argv[1], '--pred', sys.argv[2], '-o', sys.argv[3]]",
    "package": "['package', sys.argv[2], '-o', sys.argv[3], '--no-progress']",
}
_CHILD = (
    "import resource, sys\nfrom ovpanoptic.cli import main\ncode = main({args})\n"
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(code)"
)


def run_child(kind: str, gt: Path, pred: Path, out: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(args=_ARGS[kind]), str(gt), str(pred), str(out)], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    peak_kb = int(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB")))
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_kb / 1024, 1), "stdout_tail": proc.stdout.strip().splitlines()[-1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "qa.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        gt, pred = make_sets(folder, args.images)
        setup = time.perf_counter() - t0
        results = {}
        for kind in ("qa", "package"):
            results[kind] = run_child(kind, gt, pred, folder / f"out-{kind}")
    record = {
        "benchmark": "bench_qa", "images": args.images, "size": [WIDTH, HEIGHT], "segments_per_image": SEGMENTS, "classes": CLASSES,
        "setup_seconds": round(setup, 2), **results,
        "goal": {"seconds": 60, "peak_rss_mb": 1024},
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(), "platform": platform.platform()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
