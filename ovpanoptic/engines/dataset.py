"""Zero-shot panoptic quality of a whole dataset: segment it with an engine, evaluate, write the protocol.

:func:`dataset_vocabulary` builds the vocabulary from the dataset's own category table;
:func:`evaluate_dataset` runs the batch (local or Ray engine: resumable through the manifest), then
scores the predictions against the ground truth with the panopticapi rules
(:func:`~ovpanoptic.evaluation.evaluate_annotations`) and writes ``OUT/evaluation.json``: the
numbers (PQ / SQ / RQ for all, things, stuff and per class, in percent as papers print them) next
to the protocol that produced them (the full vocabulary with synonyms, the prompt templates, the
image size, the components and their versions, the whole config, the images), so a row of a
zero-shot table can be reproduced exactly, plus time per pipeline stage over every image (also
those done by earlier runs of a resumed evaluation, from the manifest).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import atomic_write_text
from ..constants import DEFAULT_MAX_PIXELS, VOID_ID
from ..errors import InputError, VocabularyError
from ..evaluation.agreement import AgreementReport, evaluate_annotations
from ..evaluation.categories import remap_segments
from ..evaluation.datasets import DATASET_FORMATS, PanopticDataset, check_output_folder
from ..formats.annotations import AnnotatedImage, PanopticAnnotations
from ..formats.common import CategoryInfo
from ..formats.common import loose_key as _key  # the evaluator's name matching (case, width, -merged)
from ..formats.detect import read_annotations
from ..types import Category, Vocabulary
from .batch import BatchReport, ImageOutcome, component_origins, resolved_settings
from .manifest import Manifest

__all__ = ["EVALUATION_NAME", "DatasetEvaluation", "dataset_vocabulary", "evaluate_dataset", "stage_timings"]

log = logging.getLogger(__name__)

#: The file in the output folder with the numbers and the protocol.
EVALUATION_NAME = "evaluation.json"
#: The named vocabulary whose synonyms and descriptions a dataset's classes take (``--vocabulary auto``).
_NAMED_FOR_FORMAT = {"coco-panoptic": "coco", "ade20k-panoptic": "ade20k", "cityscapes-panoptic": "cityscapes"}


def _named(registry: Any, name: str) -> Vocabulary | None:
    try:
        return registry.vocabulary(name)
    except Exception:  # noqa: BLE001 - the named vocabulary is optional here (blocked plugin): no synonyms then
        log.info("named vocabulary %r not available; the dataset's names are used without synonyms", name)
        return None


def dataset_vocabulary(dataset: PanopticDataset, registry: Any, name: str = "auto") -> tuple[Vocabulary, dict[int, int], list[str]]:
    """The vocabulary a dataset is segmented with, and how its ids map to the dataset's.

    ``"auto"``: one category per dataset category, in the dataset's order: the dataset's name (ADE20K's
    ``"road, route"``: name ``road``, synonym ``route``), ``isthing`` from the table, the id the
    dataset's plus :attr:`~PanopticDataset.id_offset`, and the synonyms and description of the
    same class in the named vocabulary of the format (``coco``, ``ade20k``, ``cityscapes``: matched by
    name, ignoring case and COCO's ``-merged`` suffixes). Any other ``name``: that named vocabulary
    as it is, its classes matched to the dataset's by name; dataset classes it lacks cannot be
    predicted (they count as missed), and its classes the dataset lacks are ignored in the scores.

    :returns: ``(vocabulary, id_map, notes)``; ``id_map``: vocabulary id -> dataset id.
    :raises VocabularyError: the dataset's names cannot form a vocabulary (two with one name).
    """
    if name != "auto":
        vocab = registry.vocabulary(name)
        by_key: dict[str, Any] = {}
        for c in dataset.categories:  # every comma-separated part of a name (ADE20K's "road, route")
            for part in c.name.split(","):
                by_key.setdefault(_key(part), c)
        id_map, notes = {}, []
        for cat in vocab.categories:
            match = next((by_key[_key(n)] for n in cat.names if _key(n) in by_key), None)
            if match is not None and match.id not in id_map.values():
                id_map[cat.id] = match.id
        missing = [c.name for c in dataset.categories if c.id not in id_map.values()]
        extra = [c.name for c in vocab.categories if c.id not in id_map]
        if not id_map:
            raise InputError(f"vocabulary {name!r} shares no class with {dataset.annotations.name}: use --vocabulary auto")
        if missing:
            notes.append(f"{len(missing)} dataset class(es) are not in vocabulary {name!r} and count as missed: {', '.join(missing[:10])}")
        if extra:
            notes.append(f"{len(extra)} class(es) of vocabulary {name!r} are not in the dataset; their segments are ignored: {', '.join(extra[:10])}")
        return vocab, id_map, notes
    named = _named(registry, _NAMED_FOR_FORMAT[dataset.format])
    lookup = {_key(n): c for c in (named.categories if named else ()) for n in c.names}
    categories, notes = [], []
    split = [[p.strip() for p in c.name.split(",") if p.strip()] or [str(c.id)] for c in dataset.categories]
    taken = {parts[0].casefold() for parts in split}  # a synonym never takes another class's name
    for cat, parts in zip(dataset.categories, split):
        known = next((lookup[_key(p)] for p in parts if _key(p) in lookup), None)
        synonyms = []
        for candidate in [*parts[1:], *(known.names if known is not None else ())]:
            if candidate.casefold() not in taken:
                taken.add(candidate.casefold())
                synonyms.append(candidate)
        try:
            categories.append(
                Category(
                    cat.id + dataset.id_offset, parts[0], cat.isthing, tuple(synonyms), known.description if known else "",
                    cat.color or (known.color if known else None),
                )
            )
        except VocabularyError as exc:
            raise VocabularyError(
                f"{dataset.annotations}: category {cat.id} {cat.name!r} cannot be a class name ({exc}). Fix the name in a "
                "copy of the JSON, or evaluate with a named vocabulary: --vocabulary NAME"
            ) from None
    if named is not None:
        unmatched = [c.name for c in dataset.categories if not any(_key(p) in lookup for p in c.name.split(","))]
        if unmatched:
            notes.append(f"{len(unmatched)} class(es) have no synonyms from vocabulary {named.name!r}: {', '.join(unmatched[:10])}")
    try:
        vocab = Vocabulary(tuple(categories), name=f"{dataset.format} ({dataset.annotations.name})")
    except VocabularyError as exc:
        raise VocabularyError(f"{dataset.annotations}: its categories cannot form a vocabulary: {exc}") from None
    return vocab, {c.id + dataset.id_offset: c.id for c in dataset.categories}, notes


def _remapped(pred: PanopticAnnotations, id_map: Mapping[int, int], categories: Mapping[int, CategoryInfo]) -> PanopticAnnotations:
    """``pred`` with its category ids turned into the dataset's (segments of unmapped ids: void),
    with the evaluator's own remapping (:func:`~ovpanoptic.evaluation.categories.remap_segments`)."""
    import numpy as np

    mapping: dict[int, int | None] = {cid: id_map.get(cid) for cid in pred.categories}

    def read(name: str) -> AnnotatedImage:
        image = pred.read(name)
        segments, dropped = remap_segments(list(image.segments), mapping)
        pm = np.where(np.isin(image.panoptic_map, sorted(dropped)), VOID_ID, image.panoptic_map) if dropped else image.panoptic_map
        return AnnotatedImage(name, pm, tuple(segments))

    return PanopticAnnotations(pred.source, pred.format, categories, pred.names, read, pred.notes)


def stage_timings(records: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per stage: images, total, mean, median and 90th percentile seconds (``records``: each image's
    :attr:`PanopticResult.timings`)."""
    stages: dict[str, list[float]] = {}
    for timings in records:
        for stage, seconds in timings.items():
            stages.setdefault(stage, []).append(float(seconds))
    out = {}
    for stage, values in sorted(stages.items()):
        ordered = sorted(values)
        out[stage] = {
            "images": len(values),
            "total_s": round(sum(values), 4),
            "mean_s": round(statistics.fmean(values), 4),
            "median_s": round(statistics.median(values), 4),
            "p90_s": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4),
        }
    return out


@dataclass(frozen=True)
class DatasetEvaluation:
    """What :func:`evaluate_dataset` produced.

    :param report: the agreement report (PQ per class and per image), over the images segmented.
    :param batch: the batch's report (failed images, engine facts).
    :param path: ``OUT/evaluation.json``.
    :param data: its content.
    """

    report: AgreementReport
    batch: BatchReport
    path: Path
    data: Mapping[str, Any]

    @property
    def failed(self) -> list[ImageOutcome]:
        return self.batch.failed


def _templates(pipe: Any) -> dict[str, Any]:
    """The classifier's prompt templates, when its config names a registered set."""
    cfg = pipe.component_config("classifier")
    name = getattr(cfg, "templates", None)
    found = pipe.registry.prompt_templates.get(name) if isinstance(name, str) else None
    if found is None:
        return {"name": None, "templates": [], "note": "the classifier's config names no registered prompt-template set"}
    return {"name": name, "templates": list(found[0])}


def _components(pipe: Any, formats: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (kind, name), origin in component_origins(pipe, formats).items():
        out.setdefault(kind, {})[name] = {"plugin": origin.plugin, "distribution": origin.distribution, "version": origin.version}
    return out


def evaluate_dataset(
    pipe: Any,
    dataset: PanopticDataset,
    images: Sequence[Any],
    vocabulary: Vocabulary,
    id_map: Mapping[int, int],
    outdir: Path,
    run: Callable[[Sequence[Path], Path, Sequence[str]], BatchReport],
    *,
    vocabulary_source: str = "auto",
    notes: Sequence[str] = (),
    selection: Mapping[str, Any] | None = None,
    engine: str = "local",
    review_below: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> DatasetEvaluation:
    """Segment ``images`` of ``dataset`` into ``outdir`` (``run(inputs, outdir, formats)``: an
    engine), then score them and write :data:`EVALUATION_NAME`.

    :param images: :class:`~ovpanoptic.evaluation.datasets.DatasetImage` s (``select_images``).
    :param id_map: vocabulary id -> dataset id (:func:`dataset_vocabulary`).
    :param selection: how the images were chosen (``--limit``, ``--images``), for the protocol.
    :param max_pixels: refuse a ground-truth PNG declaring more pixels (``--max-pixels``; ``None`` or 0: no limit).
    :raises EvaluationError: the output folder overlaps the ground truth (nothing written), no image
        could be segmented, or the predictions cannot be read.
    :raises OvpanopticError: what the engine raises before any image is done.
    """
    from ..errors import EvaluationError

    outdir = Path(outdir)
    check_output_folder(dataset, outdir)
    fmt = DATASET_FORMATS[dataset.format]
    started = time.perf_counter()
    batch = run([i.path for i in images], outdir, [fmt])
    seconds = time.perf_counter() - started
    by_path = {str(i.path.resolve()): i.name for i in images}
    _, records, _ = Manifest.read(outdir)
    done = [r for k, r in records.items() if k in by_path and r.status == "done"]
    if not done:
        raise EvaluationError(f"no image of {dataset.annotations.name} was segmented: see the errors above")
    names = [by_path[r.input] for r in done]
    gt = dataset.ground_truth(names, max_pixels=max_pixels)
    categories = dict(gt.categories)
    pred = read_annotations(outdir, DATASET_FORMATS[dataset.format], role="prediction")
    # scored in the dataset's ids and names whatever the vocabulary's were ("road, route" -> road)
    pred = _remapped(pred, id_map, categories)
    if fmt == "coco-panoptic" and any(k != v for k, v in id_map.items()):
        _write_dataset_ids(outdir, id_map, dataset)
    report = evaluate_annotations(gt, pred, review_below=review_below, progress=progress)
    if notes:
        report = dataclasses.replace(report, report=dataclasses.replace(report.report, notes=(*notes, *report.report.notes)))
    failed = [o for o in batch.outcomes if o.status == "failed"]
    data = {
        "results": report.report.to_dict(percent=True),
        "images": {
            "selected": len(images),
            "evaluated": len(names),
            "failed": [{"image": o.path.name, "error": o.error} for o in failed],
            "stopped": batch.stopped.error if batch.stopped is not None else None,
            "review": [i.to_dict() for i in report.needs_review],
        },
        "timing": {
            "stages": stage_timings([r.timings for r in done if r.timings]),
            "this_run": {
                "seconds": round(seconds, 3),
                "images_segmented": batch.done,
                "images_per_second": round(batch.done / seconds, 4) if seconds > 0 and batch.done else None,
                "skipped_done_before": batch.skipped,
            },
        },
        "protocol": {
            "ovpanoptic": __version__,
            "python": platform.python_version(),
            "command": sys.argv[1:] if sys.argv and sys.argv[0].endswith(("ovpanoptic", "__main__.py")) else None,
            "dataset": dataset.describe(),
            "selection": dict(selection or {}),
            "images": names,
            "vocabulary": {"source": vocabulary_source, "id_map": {str(k): v for k, v in sorted(id_map.items())}, **vocabulary.to_dict()},
            "prompt_templates": _templates(pipe),
            "image_size": {k: getattr(pipe.config.pipeline, k) for k in ("max_side", "min_side", "max_pixels") if hasattr(pipe.config.pipeline, k)},
            "components": _components(pipe, [fmt]),
            # the device, its profile and every component's full config as the images were segmented
            # (the Ray engine: as its first worker reported them; the driver itself ran on the CPU)
            "resolved": (batch.engine["workers"][0]["resolved"] if batch.engine.get("workers") else resolved_settings(pipe, [fmt])),
            "formats": [fmt],
            "engine": {"engine": engine, **{k: v for k, v in batch.engine.items() if k != "engine"}},
            "config": pipe.config.to_dict(),  # as given (preset + --set); "resolved" has every default
            "evaluation": "panopticapi rules (Kirillov et al., CVPR 2019): IoU > 0.5 matches, crowd and void regions as in pq_compute",
        },
    }
    path = atomic_write_text(outdir / EVALUATION_NAME, json.dumps(data, indent=1, default=str) + "\n")
    return DatasetEvaluation(report, batch, path, data)


def _write_dataset_ids(outdir: Path, id_map: Mapping[int, int], dataset: PanopticDataset) -> Path:
    """``OUT/panoptic.dataset-ids.json``: ``panoptic.json`` in the dataset's own category ids and
    table (for ADE20K panoptic's 0-based ids, or a named vocabulary's other ids), for tools that
    read the dataset's ids (panopticapi's ``pq_compute``)."""
    data = json.loads((outdir / "panoptic.json").read_text("utf-8"))
    for annotation in data.get("annotations", []):
        annotation["segments_info"] = [
            {**s, "category_id": id_map[s["category_id"]]} for s in annotation.get("segments_info", []) if s.get("category_id") in id_map
        ]
    data["categories"] = [
        {"id": c.id, "name": c.name, "isthing": int(c.isthing), **({"color": list(c.color)} if c.color else {})} for c in dataset.categories
    ]
    return atomic_write_text(outdir / "panoptic.dataset-ids.json", json.dumps(data) + "\n")
