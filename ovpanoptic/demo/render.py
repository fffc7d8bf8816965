"""What the page shows, made from a result: labels, colours, the composite image (segments, outlines,
names, selection, the prompt being drawn), the segment table and the texts under the image.

Pure functions of their arguments (numpy and Pillow only; no gradio).
"""

from __future__ import annotations

import colorsys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..types import PanopticResult, nearest_indices

__all__ = [
    "TABLE_HEADERS",
    "Overlay",
    "compose",
    "nearest",
    "plural",
    "segment_colors",
    "segment_labels",
    "table_rows",
]

#: Columns of the segment table: a mark on the selected rows, then ``id`` (the segment id of the
#: COCO-panoptic PNG and JSON), label, class, kind, score, area.
TABLE_HEADERS: tuple[str, ...] = ("✓", "id", "segment", "class", "kind", "score", "area %")
#: The mark of a selected row.
SELECTED_MARK = "✓"
#: Colour of the mask a prompt proposes (not yet a segment).
CANDIDATE_RGB = (255, 215, 0)
#: Colours of positive / negative clicks.
POSITIVE_RGB = (0, 200, 0)
NEGATIVE_RGB = (230, 0, 0)


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 segment"``, ``"2 segments"``."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"


def instance_rgb(base: tuple[int, int, int], instance: int) -> tuple[int, int, int]:
    """Instance ``k`` (1-based) of a thing class: the class colour, shifted in hue and value."""
    if instance <= 1:
        return base
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in base))
    shift = ((instance - 1) % 5 + 1) * 0.09 * (1 if instance % 2 else -1)
    h = (h + shift / 3) % 1.0
    v = min(1.0, max(0.35, v + shift))
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def segment_labels(result: PanopticResult) -> dict[int, str]:
    """Segment id -> label: the class name for stuff, ``"name #k"`` for the k-th instance of a thing
    (in id order)."""
    counts: dict[int, int] = {}
    labels: dict[int, str] = {}
    used: set[str] = set()
    for seg in result.segments:
        name = result.category_of(seg).name
        if seg.isthing:
            counts[seg.category_id] = counts.get(seg.category_id, 0) + 1
            label = f"{name} #{counts[seg.category_id]}"
        else:
            label = name
        if label in used:  # a class literally named like another's instance label
            label = f"{label} (segment {seg.id})"
        used.add(label)
        labels[seg.id] = label
    return labels


def segment_colors(result: PanopticResult) -> dict[int, tuple[int, int, int]]:
    """Segment id -> RGB: the class's display colour, varied per instance of a thing."""
    colors: dict[int, tuple[int, int, int]] = {}
    counts: dict[int, int] = {}
    for seg in result.segments:
        base = result.category_of(seg).display_color
        if seg.isthing:
            counts[seg.category_id] = counts.get(seg.category_id, 0) + 1
            colors[seg.id] = instance_rgb(base, counts[seg.category_id])
        else:
            colors[seg.id] = tuple(base)  # type: ignore[assignment]
    return colors


def nearest(panoptic_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an id map or mask, by the rule of
    :meth:`~ovpanoptic.types.PanopticResult.resized` (:func:`~ovpanoptic.types.nearest_indices`)."""
    h, w = panoptic_map.shape
    if (h, w) == (height, width):
        return panoptic_map
    return panoptic_map[nearest_indices(height, h)[:, None], nearest_indices(width, w)[None, :]]


def table_rows(result: PanopticResult, labels: Mapping[int, str], selected: Collection[int] = ()) -> list[list[Any]]:
    """Rows of :data:`TABLE_HEADERS`, largest segment first; the ``selected`` ids marked."""
    total = float(result.image_size[0] * result.image_size[1])
    return [
        [
            SELECTED_MARK if seg.id in selected else "",
            seg.id,
            labels[seg.id],
            result.category_of(seg).name,
            "thing" if seg.isthing else "stuff",
            round(seg.score, 3),
            round(100.0 * seg.area / total, 2),
        ]
        for seg in sorted(result.segments, key=lambda s: (-s.area, s.id))
    ]


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
        font = _font(max(11, min(18, w // 50)))
        small = nearest(np.asarray(result.panoptic_map), max(1, h // 4), max(1, w // 4))
        for sid in shown:
            at = _anchor(small == sid)
            if at is None:
                continue
            x, y = at[0] * 4 + 2, at[1] * 4 + 2
            draw.text((x, y), labels[sid], fill=(255, 255, 255), font=font, anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0))
    sx, sy = scale
    if box is not None:
        x0, y0, x1, y1 = box
        draw.rectangle((x0 * sx, y0 * sy, x1 * sx, y1 * sy), outline=CANDIDATE_RGB, width=2)
    for x, y, label in points:
        cx, cy, r = x * sx, y * sy, 5
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=POSITIVE_RGB if label else NEGATIVE_RGB, outline=(255, 255, 255), width=2)
    return np.asarray(canvas)


def hidden_classes(result: PanopticResult, shown: Collection[str]) -> frozenset[str]:
    """The class names of ``result`` not in ``shown``."""
    return frozenset(result.category_of(s).name for s in result.segments) - set(shown)
