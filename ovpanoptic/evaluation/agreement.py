"""The agreement report of two annotation sets (labelling QA).

:func:`evaluate_annotations` pairs two :class:`~ovpanoptic.formats.annotations.PanopticAnnotations`
by image name and measures PQ / SQ / RQ with the COCO panoptic API rules of :mod:`.pq`, per class
and per image, so labelling QA can see how far the corrected labels moved from the pre-annotations
and which images need review.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..constants import VOID_ID
from ..formats.annotations import AnnotatedImage, PanopticAnnotations
from ..formats.common import CategoryInfo, EvaluationError, size_mismatch
from .categories import pair_categories, remap_segments
from .pq import PQAccumulator, PQReport

__all__ = ["AgreementReport", "ImageAgreement", "evaluate_annotations"]


@dataclass(frozen=True)
class ImageAgreement:
    """How one image's two annotations agree.

    :param name: the image's pairing name.
    :param pq: the image's PQ over the categories present in it (a fraction; 1.0 = identical
        segments), or ``None`` when neither side has a segment.
    :param tp: matched segments (IoU > 0.5, same class).
    :param fp: prediction segments without a match.
    :param fn: ground-truth segments without a match.
    :param changed: the classes whose PQ in this image is below 1, sorted by name.
    """

    name: str
    pq: float | None
    tp: int
    fp: int
    fn: int
    changed: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.name, "pq": self.pq, "tp": self.tp, "fp": self.fp, "fn": self.fn, "changed": list(self.changed)}


@dataclass(frozen=True)
class AgreementReport:
    """PQ of a whole set (:class:`~.pq.PQReport`) and each image's agreement, worst first.

    :param review_below: images with PQ below this fraction are listed in :attr:`needs_review`.
    """

    report: PQReport
    images: tuple[ImageAgreement, ...]
    review_below: float

    @property
    def needs_review(self) -> tuple[ImageAgreement, ...]:
        """The images whose PQ is below :attr:`review_below`, worst first."""
        return tuple(i for i in self.images if i.pq is not None and i.pq < self.review_below)

    def to_dict(self, *, percent: bool = False) -> dict[str, Any]:
        """The report's dict (:meth:`PQReport.to_dict`) with ``images`` and ``needs_review``."""
        return {
            **self.report.to_dict(percent=percent),
            "review_below": self.review_below,
            "needs_review": [i.name for i in self.needs_review],
            "images": [i.to_dict() for i in self.images],
        }

    def format_table(self) -> str:
        """The PQ table, then the images that need review with their PQ and changed classes."""
        lines = [self.report.format_table(), ""]
        review = self.needs_review
        lines.append(
            f"{len(review)} of {len(self.images)} image(s) have PQ below {100 * self.review_below:.1f}: "
            + ("review them" if review else "none needs review")
        )
        for item in review:
            changed = ", ".join(item.changed[:8]) + (" ..." if len(item.changed) > 8 else "")
            lines.append(f"  {item.name}: PQ {100 * (item.pq or 0.0):.1f} (TP {item.tp}, FP {item.fp}, FN {item.fn}) {changed}")
        return "\n".join(lines)


def _category_names(categories: Mapping[int, CategoryInfo]) -> dict[int, str]:
    return {cid: info.name for cid, info in categories.items()}


def evaluate_annotations(
    gt: PanopticAnnotations,
    pred: PanopticAnnotations,
    *,
    match_categories: str = "id",
    review_below: float = 0.8,
    progress: Callable[[int, int], None] | None = None,
) -> AgreementReport:
    """PQ / SQ / RQ of ``pred`` against ``gt`` (COCO panoptic API rules), per class and per image.

    Images pair by name (:func:`image_name`); every ground-truth image needs a prediction, and
    prediction images without ground truth are listed in the report's notes. Categories pair by id
    (``"id"``: a shared id named differently is refused) or by name (``"name"``: case, width and
    ``-merged``-style suffixes ignored; unmatched classes are noted, their segments ignored).

    :param review_below: an image whose own PQ is below this fraction is listed for review.
    :param progress: ``progress(done, total)`` after each image.
    :raises EvaluationError: an unpaired ground-truth image, a size mismatch (found from the sizes
        the two files declare, before either image is decoded), malformed data, or no category
        occurring at all.
    """
    if match_categories not in ("id", "name"):
        raise EvaluationError(f"match_categories must be 'id' or 'name', got {match_categories!r}")
    if not 0.0 <= review_below <= 1.0:
        raise EvaluationError(f"review_below must be a fraction in [0, 1], got {review_below!r}")
    mapping, notes = pair_categories(gt.categories, _category_names(pred.categories), pred.source, match_categories)
    notes = [*(f"ground truth: {n}" for n in gt.notes), *(f"prediction: {n}" for n in pred.notes), *notes]
    missing = [n for n in gt.names if n not in set(pred.names)]
    if missing:
        raise EvaluationError(
            f"{len(missing)} ground-truth image(s) of {gt.source} have no prediction in {pred.source} "
            f"(first: {', '.join(repr(m) for m in missing[:3])}); images pair by file name without extension, so "
            "evaluate a prediction of every ground-truth image"
        )
    extra = [n for n in pred.names if n not in set(gt.names)]
    if extra:
        notes.append(f"{len(extra)} prediction image(s) have no ground truth and are ignored ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})")
    total = PQAccumulator(categories=gt.categories)
    images: list[ImageAgreement] = []
    for done, name in enumerate(gt.names, start=1):
        gt_size, pred_size = gt.size(name), pred.size(name)
        if gt_size is not None and pred_size is not None and gt_size != pred_size:  # before either is decoded
            raise size_mismatch(f"{name} (ground truth {gt.source}, prediction {pred.source})", gt_size, pred_size)
        one = _add_pair(gt.read(name), pred.read(name), mapping, gt.categories)
        if one is not None:
            total.merge(one)
        images.append(_image_agreement(name, one))
        if progress is not None:
            progress(done, len(gt.names))
    report = total.report()
    if notes:
        report = dataclasses.replace(report, notes=tuple(notes))
    images.sort(key=lambda i: (2.0 if i.pq is None else i.pq, i.name))
    return AgreementReport(report=report, images=tuple(images), review_below=review_below)


def _add_pair(
    truth: AnnotatedImage, guess: AnnotatedImage, mapping: Mapping[int, int | None], categories: Mapping[int, CategoryInfo]
) -> PQAccumulator | None:
    """One image's counts (``None`` when both sides are empty with unknown sizes)."""
    if truth.panoptic_map.size == 0 and guess.panoptic_map.size == 0:
        return None
    truth_ids = truth.panoptic_map if truth.panoptic_map.size else np.zeros(guess.panoptic_map.shape, np.int64)
    pred_ids = np.array(guess.panoptic_map if guess.panoptic_map.size else np.zeros(truth.panoptic_map.shape), dtype=np.int64)
    segments, dropped = remap_segments(list(guess.segments), mapping)
    if dropped:
        pred_ids[np.isin(pred_ids, list(dropped))] = VOID_ID
    one = PQAccumulator(categories=categories)
    one.add_image(truth_ids, truth.segments, pred_ids, segments, image_name=truth.name)
    return one


def _image_agreement(name: str, one: PQAccumulator | None) -> ImageAgreement:
    """The agreement of one image from its own accumulator."""
    if one is None:
        return ImageAgreement(name, None, 0, 0, 0, ())
    try:
        report = one.report()
    except EvaluationError:  # neither side has a counted segment: nothing to disagree about
        return ImageAgreement(name, None, 0, 0, 0, ())
    changed = tuple(sorted(report.categories[c].name for c, s in report.per_category.items() if s.pq < 1.0))
    return ImageAgreement(name, report.all.pq, report.all.tp, report.all.fp, report.all.fn, changed)
