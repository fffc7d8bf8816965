"""Read a Label Studio JSON export (brush and polygon regions) as :class:`PanopticAnnotations`.

Input: Label Studio's "JSON" export (Export -> JSON: a list of tasks with ``data``, ``annotations``
and ``predictions``), or the ``label-studio.json`` that ovpanoptic's ``label-studio`` exporter
writes (tasks with ``predictions`` only). Per task, ``use`` picks what is read:

* ``"annotations"``: the annotation marked ``ground_truth``, else the last one that is not
  cancelled (Label Studio lists them oldest first);
* ``"predictions"``: the last prediction;
* ``"auto"`` (default): annotations when the task has one, else predictions.

Regions: ``brushlabels`` (RLE decoded by the Label Studio SDK's own ``decode_rle``: the RGBA mask's
alpha above 127 is inside) and ``polygonlabels`` (points in percent of the image, filled with
Pillow); other region types (rectangles, keypoints, choices) are not panoptic segments and are
skipped, with a count in :attr:`LabelStudioSet.skipped`. A polygon region whose id is
``<brush region id>p<k>`` is the outline ovpanoptic's exporter derived from that brush region and is
not counted twice. A thing region is one segment; the regions of one stuff class in one image are
merged into one segment; where regions overlap, the one listed later is on top.

Image names: the image URL's file name, percent-decoded (:mod:`.urls`: ``/data/local-files/?d=photos/a%20b.jpg``
-> ``a b``; ``/data/local-files/?d=photos/a.jpg`` and
``/data/upload/3/1f2e3d4c-a.jpg`` -> ``a``: the 8-hex-digit prefix Label Studio adds to uploaded
files is removed), so a Label Studio export pairs with the COCO output of the same images.

Label Studio names classes but gives no ids or thing/stuff split: ``categories`` gives them, by name.

Bounds: each task's image size is what its regions declare (``original_width`` x
``original_height``); a task declaring more than ``max_pixels`` pixels is refused when the export is
read, before anything is decoded, and a brush RLE whose header announces another number of values
than its image's ``width x height x 4`` is refused before it is decoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw

from ...constants import DEFAULT_MAX_PIXELS
from ...errors import MissingDependencyError
from ..annotations import AnnotatedImage, PanopticAnnotations, categories_by_name, image_name, paint_segments
from ..common import (
    CategoryInfo,
    EvaluationError,
    categories_from_json,
    category_key,
    check_annotation_pixels,
    read_json_file,
)
from .urls import url_file_path
from .writer import META_KEY

__all__ = ["LabelStudioSet", "embedded_categories", "fill_polygon", "read_label_studio"]

#: Prefix Label Studio puts before the name of an uploaded file (``1f2e3d4c-``).
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")

#: Brush pixels whose alpha is above this are inside the region.
_ALPHA_INSIDE = 127

_USES = ("auto", "annotations", "predictions")

#: What the file is, for messages.
_WHAT = "Label Studio export"

#: Id of a polygon region that ovpanoptic's exporter derived from brush region ``<id>``.
_DERIVED_POLYGON = re.compile(r"(.+)p\d+")

#: Bytes of a brush RLE's header that hold its number of values (32 bits, big-endian: Label Studio's
#: ``encode_rle`` writes the count first).
_RLE_COUNT_BYTES = 4

#: Values per pixel of a brush RLE (RGBA).
_RLE_CHANNELS = 4


@dataclass(frozen=True)
class LabelStudioSet:
    """What :func:`read_label_studio` read: the annotations and what it skipped.

    :param annotations: the set, in the internal form.
    :param skipped: ``{region type: count}`` of regions that are not panoptic segments.
    :param used: ``{"annotations": n, "predictions": n, "none": n}``: what each task was read from.
    """

    annotations: PanopticAnnotations
    skipped: Mapping[str, int]
    used: Mapping[str, int]


def _task_image_name(task: Mapping[str, Any], data_key: str | None, position: int, where: str) -> str:
    data = task.get("data")
    url = None
    if isinstance(data, Mapping):
        if data_key is not None:
            url = data.get(data_key)
        else:
            url = next((v for v in data.values() if isinstance(v, str) and v), None)
    if not isinstance(url, str) or not url.strip():
        field_text = f"data.{data_key}" if data_key is not None else "data (no field holds an image URL)"
        raise EvaluationError(
            f"{where}: task {task.get('id', position)} has no image URL in {field_text}: each task needs the URL of its "
            "image (images are paired by file name)"
        )
    name = image_name(url_file_path(url))
    if "/data/upload/" in urlsplit(url).path:
        name = _UPLOAD_PREFIX.sub("", name)
    return name


def _pick_results(task: Mapping[str, Any], use: str, where: str) -> tuple[str, list[Any]]:
    """``(what was used, the result regions)`` of one task."""
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, Mapping) and not a.get("was_cancelled")]
    listed = task.get("predictions") or []
    predictions = [p for p in listed if isinstance(p, Mapping)]
    if use == "predictions" or (use == "auto" and not annotations):
        if listed and not predictions:
            raise EvaluationError(
                f"{where}: the export lists the predictions by id only, without their regions. Export a snapshot with "
                "the predictions included (Label Studio API: POST /api/projects/ID/exports with serialization_options "
                "{\"predictions\": {\"only_id\": false}}, then download it as JSON), or use the label-studio.json "
                "ovpanoptic wrote"
            )
    chosen: Mapping[str, Any] | None = None
    kind = "none"
    if use in ("auto", "annotations") and annotations:
        marked = [a for a in annotations if a.get("ground_truth")]
        chosen, kind = (marked or annotations)[-1], "annotations"
    elif use in ("auto", "predictions") and predictions:
        chosen, kind = predictions[-1], "predictions"
    if chosen is None:
        return kind, []
    result = chosen.get("result", [])
    if not isinstance(result, list):
        raise EvaluationError(f"{where}: the {kind[:-1]}'s 'result' must be a list of regions")
    return kind, result


def _decode_brush(value: Mapping[str, Any], height: int, width: int, where: str) -> np.ndarray:
    try:
        from label_studio_sdk.converter.brush import decode_rle
    except ImportError as exc:
        raise MissingDependencyError(
            f"reading Label Studio brush regions needs label-studio-sdk ({exc}): pip install label-studio-sdk "
            "(or pip install 'ovpanoptic[labelling]')"
        ) from None
    rle = value.get("rle")
    if not isinstance(rle, list) or not rle:
        raise EvaluationError(f"{where}: a brushlabels region needs a non-empty 'rle' list (format 'rle')")
    truncated = EvaluationError(
        f"{where}: the brush RLE is truncated or corrupt (it must be Label Studio's brush encoding: a list of "
        "byte values); export the task again"
    )
    try:
        data = bytes(int(v) for v in rle)
    except (ValueError, TypeError, OverflowError):
        raise truncated from None
    if len(data) <= _RLE_COUNT_BYTES:
        raise truncated
    announced = int.from_bytes(data[:_RLE_COUNT_BYTES], "big")
    if announced != height * width * _RLE_CHANNELS:
        raise EvaluationError(
            f"{where}: the brush RLE announces {announced} values, not {height} x {width} x {_RLE_CHANNELS} "
            "(original_height x original_width x RGBA): the region does not belong to an image of this size, or the "
            "RLE is damaged; export the task again"
        )
    try:
        flat = decode_rle(data)
    except (ValueError, TypeError, IndexError, OverflowError):
        raise truncated from None
    if flat.size != height * width * 4:
        raise EvaluationError(
            f"{where}: the brush RLE holds {flat.size} values, not {height} x {width} x 4 (original_height x "
            "original_width x RGBA): the region does not belong to an image of this size"
        )
    return flat.reshape(height, width, 4)[:, :, 3] > _ALPHA_INSIDE


def fill_polygon(points: Any, height: int, width: int, where: str) -> np.ndarray:
    """A ``polygonlabels`` region's points (percent of the image) filled with Pillow, ``(height, width)`` bool."""
    if not isinstance(points, list) or len(points) < 3:
        raise EvaluationError(f"{where}: a polygonlabels region needs 3 or more [x, y] points")
    try:
        # Percent of the image; pixel centres are at integers for Pillow. Rounded to 1/100 pixel: percents
        # written with 4 decimals put a vertex on a pixel centre 0.0003 px off, and Pillow's fill would
        # drop that pixel's row or column.
        xy = [(round(float(x) * width / 100.0 - 0.5, 2), round(float(y) * height / 100.0 - 0.5, 2)) for x, y in points]
    except (TypeError, ValueError):
        raise EvaluationError(f"{where}: polygon points must be [x, y] pairs of numbers (percent)") from None
    canvas = Image.new("1", (width, height), 0)
    ImageDraw.Draw(canvas).polygon(xy, fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def _load_tasks(file: Path, role: str) -> list[Mapping[str, Any]]:
    """The tasks of an export: a JSON list of tasks, one task (a dict with ``data``), or a dict
    that wraps the list in ``tasks`` (the body of Label Studio's import API and ML backend requests).

    :raises EvaluationError: unreadable JSON (:func:`~ovpanoptic.formats.common.read_json_file`), or
        another shape (the accepted shapes are named).
    """
    where = f"{role} {_WHAT} {file}"
    if not file.exists():
        raise EvaluationError(f"{where} does not exist (export the project as JSON: Export -> JSON)")
    tasks = read_json_file(file, role, _WHAT)
    if isinstance(tasks, Mapping) and "data" not in tasks and isinstance(tasks.get("tasks"), list):
        tasks = tasks["tasks"]
    elif isinstance(tasks, Mapping) and "data" in tasks:
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(t, Mapping) for t in tasks):
        keys = f" (a dict with the keys {', '.join(repr(k) for k in list(tasks)[:5])})" if isinstance(tasks, Mapping) else ""
        raise EvaluationError(
            f"{where} is not a Label Studio JSON export{keys}: expected a list of tasks (Export -> JSON), each a dict "
            "with 'data' (the image URL) and 'annotations' or 'predictions'; one task dict, or {\"tasks\": [...]}, "
            "is accepted too"
        )
    return tasks


def embedded_categories(path: str | Path, role: str = "ground-truth") -> dict[int, CategoryInfo] | None:
    """The category table ovpanoptic's ``label-studio`` exporter put in the tasks' ``meta``
    (``{"ovpanoptic": {"categories": [...]}}``, which Label Studio keeps and exports), or ``None``
    when no task carries one.

    :raises EvaluationError: unreadable JSON, or tasks that carry different tables.
    """
    file = Path(path)
    where = f"{role} {_WHAT} {file}"
    found: list[Any] | None = None
    for task in _load_tasks(file, role):
        meta = task.get("meta")
        own = meta.get(META_KEY) if isinstance(meta, Mapping) else None
        table = own.get("categories") if isinstance(own, Mapping) else None
        if table is None:
            continue
        if found is not None and table != found:
            raise EvaluationError(
                f"{where}: tasks carry different category tables in meta.ovpanoptic (imported from two vocabularies): "
                "give the classes with --classes/--stuff or --vocabulary"
            )
        found = table
    if found is None:
        return None
    return categories_from_json({"categories": found}, file, role)


def _declared_size(regions: Sequence[Mapping[str, Any]], where: str) -> tuple[int, int] | None:
    """``(width, height)`` that a task's regions declare, or ``None`` when it has no region.

    :raises EvaluationError: a region without a size, an empty size, or two sizes in one task.
    """
    size: tuple[int, int] | None = None
    for region in regions:
        try:
            h, w = int(region["original_height"]), int(region["original_width"])
        except (KeyError, TypeError, ValueError, OverflowError):
            raise EvaluationError(f"{where}: region {region.get('id')!r} has no original_width/original_height") from None
        if h <= 0 or w <= 0:
            raise EvaluationError(f"{where}: region {region.get('id')!r} has an empty image size {w} x {h}")
        if size is not None and size != (w, h):
            raise EvaluationError(f"{where}: regions give two image sizes, {size[0]} x {size[1]} and {w} x {h}")
        size = (w, h)
    return size


def read_label_studio(
    path: str | Path,
    categories: Sequence[CategoryInfo] | Mapping[int, CategoryInfo],
    *,
    use: str = "auto",
    data_key: str | None = None,
    role: str = "ground-truth",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> LabelStudioSet:
    """Read a Label Studio JSON export as panoptic annotations (see the module docstring).

    :param path: the export (a JSON list of tasks; one task dict, or ``{"tasks": [...]}``, is accepted too).
    :param categories: the classes by name (ids and thing/stuff come from here).
    :param use: ``"auto"``, ``"annotations"`` or ``"predictions"``.
    :param data_key: the task data field with the image URL (default: the first string field).
    :param role: whose set it is (``"ground-truth"``, ``"prediction"``), for messages.
    :param max_pixels: a task whose regions declare an image of more pixels is refused (``None`` or
        0: no limit), before anything is decoded.
    :raises EvaluationError: an unreadable file, a region of a class not in ``categories`` (all such
        classes are named), malformed regions, a task over ``max_pixels``, or two tasks of one image.
    :raises MissingDependencyError: label-studio-sdk is missing and a brush region is read.
    """
    if use not in _USES:
        raise EvaluationError(f"use must be one of {', '.join(_USES)}, got {use!r}")
    file = Path(path)
    source = f"{role} {_WHAT} {file}"
    tasks = _load_tasks(file, role)
    by_name = categories_by_name(categories)
    cats = {c.id: c for c in by_name.values()}
    entries: dict[str, tuple[int, list[Any], tuple[int, int] | None]] = {}
    order: list[str] = []
    used = {"annotations": 0, "predictions": 0, "none": 0}
    skipped: dict[str, int] = {}
    unknown: dict[str, int] = {}
    multi = 0
    for position, task in enumerate(tasks):
        where = f"{source}: task {task.get('id', position)}"
        name = _task_image_name(task, data_key, position, source)
        kind, regions = _pick_results(task, use, where)
        used[kind] += 1
        keep = []
        brush_ids = {r.get("id") for r in regions if isinstance(r, Mapping) and r.get("type") == "brushlabels"}
        for region in regions:
            if not isinstance(region, Mapping):
                raise EvaluationError(f"{where}: a result region must be a dict")
            rtype = str(region.get("type", "")).lower()
            if rtype not in ("brushlabels", "polygonlabels"):
                skipped[rtype or "untyped"] = skipped.get(rtype or "untyped", 0) + 1
                continue
            rid = str(region.get("id", ""))
            derived = _DERIVED_POLYGON.fullmatch(rid)
            if rtype == "polygonlabels" and derived is not None and derived.group(1) in brush_ids:
                continue
            labels = (region.get("value") or {}).get(rtype)
            if not isinstance(labels, list) or not labels:
                raise EvaluationError(f"{where}: region {rid!r} has no {rtype} class")
            if len(labels) > 1:
                multi += 1
            if category_key(str(labels[0])) not in by_name:
                unknown[str(labels[0])] = unknown.get(str(labels[0]), 0) + 1
            keep.append(region)
        if name in entries:
            raise EvaluationError(
                f"{source}: two tasks show the image {name!r}; images are paired by file name, so each image needs one task"
            )
        size = _declared_size(keep, f"{where} ({name})")
        if size is not None:
            check_annotation_pixels(size[0], size[1], max_pixels, f"{where}, image {name!r},")
        entries[name] = (position, keep, size)
        order.append(name)
    notes: list[str] = []
    if use == "annotations" and used["none"]:
        if used["none"] == len(tasks):
            raise EvaluationError(
                f"no task of {source} has an annotation (that is not cancelled): read its predictions instead "
                "(--gt-use/--pred-use predictions), or export the project after labelling"
            )
        notes.append(f"{used['none']} of {len(tasks)} task(s) have no annotation: read as unlabelled (all void)")
    elif used["none"]:
        notes.append(f"{used['none']} of {len(tasks)} task(s) have neither an annotation nor a prediction: read as unlabelled")
    if use == "auto" and used["annotations"] and used["predictions"]:
        notes.append(f"{used['predictions']} task(s) without an annotation were read from their predictions")
    if skipped:
        notes.append("regions that are not masks were skipped: " + ", ".join(f"{k} {t}" for t, k in sorted(skipped.items())))
    if multi:
        notes.append(f"{multi} region(s) carry several classes; the first is used")
    if unknown:
        listed = ", ".join(f"{n!r} ({k} region{'s' if k > 1 else ''})" for n, k in sorted(unknown.items()))
        raise EvaluationError(
            f"{source} has classes that are not in the vocabulary: {listed}. Give the classes with --classes or "
            "--vocabulary (names as in the labelling config), or compare with a set that has a category table"
        )

    def read(name: str) -> AnnotatedImage:
        position, regions, size = entries[name]
        where = f"{source}: task {tasks[position].get('id', position)} ({name})"
        return _rasterise(name, regions, size, by_name, where)

    def sizes(name: str) -> tuple[int, int] | None:
        return entries[name][2]

    annotations = PanopticAnnotations(f"{file}", "label-studio", cats, tuple(order), read, notes=tuple(notes), sizes=sizes)
    return LabelStudioSet(annotations, skipped, used)


def _rasterise(
    name: str,
    regions: Sequence[Mapping[str, Any]],
    size: tuple[int, int] | None,
    by_name: Mapping[str, CategoryInfo],
    where: str,
) -> AnnotatedImage:
    """Paint one task's regions into an id map of ``size`` (``(width, height)``, checked when the
    export was read; :func:`~ovpanoptic.formats.annotations.paint_segments`: later regions on top, stuff merged per class)."""
    if size is None:  # no region: all void, size unknown (the evaluation takes the other side's)
        return AnnotatedImage(name, np.zeros((0, 0), np.int64), ())
    w, h = size

    def layers() -> Iterator[tuple[CategoryInfo, np.ndarray]]:
        for region in regions:
            rtype = str(region["type"]).lower()
            value = region.get("value") or {}
            rwhere = f"{where}: region {region.get('id')!r}"
            mask = _decode_brush(value, h, w, rwhere) if rtype == "brushlabels" else fill_polygon(value.get("points"), h, w, rwhere)
            yield by_name[category_key(str(value[rtype][0]))], mask

    return paint_segments(name, h, w, layers())
