"""The dataset card (``README.md``), in the layout of the Hugging Face dataset-card template.

YAML metadata (pretty name, task, size category, and the ``configs`` that make
``datasets.load_dataset(DATASET_DIR)`` read the Parquet splits), then the template's sections:
description and intended use, structure (files, splits, taxonomy with counts and one example crop
per class), creation (how labels were made: components, versions, vocabulary, prompts, preset;
how many masks humans changed), QA metrics, and known limits. Values the inputs do not give are
marked *not recorded* rather than invented.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CardFacts", "render_card"]

_NOT_RECORDED = "*not recorded*"


@dataclass(frozen=True)
class CardFacts:
    """What the card says.

    :param counts: ``{class name: {split: (images, segments, pixels)}}``.
    :param crops: ``{class name: relative path of its example crop}``.
    :param header: the manifest's batch header (config, vocabulary), if the source had one.
    :param qa: ``qa.json`` of ``ovpanoptic qa``, if given.
    """

    name: str
    source: str
    source_format: str
    splits: Mapping[str, int]
    classes: Sequence[tuple[int, str, bool]]
    counts: Mapping[str, Mapping[str, tuple[int, int, int]]]
    crops: Mapping[str, str]
    limits: Sequence[str]
    files: Sequence[tuple[str, str]]
    header: Mapping[str, Any] | None = None
    qa: Mapping[str, Any] | None = None
    images_found: int = 0
    ovpanoptic_version: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def _pct(value: Any) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, int | float) else _NOT_RECORDED


def _creation(facts: CardFacts) -> list[str]:
    lines = ["### Annotations", "", "#### Annotation process", ""]
    header = facts.header
    if header is None:
        lines.append(f"The labels were read from `{facts.source}` ({facts.source_format}); it records no ovpanoptic run, so "
                     f"the model, versions and prompts are {_NOT_RECORDED}.")
    else:
        config = header.get("config", {}) if isinstance(header.get("config"), Mapping) else {}
        pipeline = config.get("pipeline", {}) if isinstance(config.get("pipeline"), Mapping) else {}
        vocab = header.get("vocabulary", {}) if isinstance(header.get("vocabulary"), Mapping) else {}
        lines.append(f"Pre-annotations were made by ovpanoptic {facts.ovpanoptic_version} (open-vocabulary panoptic segmentation).")
        lines.append("")
        lines.append("| setting | value |")
        lines.append("|---|---|")
        for key in ("preset", "proposal_generator", "classifier", "fuser", "max_side"):
            if key in pipeline:
                lines.append(f"| pipeline.{key} | `{pipeline[key]}` |")
        for section in ("proposal_generator", "classifier"):
            table = config.get(section)
            if isinstance(table, Mapping):
                for component, options in table.items():
                    if isinstance(options, Mapping):
                        for key in ("model", "checkpoint", "pretrained", "templates", "prompt_templates", "size"):
                            if key in options:
                                lines.append(f"| {section}.{component}.{key} | `{json.dumps(options[key])[:200]}` |")
        lines.append(f"| vocabulary | `{vocab.get('name', _NOT_RECORDED)}` ({len(vocab.get('categories', []))} classes) |")
        lines.append(f"| manifest digests | config `{header.get('config_digest', '?')}`, vocabulary `{header.get('vocabulary_digest', '?')}` |")
    lines += ["", "#### Human corrections", ""]
    qa = facts.qa
    if qa and qa.get("mode") == "ground-truth":
        pq = qa.get("pq", {}).get("all", {})
        changed = sum(1 for i in qa.get("images", []) if isinstance(i.get("pq"), int | float) and i["pq"] < 1.0)
        lines.append(
            f"Against the pre-annotations (`{qa.get('second', '?')}` checked against `{qa.get('first', '?')}`): "
            f"{pq.get('tp', '?')} segments kept (IoU > 0.5, same class), {pq.get('fn', '?')} added or redrawn by humans, "
            f"{pq.get('fp', '?')} removed or redrawn; {changed} of {qa.get('n_images', '?')} images changed."
        )
    else:
        lines.append(f"How many masks humans changed: {_NOT_RECORDED} (give `--qa` the QA of the corrected labels against the pre-annotations).")
    return lines


def _qa_section(facts: CardFacts) -> list[str]:
    qa = facts.qa
    lines = ["## QA metrics", ""]
    if not qa:
        return lines + [f"{_NOT_RECORDED}: run `ovpanoptic qa` and give its `qa.json` with `--qa`."]
    ap = qa.get("mask_ap", {})
    pq = qa.get("pq", {}).get("all", {})
    kind = "annotator agreement" if qa.get("mode") == "agreement" else "labels against a reviewed subset"
    lines += [
        f"Measured on {qa.get('n_images', '?')} images ({kind}): PQ {_pct(pq.get('pq'))}, mIoU {_pct(qa.get('miou'))}, "
        f"mask AP[.50:.95] {_pct(ap.get('ap'))} (AP50 {_pct(ap.get('ap50'))}, AP75 {_pct(ap.get('ap75'))}, AP95 {_pct(ap.get('ap95'))}); "
        f"QA pass rate (classes meeting their IoU target) {_pct(qa.get('pass_rate'))}.",
        "",
        "| class | kind | target | IoU | result |",
        "|---|---|---|---|---|",
    ]
    for c in qa.get("classes", []):
        result = "n/a" if c.get("passed") is None else ("pass" if c["passed"] else "**below target**")
        lines.append(f"| {c.get('name')} | {c.get('kind')} | {_pct(c.get('target'))} | {_pct(c.get('iou'))} | {result} |")
    return lines


def render_card(facts: CardFacts) -> str:
    """The card's Markdown text."""
    total = sum(facts.splits.values())
    yaml = [
        "---",
        f"pretty_name: {json.dumps(facts.name)}",
        "task_categories:",
        "- image-segmentation",
        "task_ids:",
        "- instance-segmentation",
        "- semantic-segmentation",
        "size_categories:",
        f"- {_size_category(total)}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *(f"  - split: {split}\n    path: data/{split}-*.parquet" for split, n in facts.splits.items() if n > 0),
        "---",
    ]
    things = sum(1 for _, _, t in facts.classes if t)
    body = [
        f"# Dataset Card for {facts.name}",
        "",
        "## Dataset Details",
        "",
        "### Dataset Description",
        "",
        f"Panoptic segmentation labels of {total} images in {len(facts.classes)} classes ({things} things, "
        f"{len(facts.classes) - things} stuff), packaged by `ovpanoptic package` from `{facts.source}` ({facts.source_format}). "
        f"Original images included: {facts.images_found} of {total}.",
        "",
        "- **Curated by:** " + _NOT_RECORDED,
        "- **License:** " + _NOT_RECORDED,
        "",
        "## Uses",
        "",
        "### Direct Use",
        "",
        "Training and evaluating panoptic, instance and semantic segmentation models on the classes below "
        "(COCO panoptic / instances, semantic PNGs for SegFormer or Mask2Former-semantic, YOLO-seg, Parquet).",
        "",
        "### Out-of-Scope Use",
        "",
        "Classes that are not in the taxonomy, and images unlike these; see the known limits below.",
        "",
        "## Dataset Structure",
        "",
        "| file | content |",
        "|---|---|",
        *(f"| `{path}` | {what} |" for path, what in facts.files),
        "",
        "Splits (deterministic, seeded; every class in every split where the images allow): "
        + ", ".join(f"{split} {n}" for split, n in facts.splits.items()) + ".",
        "",
        "### Taxonomy",
        "",
        "| id | class | thing/stuff | " + " | ".join(f"{s} images / segments" for s in facts.splits) + " | pixels | example |",
        "|---|---|---|" + "---|" * len(facts.splits) + "---|---|",
    ]
    absent = [name for _, name, _ in facts.classes if not any(v[1] for v in facts.counts.get(name, {}).values())]
    for cid, name, isthing in facts.classes:
        per = facts.counts.get(name, {})
        if name in absent:
            continue
        cells = " | ".join(f"{per.get(s, (0, 0, 0))[0]} / {per.get(s, (0, 0, 0))[1]}" for s in facts.splits)
        pixels = sum(v[2] for v in per.values())
        crop = f"![{name}]({facts.crops[name]})" if name in facts.crops else "-"
        body.append(f"| {cid} | {name} | {'thing' if isthing else 'stuff'} | {cells} | {pixels} | {crop} |")
    if absent:
        body += ["", f"{len(absent)} class(es) of the vocabulary have no example: {', '.join(absent[:20])}{' ...' if len(absent) > 20 else ''}."]
    body += ["", "## Dataset Creation", "", "### Source Data", "", f"`{facts.source}` ({facts.source_format}).", "", *_creation(facts), ""]
    body += [*_qa_section(facts), ""]
    body += ["## Bias, Risks, and Limitations", "", "### Known limits", ""]
    body += [f"- {limit}" for limit in facts.limits] or ["- none found by the packaging checks"]
    body += ["", "## Citation", "", _NOT_RECORDED, "", "## Dataset Card Contact", "", _NOT_RECORDED, ""]
    return "\n".join(yaml + [""] + body)
