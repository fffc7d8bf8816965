"""COCO panoptic: the ``coco-panoptic`` exporter, its reader and its detection rule.

The format (https://cocodataset.org/#format-data, "Panoptic Segmentation"; panopticapi's files):
one RGB PNG per image whose pixel colour is its segment id (``id = R + 256 G + 256^2 B``, 0 = void,
:func:`~.common.id_to_rgb`) and a combined JSON with ``images``, ``annotations`` (``image_id``,
``file_name`` of the PNG, ``segments_info``: ``id``, ``category_id``, ``iscrowd``, ``area``,
``bbox`` XYWH) and ``categories`` (``id``, ``name``, ``isthing``).

Writer (``--format coco-panoptic``, :class:`CocoPanopticExporter`): ``OUTDIR/panoptic/STEM.png``
and the combined ``OUTDIR/panoptic.json``; ``segments_info`` also carries each segment's ``score``
and ``categories`` its ``color``. The image entry's ``file_name`` is ``STEM.jpg``, the name COCO
tools (and detectron2's loader) expect beside the PNG. Resumable: parts and the folder's category
table under ``OUTDIR/.ovpanoptic/`` (:mod:`.parts`), assembled by ``finish()``.

Packaging (``ovpanoptic package``, :mod:`ovpanoptic.packaging`) writes the same layout for a split
from annotations with :func:`coco_categories`, :func:`panoptic_png` and :func:`panoptic_segments`.

Reader (``--gt-format coco-panoptic``, :func:`read_coco_panoptic`): a JSON and its PNG folder into
:class:`~.annotations.PanopticAnnotations`; Cityscapes' panoptic JSON has the same layout.

Detection (:func:`detect`): a folder holding ``panoptic.json``, or a ``.json`` object with an
``annotations`` list (not named ``cityscapes_panoptic*``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..atomic import atomic_write_bytes, atomic_write_text
from ..components import ComponentContext
from ..constants import DEFAULT_MAX_PIXELS
from ..types import PanopticResult, Vocabulary
from .annotations import AnnotatedImage, PanopticAnnotations, image_name
from .common import (
    CategoryInfo,
    EvaluationError,
    annotation_field,
    categories_from_json,
    id_to_rgb,
    load_json,
    png_bytes,
    png_size,
    read_id_png,
)
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
    "JSON_NAME",
    "CocoPanopticConfig",
    "CocoPanopticExporter",
    "coco_categories",
    "declared_sizes",
    "detect",
    "panoptic_png",
    "panoptic_segments",
    "read_coco_panoptic",
]

#: The format's name (exporter, ``--gt-format``).
FORMAT = "coco-panoptic"

#: The combined JSON in an ovpanoptic output folder (the exporter's ``json_name`` default).
JSON_NAME = "panoptic.json"


def detect(probe: Probe) -> bool:
    """A folder holding ``panoptic.json`` (ovpanoptic's output folder), or a ``.json`` object with an
    ``annotations`` list that is not Cityscapes' ``cityscapes_panoptic*`` JSON."""
    if not probe.is_file:
        return (probe.path / JSON_NAME).is_file()
    if not probe.json_object() or probe.path.name.startswith("cityscapes_panoptic"):
        return False
    data = probe.json
    return isinstance(data, dict) and isinstance(data.get("annotations"), list)


@dataclass(frozen=True)
class CocoPanopticConfig:
    """Options of the ``coco-panoptic`` exporter.

    :param png_dir: sub-folder of the output folder for the PNGs.
    :param json_name: name of the combined JSON in the output folder.
    """

    png_dir: str = "panoptic"
    json_name: str = "panoptic.json"

    def __post_init__(self) -> None:
        check_plain_name("png_dir", self.png_dir)
        check_plain_name("json_name", self.json_name)


class CocoPanopticExporter:
    """COCO-panoptic PNG per image + the combined JSON, assembled by :meth:`finish`."""

    def __init__(self, config: CocoPanopticConfig, context: ComponentContext | None = None) -> None:
        self.config = config

    def check_output(self, outdir: Path, vocabulary: Vocabulary) -> None:
        """Refuse a folder whose category table (or ``panoptic.json``) holds other categories."""
        categories = vocabulary_categories(vocabulary)
        check_combined(categories_file(outdir, self.config.json_name), categories)
        check_combined(Path(outdir) / self.config.json_name, categories)

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        outdir = Path(outdir)
        categories = write_categories(outdir, self.config.json_name, vocabulary_categories(result.vocabulary))
        h, w = result.image_size
        png_rel = f"{stem}.png"
        part = {
            "file_name": f"{stem}.jpg",
            "png": png_rel,
            "height": h,
            "width": w,
            "segments_info": [
                {
                    "id": s.id,
                    "category_id": s.category_id,
                    "iscrowd": 0,
                    "area": s.area,
                    "bbox": list(s.bbox_xywh),
                    "score": round(s.score, 6),
                }
                for s in result.segments
            ],
        }
        png_dir = outdir / self.config.png_dir
        png_dir.mkdir(parents=True, exist_ok=True)
        png_path = atomic_write_bytes(png_dir / png_rel, panoptic_png(result.panoptic_map))
        parts = parts_dir(outdir, self.config.json_name)
        parts.mkdir(parents=True, exist_ok=True)
        part_path = atomic_write_text(parts / f"{stem}.json", json.dumps(part, indent=1))
        return [png_path, part_path, categories]

    def finish(self, outdir: Path, stems: Sequence[str] | None = None) -> list[Path]:
        """Write ``panoptic.json`` from the parts of ``stems`` (see :mod:`.parts`)."""

        def build(data: dict[str, Any], part: dict[str, Any], image_id: int) -> None:
            data["annotations"].append({"image_id": image_id, "file_name": part["png"], "segments_info": part["segments_info"]})

        return finish_combined(outdir, self.config.json_name, stems, build)



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
    data = load_json(path, role)
    categories = categories_from_json(data, path, role)
    if png_dir is None:
        candidates = [path.with_suffix(""), path.parent / "panoptic"]
        png_dir = next((c for c in candidates if c.is_dir()), candidates[0])
    folder = Path(png_dir)
    if not folder.is_dir():
        raise EvaluationError(f"{role} PNG folder {folder} does not exist (pass the folder of {path.name}'s PNGs)")
    declared = declared_sizes(data)
    entries: dict[str, tuple[str, Any, tuple[int, int] | None]] = {}
    order: list[str] = []
    for position, annotation in enumerate(data["annotations"]):
        file_name = str(annotation_field(annotation, "file_name", path, position))
        segments = annotation_field(annotation, "segments_info", path, position)
        name = image_name(file_name)
        if name in entries:
            raise EvaluationError(f"{path}: annotations[{position}] names the image {name!r} a second time")
        image_id = annotation.get("image_id")
        entries[name] = (file_name, segments, declared.get(image_id) if not isinstance(image_id, list | dict) else None)
        order.append(name)

    def read(name: str) -> AnnotatedImage:
        file_name, segments, size = entries[name]
        ids = read_id_png(folder / file_name, role, name, max_pixels, size)
        return AnnotatedImage(name, ids, tuple(segments) if isinstance(segments, list) else segments)

    def sizes(name: str) -> tuple[int, int] | None:
        file_name, _, size = entries[name]
        return size or png_size(folder / file_name)

    return PanopticAnnotations(f"{path}", "coco-panoptic", categories, tuple(order), read, sizes=sizes)


def declared_sizes(data: Mapping[str, Any]) -> dict[Any, tuple[int, int]]:
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


def coco_categories(categories: Sequence[CategoryInfo], *, panoptic: bool) -> list[dict[str, Any]]:
    """The ``categories`` list (panoptic: with ``isthing``; instances: the things only)."""
    if panoptic:
        return [{"id": c.id, "name": c.name, "supercategory": "", "isthing": int(c.isthing)} for c in categories]
    return [{"id": c.id, "name": c.name, "supercategory": ""} for c in categories if c.isthing]


def panoptic_png(ids: npt.NDArray[np.integer[Any]]) -> bytes:
    """The id map as a COCO panoptic RGB PNG (panopticapi's ``id_to_rgb`` rule)."""
    return png_bytes(id_to_rgb(ids))


def panoptic_segments(ids: npt.NDArray[np.integer[Any]], segments: Sequence[Mapping[str, Any]], known: set[int]) -> list[dict[str, Any]]:
    """``segments_info`` with ``area`` and ``bbox`` (XYWH) measured on the map; segments of unknown
    categories or without pixels are left out."""
    out = []
    for segment in segments:
        if int(segment["category_id"]) not in known:
            continue
        ys, xs = np.nonzero(ids == int(segment["id"]))
        if xs.size == 0:
            continue
        out.append({
            "id": int(segment["id"]), "category_id": int(segment["category_id"]), "iscrowd": int(segment.get("iscrowd", 0) or 0),
            "area": int(xs.size), "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
        })
    return out

