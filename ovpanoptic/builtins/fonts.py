"""Fonts for overlay labels in any script.

detectron2's Visualizer draws labels with matplotlib's default sans-serif font (DejaVu Sans), which
has no CJK, Thai, Devanagari, ... glyphs: such labels would come out as empty boxes.
:class:`LabelFonts` looks through the fonts matplotlib knows (the system's and its own) for one that
has every character of a label (reading each font's character map with FreeType, once, when first
needed). When no installed font has them, the label falls back to an ASCII form of the name (accents
dropped) or ``class ID``, and the exporter warns once per name, saying what to install.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator

__all__ = ["LabelFonts", "ascii_label"]

#: Fonts that "have" every character only as placeholder boxes.
_PLACEHOLDER_FONTS = ("lastresort",)


def ascii_label(name: str, category_id: int) -> str:
    """A readable ASCII stand-in for a name no font can draw: accents dropped (``café`` ->
    ``cafe``), or ``class ID`` when nothing ASCII is left."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().strip()
    return text if any(ch.isalnum() for ch in text) else f"class {category_id}"


class LabelFonts:
    """Finds, per label, a font that can draw all its characters (results cached on the instance)."""

    def __init__(self) -> None:
        self._charmaps: dict[str, frozenset[int]] = {}
        self._families: dict[str, str | None] = {}
        self._default: frozenset[int] | None = None

    def _charmap(self, path: str) -> frozenset[int]:
        if path not in self._charmaps:
            from matplotlib.ft2font import FT2Font

            try:
                self._charmaps[path] = frozenset(FT2Font(path).get_charmap())
            except (OSError, RuntimeError, ValueError):  # an unreadable font file: it draws nothing
                self._charmaps[path] = frozenset()
        return self._charmaps[path]

    def _default_charmap(self) -> frozenset[int]:
        if self._default is None:
            from matplotlib import font_manager

            found = font_manager.findfont(font_manager.FontProperties(family=["sans-serif"]))
            self._default = self._charmap(str(getattr(found, "path", found)))
        return self._default

    def _installed(self) -> Iterator[tuple[str, str]]:
        from matplotlib import font_manager

        seen: set[str] = set()
        for entry in sorted(font_manager.fontManager.ttflist, key=lambda e: (e.name, e.fname)):
            if entry.fname in seen or any(p in entry.fname.lower() or p in entry.name.lower() for p in _PLACEHOLDER_FONTS):
                continue
            seen.add(entry.fname)
            yield entry.name, entry.fname

    @staticmethod
    def _needed(text: str) -> set[int]:
        return {ord(ch) for ch in text if not ch.isspace() and unicodedata.category(ch)[0] != "C"}

    def covers_by_default(self, text: str) -> bool:
        """Whether matplotlib's default sans-serif font has every character of ``text``."""
        return self._needed(text) <= self._default_charmap()

    def family_for(self, text: str) -> str | None:
        """The family name of an installed font that has every character of ``text`` the default
        font lacks (checked in name order), or ``None`` when the default font suffices or no font
        has them (see :meth:`can_draw`)."""
        if text not in self._families:
            missing = self._needed(text) - self._default_charmap()
            family = None
            if missing:
                family = next((name for name, path in self._installed() if missing <= self._charmap(path)), None)
            self._families[text] = family
        return self._families[text]

    def can_draw(self, text: str) -> bool:
        """Whether the default font or some installed font can draw ``text``."""
        return self.covers_by_default(text) or self.family_for(text) is not None
