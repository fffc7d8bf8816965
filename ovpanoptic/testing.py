"""A pytest plugin for ovpanoptic and its plugin authors.

Installed with ovpanoptic (entry point ``pytest11``), it offers:

* fixtures: ``ovpanoptic_pm`` (a fresh plugin manager with the built-ins, no entry points),
  ``register_plugin`` (register a plugin object on it for one test, unregistered at teardown),
  ``make_registry`` (a :class:`~ovpanoptic.plugins.Registry` over ``ovpanoptic_pm``),
  ``shapes_image`` (a small RGB image with known shapes);
* conformance checks third-party components should pass: :func:`check_proposal_generator`,
  :func:`check_classifier`, :func:`check_fuser`, :func:`check_exporter`;
* small deterministic components (:class:`TilesGenerator`, :class:`CyclingClassifier`,
  :class:`PaintFuser`, :class:`SummaryJSONExporter`) and :class:`FakeComponentsPlugin`, which
  registers them under the names ``tiles``, ``cycling``, ``paint`` and ``fake-json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .atomic import atomic_write_bytes
from .components import ComponentContext, Progress, RegisterComponent
from .constants import VOID_ID
from .hookspecs import hookimpl
from .plugins import OvpanopticPluginManager, Registry, make_plugin_manager
from .types import ClassScores, PanopticResult, ProposalSet, Vocabulary

__all__ = [
    "CyclingClassifier",
    "FakeComponentsPlugin",
    "PaintFuser",
    "SummaryJSONExporter",
    "TilesGenerator",
    "check_classifier",
    "check_exporter",
    "check_fuser",
    "check_proposal_generator",
    "make_shapes_image",
    "matched_ious",
]


def make_shapes_image(height: int = 48, width: int = 64) -> np.ndarray:
    """A gray image with a red square (rows 8-23, cols 8-23) and a blue bar (rows 30-39, all cols)."""
    img = np.full((height, width, 3), 128, np.uint8)
    img[8:24, 8:24] = (220, 30, 30)
    img[30:40, :] = (30, 30, 220)
    return img


# -- deterministic components -----------------------------------------------------------------


@dataclass(frozen=True)
class TilesConfig:
    """Config of :class:`TilesGenerator`."""

    rows: int = 2
    cols: int = 2

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ValueError("rows and cols must be >= 1")


class TilesGenerator:
    """Proposes a ``rows x cols`` grid of tiles; tile ``i`` (row-major) scores ``1 - 0.01 i``."""

    def __init__(self, config: TilesConfig = TilesConfig(), context: ComponentContext | None = None) -> None:
        self.config = config
        self.calls = 0

    def generate(self, image: np.ndarray, *, progress: Progress | None = None) -> ProposalSet:
        self.calls += 1
        h, w = image.shape[:2]
        r, c = self.config.rows, self.config.cols
        masks = np.zeros((r * c, h, w), bool)
        for i in range(r):
            for j in range(c):
                masks[i * c + j, i * h // r : (i + 1) * h // r, j * w // c : (j + 1) * w // c] = True
        if progress is not None:
            progress("tiles", 1, 1)
        return ProposalSet.from_masks(masks, 1.0 - 0.01 * np.arange(r * c, dtype=np.float32))


@dataclass(frozen=True)
class CyclingConfig:
    """Config of :class:`CyclingClassifier`."""

    confidence: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")


class CyclingClassifier:
    """Gives proposal ``i`` the category in column ``i % C`` with probability ``confidence``.

    Counts its calls (``prepare_calls``, ``score_calls``) so tests can prove caching.
    """

    def __init__(self, config: CyclingConfig = CyclingConfig(), context: ComponentContext | None = None) -> None:
        self.config = config
        self.prepare_calls = 0
        self.score_calls = 0

    def prepare(self, image: np.ndarray, proposals: ProposalSet) -> int:
        self.prepare_calls += 1
        return len(proposals)

    def score(self, prepared: int, vocabulary: Vocabulary) -> ClassScores:
        self.score_calls += 1
        n, c = prepared, len(vocabulary)
        probs = np.zeros((n, c), np.float32)
        probs[np.arange(n), np.arange(n) % c] = self.config.confidence
        logits = np.log(np.maximum(probs, 1e-6)).astype(np.float32)
        return ClassScores(logits=logits, probs=probs, category_ids=vocabulary.ids)


@dataclass(frozen=True)
class PaintConfig:
    """Config of :class:`PaintFuser`."""

    min_score: float = 0.5


class PaintFuser:
    """Paints proposals in input order (earlier wins); best category if its probability reaches
    ``min_score``; stuff of one category becomes one segment."""

    def __init__(self, config: PaintConfig = PaintConfig(), context: ComponentContext | None = None) -> None:
        self.config = config

    def fuse(self, proposals: ProposalSet, scores: ClassScores, vocabulary: Vocabulary) -> PanopticResult:
        h, w = proposals.image_size
        pm = np.full((h, w), VOID_ID, np.int32)
        labels: dict[int, tuple[int, float]] = {}
        stuff_ids: dict[int, int] = {}
        next_id = 1
        for i in range(len(proposals)):
            if scores.probs.shape[1] == 0:
                break
            col = int(scores.probs[i].argmax())
            p = float(scores.probs[i, col])
            if p < self.config.min_score:
                continue
            cat = vocabulary.categories[col]
            free = proposals.masks[i] & (pm == VOID_ID)
            if not free.any():
                continue
            if not cat.isthing and cat.id in stuff_ids:
                sid = stuff_ids[cat.id]
            else:
                sid, next_id = next_id, next_id + 1
                labels[sid] = (cat.id, p)
                if not cat.isthing:
                    stuff_ids[cat.id] = sid
            pm[free] = sid
        return PanopticResult.from_map(pm, labels, vocabulary)


class SummaryJSONExporter:
    """Writes ``<stem>.fake.json`` with :meth:`PanopticResult.to_dict` (for tests)."""

    def __init__(self, config: Any = None, context: ComponentContext | None = None) -> None:
        self.config = config

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        path = Path(outdir) / f"{stem}.fake.json"
        atomic_write_bytes(path, json.dumps(result.to_dict(), indent=1).encode())
        return [path]


class FakeComponentsPlugin:
    """Registers the deterministic components above, like any plugin would."""

    @hookimpl
    def register_proposal_generators(self, register: RegisterComponent) -> None:
        register("tiles", TilesGenerator, config=TilesConfig, description="grid of tiles (tests)")

    @hookimpl
    def register_classifiers(self, register: RegisterComponent) -> None:
        register("cycling", CyclingClassifier, config=CyclingConfig, description="proposal i -> class i % C (tests)")

    @hookimpl
    def register_fusers(self, register: RegisterComponent) -> None:
        register("paint", PaintFuser, config=PaintConfig, description="first proposal wins (tests)")

    @hookimpl
    def register_exporters(self, register: RegisterComponent) -> None:
        register("fake-json", SummaryJSONExporter, description="result summary JSON (tests)")


# -- conformance checks ----------------------------------------------------------------------


def matched_ious(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Greedy one-to-one matching of two ``(N, H, W)`` mask stacks by IoU, best pairs first.

    Returns the IoU of each matched pair (``min(len(a), len(b))`` values).
    """
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    out = []
    for _ in range(min(len(fa), len(fb))):
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        out.append(float(iou[i, j]))
        iou[i, :] = -1
        iou[:, j] = -1
    return out



def check_proposal_generator(generator: Any, image: np.ndarray) -> ProposalSet:
    """Check a generator's contract on ``image``; returns its proposals."""
    proposals = generator.generate(image)
    assert isinstance(proposals, ProposalSet), f"generate() returned {type(proposals).__name__}"
    assert proposals.image_size == image.shape[:2], "masks must be at the image's size"
    assert (proposals.areas > 0).all(), "proposals must not be empty masks"
    expected = ProposalSet.from_masks(np.asarray(proposals.masks)).boxes_xyxy
    assert np.allclose(proposals.boxes_xyxy, expected, atol=1.0), "boxes must be the masks' tight XYXY boxes"
    return proposals


def check_classifier(classifier: Any, image: np.ndarray, proposals: ProposalSet, vocabulary: Vocabulary) -> ClassScores:
    """Check a classifier's contract; returns its scores."""
    prepared = classifier.prepare(image, proposals)
    scores = classifier.score(prepared, vocabulary)
    assert isinstance(scores, ClassScores), f"score() returned {type(scores).__name__}"
    assert scores.probs.shape == (len(proposals), len(vocabulary))
    assert scores.category_ids == vocabulary.ids, "columns must follow the vocabulary's order"
    again = classifier.score(prepared, vocabulary)
    assert np.allclose(again.probs, scores.probs), "score() must be deterministic for the same input"
    return scores


def check_fuser(fuser: Any, proposals: ProposalSet, scores: ClassScores, vocabulary: Vocabulary) -> PanopticResult:
    """Check a fuser's contract; returns its result."""
    result = fuser.fuse(proposals, scores, vocabulary)
    assert isinstance(result, PanopticResult), f"fuse() returned {type(result).__name__}"
    assert result.image_size == proposals.image_size
    return result


def check_exporter(exporter: Any, result: PanopticResult, image: np.ndarray, outdir: Path) -> list[Path]:
    """Check an exporter writes the files it reports, and no temporary files are left."""
    paths = [Path(p) for p in exporter.export(result, image, outdir, "check")]
    assert paths, "export() must return the written paths"
    for p in paths:
        assert p.is_file() and p.stat().st_size > 0, f"{p} was not written"
    leftovers = [p for p in Path(outdir).iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    return paths


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def ovpanoptic_pm() -> OvpanopticPluginManager:
    """A fresh plugin manager with the built-in plugins only (no entry points)."""
    return make_plugin_manager(entry_points=False, env={})


@pytest.fixture
def register_plugin(ovpanoptic_pm: OvpanopticPluginManager) -> Iterator[Callable[..., Any]]:
    """``register_plugin(obj, name=None)`` registers on ``ovpanoptic_pm`` for this test only."""
    registered: list[Any] = []

    def register(plugin: Any, name: str | None = None) -> Any:
        ovpanoptic_pm.register(plugin, name=name)
        registered.append(plugin)
        return plugin

    yield register
    for plugin in registered:
        if ovpanoptic_pm.is_registered(plugin):
            ovpanoptic_pm.unregister(plugin)


@pytest.fixture
def make_registry(ovpanoptic_pm: OvpanopticPluginManager) -> Callable[[], Registry]:
    """``make_registry()`` collects the components of ``ovpanoptic_pm``'s current plugins."""
    return lambda: Registry(ovpanoptic_pm)


@pytest.fixture
def shapes_image() -> np.ndarray:
    """See :func:`make_shapes_image`."""
    return make_shapes_image()


def registry_with(*plugins: Any, disable: Sequence[str] = ()) -> Registry:
    """A registry over the built-ins plus ``plugins`` (named by their class names)."""
    named = [(type(p).__name__ if not isinstance(p, type) else p.__name__, p) for p in plugins]
    return Registry(make_plugin_manager(disable, entry_points=False, plugins=named, env={}))
