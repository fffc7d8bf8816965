"""Drawing a panoptic result over an image: segment colours, outlines, names, a selection, a prompt being drawn.

Used by the demo (:mod:`ovpanoptic.demo.render`) and by the video overlay (:mod:`ovpanoptic.video.output`); it sits
below both. Pure functions of their arguments (numpy and Pillow only); imports only :mod:`ovpanoptic.types`.
"""

from __future__ import annotations

import colorsys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .types import PanopticResult, nearest_indices

__all__ = [
    "CANDIDATE_RGB",
    "NEGATIVE_RGB",
    "POSITIVE_RGB",
    "Overlay",
    "compose",
    "instance_rgb",
    "label_boxes",
    "nearest",
]

#: Colour of the mask a prompt proposes (not yet a segment).
CANDIDATE_RGB = (255, 215, 0)
#: Colours of positive / negative clicks.
POSITIVE_RGB = (0, 200, 0)
NEGATIVE_RGB = (230, 0, 0)


#: Instance k of a thing class turns the class's hue by ``(k - 1) *`` this (of the colour wheel)...
INSTANCE_HUE_STEP = 0.3
#: ... at least this saturated, alternately this bright: any two of a class's first 9 instances
#: differ by 90+ in RGB (tests/test_demo.py checks it on random class colours).
INSTANCE_MIN_SATURATION = 0.8
INSTANCE_VALUES = (0.95, 0.6)


def instance_rgb(base: tuple[int, int, int], instance: int) -> tuple[int, int, int]:
    """Instance ``k`` (1-based) of a thing class: the class colour turned around the colour wheel
    (see :data:`INSTANCE_HUE_STEP`), so neighbouring objects of one class never share a shade."""
    h, s, _ = colorsys.rgb_to_hsv(*(c / 255 for c in base))
    k = max(1, instance)
    h = (h + (k - 1) * INSTANCE_HUE_STEP) % 1.0
    v = INSTANCE_VALUES[(k - 1) % len(INSTANCE_VALUES)]
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, max(s, INSTANCE_MIN_SATURATION), v))  # type: ignore[return-value]


def nearest(panoptic_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an id map or mask, by the rule of
    :meth:`~ovpanoptic.types.PanopticResult.resized` (:func:`~ovpanoptic.types.nearest_indices`)."""
    h, w = panoptic_map.shape
    if (h, w) == (height, width):
        return panoptic_map
    return panoptic_map[nearest_indices(height, h)[:, None], nearest_indices(width, w)[None, :]]


@dataclass(frozen=True)
class Overlay:
    """How the composite is drawn.

    :param opacity: 0..1, how strongly segment colours cover the image.
    :param outlines: draw each segment's boundary in its colour.
    :param names: write each segment's label at its largest inner point.
    :param hidden: class names not drawn.
    :param selected: segment ids drawn highlighted (others dimmed).
    """

    opacity: float = 0.55
    outlines: bool = True
    names: bool = True
    hidden: frozenset[str] = frozenset()
    selected: tuple[int, ...] = ()


def _boundaries(ids: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another id (both sides of each edge)."""
    edge = np.zeros(ids.shape, bool)
    dx = ids[:, 1:] != ids[:, :-1]
    dy = ids[1:, :] != ids[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` dilated by ``radius`` pixels (a square)."""
    out = mask.copy()
    h, w = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy or dx:
                out[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] |= mask[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    return out


def _font_size(width: int) -> int:
    return max(11, min(18, width // 50))


def label_boxes(
    size: tuple[int, int],
    result: PanopticResult,
    labels: Mapping[int, str],
    ids: Sequence[int],
    selected: Collection[int] = (),
) -> dict[int, tuple[int, int, int, int]]:
    """Where the names of segments ``ids`` go on an image of ``size`` ``(h, w)``: a box
    ``(x0, y0, x1, y1)`` per named segment, centred on a point inside it, kept inside the image,
    never overlapping another (moved up or down by a line when it would; left out when no place is
    free: the table and the selection name it). Selected segments are placed first, then the
    largest.
    """
    from PIL import Image, ImageDraw

    h, w = size
    font = _font(_font_size(w))
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    ids_map = nearest(np.asarray(result.panoptic_map), h, w)
    small = nearest(np.asarray(result.panoptic_map), max(1, h // 4), max(1, w // 4))
    area = {seg.id: seg.area for seg in result.segments}
    order = sorted(ids, key=lambda i: (i not in selected, -area.get(i, 0), i))
    placed: dict[int, tuple[int, int, int, int]] = {}
    for sid in order:
        at = _anchor(small == sid)
        if at is not None:
            cx, cy = at[0] * 4 + 2, at[1] * 4 + 2
        else:  # too small for the coarse grid
            exact = _anchor(ids_map == sid)
            if exact is None:
                continue
            cx, cy = exact
        left, top, right, bottom = draw.textbbox((0, 0), labels[sid], font=font, stroke_width=2)
        tw, th = right - left, bottom - top
        if tw > w or th > h:
            continue
        for shift in (0, 1, -1, 2, -2):
            x0 = min(max(0, cx - tw // 2), w - tw)
            y0 = min(max(0, cy - th // 2 + shift * (th + 2)), h - th)
            box = (x0, y0, x0 + tw, y0 + th)
            if all(box[2] <= o[0] or o[2] <= box[0] or box[3] <= o[1] or o[3] <= box[1] for o in placed.values()):
                placed[sid] = box
                break
    return placed


@lru_cache(maxsize=4)
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _anchor(mask: np.ndarray) -> tuple[int, int] | None:
    """A point well inside the mask (the pixel farthest from its box's border among a coarse grid
    of mask pixels near the centroid); ``None`` for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    cy, cx = ys.mean(), xs.mean()
    best = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(xs[best]), int(ys[best])


def compose(
    image: np.ndarray,
    result: PanopticResult | None,
    labels: Mapping[int, str],
    colors: Mapping[int, tuple[int, int, int]],
    overlay: Overlay = Overlay(),
    *,
    candidate: np.ndarray | None = None,
    points: Sequence[tuple[float, float, int]] = (),
    box: tuple[float, float, float, float] | None = None,
    scale: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """The image with the result drawn over it, at the image's size.

    :param image: ``(h, w, 3)`` uint8 RGB, the display image (any size).
    :param result: the result (any size; its map is resized to the image, nearest).
    :param candidate: ``(h', w')`` bool mask a prompt proposed (drawn in :data:`CANDIDATE_RGB`).
    :param points: clicks ``(x, y, label)`` in result pixels; ``scale`` maps them to the image.
    :param box: a box ``(x0, y0, x1, y1)`` in result pixels.
    :param scale: ``(sx, sy)`` display pixels per result pixel.
    :return: ``(h, w, 3)`` uint8.
    """
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    out = image.astype(np.float32)
    shown: list[int] = []
    if result is not None and result.segments:
        ids = nearest(np.asarray(result.panoptic_map), h, w)
        lut = np.zeros((int(ids.max(initial=0)) + 1, 3), np.float32)
        alpha = np.zeros(len(lut), np.float32)
        for seg in result.segments:
            if result.category_of(seg).name in overlay.hidden:
                continue
            shown.append(seg.id)
            lut[seg.id] = colors[seg.id]
            alpha[seg.id] = overlay.opacity
        if overlay.selected:
            dim = np.isin(np.arange(len(lut)), overlay.selected, invert=True)
            alpha[dim] *= 0.35
            alpha[list(s for s in overlay.selected if s < len(lut))] = max(overlay.opacity, 0.6)
        a = alpha[ids][..., None]
        out = out * (1 - a) + lut[ids] * a
        if overlay.outlines:
            edge = _boundaries(ids) & (alpha[ids] > 0)
            out[edge] = lut[ids][edge]
            if overlay.selected:
                # A white band inside the selection's edge with a black one outside it: seen on any colour.
                inside = np.isin(ids, overlay.selected)
                edge = _boundaries(inside.astype(np.int8))
                band = _grow(edge, max(1, min(h, w) // 240))
                out[band & ~inside] = (0, 0, 0)
                out[band & inside] = (255, 255, 255)
    if candidate is not None:
        cand = nearest(candidate.astype(np.uint8), h, w).astype(bool)
        out[cand] = out[cand] * 0.45 + np.array(CANDIDATE_RGB, np.float32) * 0.55
        out[_boundaries(cand.astype(np.int32)) & cand] = CANDIDATE_RGB
    canvas = Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    if result is not None and overlay.names and shown:
        font = _font(_font_size(w))
        for sid, (x0, y0, _, _) in label_boxes((h, w), result, labels, shown, overlay.selected).items():
            left, top, _, _ = draw.textbbox((0, 0), labels[sid], font=font, stroke_width=2)
            draw.text((x0 - left, y0 - top), labels[sid], fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    sx, sy = scale
    if box is not None:
        x0, y0, x1, y1 = box
        draw.rectangle((x0 * sx, y0 * sy, x1 * sx, y1 * sy), outline=CANDIDATE_RGB, width=2)
    for x, y, label in points:
        cx, cy, r = x * sx, y * sy, 5
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=POSITIVE_RGB if label else NEGATIVE_RGB, outline=(255, 255, 255), width=2)
    return np.asarray(canvas)
