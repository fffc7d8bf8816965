"""The demo's download: one zip per result, named after the image and the result.

``STEM-DIGEST.zip`` (``DIGEST``: the first 10 hex digits of the SHA-1 of the panoptic map and the
segments, so each re-query or correction has its own name) holds:

* ``STEM.jpg``: the image (the uploaded file itself when it was a JPEG), the ``file_name`` that
  ``panoptic.json`` names;
* ``panoptic/STEM.png`` + ``panoptic.json``: COCO panoptic format (the ``coco-panoptic`` exporter);
* ``instances.json`` + ``instances_results.json``: COCO instances with RLE masks of the things,
  and the same detections as a results list (the ``coco-instances`` exporter);
* ``label-studio.json`` + ``label-studio.xml``: a Label Studio task with the segments as brush
  predictions and its labelling config (the ``label-studio`` exporter; docs/labelling.md);
* ``cvat/annotations.xml`` + ``cvat/images/STEM.jpg``: CVAT for images 1.1 with one mask shape per
  segment, and the image it names (the ``cvat`` exporter; the folder Datumaro and CVAT import);
* ``STEM.overlay.jpg``: the image with segments, outlines and names as the page draws them (at
  most :data:`OVERLAY_MAX_SIDE` pixels on its long side);
* ``STEM.segments.csv``: the segment table (id, label, class, kind, score, area in pixels and %,
  box ``x0, y0, x1, y1``);

each exporter's file only when that exporter is installed and enabled. Every member unzips with
mode :data:`ZIP_MODE` (0644), as the command line's outputs; :func:`zip_contents` says what each
file is (the page lists it under the download).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from ..imageio import resize_longest_side
from ..pipeline import Pipeline
from ..types import PanopticResult
from .render import Overlay, compose, segment_colors, segment_labels

log = logging.getLogger(__name__)

__all__ = ["DOWNLOAD_EXPORTERS", "ZIP_MODE", "jpeg_bytes", "result_digest", "write_download", "zip_member", "zip_contents"]

#: Exporters whose files go into the zip, when installed, enabled and their packages present
#: (``label-studio``: tasks + labelling config; ``cvat``: CVAT for images 1.1 XML).
DOWNLOAD_EXPORTERS: tuple[str, ...] = ("coco-panoptic", "coco-instances", "label-studio", "cvat")
#: JPEG quality of the image and overlay written into the zip.
JPEG_QUALITY = 92
#: The overlay is drawn at most this large (long side), whatever the image's size.
OVERLAY_MAX_SIDE = 2048
#: Permissions of the zip's members when unzipped: those of the command line's output files
#: (readable by all, writable by the owner), never the 0600 of Python's temporary files.
ZIP_MODE = 0o644


def zip_member(name: str) -> zipfile.ZipInfo:
    """A zip entry named ``name``, dated now, unzipping with :data:`ZIP_MODE`."""
    import time

    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.external_attr = (0o100000 | ZIP_MODE) << 16  # a regular file
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def result_digest(result: PanopticResult, image_digest: str = "") -> str:
    """10 hex digits naming a result of an image: SHA-1 of the image's digest, the map and the
    segments (ids, classes, scores) and the vocabulary."""
    h = hashlib.sha1(image_digest.encode())
    h.update(np.ascontiguousarray(result.panoptic_map).tobytes())
    h.update(json.dumps([[s.id, s.category_id, round(s.score, 6)] for s in result.segments]).encode())
    h.update(json.dumps(result.vocabulary.to_dict(), sort_keys=True).encode())
    return h.hexdigest()[:10]


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    """``rgb`` as a JPEG file's bytes (:data:`JPEG_QUALITY`)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _table_csv(result: PanopticResult, labels: Mapping[int, str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "label", "class", "category_id", "kind", "score", "area_px", "area_percent", "x0", "y0", "x1", "y1"])
    total = result.image_size[0] * result.image_size[1]
    for seg in result.segments:
        writer.writerow(
            [seg.id, labels[seg.id], result.category_of(seg).name, seg.category_id, "thing" if seg.isthing else "stuff",
             f"{seg.score:.4f}", seg.area, f"{100.0 * seg.area / total:.3f}", *seg.bbox_xyxy]
        )
    return buffer.getvalue()


def write_download(
    pipe: Pipeline,
    result: PanopticResult,
    rgb: np.ndarray,
    stem: str,
    folder: Path,
    *,
    source: Path | None = None,
    image_digest: str = "",
    labels: Mapping[int, str] | None = None,
) -> Path:
    """Write the zip described in the module docstring into ``folder`` (created; its working files
    are removed, only the zip stays).

    :param rgb: the image at the result's size.
    :param source: the uploaded file; copied as it is when it is an RGB JPEG of the same size.
    :param image_digest: the image's content digest (part of the name: two images never share a zip).
    :param labels: segment id -> label as the page shows them (default: instances numbered in id order).
    :raises ComponentError: an exporter failed (nothing is left behind).
    """
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{stem}-{result_digest(result, image_digest)}.zip"
    if archive.is_file():
        return archive
    work = Path(tempfile.mkdtemp(prefix=".files-", dir=folder))  # two downloads at once never share it
    formats = [name for name in DOWNLOAD_EXPORTERS if _usable(pipe, name)]
    try:
        written = pipe.export(result, rgb, work, stem, formats=formats) if formats else []
        labels = dict(labels) if labels is not None else segment_labels(result)
        small = resize_longest_side(rgb, OVERLAY_MAX_SIDE)
        overlay = compose(small, result, labels, segment_colors(result, labels), Overlay())
        partial = work / archive.name
        with zipfile.ZipFile(partial, "w") as zf:
            if source is not None and source.suffix.lower() in (".jpg", ".jpeg") and _same_size(source, rgb):
                zf.writestr(zip_member(f"{stem}.jpg"), source.read_bytes(), compress_type=zipfile.ZIP_STORED)
            else:
                zf.writestr(zip_member(f"{stem}.jpg"), jpeg_bytes(rgb), compress_type=zipfile.ZIP_STORED)
            # The exporters' files, without their bookkeeping (per-image parts in dot-folders).
            shown = [p for p in written if not any(part.startswith(".") for part in p.relative_to(work).parts)]
            for path in sorted(shown, key=lambda p: p.relative_to(work).as_posix()):
                method = zipfile.ZIP_STORED if path.suffix == ".png" else zipfile.ZIP_DEFLATED
                zf.writestr(zip_member(path.relative_to(work).as_posix()), path.read_bytes(), compress_type=method)
            zf.writestr(zip_member(f"{stem}.overlay.jpg"), jpeg_bytes(overlay), compress_type=zipfile.ZIP_STORED)
            zf.writestr(zip_member(f"{stem}.segments.csv"), _table_csv(result, labels), compress_type=zipfile.ZIP_DEFLATED)
        partial.replace(archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return archive


#: What the zip's files are, for the page: ``(pattern, description)``, ``STEM`` standing for the
#: image's stem; several files of one line are joined with ``+``.
ZIP_PARTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("STEM.jpg",), "the image"),
    (("panoptic.json", "panoptic/STEM.png"), "COCO panoptic"),
    (("instances.json",), "COCO instances (RLE masks of the things)"),
    (("instances_results.json",), "the same detections as a COCO results list (for COCO.loadRes)"),
    (("label-studio.json", "label-studio.xml"), "a Label Studio task with the segments as predictions, and its labelling config"),
    (("cvat/annotations.xml", "cvat/images/STEM.jpg"), "CVAT for images 1.1"),
    (("STEM.overlay.jpg",), "the image as drawn here"),
    (("STEM.segments.csv",), "the segment table"),
)


def zip_contents(path: Path) -> str:
    """A Markdown list of the files in a download zip and what each is (the page shows it)."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    stem = next((n[: -len(".overlay.jpg")] for n in names if n.endswith(".overlay.jpg")), "")
    lines, told = [f"**{path.name}** holds:"], set()
    for patterns, description in ZIP_PARTS:
        present = [p.replace("STEM", stem) for p in patterns if p.replace("STEM", stem) in names]
        if present:
            lines.append(f"- {' + '.join(f'`{n}`' for n in present)}: {description}")
            told.update(present)
    lines += [f"- `{n}`" for n in names if n not in told]
    return "\n".join(lines)


def _usable(pipe: Any, name: str) -> bool:
    """Whether exporter ``name`` is registered and can be built (its optional packages installed)."""
    if name not in pipe.registry.components.get("exporter", {}):
        return False
    try:
        pipe.component("exporter", name)
    except MissingDependencyError as exc:
        log.warning("the download leaves out %s: %s", name, exc)
        return False
    return True


def _same_size(path: Path, rgb: np.ndarray) -> bool:
    """Whether ``path`` is an RGB JPEG (not CMYK or grey) whose stored pixels are ``rgb``'s size
    (no EXIF rotation, which tools reading the PNG next to it might not apply)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return (
                img.format == "JPEG" and img.mode == "RGB" and img.getexif().get(0x0112, 1) == 1
                and img.size == (rgb.shape[1], rgb.shape[0])
            )
    except OSError:
        return False
