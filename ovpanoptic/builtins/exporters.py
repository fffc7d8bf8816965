"""Built-in plugin: exporters (chosen with ``--format NAME``). Every write is atomic.

``coco-panoptic``
    ``OUTDIR/panoptic/STEM.png`` (segment id = R + 256 G + 256^2 B, 0 = void) and the combined
    ``OUTDIR/panoptic.json`` (``images``, ``annotations`` with ``segments_info`` —
    ``id``, ``category_id``, ``iscrowd``, ``area``, ``bbox`` XYWH, ``score`` — and ``categories``
    with ``isthing``). The image entry's ``file_name`` is ``STEM.jpg``, the name COCO tools (and
    detectron2's loader) expect beside the PNG.

Combined files (``panoptic.json``, ``instances.json``) are not rewritten image by image (that made a
batch quadratic, and left entries of images that failed): ``export()`` writes each image's part
(``OUTDIR/.ovpanoptic/<json name>.parts/STEM.json``) and the folder's category table
(``OUTDIR/.ovpanoptic/<json name>.categories.json``), and ``finish(outdir, stems)`` assembles the
combined file from the parts of ``stems``, in that order (the batch's finished images in input
order; all parts, by name, when ``stems`` is ``None``). Image ids: a numeric stem is its own id
(COCO style: ``000000139`` -> 139), the other stems get ids after the largest numeric one, in order,
so ids never depend on which run wrote which image. Annotation ids (``coco-instances``) count from 1.
``overlay``
    ``OUTDIR/STEM.overlay.png``: the image with segments and class names drawn by detectron2's
    ``Visualizer.draw_panoptic_seg`` (instance colours jittered deterministically). A preview: drawn
    at most ``max_side`` pixels on the long side (default 1024, the pipeline's default working size,
    so no detail of the result is lost; 0 = full size): detectron2 draws each segment on full-size
    masks, which took 234 s and 14.5 GB for 283 segments at 24 megapixels (now 1.3 s).
``coco-instances``
    the combined ``OUTDIR/instances.json``: COCO instance annotations of the thing segments with
    pycocotools RLE masks and scores (for labelling tools).
``summary``
    ``OUTDIR/STEM.summary.json``: segments (class, thing/stuff, score, area, XYXY box), timings.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_text
from ..components import ComponentContext, RegisterComponent
from ..errors import ExportError, MissingDependencyError
from ..evaluation import id_to_rgb
from ..hookspecs import hookimpl
from ..imageio import working_size
from ..types import PanopticResult, Vocabulary
from ._quiet import import_quietly, require
from .fonts import LabelFonts, ascii_label

__all__ = ["ExportError"]

log = logging.getLogger(__name__)


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _check_plain_name(option: str, value: str) -> None:
    """Output names in exporter options stay inside the output folder: one plain, visible name."""
    if not value or value in (".", "..") or value.startswith(".") or any(ch in value for ch in "/\\") or os.path.isabs(value):
        raise ValueError(f"{option} {value!r} must be a plain file or folder name inside the output folder (no '/', '..' or leading '.')")


def _coco_categories(vocabulary: Vocabulary) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "name": c.name, "supercategory": c.name, "isthing": int(c.isthing), "color": list(c.display_color)}
        for c in vocabulary.categories
    ]


def _kind(isthing: Any) -> str:
    return "thing" if isthing else "stuff"


def _check_combined(path: Path, categories: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Read a combined COCO JSON and check it holds exactly these categories (id, name, isthing).

    A folder's category table never changes under the results already in it: a vocabulary that
    renames, adds, removes or re-flags (thing/stuff) a category is refused.

    :return: the file's data, or ``None`` when there is no such file.
    :raises ExportError: the file is unreadable or holds another category table.
    """
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
        old = {int(c["id"]): (c["name"], bool(c.get("isthing", 1))) for c in data.get("categories", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"cannot update {path}: {exc}; remove it or choose another output folder with -o") from None
    new = {int(c["id"]): (c["name"], bool(c["isthing"])) for c in categories}
    if old != new:
        for cid in sorted(set(old) | set(new)):
            if old.get(cid) != new.get(cid):
                there = f"{old[cid][0]!r} ({_kind(old[cid][1])})" if cid in old else "absent"
                now = f"{new[cid][0]!r} ({_kind(new[cid][1])})" if cid in new else "absent"
                break
        raise ExportError(
            f"{path} holds results of another vocabulary (category {cid} is {there} there, {now} now): its "
            "categories would no longer match its results. Choose another output folder with -o, or remove the "
            "folder's results first"
        )
    return data


#: Folder of the exporters' per-image parts and category tables, inside the output folder.
PARTS_FOLDER = ".ovpanoptic"


def _parts_dir(outdir: Path, json_name: str) -> Path:
    return Path(outdir) / PARTS_FOLDER / f"{json_name}.parts"


def _categories_file(outdir: Path, json_name: str) -> Path:
    return Path(outdir) / PARTS_FOLDER / f"{json_name}.categories.json"


def _write_categories(outdir: Path, json_name: str, categories: list[dict[str, Any]]) -> Path:
    """The folder's category table: written once, and never changed under existing results."""
    path = _categories_file(outdir, json_name)
    if _check_combined(path, categories) is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"categories": categories}, indent=1))
    return path


def _image_ids(stems: Sequence[str]) -> dict[str, int]:
    """Numeric stems keep their number; the others follow the largest one, in order."""
    numeric = {s: int(s) for s in stems if s.isdigit()}
    if len(set(numeric.values())) != len(numeric):  # "01" and "1": numbers are not unique ids
        numeric = {}
    next_id = max(numeric.values(), default=0) + 1
    ids = {}
    for stem in stems:
        if stem in numeric:
            ids[stem] = numeric[stem]
        else:
            ids[stem] = next_id
            next_id += 1
    return ids


def _read_parts(outdir: Path, json_name: str, stems: Sequence[str] | None) -> list[tuple[str, dict[str, Any]]]:
    """``(stem, part)`` of each image part of a combined file, in the order of ``stems`` (``None``:
    every part, by name).

    :raises ExportError: a part of ``stems`` is missing (the batch must redo that image).
    """
    parts = _parts_dir(outdir, json_name)
    if stems is None:
        stems = sorted(p.stem for p in parts.glob("*.json")) if parts.is_dir() else []
    out = []
    for stem in stems:
        part_path = parts / f"{stem}.json"
        if not part_path.exists():
            raise ExportError(f"{part_path} is missing: run the batch again to redo image {stem!r}")
        out.append((stem, json.loads(part_path.read_text("utf-8"))))
    return out


def _finish_combined(
    outdir: Path, json_name: str, stems: Sequence[str] | None, build: Any
) -> list[Path]:
    """Assemble ``OUTDIR/json_name`` from the parts of ``stems``; ``build(data, part, image_id)``
    adds one part's image and annotations to ``data``."""
    outdir = Path(outdir)
    categories_path = _categories_file(outdir, json_name)
    if not categories_path.exists():
        return []
    categories = json.loads(categories_path.read_text("utf-8"))["categories"]
    read = _read_parts(outdir, json_name, stems)
    data: dict[str, Any] = {"info": {"description": "ovpanoptic predictions"}, "images": [], "annotations": [], "categories": categories}
    ids = _image_ids([stem for stem, _ in read])
    for stem, part in read:
        data["images"].append({"id": ids[stem], "file_name": part["file_name"], "height": part["height"], "width": part["width"]})
        build(data, part, ids[stem])
    data["images"].sort(key=lambda i: i["id"])
    return [atomic_write_text(outdir / json_name, json.dumps(data, indent=1))]


@dataclass(frozen=True)
class CocoPanopticConfig:
    """Options of the ``coco-panoptic`` exporter.

    :param png_dir: sub-folder of the output folder for the PNGs.
    :param json_name: name of the combined JSON in the output folder.
    """

    png_dir: str = "panoptic"
    json_name: str = "panoptic.json"

    def __post_init__(self) -> None:
        _check_plain_name("png_dir", self.png_dir)
        _check_plain_name("json_name", self.json_name)


class CocoPanopticExporter:
    """COCO-panoptic PNG per image + the combined JSON, assembled by :meth:`finish`."""

    def __init__(self, config: CocoPanopticConfig, context: ComponentContext | None = None) -> None:
        self.config = config

    def check_output(self, outdir: Path, vocabulary: Vocabulary) -> None:
        """Refuse a folder whose category table (or ``panoptic.json``) holds other categories."""
        categories = _coco_categories(vocabulary)
        _check_combined(_categories_file(outdir, self.config.json_name), categories)
        _check_combined(Path(outdir) / self.config.json_name, categories)

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        outdir = Path(outdir)
        categories = _write_categories(outdir, self.config.json_name, _coco_categories(result.vocabulary))
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
        png_path = atomic_write_bytes(png_dir / png_rel, _png_bytes(id_to_rgb(result.panoptic_map)))
        parts = _parts_dir(outdir, self.config.json_name)
        parts.mkdir(parents=True, exist_ok=True)
        part_path = atomic_write_text(parts / f"{stem}.json", json.dumps(part, indent=1))
        return [png_path, part_path, categories]

    def finish(self, outdir: Path, stems: Sequence[str] | None = None) -> list[Path]:
        """Write ``panoptic.json`` from the parts of ``stems`` (see the module docstring)."""

        def build(data: dict[str, Any], part: dict[str, Any], image_id: int) -> None:
            data["annotations"].append({"image_id": image_id, "file_name": part["png"], "segments_info": part["segments_info"]})

        return _finish_combined(outdir, self.config.json_name, stems, build)


@dataclass(frozen=True)
class OverlayConfig:
    """Options of the ``overlay`` exporter.

    :param alpha: opacity of the segment colours.
    :param show_scores: add thing scores to their labels.
    :param area_threshold: segments smaller than this (pixels) get no label; 0 labels all.
    :param max_side: draw at most this many pixels on the long side (the image and the result are
        scaled down first); 0 draws at full size.
    """

    alpha: float = 0.5
    show_scores: bool = True
    area_threshold: int = 0
    max_side: int = 1024

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.max_side < 0 or 0 < self.max_side < 32:
            raise ValueError(f"max_side must be 0 (full size) or at least 32, got {self.max_side}")


class OverlayExporter:
    """Draws the result with detectron2's ``Visualizer.draw_panoptic_seg``."""

    def __init__(self, config: OverlayConfig, context: ComponentContext | None = None) -> None:
        require("detectron2", "the overlay exporter", "run scripts/bootstrap.sh (it installs detectron2)")
        require("matplotlib", "the overlay exporter", "pip install matplotlib")
        self.config = config
        self._fonts = LabelFonts()
        self._warned: set[str] = set()

    def label(self, name: str, category_id: int) -> str:
        """The text drawn for a class: its name when some installed font can draw it, else an
        ASCII stand-in (see :func:`~ovpanoptic.builtins.fonts.ascii_label`), with one warning per
        name and exporter."""
        if self._fonts.can_draw(name):
            return name
        stand_in = ascii_label(name, category_id)
        if name not in self._warned:
            self._warned.add(name)
            log.warning(
                "overlay: no installed font can draw the class name %r; it is labelled %r. Install a font that has "
                "its characters (e.g. Debian's fonts-noto-cjk for Chinese, Japanese and Korean)",
                name,
                stand_in,
            )
        return stand_in

    def render(self, result: PanopticResult, image: np.ndarray) -> np.ndarray:
        """The overlay as an ``(h, w, 3)`` uint8 RGB array: the result's size, scaled down to
        ``max_side`` on the long side when it is larger."""
        try:
            import torch

            import_quietly("detectron2.utils.visualizer")
            from detectron2.data.catalog import Metadata
            from detectron2.utils.visualizer import ColorMode
        except ImportError as exc:
            raise MissingDependencyError(
                f"the overlay exporter needs detectron2 ({exc}); run scripts/bootstrap.sh"
            ) from None
        h, w = working_size(*result.image_size, self.config.max_side)
        if (h, w) != result.image_size:
            result = result.resized(h, w)
        if image.shape[:2] != result.image_size:
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize(result.image_size[::-1], Image.Resampling.BILINEAR, reducing_gap=3.0))
        vocab = result.vocabulary
        things = list(vocab.things)
        stuff = list(vocab.stuff)
        meta = Metadata(
            name="ovpanoptic",
            thing_classes=[self.label(c.name, c.id) for c in things],
            thing_colors=[c.display_color for c in things],
            stuff_classes=[self.label(c.name, c.id) for c in stuff],
            stuff_colors=[c.display_color for c in stuff],
        )
        thing_index = {c.id: i for i, c in enumerate(things)}
        stuff_index = {c.id: i for i, c in enumerate(stuff)}
        infos = [
            {
                "id": s.id,
                "isthing": s.isthing,
                "category_id": thing_index[s.category_id] if s.isthing else stuff_index[s.category_id],
                **({"score": s.score} if self.config.show_scores and s.isthing else {}),
            }
            for s in result.segments
        ]
        visualizer = _stable_visualizer_class()(image, meta, instance_mode=ColorMode.IMAGE, fonts=self._fonts)
        area = self.config.area_threshold or None
        out = visualizer.draw_panoptic_seg(
            torch.from_numpy(np.array(result.panoptic_map)), infos, area_threshold=area, alpha=self.config.alpha
        )
        return np.ascontiguousarray(out.get_image())

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        path = Path(outdir) / f"{stem}.overlay.png"
        return [atomic_write_bytes(path, _png_bytes(self.render(result, image)))]


def _stable_visualizer_class() -> type:
    from detectron2.utils.visualizer import Visualizer

    class StableVisualizer(Visualizer):  # type: ignore[misc]
        """detectron2's Visualizer with instance colour jitter from a seeded generator, so the
        same result always draws the same picture (detectron2 uses numpy's global RNG)."""

        def __init__(self, *args: Any, fonts: LabelFonts, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._rng = np.random.default_rng(0)
            self._fonts = fonts
            # The canvas has fixed limits (the image), so each polygon need not update the axes' data
            # limits: add_artist does what add_patch does but that (2 of 7 s for 200 segments).
            ax = self.output.ax
            ax.add_patch = ax.add_artist

        def draw_text(self, text: str, position: Any, **kwargs: Any) -> Any:
            family = self._fonts.family_for(text)
            if family is None:
                return super().draw_text(text, position, **kwargs)
            # The label needs another font: draw it like detectron2 does, with that font first.
            before = len(self.output.ax.texts)
            out = super().draw_text(text, position, **kwargs)
            for artist in self.output.ax.texts[before:]:
                artist.set_fontfamily([family, "sans-serif"])
            return out

        def _jitter(self, color: Sequence[float]) -> tuple[float, ...]:
            offset = self._rng.random(3)
            offset = offset / np.linalg.norm(offset) * 0.5
            return tuple(np.clip(offset + np.asarray(color, dtype=np.float64), 0.0, 1.0))

    return StableVisualizer


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
        _check_plain_name("json_name", self.json_name)
        _check_plain_name("results_name", self.results_name)
        if self.results_name == self.json_name:
            raise ValueError(f"results_name must differ from json_name ({self.json_name!r})")


class CocoInstancesExporter:
    """COCO instance annotations (pycocotools RLE) of the thing segments."""

    def __init__(self, config: CocoInstancesConfig, context: ComponentContext | None = None) -> None:
        require("pycocotools", "the coco-instances exporter", "pip install pycocotools")
        self.config = config

    def check_output(self, outdir: Path, vocabulary: Vocabulary) -> None:
        """Refuse a folder whose category table (or ``instances.json``) holds other categories."""
        categories = [c for c in _coco_categories(vocabulary) if c["isthing"]]
        _check_combined(_categories_file(outdir, self.config.json_name), categories)
        _check_combined(Path(outdir) / self.config.json_name, categories)

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        try:
            from pycocotools import mask as mask_utils
        except ImportError as exc:
            raise MissingDependencyError(f"the coco-instances exporter needs pycocotools ({exc})") from None
        outdir = Path(outdir)
        categories = _write_categories(outdir, self.config.json_name, [c for c in _coco_categories(result.vocabulary) if c["isthing"]])
        h, w = result.image_size
        things = [s for s in result.segments if s.isthing]
        rles = _encode_things(result.panoptic_map, things, mask_utils)
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
        parts = _parts_dir(outdir, self.config.json_name)
        parts.mkdir(parents=True, exist_ok=True)
        return [atomic_write_text(parts / f"{stem}.json", json.dumps(part)), categories]

    def finish(self, outdir: Path, stems: Sequence[str] | None = None) -> list[Path]:
        """Write ``instances.json`` from the parts of ``stems`` (annotation ids count from 1), and the
        same detections as the results list ``instances_results.json``."""

        def build(data: dict[str, Any], part: dict[str, Any], image_id: int) -> None:
            for annotation in part["annotations"]:
                data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": image_id, **annotation})

        written = _finish_combined(outdir, self.config.json_name, stems, build)
        if not written:
            return written
        dataset = json.loads(written[0].read_text("utf-8"))
        keys = ("image_id", "category_id", "segmentation", "bbox", "score")
        results = [{k: a[k] for k in keys} for a in dataset["annotations"]]
        return [*written, atomic_write_text(Path(outdir) / self.config.results_name, json.dumps(results))]


#: Bytes of mask stack encoded per pycocotools call by ``coco-instances``.
_RLE_CHUNK_BYTES = 128 * 1024 * 1024


def _encode_things(panoptic_map: np.ndarray, things: Sequence[Any], mask_utils: Any) -> list[dict[str, Any]]:
    """pycocotools RLE of each segment's mask, in chunks of ``(H, W, k)`` Fortran-order stacks, each
    mask written inside its segment's box only (comparing the whole map per segment cost 70 s for 283
    segments at 24 MP), so memory stays at :data:`_RLE_CHUNK_BYTES` whatever the segment count."""
    h, w = panoptic_map.shape
    per_chunk = max(1, _RLE_CHUNK_BYTES // max(1, h * w))
    rles: list[dict[str, Any]] = []
    for start in range(0, len(things), per_chunk):
        chunk = things[start : start + per_chunk]
        stack = np.zeros((h, w, len(chunk)), np.uint8, order="F")
        for k, s in enumerate(chunk):
            x0, y0, x1, y1 = s.bbox_xyxy
            stack[y0:y1, x0:x1, k] = panoptic_map[y0:y1, x0:x1] == s.id
        rles.extend(mask_utils.encode(stack))
    return rles


class SummaryExporter:
    """A per-image JSON summary."""

    def __init__(self, config: Any, context: ComponentContext | None = None) -> None:
        self.config = config

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        data = {"image": stem, **result.to_dict()}
        return [atomic_write_text(Path(outdir) / f"{stem}.summary.json", json.dumps(data, indent=1))]


@hookimpl
def register_exporters(register: RegisterComponent) -> None:
    """Register ``coco-panoptic``, ``overlay``, ``coco-instances`` and ``summary``."""
    register("coco-panoptic", CocoPanopticExporter, config=CocoPanopticConfig, description="COCO-panoptic PNG + panoptic.json")
    register("overlay", OverlayExporter, config=OverlayConfig, description="image with labelled segments (detectron2 Visualizer)")
    register("coco-instances", CocoInstancesExporter, config=CocoInstancesConfig, description="COCO instances.json with RLE masks (things) + instances_results.json for COCO.loadRes")
    register("summary", SummaryExporter, description="per-image JSON summary")
