"""The ``label-studio`` writer: pre-annotations Label Studio imports as they are.

Files, in the output folder:

``label-studio.json``
    a list of Label Studio tasks, one per image, each ``{"data": {"image": URL}, "predictions":
    [prediction]}``. A prediction is ``{"model_version", "score", "result": [region, ...]}`` with one
    ``brushlabels`` region per segment: ``{"id", "from_name", "to_name", "type": "brushlabels",
    "original_width", "original_height", "image_rotation": 0, "score", "value": {"format": "rle",
    "rle": [...], "brushlabels": [class name]}}``. The RLE is the Label Studio SDK's own brush
    encoding (``label_studio_sdk.converter.brush.mask2rle``: the mask as RGBA bytes, 255 inside,
    row-major ``(H, W, 4)``). With ``polygons = true`` each segment also gets ``polygonlabels``
    regions, one per outer contour (OpenCV's ``findContours``), points in percent of the image's
    width and height as Label Studio stores them. The prediction's ``score`` is the mean of its
    regions' scores.
``label-studio.xml``
    the labelling config the tasks are made for: ``<View><Image name=TO value="$image"/>
    <BrushLabels name=FROM toName=TO>`` with one ``<Label value=NAME background="#rrggbb"/>`` per
    vocabulary class (and a ``<PolygonLabels>`` with the same labels when ``polygons = true``).
    Create the project with it (Settings -> Labeling Interface -> Code) before importing the tasks.

Image references: ``image_url`` is a template with ``{stem}`` (the output name of the image) and
``{file_name}`` (``stem + image_ext``), both percent-encoded as in any URL (``urllib.parse.quote``, as
Label Studio's own local-files storage writes them: ``a b&c.jpg`` -> ``a%20b%26c.jpg``; the reader
decodes them, :mod:`.urls`); the default ``/data/local-files/?d={file_name}`` serves the
images from Label Studio's local-files storage (``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true``,
``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` = the image folder). Any URL Label Studio can open works
(``https://bucket.example/{file_name}``, ``s3://bucket/{file_name}`` with cloud storage).

Source of the format: Label Studio's docs, "Import pre-annotated data" (tasks with predictions) and
the ``BrushLabels`` / ``PolygonLabels`` tags; checked against a real Label Studio server in
``tests/test_label_studio_server.py``. Class names are XML-escaped in the config (``&``, ``<``,
``"``); a name with characters XML cannot hold (control characters) is refused.

Like ``coco-panoptic``, ``export()`` writes each image's part under ``OUTDIR/.ovpanoptic/`` and
``finish()`` assembles ``label-studio.json`` from the parts of the batch, so a batch stays linear
and a resumed batch keeps its earlier images.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from glob import escape as glob_escape

import numpy as np

from ... import __version__
from ...atomic import atomic_write_text
from ...components import ComponentContext
from ...errors import MissingDependencyError, require
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
from .config import check_label_name, labelling_config
from .urls import url_quote

__all__ = [
    "DEFAULT_MAX_FILE_MB",
    "LABEL_STUDIO_IMPORT_LIMIT_BYTES",
    "META_KEY",
    "LabelStudioConfig",
    "LabelStudioExporter",
    "prediction_score",
    "split_tasks",
    "task_files",
]

#: Value a brush mask has inside its region (all four RGBA channels).
_BRUSH_ON = 255

#: Names Label Studio gives meaning in tag attributes: ``$name`` reads a task field.
_TAG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

#: Label Studio refuses an import of 250 MB or more (``DATA_UPLOAD_MAX_MEMORY_SIZE``, 250 MiB).
LABEL_STUDIO_IMPORT_LIMIT_BYTES: int = 250 * 1024 * 1024

#: Default largest tasks file, in MB: well under :data:`LABEL_STUDIO_IMPORT_LIMIT_BYTES`.
DEFAULT_MAX_FILE_MB: float = 200.0

#: Key of ovpanoptic's own fields in a task's ``meta`` (Label Studio keeps ``meta`` and exports it).
META_KEY = "ovpanoptic"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelStudioConfig:
    """Options of the ``label-studio`` exporter.

    :param image_url: the task's image reference: a template with ``{stem}`` and ``{file_name}``.
    :param image_ext: the extension of ``{file_name}`` (the images' own, e.g. ``.png``).
    :param model_version: the predictions' ``model_version`` (Label Studio shows and filters by it).
    :param from_name: the ``BrushLabels`` tag's name in the labelling config.
    :param to_name: the ``Image`` tag's name.
    :param data_key: the task data field holding the image URL (``$image`` in the config).
    :param polygons: also write ``polygonlabels`` regions from the masks' outer contours.
    :param polygon_name: the ``PolygonLabels`` tag's name.
    :param json_name: the tasks file; the config is written beside it with the extension ``.xml``.
    :param max_file_mb: the largest tasks file, in MB (10**6 bytes): a batch whose tasks take more is
        written as ``STEM.1.json``, ``STEM.2.json``, ... each under it (with a warning), since Label
        Studio refuses imports of 250 MB or more (``DATA_UPLOAD_MAX_MEMORY_SIZE``).
    """

    image_url: str = "/data/local-files/?d={file_name}"
    image_ext: str = ".jpg"
    model_version: str = f"ovpanoptic-{__version__}"
    from_name: str = "label"
    to_name: str = "image"
    data_key: str = "image"
    polygons: bool = False
    polygon_name: str = "polygon"
    json_name: str = "label-studio.json"
    max_file_mb: float = DEFAULT_MAX_FILE_MB

    def __post_init__(self) -> None:
        if not self.max_file_mb > 0:
            raise ValueError(f"max_file_mb must be a positive number of megabytes, got {self.max_file_mb}")
        check_plain_name("json_name", self.json_name)
        if not self.json_name.endswith(".json"):
            raise ValueError(f"json_name must end with .json, got {self.json_name!r}")
        try:
            self.image_url.format(stem="x", file_name="x.jpg")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"image_url {self.image_url!r} is not a valid template ({exc}): use {{stem}} and {{file_name}}, "
                "e.g. '/data/local-files/?d=photos/{file_name}'"
            ) from None
        if self.image_ext and not self.image_ext.startswith("."):
            raise ValueError(f"image_ext must start with '.', e.g. '.png', got {self.image_ext!r}")
        for option in ("from_name", "to_name", "data_key", "polygon_name"):
            if not _TAG_NAME.match(getattr(self, option)):
                raise ValueError(f"{option} {getattr(self, option)!r} must be a plain tag name (letters, digits, '_', '-', '.')")
        if len({self.from_name, self.to_name, self.polygon_name, "point", "box"}) != 5:
            raise ValueError("from_name, to_name and polygon_name must differ from each other and from 'point' and 'box'")


class LabelStudioExporter:
    """Label Studio tasks with ``brushlabels`` predictions, and their labelling config."""

    def __init__(self, config: LabelStudioConfig, context: ComponentContext | None = None) -> None:
        require("label_studio_sdk", "the label-studio exporter", "pip install label-studio-sdk (or pip install 'ovpanoptic[labelling]')")
        if config.polygons:
            require("cv2", "the label-studio exporter's polygons", "pip install opencv-python-headless")
        self.config = config

    @property
    def config_name(self) -> str:
        """File name of the labelling config written beside the tasks."""
        return self.config.json_name[: -len(".json")] + ".xml"

    def labelling_config(self, vocabulary: Vocabulary, *, interactive: bool = False) -> str:
        """This exporter's labelling config for ``vocabulary`` (see :func:`labelling_config`)."""
        c = self.config
        return labelling_config(
            vocabulary, from_name=c.from_name, to_name=c.to_name, data_key=c.data_key, polygons=c.polygons,
            polygon_name=c.polygon_name, interactive=interactive,
        )

    def check_output(self, outdir: Path, vocabulary: Vocabulary) -> None:
        """Refuse class names the config cannot hold and a folder holding another vocabulary's tasks."""
        for category in vocabulary.categories:
            check_label_name(category.name)
        check_combined(categories_file(outdir, self.config.json_name), vocabulary_categories(vocabulary))

    def brush_region(
        self, mask: np.ndarray, label: str, score: float, region_id: str, *, from_name: str | None = None, to_name: str | None = None
    ) -> dict[str, Any]:
        """One ``brushlabels`` region of an ``(H, W)`` bool mask, RLE-encoded by the Label Studio SDK.

        :raises MissingDependencyError: label-studio-sdk is missing.
        """
        try:
            from label_studio_sdk.converter.brush import mask2rle
        except ImportError as exc:
            raise MissingDependencyError(f"the label-studio exporter needs label-studio-sdk ({exc}): pip install label-studio-sdk") from None
        h, w = mask.shape
        brush = np.where(mask, _BRUSH_ON, 0).astype(np.uint8)
        return {
            "id": region_id,
            "from_name": from_name or self.config.from_name,
            "to_name": to_name or self.config.to_name,
            "type": "brushlabels",
            "original_width": w,
            "original_height": h,
            "image_rotation": 0,
            "score": round(float(score), 6),
            "value": {"format": "rle", "rle": [int(v) for v in mask2rle(brush)], "brushlabels": [label]},
        }

    def regions(self, result: PanopticResult, *, from_name: str | None = None, to_name: str | None = None) -> list[dict[str, Any]]:
        """The Label Studio result regions of a panoptic result: one ``brushlabels`` region per
        segment (and ``polygonlabels`` regions when configured), in segment order.

        :param from_name: the BrushLabels tag's name (default: the config's).
        :param to_name: the Image tag's name (default: the config's).
        :raises MissingDependencyError: the Label Studio SDK (or OpenCV, for polygons) is missing.
        """
        h, w = result.image_size
        names = {c.id: c.name for c in result.vocabulary.categories}
        c = self.config
        out: list[dict[str, Any]] = []
        for segment in result.segments:
            mask = result.panoptic_map == segment.id
            name = names[segment.category_id]
            brush = self.brush_region(mask, name, segment.score, _region_id(segment.id), from_name=from_name, to_name=to_name)
            out.append(brush)
            if c.polygons:
                for k, points in enumerate(_outer_contours(mask)):
                    out.append(
                        {
                            **{key: brush[key] for key in ("to_name", "original_width", "original_height", "image_rotation", "score")},
                            "id": _region_id(segment.id, k + 1),
                            "from_name": c.polygon_name,
                            "type": "polygonlabels",
                            "value": {
                                "points": [[round(100.0 * x / w, 4), round(100.0 * y / h, 4)] for x, y in points],
                                "polygonlabels": [name],
                                "closed": True,
                            },
                        }
                    )
        return out

    def prediction(self, result: PanopticResult, *, from_name: str | None = None, to_name: str | None = None) -> dict[str, Any]:
        """One Label Studio prediction: ``{"model_version", "score", "result"}``; the score is the
        mean of the segments' scores (0 when there is none)."""
        return {
            "model_version": self.config.model_version,
            "score": prediction_score([s.score for s in result.segments]),
            "result": self.regions(result, from_name=from_name, to_name=to_name),
        }

    def image_url(self, stem: str) -> str:
        """The task's image reference for an output name; the name is percent-encoded (a URL, as Label
        Studio's local-files storage writes it: ``a b&c`` -> ``a%20b%26c``, see :mod:`.urls`)."""
        return self.config.image_url.format(stem=url_quote(stem), file_name=url_quote(f"{stem}{self.config.image_ext}"))

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        outdir = Path(outdir)
        for category in result.vocabulary.categories:
            check_label_name(category.name)
        categories = write_categories(outdir, self.config.json_name, vocabulary_categories(result.vocabulary))
        config_path = atomic_write_text(outdir / self.config_name, self.labelling_config(result.vocabulary))
        # The category table travels in the task's meta (Label Studio exports it), so `ovpanoptic eval`
        # knows the classes' ids and thing/stuff split from Label Studio's own export.
        task = {
            "data": {self.config.data_key: self.image_url(stem)},
            "meta": {META_KEY: {"categories": vocabulary_categories(result.vocabulary)}},
            "predictions": [self.prediction(result)],
        }
        parts = parts_dir(outdir, self.config.json_name)
        parts.mkdir(parents=True, exist_ok=True)
        part = atomic_write_text(parts / f"{stem}.json", json.dumps(task))
        return [part, categories, config_path]

    def finish(self, outdir: Path, stems: Sequence[str] | None = None) -> list[Path]:
        """Write the tasks file from the parts of ``stems``, in that order (all parts by name when
        ``None``); nothing when no image was exported. Tasks over ``max_file_mb`` are written as
        numbered files (``label-studio.1.json``, ...), each under the limit, with a warning."""
        outdir = Path(outdir)
        tasks = [task for _, task in read_parts(outdir, self.config.json_name, stems)]
        if not tasks:
            return []
        chunks = split_tasks(tasks, int(self.config.max_file_mb * 1_000_000))
        stem = self.config.json_name[: -len(".json")]
        for old in outdir.glob(f"{glob_escape(stem)}.*.json"):  # numbered files of an earlier, larger batch
            if old.name[len(stem) + 1 : -len(".json")].isdigit():
                old.unlink()
        if len(chunks) == 1:
            return [atomic_write_text(outdir / self.config.json_name, chunks[0])]
        (outdir / self.config.json_name).unlink(missing_ok=True)
        total = sum(len(c.encode()) for c in chunks)
        log.warning(
            "%s would be %.1f MB, over max_file_mb = %g (Label Studio refuses imports of 250 MB or more): written as %d files "
            "%s.1.json ... %s.%d.json; import each of them, or push the folder with 'ovpanoptic push label-studio'",
            self.config.json_name, total / 1e6, self.config.max_file_mb, len(chunks), stem, stem, len(chunks),
        )
        return [atomic_write_text(outdir / f"{stem}.{k}.json", text) for k, text in enumerate(chunks, 1)]


def prediction_score(scores: Sequence[float]) -> float:
    """A prediction's ``score``: the mean of its regions' scores, rounded to 6 decimals (0 when there is none)."""
    return round(float(np.mean(scores)), 6) if len(scores) else 0.0


def split_tasks(tasks: Sequence[dict[str, Any]], max_bytes: int) -> list[str]:
    """Tasks as JSON lists of at most ``max_bytes`` bytes each (UTF-8), in order; a task larger
    than ``max_bytes`` on its own is a list of its own."""
    chunks: list[str] = []
    current: list[str] = []
    size = 2  # "[" and "]"
    for task in tasks:
        text = json.dumps(task)
        n = len(text.encode()) + 2  # ",\n"
        if current and size + n > max_bytes:
            chunks.append("[\n" + ",\n".join(current) + "\n]")
            current, size = [], 2
        current.append(text)
        size += n
    if current:
        chunks.append("[\n" + ",\n".join(current) + "\n]")
    return chunks


def task_files(outdir: Path, json_name: str = "label-studio.json") -> list[Path]:
    """The tasks files of a ``label-studio`` export: ``label-studio.json``, else the numbered
    ``label-studio.1.json``, ``label-studio.2.json``, ... in order (empty when there is none)."""
    outdir = Path(outdir)
    if (outdir / json_name).is_file():
        return [outdir / json_name]
    stem = json_name[: -len(".json")]
    numbered = [p for p in outdir.glob(f"{glob_escape(stem)}.*.json") if p.name[len(stem) + 1 : -len(".json")].isdigit()]
    return sorted(numbered, key=lambda p: int(p.name[len(stem) + 1 : -len(".json")]))


def _region_id(segment_id: int, part: int = 0) -> str:
    """A region id, stable for a segment (Label Studio only needs it unique within a task)."""
    return f"s{segment_id}" + (f"p{part}" if part else "")


def _outer_contours(mask: np.ndarray) -> list[list[tuple[float, float]]]:
    """The outer contours of a bool mask as ``(x, y)`` pixel-corner polygons of 3+ points
    (OpenCV ``findContours``, ``RETR_EXTERNAL``, ``CHAIN_APPROX_SIMPLE``)."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        points = contour.reshape(-1, 2)
        if len(points) >= 3:
            # OpenCV gives pixel indices of boundary pixels; +0.5 puts them on the pixel centres.
            polygons.append([(float(x) + 0.5, float(y) + 0.5) for x, y in points])
    return polygons

