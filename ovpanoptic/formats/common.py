"""What every format module shares: the category record, the COCO id <-> RGB rule, and the checked
readers of JSON and PNG files (sizes from the header before anything is decoded).

Everything here is public so that the format modules, :mod:`ovpanoptic.evaluation` and the engines
use one definition: :class:`CategoryInfo` (id, name, thing/stuff), :func:`rgb_to_id` /
:func:`id_to_rgb` (panopticapi's ``id = R + 256 G + 256^2 B``), :func:`load_json` /
:func:`categories_from_json` (a COCO panoptic JSON and its ``categories``), :func:`read_json_file`,
:func:`xml_root`, :func:`xml_error` (the one place annotation files are opened and parsed: every
failure a plain message naming the side, the file and the fix), :func:`read_id_png`,
:func:`png_size`, :func:`open_checked`, :func:`check_annotation_pixels`, :func:`size_mismatch`
(the pixel limit and the size checks), :func:`category_key` / :func:`loose_key` (how class names
compare) and :func:`png_bytes` (an array as PNG bytes).

Imports: numpy, Pillow and the core leaf modules (:mod:`ovpanoptic.constants`, :mod:`ovpanoptic.errors`) only.
"""

from __future__ import annotations

import io
import json
import numbers
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from ..constants import DEFAULT_MAX_PIXELS, ID_BASE
from ..errors import EvaluationError

__all__ = [
    "ID_LIMIT",
    "CategoryInfo",
    "EvaluationError",
    "annotation_field",
    "as_int",
    "categories_from_json",
    "category_key",
    "check_annotation_pixels",
    "id_to_rgb",
    "load_json",
    "loose_key",
    "normalize_categories",
    "open_checked",
    "png_bytes",
    "png_size",
    "read_id_png",
    "rgb_text",
    "read_json_file",
    "rgb_to_id",
    "size_mismatch",
    "xml_error",
    "xml_root",
]

#: Number of distinct ids an RGB PNG can encode (``ID_BASE**3``); also the PQ pair-key multiplier.
ID_LIMIT: int = ID_BASE**3

@dataclass(frozen=True)
class CategoryInfo:
    """One category of an annotation set: its id, name and whether it is a thing (else stuff)."""

    id: int
    name: str
    isthing: bool


def rgb_to_id(rgb: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Convert an ``(H, W, 3)`` RGB panoptic image to an ``(H, W)`` int64 id map.

    ``id = R + ID_BASE * G + ID_BASE**2 * B``. Any integer dtype is accepted as long as every
    value is in ``0..255``.

    Raises:
        ValueError: the array is not ``(H, W, 3)`` of integers in ``0..255``.
    """
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"rgb_to_id expects an (H, W, 3) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"rgb_to_id expects an integer array, got dtype {array.dtype}")
    if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError("rgb_to_id expects channel values in 0..255")
    wide = array.astype(np.int64)
    return wide[..., 0] + ID_BASE * wide[..., 1] + ID_BASE * ID_BASE * wide[..., 2]


def id_to_rgb(ids: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Convert an id map of any shape ``S`` to RGB colours of shape ``S + (3,)``, dtype uint8.

    Inverse of :func:`rgb_to_id`.

    Raises:
        ValueError: the ids are not integers in ``0 .. ID_BASE**3 - 1``.
    """
    array = np.asarray(ids)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"id_to_rgb expects an integer array, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= ID_LIMIT):
        raise ValueError(f"id_to_rgb expects ids in 0..{ID_LIMIT - 1}")
    # ID_BASE is 256: the colour is the id's three low bytes, least significant first.
    little = np.ascontiguousarray(array, dtype="<u4")
    return np.ascontiguousarray(little.view(np.uint8).reshape(*array.shape, 4)[..., :3])


def rgb_text(segment_id: int) -> str:
    """Describe the colour of a segment id, e.g. ``'RGB (78, 180, 255)'``."""
    if not 0 <= segment_id < ID_LIMIT:
        return "not encodable in an RGB PNG"
    return f"RGB ({segment_id % ID_BASE}, {(segment_id // ID_BASE) % ID_BASE}, {segment_id // (ID_BASE * ID_BASE)})"


def as_int(value: object, what: str, where: str) -> int:
    """Return ``value`` as an int, accepting integral numbers only (not bools)."""
    if isinstance(value, bool):
        raise EvaluationError(f"{where}: {what} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    raise EvaluationError(f"{where}: {what} must be an integer, got {value!r}")


def normalize_categories(
    categories: Sequence[CategoryInfo] | Mapping[int, CategoryInfo],
) -> dict[int, CategoryInfo]:
    """Return the categories as an id-keyed dict, checking types and unique ids."""
    if isinstance(categories, Mapping):
        result: dict[int, CategoryInfo] = {}
        for key, info in categories.items():
            if not isinstance(info, CategoryInfo):
                raise EvaluationError(f"category {key!r} is not a CategoryInfo: {info!r}")
            if key != info.id:
                raise EvaluationError(f"categories mapping key {key!r} differs from its CategoryInfo id {info.id}")
            result[info.id] = info
        return result
    result = {}
    for info in categories:
        if not isinstance(info, CategoryInfo):
            raise EvaluationError(f"categories must hold CategoryInfo objects, got {info!r}")
        if info.id in result:
            raise EvaluationError(f"category id {info.id} appears twice in the category list")
        result[info.id] = info
    return result


def _where(role: str, what: str, path: Path) -> str:
    """How a message names a file: ``"prediction Label Studio export a.json"`` (``role`` may be empty)."""
    return " ".join(part for part in (role, what, str(path)) if part)


def read_json_file(path: Path, role: str, what: str = "JSON file") -> Any:
    """Parse a JSON file, every failure one plain message naming the side, the file, what is wrong
    and the fix (the one place annotation JSON is opened and parsed).

    :param role: whose file it is (``"ground-truth"``, ``"prediction"``, ``"source"``; ``""``: nobody's).
    :param what: what the file is meant to be (``"Label Studio export"``), for the message.
    :raises EvaluationError: a missing file, a folder, an empty file, bytes that are not UTF-8, or
        text that is not JSON (line and column given; the file may be truncated).
    """
    where = _where(role, what, path)
    if path.is_dir():
        example = " (e.g. OUTDIR/panoptic.json)" if what == "JSON file" else ""
        raise EvaluationError(f"{where} is a folder: pass the JSON file itself{example}")
    if not path.is_file():
        raise EvaluationError(f"{where} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise EvaluationError(f"cannot open {where} ({error.strerror or error}): check that it is readable") from None
    if not raw.strip():
        raise EvaluationError(f"{where} is empty: the export did not finish or was cut off; export it again")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise EvaluationError(
            f"{where} is not UTF-8 text (byte 0x{raw[error.start]:02x} at position {error.start}): JSON exports are UTF-8; "
            "save the file as UTF-8, or export it again"
        ) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise EvaluationError(f"{where} is nested too deeply to be an annotation file: pass the export itself") from None
    except json.JSONDecodeError as error:
        truncated = error.pos >= len(text.rstrip())
        hint = "the file is truncated (it ends mid-way)" if truncated else "the file may be truncated or damaged"
        raise EvaluationError(
            f"{where} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}): {hint}; export it again"
        ) from None


def xml_error(where: str, error: Exception) -> EvaluationError:
    """The plain message for an XML file that does not parse (an ``xml.etree.ElementTree.ParseError``):
    ``where`` (the side, what the file is and its path: ``"prediction CVAT export a.xml"``), the line
    and column, what is wrong in words, and the fix."""
    position = getattr(error, "position", None)
    at = f"line {position[0]}, column {position[1] + 1}: " if position else ""
    text = str(error).split(":", 1)[0]
    if "no element found" in text:
        fix = "the file is empty or cut off; export it again"
    elif "invalid token" in text or "encoding" in text:
        fix = ("it holds bytes that are not text in its declared encoding (e.g. Latin-1 in a UTF-8 file) or a character "
               "XML cannot hold: save it as UTF-8, or export it again")
    else:
        fix = "the file may be truncated or damaged; export it again"
    return EvaluationError(f"{where} is not well-formed XML ({at}{text}): {fix}")


def xml_root(path: Path, role: str, what: str, *, whole: bool = False) -> str:
    """The tag of an XML file's root element, read from its first element only (``whole``: the whole
    file is parsed, for a small file that must be well-formed to the end, like a labelling config).

    :raises EvaluationError: a missing, unreadable, empty or not well-formed file (:func:`xml_error`).
    """
    import xml.etree.ElementTree as ET

    where = _where(role, what, path)
    if not path.is_file():
        raise EvaluationError(f"{where} does not exist")
    try:
        with path.open("rb") as handle:
            if whole:
                root = ET.parse(handle).getroot()
            else:
                _, root = next(ET.iterparse(handle, events=("start",)))
    except StopIteration:
        raise EvaluationError(f"{where} is empty: export it again") from None
    except ET.ParseError as error:
        raise xml_error(where, error) from None
    except OSError as error:
        raise EvaluationError(f"cannot open {where} ({error.strerror or error}): check that it is readable") from None
    return str(root.tag)


def load_json(path: Path, role: str) -> dict[str, Any]:
    """Read a COCO panoptic JSON file (a dict with an ``annotations`` list), through :func:`read_json_file`."""
    data = read_json_file(path, role, "JSON file")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise EvaluationError(f"{role} JSON file {path} must be a COCO panoptic dict with an 'annotations' list")
    return data


def categories_from_json(data: Mapping[str, Any], path: Path, role: str = "ground-truth") -> dict[int, CategoryInfo]:
    """Build the categories from the ``categories`` list of a COCO panoptic JSON (``role``: whose,
    for the message)."""
    raw = data.get("categories")
    if not isinstance(raw, list):
        raise EvaluationError(f"{role} JSON file {path} has no 'categories' list")
    infos: list[CategoryInfo] = []
    for position, entry in enumerate(raw):
        where = f"{path}: categories[{position}]"
        if not isinstance(entry, Mapping) or not all(k in entry for k in ("id", "isthing")):
            raise EvaluationError(f"{where} must be a dict with 'id', 'name' and 'isthing'")
        category_id = as_int(entry["id"], "'id'", where)
        infos.append(
            CategoryInfo(
                id=category_id,
                name=str(entry.get("name", category_id)),
                isthing=entry["isthing"] == 1,
            )
        )
    try:
        return normalize_categories(infos)
    except EvaluationError as error:
        raise EvaluationError(f"{path}: {error}") from error


def annotation_field(annotation: object, key: str, path: Path, position: int) -> Any:
    """Return ``annotation[key]`` or raise a message naming the file and the entry."""
    if not isinstance(annotation, Mapping) or key not in annotation:
        raise EvaluationError(f"{path}: annotations[{position}] has no {key!r}")
    return annotation[key]


def size_mismatch(image: str, gt_size: tuple[int, int], pred_size: tuple[int, int]) -> EvaluationError:
    """The error for a prediction whose ``(width, height)`` is not the ground truth's."""
    return EvaluationError(
        f"{image}: prediction size {pred_size[0]}x{pred_size[1]} (WxH) differs from ground-truth size "
        f"{gt_size[0]}x{gt_size[1]}; a prediction must have the size of its ground-truth image"
    )


def check_annotation_pixels(width: int, height: int, max_pixels: int | None, where: str) -> None:
    """Refuse an annotated image whose file declares more than ``max_pixels`` pixels (``None`` or 0:
    no limit), before anything of that size is decoded or allocated.

    :param where: the file and the image, for the message (``"ground-truth CVAT export a.xml, image 'x'"``).
    :raises EvaluationError: naming ``where``, the declared size, the limit and the option that changes it.
    """
    if max_pixels and width * height > max_pixels:
        raise EvaluationError(
            f"{where} declares an image of {width} x {height} pixels ({width * height / 1e6:.4g} megapixels), over the "
            f"limit of {max_pixels / 1e6:.4g} megapixels for one annotated image: check that the file is the export you "
            "meant (a size this large is usually a damaged file), or raise the limit with --max-pixels N "
            "(max_pixels= in Python; 0 = no limit)"
        )


def png_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of an image file from its header (nothing is decoded), or ``None`` when it
    cannot be read as an image (the reader that decodes it says why)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the caller's limit decides
            with Image.open(path) as handle:
                return int(handle.width), int(handle.height)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def open_checked(
    path: Path, role: str, image: str, max_pixels: int | None, expected: tuple[int, int] | None
) -> Image.Image:
    """Open an annotation PNG (header only) and check its size against ``max_pixels`` and the
    ``(width, height)`` its JSON declares, before it is decoded.

    :raises EvaluationError: too large, of another size than declared, or not an image.
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            handle = Image.open(path)
    except Image.DecompressionBombError as error:
        raise EvaluationError(
            f"{image}: {role} PNG {path} is larger than Pillow decodes ({error}); ovpanoptic cannot lift Pillow's own limit"
        ) from None
    except OSError as error:
        raise EvaluationError(f"{image}: cannot read {role} PNG {path}: {error}") from error
    try:
        check_annotation_pixels(handle.width, handle.height, max_pixels, f"{image}: {role} PNG {path}")
        if expected is not None and (handle.width, handle.height) != expected:
            raise EvaluationError(
                f"{image}: {role} PNG {path} is {handle.width} x {handle.height} pixels, but its JSON declares "
                f"{expected[0]} x {expected[1]} (width x height): the PNG does not belong to this annotation; write "
                "the PNG again or correct the size in the JSON's 'images'"
            )
    except EvaluationError:
        handle.close()
        raise
    return handle


def read_id_png(
    path: Path,
    role: str,
    image: str,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    expected: tuple[int, int] | None = None,
) -> npt.NDArray[np.int64]:
    """Read an RGB(A) or palette panoptic PNG as an (H, W) id map.

    :param max_pixels: refuse a PNG with more pixels, from its header, before decoding it.
    :param expected: the ``(width, height)`` its JSON declares, checked before decoding.
    """
    if not path.is_file():
        raise EvaluationError(f"{image}: {role} PNG {path} does not exist")
    try:
        with open_checked(path, role, image, max_pixels, expected) as handle:
            handle.load()
            if handle.mode in ("P", "PA"):
                picture = handle.convert("RGBA")
            elif handle.mode in ("RGB", "RGBA"):
                picture = handle.copy()
            else:
                raise EvaluationError(
                    f"{image}: {role} PNG {path} has mode {handle.mode}; panoptic PNGs must be "
                    "RGB (id = R + 256*G + 256^2*B)"
                )
    except OSError as error:
        raise EvaluationError(f"{image}: cannot read {role} PNG {path}: {error}") from error
    array = np.asarray(picture, dtype=np.uint8)
    return rgb_to_id(array[..., :3])


def category_key(name: str) -> str:
    """Names compare ignoring case, Unicode width/composition and repeated spaces."""
    return " ".join(unicodedata.normalize("NFKC", name).split()).casefold()


def loose_key(name: str) -> str:
    """:func:`category_key`, also ignoring ``-``/``_`` and COCO's ``-merged``/``-other``/``-stuff``
    suffixes (``grass-merged`` and ``sky-other-merged`` are "grass" and "sky" to a user)."""
    key = category_key(name)
    for suffix in ("-merged", "-other", "-stuff"):
        key = key.removesuffix(suffix)
    return " ".join(key.replace("-", " ").replace("_", " ").split())


def png_bytes(array: npt.NDArray[Any]) -> bytes:
    """An array as PNG bytes (Pillow picks the mode from the dtype and shape: ``(H, W, 3)`` uint8 RGB,
    ``(H, W)`` uint8 ``L``, ``(H, W)`` uint16 ``I;16``)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
