"""Example ovpanoptic plugin: ``@FILE`` class lists and a ``segments-csv`` exporter."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ovpanoptic import PanopticResult, Vocabulary, hookimpl
from ovpanoptic.atomic import atomic_write_text
from ovpanoptic.errors import VocabularyError
from ovpanoptic.vocabulary import build_vocabulary

#: The plugin API this plugin is written for (checked when ovpanoptic loads it).
OVPANOPTIC_PLUGIN_API = "1.0"

STUFF_MARKER = "[stuff]"


def parse_class_file(text: str, stuff: str, things: str) -> Vocabulary:
    """Read the class file named by ``text`` (what followed ``@``): one class per line, ``#``
    comments, a ``[stuff]`` line before the stuff classes."""
    if not text:
        raise VocabularyError("'@' must be followed by the path of a class file, e.g. --classes @classes.txt")
    path = Path(text).expanduser()
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise VocabularyError(f"cannot read class file {path}: {exc.strerror or exc}") from None
    listed: list[str] = []
    flagged_stuff: list[str] = []
    target = listed
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.lower() == STUFF_MARKER:
            target = flagged_stuff
            continue
        target.append(line)
    if not listed and not flagged_stuff:
        raise VocabularyError(f"class file {path} lists no classes (one per line, '#' for comments)")
    extra_stuff = ", ".join(s for s in (stuff, ", ".join(flagged_stuff)) if s.strip())
    return build_vocabulary(", ".join(listed), extra_stuff, things, name=path.stem)


@hookimpl
def register_vocabulary_parsers(register) -> None:  # type: ignore[no-untyped-def]
    """Class lists starting with ``@`` are class files (and nothing else is claimed)."""
    register("@", parse_class_file, description="@FILE: one class per line, [stuff] before stuff classes")


class SegmentsCSVExporter:
    """Writes ``<stem>.segments.csv``: one row per segment."""

    def __init__(self, config: object, context: object) -> None:
        self.config = config

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["id", "class", "kind", "score", "area", "x0", "y0", "x1", "y1"])
        for s in result.segments:
            writer.writerow(
                [s.id, result.category_of(s).name, "thing" if s.isthing else "stuff", f"{s.score:.4f}", s.area, *s.bbox_xyxy]
            )
        return [atomic_write_text(Path(outdir) / f"{stem}.segments.csv", buf.getvalue())]


@hookimpl
def register_exporters(register) -> None:  # type: ignore[no-untyped-def]
    register("segments-csv", SegmentsCSVExporter, description="one CSV row per segment (example plugin)")
