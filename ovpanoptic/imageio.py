"""Reading images robustly and normalising them to the one image convention.

The convention: ``(H, W, 3)`` ``uint8`` RGB. One rule per input kind, the same for files, PIL
images and arrays:

* ``uint8``: taken as is. ``bool``: ``False`` -> 0, ``True`` -> 255.
* ``uint16`` (and 16-bit files, PIL modes ``I;16*``): the 16-bit range, ``value // 257``.
* other integers (``int32``, PIL mode ``I``, ...): values in 0..255 are 8-bit values and taken as
  is; values up to 65535 are 16-bit values (``// 257``); negative or larger values are refused.
* floats (PIL mode ``F``): values in [0, 1] are scaled by 255; values in [0, 255] are 8-bit
  values (rounded); anything else (negative, above 255, NaN, inf) is refused. Never stretched
  per image, so a constant 128.0 image reads as 128.
* grayscale is repeated to RGB; an alpha channel is composited on white; palette and CMYK images
  are converted by Pillow.
* EXIF orientation is applied to files and to PIL images (so an image reads upright either way).
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageReadError, InputError

__all__ = [
    "EXIF_ORIENTATION",
    "EXIF_TRANSPOSED",
    "IMAGE_SUFFIXES",
    "as_rgb_array",
    "exif_orientation",
    "check_pixels",
    "collect_inputs",
    "image_digest",
    "read_image",
    "resize_longest_side",
    "upright_size",
    "working_size",
]

#: The EXIF tag of an image's orientation, and its values that turn the image by a quarter turn.
EXIF_ORIENTATION = 0x0112
EXIF_TRANSPOSED = frozenset({5, 6, 7, 8})


def exif_orientation(img: Any) -> int | None:
    """The EXIF orientation of an opened PIL image, from what its header holds (a PNG's ``eXIf``
    chunk after its pixels would need the pixels decoded: not looked for, as Pillow itself does at open)."""
    from PIL import Image

    if img.format == "PNG":
        raw = img.info.get("exif")
        if not raw:
            return None
        exif = Image.Exif()
        exif.load(raw)
        return exif.get(EXIF_ORIENTATION)
    return img.getexif().get(EXIF_ORIENTATION)


def upright_size(img: Any) -> tuple[int, int]:
    """``(width, height)`` of an opened PIL image as :func:`read_image` returns it (turned by a quarter
    turn when its EXIF orientation says so), from the header only (see :func:`exif_orientation`)."""
    return (img.height, img.width) if exif_orientation(img) in EXIF_TRANSPOSED else (img.width, img.height)

#: File suffixes treated as images when a folder is given.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Apply the module's per-kind rule (see the module docstring)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageReadError("the image has NaN or infinite pixel values")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 1.0:
            return np.round(arr * 255.0).astype(np.uint8)
        if lo >= 0.0 and hi <= 255.0:
            return np.round(arr).astype(np.uint8)
        raise InputError(
            f"float pixel values must be in [0, 1] or [0, 255]; this image has {lo:g}..{hi:g}: "
            "scale it into one of those ranges (or convert it to uint8) first"
        )
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if arr.dtype == np.uint16:
            return (arr // 257).astype(np.uint8)
        if lo >= 0 and hi <= 255:
            return arr.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return (arr // 257).astype(np.uint8)
        raise InputError(
            f"integer pixel values must be 8-bit (0..255) or 16-bit (0..65535); this {arr.dtype} image has "
            f"{lo}..{hi}: convert it first"
        )
    raise ImageReadError(f"unsupported pixel type {arr.dtype}")


def _from_pil(img: Any) -> np.ndarray:
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.repeat(_to_uint8(np.asarray(img).astype(np.uint16))[..., None], 3, axis=2)
    if mode == "I":
        return np.repeat(_to_uint8(np.asarray(img))[..., None], 3, axis=2)
    if mode == "F":
        return np.repeat(_to_uint8(np.asarray(img, dtype=np.float32))[..., None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def image_digest(image: np.ndarray) -> str:
    """A key for an image's content (pixels and shape): the cache key of proposals and features."""
    h = hashlib.sha1(np.ascontiguousarray(image).tobytes())
    h.update(str(image.shape).encode())
    return h.hexdigest()


def check_pixels(width: int, height: int, max_pixels: int | None, name: str) -> None:
    """Refuse an image of more than ``max_pixels`` pixels (``None`` or 0: no limit).

    :raises InputError: naming the size, the limit and the setting that changes it.
    """
    if max_pixels and width * height > max_pixels:
        raise InputError(
            f"{name} is {width} x {height} pixels ({width * height / 1e6:.3g} megapixels), over the limit of "
            f"{max_pixels / 1e6:.3g} megapixels: downscale it, or raise the limit with --set pipeline.max_pixels=N"
        )


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB, upright per its EXIF orientation.

    :param max_pixels: refuse images with more pixels, from the file's header, before decoding.
    :raises ImageReadError: the file is missing, not an image, truncated or too large; the message
        names the file.
    :raises InputError: the image has more than ``max_pixels`` pixels.
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            img_cm = Image.open(p)
        with img_cm as img:
            check_pixels(img.width, img.height, max_pixels, str(p))
            img.load()
            img = ImageOps.exif_transpose(img)
            arr = _from_pil(img)
    except InputError:
        raise
    except ImageReadError as exc:  # a rule of this module (NaN pixels, ...): say so, with the file's name
        raise ImageReadError(f"{p}: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            f"{p}: Pillow refuses to decode images this large ({exc}); ovpanoptic cannot lift Pillow's own limit: "
            "downscale the image first"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not an image file Pillow can read (is it corrupt or another format?)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{p}: cannot decode image ({exc}); the file may be truncated or corrupt") from None
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{p}: the image is empty (0 pixels)")
    return arr


def as_rgb_array(image: Any) -> np.ndarray:
    """Normalise a path, PIL image or array to ``(H, W, 3)`` uint8 RGB (rules: module docstring).

    Arrays may be ``(H, W)`` grayscale or ``(H, W, 1|3|4)``. The result may be the caller's own
    array (uint8 RGB in, nothing to convert); the pipeline hands components read-only views.

    :raises InputError: an unsupported shape, an empty image, or pixel values outside the rules.
    :raises ImageReadError: a path that cannot be read.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if type(image).__module__.startswith("PIL."):
        from PIL import ImageOps

        if image.width == 0 or image.height == 0:
            raise InputError(f"the image is empty ({image.width}x{image.height})")
        return _from_pil(ImageOps.exif_transpose(image))
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"expected an image path, a PIL image or a numpy array, got {type(image).__name__}"
        )
    arr = image
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InputError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {image.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"the image is empty (shape {image.shape})")
    if arr.shape[2] == 4:
        alpha = _to_uint8(arr[..., 3]).astype(np.float32)[..., None] / 255.0
        rgb = _to_uint8(arr[..., :3]).astype(np.float32)
        arr8 = np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    else:
        arr8 = _to_uint8(arr)
    if arr8.shape[2] == 1:
        arr8 = np.repeat(arr8, 3, axis=2)
    return np.ascontiguousarray(arr8)


def working_size(height: int, width: int, max_side: int, min_side: int = 1) -> tuple[int, int]:
    """``(h, w)`` after downscaling so the longer side is at most ``max_side`` (0: no limit), but
    never below ``min_side`` on the shorter side (a 4000 x 40 image with ``max_side`` 1024 and
    ``min_side`` 32 becomes 3200 x 32, not 1024 x 10). Never upscales."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    scale = max(max_side / max(height, width), min_side / min(height, width))
    if scale >= 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_longest_side(image: np.ndarray, max_side: int, min_side: int = 1) -> np.ndarray:
    """Downscale to :func:`working_size` (bilinear; a no-op when the size does not change)."""
    h, w = image.shape[:2]
    size = working_size(h, w, max_side, min_side)
    if size == (h, w):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize(size[::-1], Image.Resampling.BILINEAR, reducing_gap=3.0))


def collect_inputs(specs: Iterable[str]) -> list[Path]:
    """Expand files, folders (their image files, sorted; hidden files left out) and glob patterns
    into a list of files.

    :raises InputError: a path does not exist, or a pattern or folder matches no image.
    """
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            try:
                entries = list(p.iterdir())
            except OSError as exc:
                raise InputError(f"cannot list folder {p} ({exc.strerror or exc}): check its permissions") from None
            # Hidden files (macOS's ._x.jpg resource forks, editors' temporaries) are not inputs,
            # as in glob patterns; name one explicitly to process it.
            found = sorted(f for f in entries if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"folder {p} contains no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif glob.has_magic(spec):
            found = sorted(Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file())
            if not found:
                raise InputError(f"pattern {spec!r} matches no file")
            out.extend(found)
        else:
            raise InputError(f"input {spec!r} does not exist")
    seen: set[Path] = set()
    unique = []
    for f in out:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique
