"""The ``cvat`` writer: "CVAT for images 1.1" XML with one mask shape per segment.

The export is a folder of its own, ``OUTDIR/cvat/``, laid out as CVAT's own "CVAT for images 1.1"
export with images (CVAT's format page: ``taskname.zip/`` holding ``images/`` and ``annotations.xml``):

* ``OUTDIR/cvat/annotations.xml``: the file CVAT reads with *Upload annotations* -> "CVAT for images
  1.1" (task or job menu);
* ``OUTDIR/cvat/images/NAME``: each image under the name ``annotations.xml`` gives it (the
  ``image_name`` option; JPEG at quality :data:`JPEG_QUALITY` for ``.jpg``/``.jpeg``, else the
  format of the name's extension), as the pipeline saw it, so its size is the XML's.

That folder is what Datumaro's CVAT importer takes as it is (``datumaro.Dataset.import_from("OUTDIR/cvat",
"cvat")``: the XML and the images it names under ``images/``, no other XML beside it; the output
folder itself is no CVAT dataset, since other exporters' files such as ``label-studio.xml`` lie
there), and, zipped (``cd OUTDIR/cvat && zip -r ../cvat.zip .``), what CVAT's *Import dataset*
takes. ``images = false`` writes the XML alone (to upload onto a task that has the images).
The folder's and the XML's names are the ``folder`` and ``xml_name`` options.

The XML follows CVAT's own writer (``cvat/apps/dataset_manager/formats/cvat.py``) and its format
page ("CVAT for images 1.1"):

* ``<meta><task>`` with ``<labels>``: per class its ``<name>``, ``<color>`` (``#rrggbb``, the class's
  display colour), ``<type>`` (``mask``; the ``label_type`` option) and one attribute, ``score``:
  ``input_type`` ``number`` with ``values`` 0, 100, 1 (min, max, step: CVAT's number attributes are
  integers), so the score is in **percent** (0.873 -> 87).
* ``<image id name width height>`` per image, in the batch's order: ``id`` is the frame number
  (0, 1, ...) and ``name`` the ``image_name`` option (``{stem}.jpg``). CVAT pairs the file's images
  with the task's by name (without extension too), then by frame number.
* ``<mask label source="auto" occluded="0" z_order rle left top width height>`` per segment with
  ``<attribute name="score">``. ``left``, ``top``, ``width``, ``height`` are the segment's tight box
  in pixels; ``rle`` is the run lengths over that box, row by row, starting with a background run
  (``0`` when the box's first pixel is the mask's). ``z_order`` is 1 for things and 0 for stuff, so
  a thing stays on top of a stuff mask that an annotator enlarges (segments never overlap here).

Thing and stuff are not written as a label attribute: CVAT attributes are per-shape values an
annotator can change, while thing/stuff belongs to the class; the folder's category table (below)
keeps it, and :func:`~.reader.read_cvat` takes it from the category list it is given.

What CVAT does on upload: the task must have labels of the same names (CVAT refuses an unknown
label); ``score`` is kept only when the task's label has a ``score`` attribute (CVAT drops
undeclared attributes silently); the shapes' ``source`` becomes ``file`` whatever the XML says.

Resumable like the COCO exporters: ``export()`` writes the image (``images/NAME``), the image's part
(``OUTDIR/.ovpanoptic/cvat.annotations.xml.parts/STEM.json``: the image's name and size and each
segment's box, RLE, class id and score) and the folder's category table
(``OUTDIR/.ovpanoptic/cvat.annotations.xml.categories.json``, which ``ovpanoptic eval`` reads), and
``finish(outdir, stems)`` assembles ``cvat/annotations.xml`` from the parts of ``stems`` in that
order. The bookkeeping stays outside ``OUTDIR/cvat/``, so the folder zips as it is. A folder whose
category table or ``annotations.xml`` holds another vocabulary's classes is refused.

Class names and image names must be XML 1.0 characters (no control characters, no U+FFFE/U+FFFF);
``&``, ``<``, ``>`` and quotes are escaped by the XML writer.
"""

from __future__ import annotations

import io
import json
import re
import string
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ...atomic import atomic_write_bytes, atomic_write_text
from ...components import ComponentContext
from ...errors import ExportError
from ...types import PanopticResult, Vocabulary
from ..parts import (
    categories_file,
    check_combined,
    check_plain_name,
    parts_dir,
    read_parts,
    vocabulary_categories,
    write_categories,
)

__all__ = ["CVAT_FOLDER", "CVAT_XML_VERSION", "IMAGES_FOLDER", "CvatConfig", "CvatExporter", "mask_rle"]

#: CVAT's format version that this exporter writes.
CVAT_XML_VERSION = "1.1"

#: The shape attribute that carries the segment's score, in percent.
SCORE_ATTRIBUTE = "score"

#: ``values`` of the ``score`` number attribute: min, max, step (CVAT's number attributes are integers).
SCORE_VALUES: tuple[int, int, int] = (0, 100, 1)

#: ``z_order`` of thing and stuff masks: things drawn above stuff.
THING_Z_ORDER = 1
STUFF_Z_ORDER = 0

#: The folder of the export in the output folder (the ``folder`` option's default).
CVAT_FOLDER = "cvat"

#: The images' folder inside the export's folder, where Datumaro's importer and CVAT look for them.
IMAGES_FOLDER = "images"

#: Pillow's format for each image extension the ``images`` option can write.
IMAGE_FORMATS: dict[str, str] = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}

#: JPEG quality of the images written under ``images/``.
JPEG_QUALITY = 95

#: Label types this exporter may declare: ``mask`` (annotators draw masks only) or ``any``.
LABEL_TYPES: tuple[str, ...] = ("mask", "any")

#: Characters XML 1.0 cannot hold (its ``Char`` production), which no escaping can write.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _bad_xml_char(text: str) -> str | None:
    """``'U+0001'``-style name of the first character XML 1.0 cannot hold, or ``None``."""
    found = _NOT_XML.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def _check_label_names(vocabulary: Vocabulary) -> None:
    """:raises ExportError: a class name CVAT's XML cannot hold, naming the class and the fix."""
    for category in vocabulary.categories:
        bad = _bad_xml_char(category.name)
        if bad is not None:
            raise ExportError(
                f"the cvat exporter cannot write the class name {category.name!r} (category {category.id}): it "
                f"contains the character {bad}, which an XML file cannot hold. Rename the class (in --classes or "
                "the vocabulary file) without control or non-characters"
            )


@dataclass(frozen=True)
class CvatConfig:
    """Options of the ``cvat`` exporter.

    :param folder: the export's folder in the output folder (``OUTDIR/cvat``): the XML and ``images/``.
    :param xml_name: name of the XML file in that folder.
    :param image_name: the ``name`` of each ``<image>``: a template with ``{stem}`` (the input
        image's file name without extension). CVAT matches the file's images to the task's by this
        name (and by the name without extension), so give the task's names when they differ, e.g.
        ``"{stem}.png"`` or ``"train/{stem}.jpg"``.
    :param label_type: the labels' ``<type>``: ``"mask"`` (annotators draw masks with them) or
        ``"any"`` (any shape, e.g. polygons too).
    :param images: write each image as ``images/NAME`` beside the XML (what Datumaro's importer and
        CVAT's *Import dataset* need); ``False``: the XML alone, for *Upload annotations* onto a task
        that has the images.
    """

    folder: str = CVAT_FOLDER
    xml_name: str = "annotations.xml"
    image_name: str = "{stem}.jpg"
    label_type: str = "mask"
    images: bool = True

    def __post_init__(self) -> None:
        check_plain_name("folder", self.folder)
        check_plain_name("xml_name", self.xml_name)
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(self.image_name) if name is not None}
        except ValueError as exc:
            raise ValueError(f"image_name {self.image_name!r} is not a valid template ({exc}); write e.g. '{{stem}}.jpg'") from None
        if fields != {"stem"}:
            raise ValueError(
                f"image_name {self.image_name!r} must contain the field {{stem}} and no other (fields: {sorted(fields)}); "
                "write e.g. '{stem}.jpg'"
            )
        example = PurePosixPath(self.image_name.format(stem="x"))
        if example.is_absolute() or ".." in example.parts or "\\" in self.image_name:
            raise ValueError(f"image_name {self.image_name!r} must be a relative name with '/' folders and no '..'")
        if self.label_type not in LABEL_TYPES:
            raise ValueError(f"label_type must be one of {', '.join(LABEL_TYPES)}, got {self.label_type!r}")
        if self.images and example.suffix.lower() not in IMAGE_FORMATS:
            raise ValueError(
                f"image_name {self.image_name!r} must end with an image extension the images/ folder can be written "
                f"in ({', '.join(IMAGE_FORMATS)}), or set images = false to write the XML alone"
            )

    @property
    def key(self) -> str:
        """The name of this export's bookkeeping in ``OUTDIR/.ovpanoptic/`` (``cvat.annotations.xml``)."""
        return f"{self.folder}.{self.xml_name}"


def mask_rle(crop: np.ndarray) -> list[int]:
    """CVAT's mask RLE of a binary crop (CVAT for images 1.1 ``<mask rle>``).

    :param crop: ``(h, w)`` bool, the mask inside its box (``left``, ``top``, ``width``, ``height``).
    :return: run lengths over the crop in row-major order, alternating background and mask and
        starting with background (a first run of 0 when the first pixel is the mask's); they sum to
        ``h * w``.
    """
    flat = np.asarray(crop, dtype=bool).ravel()
    if flat.size == 0:
        return []
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], starts, [flat.size])))
    if flat[0]:
        counts = np.concatenate(([0], counts))
    return [int(c) for c in counts]


def _score_percent(score: float) -> int:
    """A score in ``[0, 1]`` as the integer percent of the ``score`` attribute (0.873 -> 87)."""
    low, high, _ = SCORE_VALUES
    return min(high, max(low, round(100.0 * float(score))))


def _label_names_in_xml(path: Path) -> list[str] | None:
    """The label names of an existing XML's ``<meta>``, or ``None`` when there is no such file.

    :raises ExportError: the file is not readable XML.
    """
    if not path.exists():
        return None
    names: list[str] = []
    try:
        for _, element in ET.iterparse(path, events=("end",)):
            if element.tag == "label":
                name = element.find("name")
                names.append((name.text or "") if name is not None else "")
            elif element.tag == "meta":
                break
    except (OSError, ET.ParseError) as exc:
        raise ExportError(f"cannot update {path}: {exc}; remove it or choose another output folder with -o") from None
    return names


class CvatExporter:
    """The "CVAT for images 1.1" XML with one ``<mask>`` per segment (see the module docstring)."""

    def __init__(self, config: CvatConfig, context: ComponentContext | None = None) -> None:
        self.config = config

    def folder(self, outdir: Path) -> Path:
        """The export's folder, ``OUTDIR/cvat``: the XML and ``images/``."""
        return Path(outdir) / self.config.folder

    def image_name(self, stem: str) -> str:
        """The ``<image name>`` of an input stem (the ``image_name`` template).

        :raises ExportError: the name has a character XML cannot hold.
        """
        name = self.config.image_name.format(stem=stem)
        bad = _bad_xml_char(name)
        if bad is not None:
            raise ExportError(
                f"the cvat exporter cannot write the image name {name!r}: it contains the character {bad}, which an "
                "XML file cannot hold. Rename the image file"
            )
        return name

    def check_output(self, outdir: Path, vocabulary: Vocabulary) -> None:
        """Refuse class names XML cannot hold, and a folder whose category table or XML holds other classes."""
        _check_label_names(vocabulary)
        categories = vocabulary_categories(vocabulary)
        check_combined(categories_file(outdir, self.config.key), categories)
        path = self.folder(outdir) / self.config.xml_name
        old = _label_names_in_xml(path)
        if old is not None and set(old) != set(vocabulary.names):
            gone = [n for n in old if n not in vocabulary.names]
            new = [n for n in vocabulary.names if n not in old]
            raise ExportError(
                f"{path} holds results of another vocabulary (its labels {gone[:5] or old[:5]} differ from "
                f"{new[:5] or list(vocabulary.names[:5])} now): its labels would no longer match its results. Choose "
                "another output folder with -o, or remove the folder's results first"
            )

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        """Write the image (``images/NAME``, unless ``images = false``) and the image's part (name,
        size, each segment's box, RLE, class id, score in percent)."""
        _check_label_names(result.vocabulary)
        name = self.image_name(stem)
        outdir = Path(outdir)
        written = [self._write_image(image, outdir, name)] if self.config.images else []
        categories = write_categories(outdir, self.config.key, vocabulary_categories(result.vocabulary))
        h, w = result.image_size
        shapes = []
        for s in result.segments:
            x0, y0, x1, y1 = s.bbox_xyxy
            crop = result.panoptic_map[y0:y1, x0:x1] == s.id
            shapes.append(
                {
                    "category_id": s.category_id,
                    "z_order": THING_Z_ORDER if s.isthing else STUFF_Z_ORDER,
                    "score": _score_percent(s.score),
                    "left": x0,
                    "top": y0,
                    "width": x1 - x0,
                    "height": y1 - y0,
                    "rle": mask_rle(crop),
                }
            )
        part = {"name": name, "height": h, "width": w, "shapes": shapes}
        parts = parts_dir(outdir, self.config.key)
        parts.mkdir(parents=True, exist_ok=True)
        return [*written, atomic_write_text(parts / f"{stem}.json", json.dumps(part)), categories]

    def _write_image(self, image: np.ndarray, outdir: Path, name: str) -> Path:
        """``OUTDIR/cvat/images/NAME``: the image in the format of the name's extension."""
        from PIL import Image

        path = self.folder(outdir) / IMAGES_FOLDER / name
        path.parent.mkdir(parents=True, exist_ok=True)
        kind = IMAGE_FORMATS[path.suffix.lower()]
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, kind, **({"quality": JPEG_QUALITY} if kind == "JPEG" else {}))
        return atomic_write_bytes(path, buffer.getvalue())

    def finish(self, outdir: Path, stems: Sequence[str] | None = None) -> list[Path]:
        """Write ``OUTDIR/cvat/annotations.xml`` from the parts of ``stems``, in that order (``None``:
        all parts, by name).

        :raises ExportError: a part of ``stems`` is missing (run the batch again to redo it).
        """
        outdir = Path(outdir)
        categories_path = categories_file(outdir, self.config.key)
        if not categories_path.exists():
            return []
        categories = json.loads(categories_path.read_text("utf-8"))["categories"]
        read = read_parts(outdir, self.config.key, stems)
        root = ET.Element("annotations")
        ET.SubElement(root, "version").text = CVAT_XML_VERSION
        root.append(self._meta(categories, len(read)))
        names = {int(c["id"]): str(c["name"]) for c in categories}
        for frame, (_, part) in enumerate(read):
            image = ET.SubElement(
                root,
                "image",
                {"id": str(frame), "name": part["name"], "width": str(part["width"]), "height": str(part["height"])},
            )
            for shape in part["shapes"]:
                mask = ET.SubElement(
                    image,
                    "mask",
                    {
                        "label": names[int(shape["category_id"])],
                        "source": "auto",
                        "occluded": "0",
                        "rle": ", ".join(str(c) for c in shape["rle"]),
                        "left": str(shape["left"]),
                        "top": str(shape["top"]),
                        "width": str(shape["width"]),
                        "height": str(shape["height"]),
                        "z_order": str(shape["z_order"]),
                    },
                )
                ET.SubElement(mask, "attribute", {"name": SCORE_ATTRIBUTE}).text = str(shape["score"])
        ET.indent(root, space="  ")
        data = ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
        folder = self.folder(outdir)
        folder.mkdir(parents=True, exist_ok=True)
        return [atomic_write_bytes(folder / self.config.xml_name, data)]

    def _meta(self, categories: Sequence[dict[str, Any]], size: int) -> ET.Element:
        """``<meta><task>`` with the task's size and labels (name, colour, type, the score attribute)."""
        meta = ET.Element("meta")
        task = ET.SubElement(meta, "task")
        for key, value in (
            ("name", "ovpanoptic predictions"),
            ("size", str(size)),
            ("mode", "annotation"),
            ("overlap", "0"),
            ("start_frame", "0"),
            ("stop_frame", str(max(size - 1, 0))),
            ("z_order", "True"),
        ):
            ET.SubElement(task, key).text = value
        labels = ET.SubElement(task, "labels")
        for category in categories:
            label = ET.SubElement(labels, "label")
            ET.SubElement(label, "name").text = str(category["name"])
            ET.SubElement(label, "color").text = "#{:02x}{:02x}{:02x}".format(*category["color"])
            ET.SubElement(label, "type").text = self.config.label_type
            attribute = ET.SubElement(ET.SubElement(label, "attributes"), "attribute")
            for key, value in (
                ("name", SCORE_ATTRIBUTE),
                ("mutable", "False"),
                ("input_type", "number"),
                ("default_value", str(SCORE_VALUES[0])),
                ("values", "\n".join(str(v) for v in SCORE_VALUES)),
            ):
                ET.SubElement(attribute, key).text = value
        return meta

