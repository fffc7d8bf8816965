"""Read Cityscapes ground truth as :class:`~ovpanoptic.formats.annotations.PanopticAnnotations` (labelling QA).

Two layouts, both as Cityscapes (``mcordts/cityscapesScripts``) defines them:

``gtFine`` (:func:`read_cityscapes`)
    ``gtFine/<split>/<city>/<name>_gtFine_instanceIds.png``: one channel (16-bit PNG) of ids per
    pixel, written by cityscapesscripts' ``preparation/json2instanceImg.py``: a thing instance is
    ``label id * 1000 + k`` (``k`` counts the instances of that class in the image from 0), any
    other pixel holds its label id (``helpers/labels.py``); a thing label without an instance
    number is a group the annotators could not split (``cargroup``). Read as cityscapesscripts'
    own panoptic conversion (``preparation/createPanopticImgs.py``) reads it: each id value is one
    segment whose id is that value; instances are ``iscrowd`` 0, groups of a thing label
    ``iscrowd`` 1; labels with ``ignoreInEval`` (``unlabeled`` 0, ``ego vehicle``, ``caravan``,
    ...) are void. The ``_gtFine_labelIds.png`` beside each file holds nothing more and is not read.
``cityscapes-panoptic`` (:func:`read_cityscapes_panoptic`)
    ``cityscapes_panoptic_<split>.json`` and its PNG folder ``cityscapes_panoptic_<split>/``, as
    ``createPanopticImgs.convert2panoptic`` writes them: COCO-panoptic layout (segment id =
    R + 256 G + 256^2 B), image ids being the Cityscapes names (``frankfurt_000000_000294``).

Categories: the 19 evaluation classes (labels with ``ignoreInEval`` False), category id =
Cityscapes label id (road 7 ... bicycle 33), thing = the label's ``hasInstances``. Image names:
:func:`~ovpanoptic.formats.annotations.image_name` (``frankfurt_000000_000294_gtFine_instanceIds.png`` ->
``frankfurt_000000_000294``).

The Cityscapes label table comes from the optional package ``cityscapesscripts``, imported when a
gtFine folder is read (:func:`cityscapes_labels`); reading the panoptic JSON needs only Pillow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ...constants import DEFAULT_MAX_PIXELS, VOID_ID
from ...errors import MissingDependencyError
from ..annotations import AnnotatedImage, PanopticAnnotations, image_name
from ..coco_panoptic import read_coco_panoptic
from ..common import CategoryInfo, EvaluationError, open_checked, png_size

__all__ = [
    "CITYSCAPES_INSTANCE_DIVISOR",
    "CITYSCAPES_INSTANCE_IDS_SUFFIX",
    "CITYSCAPES_LABEL_IDS_SUFFIX",
    "CITYSCAPES_UNLABELED_ID",
    "cityscapes_categories",
    "cityscapes_labels",
    "decode_instance_ids",
    "read_cityscapes",
    "read_cityscapes_panoptic",
]

#: Cityscapes' instanceIds encoding: a thing instance is ``label id * 1000 + k`` (json2instanceImg.py).
CITYSCAPES_INSTANCE_DIVISOR: int = 1000

#: Cityscapes' label id of unlabeled pixels (``unlabeled`` in labels.py): void.
CITYSCAPES_UNLABELED_ID: int = 0

#: File name ending of Cityscapes' gtFine instance images (``<name>_gtFine_instanceIds.png``).
CITYSCAPES_INSTANCE_IDS_SUFFIX: str = "_gtFine_instanceIds.png"

#: File name ending of Cityscapes' gtFine label images (``<name>_gtFine_labelIds.png``).
CITYSCAPES_LABEL_IDS_SUFFIX: str = "_gtFine_labelIds.png"

#: The command that installs cityscapesscripts, for messages.
_INSTALL_HINT: str = "pip install cityscapesscripts (or pip install 'ovpanoptic[labelling]')"


def cityscapes_labels(what: str = "reading Cityscapes annotations") -> tuple[Any, ...]:
    """Cityscapes' label table: cityscapesscripts' ``helpers.labels.labels``, imported now.

    Each entry is its ``Label`` namedtuple (``name``, ``id``, ``trainId``, ``category``,
    ``categoryId``, ``hasInstances``, ``ignoreInEval``, ``color``), in labels.py's order.

    :param what: what needs it, for the message.
    :raises MissingDependencyError: cityscapesscripts is not installed (the message gives the command).
    """
    try:
        from cityscapesscripts.helpers import labels
    except ImportError as exc:
        raise MissingDependencyError(f"{what} needs cityscapesscripts ({exc}): {_INSTALL_HINT}") from None
    return tuple(labels.labels)


def cityscapes_categories(labels: Sequence[Any] | None = None) -> dict[int, CategoryInfo]:
    """The 19 evaluation categories, by Cityscapes label id: the labels with ``ignoreInEval``
    False, ``isthing`` = ``hasInstances`` (the categories cityscapesscripts' panoptic conversion writes).

    :param labels: the label table (default: :func:`cityscapes_labels`).
    """
    table = cityscapes_labels() if labels is None else labels
    return {int(l.id): CategoryInfo(int(l.id), str(l.name), bool(l.hasInstances)) for l in table if not l.ignoreInEval}


def read_cityscapes_panoptic(
    json_path: str | Path,
    png_dir: str | Path | None = None,
    *,
    role: str = "ground-truth",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> PanopticAnnotations:
    """Read Cityscapes-panoptic (``cityscapes_panoptic_<split>.json`` + its PNG folder).

    :param json_path: the JSON that cityscapesscripts' ``convert2panoptic`` (or ovpanoptic's
        ``cityscapes-panoptic`` exporter) wrote.
    :param png_dir: its PNG folder; default: the JSON's name without ``.json`` beside it
        (``cityscapes_panoptic_val/``), as cityscapesscripts' evaluation assumes.
    :param role: whose set it is (``"ground-truth"``, ``"prediction"``), for messages.
    :param max_pixels: a PNG with more pixels is refused from its header (``None`` or 0: no limit).
    :return: the set, ``format`` ``"cityscapes-panoptic"``; image names drop ``_gtFine_panoptic``.
    :raises EvaluationError: a missing or malformed file.
    """
    annotations = read_coco_panoptic(json_path, png_dir, role=role, max_pixels=max_pixels)
    return dataclasses.replace(annotations, format="cityscapes-panoptic")


def read_cityscapes(
    folder: str | Path, *, role: str = "ground-truth", max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> PanopticAnnotations:
    """Read a Cityscapes gtFine folder: every ``*_gtFine_instanceIds.png`` below ``folder``.

    :param folder: ``gtFine``, one split (``gtFine/val``) or one city folder, or an output folder of
        the ``cityscapes`` exporter (``OUTDIR/instanceIds/gtFine/...``); searched recursively (hidden
        folders left out), images in path order (as ``convert2panoptic`` orders them).
    :param role: whose set it is (``"ground-truth"``, ``"prediction"``), for messages.
    :param max_pixels: a PNG with more pixels is refused from its header, before it is decoded
        (``None`` or 0: no limit).
    :return: the set, ``format`` ``"cityscapes"``: per image an ``(H, W)`` int64 map whose segment
        ids are the instanceIds values (void 0), ``segments_info`` with ``id``, ``category_id``
        (label id), ``iscrowd`` and ``area`` (pixels); see the module docstring for the rules.
    :raises EvaluationError: no such folder, no instanceIds file in it, two files of one image name,
        or (when an image is read) an unreadable PNG or an id of no Cityscapes label.
    :raises MissingDependencyError: cityscapesscripts is not installed.
    """
    root = Path(folder)
    if not root.is_dir():
        raise EvaluationError(
            f"{role} Cityscapes folder {root} does not exist (give the gtFine folder, one split of it, or the cityscapes export's folder)"
        )
    # hidden folders (ovpanoptic's own .ovpanoptic/ working files) are not part of the layout
    files = sorted(
        f for f in root.rglob(f"*{CITYSCAPES_INSTANCE_IDS_SUFFIX}") if not any(d.startswith(".") for d in f.relative_to(root).parts[:-1])
    )
    if not files:
        raise EvaluationError(
            f"{role} Cityscapes folder {root} holds no *{CITYSCAPES_INSTANCE_IDS_SUFFIX} files: give the gtFine "
            f"folder of Cityscapes' layout (gtFine/<split>/<city>/<name>{CITYSCAPES_INSTANCE_IDS_SUFFIX})"
        )
    labels = cityscapes_labels("reading a Cityscapes gtFine folder")
    by_id = {int(l.id): l for l in labels}
    paths: dict[str, Path] = {}
    for path in files:
        name = image_name(path.name)
        if name in paths:
            raise EvaluationError(
                f"{root}: {paths[name]} and {path} are both image {name!r}; images are paired by name, so read one "
                "split at a time"
            )
        paths[name] = path

    def read(name: str) -> AnnotatedImage:
        path = paths[name]
        values = _read_instance_png(path, role, name, max_pixels)
        panoptic_map, segments = decode_instance_ids(values, by_id, where=f"{name}: {role} PNG {path}")
        return AnnotatedImage(name, panoptic_map, segments)

    def sizes(name: str) -> tuple[int, int] | None:
        return png_size(paths[name])

    return PanopticAnnotations(str(root), "cityscapes", cityscapes_categories(labels), tuple(paths), read, sizes=sizes)


def decode_instance_ids(
    values: npt.NDArray[np.integer[Any]], labels_by_id: Mapping[int, Any], *, where: str = "instanceIds"
) -> tuple[npt.NDArray[np.int64], tuple[dict[str, Any], ...]]:
    """Segments of a Cityscapes instanceIds array, by the rules of cityscapesscripts' ``convert2panoptic``.

    :param values: ``(H, W)`` integer instanceIds (``label * 1000 + k`` or a label id).
    :param labels_by_id: Cityscapes' labels by id (``cityscapesscripts.helpers.labels.id2label``).
    :return: the ``(H, W)`` int64 panoptic map (segment id = the instanceIds value, void 0) and the
        ``segments_info`` (``id``, ``category_id``, ``iscrowd``, ``area``), by increasing id.
    :raises EvaluationError: a value whose label id is no Cityscapes label (``where`` names the file).
    """
    ids = np.asarray(values).astype(np.int64, copy=False)
    panoptic_map = np.zeros(ids.shape, np.int64)
    segments: list[dict[str, Any]] = []
    present, counts = np.unique(ids, return_counts=True)
    for value, count in zip(present.tolist(), counts.tolist()):
        instance = value >= CITYSCAPES_INSTANCE_DIVISOR
        label_id = value // CITYSCAPES_INSTANCE_DIVISOR if instance else value
        label = labels_by_id.get(label_id)
        if label is None:
            raise EvaluationError(
                f"{where} holds the value {value}, whose label id {label_id} is no Cityscapes label (labels.py has ids "
                f"{min(labels_by_id)}..{max(labels_by_id)}); instanceIds hold label ids, or label id * "
                f"{CITYSCAPES_INSTANCE_DIVISOR} + instance number"
            )
        if label.ignoreInEval or value == VOID_ID:
            continue
        panoptic_map[ids == value] = value
        crowd = not instance and bool(label.hasInstances)
        segments.append({"id": int(value), "category_id": int(label.id), "iscrowd": int(crowd), "area": int(count)})
    return panoptic_map, tuple(segments)


def _read_instance_png(path: Path, role: str, name: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> npt.NDArray[np.int64]:
    """An instanceIds PNG (16-bit or 32-bit grayscale) as an ``(H, W)`` int64 array, refused from
    its header when it has more than ``max_pixels`` pixels."""
    try:
        with open_checked(path, role, name, max_pixels, None) as handle:
            handle.load()
            mode = handle.mode
            array = np.asarray(handle)
    except OSError as error:
        raise EvaluationError(f"{name}: cannot read {role} PNG {path}: {error}") from error
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer) or mode in ("P", "PA", "1"):
        raise EvaluationError(
            f"{name}: {role} PNG {path} has mode {mode}; Cityscapes instanceIds PNGs are one channel of integer ids "
            "(16-bit grayscale)"
        )
    return array.astype(np.int64)
