"""What the page shows, made from a result: labels, colours, the composite image (segments, outlines,
names, selection, the prompt being drawn), the segment table and the texts under the image.

Pure functions of their arguments (numpy and Pillow only; no gradio). The drawing itself (:func:`compose`,
:class:`Overlay`, :func:`instance_rgb`, :func:`label_boxes`, :func:`nearest`) lives in :mod:`ovpanoptic.drawing`,
re-exported here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ..drawing import (
    Overlay,
    compose,
    instance_rgb,
    label_boxes,
    nearest,
)
from ..types import PanopticResult

__all__ = [
    "TABLE_HEADERS",
    "Overlay",
    "compose",
    "instance_rgb",
    "nearest",
    "area_text",
    "label_boxes",
    "legend_html",
    "plural",
    "segment_colors",
    "segment_labels",
    "table_rows",
]

#: Columns of the segment table: a mark on the selected rows, then ``id`` (the segment id of the
#: COCO-panoptic PNG and JSON), label, class, kind, score, area.
TABLE_HEADERS: tuple[str, ...] = ("✓", "id", "segment", "class", "kind", "score", "area")
#: The mark of a selected row.
SELECTED_MARK = "✓"


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 segment"``, ``"2 segments"``."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"


def segment_labels(result: PanopticResult, numbers: dict[tuple[int, int], int] | None = None) -> dict[int, str]:
    """Segment id -> label: the class name for stuff, ``"name #k"`` for instance ``k`` of a thing.

    :param numbers: ``(segment id, category id) -> k`` kept by the caller (the demo's session):
        a thing keeps its number through edits (deleting ``car #1`` leaves ``car #2`` as it is) and
        a new one gets the class's highest number so far + 1; new numbers are added to it. Without
        it, instances are numbered in id order.
    """
    numbers = {} if numbers is None else numbers
    highest: dict[int, int] = {}
    for (_, cid), k in numbers.items():
        highest[cid] = max(highest.get(cid, 0), k)
    labels: dict[int, str] = {}
    used: set[str] = set()
    for seg in result.segments:
        name = result.category_of(seg).name
        if seg.isthing:
            key = (seg.id, seg.category_id)
            if key not in numbers:
                highest[seg.category_id] = numbers[key] = highest.get(seg.category_id, 0) + 1
            label = f"{name} #{numbers[key]}"
        else:
            label = name
        if label in used:  # a class literally named like another's instance label
            label = f"{label} (segment {seg.id})"
        used.add(label)
        labels[seg.id] = label
    return labels


def segment_colors(result: PanopticResult, labels: Mapping[int, str] | None = None) -> dict[int, tuple[int, int, int]]:
    """Segment id -> RGB: the class's display colour for stuff, and for instance ``k`` of a thing
    (its number in ``labels``, else its rank in id order) :func:`instance_rgb`."""
    colors: dict[int, tuple[int, int, int]] = {}
    counts: dict[int, int] = {}
    for seg in result.segments:
        base = result.category_of(seg).display_color
        if seg.isthing:
            counts[seg.category_id] = counts.get(seg.category_id, 0) + 1
            k = counts[seg.category_id]
            if labels is not None and "#" in labels.get(seg.id, ""):
                try:
                    k = int(labels[seg.id].rsplit("#", 1)[1].split()[0])
                except ValueError:
                    pass
            colors[seg.id] = instance_rgb(base, k)
        else:
            colors[seg.id] = tuple(base)  # type: ignore[assignment]
    return colors


def legend_html(result: PanopticResult, hidden: Collection[str] = frozenset(), colors: Mapping[int, tuple[int, int, int]] | None = None) -> str:
    """The colour legend of the classes shown: one swatch per class (per instance for things),
    the class name and how many segments it has; ``""`` when no class is shown."""
    import html

    colors = colors if colors is not None else segment_colors(result)
    by_class: dict[str, list[int]] = {}
    for seg in result.segments:
        name = result.category_of(seg).name
        if name not in hidden:
            by_class.setdefault(name, []).append(seg.id)
    items = []
    for name, ids in by_class.items():
        swatches = "".join(
            f"<span class='ovp-swatch' style='background:rgb{colors[i]}'></span>" for i in ids[:LEGEND_SWATCHES]
        )
        items.append(f"<span class='ovp-legend-item'>{swatches} {html.escape(name)} ({len(ids)})</span>")
    return f"<div class='ovp-legend'>{''.join(items)}</div>" if items else ""


#: Swatches per class in the legend (a class with more instances shows the first ones).
LEGEND_SWATCHES = 6


def area_text(area: int, total: float) -> str:
    """``"12.50 %"``, or the pixels where the percentage would round to 0 (``"37 px"``)."""
    percent = 100.0 * area / total if total else 0.0
    return f"{percent:.2f} %" if round(percent, 2) > 0 else f"{area} px"


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
            area_text(seg.area, total),
        ]
        for seg in sorted(result.segments, key=lambda s: (-s.area, s.id))
    ]


def hidden_classes(result: PanopticResult, shown: Collection[str]) -> frozenset[str]:
    """The class names of ``result`` not in ``shown``."""
    return frozenset(result.category_of(s).name for s in result.segments) - set(shown)
