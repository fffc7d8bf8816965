"""COCO instances: the ``coco-instances`` exporter, its reader, and the packaging's instances file.

The format (https://cocodataset.org/#format-data, "Object Detection"; pycocotools' files): a JSON
with ``images``, ``annotations`` (``id``, ``image_id``, ``category_id``, ``segmentation``: an RLE
or polygons, ``area``, ``bbox`` XYWH, ``iscrowd``) and ``categories``; the things only.

Writer (``--format coco-instances``, :class:`CocoInstancesExporter`): the combined
``OUTDIR/instances.json`` (thing segments as pycocotools RLE masks, with scores; annotation ids
count from 1) and the same detections as a COCO *results* list, ``OUTDIR/instances_results.json``
(what ``COCO.loadRes`` and ``COCOeval`` take). Resumable like every writer (:mod:`.parts`).
Packaging writes ``annotations/instances_SPLIT.json`` with :func:`instance_annotations`.

Reader (:func:`read_coco_instances`): the masks painted into one id map per image, in annotation
order (a later mask on top), every category a thing. It is no ``eval --gt-format`` (instances
carry no stuff, so a panoptic comparison would count every stuff segment as a false positive);
its callers are the round-trip tests and Python users. Detection (:func:`detect`): a COCO instances
JSON or a results list, so that ``eval`` can say that it is not an eval format and what to pass
instead (the ``coco-panoptic`` export).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..atomic import atomic_write_text
from ..components import ComponentContext
from ..constants import DEFAULT_MAX_PIXELS, VOID_ID
from ..errors import MissingDependencyError, require
from ..types import PanopticResult, Vocabulary
from .annotations import AnnotatedImage, PanopticAnnotations, image_name
from .common import CategoryInfo, EvaluationError, as_int, check_annotation_pixels, normalize_categories, read_json_file
from .parts import (
    categories_file,
    check_combined,
    check_plain_name,
    finish_combined,
    parts_dir,
    vocabulary_categories,
    write_categories,
)
from .probe import Probe

__all__ = [
    "FORMAT",
    "RLE_CHUNK_BYTES",
    "CocoInstancesConfig",
    "CocoInstancesExporter",
    "detect",
    "encode_things",
    "instance_annotations",
    "pycocotools_mask",
    "read_coco_instances",
]

#: The format's name (exporter).
FORMAT = "coco-instances"


def detect(probe: Probe) -> bool:
    """A ``.json`` COCO instances file (an object whose first annotation has a ``segmentation`` or
    ``bbox`` and no ``segments_info``; with no annotation, a file named ``instances*.json``) or a COCO
    results list (``instances_results.json``: dicts with ``image_id`` and ``category_id``)."""
    if not probe.is_file or probe.suffix != ".json" or not probe.head.startswith((b"{", b"[")):
        return False
    data = probe.json
    if isinstance(data, list):
        first = data[0] if data else None
        return isinstance(first, dict) and "image_id" in first and "category_id" in first and "data" not in first
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) or not isinstance(data.get("images"), list):
        return False
    first = next((a for a in data["annotations"] if isinstance(a, dict)), None)
    if first is None:
        return probe.path.name.startswith("instances")
    return "segments_info" not in first and ("segmentation" in first or "bbox" in first)


def pycocotools_mask(what: str) -> Any:
    """pycocotools' ``mask`` module.

    :raises MissingDependencyError: pycocotools is not installed (the message names ``what``).
    """
    try:
        from pycocotools import mask as mask_utils
    except ImportError as exc:
        raise MissingDependencyError(f"{what} needs pycocotools ({exc}): pip install pycocotools") from None
    return mask_utils


@dataclass(frozen=True)
class CocoInstancesConfig:
    """Options of the ``coco-instances`` exporter.

    :param json_name: name of the combined JSON in the output folder (a COCO dataset file:
        ``images``, ``annotations``, ``categories``).
    :param results_name: name of the same detections as a COCO *results* list (``[{"image_id",
        "category_id", "segmentation", "bbox", "score"}, ...]``, the image ids of ``json_name``),
        the file ``COCO.loadRes`` and ``COCOeval`` take.
    """

    json_name: str = "instances.json"
    results_name: str = "instances_results.json"

    def __post_init__(self) -> None:
        check_plain_name("json_name", self.json_name)
        check_plain_name("results_name", self.results_name)
        if self.results_name == self.json_name:
            raise ValueError(f"results_name must differ from json_name ({self.json_name!r})")


class CocoInstancesExporter:
    """COCO instance annotations (pycocotools RLE) of the thing segments."""

    def __init__(self, config: CocoInstancesConfig, context: ComponentContext | None = None) -> None:
        require("pycocotools", "the coco-instances exporter", "pip install pycocotools")
        self.config = config

    def check_output(self, outdir: Path, vocabulary: Vocabulary) -> None:
        """Refuse a folder whose category table (or ``instances.json``) holds other categories."""
        categories = [c for c in vocabulary_categories(vocabulary) if c["isthing"]]
        check_combined(categories_file(outdir, self.config.json_name), categories)
        check_combined(Path(outdir) / self.config.json_name, categories)

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        mask_utils = pycocotools_mask("the coco-instances exporter")
        outdir = Path(outdir)
        categories = write_categories(outdir, self.config.json_name, [c for c in vocabulary_categories(result.vocabulary) if c["isthing"]])
        h, w = result.image_size
        things = [s for s in result.segments if s.isthing]
        rles = encode_things(result.panoptic_map, things, mask_utils)
        annotations = []
        for s, rle in zip(things, rles):
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append(
                {
                    "category_id": s.category_id,
                    "segmentation": rle,
                    "area": s.area,
                    "bbox": list(s.bbox_xywh),
                    "iscrowd": 0,
                    "score": round(s.score, 6),
                }
            )
        part = {"file_name": f"{stem}.jpg", "height": h, "width": w, "annotations": annotations}
        parts = parts_dir(outdir, self.config.json_name)
        parts.mkdir(parents=True, exist_ok=True)
        return [atomic_write_text(parts / f"{stem}.json", json.dumps(part)), categories]

    def finish(self, outdir: Path, stems: Sequence[str] | None = None) -> list[Path]:
        """Write ``instances.json`` from the parts of ``stems`` (annotation ids count from 1), and the
        same detections as the results list ``instances_results.json``."""

        def build(data: dict[str, Any], part: dict[str, Any], image_id: int) -> None:
            for annotation in part["annotations"]:
                data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": image_id, **annotation})

        written = finish_combined(outdir, self.config.json_name, stems, build)
        if not written:
            return written
        dataset = json.loads(written[0].read_text("utf-8"))
        keys = ("image_id", "category_id", "segmentation", "bbox", "score")
        results = [{k: a[k] for k in keys} for a in dataset["annotations"]]
        return [*written, atomic_write_text(Path(outdir) / self.config.results_name, json.dumps(results))]


#: Bytes of mask stack encoded per pycocotools call by ``coco-instances``.
RLE_CHUNK_BYTES = 128 * 1024 * 1024


def encode_things(panoptic_map: npt.NDArray[Any], things: Sequence[Any], mask_utils: Any) -> list[dict[str, Any]]:
    """pycocotools RLE of each segment's mask, in chunks of ``(H, W, k)`` Fortran-order stacks, each
    mask written inside its segment's box only (comparing the whole map per segment cost 70 s for 283
    segments at 24 MP), so memory stays at :data:`RLE_CHUNK_BYTES` whatever the segment count."""
    h, w = panoptic_map.shape
    per_chunk = max(1, RLE_CHUNK_BYTES // max(1, h * w))
    rles: list[dict[str, Any]] = []
    for start in range(0, len(things), per_chunk):
        chunk = things[start : start + per_chunk]
        stack = np.zeros((h, w, len(chunk)), np.uint8, order="F")
        for k, s in enumerate(chunk):
            x0, y0, x1, y1 = s.bbox_xyxy
            stack[y0:y1, x0:x1, k] = panoptic_map[y0:y1, x0:x1] == s.id
        rles.extend(mask_utils.encode(stack))
    return rles


def read_coco_instances(
    json_path: str | Path, *, role: str = "ground-truth", max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> PanopticAnnotations:
    """Read a COCO instances JSON (RLE or polygon masks, decoded by pycocotools) as panoptic annotations.

    :param json_path: the JSON (``images`` with ``id``, ``file_name``, ``width``, ``height``;
        ``annotations``; ``categories``).
    :param role: whose set it is, for messages.
    :param max_pixels: an image declaring more pixels is refused before anything is decoded (``None``
        or 0: no limit).
    :return: per image an ``(H, W)`` int64 id map (segment id = the annotation's position in the
        image, from 1, masks painted in file order, later on top) and ``segments_info`` with ``id``,
        ``category_id``, ``iscrowd`` and ``area`` (pixels left visible); every category a thing.
    :raises EvaluationError: an unreadable file, an annotation of an unknown image or category.
    :raises MissingDependencyError: pycocotools is not installed.
    """
    mask_utils = pycocotools_mask("reading COCO instances")
    path = Path(json_path)
    data = read_json_file(path, role, "COCO instances JSON")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise EvaluationError(f"{role} JSON {path} must be a COCO instances dict with 'images', 'annotations' and 'categories' lists")
    categories = normalize_categories(
        [CategoryInfo(as_int(c["id"], "'id'", f"{path}: categories"), str(c.get("name", c["id"])), True) for c in data["categories"]]
    )
    images: dict[Any, tuple[str, int, int]] = {}
    for entry in data["images"]:
        width, height = as_int(entry.get("width"), "'width'", f"{path}: images"), as_int(entry.get("height"), "'height'", f"{path}: images")
        check_annotation_pixels(width, height, max_pixels, f"{role} COCO instances {path}, image {entry.get('file_name')!r}")
        images[entry["id"]] = (image_name(str(entry["file_name"])), height, width)
    shapes: dict[Any, list[Mapping[str, Any]]] = {image_id: [] for image_id in images}
    for position, annotation in enumerate(data["annotations"]):
        if annotation.get("image_id") not in images:
            raise EvaluationError(f"{path}: annotations[{position}] names the image id {annotation.get('image_id')!r}, which 'images' lacks")
        if annotation.get("category_id") not in categories:
            raise EvaluationError(f"{path}: annotations[{position}] has the category id {annotation.get('category_id')!r}, which 'categories' lacks")
        shapes[annotation["image_id"]].append(annotation)
    by_name = {images[i][0]: i for i in images}
    if len(by_name) != len(images):
        raise EvaluationError(f"{path}: two images have one name; images are paired by file name, so names must be unique")

    def read(name: str) -> AnnotatedImage:
        image_id = by_name[name]
        _, height, width = images[image_id]
        ids = np.full((height, width), VOID_ID, np.int64)
        for k, annotation in enumerate(shapes[image_id], start=1):
            segmentation = annotation["segmentation"]
            if isinstance(segmentation, list):  # polygons
                rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
            elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(segmentation, height, width)
            else:
                rle = segmentation
            ids[mask_utils.decode(rle).astype(bool)] = k
        areas = np.bincount(ids.ravel(), minlength=len(shapes[image_id]) + 1)
        segments = tuple(
            {"id": k, "category_id": int(a["category_id"]), "iscrowd": int(a.get("iscrowd", 0) == 1), "area": int(areas[k])}
            for k, a in enumerate(shapes[image_id], start=1)
            if areas[k] > 0
        )
        return AnnotatedImage(name, ids, segments)

    def sizes(name: str) -> tuple[int, int]:
        _, height, width = images[by_name[name]]
        return width, height

    return PanopticAnnotations(str(path), FORMAT, categories, tuple(by_name), read, sizes=sizes)


def instance_annotations(
    ids: npt.NDArray[np.integer[Any]], segments: Sequence[Mapping[str, Any]], things: set[int], image_id: int, first_id: int
) -> list[dict[str, Any]]:
    """COCO instance annotations (RLE, pycocotools) of the thing segments, ids from ``first_id``."""
    mask_utils = pycocotools_mask("packaging COCO instances")
    chosen = [s for s in segments if int(s["category_id"]) in things]
    if not chosen:
        return []
    stack = np.zeros((ids.shape[0], ids.shape[1], len(chosen)), np.uint8, order="F")
    for k, segment in enumerate(chosen):
        stack[:, :, k] = ids == int(segment["id"])
    out = []
    for k, (segment, rle) in enumerate(zip(chosen, mask_utils.encode(stack), strict=True)):
        area = int(mask_utils.area(rle))
        if area == 0:
            continue
        out.append({
            "id": first_id + k, "image_id": image_id, "category_id": int(segment["category_id"]),
            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": area, "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": int(segment.get("iscrowd", 0) or 0),
        })
    return out
