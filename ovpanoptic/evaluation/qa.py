"""Label QA of a set of panoptic annotations: against a ground truth, or between two annotators.

:func:`run_qa` reads both sets once, image by image, through the same readers and pairing as
``ovpanoptic eval`` (:func:`~.agreement.evaluate_annotations` computes PQ / SQ / RQ and each
image's PQ), and measures on the same pairs:

* per-class IoU and mIoU, and the class confusion in pixels and in matched segments (:mod:`.iou`);
* mask AP at IoU 0.50 / 0.75 / 0.95 and AP[.50:.95] of the things, by pycocotools' ``COCOeval``
  (:mod:`.ap`);
* each image's scores (PQ, mIoU, pixel agreement), the images to review first (lowest PQ, then
  lowest mIoU), and each class's pass/fail against its target (:mod:`.targets`); classes that fail
  list the images where the two sides disagree most on them (the calibration set).

In agreement mode (two annotators' labels of the same images) the first set plays the ground
truth for PQ and AP, and the IoU counts void pixels of both sides, so it is symmetric.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..constants import VOID_ID
from ..formats.annotations import AnnotatedImage, PanopticAnnotations
from ..formats.common import EvaluationError
from .agreement import AgreementReport, evaluate_annotations
from .ap import MaskAP, MaskAPAccumulator
from .iou import VOID_INDEX, ConfusionAccumulator, class_iou, compare_image
from .categories import pair_categories, remap_segments
from .targets import LOW_IOU, ClassTarget, Targets

__all__ = ["REPORT_FILES", "ClassQA", "ImageQA", "QAReport", "class_maps", "pct", "run_qa"]

#: The files ``ovpanoptic qa`` writes into its folder (and replaces there on a rerun; others are left alone).
REPORT_FILES: tuple[str, ...] = (
    "report.html", "qa.json", "classes.csv", "images.csv", "confusion_pixels.csv", "confusion_segments.csv",
)

#: How many images of a failing class go to its calibration list.
CALIBRATION_IMAGES: int = 5


@dataclass(frozen=True)
class ClassQA:
    """One class's numbers (fractions; ``None`` where the class does not occur).

    :param iou: pixel IoU over the set.
    :param passed: ``iou >= target.target`` (``None`` when the class has no IoU).
    :param low: IoU below :data:`~.targets.LOW_IOU`.
    """

    id: int
    name: str
    isthing: bool
    target: ClassTarget
    iou: float | None
    gt_pixels: int
    pred_pixels: int
    pq: float | None
    sq: float | None
    rq: float | None
    ap: float | None
    passed: bool | None
    low: bool
    worst_images: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "isthing": self.isthing, **self.target.to_dict(), "iou": self.iou,
            "passed": self.passed, "low_iou": self.low, "gt_pixels": self.gt_pixels, "pred_pixels": self.pred_pixels,
            "pq": self.pq, "sq": self.sq, "rq": self.rq, "ap": self.ap, "worst_images": list(self.worst_images),
        }


@dataclass(frozen=True)
class ImageQA:
    """One image's scores: PQ (``None``: no segment on either side), mIoU over the classes present
    on either side, and the fraction of (non-ignored) pixels whose class both sides agree on."""

    name: str
    pq: float | None
    miou: float | None
    pixel_agreement: float | None
    tp: int
    fp: int
    fn: int
    changed: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.name, "pq": self.pq, "miou": self.miou, "pixel_agreement": self.pixel_agreement,
            "tp": self.tp, "fp": self.fp, "fn": self.fn, "changed": list(self.changed),
        }


@dataclass(frozen=True)
class QAReport:
    """Everything :func:`run_qa` measured.

    :param mode: ``"ground-truth"`` or ``"agreement"``.
    :param labels: the confusion matrices' row/column names: ``"void"`` then the classes by id.
    :param classes: the classes that occur on either side, by id.
    :param pixel_confusion: ``(K+1, K+1)`` pixel counts, rows the first set, columns the second.
    :param segment_confusion: ``(K+1, K+1)`` matched segments; row/column 0: unmatched.
    :param review: the images to review first, worst first.
    """

    mode: str
    first: str
    second: str
    agreement: AgreementReport
    classes: tuple[ClassQA, ...]
    miou: float | None
    mask_ap: MaskAP
    labels: tuple[str, ...]
    pixel_confusion: npt.NDArray[np.int64] = field(repr=False)
    segment_confusion: npt.NDArray[np.int64] = field(repr=False)
    images: tuple[ImageQA, ...]
    review: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def failing(self) -> tuple[ClassQA, ...]:
        """The classes below their target."""
        return tuple(c for c in self.classes if c.passed is False)

    @property
    def pass_rate(self) -> float | None:
        """The fraction of judged classes that meet their target."""
        judged = [c for c in self.classes if c.passed is not None]
        return sum(1 for c in judged if c.passed) / len(judged) if judged else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (fractions)."""
        pq = self.agreement.report
        return {
            "mode": self.mode, "first": self.first, "second": self.second, "n_images": len(self.images),
            "pq": {"all": pq.all.to_dict(), "things": pq.things.to_dict(), "stuff": pq.stuff.to_dict()},
            "miou": self.miou, "mask_ap": self.mask_ap.to_dict(), "pass_rate": self.pass_rate,
            "failing": [c.name for c in self.failing], "low_iou": [c.name for c in self.classes if c.low],
            "classes": [c.to_dict() for c in self.classes],
            "confusion": {"labels": list(self.labels), "pixels": self.pixel_confusion.tolist(), "segments": self.segment_confusion.tolist()},
            "review": list(self.review), "images": [i.to_dict() for i in self.images], "notes": list(self.notes),
        }

    def classes_csv(self) -> str:
        """One row per class (percent values)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["id", "name", "isthing", "kind", "target", "iou", "passed", "low_iou", "pq", "sq", "rq", "ap", "gt_pixels", "pred_pixels"])
        for c in self.classes:
            writer.writerow([
                c.id, c.name, int(c.isthing), c.target.kind, pct(c.target.target), pct(c.iou), "" if c.passed is None else int(c.passed),
                int(c.low), pct(c.pq), pct(c.sq), pct(c.rq), pct(c.ap), c.gt_pixels, c.pred_pixels,
            ])
        return out.getvalue()

    def images_csv(self) -> str:
        """One row per image, worst first (percent values)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["image", "pq", "miou", "pixel_agreement", "tp", "fp", "fn", "review", "changed"])
        review = set(self.review)
        for i in self.images:
            writer.writerow([i.name, pct(i.pq), pct(i.miou), pct(i.pixel_agreement), i.tp, i.fp, i.fn, int(i.name in review), ";".join(i.changed)])
        return out.getvalue()

    def confusion_csv(self, which: str = "pixels") -> str:
        """The confusion matrix (``"pixels"`` or ``"segments"``) with a header row and column."""
        matrix = self.pixel_confusion if which == "pixels" else self.segment_confusion
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([f"{self.first_role} \\ {self.second_role}", *self.labels])
        for label, row in zip(self.labels, matrix.tolist(), strict=True):
            writer.writerow([label, *row])
        return out.getvalue()

    @property
    def first_role(self) -> str:
        return "annotator A" if self.mode == "agreement" else "ground truth"

    @property
    def second_role(self) -> str:
        return "annotator B" if self.mode == "agreement" else "prediction"

    def format_table(self) -> str:
        """A text summary: overall numbers, then one line per class, then the review list."""
        ap = self.mask_ap
        lines = [
            f"{self.first_role}: {self.first}",
            f"{self.second_role}: {self.second}",
            f"images {len(self.images)}  PQ {pct(self.agreement.report.all.pq)}  mIoU {pct(self.miou)}  "
            f"mask AP {pct(ap.ap)} (AP50 {pct(ap.ap50)}, AP75 {pct(ap.ap75)}, AP95 {pct(ap.ap95)})",
            "",
            f"{'class':<24} {'kind':<10} {'target':>6} {'IoU':>6} {'PQ':>6} {'AP':>6}  result",
        ]
        for c in self.classes:
            result = "n/a" if c.passed is None else ("pass" if c.passed else "FAIL")
            if c.low:
                result += " (IoU below 40: read the confusion table)"
            lines.append(
                f"{c.name[:24]:<24} {c.target.kind:<10} {pct(c.target.target):>6} {pct(c.iou):>6} {pct(c.pq):>6} {pct(c.ap):>6}  {result}"
            )
        rate = self.pass_rate
        lines.append("")
        lines.append(f"{len(self.failing)} class(es) below target; pass rate {pct(rate)} %" if rate is not None else "no class to judge")
        for c in self.failing:
            if c.worst_images:
                lines.append(f"  {c.name}: calibrate on {', '.join(c.worst_images)}")
        lines.append(f"review first: {', '.join(self.review[:10]) + (' ...' if len(self.review) > 10 else '') if self.review else 'none'}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def write(self, folder: str | Path) -> dict[str, Path]:
        """Write ``qa.json``, ``classes.csv``, ``images.csv``, ``confusion_pixels.csv`` and
        ``confusion_segments.csv`` into ``folder`` (created; checked by
        :func:`~ovpanoptic.atomic.check_output_folder`); an earlier report's files of these names are
        replaced, other files are left alone. Returns ``{name: path}``.

        :raises InputError: a folder nothing can be written into.
        """
        import json

        from ..atomic import CLI_OUTPUT_FIX, check_output_folder

        out = check_output_folder(folder, CLI_OUTPUT_FIX)
        out.mkdir(parents=True, exist_ok=True)
        files = {
            "qa.json": json.dumps(self.to_dict(), indent=2),
            "classes.csv": self.classes_csv(),
            "images.csv": self.images_csv(),
            "confusion_pixels.csv": self.confusion_csv("pixels"),
            "confusion_segments.csv": self.confusion_csv("segments"),
        }
        written: dict[str, Path] = {}
        for name, text in files.items():
            tmp = out / f".{name}.tmp"
            tmp.write_text(text, "utf-8")
            tmp.replace(out / name)
            written[name] = out / name
        return written


def pct(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _nan_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class _Pairs:
    """Wraps the two sets so that each image pair :func:`evaluate_annotations` reads is also handed
    to ``on_pair`` once, after the evaluation has checked it (when the next pair is read, or at
    :meth:`flush`): each image is read and decoded once, at most one pair is held."""

    def __init__(self, on_pair: Callable[[AnnotatedImage, AnnotatedImage], None]) -> None:
        self._on_pair = on_pair
        self._pending: dict[str, dict[str, AnnotatedImage]] = {}

    def wrap(self, annotations: PanopticAnnotations, side: str) -> PanopticAnnotations:
        def read(name: str) -> AnnotatedImage:
            self._flush(keep=name)
            image = annotations.read(name)
            self._pending.setdefault(name, {})[side] = image
            return image

        return PanopticAnnotations(
            annotations.source, annotations.format, annotations.categories, annotations.names, read,
            notes=annotations.notes, sizes=annotations.size,
        )

    def _flush(self, keep: str | None) -> None:
        for name in [n for n, pair in self._pending.items() if len(pair) == 2 and n != keep]:
            pair = self._pending.pop(name)
            self._on_pair(pair["gt"], pair["pred"])

    def flush(self) -> None:
        self._flush(keep=None)


def run_qa(
    first: PanopticAnnotations,
    second: PanopticAnnotations,
    *,
    agreement: bool = False,
    targets: Targets | None = None,
    match_categories: str = "id",
    review_below: float = 0.8,
    progress: Callable[[int, int], None] | None = None,
) -> QAReport:
    """QA of ``second`` against ``first`` (a ground truth), or of two annotators (``agreement``).

    :param targets: the classes' targets (default: :class:`~.targets.Targets` defaults).
    :param match_categories: ``"id"`` or ``"name"``, as ``eval``.
    :param review_below: images whose PQ is below this fraction are reviewed first.
    :raises EvaluationError: what :func:`evaluate_annotations` raises.
    """
    targets = targets or Targets()
    categories = dict(sorted(first.categories.items()))
    index = {cid: k + 1 for k, cid in enumerate(categories)}
    size = len(index) + 1
    mapping, _ = pair_categories(first.categories, {c: i.name for c, i in second.categories.items()}, second.source, match_categories)
    total = ConfusionAccumulator(size)
    ap = MaskAPAccumulator([cid for cid, info in categories.items() if info.isthing])
    per_image: dict[str, tuple[npt.NDArray[np.float64], float | None]] = {}
    ignore_void = not agreement

    def on_pair(truth: AnnotatedImage, guess: AnnotatedImage) -> None:
        if truth.panoptic_map.size == 0 and guess.panoptic_map.size == 0:
            return
        shape = truth.panoptic_map.shape if truth.panoptic_map.size else guess.panoptic_map.shape
        gt_ids = truth.panoptic_map if truth.panoptic_map.size else np.zeros(shape, np.int64)
        pred_ids = np.array(guess.panoptic_map if guess.panoptic_map.size else np.zeros(shape, np.int64), dtype=np.int64)
        segments, dropped = remap_segments(list(guess.segments), mapping)
        if dropped:
            pred_ids[np.isin(pred_ids, list(dropped))] = VOID_ID
        gt_segments = [s for s in truth.segments if isinstance(s, Mapping)]
        segments = [s for s in segments if isinstance(s, Mapping) and s.get("category_id") in index]
        one = compare_image(gt_ids, gt_segments, pred_ids, segments, index)
        total.add(one)
        ap.add_image(gt_ids, gt_segments, pred_ids, segments)
        pixels = one.pixels.copy()
        if ignore_void:
            pixels[VOID_INDEX, :] = 0
        counted = int(pixels.sum()) - (0 if ignore_void else int(pixels[VOID_INDEX, VOID_INDEX]))
        agree = int(np.trace(pixels)) - (0 if ignore_void else int(pixels[VOID_INDEX, VOID_INDEX]))
        per_image[truth.name] = (one.iou(ignore_void=ignore_void), agree / counted if counted else None)

    pairs = _Pairs(on_pair)
    report = evaluate_annotations(
        pairs.wrap(first, "gt"), pairs.wrap(second, "pred"), match_categories=match_categories, review_below=review_below, progress=progress
    )
    pairs.flush()
    mask_ap = ap.compute()
    ious = class_iou(total.pixels, ignore_void=ignore_void)
    valid = ious[~np.isnan(ious)]
    miou = float(valid.mean()) if valid.size else None
    images: list[ImageQA] = []
    for item in report.images:
        image_iou, agree = per_image.get(item.name, (np.full(len(index), np.nan), None))
        present = image_iou[~np.isnan(image_iou)]
        images.append(ImageQA(item.name, item.pq, float(present.mean()) if present.size else None, agree, item.tp, item.fp, item.fn, item.changed))
    images.sort(key=lambda i: (2.0 if i.pq is None else i.pq, 2.0 if i.miou is None else i.miou, i.name))
    review = tuple(i.name for i in images if (i.pq is not None and i.pq < review_below))
    classes: list[ClassQA] = []
    gt_pixels = total.pixels.sum(axis=1)
    pred_pixels = total.pixels.sum(axis=0)
    for cid, info in categories.items():
        k = index[cid]
        iou = _nan_none(float(ious[k - 1]))
        if iou is None:  # on neither side: nothing to judge
            continue
        target = targets.for_class(info.name)
        stats = report.report.per_category.get(cid)
        worst: tuple[str, ...] = ()
        passed = None if iou is None else iou >= target.target - 1e-12
        if passed is False:
            scored = [(float(v[k - 1]), name) for name, (v, _) in per_image.items() if not math.isnan(float(v[k - 1]))]
            worst = tuple(name for _, name in sorted(scored)[:CALIBRATION_IMAGES])
        classes.append(ClassQA(
            cid, info.name, info.isthing, target, iou, int(gt_pixels[k]), int(pred_pixels[k]),
            stats.pq if stats else None, stats.sq if stats else None, stats.rq if stats else None,
            mask_ap.per_category.get(cid), passed, iou is not None and iou < LOW_IOU, worst,
        ))
    labels = ("void", *(info.name for info in categories.values()))
    if not classes:
        raise EvaluationError(f"no class occurs in {first.source} or {second.source}: there is nothing to measure")
    return QAReport(
        mode="agreement" if agreement else "ground-truth", first=first.source, second=second.source, agreement=report,
        classes=tuple(classes), miou=miou, mask_ap=mask_ap, labels=labels, pixel_confusion=total.pixels,
        segment_confusion=total.segments, images=tuple(images), review=review, notes=report.report.notes,
    )


def class_maps(
    first: PanopticAnnotations, second: PanopticAnnotations, name: str, *, match_categories: str = "id"
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The class maps (confusion-matrix rows: 0 void, then the first set's classes by id) of one
    image on both sides, for pictures of the disagreement (:mod:`.report`)."""
    from .iou import class_map

    categories = dict(sorted(first.categories.items()))
    index = {cid: k + 1 for k, cid in enumerate(categories)}
    mapping, _ = pair_categories(first.categories, {c: i.name for c, i in second.categories.items()}, second.source, match_categories)
    truth, guess = first.read(name), second.read(name)
    shape = truth.panoptic_map.shape if truth.panoptic_map.size else guess.panoptic_map.shape
    gt_ids = truth.panoptic_map if truth.panoptic_map.size else np.zeros(shape, np.int64)
    pred_ids = guess.panoptic_map if guess.panoptic_map.size else np.zeros(shape, np.int64)
    segments, _ = remap_segments(list(guess.segments), mapping)
    good = [s for s in segments if isinstance(s, Mapping) and s.get("category_id") in index]
    return class_map(gt_ids, [s for s in truth.segments if isinstance(s, Mapping)], index), class_map(pred_ids, good, index)
