"""Which reader reads a path: format detection and one entry point for every annotation format.

Formats (``ovpanoptic eval --gt-format/--pred-format``; ``auto`` detects them):

=======================  =======================================================================
``coco-panoptic``        a COCO-panoptic JSON (PNGs beside it), or a folder holding ``panoptic.json``
                         (ovpanoptic's output folder; a folder holding several exports is read as
                         this: name the file to read another)
``cityscapes-panoptic``  Cityscapes' panoptic JSON (``cityscapes_panoptic_val.json``) or its folder
``cityscapes``           a Cityscapes ``gtFine`` folder (``*_gtFine_instanceIds.png``)
``label-studio``         a Label Studio JSON export (or ovpanoptic's ``label-studio.json``)
``cvat``                 a CVAT for images 1.1 export (``annotations.xml`` or its folder; in a folder
                         also Datumaro's names, ``default.xml``, ``val.xml``, ...: the one XML with
                         CVAT's ``<annotations>`` root, beside or in ``annotations/``; in
                         ovpanoptic's output folder its ``cvat/`` folder)
=======================  =======================================================================

Label Studio and CVAT name classes without ids or a thing/stuff split (*name-only* formats): their
readers take the categories from the caller (a vocabulary, or the other set's table), or from the
category table ovpanoptic writes beside its own exports (``.ovpanoptic/NAME.categories.json``; for an
export in a folder of its own, ``OUTDIR/cvat/annotations.xml``, ``OUTDIR/.ovpanoptic/cvat.annotations.xml.categories.json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..constants import ANNOTATION_FORMATS, DEFAULT_MAX_PIXELS
from .annotations import PanopticAnnotations, read_coco_panoptic
from .pq import CategoryInfo, EvaluationError, _categories_from_json

__all__ = ["ANNOTATION_FORMATS", "NAME_ONLY_FORMATS", "detect_format", "own_categories", "read_annotations"]


#: Formats that carry class names only: their readers need categories.
NAME_ONLY_FORMATS: frozenset[str] = frozenset({"label-studio", "cvat"})

#: Folder in an ovpanoptic output folder that holds the exporters' category tables.
_OWN_TABLES = ".ovpanoptic"

#: The ``cvat`` exporter's folder in an ovpanoptic output folder (its ``folder`` option's default).
_OWN_CVAT_FOLDER = "cvat"


def _json_kind(path: Path) -> str | None:
    """The format of a JSON file by its content, or ``None``."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16).lstrip()
    except OSError:
        return None
    if head.startswith(b"["):
        return "label-studio"
    if head.startswith(b"{"):
        if path.name.startswith("cityscapes_panoptic"):
            return "cityscapes-panoptic"
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        if isinstance(data, dict) and isinstance(data.get("annotations"), list):
            return "coco-panoptic"
        if isinstance(data, dict) and ("data" in data or isinstance(data.get("tasks"), list)):
            return "label-studio"  # one task, or {"tasks": [...]}
    return None


def _is_cvat_xml(path: Path) -> bool:
    """Whether ``path`` is an XML file whose root element is CVAT's ``<annotations>``."""
    from xml.etree import ElementTree

    try:
        with path.open("rb") as handle:
            _, root = next(ElementTree.iterparse(handle, events=("start",)))
    except (OSError, ElementTree.ParseError, StopIteration):
        return False
    return root.tag == "annotations"


def cvat_file(folder: Path) -> Path | None:
    """The CVAT XML a folder stands for, or ``None`` when it holds none.

    ``annotations.xml`` (CVAT's name), else the one XML with CVAT's ``<annotations>`` root in the
    folder, else in its ``annotations/`` folder (Datumaro writes ``default.xml``, ``val.xml``, ...
    one per subset), else ``cvat/annotations.xml`` (the ``cvat`` exporter's folder in an
    ovpanoptic output folder).

    :raises EvaluationError: several CVAT XML files where one is looked for (they are named).
    """
    if (folder / "annotations.xml").is_file():
        return folder / "annotations.xml"
    for where in (folder, folder / "annotations", folder / _OWN_CVAT_FOLDER):
        found = sorted(x for x in where.glob("*.xml") if x.is_file() and _is_cvat_xml(x)) if where.is_dir() else []
        if len(found) > 1:
            raise EvaluationError(
                f"{where} holds {len(found)} CVAT XML files ({', '.join(x.name for x in found)}): pass the file to read"
            )
        if found:
            return found[0]
    return None


def detect_format(path: str | Path) -> str:
    """The annotation format of a file or folder (see the module docstring).

    :raises EvaluationError: the path does not exist or holds no known format (the formats are listed).
    """
    p = Path(path)
    if not p.exists():
        raise EvaluationError(f"{p} does not exist")
    kind: str | None = None
    if p.is_file():
        if p.suffix.lower() == ".xml":
            kind = "cvat"
        elif p.suffix.lower() == ".json":
            kind = _json_kind(p)
    else:
        # An ovpanoptic output folder may hold several exports: COCO panoptic first (ids, scores, crowd flags).
        if (p / "panoptic.json").is_file():
            kind = "coco-panoptic"
        elif cvat_file(p) is not None:
            kind = "cvat"
        elif any(p.glob("cityscapes_panoptic_*.json")):
            kind = "cityscapes-panoptic"
        elif p.name == "gtFine" or (p / "gtFine").is_dir() or next(p.rglob("*_gtFine_instanceIds.png"), None) is not None:
            kind = "cityscapes"
        elif (p / "label-studio.json").is_file():
            kind = "label-studio"
    if kind is None:
        raise EvaluationError(
            f"cannot tell the annotation format of {p}: give it with --gt-format/--pred-format, one of "
            f"{', '.join(ANNOTATION_FORMATS)}"
        )
    return kind


def _resolve_file(path: Path, fmt: str) -> Path:
    """The file a folder stands for, for the formats read from one file."""
    if not path.is_dir():
        return path
    names = {"coco-panoptic": "panoptic.json", "label-studio": "label-studio.json", "cvat": "annotations.xml"}
    if fmt == "cvat":
        return cvat_file(path) or path / names[fmt]
    if fmt == "cityscapes-panoptic":
        found = sorted(path.glob("cityscapes_panoptic_*.json"))
        if len(found) != 1:
            raise EvaluationError(f"{path} must hold one cityscapes_panoptic_*.json, found {len(found)}: pass the JSON file")
        return found[0]
    if fmt in names:
        return path / names[fmt]
    return path


def own_categories(path: str | Path) -> dict[int, CategoryInfo] | None:
    """The category table ovpanoptic wrote beside its own export ``path`` (``label-studio.json``:
    ``.ovpanoptic/label-studio.json.categories.json``), or above an export in a folder of its own
    (``cvat/annotations.xml``: ``.ovpanoptic/cvat.annotations.xml.categories.json``), or ``None``
    when there is none."""
    p = Path(path)
    beside = p.parent / _OWN_TABLES / f"{p.name}.categories.json"
    above = p.parent.parent / _OWN_TABLES / f"{p.parent.name}.{p.name}.categories.json"
    table = next((t for t in (beside, above) if t.is_file()), None)
    if table is None:
        return None
    try:
        return _categories_from_json(json.loads(table.read_text("utf-8")), table)
    except (OSError, ValueError):
        return None


def read_annotations(
    path: str | Path,
    fmt: str = "auto",
    *,
    categories: Sequence[CategoryInfo] | Mapping[int, CategoryInfo] | None = None,
    fallback: Sequence[CategoryInfo] | Mapping[int, CategoryInfo] | None = None,
    role: str = "ground-truth",
    use: str = "auto",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> PanopticAnnotations:
    """Read annotations of any supported format into the internal form.

    :param fmt: one of :data:`ANNOTATION_FORMATS`, or ``"auto"`` (:func:`detect_format`).
    :param categories: the classes of a name-only format (default: the table ovpanoptic wrote beside
        its own export, else ``fallback``); ignored by formats with a category table.
    :param fallback: the classes of a name-only format that has neither ``categories`` nor a table of
        its own (the other set's table, for an evaluation).
    :param role: whose set it is (``"ground-truth"``, ``"prediction"``): every reader's messages name it.
    :param use: for Label Studio exports: ``"auto"``, ``"annotations"`` or ``"predictions"``.
    :param max_pixels: an image whose file declares more pixels (width x height) is refused before
        anything of its size is decoded (``None`` or 0: no limit; ``eval --max-pixels``).
    :raises EvaluationError: an unknown format, a name-only format without categories, or what the
        format's reader raises.
    """
    p = Path(path)
    kind = detect_format(p) if fmt == "auto" else fmt
    if kind not in ANNOTATION_FORMATS:
        raise EvaluationError(f"unknown annotation format {kind!r}: use one of {', '.join(ANNOTATION_FORMATS)} or auto")
    file = _resolve_file(p, kind)
    if kind in NAME_ONLY_FORMATS:
        cats = categories if categories is not None else own_categories(file)
        if cats is None and kind == "label-studio":
            from .label_studio_reader import embedded_categories

            cats = embedded_categories(file, role)  # the table the label-studio exporter put in the tasks' meta
        if cats is None:
            cats = fallback
        if cats is None:
            raise EvaluationError(
                f"{file} ({kind}) names its classes but gives no ids or thing/stuff split: give the classes with "
                "--classes/--stuff or --vocabulary, or compare it with a set that has a category table (COCO or "
                "Cityscapes panoptic)"
            )
        if kind == "label-studio":
            from .label_studio_reader import read_label_studio

            return read_label_studio(file, cats, use=use, role=role, max_pixels=max_pixels).annotations
        from .cvat_reader import read_cvat

        return read_cvat(file, cats, role=role, max_pixels=max_pixels)
    if kind == "coco-panoptic":
        return read_coco_panoptic(file, role=role, max_pixels=max_pixels)
    if kind == "cityscapes-panoptic":
        from .cityscapes_reader import read_cityscapes_panoptic

        return read_cityscapes_panoptic(file, role=role, max_pixels=max_pixels)
    from .cityscapes_reader import read_cityscapes

    return read_cityscapes(file, role=role, max_pixels=max_pixels)
