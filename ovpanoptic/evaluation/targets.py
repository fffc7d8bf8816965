"""Per-class IoU targets by kind of object, for the QA report's pass/fail.

A class has a *kind*: ``rigid`` (large rigid objects, target 85 %), ``deformable`` (75 %), ``thin``
(thin structures, 70 %), or a number (its own target in percent). The kind comes, first match wins,
from the targets file (``ovpanoptic qa --targets FILE``), then from the vocabulary (a category's
``kind``), then from the file's ``default`` (``rigid`` unless the file says otherwise).

The targets file is TOML or JSON::

    default = "deformable"          # kind of the classes named nowhere (default: "rigid")
    [kinds]                         # change a kind's target (percent)
    thin = 65
    [classes]                       # a class's kind or its own target
    forklift = "rigid"
    "cable tray" = "thin"
    pallet = 80

Class names compare ignoring case and repeated spaces.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import EvaluationError

__all__ = ["DEFAULT_KIND", "KIND_TARGETS", "LOW_IOU", "ClassTarget", "Targets", "check_kind", "load_targets"]

#: The targets (IoU, fractions) of the named kinds.
KIND_TARGETS: Mapping[str, float] = MappingProxyType({"rigid": 0.85, "deformable": 0.75, "thin": 0.70})

#: The kind of a class that neither the targets file nor the vocabulary names.
DEFAULT_KIND: str = "rigid"

#: A class IoU below this is flagged as unusually low (too few examples, unclear guidelines, or a
#: class systematically labelled as another: read the confusion table).
LOW_IOU: float = 0.40


def _key(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def check_kind(value: object, where: str) -> str | float:
    """A kind as given (``"rigid"``, ``"deformable"``, ``"thin"``) or a target in percent as a fraction.

    :raises EvaluationError: anything else (the message lists what is allowed).
    """
    if isinstance(value, str) and value.strip().casefold() in KIND_TARGETS:
        return value.strip().casefold()
    if isinstance(value, int | float) and not isinstance(value, bool) and 1 <= value <= 100:
        return float(value) / 100.0
    raise EvaluationError(
        f"{where}: kind {value!r} is not one of {', '.join(KIND_TARGETS)} or a target IoU in percent (1 to 100, "
        "e.g. 80): fix the value"
    )


@dataclass(frozen=True)
class ClassTarget:
    """The target of one class: its kind (``"number"`` for a class's own target), the target IoU
    (a fraction) and where the kind came from (``"targets file"``, ``"vocabulary"``, ``"default"``)."""

    kind: str
    target: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "source": self.source}


@dataclass(frozen=True)
class Targets:
    """Kinds and targets for every class.

    :param kinds: the target of each named kind (fractions).
    :param classes: ``{class name: kind or target fraction}`` from a targets file.
    :param vocabulary: ``{class name: kind or target fraction}`` from the vocabulary's categories.
    :param default: the kind (or target) of the other classes.
    """

    kinds: Mapping[str, float] = field(default_factory=lambda: dict(KIND_TARGETS))
    classes: Mapping[str, str | float] = field(default_factory=dict)
    vocabulary: Mapping[str, str | float] = field(default_factory=dict)
    default: str | float = DEFAULT_KIND
    #: the targets file, for messages
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", MappingProxyType(dict(self.kinds)))
        object.__setattr__(self, "classes", MappingProxyType({_key(k): v for k, v in self.classes.items()}))
        object.__setattr__(self, "vocabulary", MappingProxyType({_key(k): v for k, v in self.vocabulary.items()}))

    def _resolve(self, kind: str | float, source: str) -> ClassTarget:
        if isinstance(kind, str):
            return ClassTarget(kind, float(self.kinds[kind]), source)
        return ClassTarget("number", float(kind), source)

    def for_class(self, name: str) -> ClassTarget:
        """The target of the class called ``name``."""
        key = _key(name)
        if key in self.classes:
            return self._resolve(self.classes[key], "targets file")
        if key in self.vocabulary:
            return self._resolve(self.vocabulary[key], "vocabulary")
        return self._resolve(self.default, "default")

    def check_classes(self, names: Iterable[str], where: str) -> None:
        """Refuse a ``[classes]`` entry that names none of ``names`` (the classes of the labels).

        :param where: the labels, for the message.
        :raises EvaluationError: naming the entry, the close match and the classes.
        """
        known = {_key(n): str(n) for n in names}
        for key in self.classes:
            if key in known:
                continue
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" Did you mean {known[close[0]]!r}?" if close else ""
            shown = ", ".join(sorted(known.values())[:20]) + (" ..." if len(known) > 20 else "")
            raise EvaluationError(
                f"targets file {self.source or '(--targets)'}: [classes] {key!r} is not a class of {where}.{hint} "
                f"The classes are: {shown or '(none)'}. Fix the name in the targets file or remove it"
            )

    def with_vocabulary(self, kinds: Mapping[str, object]) -> Targets:
        """These targets with the vocabulary's ``{class name: kind}`` (``None`` kinds skipped)."""
        checked = {name: check_kind(kind, f"vocabulary class {name!r}") for name, kind in kinds.items() if kind is not None}
        return Targets(self.kinds, self.classes, checked, self.default, self.source)


def load_targets(path: str | Path) -> Targets:
    """Read a targets file (TOML or JSON, see the module docstring).

    :raises EvaluationError: a missing or malformed file, an unknown key or kind.
    """
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        raise EvaluationError(f"targets file {p} does not exist: give an existing TOML or JSON file with --targets") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"cannot read targets file {p}: {exc}") from None
    try:
        data: Any = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise EvaluationError(f"targets file {p} is not valid {'JSON' if p.suffix.lower() == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"targets file {p} must hold a table (default, kinds, classes)")
    unknown = sorted(set(data) - {"default", "kinds", "classes"})
    if unknown:
        raise EvaluationError(f"targets file {p}: unknown key(s) {', '.join(unknown)}; allowed: default, kinds, classes")
    kinds = dict(KIND_TARGETS)
    given_kinds = data.get("kinds", {})
    if not isinstance(given_kinds, dict):
        raise EvaluationError(f"targets file {p}: 'kinds' must be a table of kind = percent")
    for kind, value in given_kinds.items():
        if kind not in KIND_TARGETS:
            raise EvaluationError(f"targets file {p}: unknown kind {kind!r} in [kinds]; the kinds are {', '.join(KIND_TARGETS)}")
        checked = check_kind(value, f"targets file {p} [kinds] {kind}")
        if isinstance(checked, str):
            raise EvaluationError(f"targets file {p}: [kinds] {kind} must be a target in percent (1 to 100), got {value!r}")
        kinds[kind] = checked
    classes = data.get("classes", {})
    if not isinstance(classes, dict):
        raise EvaluationError(f"targets file {p}: 'classes' must be a table of class name = kind or percent")
    default = check_kind(data.get("default", DEFAULT_KIND), f"targets file {p} default")
    return Targets(kinds, {name: check_kind(v, f"targets file {p} class {name!r}") for name, v in classes.items()}, {}, default, str(p))
