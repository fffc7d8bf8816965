"""One internal form for panoptic annotations from any format, and the agreement report of two sets.

Readers of foreign formats (COCO panoptic, Label Studio exports, CVAT folders, Cityscapes folders)
turn what they read into a :class:`PanopticAnnotations`: a category table and, per image, an
:class:`AnnotatedImage` (an id map and its ``segments_info``), read lazily one image at a time.
:func:`evaluate_annotations` pairs two sets by image name and measures PQ / SQ / RQ with the COCO
panoptic API rules of :mod:`.pq`, per class and per image, so labelling QA can see how far the
corrected labels moved from the pre-annotations and which images need review.

Image names: each reader gives every image a *name* used for pairing: the file name without its
folder and extension (``frankfurt_000000_000294`` for Cityscapes, whose suffixes such as
``_gtFine_panoptic`` and ``_leftImg8bit`` are removed). Two sets pair the images of equal names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from ..constants import DEFAULT_MAX_PIXELS, VOID_ID
from .pq import (
    CategoryInfo,
    EvaluationError,
    PQAccumulator,
    PQReport,
    _annotation_field,
    _categories_from_json,
    _category_key,
    _load_json,
    _match_categories,
    _read_id_png,
    _remap_segments,
    png_size,
    size_mismatch,
)

__all__ = [
    "AgreementReport",
    "AnnotatedImage",
    "ImageAgreement",
    "PanopticAnnotations",
    "evaluate_annotations",
    "image_name",
    "paint_segments",
    "read_coco_panoptic",
]

#: Suffixes that some formats add to an image's file name; removed to get its name.
_NAME_SUFFIXES: tuple[str, ...] = ("_gtFine_panoptic", "_gtFine_instanceIds", "_gtFine_labelIds", "_leftImg8bit")


def image_name(file_name: str) -> str:
    """The pairing name of an image file: no folder, no extension, no Cityscapes suffix.

    ``"a/b/frankfurt_000000_000294_leftImg8bit.png"`` -> ``"frankfurt_000000_000294"``;
    ``"000000139.jpg"`` -> ``"000000139"``.
    """
    stem = PurePosixPath(str(file_name).replace("\\", "/")).name
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    for suffix in _NAME_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


@dataclass(frozen=True)
class AnnotatedImage:
    """One image's panoptic annotation in the internal form.

    :param name: the image's pairing name (:func:`image_name`).
    :param panoptic_map: ``(H, W)`` int64 segment ids, ``VOID_ID`` (0) = void; ``(0, 0)`` when the
        image has no segment and its size is unknown (a Label Studio task without regions): the
        evaluation takes the other side's size.
    :param segments: ``segments_info`` dicts with ``id``, ``category_id`` and optionally
        ``iscrowd`` (1 = crowd), ``area`` (pixels) and ``score``; every non-void id of the map has one.
    """

    name: str
    panoptic_map: npt.NDArray[np.int64]
    segments: tuple[Mapping[str, Any], ...]

    def __post_init__(self) -> None:
        pm = self.panoptic_map
        if not isinstance(pm, np.ndarray) or pm.ndim != 2 or not np.issubdtype(pm.dtype, np.integer):
            raise EvaluationError(f"{self.name}: the panoptic map must be an (H, W) integer array")
        if not isinstance(self.segments, tuple):
            object.__setattr__(self, "segments", tuple(self.segments))


@dataclass(frozen=True)
class PanopticAnnotations:
    """A set of panoptic annotations: categories and lazily read images.

    :param source: where it was read from, for messages (``"label-studio export.json"``).
    :param format: the format name (``"coco-panoptic"``, ``"label-studio"``, ``"cvat"``, ...).
    :param categories: the category table by id.
    :param names: the images' pairing names, in the source's order, unique.
    :param reader: ``reader(name) -> AnnotatedImage``; raises :class:`EvaluationError` for bad data.
    :param notes: what the reader chose or skipped that the report should say (regions of other
        types, tasks without annotation, ...).
    :param sizes: ``sizes(name) -> (width, height)`` that the file declares for an image, read
        without decoding anything (``None``: unknown); :func:`evaluate_annotations` compares the two
        sides' sizes before it reads either image.
    """

    source: str
    format: str
    categories: Mapping[int, CategoryInfo]
    names: tuple[str, ...]
    reader: Callable[[str], AnnotatedImage] = field(repr=False, compare=False)
    notes: tuple[str, ...] = ()
    sizes: Callable[[str], tuple[int, int] | None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", MappingProxyType(dict(self.categories)))
        seen: set[str] = set()
        for name in self.names:
            if name in seen:
                raise EvaluationError(
                    f"{self.source}: two images have the name {name!r}; images are paired by file name, so names "
                    "must be unique within a set"
                )
            seen.add(name)

    def read(self, name: str) -> AnnotatedImage:
        """The annotation of the image called ``name``.

        :raises EvaluationError: no such image, or its data is malformed.
        """
        if name not in self.names:
            raise EvaluationError(f"{self.source} has no image named {name!r}")
        return self.reader(name)

    def size(self, name: str) -> tuple[int, int] | None:
        """The ``(width, height)`` the set declares for the image ``name`` (nothing is decoded), or
        ``None`` when it declares none (a Label Studio task without regions)."""
        return None if self.sizes is None else self.sizes(name)


def paint_segments(
    name: str, height: int, width: int, layers: Iterable[tuple[CategoryInfo, npt.NDArray[np.bool_]]]
) -> AnnotatedImage:
    """Paint shapes into one id map, in the order given (later on top), the way labelling tools'
    regions become panoptic segments: each thing shape is a segment, the shapes of one stuff class
    are one segment; a segment left with no pixel is dropped.

    :param layers: ``(category, (height, width) bool mask)`` per shape, bottom first (read lazily).
    :return: the image, with ``segments_info`` of ``id``, ``category_id``, ``iscrowd`` (0) and ``area``.
    """
    ids = np.full((height, width), VOID_ID, np.int64)
    category_of: dict[int, int] = {}
    stuff_ids: dict[int, int] = {}
    for category, mask in layers:
        if category.isthing:
            segment_id = len(category_of) + 1
        else:
            segment_id = stuff_ids.setdefault(category.id, len(category_of) + 1)
        category_of[segment_id] = category.id
        ids[mask] = segment_id
    areas = np.bincount(ids.ravel(), minlength=len(category_of) + 1)
    segments = tuple(
        {"id": sid, "category_id": cid, "iscrowd": 0, "area": int(areas[sid])} for sid, cid in category_of.items() if areas[sid] > 0
    )
    return AnnotatedImage(name, ids, segments)


def read_coco_panoptic(
    json_path: str | Path,
    png_dir: str | Path | None = None,
    *,
    role: str = "ground-truth",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> PanopticAnnotations:
    """Read a COCO-panoptic set (also Cityscapes' panoptic JSON, which has the same layout).

    :param json_path: the JSON with ``annotations`` (``file_name``, ``segments_info``) and ``categories``.
    :param png_dir: the PNG folder; default: the JSON's name without ``.json`` beside it
        (COCO's ``panoptic_val2017.json`` + ``panoptic_val2017/``), or ``panoptic/`` beside it
        (ovpanoptic's output folder).
    :param role: whose set it is (``"ground-truth"``, ``"prediction"``), for messages.
    :param max_pixels: a PNG with more pixels (from its header) is refused before it is decoded
        (``None`` or 0: no limit), and so is one whose size is not the one the JSON's ``images`` declare.
    :raises EvaluationError: a missing or malformed file.
    """
    path = Path(json_path)
    data = _load_json(path, role)
    categories = _categories_from_json(data, path, role)
    if png_dir is None:
        candidates = [path.with_suffix(""), path.parent / "panoptic"]
        png_dir = next((c for c in candidates if c.is_dir()), candidates[0])
    folder = Path(png_dir)
    if not folder.is_dir():
        raise EvaluationError(f"{role} PNG folder {folder} does not exist (pass the folder of {path.name}'s PNGs)")
    declared = _declared_sizes(data)
    entries: dict[str, tuple[str, Any, tuple[int, int] | None]] = {}
    order: list[str] = []
    for position, annotation in enumerate(data["annotations"]):
        file_name = str(_annotation_field(annotation, "file_name", path, position))
        segments = _annotation_field(annotation, "segments_info", path, position)
        name = image_name(file_name)
        if name in entries:
            raise EvaluationError(f"{path}: annotations[{position}] names the image {name!r} a second time")
        image_id = annotation.get("image_id")
        entries[name] = (file_name, segments, declared.get(image_id) if not isinstance(image_id, list | dict) else None)
        order.append(name)

    def read(name: str) -> AnnotatedImage:
        file_name, segments, size = entries[name]
        ids = _read_id_png(folder / file_name, role, name, max_pixels, size)
        return AnnotatedImage(name, ids, tuple(segments) if isinstance(segments, list) else segments)

    def sizes(name: str) -> tuple[int, int] | None:
        file_name, _, size = entries[name]
        return size or png_size(folder / file_name)

    return PanopticAnnotations(f"{path}", "coco-panoptic", categories, tuple(order), read, sizes=sizes)


def _declared_sizes(data: Mapping[str, Any]) -> dict[Any, tuple[int, int]]:
    """``{image id: (width, height)}`` of a COCO JSON's ``images`` entries that give both as
    positive integers (the others are left to the PNG)."""
    sizes: dict[Any, tuple[int, int]] = {}
    images = data.get("images")
    for entry in images if isinstance(images, list) else ():
        if not isinstance(entry, Mapping) or isinstance(entry.get("id"), list | dict):
            continue
        width, height = entry.get("width"), entry.get("height")
        if isinstance(width, int) and isinstance(height, int) and not isinstance(width, bool) and width > 0 and height > 0:
            sizes[entry["id"]] = (width, height)
    return sizes


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
    mapping, notes = _match_categories(gt.categories, _category_names(pred.categories), pred.source, match_categories)
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
    segments, dropped = _remap_segments(list(guess.segments), mapping)
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


def categories_by_name(categories: Sequence[CategoryInfo] | Mapping[int, CategoryInfo]) -> dict[str, CategoryInfo]:
    """``{name key: category}`` for readers of formats that name classes but give no ids (Label
    Studio, CVAT): names compare like :func:`~.pq._category_key` (case, width, spaces)."""
    values = categories.values() if isinstance(categories, Mapping) else categories
    return {_category_key(c.name): c for c in values}
