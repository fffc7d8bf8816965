"""Cold text encoding of a vocabulary (issue 25): ADE20K's 150 classes (327 names with synonyms,
``short`` templates: 2289 prompts) into an empty cache, with the ``default`` preset's CLIP
(``convnext_base_w`` at random initialisation from ``bench/.weights``; speed does not depend on
the weights' values), on the CPU.

Two ways in the same process, alternated (``--runs`` each), so a loaded machine hits both alike:

- ``before``: the encoding of issue 16-24: chunks of whole names (36 names x 7 templates per call),
  each call run up to its longest prompt;
- ``now``: :class:`~ovpanoptic.builtins.clip.text.TextEmbeddings` as shipped: one call per template
  for up to 256 names, the template's words before the name computed once, rows grouped by length.

Both must give the same embeddings to 2e-5 (checked, max difference recorded).

    .venv/bin/python bench/bench_text.py [--vocabulary ade20k] [--runs 2]

Results: ``bench/results/text.json``. Goal: ADE20K <= 15 s on the 2-core CPU.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocabulary", default="ade20k")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=ROOT / "bench" / ".weights")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "text.json")
    args = parser.parse_args(argv)
    import torch

    from ovpanoptic.builtins.clip.text import TextEmbeddings, _l2_normalise
    from ovpanoptic.builtins.clip.text_tower import _encode_padded, end_positions
    from ovpanoptic.pipeline import Pipeline

    pipe = Pipeline("default", overrides=[f"classifier.clip.pretrained='{args.weights / 'convnext_base_w.pt'}'", "classifier.clip.text_cache=false"], device="cpu")
    clf = pipe.component("classifier")
    clf.load()
    vocab = pipe.vocabulary(name=args.vocabulary)
    names = list(dict.fromkeys(n for c in vocab.categories for n in c.names))
    templates = clf.templates
    state = clf._state()
    tower = clf._text_model().tower
    lengths = state.text.check_lengths(names)

    def before() -> np.ndarray:
        per_chunk = max(1, 256 // len(templates))
        ordered = sorted(names, key=lambda n: lengths[n])
        out = {}
        for start in range(0, len(ordered), per_chunk):
            chunk = ordered[start : start + per_chunk]
            tokens = state.tokenizer([t.format(n) for n in chunk for t in templates])
            with torch.inference_mode():
                emb = _encode_padded(tower, tokens, end_positions(tower, tokens)).float().numpy()
            emb = _l2_normalise(emb)
            vectors = _l2_normalise(emb.reshape(len(chunk), len(templates), -1).sum(axis=1))
            out.update(zip(chunk, vectors))
        return np.stack([out[n] for n in names])

    def now() -> np.ndarray:
        fresh = TextEmbeddings(clf._encode_text, templates, count_tokens=state.text.count_tokens, context_length=state.text.context_length)
        return fresh.names(names)

    times: dict[str, list[float]] = {"before": [], "now": []}
    cpu: dict[str, list[float]] = {"before": [], "now": []}  # process CPU seconds: less sensitive to other load
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.runs):
        for label, fn in (("before", before), ("now", now)):
            t0, c0 = time.perf_counter(), time.process_time()
            outputs[label] = fn()
            times[label].append(round(time.perf_counter() - t0, 2))
            cpu[label].append(round(time.process_time() - c0, 2))
            print(label, times[label][-1], "s wall,", cpu[label][-1], "s CPU", flush=True)
    diff = float(np.abs(outputs["before"] - outputs["now"]).max())
    prompts = len(names) * len(templates)
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "load_average": [round(v, 2) for v in os.getloadavg()]},
        "vocabulary": args.vocabulary, "classes": len(vocab), "names": len(names), "prompts": prompts,
        "templates": clf.config.templates, "architecture": "convnext_base_w",
        "seconds": times,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "cpu_seconds": cpu,
        "max_abs_difference": diff,
        "same_to_2e-5": diff <= 2e-5,
    }
    result["speedup"] = round(result["median_s"]["before"] / result["median_s"]["now"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    result["cpu_speedup"] = round(statistics.median(cpu["before"]) / statistics.median(cpu["now"]), 2)
    print(json.dumps({k: result[k] for k in ("median_s", "speedup", "cpu_speedup", "max_abs_difference")}))
    return 0 if diff <= 2e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
