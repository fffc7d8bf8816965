"""Write a training-ready dataset folder from labels of any format ``eval`` reads.

Layout of ``DATASET_DIR`` (``SPLIT`` is ``train``, ``val``, ``test``)::

    README.md                         dataset card (Hugging Face template, with configs for load_dataset)
    id2label.json                     training index -> class name (semantic PNGs, YOLO classes)
    categories.json                   the COCO category table (id, name, isthing) and each class's index
    splits.json                       {split: [image names]}
    images/SPLIT/NAME.EXT             the original images (all required, unless --no-images: labels only)
    annotations/panoptic_SPLIT.json   + annotations/panoptic_SPLIT/NAME.png   COCO panoptic
    annotations/instances_SPLIT.json  COCO instances (things, RLE)
    semantic/SPLIT/NAME.png           class-index PNGs (void = 255, or 65535 for > 255 classes)
    labels/SPLIT/NAME.txt + data.yaml YOLO segmentation (no data.yaml with --no-images)
    data/SPLIT-00000-of-00001.parquet Hugging Face datasets
    card/crops/INDEX.png              one example crop per class (from an original image)

Everything is written into a hidden folder beside ``DATASET_DIR`` and renamed into place at the
end, so a failure leaves nothing partial.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import CLI_OUTPUT_FIX, check_output_folder
from ..errors import InputError
from ..formats.annotations import image_name
from ..formats.coco_instances import instance_annotations
from ..formats.coco_panoptic import coco_categories, panoptic_png, panoptic_segments
from ..formats.common import CategoryInfo
from ..formats.cvat import cvat_file
from ..formats.detect import read_annotations
from ..formats.hf import ParquetSplitWriter, parquet_name
from ..formats.semantic import id2label, ignore_index, semantic_map, semantic_png
from ..formats.yolo import data_yaml, yolo_labels
from ..types import PanopticResult
from .card import CardFacts, render_card
from .refine import annotation_refiner
from .splits import SPLIT_NAMES, make_splits, parse_fractions

__all__ = ["IMAGE_SUFFIXES", "SOURCE_ROLE", "PackageOptions", "PackageSummary", "package_dataset"]

log = logging.getLogger(__name__)

#: File suffixes taken as original images in ``--images``.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

#: The role the readers' messages give the labels being packaged (not "ground-truth": nothing is compared).
SOURCE_ROLE = "source"

#: Pixels of context around an example crop.
_CROP_MARGIN: int = 8


@dataclass(frozen=True)
class PackageOptions:
    """How to package: split fractions, seed, the card's name, replace a non-empty folder, pixel limit."""

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    name: str | None = None
    overwrite: bool = False
    max_pixels: int | None = None
    #: package the labels only (``--no-images``): no ``images/``, no ``data.yaml``, no crops, and the
    #: Parquet ``image`` column null; without it, labels whose original image is missing are refused.
    labels_only: bool = False

    @classmethod
    def from_text(
        cls, *, splits: str, seed: int, name: str | None, overwrite: bool, max_pixels: int | None, labels_only: bool = False
    ) -> PackageOptions:
        return cls(parse_fractions(splits), seed, name, overwrite, max_pixels, labels_only)


@dataclass(frozen=True)
class PackageSummary:
    """What was written: the folder, images per split, original images found, notes (known limits)."""

    output: Path
    splits: Mapping[str, int]
    images_found: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def format_text(self) -> str:
        lines = [f"wrote {self.output}: " + ", ".join(f"{s} {n}" for s, n in self.splits.items())
                 + f"; original images found: {self.images_found} of {sum(self.splits.values())}"]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _image_files(folder: Path | None, manifest_inputs: Mapping[str, str]) -> dict[str, Path]:
    """The original images by name: those of ``folder`` (``--images``, explicit, so it wins over the
    manifest and is the only place looked in), else the manifest's inputs that still exist."""
    found: dict[str, Path] = {}
    if folder is not None:
        if not folder.is_dir():
            raise InputError(f"--images {folder} is not a folder: give the folder of the original images")
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
                found.setdefault(image_name(path.name), path)
        return found
    for stem, path in manifest_inputs.items():
        if Path(path).is_file():
            found[stem] = Path(path)
    return found


def _cvat_images(source: Path) -> Path | None:
    """The ``images/`` folder a CVAT export ships beside its XML (CVAT's and the ``cvat`` exporter's layout)."""
    xml = cvat_file(source) if source.is_dir() else source
    folder = xml.parent / "images" if xml is not None else None
    return folder if folder is not None and folder.is_dir() else None


def _image_size(path: Path, max_pixels: int | None) -> tuple[int, int]:
    """``(width, height)`` of an original image as :func:`~ovpanoptic.imageio.read_image` reads it
    (upright per its EXIF orientation), from the file's header.

    :raises InputError: not a readable image, naming the file and the fix.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    from ..imageio import EXIF_ORIENTATION, EXIF_TRANSPOSED, check_pixels

    fix = "replace it with the original image, or remove it from --images"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            img_cm = Image.open(path)
        with img_cm as img:
            check_pixels(img.width, img.height, max_pixels, str(path))
            width, height = img.size
            orientation = img.getexif().get(EXIF_ORIENTATION, 1)  # getexif: exact, also a PNG's eXIf after its pixels
    except UnidentifiedImageError:
        raise InputError(f"original image {path} is not an image file Pillow can read: {fix}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"original image {path} cannot be read ({exc}): {fix}") from None
    if orientation in EXIF_TRANSPOSED:  # EXIF rotations by 90 degrees: read_image turns the image upright
        width, height = height, width
    return width, height


def _manifest(source: Path) -> tuple[dict[str, Any] | None, dict[str, str]]:
    folder = source if source.is_dir() else source.parent
    from ..engines.manifest import Manifest

    header, records, _ = Manifest.read(folder)
    return header, {r.stem: r.input for r in records.values() if r.status == "done"}


def _check_output(output: Path, overwrite: bool) -> None:
    """The one output-folder check (:func:`~ovpanoptic.atomic.check_output_folder`), then a
    non-empty folder without ``overwrite``: before anything is read or written."""
    check_output_folder(output, CLI_OUTPUT_FIX)
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise InputError(f"{output} is not empty: choose a new folder with -o, or add --overwrite to replace it")


def _prepare_output(output: Path, overwrite: bool) -> Path:
    _check_output(output, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, "utf-8")
    else:
        path.write_bytes(data)


def _crop(original: Path, ids: np.ndarray, segment_id: int) -> bytes | None:
    from io import BytesIO

    from PIL import Image

    with Image.open(original) as img:
        rgb = img.convert("RGB")
    if rgb.size != (ids.shape[1], ids.shape[0]):
        return None
    ys, xs = np.nonzero(ids == segment_id)
    if xs.size == 0:
        return None
    box = (max(0, int(xs.min()) - _CROP_MARGIN), max(0, int(ys.min()) - _CROP_MARGIN),
           min(ids.shape[1], int(xs.max()) + 1 + _CROP_MARGIN), min(ids.shape[0], int(ys.max()) + 1 + _CROP_MARGIN))
    crop = rgb.crop(box)
    crop.thumbnail((160, 160))
    buffer = BytesIO()
    crop.save(buffer, format="PNG")
    return buffer.getvalue()


def package_dataset(
    source: str | Path,
    output: str | Path,
    *,
    fmt: str = "auto",
    use: str = "auto",
    categories: Sequence[CategoryInfo] | None = None,
    images: str | Path | None = None,
    qa: str | Path | None = None,
    options: PackageOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    refine: Callable[[PanopticResult], PanopticResult] | None = None,
) -> PackageSummary:
    """Write the dataset folder (see the module docstring).

    :param source: labels: an ovpanoptic output folder, or a file/folder of any format ``eval`` reads.
    :param categories: the classes of a name-only format (Label Studio, CVAT).
    :param images: a folder of original images, found by name (default: the manifest's inputs).
    :param qa: ``qa.json`` of ``ovpanoptic qa`` for the card.
    :param refine: refiners applied to each image's labels before they are written (``--refine
        NAME``, see :mod:`.refine`), e.g. ``lambda r: pipeline.refine(r, None, names=["cleanup"])``.
    :raises InputError: a non-empty output folder, a bad option, an unreadable QA file.
    :raises EvaluationError: what the reader raises.
    """
    from .. import __version__

    options = options or PackageOptions()
    src = Path(source)
    out = Path(output)
    _check_output(out, options.overwrite)
    if options.labels_only and images is not None:
        raise InputError("--images and --no-images contradict each other: give the originals with --images DIR, or package the labels only with --no-images")
    annotations = read_annotations(src, fmt, categories=categories, use=use, role=SOURCE_ROLE, max_pixels=options.max_pixels)
    if not annotations.names:
        raise InputError(f"{src} holds no image: nothing to package")
    if refine is not None:
        refined = annotation_refiner(annotations.categories, refine)
        annotations = dataclasses.replace(annotations, reader=lambda name, read=annotations.reader: refined(read(name)))
    qa_data: dict[str, Any] | None = None
    if qa is not None:
        try:
            qa_data = json.loads(Path(qa).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the QA report {qa} ({exc}): give the qa.json that 'ovpanoptic qa' wrote") from None
        if not isinstance(qa_data, dict) or "classes" not in qa_data:
            raise InputError(f"{qa} is not a qa.json of 'ovpanoptic qa' (no 'classes'): give the file 'ovpanoptic qa' wrote")
    header, inputs = _manifest(src) if src.exists() else (None, {})
    folder = Path(images) if images is not None else (_cvat_images(src) if annotations.format == "cvat" else None)
    originals = {} if options.labels_only else _image_files(folder, inputs)
    cats = [annotations.categories[c] for c in sorted(annotations.categories)]
    train_index = {c.id: k for k, c in enumerate(cats)}
    names_of = {c.id: c.name for c in cats}
    things = {c.id for c in cats if c.isthing}
    classes_of: dict[str, frozenset[str]] = {}
    for name in annotations.names:
        image = annotations.read(name)
        classes_of[name] = frozenset(
            names_of[int(s["category_id"])] for s in image.segments
            if int(s.get("category_id", -1)) in names_of and int(s.get("area", 1) or 0) > 0
        )
        original = originals.get(name)
        if original is not None:  # every original is checked before anything is written
            if image.panoptic_map.size:
                labels = (image.panoptic_map.shape[1], image.panoptic_map.shape[0])
            else:
                labels = annotations.size(name)
            size = _image_size(original, options.max_pixels)
            if labels is not None and tuple(labels) != size:
                raise InputError(
                    f"original image {original} is {size[0]}x{size[1]} but its labels ({name}) are {labels[0]}x{labels[1]} "
                    "(width x height, EXIF orientation applied): give the image the labels were made on (--images DIR)"
                )
    # After the labels: a broken label file is the source's fault and is reported first.
    missing = [n for n in annotations.names if n not in originals]
    if missing and not options.labels_only:
        where = f"in --images {folder}" if images is not None else (f"in {folder}" if folder is not None else "(no --images DIR given and no manifest input found)")
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(
            f"{len(missing)} of {len(annotations.names)} original image(s) not found {where}: {shown}. Give the folder of the "
            "original images with --images DIR, or add --no-images to package the labels only (no images/, no data.yaml)"
        )
    splits = make_splits(classes_of, options.fractions, seed=options.seed)
    tmp = _prepare_output(out, options.overwrite)
    notes: list[str] = []
    try:
        counts: dict[str, dict[str, list[int]]] = {c.name: {} for c in cats}
        crops: dict[str, str] = {}
        holes = 0
        done = 0
        image_ids = {name: k + 1 for k, name in enumerate(sorted(annotations.names))}
        for split in SPLIT_NAMES:
            members = splits.images.get(split, ())
            if not members:
                continue
            panoptic_json: dict[str, Any] = {"images": [], "annotations": [], "categories": coco_categories(cats, panoptic=True)}
            instances_json: dict[str, Any] = {"images": [], "annotations": [], "categories": coco_categories(cats, panoptic=False)}
            writer = ParquetSplitWriter(tmp / "data" / parquet_name(split))
            try:
                for name in members:
                    image = annotations.read(name)
                    ids = image.panoptic_map
                    if ids.size == 0:
                        size = annotations.size(name)
                        ids = np.zeros((size[1], size[0]) if size else (1, 1), np.int64)
                    height, width = ids.shape
                    original = originals.get(name)
                    file_name = original.name if original is not None else f"{name}.jpg"
                    image_id = image_ids[name]
                    segments = panoptic_segments(ids, [s for s in image.segments if isinstance(s, Mapping)], set(names_of))
                    entry = {"id": image_id, "file_name": file_name, "width": width, "height": height}
                    panoptic_json["images"].append(entry)
                    instances_json["images"].append(entry)
                    png = panoptic_png(ids)
                    _write(tmp / "annotations" / f"panoptic_{split}" / f"{name}.png", png)
                    panoptic_json["annotations"].append({"image_id": image_id, "file_name": f"{name}.png", "segments_info": segments})
                    instances_json["annotations"] += instance_annotations(ids, segments, things, image_id, len(instances_json["annotations"]) + 1)
                    sem = semantic_png(semantic_map(ids, segments, train_index), len(cats))
                    _write(tmp / "semantic" / split / f"{name}.png", sem)
                    labels = yolo_labels(ids, segments, train_index)
                    holes += labels.holes
                    _write(tmp / "labels" / split / f"{name}.txt", labels.text)
                    original_bytes = None
                    if original is not None:
                        original_bytes = original.read_bytes()
                        _write(tmp / "images" / split / original.name, original_bytes)
                    writer.add(image_id, file_name, None if original_bytes is None else (original_bytes, original.name), png, sem, segments)
                    for segment in segments:
                        cname = names_of[segment["category_id"]]
                        cell = counts[cname].setdefault(split, [0, 0, 0])
                        cell[1] += 1
                        cell[2] += segment["area"]
                        if cname not in crops and original is not None and not segment["iscrowd"]:
                            data = _crop(original, ids, segment["id"])
                            if data is not None:
                                rel = f"card/crops/{train_index[segment['category_id']]}.png"
                                _write(tmp / rel, data)
                                crops[cname] = rel
                    for cname in {names_of[s["category_id"]] for s in segments}:
                        counts[cname].setdefault(split, [0, 0, 0])[0] += 1
                    done += 1
                    if progress is not None:
                        progress(done, len(annotations.names))
            finally:
                writer.close()
            _write(tmp / "annotations" / f"panoptic_{split}.json", json.dumps(panoptic_json))
            _write(tmp / "annotations" / f"instances_{split}.json", json.dumps(instances_json))
        split_sizes = {s: len(splits.images.get(s, ())) for s in SPLIT_NAMES}
        used = [s for s in SPLIT_NAMES if split_sizes[s] > 0]
        _write(tmp / "id2label.json", json.dumps(id2label([c.name for c in cats]), indent=2))
        _write(tmp / "categories.json", json.dumps({
            "ignore_index": ignore_index(len(cats)),
            "categories": [{"index": train_index[c.id], "id": c.id, "name": c.name, "isthing": c.isthing} for c in cats],
        }, indent=2))
        _write(tmp / "splits.json", json.dumps({s: list(splits.images.get(s, ())) for s in used}, indent=2))
        if not options.labels_only:  # YOLO needs images/SPLIT beside labels/SPLIT
            _write(tmp / "data.yaml", data_yaml([c.name for c in cats], used))
        for split, missing in splits.missing.items():
            notes.append(f"split {split} has no image of {', '.join(missing)} (too few images hold them)")
        if holes:
            notes.append(f"YOLO-seg polygons cannot hold holes: {holes} hole pixels are filled in labels/ (the other formats keep them)")
        if options.labels_only:
            notes.append(
                "labels only (--no-images): no images/, no data.yaml (YOLO cannot load labels/ without images/), "
                "no example crops, and the Parquet 'image' column is null"
            )
        if qa_data is not None:
            below = [c["name"] for c in qa_data.get("classes", []) if c.get("passed") is False]
            if below:
                notes.append(f"classes below their QA target: {', '.join(below)}")
            low = qa_data.get("low_iou") or []
            if low:
                notes.append(f"classes with IoU below 40 % (few examples, unclear guidelines or confusion with another class): {', '.join(low)}")
        notes.extend(annotations.notes)
        files = [
            ("annotations/panoptic_SPLIT.json", "COCO panoptic (+ PNG folder of the same name)"),
            ("annotations/instances_SPLIT.json", "COCO instances, things as RLE"),
            ("semantic/SPLIT/*.png + id2label.json", f"class-index PNGs, void = {ignore_index(len(cats))}"),
            ("labels/SPLIT/*.txt" + ("" if options.labels_only else " + data.yaml"),
             "YOLO segmentation polygons" + (" (labels only: no images/, no data.yaml)" if options.labels_only else "")),
            ("data/SPLIT-*.parquet", "Hugging Face datasets (image, panoptic, semantic, segments_info)"),
            *([] if options.labels_only else [("images/SPLIT/", "original images")]),
        ]
        card = CardFacts(
            name=options.name or out.name, source=str(src), source_format=annotations.format, splits={s: split_sizes[s] for s in used},
            classes=[(c.id, c.name, c.isthing) for c in cats],
            counts={n: {s: tuple(v) for s, v in per.items()} for n, per in counts.items()},  # type: ignore[misc]
            crops=crops, limits=notes, files=files, header=header, qa=qa_data,
            images_found=sum(1 for n in annotations.names if n in originals), ovpanoptic_version=__version__,
        )
        _write(tmp / "README.md", render_card(card))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("packaged %d images into %s", len(annotations.names), out)
    return PackageSummary(out, {s: len(splits.images.get(s, ())) for s in SPLIT_NAMES}, sum(1 for n in annotations.names if n in originals), tuple(notes))
