"""Image side of the ``clip`` classifier: masked crops, model input tensors, dense mask pooling.

The crop helpers are plain numpy/PIL and are public so tests can check the geometry exactly;
the torch functions are called only after the model is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

__all__ = [
    "Preprocess",
    "crop_box_for",
    "dense_input_size",
    "mask_pooling_weights",
    "masked_crop",
    "masked_crops",
]

_PIL_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class Preprocess:
    """The model's input conventions (from open_clip's ``preprocess_cfg``).

    :param size: ``(height, width)`` of the image encoder's input.
    :param mean: per-channel mean of the normalisation, in [0, 1].
    :param std: per-channel standard deviation of the normalisation.
    :param interpolation: ``bicubic`` or ``bilinear`` resizing.
    """

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    @classmethod
    def from_cfg(cls, cfg: dict[str, Any]) -> Preprocess:
        size = cfg.get("size", 224)
        hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        interpolation = cfg.get("interpolation", "bicubic")
        return cls(
            size=hw,
            mean=tuple(float(v) for v in cfg["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in cfg["std"]),  # type: ignore[arg-type]
            interpolation=interpolation if interpolation in _PIL_FILTERS else "bicubic",
        )

    @property
    def fill_rgb(self) -> tuple[int, int, int]:
        """The mean colour as uint8 RGB: what normalises to (about) zero."""
        return tuple(int(round(255.0 * m)) for m in self.mean)  # type: ignore[return-value]

    def resize(self, image: np.ndarray, height: int, width: int) -> np.ndarray:
        """Resize an RGB uint8 array with the model's interpolation (PIL, antialiased)."""
        if image.shape[:2] == (height, width):
            return image
        pil = Image.fromarray(image)
        return np.asarray(pil.resize((width, height), _PIL_FILTERS[self.interpolation]))

    def normalise(self, batch: np.ndarray) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float32, ``(x / 255 - mean) / std``."""
        x = batch.astype(np.float32) / 255.0
        x -= np.asarray(self.mean, np.float32)
        x /= np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def crop_box_for(box_xyxy: np.ndarray | tuple[float, ...], context: float) -> tuple[int, int, int, int]:
    """The square crop around a mask box: side ``ceil(max(w, h) * context)``, same centre.

    Integer pixel coordinates, max side exclusive; the square may extend past the image (those
    pixels become fill). It always contains the whole box.
    """
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    side = max(1, math.ceil(max(x1 - x0, y1 - y0) * context - 1e-9))
    bx0 = math.floor((x0 + x1) / 2.0 - side / 2.0)
    by0 = math.floor((y0 + y1) / 2.0 - side / 2.0)
    return bx0, by0, bx0 + side, by0 + side


def masked_crop(
    image: np.ndarray,
    mask: np.ndarray,
    crop_box: tuple[int, int, int, int],
    fill_rgb: tuple[int, int, int],
    *,
    blur: bool = False,
) -> np.ndarray:
    """Cut ``crop_box`` out of ``image`` keeping only the pixels of ``mask``.

    :param image: ``(H, W, 3)`` uint8 RGB.
    :param mask: ``(H, W)`` bool.
    :param crop_box: ``(x0, y0, x1, y1)``, may extend past the image.
    :param fill_rgb: colour of every pixel outside the mask (and outside the image).
    :param blur: fill the pixels outside the mask but inside the image with a Gaussian blur of
        the image instead of ``fill_rgb``.
    :return: ``(y1 - y0, x1 - x0, 3)`` uint8: ``image`` where ``mask`` is true, fill elsewhere.
    """
    bx0, by0, bx1, by1 = crop_box
    h, w = mask.shape
    out = np.empty((by1 - by0, bx1 - bx0, 3), np.uint8)
    out[:] = np.asarray(fill_rgb, np.uint8)
    ix0, iy0, ix1, iy1 = max(bx0, 0), max(by0, 0), min(bx1, w), min(by1, h)
    if ix1 <= ix0 or iy1 <= iy0:
        return out
    region = out[iy0 - by0 : iy1 - by0, ix0 - bx0 : ix1 - bx0]
    patch = image[iy0:iy1, ix0:ix1]
    keep = mask[iy0:iy1, ix0:ix1]
    if blur:
        radius = max(2.0, max(out.shape[:2]) / 20.0)
        region[:] = np.asarray(Image.fromarray(np.ascontiguousarray(patch)).filter(ImageFilter.GaussianBlur(radius)))
    region[keep] = patch[keep]
    return out


def masked_crops(
    image: np.ndarray,
    masks: np.ndarray,
    boxes_xyxy: np.ndarray,
    preprocess: Preprocess,
    *,
    context: float,
    blur: bool = False,
) -> np.ndarray:
    """:func:`masked_crop` of each mask, resized to the model's input size: ``(N, h, w, 3)`` uint8."""
    height, width = preprocess.size
    out = np.empty((len(masks), height, width, 3), np.uint8)
    for i, (mask, box) in enumerate(zip(masks, boxes_xyxy)):
        crop = masked_crop(image, mask, crop_box_for(box, context), preprocess.fill_rgb, blur=blur)
        out[i] = preprocess.resize(crop, height, width)
    return out


def dense_input_size(height: int, width: int, long_side: int, multiple: int) -> tuple[int, int]:
    """``(h, w)`` with the longer side about ``long_side``, the aspect kept, both multiples of ``multiple``."""
    scale = long_side / max(height, width)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    return h, w


def mask_pooling_weights(masks: np.ndarray, grid: tuple[int, int], chunk: int = 16) -> Iterator[tuple[int, Any]]:
    """Per-mask pooling weights on a feature grid, in chunks: yields ``(start, weights)``.

    ``weights`` is a ``(n, gh * gw)`` float32 torch tensor: the fraction of each feature cell
    covered by the mask (area downsampling), divided by the row's sum, so ``weights @ features``
    is the area-weighted mean of the features under the mask. An empty mask has an all-zero row.
    """
    import torch
    import torch.nn.functional as F

    for start in range(0, len(masks), chunk):
        block = torch.from_numpy(masks[start : start + chunk].astype(np.float32))
        cover = F.interpolate(block[:, None], size=grid, mode="area")[:, 0].flatten(1)
        total = cover.sum(dim=1, keepdim=True)
        yield start, torch.where(total > 0, cover / total.clamp_min(1e-12), torch.zeros_like(cover))
