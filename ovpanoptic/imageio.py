"""Reading images robustly and normalising them to the one image convention.

The convention: ``(H, W, 3)`` ``uint8`` RGB. :func:`read_image` applies the EXIF orientation and
converts grayscale, palette, RGBA (composited on white), CMYK, 16-bit and float images.
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

__all__ = ["IMAGE_SUFFIXES", "as_rgb_array", "collect_inputs", "image_digest", "read_image", "resize_longest_side"]

#: File suffixes treated as images when a folder is given.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageReadError("the image has NaN or infinite pixel values")
        if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
            return np.round(arr * 255.0).astype(np.uint8)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return np.round((arr - lo) * scale).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and arr.min() >= 0 and arr.max() <= 255 and arr.dtype.itemsize == 1:
            return arr.astype(np.uint8)
        # 16-bit (and wider) integers: map the type's 16-bit range onto 0..255.
        clipped = np.clip(arr.astype(np.int64), 0, 65535)
        return (clipped // 257).astype(np.uint8)
    raise ImageReadError(f"unsupported pixel type {arr.dtype}")


def _from_pil(img: Any) -> np.ndarray:
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
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


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB, upright per its EXIF orientation.

    :raises ImageReadError: the file is missing, not an image, truncated or too large; the message
        names the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such file")
    try:
        with Image.open(p) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            arr = _from_pil(img)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{p}: image is too large to read safely ({exc}); downscale it first") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not an image file Pillow can read (is it corrupt or another format?)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{p}: cannot decode image ({exc}); the file may be truncated or corrupt") from None
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{p}: the image is empty (0 pixels)")
    return arr


def as_rgb_array(image: Any) -> np.ndarray:
    """Normalise a path, PIL image or array to ``(H, W, 3)`` uint8 RGB.

    Arrays may be ``(H, W)`` grayscale, ``(H, W, 1|3|4)``; uint8, 16-bit or float in [0, 1].
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if type(image).__module__.startswith("PIL."):
        return _from_pil(image)
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


def resize_longest_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the longer side is ``max_side`` (no-op when already small enough or 0)."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    from PIL import Image

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0))


def collect_inputs(specs: Iterable[str]) -> list[Path]:
    """Expand files, folders (their image files, sorted) and glob patterns into a list of files.

    :raises InputError: a path does not exist, or a pattern or folder matches no image.
    """
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
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
