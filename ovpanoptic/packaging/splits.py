"""Deterministic train/val/test splits that keep every class in every split where possible."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["SPLIT_NAMES", "Splits", "make_splits", "parse_fractions"]

#: The splits, in order.
SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"80,10,10"`` -> ``(0.8, 0.1, 0.1)``.

    :raises InputError: not three non-negative numbers summing to 100.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or any(v < 0 for v in values) or abs(sum(values) - 100.0) > 1e-6 or values[0] == 0:
        raise InputError(f"--splits takes three percentages TRAIN,VAL,TEST that sum to 100 with TRAIN > 0 (e.g. 80,10,10), got {text!r}")
    return values[0] / 100.0, values[1] / 100.0, values[2] / 100.0


@dataclass(frozen=True)
class Splits:
    """``{split: image names}`` and the classes a split lacks (``{split: class names}``)."""

    images: Mapping[str, tuple[str, ...]]
    missing: Mapping[str, tuple[str, ...]]

    def split_of(self, name: str) -> str:
        for split, names in self.images.items():
            if name in names:
                return split
        raise KeyError(name)


def _sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Images per split: rounded, summing to ``n``, at least one per non-empty fraction when ``n`` allows."""
    sizes = [int(round(n * f)) for f in fractions]
    for k, f in enumerate(fractions):
        if f > 0 and sizes[k] == 0 and n >= sum(1 for x in fractions if x > 0):
            sizes[k] = 1
    while sum(sizes) > n:
        k = max(range(len(sizes)), key=lambda i: sizes[i])
        sizes[k] -= 1
    sizes[0] += n - sum(sizes)
    return sizes


def make_splits(
    classes_of: Mapping[str, frozenset[str]], fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0
) -> Splits:
    """Assign images to splits: the same inputs and seed give the same splits.

    The names are sorted and shuffled with ``seed``; then, rarest class first, each split that has
    room and lacks the class takes the first unassigned image holding it; the rest fill the splits
    in shuffled order. A class with fewer images than splits cannot be in every split: it is listed
    in :attr:`Splits.missing`.

    :param classes_of: ``{image name: class names in it}``.
    """
    names = sorted(classes_of)
    random.Random(seed).shuffle(names)
    sizes = _sizes(len(names), fractions)
    assigned: dict[str, str] = {}
    members: dict[str, list[str]] = {s: [] for s in SPLIT_NAMES}
    images_of: dict[str, list[str]] = {}
    for name in names:
        for cls in sorted(classes_of[name]):
            images_of.setdefault(cls, []).append(name)
    for cls in sorted(images_of, key=lambda c: (len(images_of[c]), c)):
        for split, size in zip(SPLIT_NAMES, sizes, strict=True):
            if len(members[split]) >= size or any(cls in classes_of[m] for m in members[split]):
                continue
            free = next((n for n in images_of[cls] if n not in assigned), None)
            if free is None:
                break
            assigned[free] = split
            members[split].append(free)
    for name in names:
        if name in assigned:
            continue
        split = next(s for s, size in zip(SPLIT_NAMES, sizes, strict=True) if len(members[s]) < size)
        assigned[name] = split
        members[split].append(name)
    images = {s: tuple(n for n in names if assigned[n] == s) for s in SPLIT_NAMES}
    missing = {
        s: tuple(sorted(c for c in images_of if not any(c in classes_of[n] for n in images[s])))
        for s, size in zip(SPLIT_NAMES, sizes, strict=True) if size > 0
    }
    return Splits(images, {s: m for s, m in missing.items() if m})
