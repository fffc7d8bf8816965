"""Built-in plugin: result refiners (``pipeline.refiners``, ``ovpanoptic package --refine NAME``).

``cleanup``
    Mask clean-up before export or packaging, with OpenCV, in four steps on the panoptic map:

    1. **close**: each segment's mask is closed with a 3x3 square (``cv2.morphologyEx(MORPH_CLOSE)``)
       and takes the pixels its closing adds **only where the pixel is void**: one-pixel holes and
       notches are filled, and a pixel of another segment never changes hands. A void pixel that
       two closings claim stays void. (Closing first, then opening: an opening first would cut the
       corners of a small object around a hole near its edge before the closing could fill it.)
    2. **open**: each mask is then opened with a 3x3 square (``MORPH_OPEN``): spurs, one- and
       two-pixel-wide protrusions and specks no 3x3 square fits in are removed. Opening never adds
       a pixel, so no segment grows here.
    3. **islands**: the connected parts (8-connectivity, ``cv2.connectedComponentsWithStats``) of
       each opened mask smaller than ``min_island_area`` pixels are removed; a thing keeps its
       largest part whatever its size (an object is never deleted for being small, only its stray
       fragments are), a stuff segment keeps only its parts of at least ``min_island_area``.
    4. **freed pixels** (``freed = "neighbour"``, the default): a pixel steps 2-3 took from a segment
       goes to the segment that holds most of its 8 neighbours, when that segment holds at least
       half of them (4) and no other segment holds as many; repeated until nothing changes. A spur
       of one segment poking into another is given to the other; a spur into void stays void (its
       own segment holds at most 3 of the neighbours of any of its pixels, so it never grows back);
       a pixel of the floor cut off by a speck on it returns to the floor. Otherwise, and with
       ``freed = "void"``, it becomes void.

    Real boundaries do not move: a straight boundary between two segments wider than 2 pixels is
    untouched by every step (opening and closing of such shapes are the shapes themselves, and
    steps 1 and 4 only hand out pixels nobody holds). Structures thinner than 3 pixels (wires,
    thin poles) are removed by the opening: leave ``open_close = false`` (island removal only) for
    labels that have them. Segment ids, categories and scores are kept; areas and boxes are
    recomputed; a segment left with no pixel is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..components import ComponentContext, RegisterComponent
from ..constants import VOID_ID
from ..hookspecs import hookimpl
from ..types import PanopticResult
from ._quiet import require

log = logging.getLogger(__name__)

__all__ = ["CleanupConfig", "CleanupRefiner", "clean_panoptic_map"]

#: Side of the square structuring element of the opening and the closing.
KERNEL_SIDE: int = 3
#: Pixels of context around a segment's box when it is worked on alone (twice the kernel's radius:
#: a closing dilates then erodes, each reading one pixel further).
_PAD: int = KERNEL_SIDE - 1
#: A freed pixel goes to a neighbouring segment holding at least this many of its 8 neighbours.
MIN_NEIGHBOURS: int = 4
#: The eight neighbour offsets ``(dy, dx)``.
_OFFSETS: tuple[tuple[int, int], ...] = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@dataclass(frozen=True)
class CleanupConfig:
    """Options of the ``cleanup`` refiner (``[refiner.cleanup]``).

    :param open_close: run the 3x3 opening (spurs, specks) and closing (one-pixel holes); ``false``
        keeps only the island removal.
    :param min_island_area: connected parts smaller than this many pixels are removed (a thing keeps
        its largest part); 0 keeps every part.
    :param freed: where pixels taken from a segment go: ``"neighbour"`` (the segment holding most of
        their 8 neighbours, at least 4, see the module docstring) or ``"void"``.
    """

    open_close: bool = True
    min_island_area: int = 16
    freed: Literal["neighbour", "void"] = "neighbour"

    def __post_init__(self) -> None:
        if isinstance(self.min_island_area, bool) or not isinstance(self.min_island_area, int) or self.min_island_area < 0:
            raise ValueError(f"min_island_area must be an integer >= 0 (pixels; 0 keeps every part), got {self.min_island_area!r}")
        if self.freed not in ("neighbour", "void"):
            raise ValueError(f"freed must be 'neighbour' or 'void', got {self.freed!r}")


def _window(box: tuple[int, int, int, int], height: int, width: int) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    return slice(max(0, y0 - _PAD), min(height, y1 + _PAD)), slice(max(0, x0 - _PAD), min(width, x1 + _PAD))


def _morph(mask: np.ndarray, op: int, kernel: np.ndarray) -> np.ndarray:
    """``cv2.morphologyEx`` of a crop taken to continue past its edges as its edge pixels do (padded
    once by replication, then cropped back): a mask touching the image's edge is not eaten there by
    the opening, and the closing does not grow a mask into a void gap along the edge."""
    import cv2

    padded = np.pad(mask, _PAD, mode="edge")
    return cv2.morphologyEx(padded, op, kernel)[_PAD:-_PAD, _PAD:-_PAD]


def _keep_islands(mask: np.ndarray, min_area: int, isthing: bool) -> np.ndarray:
    """``mask`` (uint8 0/1) without its 8-connected parts under ``min_area`` pixels (a thing keeps its largest)."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.concatenate(([False], areas >= min_area))
    if isthing:
        keep[1 + int(np.argmax(areas))] = True
    return keep[labels].astype(np.uint8)


def _give_to_neighbours(current: np.ndarray, freed: np.ndarray) -> None:
    """Step 4 in place: freed void pixels go to the segment holding most of their 8 neighbours, at
    least :data:`MIN_NEIGHBOURS` and strictly more than any other; repeated until no pixel changes."""
    height, width = current.shape
    while True:
        ys, xs = np.nonzero(freed & (current == VOID_ID))
        if not len(ys):
            return
        padded = np.pad(current, 1)
        neighbours = np.stack([padded[ys + 1 + dy, xs + 1 + dx] for dy, dx in _OFFSETS], axis=1).astype(np.int64)
        valid = neighbours != VOID_ID
        if not valid.any():
            return
        top = int(neighbours.max()) + 1
        pixel = np.broadcast_to(np.arange(len(ys))[:, None], neighbours.shape)[valid]
        keys, counts = np.unique(pixel.astype(np.int64) * top + neighbours[valid], return_counts=True)
        which, label = keys // top, keys % top
        order = np.lexsort((-counts, which))  # per pixel, the largest count first
        which, label, counts = which[order], label[order], counts[order]
        first = np.flatnonzero(np.r_[True, which[1:] != which[:-1]])
        best = counts[first]
        runner_up = np.zeros_like(best)
        has_second = first + 1 < len(which)
        second = np.minimum(first + 1, len(which) - 1)
        same_pixel = has_second & (which[second] == which[first])
        runner_up[same_pixel] = counts[second][same_pixel]
        chosen = (best >= MIN_NEIGHBOURS) & (best > runner_up)
        if not chosen.any():
            return
        pix = which[first][chosen]
        current[ys[pix], xs[pix]] = label[first][chosen].astype(current.dtype)


def clean_panoptic_map(
    panoptic_map: np.ndarray,
    segments: dict[int, tuple[bool, tuple[int, int, int, int]]],
    config: CleanupConfig,
) -> np.ndarray:
    """The cleaned map (see the module docstring); ``panoptic_map`` is not changed.

    :param panoptic_map: ``(H, W)`` int32 segment ids, 0 = void.
    :param segments: segment id -> (isthing, its box ``(x0, y0, x1, y1)`` in the map).
    """
    import cv2

    height, width = panoptic_map.shape
    kernel = np.ones((KERNEL_SIDE, KERNEL_SIDE), np.uint8)
    closed = panoptic_map.copy()
    if config.open_close:  # 1: close; take only void pixels, a contested one goes to nobody
        flat_index: list[np.ndarray] = []
        for sid, (_, box) in segments.items():
            win = _window(box, height, width)
            mask = (panoptic_map[win] == sid).astype(np.uint8)
            added = _morph(mask, cv2.MORPH_CLOSE, kernel).astype(bool) & (panoptic_map[win] == VOID_ID)
            ys, xs = np.nonzero(added)
            if len(ys):
                flat_index.append((ys + win[0].start) * width + xs + win[1].start)
                closed.reshape(-1)[flat_index[-1]] = sid
        if flat_index:
            index, counts = np.unique(np.concatenate(flat_index), return_counts=True)
            closed.reshape(-1)[index[counts > 1]] = VOID_ID
    opened = np.zeros_like(panoptic_map)
    for sid, (isthing, box) in segments.items():  # 2 and 3: open, drop islands (masks only shrink)
        win = _window(box, height, width)
        mask = (closed[win] == sid).astype(np.uint8)
        if config.open_close:
            mask = _morph(mask, cv2.MORPH_OPEN, kernel)
        if config.min_island_area:
            mask = _keep_islands(mask, config.min_island_area, isthing)
        opened[win][mask.astype(bool)] = sid
    if config.freed == "neighbour":  # 4: pixels taken from a segment and void now
        _give_to_neighbours(opened, (panoptic_map != VOID_ID) & (opened == VOID_ID))
    return opened


class CleanupRefiner:
    """The ``cleanup`` refiner: 3x3 open/close and small-island removal (see the module docstring)."""

    def __init__(self, config: CleanupConfig = CleanupConfig(), context: ComponentContext | None = None) -> None:
        require("cv2", "the cleanup refiner", "pip install opencv-python-headless")
        self.config = config

    def refine(self, result: PanopticResult, image: np.ndarray | None) -> PanopticResult:
        """The result with cleaned masks: ids, categories and scores kept, areas and boxes
        recomputed, segments left without pixels dropped. ``image`` is not used."""
        if not result.segments:
            return result
        segments = {s.id: (s.isthing, s.bbox_xyxy) for s in result.segments}
        cleaned = clean_panoptic_map(result.panoptic_map, segments, self.config)
        if np.array_equal(cleaned, result.panoptic_map):
            return result
        labels = {s.id: (s.category_id, s.score) for s in result.segments}
        refined = PanopticResult.from_map(cleaned, labels, result.vocabulary, result.timings)
        changed = int(np.count_nonzero(cleaned != result.panoptic_map))
        log.debug("cleanup: %d pixels changed, %d of %d segments left", changed, len(refined.segments), len(result.segments))
        return refined


@hookimpl
def register_refiners(register: RegisterComponent) -> None:
    register(
        "cleanup",
        CleanupRefiner,
        config=CleanupConfig,
        description="mask clean-up: 3x3 open/close per segment, small islands dropped, boundaries kept (OpenCV)",
    )
