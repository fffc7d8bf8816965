"""The bookkeeping of resumable exports, shared by every format writer.

Combined files (``panoptic.json``, ``instances.json``, ``label-studio.json``, CVAT's
``annotations.xml``) are not rewritten image by image (that made a batch quadratic, and left entries
of images that failed): ``export()`` writes each image's part (``OUTDIR/.ovpanoptic/<key>.parts/STEM.json``,
:func:`parts_dir`) and the folder's category table (``OUTDIR/.ovpanoptic/<key>.categories.json``,
:func:`write_categories`), and ``finish(outdir, stems)`` assembles the combined file from the parts
of ``stems``, in that order (:func:`read_parts`; the batch's finished images in input order; all
parts, by name, when ``stems`` is ``None``). A folder's category table never changes under the
results already in it (:func:`check_combined`). Image ids (:func:`image_ids`): a numeric stem is its
own id (COCO style: ``000000139`` -> 139), the other stems get ids after the largest numeric one, in
order, so ids never depend on which run wrote which image.

Imports: the core leaf modules (:mod:`ovpanoptic.atomic`, :mod:`ovpanoptic.errors`, :mod:`ovpanoptic.types`) only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import ExportError
from ..types import Vocabulary

__all__ = [
    "PARTS_FOLDER",
    "categories_file",
    "check_combined",
    "check_plain_name",
    "finish_combined",
    "image_ids",
    "parts_dir",
    "read_parts",
    "vocabulary_categories",
    "write_categories",
]


def check_plain_name(option: str, value: str) -> None:
    """Output names in exporter options stay inside the output folder: one plain, visible name."""
    if not value or value in (".", "..") or value.startswith(".") or any(ch in value for ch in "/\\") or os.path.isabs(value):
        raise ValueError(f"{option} {value!r} must be a plain file or folder name inside the output folder (no '/', '..' or leading '.')")


def vocabulary_categories(vocabulary: Vocabulary) -> list[dict[str, Any]]:
    """A vocabulary's classes as COCO ``categories`` entries (``id``, ``name``, ``supercategory``,
    ``isthing``, ``color``): the table every writer keeps beside its export."""
    return [
        {"id": c.id, "name": c.name, "supercategory": c.name, "isthing": int(c.isthing), "color": list(c.display_color)}
        for c in vocabulary.categories
    ]


def _kind(isthing: Any) -> str:
    return "thing" if isthing else "stuff"


def check_combined(path: Path, categories: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
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


def parts_dir(outdir: Path, json_name: str) -> Path:
    """``OUTDIR/.ovpanoptic/<json_name>.parts``: the folder of an export's per-image parts."""
    return Path(outdir) / PARTS_FOLDER / f"{json_name}.parts"


def categories_file(outdir: Path, json_name: str) -> Path:
    """``OUTDIR/.ovpanoptic/<json_name>.categories.json``: the folder's category table of an export."""
    return Path(outdir) / PARTS_FOLDER / f"{json_name}.categories.json"


def write_categories(outdir: Path, json_name: str, categories: list[dict[str, Any]]) -> Path:
    """The folder's category table: written once, and never changed under existing results."""
    path = categories_file(outdir, json_name)
    if check_combined(path, categories) is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"categories": categories}, indent=1))
    return path


def image_ids(stems: Sequence[str]) -> dict[str, int]:
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


def read_parts(outdir: Path, json_name: str, stems: Sequence[str] | None) -> list[tuple[str, dict[str, Any]]]:
    """``(stem, part)`` of each image part of a combined file, in the order of ``stems`` (``None``:
    every part, by name).

    :raises ExportError: a part of ``stems`` is missing (the batch must redo that image).
    """
    parts = parts_dir(outdir, json_name)
    if stems is None:
        stems = sorted(p.stem for p in parts.glob("*.json")) if parts.is_dir() else []
    out = []
    for stem in stems:
        part_path = parts / f"{stem}.json"
        if not part_path.exists():
            raise ExportError(f"{part_path} is missing: run the batch again to redo image {stem!r}")
        out.append((stem, json.loads(part_path.read_text("utf-8"))))
    return out


def finish_combined(
    outdir: Path, json_name: str, stems: Sequence[str] | None, build: Callable[[dict[str, Any], dict[str, Any], int], None]
) -> list[Path]:
    """Assemble ``OUTDIR/json_name`` from the parts of ``stems``; ``build(data, part, image_id)``
    adds one part's image and annotations to ``data``."""
    outdir = Path(outdir)
    categories_path = categories_file(outdir, json_name)
    if not categories_path.exists():
        return []
    categories = json.loads(categories_path.read_text("utf-8"))["categories"]
    read = read_parts(outdir, json_name, stems)
    data: dict[str, Any] = {"info": {"description": "ovpanoptic predictions"}, "images": [], "annotations": [], "categories": categories}
    ids = image_ids([stem for stem, _ in read])
    for stem, part in read:
        data["images"].append({"id": ids[stem], "file_name": part["file_name"], "height": part["height"], "width": part["width"]})
        build(data, part, ids[stem])
    data["images"].sort(key=lambda i: i["id"])
    return [atomic_write_text(outdir / json_name, json.dumps(data, indent=1))]
