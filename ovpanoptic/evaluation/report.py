"""The QA report people look at: one self-contained HTML file.

:func:`write_html_report` draws, with matplotlib (Agg backend, no display), the per-class IoU bars
against their targets, the pixel confusion heat map (rows normalised), and the worst images side
by side (first set | second set | disagreement); figures are drawn with ``matplotlib.figure.Figure``
(no pyplot, so no global figure or backend state); every picture is embedded as a ``data:`` PNG and
the styles are inline, so the file opens anywhere and asks the network for nothing.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..formats.annotations import PanopticAnnotations
from .qa import QAReport, class_maps, pct

__all__ = ["WORST_IMAGES", "render_html", "write_html_report"]

#: How many of the images to review first are drawn.
WORST_IMAGES: int = 6

#: Most classes drawn in the heat map (those with the most pixels).
_HEATMAP_CLASSES: int = 40

#: Disagreeing pixels, agreeing labelled pixels and void in the disagreement picture (RGB).
_DISAGREE = (220, 30, 30)
_AGREE = (200, 200, 200)
_VOID = (0, 0, 0)


def _figure_png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _array_png(rgb: npt.NDArray[np.uint8]) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _palette(n: int) -> npt.NDArray[np.uint8]:
    """``(n, 3)`` colours: black for void (row 0), then matplotlib's ``tab20`` cycled."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    colours = [(0, 0, 0)] + [tuple(int(255 * v) for v in cmap(k % 20)[:3]) for k in range(n - 1)]
    return np.array(colours, np.uint8)


def _bars(report: QAReport) -> str:
    from matplotlib.figure import Figure  # no pyplot: no global figure or backend state

    shown = [c for c in report.classes if c.iou is not None]
    fig = Figure(figsize=(8, max(2.0, 0.3 * len(shown) + 1)))
    ax = fig.subplots()
    names = [c.name for c in shown]
    values = [100 * (c.iou or 0.0) for c in shown]
    colours = ["#2e7d32" if c.passed else "#c62828" for c in shown]
    y = np.arange(len(shown))
    ax.barh(y, values, color=colours)
    ax.scatter([100 * c.target.target for c in shown], y, marker="|", s=300, color="black", label="target", zorder=3)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("IoU (%)")
    ax.axvline(40, color="#888", linestyle=":", linewidth=1)
    ax.legend(loc="lower right")
    ax.set_title("Per-class IoU against target (green: pass, red: below target)")
    return _figure_png(fig)


def _heatmap(report: QAReport) -> str:
    from matplotlib.figure import Figure  # no pyplot: no global figure or backend state

    matrix = report.pixel_confusion.astype(np.float64)
    keep = [0, *sorted(range(1, len(report.labels)), key=lambda k: -(matrix[k].sum() + matrix[:, k].sum()))[:_HEATMAP_CLASSES]]
    keep = [0, *sorted(k for k in keep[1:] if matrix[k].sum() + matrix[:, k].sum() > 0)]
    sub = matrix[np.ix_(keep, keep)]
    rows = sub.sum(axis=1, keepdims=True)
    norm = np.divide(sub, rows, out=np.zeros_like(sub), where=rows > 0)
    labels = [report.labels[k] for k in keep]
    size = max(4.0, 0.35 * len(keep) + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    image = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(report.second_role)
    ax.set_ylabel(report.first_role)
    ax.set_title("Pixel confusion (each row sums to 1)")
    if len(keep) <= 15:
        for i in range(len(keep)):
            for j in range(len(keep)):
                if sub[i, j]:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", color="white" if norm[i, j] < 0.6 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _figure_png(fig)


def _image_row(first: PanopticAnnotations, second: PanopticAnnotations, name: str, match_categories: str, n: int) -> tuple[str, str, str]:
    gt, pred = class_maps(first, second, name, match_categories=match_categories)
    palette = _palette(n)
    diff = np.zeros((*gt.shape, 3), np.uint8)
    labelled = (gt != 0) | (pred != 0)
    diff[labelled] = _AGREE
    diff[(gt != pred)] = _DISAGREE
    diff[~labelled] = _VOID
    return _array_png(palette[gt]), _array_png(palette[pred]), _array_png(diff)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}
td:first-child,th:first-child{text-align:left}.fail{color:#c62828;font-weight:bold}.pass{color:#2e7d32}
.triple{display:flex;gap:.5em;align-items:flex-start;margin-bottom:1em}.triple figure{margin:0}
.triple img{max-width:32vw;image-rendering:pixelated;border:1px solid #999}figcaption{font-size:.8em}
"""


def render_html(
    report: QAReport, first: PanopticAnnotations | None = None, second: PanopticAnnotations | None = None, *, match_categories: str = "id"
) -> str:
    """The report as one HTML document (see the module docstring); the worst images are drawn when
    the two sets are given (they are read again, :data:`WORST_IMAGES` of them)."""
    ap = report.mask_ap
    summary = _table(
        ["measure", "value"],
        [
            ["images", len(report.images)],
            ["PQ (%)", pct(report.agreement.report.all.pq)],
            ["mIoU (%)", pct(report.miou)],
            ["mask AP[.50:.95] (%)", pct(ap.ap)],
            ["mask AP50 / AP75 / AP95 (%)", f"{pct(ap.ap50)} / {pct(ap.ap75)} / {pct(ap.ap95)}"],
            ["classes meeting target (%)", pct(report.pass_rate)],
            ["images to review", len(report.review)],
        ],
    )
    class_rows = [
        [c.name, c.target.kind, pct(c.target.target), pct(c.iou), "n/a" if c.passed is None else ("pass" if c.passed else "FAIL"),
         "yes" if c.low else "", pct(c.pq), pct(c.ap), ", ".join(c.worst_images)]
        for c in report.classes
    ]
    classes = _table(["class", "kind", "target", "IoU", "result", "IoU < 40", "PQ", "AP", "calibrate on"], class_rows)
    classes = classes.replace("<td>FAIL</td>", '<td class="fail">FAIL</td>').replace("<td>pass</td>", '<td class="pass">pass</td>')
    images = _table(
        ["image", "PQ", "mIoU", "pixel agreement", "TP", "FP", "FN", "classes that differ"],
        [[i.name, pct(i.pq), pct(i.miou), pct(i.pixel_agreement), i.tp, i.fp, i.fn, ", ".join(i.changed)] for i in report.images[:50]],
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>ovpanoptic QA report</title>',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Label QA report ({html.escape(report.mode)})</h1>",
        f"<p>{html.escape(report.first_role)}: <code>{html.escape(report.first)}</code><br>"
        f"{html.escape(report.second_role)}: <code>{html.escape(report.second)}</code></p>",
        summary,
        "<h2>Per-class IoU against targets</h2>",
        f'<img id="bars" alt="per-class IoU bars" src="{_bars(report)}">',
        classes,
        "<h2>Class confusion</h2>",
        f'<img id="confusion" alt="pixel confusion heat map" src="{_heatmap(report)}">',
        "<h2>Images to review first</h2>",
    ]
    worst = list(report.review[:WORST_IMAGES]) or [i.name for i in report.images[:WORST_IMAGES] if i.pq is not None and i.pq < 1.0]
    if first is not None and second is not None and worst:
        for name in worst:
            a, b, d = _image_row(first, second, name, match_categories, len(report.labels))
            parts.append(f"<h3>{html.escape(name)}</h3><div class=\"triple\">")
            for src, caption in ((a, report.first_role), (b, report.second_role), (d, "disagreement (red)")):
                parts.append(f'<figure><img class="worst" alt="{html.escape(name)}: {caption}" src="{src}"><figcaption>{html.escape(caption)}</figcaption></figure>')
            parts.append("</div>")
    elif not worst:
        parts.append("<p>No image needs review.</p>")
    parts += ["<h2>Per-image scores (worst 50)</h2>", images]
    if report.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html_report(
    report: QAReport, path: str | Path, first: PanopticAnnotations | None = None, second: PanopticAnnotations | None = None, *,
    match_categories: str = "id",
) -> Path:
    """Write :func:`render_html` to ``path`` (replaced whole, never left half-written)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(report, first, second, match_categories=match_categories)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(out)
    return out
