"""What a format's detection rule looks at: a path, and for a file its first bytes and its JSON.

:func:`ovpanoptic.formats.detect.detect_format` builds one :class:`Probe` per path and asks each
format module's ``detect(probe)`` in turn; the file is read at most once, lazily.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = ["HEAD_BYTES", "Probe"]

#: Bytes of a file a rule may look at without parsing it.
HEAD_BYTES = 1 << 16


@dataclass(frozen=True)
class Probe:
    """A path as the detection rules see it.

    :param path: an existing file or folder.
    """

    path: Path

    @property
    def is_file(self) -> bool:
        return self.path.is_file()

    @property
    def suffix(self) -> str:
        """The file's extension, lower case (``".json"``)."""
        return self.path.suffix.lower()

    @cached_property
    def head(self) -> bytes:
        """The file's first :data:`HEAD_BYTES`, leading white space removed (``b""`` when unreadable)."""
        try:
            with self.path.open("rb") as handle:
                return handle.read(HEAD_BYTES).lstrip()
        except OSError:
            return b""

    @cached_property
    def json(self) -> Any:
        """The file parsed as JSON, or ``None`` when it is not JSON (or unreadable)."""
        try:
            return json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError, RecursionError):
            return None

    def json_object(self) -> bool:
        """Whether the file is a ``.json`` whose content starts as an object (``{``)."""
        return self.is_file and self.suffix == ".json" and self.head.startswith(b"{")
