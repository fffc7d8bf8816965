"""Which reader reads a path: format detection and one entry point for every annotation format.

Each format module gives its own detection rule (``detect(probe)``); :func:`detect_format` asks
them in the order of :data:`DETECTORS` (an ovpanoptic output folder holding several exports is read
as the first: COCO panoptic, which has ids, scores and crowd flags).

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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..constants import ANNOTATION_FORMATS, DEFAULT_MAX_PIXELS
from . import cityscapes, coco_instances, coco_panoptic, cvat, label_studio
from .annotations import PanopticAnnotations
from .common import CategoryInfo, EvaluationError, categories_from_json, xml_root
from .cvat import cvat_file
from .parts import PARTS_FOLDER
from .probe import Probe

__all__ = [
    "ANNOTATION_FORMATS",
    "DETECTORS",
    "NAME_ONLY_FORMATS",
    "cvat_file",
    "detect_format",
    "own_categories",
    "read_annotations",
    "refuse_foreign",
    "resolve_file",
]


#: Formats that carry class names only: their readers need categories.
NAME_ONLY_FORMATS: frozenset[str] = frozenset({label_studio.FORMAT, cvat.FORMAT})

#: ``(format, its detection rule)``, asked in this order.
DETECTORS: tuple[tuple[str, Callable[[Probe], bool]], ...] = (
    (coco_panoptic.FORMAT, coco_panoptic.detect),
    (cvat.FORMAT, cvat.detect),
    (cityscapes.PANOPTIC_FORMAT, cityscapes.detect_panoptic),
    (cityscapes.FORMAT, cityscapes.detect),
    (label_studio.FORMAT, label_studio.detect),
)


def refuse_foreign(path: Path, role: str = "ground-truth", probe: Probe | None = None) -> None:
    """Refuse a file that is something known but not an annotation export ``eval`` reads, saying what
    it is and what to pass instead: a Label Studio labelling config (an ``.xml`` rooted in ``<View>``),
    another XML than CVAT's (or an empty or not well-formed one), a COCO instances JSON or results list.

    :param probe: the path's probe when the caller has one (its JSON is parsed once).
    :raises EvaluationError: naming ``role``, the file, what it is and the fix.
    """
    probe = probe or Probe(path)
    if not probe.is_file:
        return
    where = f"{role} file {path}"
    if probe.suffix == ".xml":
        root = xml_root(path, role, "XML file")
        if root == "View":
            beside = path.with_suffix(".json")
            target = f"the tasks file beside it ({beside})" if beside.is_file() else "the tasks file (label-studio.json)"
            raise EvaluationError(
                f"{where} is a Label Studio labelling config, not an export: pass {target}, or Label Studio's JSON "
                "export of the project (Export -> JSON)"
            )
        if root != "annotations":
            raise EvaluationError(
                f"{where} is an XML file with the root element <{root}>, not a CVAT for images 1.1 export (root "
                "<annotations>): pass CVAT's annotations.xml (Export annotations -> CVAT for images 1.1)"
            )
    elif coco_instances.detect(probe):
        raise EvaluationError(
            f"{where} is COCO instances (things only), which is not an eval format (it has no stuff, so every stuff "
            "segment would count as a false positive): pass the coco-panoptic export of the same run (OUTDIR/panoptic.json "
            "or OUTDIR; segment with --format coco-panoptic), or compare instances with pycocotools' COCOeval"
        )


def detect_format(path: str | Path, role: str = "ground-truth") -> str:
    """The annotation format of a file or folder (see the module docstring).

    :param role: whose set it is, for messages.
    :raises EvaluationError: the path does not exist, is a known file that is no annotation export
        (:func:`refuse_foreign`), or holds no known format (the formats are listed).
    """
    p = Path(path)
    if not p.exists():
        raise EvaluationError(f"{role} path {p} does not exist")
    probe = Probe(p)
    refuse_foreign(p, role, probe)
    kind = next((name for name, rule in DETECTORS if rule(probe)), None)
    if kind is None:
        raise EvaluationError(
            f"cannot tell the annotation format of {role} {p}: give it with --gt-format/--pred-format, one of "
            f"{', '.join(ANNOTATION_FORMATS)}"
        )
    return kind


def resolve_file(path: Path, fmt: str, role: str = "ground-truth") -> Path:
    """The file a folder stands for, for the formats read from one file.

    :raises EvaluationError: the folder does not hold the file a format is read from (for ``label-studio``
        and ``coco-panoptic``: named, with what to pass instead).
    """
    if not path.is_dir():
        return path
    names = {
        coco_panoptic.FORMAT: coco_panoptic.JSON_NAME,
        label_studio.FORMAT: label_studio.JSON_NAME,
        cvat.FORMAT: cvat.CVAT_XML_NAME,
    }
    if fmt == cvat.FORMAT:
        return cvat_file(path) or path / names[fmt]
    if fmt == cityscapes.PANOPTIC_FORMAT:
        found = sorted(path.glob("cityscapes_panoptic_*.json"))
        if len(found) != 1:
            raise EvaluationError(f"{path} must hold one cityscapes_panoptic_*.json, found {len(found)}: pass the JSON file")
        return found[0]
    if fmt in names and fmt != cvat.FORMAT and not (path / names[fmt]).is_file():
        raise EvaluationError(
            f"{role} folder {path} holds no {names[fmt]} (the {fmt} export ovpanoptic writes): pass the {fmt} file itself, "
            "or the output folder of 'ovpanoptic segment ... --format " + fmt + "'"
        )
    if fmt in names:
        return path / names[fmt]
    return path


def own_categories(path: str | Path) -> dict[int, CategoryInfo] | None:
    """The category table ovpanoptic wrote beside its own export ``path`` (``label-studio.json``:
    ``.ovpanoptic/label-studio.json.categories.json``), or above an export in a folder of its own
    (``cvat/annotations.xml``: ``.ovpanoptic/cvat.annotations.xml.categories.json``), or ``None``
    when there is none."""
    p = Path(path)
    beside = p.parent / PARTS_FOLDER / f"{p.name}.categories.json"
    above = p.parent.parent / PARTS_FOLDER / f"{p.parent.name}.{p.name}.categories.json"
    table = next((t for t in (beside, above) if t.is_file()), None)
    if table is None:
        return None
    try:
        return categories_from_json(json.loads(table.read_text("utf-8")), table)
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
    kind = detect_format(p, role) if fmt == "auto" else fmt
    if kind not in ANNOTATION_FORMATS:
        raise EvaluationError(f"unknown annotation format {kind!r}: use one of {', '.join(ANNOTATION_FORMATS)} or auto")
    file = resolve_file(p, kind, role)
    if fmt != "auto" and file.suffix.lower() == ".xml":  # (auto: detect_format checked it; a JSON is not parsed twice)
        refuse_foreign(file, role)
    if kind in NAME_ONLY_FORMATS:
        cats = categories if categories is not None else own_categories(file)
        if cats is None and kind == label_studio.FORMAT:
            cats = label_studio.embedded_categories(file, role)  # the table the label-studio exporter put in the tasks' meta
        if cats is None:
            cats = fallback
        if cats is None:
            if kind == cvat.FORMAT:
                cvat.check_cvat(file, role=role, max_pixels=max_pixels)  # a broken file is said before the classes are asked for
            raise EvaluationError(
                f"{file} ({kind}) names its classes but gives no ids or thing/stuff split: give the classes with "
                "--classes/--stuff or --vocabulary, or compare it with a set that has a category table (COCO or "
                "Cityscapes panoptic)"
            )
        if kind == label_studio.FORMAT:
            return label_studio.read_label_studio(file, cats, use=use, role=role, max_pixels=max_pixels).annotations
        return cvat.read_cvat(file, cats, role=role, max_pixels=max_pixels)
    if kind == coco_panoptic.FORMAT:
        return coco_panoptic.read_coco_panoptic(file, role=role, max_pixels=max_pixels)
    if kind == cityscapes.PANOPTIC_FORMAT:
        return cityscapes.read_cityscapes_panoptic(file, role=role, max_pixels=max_pixels)
    return cityscapes.read_cityscapes(file, role=role, max_pixels=max_pixels)
