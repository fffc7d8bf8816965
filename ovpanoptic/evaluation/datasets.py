"""Panoptic datasets on disk: where a dataset's images, ground truth and category table are.

Layouts found under ``DATASET_DIR`` (``ovpanoptic evaluate DATASET_DIR --format ...``); every path
can also be given explicitly (``annotations``, ``gt_dir``, ``image_dir``):

``coco-panoptic``
    COCO panoptic 2017 as downloaded (https://cocodataset.org/#download: ``val2017.zip`` and
    ``panoptic_annotations_trainval2017.zip``, whose ``panoptic_val2017.zip`` is unzipped in
    ``annotations/``): ``annotations/panoptic_val2017.json``, ``annotations/panoptic_val2017/*.png``,
    ``val2017/*.jpg``. Also any folder with one ``panoptic*.json``, its PNG folder (the JSON's name
    without ``.json``, or ``panoptic/``) and the images in ``images/`` (or the split's name, or the
    folder itself).
``ade20k-panoptic``
    ADE20K panoptic as made by Mask2Former's ``datasets/prepare_ade20k_pan_seg.py`` from
    ``ADEChallengeData2016.zip``: ``ade20k_panoptic_val.json``, ``ade20k_panoptic_val/*.png``,
    ``images/validation/*.jpg`` (in ``DATASET_DIR`` or ``DATASET_DIR/ADEChallengeData2016``).
    Its category ids start at 0, which ovpanoptic reserves for void: see
    :attr:`PanopticDataset.id_offset`.
``cityscapes-panoptic``
    Cityscapes (https://www.cityscapes-dataset.com: ``gtFine_trainvaltest.zip``,
    ``leftImg8bit_trainvaltest.zip``) with the panoptic ground truth made by cityscapesscripts'
    ``csCreatePanopticImgs``: ``gtFine/cityscapes_panoptic_val.json``,
    ``gtFine/cityscapes_panoptic_val/*_gtFine_panoptic.png``,
    ``leftImg8bit/val/<city>/<name>_leftImg8bit.png``.

The JSON is the COCO panoptic format (https://cocodataset.org/#format-data, "Panoptic
Segmentation"): ``images`` (``id``, ``file_name``), ``annotations`` (``image_id``, ``file_name``,
``segments_info``) and ``categories`` (``id``, ``name``, ``isthing``, ``color``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..constants import DEFAULT_MAX_PIXELS
from ..formats.annotations import PanopticAnnotations, image_name
from ..formats.coco_panoptic import read_coco_panoptic
from ..formats.common import EvaluationError, categories_from_json, check_annotation_pixels, load_json
from ..imageio import EXIF_TRANSPOSED, exif_orientation, upright_size

__all__ = [
    "DATASET_FORMATS",
    "DatasetCategory",
    "DatasetImage",
    "PanopticDataset",
    "check_output_folder",
    "find_dataset",
    "select_images",
]

#: Dataset formats ``evaluate`` reads, and the exporter that writes predictions in each one's format.
DATASET_FORMATS: Mapping[str, str] = {
    "coco-panoptic": "coco-panoptic",
    "ade20k-panoptic": "coco-panoptic",
    "cityscapes-panoptic": "cityscapes-panoptic",
}


@dataclass(frozen=True)
class DatasetCategory:
    """One category of a dataset's own table (``id`` as the dataset numbers it)."""

    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class DatasetImage:
    """One image of a dataset: its pairing ``name`` (:func:`image_name`), the image file, and the
    ground-truth annotation's ``file_name``."""

    name: str
    path: Path
    annotation: str


@dataclass(frozen=True)
class PanopticDataset:
    """A panoptic dataset found on disk.

    :param format: one of :data:`DATASET_FORMATS`.
    :param annotations: the ground-truth JSON; ``gt_dir`` its PNG folder; ``image_dir`` the images.
    :param categories: the dataset's category table, in its order.
    :param images: every image with ground truth, in the JSON's ``annotations`` order.
    :param id_offset: added to the dataset's category ids to make ovpanoptic's (positive) ids: 1
        when the table has id 0 (ADE20K panoptic), else 0.
    """

    format: str
    root: Path
    annotations: Path
    gt_dir: Path
    image_dir: Path
    categories: tuple[DatasetCategory, ...]
    images: tuple[DatasetImage, ...]
    id_offset: int = 0
    notes: tuple[str, ...] = field(default=())

    def ground_truth(self, names: Sequence[str] | None = None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> PanopticAnnotations:
        """The ground truth as :class:`PanopticAnnotations`, of the images ``names`` only if given.

        :param max_pixels: refuse a ground-truth PNG declaring more pixels, before decoding it (``None`` or 0: no limit).
        :raises EvaluationError: what :func:`~ovpanoptic.formats.coco_panoptic.read_coco_panoptic` raises.
        """
        gt = read_coco_panoptic(self.annotations, self.gt_dir, max_pixels=max_pixels)
        if names is None:
            return gt
        keep = set(names)
        return PanopticAnnotations(gt.source, self.format, gt.categories, tuple(n for n in gt.names if n in keep), gt.reader, gt.notes)

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for the evaluation's protocol."""
        return {
            "format": self.format,
            "root": str(self.root),
            "annotations": str(self.annotations),
            "gt_dir": str(self.gt_dir),
            "image_dir": str(self.image_dir),
            "images": len(self.images),
            "categories": len(self.categories),
            "things": sum(c.isthing for c in self.categories),
            "id_offset": self.id_offset,
        }


def _first(candidates: Sequence[Path], kind: str) -> Path | None:
    found = [c for c in candidates if (c.is_dir() if kind == "dir" else c.is_file())]
    return found[0] if found else None


def _layout(root: Path, fmt: str) -> tuple[list[Path], list[str]]:
    """Candidate annotation JSONs of a layout, and the layout's description for messages."""
    if fmt == "coco-panoptic":
        jsons = [root / "annotations" / "panoptic_val2017.json", *sorted((root / "annotations").glob("panoptic_*.json"))]
        jsons += [root / "panoptic.json", *sorted(root.glob("panoptic_*.json"))]
        return jsons, ["annotations/panoptic_val2017.json + annotations/panoptic_val2017/ + val2017/", "panoptic.json + panoptic/ + images/"]
    if fmt == "ade20k-panoptic":
        bases = [root, root / "ADEChallengeData2016"]
        return [b / "ade20k_panoptic_val.json" for b in bases], ["ade20k_panoptic_val.json + ade20k_panoptic_val/ + images/validation/"]
    if fmt == "cityscapes-panoptic":
        return [root / "gtFine" / "cityscapes_panoptic_val.json", *sorted((root / "gtFine").glob("cityscapes_panoptic_*.json"))], [
            "gtFine/cityscapes_panoptic_val.json + gtFine/cityscapes_panoptic_val/ + leftImg8bit/val/<city>/"
        ]
    raise EvaluationError(f"unknown dataset format {fmt!r}: use one of {', '.join(DATASET_FORMATS)}")


def _image_dirs(fmt: str, base: Path, split: str) -> list[Path]:
    if fmt == "ade20k-panoptic":
        return [base / "images" / ("validation" if split == "val" else "training" if split == "train" else split)]
    if fmt == "cityscapes-panoptic":
        return [base.parent / "leftImg8bit" / split]
    parent = base.parent if base.name == "annotations" else base
    return [parent / split, parent / f"{split}2017", parent / "images", parent]


def _split_of(json_path: Path) -> str:
    """``panoptic_val2017.json`` -> ``val2017``; ``ade20k_panoptic_val.json`` -> ``val``."""
    stem = json_path.stem
    return stem.split("panoptic_", 1)[1] if "panoptic_" in stem else "images"


def find_dataset(
    root: str | Path,
    fmt: str,
    *,
    annotations: str | Path | None = None,
    gt_dir: str | Path | None = None,
    image_dir: str | Path | None = None,
) -> PanopticDataset:
    """Find a panoptic dataset's files under ``root`` (see the module docstring).

    :param fmt: one of :data:`DATASET_FORMATS`.
    :raises EvaluationError: a missing folder or file (the message lists what was looked for and
        how to point at it), a malformed JSON, or images listed without a file.
    """
    base = Path(root)
    if not base.is_dir():
        raise EvaluationError(f"the dataset folder {base} does not exist or is not a folder")
    candidates, layouts = _layout(base, fmt)
    json_path = Path(annotations) if annotations is not None else _first(candidates, "file")
    if json_path is None or not json_path.is_file():
        looked = ", ".join(str(c.relative_to(base)) for c in dict.fromkeys(candidates))
        raise EvaluationError(
            f"no {fmt} ground truth found in {base} (looked for {looked}). Expected layout: {' or '.join(layouts)}; "
            "see docs/scale.md for where to get it, or name the JSON with --annotations"
        )
    split = _split_of(json_path)
    if gt_dir is not None:
        png_dir = Path(gt_dir)
    else:
        png_dir = _first([json_path.with_suffix(""), json_path.parent / "panoptic"], "dir") or json_path.with_suffix("")
    if not png_dir.is_dir():
        raise EvaluationError(f"the ground-truth PNG folder {png_dir} (of {json_path.name}) does not exist: unzip it there, or name it with --gt-dir")
    if fmt == "cityscapes-panoptic":
        split = split.split("_")[-1]
    if image_dir is not None:
        images_root = Path(image_dir)
    else:
        dirs = _image_dirs(fmt, json_path.parent, split)
        images_root = _first(dirs, "dir") or dirs[0]
    if not images_root.is_dir():
        raise EvaluationError(f"the image folder {images_root} does not exist: put the images there, or name their folder with --image-dir")
    data = load_json(json_path, "ground-truth")
    if not isinstance(data.get("categories"), list):
        raise EvaluationError(f"{json_path} is not a COCO-panoptic JSON (it needs a 'categories' list)")
    categories = _categories(data, json_path)
    offset = 1 if any(c.id <= 0 for c in categories) else 0
    return PanopticDataset(fmt, base, json_path, png_dir, images_root, categories, _images(data, json_path, images_root, fmt), offset)


def _categories(data: Mapping[str, Any], path: Path) -> tuple[DatasetCategory, ...]:
    """The dataset's table, checked before any image is segmented: the evaluator's own rules
    (``id``, ``name``, ``isthing`` 0/1, unique ids and names), ids >= 0, names that are not empty."""
    categories_from_json(data, path)  # what the scoring will require, said now
    out = []
    for i, entry in enumerate(data["categories"]):
        where = f"{path}: categories[{i}]"
        if not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise EvaluationError(f"{where} has no name: give every category a 'name' (the class name the vocabulary prompts with)")
        if entry.get("isthing") not in (0, 1):
            raise EvaluationError(f"{where} ({entry['name']!r}) has 'isthing' {entry.get('isthing')!r}: it must be 1 (thing) or 0 (stuff)")
        if isinstance(entry["id"], bool) or not isinstance(entry["id"], int) or entry["id"] < 0:
            raise EvaluationError(f"{where} ({entry['name']!r}) has id {entry['id']!r}: category ids must be integers >= 0")
        color = entry.get("color")
        rgb = tuple(int(c) for c in color) if isinstance(color, list) and len(color) == 3 else None
        out.append(DatasetCategory(entry["id"], entry["name"], entry["isthing"] == 1, rgb))  # type: ignore[arg-type]
    if not out:
        raise EvaluationError(f"{path} lists no categories")
    return tuple(out)


def _images(data: Mapping[str, Any], path: Path, images_root: Path, fmt: str) -> tuple[DatasetImage, ...]:
    files = {}
    for entry in data.get("images") or []:
        if isinstance(entry, Mapping) and "id" in entry and isinstance(entry.get("file_name"), str):
            files[str(entry["id"])] = entry["file_name"]
    out = []
    for i, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, Mapping) or not isinstance(annotation.get("file_name"), str):
            raise EvaluationError(f"{path}: annotations[{i}] has no 'file_name'")
        file_name = files.get(str(annotation.get("image_id")))
        if file_name is None:
            raise EvaluationError(f"{path}: annotations[{i}] (image_id {annotation.get('image_id')!r}) has no entry in 'images'")
        name = image_name(annotation["file_name"])
        if fmt == "cityscapes-panoptic":
            # cityscapesscripts writes images[].file_name as NAME_gtFine_leftImg8bit.png; the image
            # itself is leftImg8bit/<split>/<city>/NAME_leftImg8bit.png
            out.append(DatasetImage(name, images_root / name.split("_")[0] / f"{name}_leftImg8bit.png", annotation["file_name"]))
        else:
            out.append(DatasetImage(name, images_root / file_name, annotation["file_name"]))
    return tuple(out)


def select_images(
    dataset: PanopticDataset,
    *,
    names: Sequence[str] | None = None,
    limit: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[DatasetImage, ...]:
    """The images to run: those named (pairing names or file names, in the dataset's order), then
    the first ``limit``; each image file must exist.

    Every selected pair is checked before any image is segmented, from the file headers only: the
    image and its ground-truth PNG exist, can be read, and have one size (the image's as its EXIF
    orientation turns it, as it is segmented), and the PNG declares at most ``max_pixels`` pixels
    (``None`` or 0: no limit).

    :raises EvaluationError: a dataset that annotates no image, a name the dataset does not have,
        ``limit < 1``, missing or unreadable files, a ground-truth PNG over ``max_pixels`` or of another
        size than its image.
    """
    images = dataset.images
    if not images:
        raise EvaluationError(
            f"{dataset.annotations} annotates no image (its 'annotations' list is empty): there is nothing to evaluate; "
            "give the ground truth of the images to score (one annotation per image, COCO panoptic format)"
        )
    if names is not None:
        wanted = {image_name(n.strip()) for n in names if n.strip()}
        if not wanted:
            raise EvaluationError("--images names no image: give names like 000000139 or 000000139.jpg, comma-separated or one per line in a file")
        known = {i.name for i in images}
        unknown = sorted(wanted - known)
        if unknown:
            raise EvaluationError(
                f"{len(unknown)} image(s) given with --images are not in {dataset.annotations.name} (first: {', '.join(unknown[:3])})"
            )
        images = tuple(i for i in images if i.name in wanted)
    if limit is not None:
        if limit < 1:
            raise EvaluationError(f"--limit must be >= 1, got {limit}")
        images = images[:limit]
    missing = [i for i in images if not i.path.is_file()]
    if missing:
        raise EvaluationError(
            f"{len(missing)} image file(s) of the ground truth are missing (first: {missing[0].path}): put the dataset's "
            "images there, name their folder with --image-dir, or evaluate a subset with --images/--limit"
        )
    no_png = [i for i in images if not (dataset.gt_dir / i.annotation).is_file()]
    if no_png:
        raise EvaluationError(
            f"{len(no_png)} ground-truth PNG(s) are missing (first: {dataset.gt_dir / no_png[0].annotation}): unzip the dataset's "
            "panoptic PNGs there, name their folder with --gt-dir, or evaluate a subset with --images/--limit"
        )
    for image in images:
        png = dataset.gt_dir / image.annotation
        size, png_size = _header_size(image.path, "image"), _header_size(png, "ground-truth PNG")
        check_annotation_pixels(png_size[0], png_size[1], max_pixels, f"the ground-truth PNG {png}")
        if size != png_size:
            raise EvaluationError(
                f"the ground-truth PNG {png} is {png_size[0]}x{png_size[1]} but its image {image.path} is {size[0]}x{size[1]}"
                f"{' (read upright, as its EXIF orientation says)' if _turned(image.path) else ''}: the ground truth must have "
                "its image's size (width x height). Fix the pair in the dataset, or leave the image out with --images/--limit"
            )
    return images


def _turned(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as img:
        return exif_orientation(img) in EXIF_TRANSPOSED


def _header_size(path: Path, what: str) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, as it is read (EXIF orientation applied).

    :raises EvaluationError: the file is not an image Pillow can read.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the pipeline's own limit decides
            with Image.open(path) as img:
                return upright_size(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = "not an image file Pillow can read" if isinstance(exc, UnidentifiedImageError) else f"cannot be read ({exc})"
        raise EvaluationError(
            f"the {what} {path} is {reason}: fix or replace it, or leave its image out with --images/--limit; nothing was segmented"
        ) from None


def check_output_folder(dataset: PanopticDataset, outdir: Path) -> None:
    """Refuse an output folder that overlaps the dataset's ground truth: predictions written there
    would replace it (and then score against themselves).

    :raises EvaluationError: ``outdir`` is, holds, or lies inside the ground-truth PNG folder, or
        holds the annotation JSON or lies in its folder.
    """
    def inside(path: Path, root: Path) -> bool:
        return Path(path).resolve().is_relative_to(Path(root).resolve())

    out = Path(outdir)
    clashes = [
        (dataset.gt_dir, inside(out, dataset.gt_dir) or inside(dataset.gt_dir, out)),
        (dataset.annotations.parent, inside(out, dataset.annotations.parent) or inside(dataset.annotations, out)),
    ]
    for place, clash in clashes:
        if clash:
            raise EvaluationError(
                f"the output folder {out} overlaps the dataset's ground truth ({place}): the predictions could replace it. "
                "Choose an output folder outside the dataset, e.g. -o eval-out"
            )
