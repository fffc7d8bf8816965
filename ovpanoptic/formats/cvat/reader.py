"""Read a "CVAT for images 1.1" export into the internal :class:`~ovpanoptic.formats.annotations.PanopticAnnotations`.

The XML is parsed by Datumaro's CVAT importer (``datumaro.Dataset.import_from(path, "cvat")``, an
optional dependency: ``pip install datumaro`` or ``pip install 'ovpanoptic[labelling]'``), and its
shapes become one panoptic id map per image:

* ``<mask>`` shapes (CVAT's RLE over the shape's box, decoded by Datumaro), ``<polygon>`` and
  ``<box>`` shapes (rasterised with Datumaro's :func:`datumaro.util.mask_tools.rles_to_mask`, i.e.
  pycocotools' polygon fill) cover pixels; polylines, points and tags cover none and are skipped.
* a thing class gets one segment per shape; the shapes of one stuff class in one image are merged
  into one segment.
* overlaps: shapes are painted in ascending ``z_order`` and, within one ``z_order``, in file order,
  each over the pixels painted before it, so the shape with the higher ``z_order`` wins and, at
  equal ``z_order``, the later shape (CVAT draws the same way). A thing shape left without a pixel
  is no segment.

Datumaro's importer insists that every image's file exists (``images/NAME`` beside the XML), which
an annotations-only export lacks; the reader therefore hands it the XML in a temporary folder with
empty stand-ins of the images (their sizes come from the XML, so they are never opened). It also
accepts only task and project exports (``<meta><task>`` or ``<project>``): a job's export
(``<meta><job>``) is handed over with that element renamed ``<task>``.

Before Datumaro reads anything, the XML is scanned once, element by element, with defusedxml:
entity declarations (``<!ENTITY ...>``, which CVAT never writes and which can expand into gigabytes)
are refused with a message; an ``<image>`` declaring more than ``max_pixels`` pixels, and a ``<mask>``
whose box does not lie inside its image, are refused before any pixel is decoded.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt

from ...constants import DEFAULT_MAX_PIXELS
from ...errors import MissingDependencyError
from ..annotations import AnnotatedImage, PanopticAnnotations, categories_by_name, image_name, paint_segments
from ..common import CategoryInfo, EvaluationError, category_key, check_annotation_pixels, normalize_categories, xml_error
from .writer import CVAT_FOLDER

__all__ = ["CVAT_XML_NAME", "check_cvat", "cvat_file", "is_cvat_xml", "read_cvat"]

log = logging.getLogger(__name__)

#: The file a CVAT task export holds its annotations in.
CVAT_XML_NAME = "annotations.xml"


@dataclass(frozen=True)
class _Shape:
    """One area shape of an image: its class, paint order and the Datumaro annotation."""

    category: CategoryInfo
    z_order: int
    position: int
    is_mask: bool
    annotation: Any


@dataclass(frozen=True)
class _Image:
    height: int
    width: int
    shapes: tuple[_Shape, ...]


def _import_datumaro() -> tuple[Any, Any]:
    """``(datumaro, datumaro.util.mask_tools)``.

    :raises MissingDependencyError: Datumaro (or its pycocotools) is not installed.
    """
    try:
        import datumaro
        from datumaro.util import mask_tools
    except ImportError as exc:
        raise MissingDependencyError(
            f"reading CVAT exports needs Datumaro ({exc}): pip install datumaro, or pip install 'ovpanoptic[labelling]'"
        ) from None
    return datumaro, mask_tools


def is_cvat_xml(path: Path) -> bool:
    """Whether ``path`` is an XML file whose root element is CVAT's ``<annotations>``."""
    try:
        with path.open("rb") as handle:
            _, root = next(ET.iterparse(handle, events=("start",)))
    except (OSError, ET.ParseError, StopIteration):
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
    for where in (folder, folder / "annotations", folder / CVAT_FOLDER):
        found = sorted(x for x in where.glob("*.xml") if x.is_file() and is_cvat_xml(x)) if where.is_dir() else []
        if len(found) > 1:
            raise EvaluationError(
                f"{where} holds {len(found)} CVAT XML files ({', '.join(x.name for x in found)}): pass the file to read"
            )
        if found:
            return found[0]
    return None


def _xml_path(path: str | Path) -> Path:
    """The XML of a CVAT export given as the folder or the file; a folder stands for its
    ``annotations.xml``, else its one CVAT XML (Datumaro's ``default.xml``, ``val.xml``, ...),
    beside, in ``annotations/`` or in ``cvat/`` (:func:`cvat_file`)."""
    path = Path(path)
    if path.is_dir():
        xml = cvat_file(path)
        if xml is None:
            found = sorted(p.name for p in path.glob("*.xml"))
            hint = f" (it has {', '.join(found[:5])}, none with CVAT's <annotations> root)" if found else ""
            raise EvaluationError(
                f"CVAT export folder {path} has no {CVAT_XML_NAME} nor other CVAT XML (beside it, in annotations/ or in cvat/){hint}: "
                "pass the export's XML file"
            )
        return xml
    if not path.is_file():
        raise EvaluationError(f"CVAT export {path} does not exist: pass the export folder or its {CVAT_XML_NAME}")
    return path


def _scan(
    xml: Path, source: str, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[dict[str, str], set[str], bool, set[str]]:
    """``{frame id: name}`` of the file's ``<image>`` elements, in file order, the tags of
    ``<meta>``'s children (``task``, ``job`` or ``project``), and whether images name a ``subset``
    (a project's export), and the labels its shapes use. Each ``<mask>``'s run lengths must cover
    its box exactly, and its box must lie inside its image.

    :param source: the file as messages name it (``"prediction CVAT export a.xml"``).
    :raises EvaluationError: unreadable XML, an entity declaration, an image without id or name, a
        frame id given twice, an image declaring more than ``max_pixels`` pixels, a mask whose RLE
        does not sum to its ``width x height`` or whose box leaves its image.
    """
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import iterparse

    names: dict[str, str] = {}
    meta: set[str] = set()
    subsets = False
    used: set[str] = set()
    image: tuple[str, int, int] | None = None  # (name, width, height) of the <image> being read
    try:
        for event, element in iterparse(xml, events=("start", "end"), forbid_dtd=False, forbid_entities=True, forbid_external=True):
            if event == "start":
                if element.tag == "image":
                    image = _image_size(element, source, max_pixels)
                continue
            if element.tag in _SHAPE_TAGS and element.get("label") is not None:
                used.add(str(element.get("label")))
            if element.tag == "mask":
                _check_mask_rle(source, element, image)
            elif element.tag == "image":
                image = None
                frame, name = element.get("id"), element.get("name")
                if frame is None or not name:
                    raise EvaluationError(f"{source}: an <image> element has no id or name; CVAT writes both")
                if frame in names:
                    raise EvaluationError(f"{source}: two <image> elements have the id {frame}; CVAT numbers images uniquely")
                names[frame] = name
                subsets = subsets or element.get("subset") is not None
            elif element.tag == "meta":
                meta = {child.tag for child in element}
            if element.tag in ("image", "track", "meta"):
                element.clear()
    except DefusedXmlException as exc:
        what = getattr(exc, "name", None)
        raise EvaluationError(
            f"{source} declares an XML entity{f' ({what!r})' if what else ''} or an external reference; CVAT never "
            "writes them, and ovpanoptic does not expand them (an entity can expand into gigabytes): replace each "
            "&NAME; by its text and remove the <!DOCTYPE ...> block, or export the annotations from CVAT again"
        ) from None
    except ET.ParseError as exc:
        raise xml_error(source, exc) from None
    except OSError as exc:
        raise EvaluationError(f"cannot open {source} ({exc.strerror or exc}): check that it is readable") from None
    return names, meta, subsets, used


def _image_size(element: ET.Element, source: str, max_pixels: int | None) -> tuple[str, int, int] | None:
    """``(name, width, height)`` of an ``<image>`` (``None`` when it gives no numeric size: Datumaro
    says so), refused over ``max_pixels``."""
    name = element.get("name") or element.get("id") or "?"
    try:
        width, height = int(element.get("width", "")), int(element.get("height", ""))
    except ValueError:
        return None
    if width <= 0 or height <= 0:
        raise EvaluationError(f"{source}: image {name!r} declares an empty size {width} x {height}")
    check_annotation_pixels(width, height, max_pixels, f"{source}: image {name!r}")
    return name, width, height


#: CVAT for images 1.1 shape elements (of an ``<image>``).
_SHAPE_TAGS = frozenset({"mask", "polygon", "box", "polyline", "points", "ellipse", "cuboid", "skeleton", "tag"})


def _check_mask_rle(source: str, element: ET.Element, image: tuple[str, int, int] | None) -> None:
    """A ``<mask>``'s box (``left``, ``top``, ``width``, ``height``) must lie inside its image
    (``(name, width, height)``, when known) and its ``rle`` (comma-separated run lengths over the
    box, CVAT for images 1.1) must sum to ``width x height``."""
    label = element.get("label")
    try:
        width, height = int(element.get("width", "")), int(element.get("height", ""))
        left, top = int(float(element.get("left", "0"))), int(float(element.get("top", "0")))
    except ValueError:
        raise EvaluationError(f"{source}: a {label!r} mask has a non-numeric left, top, width or height") from None
    if image is not None and (left < 0 or top < 0 or left + width > image[1] or top + height > image[2]):
        raise EvaluationError(
            f"{source}: image {image[0]!r}: a {label!r} mask's box ({width} x {height} at {left}, {top}) does not lie "
            f"inside the {image[1]} x {image[2]} image: the mask is damaged; export it again from CVAT"
        )
    try:
        runs = [int(v) for v in (element.get("rle") or "").split(",") if v.strip()]
    except ValueError:
        raise EvaluationError(f"{source}: a {label!r} mask has a non-numeric rle") from None
    if width <= 0 or height <= 0 or any(r < 0 for r in runs) or sum(runs) != width * height:
        raise EvaluationError(
            f"{source}: a {label!r} mask's rle covers {sum(runs)} pixels, not its box's {width} x {height} = "
            f"{width * height}: the mask is damaged; export it again from CVAT"
        )


def _copy_job_as_task(xml: Path, target: Path) -> None:
    """Copy a job export with its ``<meta><job>`` renamed ``<meta><task>``.

    CVAT writes ``<meta><job>`` when a job (not its task) is exported; Datumaro's importer accepts
    ``<task>`` and ``<project>`` only, and reads nothing else of that element than its labels.
    """
    with xml.open("rb") as source, target.open("wb") as copy:
        head = b""
        while b"</meta>" not in head:
            chunk = source.read(1 << 20)
            if not chunk:
                break
            head += chunk
        end = head.find(b"</meta>")
        meta = head[:end].replace(b"<job>", b"<task>", 1).replace(b"</job>", b"</task>", 1)
        copy.write(meta + head[end:])
        shutil.copyfileobj(source, copy)


def _copy_without_subsets(xml: Path, target: Path) -> None:
    """Copy a project export with its images' ``subset`` attributes removed: Datumaro's importer
    finds no image of a named subset in one XML (it reads the subsets of a project as separate
    files), and images pair by name, whatever their subset."""
    tree = ET.parse(xml)
    for element in tree.getroot().iter("image"):
        element.attrib.pop("subset", None)
    tree.write(target, encoding="utf-8", xml_declaration=True)


def _stage(xml: Path, names: Sequence[str], job: bool, folder: Path, subsets: bool = False) -> None:
    """Lay out ``folder`` as Datumaro's CVAT importer wants it: the XML (a job's as a task's, see
    :func:`_copy_job_as_task`; a project's without subsets, see :func:`_copy_without_subsets`) and
    ``images/NAME`` stand-ins."""
    target = folder / CVAT_XML_NAME
    if subsets:
        _copy_without_subsets(xml, target)
        if job:
            job_copy = folder / "job.xml"
            target.rename(job_copy)
            _copy_job_as_task(job_copy, target)
            job_copy.unlink()
    elif job:
        _copy_job_as_task(xml, target)
    else:
        try:
            os.symlink(xml.resolve(), target)
        except OSError:  # no symlinks (Windows without the privilege): copy
            shutil.copyfile(xml, target)
    images = (folder / "images").resolve()
    for name in names:
        relative = PurePosixPath(name)
        stand_in = (images / relative).resolve()
        if relative.is_absolute() or not stand_in.is_relative_to(images):
            raise EvaluationError(f"{xml}: the image name {name!r} is not a relative file name; CVAT image names are")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.touch()


def _checked_scan(
    path: str | Path, role: str, max_pixels: int | None
) -> tuple[Path, str, tuple[dict[str, str], set[str], bool, set[str]]]:
    """``(the XML, how messages name it, what :func:`_scan` found)``, refusing a file without CVAT's ``<meta>``."""
    xml = _xml_path(path)
    source = f"{role} CVAT export {xml}"
    found = _scan(xml, source, max_pixels)
    if not found[1] & {"task", "job", "project"}:
        raise EvaluationError(
            f"{source} has no <meta> with a <task>, <job> or <project> (where CVAT lists the labels): it is not a complete "
            "CVAT for images 1.1 export (an empty or hand-made <annotations> file?); export the annotations from CVAT "
            "again (Export annotations -> CVAT for images 1.1), or from ovpanoptic with --format cvat"
        )
    return xml, source, found


def check_cvat(path: str | Path, *, role: str = "ground-truth", max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Check a CVAT export's XML as :func:`read_cvat` does (well-formed, no entity, CVAT's ``<meta>``,
    sizes and mask boxes), without Datumaro and without categories: so that a broken file is
    reported before the classes are asked for.

    :raises EvaluationError: what :func:`read_cvat` raises for the file itself.
    """
    _checked_scan(path, role, max_pixels)


def read_cvat(
    path: str | Path,
    categories: Sequence[CategoryInfo] | Mapping[int, CategoryInfo],
    *,
    role: str = "ground-truth",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> PanopticAnnotations:
    """Read a "CVAT for images 1.1" export (CVAT's *Export annotations*, or the ``cvat`` exporter's folder).

    Format: CVAT's "CVAT for images 1.1" XML (``<image>`` elements with ``<mask>``, ``<polygon>``,
    ``<box>`` shapes; masks as run lengths over their box), parsed by Datumaro's ``cvat`` importer.
    Shapes become segments as the module docstring says (things: one segment per shape; stuff: one
    per class and image; overlaps: higher ``z_order`` on top, then later shapes on top).

    :param path: the export folder (with ``annotations.xml``) or the XML file itself; a task's,
        a job's or a project's export.
    :param categories: the classes (:class:`~ovpanoptic.formats.common.CategoryInfo`: id, name, thing/stuff) that CVAT's
        labels are matched to by name (case, width and spacing ignored, see
        :func:`~ovpanoptic.formats.annotations.categories_by_name`); CVAT's XML has no ids and no thing/stuff flag.
    :param role: whose set it is (``"ground-truth"``, ``"prediction"``), for messages.
    :param max_pixels: an ``<image>`` declaring more pixels is refused before anything is decoded
        (``None`` or 0: no limit).
    :return: the annotations, images named by :func:`~ovpanoptic.formats.annotations.image_name` of their CVAT names,
        in file order; each read gives an ``(H, W)`` int64 id map (0 = void) and ``segments_info``
        with ``id``, ``category_id``, ``iscrowd`` (0) and ``area`` (pixels).
    :raises MissingDependencyError: Datumaro is not installed.
    :raises EvaluationError: a missing or unreadable file (Datumaro's message included), a label used
        by a shape that is not among ``categories``, two images of one name, an image name that
        is not a relative file name, an entity declaration, or an image over ``max_pixels``.
    """
    datumaro, mask_tools = _import_datumaro()
    table = normalize_categories(categories)
    if not table:
        raise EvaluationError("read_cvat needs the categories that CVAT's labels name (pass --classes or --vocabulary)")
    by_name = categories_by_name(table)
    xml, source, (frames, meta, subsets, used) = _checked_scan(path, role, max_pixels)
    strangers = sorted(label for label in used if category_key(label) not in by_name)
    if strangers:
        raise _unknown_labels(xml, map(repr, strangers), table)
    job = "job" in meta and not meta & {"task", "project"}
    with tempfile.TemporaryDirectory(prefix="ovpanoptic-cvat-") as folder:
        _stage(xml, list(frames.values()), job, Path(folder), subsets)
        try:
            dataset = datumaro.Dataset.import_from(folder, "cvat")
            items = list(dataset)
            labels = dataset.categories()[datumaro.AnnotationType.label]
        except Exception as exc:  # Datumaro's own errors (the cause chained), or its asserts on bad shapes
            cause = exc.__cause__ or exc
            raise EvaluationError(f"Datumaro cannot read {xml} as CVAT for images 1.1: {cause}") from exc
    kinds = datumaro.AnnotationType
    area_types = {kinds.mask, kinds.polygon, kinds.bbox}
    images: dict[str, _Image] = {}
    unknown: set[str] = set()
    skipped = 0
    for item in items:
        frame = str(item.attributes.get("frame"))
        file_name = frames.get(frame) or item.id
        name = image_name(file_name)
        if name in images:
            raise EvaluationError(
                f"{xml}: two images have the name {name!r}; images are paired by file name, so names must be unique"
            )
        height, width = item.media.size
        shapes = []
        for position, annotation in enumerate(item.annotations):
            if annotation.type not in area_types:
                if annotation.type != kinds.label:  # a tag is no shape
                    skipped += 1
                continue
            label = None if annotation.label is None else labels[annotation.label].name
            category = None if label is None else by_name.get(category_key(label))
            if category is None:
                unknown.add(repr(label) if label is not None else "(a shape whose label is not in the file's <meta>)")
                continue
            shapes.append(_Shape(category, int(annotation.z_order), position, annotation.type == kinds.mask, annotation))
        images[name] = _Image(int(height), int(width), tuple(shapes))
    if unknown:
        raise _unknown_labels(xml, sorted(unknown), table)
    if skipped:
        log.warning("%s: %d polyline/points shape(s) cover no area and are ignored", xml, skipped)
    def read(name: str) -> AnnotatedImage:
        return _rasterise(name, images[name], mask_tools)

    def sizes(name: str) -> tuple[int, int]:
        return images[name].width, images[name].height

    order = [image_name(file_name) for file_name in frames.values()]
    return PanopticAnnotations(str(xml), "cvat", table, tuple(n for n in order if n in images), read, sizes=sizes)


def _unknown_labels(xml: Path, labels: Iterable[str], table: Mapping[int, CategoryInfo]) -> EvaluationError:
    """The error for shapes whose labels are not among the categories (``labels`` as shown)."""
    known = ", ".join(repr(c.name) for c in list(table.values())[:10])
    return EvaluationError(
        f"{xml}: the CVAT label(s) {', '.join(labels)} are not among the categories ({known}"
        f"{', ...' if len(table) > 10 else ''}): pass the class list the labels come from (--classes or "
        "--vocabulary), or compare with a set that has a category table (COCO panoptic)"
    )


def _shape_mask(shape: _Shape, height: int, width: int, mask_tools: Any, name: str) -> npt.NDArray[np.bool_]:
    """The ``(height, width)`` bool pixels of one shape."""
    annotation = shape.annotation
    try:
        if shape.is_mask:  # a Mask: Datumaro decodes CVAT's RLE onto the image canvas
            pixels = np.asarray(annotation.image, dtype=bool)
        else:  # a Polygon or a Bbox: fill its outline
            pixels = np.asarray(mask_tools.rles_to_mask([list(annotation.as_polygon())], width, height), dtype=bool)
    except ValueError as exc:  # a mask box beyond the image: Datumaro cannot place it
        raise EvaluationError(f"{name}: a {shape.category.name!r} shape does not fit the {width}x{height} image ({exc})") from None
    if pixels.shape != (height, width):
        raise EvaluationError(f"{name}: a {shape.category.name!r} shape is {pixels.shape[1]}x{pixels.shape[0]}, not the image's {width}x{height}")
    return pixels


def _rasterise(name: str, image: _Image, mask_tools: Any) -> AnnotatedImage:
    """Paint the shapes (ascending ``z_order``, then file order) into one id map."""
    shapes = sorted(image.shapes, key=lambda s: (s.z_order, s.position))
    layers = ((s.category, _shape_mask(s, image.height, image.width, mask_tools, name)) for s in shapes)
    return paint_segments(name, image.height, image.width, layers)
