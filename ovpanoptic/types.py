"""The data model: frozen, validated dataclasses passed across module and plugin boundaries.

Conventions (see also :mod:`ovpanoptic.constants`):

* images are ``(H, W, 3)`` ``uint8`` RGB arrays;
* ``masks`` are ``(N, H, W)`` ``bool`` arrays;
* ``boxes_xyxy`` are ``(N, 4)`` ``float32`` arrays ``(x_min, y_min, x_max, y_max)`` in pixels, where
  the max side is *exclusive* (a one-pixel mask at ``(x=3, y=5)`` has box ``(3, 5, 4, 6)``);
* ``panoptic_map`` is an ``(H, W)`` ``int32`` array of segment ids, :data:`~ovpanoptic.constants.VOID_ID`
  (0) meaning "no segment".
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import hashlib
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .constants import MAX_NAME_LENGTH, MAX_SEGMENT_ID, NEGATIVE_POINT, POSITIVE_POINT, VOID_ID
from .errors import InputError, VocabularyError

__all__ = [
    "Category",
    "ClassScores",
    "PanopticResult",
    "Prompt",
    "ProposalSet",
    "Segment",
    "TrackMasks",
    "Vocabulary",
    "binary_masks",
    "masks_to_boxes_xyxy",
    "nearest_indices",
    "normalize_name",
    "readonly_view",
    "size_text",
]


#: Invisible characters dropped from class names (byte-order mark, zero-width space, word joiner,
#: soft hyphen), as a ``str.translate`` table: pasted text carries them, and names would look
#: alike but differ.
INVISIBLE_CHARACTERS = dict.fromkeys(map(ord, "\ufeff\u200b\u2060\u00ad"))


def normalize_name(name: str) -> str:
    """The form class names are kept and compared in: Unicode NFKC (full-width ``ｐｅｒｓｏｎ`` ->
    ``person``, composed and decomposed ``café`` alike), invisible characters (BOM, zero-width
    space) dropped, every run of white space made one space. Names that differ only in these ways
    are the same name to a text encoder."""
    return " ".join(unicodedata.normalize("NFKC", name.translate(INVISIBLE_CHARACTERS)).split())


def size_text(size: Sequence[int]) -> str:
    """An ``(H, W)`` size (``image.shape[:2]``, ``image_size``) as every message writes it: width
    first, ``"640x480"``, the order of image viewers, Pillow and the pixel-limit messages. A
    message says ``(width x height)`` once after its sizes.
    """
    return f"{int(size[1])}x{int(size[0])}"


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise VocabularyError(f"{what} must be a string, got {type(name).__name__}")
    stripped = name.strip()
    if not stripped:
        raise VocabularyError(f"{what} is empty: give a non-empty class name")
    if len(stripped) > MAX_NAME_LENGTH:
        raise VocabularyError(
            f"{what} {stripped[:30]!r}... is {len(stripped)} characters long; the limit is "
            f"{MAX_NAME_LENGTH}: shorten it (put details in a synonym or description)"
        )
    if any(ch in stripped for ch in ",|") or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in stripped):
        raise VocabularyError(
            f"{what} {stripped!r} contains a separator (',' or '|') or a control character: "
            "separate classes with ',' and synonyms with '|' in the class list instead"
        )
    if stripped != name:
        raise VocabularyError(f"{what} {name!r} has leading or trailing spaces: strip them")
    return stripped


@dataclass(frozen=True)
class Category:
    """One class of a vocabulary.

    :param id: positive category id, unique within its vocabulary (0 is reserved for void).
    :param name: display name, also the first text prompt. Names and synonyms are kept in the form
        of :func:`normalize_name` (NFKC, single spaces).
    :param isthing: ``True`` for countable objects (each instance gets its own segment), ``False``
        for amorphous "stuff" regions (one segment per class).
    :param synonyms: extra names averaged into the class's text embedding.
    :param description: optional short phrase that helps text prompts.
    :param color: optional RGB display colour.
    :param kind: optional kind of object for label QA targets (``ovpanoptic qa``): ``"rigid"``,
        ``"deformable"``, ``"thin"``, or a target IoU in percent (1 to 100).
    """

    id: int
    name: str
    isthing: bool
    synonyms: tuple[str, ...] = ()
    description: str = ""
    color: tuple[int, int, int] | None = None
    kind: str | float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int) or self.id <= VOID_ID:
            raise VocabularyError(f"category id must be a positive integer, got {self.id!r}")
        _check_name(self.name, "class name")
        object.__setattr__(self, "name", normalize_name(self.name))
        if isinstance(self.synonyms, tuple) and all(isinstance(s, str) for s in self.synonyms):
            object.__setattr__(self, "synonyms", tuple(normalize_name(s) for s in self.synonyms))
        if not isinstance(self.isthing, bool):
            raise VocabularyError(f"isthing of {self.name!r} must be a bool, got {self.isthing!r}")
        if isinstance(self.synonyms, (str, bytes)) or not isinstance(self.synonyms, tuple):
            raise VocabularyError(f"synonyms of {self.name!r} must be a tuple of strings")
        seen = {self.name.casefold()}
        for syn in self.synonyms:
            _check_name(syn, f"synonym of {self.name!r}")
            if syn.casefold() in seen:
                raise VocabularyError(f"synonym {syn!r} of {self.name!r} is given twice: remove one")
            seen.add(syn.casefold())
        if not isinstance(self.description, str):
            raise VocabularyError(f"description of {self.name!r} must be a string")
        if self.color is not None:
            if (
                not isinstance(self.color, tuple)
                or len(self.color) != 3
                or not all(isinstance(c, int) and 0 <= c <= 255 for c in self.color)
            ):
                raise VocabularyError(f"color of {self.name!r} must be an (R, G, B) tuple of 0..255")
        if self.kind is not None and not (
            (isinstance(self.kind, str) and self.kind in ("rigid", "deformable", "thin"))
            or (isinstance(self.kind, int | float) and not isinstance(self.kind, bool) and 1 <= self.kind <= 100)
        ):
            raise VocabularyError(
                f"kind of {self.name!r} must be rigid, deformable, thin or a target IoU in percent (1 to 100), got {self.kind!r}"
            )

    @property
    def names(self) -> tuple[str, ...]:
        """The name followed by its synonyms."""
        return (self.name, *self.synonyms)

    @property
    def display_color(self) -> tuple[int, int, int]:
        """:attr:`color`, or a stable colour derived from the name (exporters and the demo use it)."""
        if self.color is not None:
            return self.color
        hue = int(hashlib.sha1(self.name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
        return round(r * 255), round(g * 255), round(b * 255)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the schema of the shipped vocabulary files)."""
        return {
            "id": self.id,
            "name": self.name,
            "isthing": self.isthing,
            "synonyms": list(self.synonyms),
            "description": self.description,
            "color": list(self.color) if self.color is not None else None,
            **({"kind": self.kind} if self.kind is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Category:
        """Build from the JSON form; unknown keys are errors."""
        known = {"id", "name", "isthing", "synonyms", "description", "color", "kind"}
        unknown = set(data) - known
        if unknown:
            raise VocabularyError(f"unknown category keys {sorted(unknown)}; allowed: {sorted(known)}")
        color = data.get("color")
        return cls(
            id=data["id"],
            name=data["name"],
            isthing=bool(data["isthing"]),
            synonyms=tuple(data.get("synonyms") or ()),
            description=data.get("description") or "",
            color=tuple(color) if color is not None else None,  # type: ignore[arg-type]
            kind=data.get("kind"),
        )


@dataclass(frozen=True)
class Vocabulary:
    """An ordered set of categories with unique ids and unique (case-insensitive) names.

    :param categories: the classes, in display order.
    :param name: a short identifier (``"custom"`` for one parsed from typed class names).
    """

    categories: tuple[Category, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        if not isinstance(self.categories, tuple) or not all(
            isinstance(c, Category) for c in self.categories
        ):
            raise VocabularyError("Vocabulary.categories must be a tuple of Category")
        if not self.categories:
            raise VocabularyError(
                "the vocabulary is empty: give at least one class name, e.g. --classes \"person, car\""
            )
        ids: dict[int, str] = {}
        owners: dict[str, str] = {}
        for cat in self.categories:
            if cat.id in ids:
                raise VocabularyError(
                    f"category id {cat.id} is used by both {ids[cat.id]!r} and {cat.name!r}"
                )
            ids[cat.id] = cat.name
            for n in cat.names:
                key = n.casefold()
                if key in owners:
                    first = owners[key]
                    detail = "" if first == cat.name else f" (in {first!r} and {cat.name!r})"
                    raise VocabularyError(
                        f"class name {n!r} appears twice{detail}; names are compared ignoring case, Unicode "
                        "width and composition, and repeated spaces: remove or rename one"
                    )
                owners[key] = cat.name

    def __len__(self) -> int:
        return len(self.categories)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.categories)

    @property
    def ids(self) -> tuple[int, ...]:
        """Category ids in order."""
        return tuple(c.id for c in self.categories)

    @property
    def names(self) -> tuple[str, ...]:
        """Category names in order."""
        return tuple(c.name for c in self.categories)

    @property
    def things(self) -> tuple[Category, ...]:
        """The thing categories."""
        return tuple(c for c in self.categories if c.isthing)

    @property
    def stuff(self) -> tuple[Category, ...]:
        """The stuff categories."""
        return tuple(c for c in self.categories if not c.isthing)

    def by_id(self, category_id: int) -> Category:
        """The category with this id; ``KeyError`` naming the valid ids if there is none."""
        for c in self.categories:
            if c.id == category_id:
                return c
        raise KeyError(f"no category with id {category_id} in vocabulary {self.name!r}")

    def index_of(self, category_id: int) -> int:
        """Column index of a category id (its position in :attr:`categories`)."""
        for i, c in enumerate(self.categories):
            if c.id == category_id:
                return i
        raise KeyError(f"no category with id {category_id} in vocabulary {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "categories": [c.to_dict() for c in self.categories]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        """Build from the JSON form of the shipped vocabulary files."""
        if "categories" not in data:
            raise VocabularyError("a vocabulary file needs a 'categories' list")
        return cls(
            categories=tuple(Category.from_dict(c) for c in data["categories"]),
            name=str(data.get("name", "custom")),
        )


def readonly_view(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (copied first only when it is not C-contiguous).

    The view's memory comes from a read-only ``memoryview``, so, unlike ``view.flags.writeable =
    False`` alone, nobody holding the view can turn writing back on (numpy refuses to set
    ``WRITEABLE``). The array passed in keeps its own flags.
    """
    out = np.ascontiguousarray(array)
    if out.size == 0 or not out.flags.writeable:
        out = out.view()
        out.flags.writeable = False
        return out
    return np.frombuffer(memoryview(out).toreadonly(), dtype=out.dtype).reshape(out.shape)



def _describe(value: object) -> str:
    """``(4, 4) float64`` for an array, the type's name otherwise (for messages)."""
    if isinstance(value, np.ndarray):
        return f"{value.shape} {value.dtype}"
    return f"a {type(value).__name__}"


def binary_masks(masks: Any, threshold: float | None = None, what: str = "masks") -> np.ndarray:
    """The one rule for masks handed over in another dtype than bool (``ProposalSet.from_masks``,
    ``TrackMasks.from_dict``):

    * ``threshold`` given: a pixel is inside where the value is ``> threshold`` (0.5 for
      probabilities, 0.0 for logits), whatever the numeric dtype;
    * otherwise bool masks are taken as they are, integer masks (0/1, 0/255) are inside where
      non-zero, and float masks only when every value is exactly 0 or 1. Soft float masks
      (probabilities, logits) are refused: making every non-zero pixel ``True`` would turn a
      probability map into a mask of the whole image.

    :raises ValueError: soft float masks without ``threshold``, NaN values, a non-numeric dtype, or
        a threshold that is not a finite number (the message says how to fix it).
    """
    arr = np.asarray(masks)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) or not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number (0.5 for probabilities, 0.0 for logits), got {threshold!r}")
        if arr.dtype == np.bool_:
            return arr
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be a bool (or numeric) array, got {_describe(arr)}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{what} contain NaN: a mask pixel is inside or not")
    if threshold is not None:
        return np.asarray(arr > threshold)
    if arr.dtype.kind == "f" and not ((arr == 0) | (arr == 1)).all():
        low, high = float(arr.min()), float(arr.max())
        raise ValueError(
            f"{what} are soft {arr.dtype} masks with values from {low:g} to {high:g}, not 0/1: say where a pixel is "
            "inside with threshold= (0.5 for probabilities, 0.0 for logits), or pass bool masks (masks > 0.5)"
        )
    return arr if arr.dtype == np.bool_ else arr != 0


def nearest_indices(size: int, source: int) -> np.ndarray:
    """Nearest-neighbour resampling of one axis from ``source`` to ``size`` samples: output ``i``
    takes input ``i * source // size`` (the rule of every mask and map resize in this module)."""
    return np.minimum((np.arange(size) * source) // size, source - 1)


def masks_to_boxes_xyxy(masks: np.ndarray) -> np.ndarray:
    """Tight boxes of ``(N, H, W)`` bool masks as ``(N, 4)`` float32 XYXY, max side exclusive.

    An empty mask gets the box ``(0, 0, 0, 0)``.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    n = masks.shape[0]
    boxes = np.zeros((n, 4), dtype=np.float32)
    if n == 0:
        return boxes
    rows = masks.any(axis=2)  # (N, H)
    cols = masks.any(axis=1)  # (N, W)
    nonempty = rows.any(axis=1)
    y0 = rows.argmax(axis=1)
    y1 = rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = cols.shape[1] - cols[:, ::-1].argmax(axis=1)
    boxes[:] = np.stack([x0, y0, x1, y1], axis=1)
    boxes[~nonempty] = 0
    return boxes


@dataclass(frozen=True, eq=False)
class ProposalSet:
    """Class-agnostic mask proposals for one image.

    :param masks: ``(N, H, W)`` bool masks at the image's resolution.
    :param boxes_xyxy: ``(N, 4)`` float32 boxes, see the module docstring.
    :param scores: ``(N,)`` float32 quality scores (higher is better).
    """

    masks: np.ndarray
    boxes_xyxy: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        m, b, s = self.masks, self.boxes_xyxy, self.scores
        if not isinstance(m, np.ndarray) or m.ndim != 3 or m.dtype != np.bool_:
            hint = " (ProposalSet.from_masks(masks, scores, threshold=0.5) turns soft masks into bool ones)" if isinstance(m, np.ndarray) and m.dtype.kind == "f" else ""
            raise ValueError(
                f"ProposalSet.masks must be an (N, H, W) bool array, got {_describe(m)}{hint}"
            )
        n = m.shape[0]
        if not isinstance(b, np.ndarray) or b.shape != (n, 4) or b.dtype != np.float32:
            raise ValueError(
                f"ProposalSet.boxes_xyxy must be ({n}, 4) float32, got {_describe(b)}"
            )
        if not isinstance(s, np.ndarray) or s.shape != (n,) or s.dtype != np.float32:
            raise ValueError(
                f"ProposalSet.scores must be ({n},) float32, got {_describe(s)}"
            )
        if not np.isfinite(s).all() or not np.isfinite(b).all():
            raise ValueError("ProposalSet scores and boxes must be finite")
        object.__setattr__(self, "masks", readonly_view(m))
        object.__setattr__(self, "boxes_xyxy", readonly_view(b))
        object.__setattr__(self, "scores", readonly_view(s))

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the masks."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @functools.cached_property
    def areas(self) -> np.ndarray:
        """``(N,)`` int64 pixel counts of the masks (computed once)."""
        h, w = self.image_size
        areas = np.count_nonzero(self.masks.reshape(len(self), h * w), axis=1).astype(np.int64)
        areas.flags.writeable = False
        return areas

    @functools.cached_property
    def windows(self) -> tuple[tuple[slice, slice], ...]:
        """Per mask, the ``(rows, columns)`` slices of its tight box (computed once from the masks,
        so a generator's own ``boxes_xyxy`` need not be tight); empty slices for empty masks."""
        boxes = masks_to_boxes_xyxy(self.masks).astype(np.int64)
        return tuple((slice(int(y0), int(y1)), slice(int(x0), int(x1))) for x0, y0, x1, y1 in boxes)

    def resized(self, height: int, width: int) -> ProposalSet:
        """Masks resized (nearest neighbour, the rule of :meth:`PanopticResult.resized`, so both
        line up on the same image) to ``height x width``; boxes recomputed tight; scores kept.
        Masks that shrinking empties are kept (empty, box ``(0, 0, 0, 0)``)."""
        if height < 1 or width < 1:
            raise ValueError(f"cannot resize proposals to {size_text((height, width))} (width x height)")
        h, w = self.image_size
        if (height, width) == (h, w):
            return self
        rows, cols = nearest_indices(height, h), nearest_indices(width, w)
        masks = np.take(np.take(self.masks, rows, axis=1), cols, axis=2)
        row_count, col_count = np.bincount(rows, minlength=h), np.bincount(cols, minlength=w)
        if row_count.min() == 0 or col_count.min() == 0:  # shrinking drops rows/columns: measure
            return ProposalSet.from_masks(masks, self.scores)
        # Growing: small row r becomes big rows [start[r], start[r + 1]), so boxes map exactly
        # (measuring them on a 12-megapixel stack would take ~0.1 s per mask).
        row_start = np.concatenate(([0], np.cumsum(row_count)))
        col_start = np.concatenate(([0], np.cumsum(col_count)))
        small = masks_to_boxes_xyxy(self.masks).astype(np.int64)
        boxes = np.stack(
            [col_start[small[:, 0]], row_start[small[:, 1]], col_start[small[:, 2]], row_start[small[:, 3]]], axis=1
        ).astype(np.float32)
        return ProposalSet(masks, boxes, self.scores)

    @classmethod
    def from_masks(
        cls, masks: np.ndarray, scores: Sequence[float] | np.ndarray | None = None, *, threshold: float | None = None
    ) -> ProposalSet:
        """Build from masks (boxes computed tightly); scores default to 1.

        :param masks: ``(N, H, W)`` masks: bool, 0/1 or 0/255 integers, floats that are exactly 0 or
            1, or soft masks (probabilities, logits) with ``threshold`` (see :func:`binary_masks`).
        :param threshold: a pixel is inside where its value is ``> threshold`` (0.5 for
            probabilities, 0.0 for logits).
        :raises ValueError: soft float masks without ``threshold`` (or as :meth:`__init__`).
        """
        masks = binary_masks(masks, threshold, "ProposalSet.from_masks masks")
        n = masks.shape[0] if masks.ndim == 3 else -1
        sc = np.ones(max(n, 0), np.float32) if scores is None else np.asarray(scores, np.float32)
        return cls(masks=masks, boxes_xyxy=masks_to_boxes_xyxy(masks), scores=sc)

    @classmethod
    def empty(cls, height: int, width: int) -> ProposalSet:
        """A set with no proposals for an ``height x width`` image."""
        return cls(
            masks=np.zeros((0, height, width), bool),
            boxes_xyxy=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
        )


def _numbers(value: object, what: str, example: str) -> np.ndarray:
    """``value`` as a numeric array, or an :class:`InputError` saying how to write it."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise InputError(f"{what} must be numbers, e.g. {example}; got {value!r} ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what} must be numbers, e.g. {example}; got {_describe(arr) if arr.ndim else repr(value)}")
    return arr


@dataclass(frozen=True, eq=False)
class Prompt:
    """Clicks and/or a box on one image, asking for the mask of one object (interactive SAM).

    Coordinates are pixels of the image the prompt is for, ``x`` to the right and ``y`` down; pixel
    ``(row i, column j)`` spans ``[j, j + 1) x [i, i + 1)``, so a click on it may be given as
    ``(j, i)`` or as its centre ``(j + 0.5, i + 0.5)``. Arrays are coerced and stored read-only.

    :param points_xy: ``(N, 2)`` float32 clicks ``(x, y)``; ``N`` may be 0 (a box alone).
    :param point_labels: ``(N,)`` int32, :data:`~ovpanoptic.constants.POSITIVE_POINT` (1: on the
        object) or :data:`~ovpanoptic.constants.NEGATIVE_POINT` (0: not on the object).
    :param box_xyxy: an optional box ``(x0, y0, x1, y1)``, ``x0 < x1`` and ``y0 < y1``, max side
        exclusive like ``boxes_xyxy`` (the box of pixel ``(i, j)`` is ``(j, i, j + 1, i + 1)``).
    :raises InputError: bad shapes or values, or neither a positive point nor a box.
    """

    points_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    box_xyxy: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        points = _numbers(self.points_xy, "Prompt.points_xy", "[[x, y], ...]")
        if points.size == 0:
            points = points.reshape(0, 2)
        if points.ndim != 2 or points.shape[1] != 2:
            raise InputError(
                f"Prompt.points_xy must be an (N, 2) array of (x, y) pixel coordinates, got shape {points.shape}: "
                "write [[x, y], ...] (one point is [[x, y]])"
            )
        if not np.isfinite(points).all():
            raise InputError("Prompt.points_xy contains NaN or infinity: give finite pixel coordinates")
        labels = _numbers(self.point_labels, "Prompt.point_labels", "[1, 0]")
        if labels.size == 0:
            labels = labels.reshape(0)
        if labels.ndim != 1 or len(labels) != len(points):
            raise InputError(
                f"Prompt.point_labels has shape {labels.shape} for {len(points)} points: give one label per point "
                f"({POSITIVE_POINT} on the object, {NEGATIVE_POINT} not on it)"
            )
        allowed = (NEGATIVE_POINT, POSITIVE_POINT)
        bad = labels[~np.isin(labels, allowed)]
        if len(bad):
            raise InputError(
                f"Prompt.point_labels must be {POSITIVE_POINT} (positive: on the object) or {NEGATIVE_POINT} "
                f"(negative: not on the object), got {bad[0].item()!r}"
            )
        box = self.box_xyxy
        if box is not None:
            arr = _numbers(box, "Prompt.box_xyxy", "(x0, y0, x1, y1)")
            if arr.shape != (4,) or arr.dtype.kind == "b":
                raise InputError(f"Prompt.box_xyxy must be 4 numbers (x0, y0, x1, y1), got {box!r}")
            if not np.isfinite(arr).all():
                raise InputError(f"Prompt.box_xyxy contains NaN or infinity: {box!r}: give finite pixel coordinates")
            x0, y0, x1, y1 = (float(v) for v in arr)
            if not (x0 < x1 and y0 < y1):
                raise InputError(
                    f"Prompt.box_xyxy must be (x0, y0, x1, y1) with x0 < x1 and y0 < y1, got {(x0, y0, x1, y1)}: "
                    "give the top-left corner first, and a box at least one pixel wide and high"
                )
            object.__setattr__(self, "box_xyxy", (x0, y0, x1, y1))
        if box is None and not (labels == POSITIVE_POINT).any():
            raise InputError(
                f"a prompt needs at least one positive point (label {POSITIVE_POINT}) or a box: negative points alone "
                "select nothing; click on the object or draw a box around it"
            )
        object.__setattr__(self, "points_xy", readonly_view(points.astype(np.float32)))
        object.__setattr__(self, "point_labels", readonly_view(labels.astype(np.int32)))

    def __len__(self) -> int:
        """The number of points."""
        return int(self.points_xy.shape[0])

    def scaled(self, sx: float, sy: float) -> Prompt:
        """The same prompt for the image resized by ``sx`` horizontally and ``sy`` vertically
        (x coordinates times ``sx``, y times ``sy``), e.g. for the pipeline's working size.

        :raises InputError: a factor that is not a positive finite number.
        """
        for name, factor in (("sx", sx), ("sy", sy)):
            if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating)) or not (
                math.isfinite(factor) and factor > 0
            ):
                raise InputError(f"Prompt.scaled: {name} must be a positive finite number, got {factor!r}")
        scale = np.array([sx, sy], np.float64)
        box = None
        if self.box_xyxy is not None:
            x0, y0, x1, y1 = self.box_xyxy
            box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
        return Prompt(self.points_xy * scale, self.point_labels, box)

    def check_inside(self, height: int, width: int) -> None:
        """Check that the prompt fits an image of ``height x width`` pixels: each point inside it
        (``0 <= x < width``, ``0 <= y < height``), the box within its borders (``0 <= x0``,
        ``x1 <= width``, and likewise for y).

        :raises InputError: naming the first point (or the box) outside, and the image size.
        """
        size = f"the {width} x {height} (width x height) image"
        fix = "give pixel coordinates of the image the prompt is for (scale them if it was shown resized)"
        pts = self.points_xy
        outside = np.flatnonzero((pts[:, 0] < 0) | (pts[:, 0] >= width) | (pts[:, 1] < 0) | (pts[:, 1] >= height))
        if len(outside):
            i = int(outside[0])
            x, y = (float(v) for v in pts[i])
            raise InputError(
                f"prompt point {i} (x={x:g}, y={y:g}) lies outside {size}: x must be in [0, {width}) and y in "
                f"[0, {height}); {fix}"
            )
        if self.box_xyxy is not None:
            x0, y0, x1, y1 = self.box_xyxy
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise InputError(
                    f"the prompt box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside {size}: x must be in "
                    f"[0, {width}] and y in [0, {height}]; {fix}"
                )


@dataclass(frozen=True, eq=False)
class ClassScores:
    """Scores of N proposals against the C categories of a vocabulary.

    :param logits: ``(N, C)`` float32 raw similarities times the model's logit scale.
    :param probs: ``(N, C)`` float32 calibrated probabilities; each row sums to at most 1, the
        remainder being the probability that the proposal matches *no* category ("no object").
    :param category_ids: the category id of each column, in vocabulary order.
    :param temperature: the temperature used to turn logits into probabilities.
    :param embeddings: optional ``(N, D)`` float32 image features of the proposals, one row per
        proposal (the classifier's own, e.g. CLIP's crop embeddings; a zero row for an empty mask).
        ``segment-video`` compares them by cosine similarity to re-identify a lost track
        (``docs/video.md``); ``None`` when the classifier exposes none (then no re-identification).
    """

    logits: np.ndarray
    probs: np.ndarray
    category_ids: tuple[int, ...]
    temperature: float = 1.0
    embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        c = len(self.category_ids)
        for name in ("logits", "probs"):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != c or arr.dtype != np.float32:
                raise ValueError(
                    f"ClassScores.{name} must be an (N, {c}) float32 array, got {_describe(arr)}"
                )
        if self.logits.shape != self.probs.shape:
            raise ValueError("ClassScores.logits and probs must have the same shape")
        p = self.probs
        if p.size and (not np.isfinite(p).all() or p.min() < 0 or (p.sum(axis=1) > 1 + 1e-4).any()):
            raise ValueError("ClassScores.probs must be finite, >= 0, and each row must sum to <= 1")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"ClassScores.temperature must be a positive number, got {self.temperature!r}")
        if len(set(self.category_ids)) != c:
            raise ValueError("ClassScores.category_ids must be unique")
        e = self.embeddings
        if e is not None:
            if not isinstance(e, np.ndarray) or e.ndim != 2 or e.shape[0] != self.probs.shape[0] or e.dtype != np.float32:
                raise ValueError(f"ClassScores.embeddings must be None or an ({self.probs.shape[0]}, D) float32 array, got {_describe(e)}")
            if e.size and not np.isfinite(e).all():
                raise ValueError("ClassScores.embeddings must be finite")
            object.__setattr__(self, "embeddings", readonly_view(e))
        object.__setattr__(self, "category_ids", tuple(int(i) for i in self.category_ids))
        object.__setattr__(self, "logits", readonly_view(self.logits))
        object.__setattr__(self, "probs", readonly_view(self.probs))

    def __len__(self) -> int:
        return int(self.probs.shape[0])

    @property
    def no_object(self) -> np.ndarray:
        """``(N,)`` probability that each proposal matches no category."""
        return np.clip(1.0 - self.probs.sum(axis=1), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True, eq=False)
class TrackMasks:
    """The masks of tracked objects in one video frame (what a tracker hands back per frame).

    :param ids: ``(N,)`` int64 track ids, unique, each in ``1..MAX_SEGMENT_ID`` (a thing's track id is
        its segment id in every frame of the video output).
    :param masks: ``(N, H, W)`` bool masks at the frame's resolution; a mask may be empty (the object
        is hidden or gone in this frame).
    :raises ValueError: shapes, dtypes, duplicate or out-of-range ids.
    """

    ids: np.ndarray
    masks: np.ndarray

    def __post_init__(self) -> None:
        ids, masks = self.ids, self.masks
        if not isinstance(masks, np.ndarray) or masks.ndim != 3 or masks.dtype != np.bool_:
            raise ValueError(f"TrackMasks.masks must be an (N, H, W) bool array, got {_describe(masks)}")
        n = masks.shape[0]
        if not isinstance(ids, np.ndarray) or ids.shape != (n,) or ids.dtype != np.int64:
            raise ValueError(f"TrackMasks.ids must be ({n},) int64, got {_describe(ids)}")
        if n and (ids.min() <= VOID_ID or ids.max() > MAX_SEGMENT_ID):
            raise ValueError(f"track ids must be in 1..{MAX_SEGMENT_ID}, got {ids.tolist()[:10]}")
        if len(np.unique(ids)) != n:
            raise ValueError(f"track ids must be unique, got {ids.tolist()[:10]}")
        object.__setattr__(self, "ids", readonly_view(ids))
        object.__setattr__(self, "masks", readonly_view(masks))

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the masks."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @classmethod
    def from_dict(
        cls, masks: Mapping[int, np.ndarray], height: int, width: int, *, threshold: float | None = None
    ) -> TrackMasks:
        """Build from ``{track_id: (H, W) mask}`` (ids sorted); an empty mapping gives no objects.
        Masks other than bool follow the rule of :func:`binary_masks` (soft masks need ``threshold``).

        :raises ValueError: soft float masks without ``threshold`` (or as :meth:`__init__`).
        """
        ids = sorted(int(k) for k in masks)
        stack = (
            np.stack([binary_masks(masks[i], threshold, f"TrackMasks.from_dict mask of track {i}") for i in ids])
            if ids
            else np.zeros((0, height, width), bool)
        )
        return cls(np.asarray(ids, np.int64), stack)

    def as_dict(self) -> dict[int, np.ndarray]:
        """``{track_id: mask}`` (read-only views)."""
        return {int(i): m for i, m in zip(self.ids, self.masks, strict=True)}


@dataclass(frozen=True)
class Segment:
    """One segment of a panoptic result.

    :param id: segment id as stored in the panoptic map (>= 1).
    :param category_id: id of the segment's category in the result's vocabulary.
    :param isthing: copied from the category.
    :param score: confidence in [0, 1].
    :param area: pixel count.
    :param bbox_xyxy: tight integer box, max side exclusive.
    """

    id: int
    category_id: int
    isthing: bool
    score: float
    area: int
    bbox_xyxy: tuple[int, int, int, int]

    def __post_init__(self) -> None:
        if not isinstance(self.id, int) or not VOID_ID < self.id <= MAX_SEGMENT_ID:
            raise ValueError(f"segment id must be in 1..{MAX_SEGMENT_ID}, got {self.id!r}")
        if isinstance(self.score, bool) or not isinstance(self.score, (int, float, np.integer, np.floating)):
            raise ValueError(f"segment score must be a number, got {type(self.score).__name__}")
        if not 0.0 <= float(self.score) <= 1.0:
            raise ValueError(f"segment score must be in [0, 1], got {float(self.score)!r}")
        if not isinstance(self.area, int) or self.area <= 0:
            raise ValueError(f"segment area must be a positive int, got {self.area!r}")
        if len(self.bbox_xyxy) != 4:
            raise ValueError("segment bbox_xyxy must have 4 values")
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "bbox_xyxy", tuple(int(v) for v in self.bbox_xyxy))

    @property
    def bbox_xywh(self) -> tuple[int, int, int, int]:
        """COCO-style ``(x, y, width, height)`` box."""
        x0, y0, x1, y1 = self.bbox_xyxy
        return x0, y0, x1 - x0, y1 - y0


def _segment_geometry(panoptic_map: np.ndarray) -> dict[int, tuple[int, tuple[int, int, int, int]]]:
    """Area and tight box of every non-void id of a panoptic map.

    Rows and columns each present id occurs in are marked in ``(ids, H)`` and ``(ids, W)`` tables
    (one scatter per axis); a box is the first and last marked row and column.
    """
    h, w = panoptic_map.shape
    if panoptic_map.size == 0:
        return {}
    top = int(panoptic_map.max())
    if top <= 4 * panoptic_map.size:  # small ids (the usual case): count by id, no sorting
        counts = np.bincount(panoptic_map.ravel(), minlength=top + 1)
        ids = np.flatnonzero(counts)
        counts = counts[ids]
        if len(ids) == top + 1:
            index = panoptic_map
        else:  # renumber to 0..len(ids)-1 so the tables below have one row per present id
            lookup = np.zeros(top + 1, np.intp)
            lookup[ids] = np.arange(len(ids))
            index = lookup[panoptic_map]
    else:
        ids, inverse, counts = np.unique(panoptic_map, return_inverse=True, return_counts=True)
        index = inverse.reshape(h, w)
    in_row = np.zeros((len(ids), h), bool)
    in_row[index, np.arange(h)[:, None]] = True
    in_col = np.zeros((len(ids), w), bool)
    in_col[index, np.arange(w)[None, :]] = True
    y0, y1 = in_row.argmax(axis=1), h - in_row[:, ::-1].argmax(axis=1)
    x0, x1 = in_col.argmax(axis=1), w - in_col[:, ::-1].argmax(axis=1)
    out: dict[int, tuple[int, tuple[int, int, int, int]]] = {}
    for j, sid in enumerate(ids.tolist()):
        if sid == VOID_ID:
            continue
        out[int(sid)] = (int(counts[j]), (int(x0[j]), int(y0[j]), int(x1[j]), int(y1[j])))
    return out


@dataclass(frozen=True, eq=False)
class PanopticResult:
    """A panoptic segmentation of one image.

    Invariants checked at construction: every non-void id of the map has exactly one segment and
    vice versa; areas and boxes match the map exactly; categories belong to the vocabulary with the
    same ``isthing``; a stuff category has at most one segment.

    :param panoptic_map: ``(H, W)`` int32 segment ids, 0 = void.
    :param segments: the segments, sorted by id.
    :param vocabulary: the vocabulary the categories come from.
    :param timings: seconds spent per stage (``"proposals"``, ``"classify"``, ``"fuse"``, ...).
    """

    panoptic_map: np.ndarray
    segments: tuple[Segment, ...]
    vocabulary: Vocabulary
    timings: Mapping[str, float] = field(default_factory=dict)
    _geometry: InitVar[Mapping[int, tuple[int, tuple[int, int, int, int]]] | None] = None

    def __post_init__(self, _geometry: Mapping[int, tuple[int, tuple[int, int, int, int]]] | None) -> None:
        # ``_geometry`` is for this module's constructors that have just measured the same map.
        pm = self.panoptic_map
        if not isinstance(pm, np.ndarray) or pm.ndim != 2 or pm.dtype != np.int32:
            raise ValueError(
                f"panoptic_map must be an (H, W) int32 array, got {_describe(pm)}"
            )
        if pm.size and pm.min() < 0:
            raise ValueError("panoptic_map ids must be >= 0")
        segments = tuple(sorted(self.segments, key=lambda s: s.id))
        geometry = _segment_geometry(pm) if _geometry is None else _geometry
        seg_ids = [s.id for s in segments]
        if len(set(seg_ids)) != len(seg_ids):
            raise ValueError("segment ids must be unique")
        missing = sorted(set(geometry) - set(seg_ids))
        extra = sorted(set(seg_ids) - set(geometry))
        if missing or extra:
            raise ValueError(
                f"panoptic_map and segments disagree: ids in the map without a segment {missing[:10]}, "
                f"segments absent from the map {extra[:10]}"
            )
        stuff_seen: dict[int, int] = {}
        for s in segments:
            try:
                cat = self.vocabulary.by_id(s.category_id)
            except KeyError as exc:
                raise ValueError(f"segment {s.id}: {exc.args[0]}") from None
            if cat.isthing != s.isthing:
                raise ValueError(f"segment {s.id}: isthing={s.isthing} but {cat.name!r} has isthing={cat.isthing}")
            if not cat.isthing:
                if s.category_id in stuff_seen:
                    raise ValueError(
                        f"stuff class {cat.name!r} has two segments ({stuff_seen[s.category_id]} and {s.id}); "
                        "merge them into one"
                    )
                stuff_seen[s.category_id] = s.id
            area, box = geometry[s.id]
            if s.area != area or s.bbox_xyxy != box:
                raise ValueError(
                    f"segment {s.id}: area/bbox {s.area}/{s.bbox_xyxy} do not match the map ({area}/{box})"
                )
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "panoptic_map", readonly_view(pm))
        object.__setattr__(self, "timings", MappingProxyType({str(k): float(v) for k, v in dict(self.timings).items()}))

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.panoptic_map.shape[0]), int(self.panoptic_map.shape[1])

    def category_of(self, segment: Segment) -> Category:
        """The :class:`Category` of a segment."""
        return self.vocabulary.by_id(segment.category_id)

    def segment_by_id(self, segment_id: int) -> Segment:
        """The segment with this id."""
        for s in self.segments:
            if s.id == segment_id:
                return s
        raise KeyError(f"no segment with id {segment_id}")

    def with_timings(self, timings: Mapping[str, float]) -> PanopticResult:
        """A copy with ``timings`` merged in."""
        merged = {**self.timings, **timings}
        geometry = {s.id: (s.area, s.bbox_xyxy) for s in self.segments}
        return PanopticResult(self.panoptic_map, self.segments, self.vocabulary, merged, geometry)

    @classmethod
    def from_map(
        cls,
        panoptic_map: np.ndarray,
        labels: Mapping[int, tuple[int, float]],
        vocabulary: Vocabulary,
        timings: Mapping[str, float] | None = None,
    ) -> PanopticResult:
        """Build from a map and ``{segment_id: (category_id, score)}``; areas and boxes are computed.

        Segment ids of ``labels`` absent from the map are dropped (they were fully overlapped).
        """
        pm = np.ascontiguousarray(panoptic_map, dtype=np.int32)
        geometry = _segment_geometry(pm)
        unknown = sorted(set(geometry) - set(labels))
        if unknown:
            raise ValueError(f"panoptic_map ids {unknown[:10]} have no label")
        segments = []
        for sid, (area, box) in geometry.items():
            cat_id, score = labels[sid]
            cat = vocabulary.by_id(int(cat_id))
            segments.append(
                Segment(id=sid, category_id=cat.id, isthing=cat.isthing, score=float(score), area=area, bbox_xyxy=box)
            )
        return cls(pm, tuple(segments), vocabulary, dict(timings or {}), geometry)

    def resized(self, height: int, width: int) -> PanopticResult:
        """Nearest-neighbour resize to ``height x width`` (big row ``i`` takes row ``i * H // height``).

        Areas and boxes follow from the small map and how often each of its rows and columns repeats,
        so the big map is only written, never measured.
        """
        if height < 1 or width < 1:
            raise ValueError(f"cannot resize a panoptic result to {size_text((height, width))} (width x height)")
        h, w = self.image_size
        rows, cols = nearest_indices(height, h), nearest_indices(width, w)
        row_count = np.bincount(rows, minlength=h)
        col_count = np.bincount(cols, minlength=w)
        big = np.repeat(np.repeat(self.panoptic_map, row_count, axis=0), col_count, axis=1)
        row_start = np.concatenate(([0], np.cumsum(row_count)))  # small row r covers big rows [start_r, start_r+1)
        col_start = np.concatenate(([0], np.cumsum(col_count)))
        if row_count.min() == 0 or col_count.min() == 0:  # shrinking drops rows/columns: measure
            labels = {s.id: (s.category_id, s.score) for s in self.segments}
            return PanopticResult.from_map(big, labels, self.vocabulary, self.timings)
        # Growing: every small row/column appears, so each segment's box is the span of its rows/columns.
        row_start = np.concatenate(([0], np.cumsum(row_count)))
        col_start = np.concatenate(([0], np.cumsum(col_count)))
        pm = self.panoptic_map
        weight = (row_count[:, None] * col_count[None, :]).ravel()
        areas = np.bincount(pm.ravel(), weights=weight, minlength=int(pm.max(initial=0)) + 1)
        geometry: dict[int, tuple[int, tuple[int, int, int, int]]] = {}
        segments = []
        for s in self.segments:
            x0, y0, x1, y1 = s.bbox_xyxy
            box = (int(col_start[x0]), int(row_start[y0]), int(col_start[x1]), int(row_start[y1]))
            geometry[s.id] = (int(round(areas[s.id])), box)
            segments.append(dataclasses.replace(s, area=geometry[s.id][0], bbox_xyxy=box))
        return PanopticResult(big, tuple(segments), self.vocabulary, dict(self.timings), geometry)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no pixel data)."""
        return {
            "height": self.image_size[0],
            "width": self.image_size[1],
            "vocabulary": self.vocabulary.name,
            "segments": [
                {
                    "id": s.id,
                    "category_id": s.category_id,
                    "category": self.category_of(s).name,
                    "isthing": s.isthing,
                    "score": round(s.score, 6),
                    "area": s.area,
                    "bbox_xyxy": list(s.bbox_xyxy),
                }
                for s in self.segments
            ],
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
        }

