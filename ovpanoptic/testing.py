"""A pytest plugin for ovpanoptic and its plugin authors.

Installed with ovpanoptic (entry point ``pytest11``), it offers:

* fixtures: ``ovpanoptic_pm`` (a fresh plugin manager with the built-ins, no entry points),
  ``register_plugin`` (register a plugin object on it for one test, unregistered at teardown),
  ``make_registry`` (a :class:`~ovpanoptic.plugins.Registry` over ``ovpanoptic_pm``),
  ``shapes_image`` (a small RGB image with known shapes);
* conformance checks third-party components should pass: :func:`check_proposal_generator`,
  :func:`check_prompt_segmenter` (for generators that segment clicks and boxes),
  :func:`check_classifier`, :func:`check_fuser`, :func:`check_exporter`, :func:`check_refiner`,
  and :func:`check_plugin`,
  which registers a plugin with the product's start-up checks, builds each of its components
  through its registered factory and default config, and runs the matching check. They call the
  components exactly as the pipeline does (read-only images, a ``progress`` callback) and validate
  results with the pipeline's own validators (:mod:`ovpanoptic.boundary`), so a component that
  passes here is not rejected by the product, and a fault raises the same
  :class:`~ovpanoptic.errors.ComponentError` with the same message, as a :class:`ConformanceError`
  (also an ``AssertionError``, so pytest reports a failed check as a failed test, and a
  ``ValueError`` too when the component itself raised one: the kit's first release raised those);
* small deterministic components (:class:`TilesGenerator`, :class:`CyclingClassifier`,
  :class:`PaintFuser`, :class:`SummaryJSONExporter`) and :class:`FakeComponentsPlugin`, which
  registers them under the names ``tiles``, ``cycling``, ``paint`` and ``fake-json``.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from . import boundary
from .atomic import atomic_write_bytes
from .boundary import Origin, Target, readonly_image
from .components import KINDS, ComponentContext, Progress, PromptSegmenter, RegisterComponent
from .config import build_dataclass
from .errors import ComponentError, PluginError
from .constants import NEGATIVE_POINT, POSITIVE_POINT, VOID_ID
from .hookspecs import hookimpl
from .imageio import image_digest
from .plugins import OvpanopticPluginManager, Registry, check_hooks, make_plugin_manager, register_plugin_object
from .types import Category, ClassScores, PanopticResult, Prompt, ProposalSet, Vocabulary

__all__ = [
    "BuiltComponent",
    "ConformanceError",
    "ConformanceValueError",
    "CyclingClassifier",
    "FakeComponentsPlugin",
    "PaintFuser",
    "PluginConformanceError",
    "SummaryJSONExporter",
    "TilesGenerator",
    "build_component",
    "check_classifier",
    "check_exporter",
    "check_fuser",
    "check_plugin",
    "check_prompt_segmenter",
    "check_proposal_generator",
    "check_refiner",
    "kit_prompts",
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
    """Proposes a ``rows x cols`` grid of tiles; tile ``i`` (row-major) scores ``1 - 0.01 i``.

    It is also a :class:`~ovpanoptic.components.PromptSegmenter`: :meth:`segment_prompt` returns
    one mask, score 1.0, made of the box's pixels (if the prompt has a box) and the tiles holding a
    positive point, minus the tiles holding a negative point. ``calls`` and ``prompt_calls`` count
    the calls of :meth:`generate` and :meth:`segment_prompt`.

    It is also a :class:`~ovpanoptic.components.BatchEncoder`: :meth:`encode_batch` keeps the
    images' digests; ``batches`` lists the size of each call and ``batched_hits`` counts the
    :meth:`generate` calls that found their image kept (the tiles are the same either way).
    """

    def __init__(self, config: TilesConfig = TilesConfig(), context: ComponentContext | None = None) -> None:
        self.config = config
        self.calls = 0
        self.prompt_calls = 0
        self.batches: list[int] = []
        self.batched_hits = 0
        self._kept: set[str] = set()

    def encode_batch(self, images: Sequence[np.ndarray]) -> None:
        """Keep the images' digests (the encodings a real generator would keep), dropping earlier ones."""
        self.batches.append(len(images))
        self._kept = {image_digest(image) for image in images}

    def _tiles(self, height: int, width: int) -> np.ndarray:
        r, c = self.config.rows, self.config.cols
        masks = np.zeros((r * c, height, width), bool)
        for i in range(r):
            for j in range(c):
                masks[i * c + j, i * height // r : (i + 1) * height // r, j * width // c : (j + 1) * width // c] = True
        return masks

    def generate(self, image: np.ndarray, *, progress: Progress | None = None) -> ProposalSet:
        self.calls += 1
        if self._kept:
            key = image_digest(image)
            if key in self._kept:
                self._kept.discard(key)
                self.batched_hits += 1
        masks = self._tiles(*image.shape[:2])
        if progress is not None:
            progress("tiles", 1, 1)
        return ProposalSet.from_masks(masks, 1.0 - 0.01 * np.arange(len(masks), dtype=np.float32))

    def segment_prompt(self, image: np.ndarray, prompt: Prompt) -> ProposalSet:
        """One mask (score 1.0), or none when it comes out empty: the pixels of ``prompt.box_xyxy``
        (rows ``y0..y1 - 1`` and columns ``x0..x1 - 1``, each coordinate rounded half up, clipped to
        the image), together with every tile holding a positive point, less every tile holding a
        negative point (a point is in the tile of pixel ``(floor(y), floor(x))``, clipped)."""
        self.prompt_calls += 1
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        if prompt.box_xyxy is not None:
            x0, y0, x1, y1 = (math.floor(v + 0.5) for v in prompt.box_xyxy)
            mask[max(y0, 0) : max(min(y1, h), 0), max(x0, 0) : max(min(x1, w), 0)] = True
        tiles = self._tiles(h, w)
        cols = np.clip(np.floor(prompt.points_xy[:, 0]).astype(np.int64), 0, w - 1)
        rows = np.clip(np.floor(prompt.points_xy[:, 1]).astype(np.int64), 0, h - 1)
        held = tiles[:, rows, cols].argmax(axis=0)  # the tile of each point
        positive = prompt.point_labels == POSITIVE_POINT
        mask |= tiles[held[positive]].any(axis=0)
        mask &= ~tiles[held[~positive]].any(axis=0)
        if not mask.any():
            return ProposalSet.empty(h, w)
        return ProposalSet.from_masks(mask[None], [1.0])


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


class ConformanceError(ComponentError, AssertionError):
    """A component failed a conformance check: the product's
    :class:`~ovpanoptic.errors.ComponentError` (same message, ``plugin``, ``component``, ``call``)
    that is also an ``AssertionError``, so pytest shows it as a failed test and tests written for
    the kit's first release (``pytest.raises(AssertionError)``) keep passing."""


class ConformanceValueError(ConformanceError, ValueError):
    """A :class:`ConformanceError` whose cause is a ``ValueError`` the component raised (e.g. an
    invalid ``ProposalSet``): also a ``ValueError``, which the kit's first release let through."""


class PluginConformanceError(PluginError, AssertionError):
    """A start-up fault found by :func:`check_plugin`: the product's
    :class:`~ovpanoptic.errors.PluginError`, also an ``AssertionError``."""


def _conformance(check: Callable[..., Any]) -> Callable[..., Any]:
    """Make a kit function's component and plugin faults assertion-compatible (see
    :class:`ConformanceError`), keeping the product's message and cause."""

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return check(*args, **kwargs)
        except (ConformanceError, PluginConformanceError):
            raise
        except ComponentError as exc:
            cls = ConformanceValueError if isinstance(exc.__cause__, ValueError) else ConformanceError
            raise cls(str(exc), plugin=exc.plugin, component=exc.component, call=exc.call) from exc.__cause__
        except PluginError as exc:
            raise PluginConformanceError(str(exc)) from exc.__cause__

    return wrapper


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



@dataclass(frozen=True)
class BuiltComponent:
    """A component built through its registered factory, with the identity used in messages."""

    obj: Any
    target: Target
    kind: str


@_conformance
def build_component(
    registry: Registry,
    kind: str,
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    context: ComponentContext | None = None,
) -> BuiltComponent:
    """Build a registered component the way the pipeline does: its config dataclass filled from
    ``options`` (a config table, validated like a preset's), then its factory, then the Protocol
    checks of :func:`ovpanoptic.boundary.build_component`. The default ``context`` is the CPU,
    offline, a cache folder under the system's temporary folder, and the registry's prompt templates.

    :raises ConfigError: ``options`` do not fit the component's config dataclass.
    :raises ComponentError: the factory raised or built an object that breaks the Protocol.
    """
    spec = registry.component(kind, name)
    config = build_dataclass(spec.config_class, dict(options or {}), f"{kind}.{name}")
    ctx = context or ComponentContext(
        device="cpu",
        cache_dir=Path(tempfile.gettempdir()) / "ovpanoptic-testing",
        offline=True,
        prompt_templates=registry.template_sets(),
    )
    origin = registry.origin(spec.plugin)
    return BuiltComponent(boundary.build_component(spec, config, ctx, origin), Target.component(spec, origin), kind)


def _unwrap(component: Any, kind: str) -> tuple[Any, Target]:
    if isinstance(component, BuiltComponent):
        return component.obj, component.target
    name = type(component).__name__
    return component, Target(f"{KINDS[kind]} {name!r}", Origin("(under test)"), "fix the component")


@dataclass
class ProgressRecorder:
    """A ``progress`` callback that records its calls and checks their arguments."""

    target: Target
    calls: list[tuple[str, int, int]] = field(default_factory=list)

    def __call__(self, message: str, done: int, total: int) -> None:
        ok = (
            isinstance(message, str)
            and isinstance(done, (int, np.integer))
            and isinstance(total, (int, np.integer))
            and done >= 0
            and total >= 0
            and (total == 0 or done <= total)
        )
        if not ok:
            raise self.target.error(
                "generate()",
                f"it called progress({message!r}, {done!r}, {total!r})",
                "Call progress(message: str, done: int, total: int) with 0 <= done <= total (total 0 if unknown)",
            )
        self.calls.append((message, int(done), int(total)))


@_conformance
def check_proposal_generator(generator: Any, image: np.ndarray) -> ProposalSet:
    """Check a generator's contract on ``image`` as the pipeline calls it; returns its proposals.

    ``generator`` is a component object or a :class:`BuiltComponent`. It gets a read-only view of
    the image and a ``progress`` callback (whose arguments are checked).

    :raises ComponentError: the same error, with the same message, as the pipeline would raise.
    """
    obj, target = _unwrap(generator, "proposal_generator")
    progress = ProgressRecorder(target)
    proposals = boundary.call(target, "generate()", obj.generate, readonly_image(np.asarray(image)), progress=progress)
    return boundary.check_proposals(target, proposals, image.shape[:2])


def kit_prompts(height: int, width: int) -> tuple[Prompt, ...]:
    """The prompts :func:`check_prompt_segmenter` tries by default on a ``height x width`` image:
    a box over its middle half, one positive click at its centre (SAM's ambiguous case), the same
    click with a negative one near a corner, and the box with the centre click."""
    box = (width / 4, height / 4, 3 * width / 4, 3 * height / 4)
    centre = [[width / 2, height / 2]]
    return (
        Prompt(box_xyxy=box),
        Prompt(centre, [POSITIVE_POINT]),
        Prompt([*centre, [width / 8, height / 8]], [POSITIVE_POINT, NEGATIVE_POINT]),
        Prompt(centre, [POSITIVE_POINT], box),
    )


@_conformance
def check_prompt_segmenter(
    generator: Any, image: np.ndarray, prompts: Sequence[Prompt] | None = None
) -> list[ProposalSet]:
    """Check a :class:`~ovpanoptic.components.PromptSegmenter` as the pipeline calls it (a read-only
    image, prompts inside it): for each prompt (default :func:`kit_prompts`), masks at the image's
    size with the :func:`check_proposal_generator` contract, at most
    :data:`~ovpanoptic.constants.MAX_PROMPT_MASKS`, best first; the same prompt twice gives the
    same masks (an image embedding kept between calls must not change them).

    :return: the masks of each prompt, in order.
    :raises ComponentError: as the pipeline would raise (or the component has no ``segment_prompt``).
    """
    obj, target = _unwrap(generator, "proposal_generator")
    if not isinstance(obj, PromptSegmenter):
        raise target.error("segment_prompt()", f"a {type(obj).__name__!r} object has no segment_prompt()", "A PromptSegmenter has segment_prompt(image, prompt)")
    img = np.asarray(image)
    h, w = img.shape[:2]
    chosen = list(kit_prompts(h, w) if prompts is None else prompts)
    found = []
    for prompt in chosen:
        prompt.check_inside(h, w)
        masks = boundary.call(target, "segment_prompt()", obj.segment_prompt, readonly_image(img), prompt)
        found.append(boundary.check_prompt_proposals(target, masks, (h, w)))
    if chosen:
        masks = boundary.call(target, "segment_prompt()", obj.segment_prompt, readonly_image(img.copy()), chosen[0])
        again = boundary.check_prompt_proposals(target, masks, (h, w))
        if not (np.array_equal(again.masks, found[0].masks) and np.allclose(again.scores, found[0].scores)):
            raise target.error(
                "segment_prompt()",
                "the same prompt on the same image gave other masks the second time",
                "segment_prompt() is deterministic; what it keeps between calls must not change its answer",
            )
    return found


@_conformance
def check_classifier(classifier: Any, image: np.ndarray, proposals: ProposalSet, vocabulary: Vocabulary) -> ClassScores:
    """Check a classifier's contract; returns its scores for ``vocabulary``.

    Also scores the same prepared features against a second vocabulary (the pipeline re-queries an
    image that way) and checks that scoring is deterministic.

    :raises ComponentError: as the pipeline would raise.
    """
    obj, target = _unwrap(classifier, "classifier")
    prepared = boundary.call(target, "prepare()", obj.prepare, readonly_image(np.asarray(image)), proposals)
    errors = boundary.VOCABULARY_ERRORS
    scores = boundary.check_scores(target, boundary.call(target, "score()", obj.score, prepared, vocabulary, user_errors=errors), len(proposals), vocabulary)
    other = Vocabulary((Category(7, "zebra crossing", False), Category(11, "lamp post", True)), name="second")
    boundary.check_scores(target, boundary.call(target, "score()", obj.score, prepared, other, user_errors=errors), len(proposals), other)
    again = boundary.call(target, "score()", obj.score, prepared, vocabulary, user_errors=errors)
    if not np.allclose(again.probs, scores.probs):
        raise target.error("score()", "scoring the same features twice gave different probs", "score() is deterministic")
    return scores


@_conformance
def check_fuser(fuser: Any, proposals: ProposalSet, scores: ClassScores, vocabulary: Vocabulary) -> PanopticResult:
    """Check a fuser's contract; returns its result.

    :raises ComponentError: as the pipeline would raise.
    """
    obj, target = _unwrap(fuser, "fuser")
    result = boundary.call(target, "fuse()", obj.fuse, proposals, scores, vocabulary)
    return boundary.check_result(target, result, vocabulary, proposals.image_size)


@_conformance
def check_exporter(exporter: Any, result: PanopticResult, image: np.ndarray, outdir: Path) -> list[Path]:
    """Check an exporter: it writes the non-empty files it reports, inside ``outdir``, and leaves
    no temporary files. It gets a read-only view of the image.

    As in the product, a failed export is all or nothing: every file that appeared in ``outdir``
    during the check is removed (files that were there before are never touched) and the error
    names them.

    :raises ComponentError: as the pipeline would raise.
    """
    obj, target = _unwrap(exporter, "exporter")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    before = boundary.snapshot_files(outdir)
    try:
        returned = boundary.call(
            target, "export()", obj.export, result, readonly_image(np.asarray(image)), outdir, "check", user_errors=boundary.EXPORT_ERRORS
        )
        paths = boundary.check_export(target, returned, outdir)
        if not paths:
            raise target.error("export()", "it returned no paths", "export() returns the paths it wrote")
        empty = [p for p in paths if p.stat().st_size == 0]
        if empty:
            raise target.error("export()", f"it wrote an empty file {empty[0]}", "Write whole files")
        leftovers = sorted(p for p in outdir.rglob("*") if p.name.endswith(".tmp") and str(p.resolve()) not in before)
        if leftovers:
            raise target.error("export()", f"it left temporary files behind: {leftovers[:3]}", "Write atomically (ovpanoptic.atomic)")
    except BaseException as exc:
        error = boundary.roll_back(outdir, before, exc)
        if error is exc:
            raise
        raise error  # noqa: B904 - roll_back kept the plugin's exception as the cause
    return paths


@_conformance
def check_refiner(refiner: Any, result: PanopticResult, image: np.ndarray | None = None) -> PanopticResult:
    """Check a refiner as the pipeline calls it; returns its refined result.

    It gets ``result`` and a read-only view of ``image`` (or ``None``), and what it returns is
    validated by the product's :func:`~ovpanoptic.boundary.check_refined` (a valid result of the
    same size over the same vocabulary; segments kept or dropped, never added or relabelled).
    Refining the same input twice must give the same map (refiners are deterministic).

    :raises ComponentError: as the pipeline would raise.
    """
    obj, target = _unwrap(refiner, "refiner")
    view = None if image is None else readonly_image(np.asarray(image))
    refined = boundary.check_refined(target, boundary.call(target, "refine()", obj.refine, result, view), result)
    again = boundary.check_refined(target, boundary.call(target, "refine()", obj.refine, result, view), result)
    if not np.array_equal(again.panoptic_map, refined.panoptic_map):
        raise target.error("refine()", "refining the same result twice gave different maps", "refine() is deterministic")
    return refined


def _origin_of_object(plugin: Any, name: str) -> Origin:
    """The installed distribution that provides ``plugin``'s module, so that the kit's messages name
    it as the product's do; "(registered in code)" when none does."""
    import importlib.metadata

    module = plugin.__name__ if inspect.ismodule(plugin) else type(plugin).__module__
    top = str(module).split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    if not dists:
        return Origin(name)
    try:
        version = importlib.metadata.version(dists[0])
    except importlib.metadata.PackageNotFoundError:
        version = ""
    meta_name = importlib.metadata.metadata(dists[0])["Name"] or dists[0]
    return Origin(name, meta_name, version, False)


@_conformance
def check_plugin(plugin: Any, outdir: Path, *, name: str | None = None, image: np.ndarray | None = None) -> dict[str, list[str]]:
    """Check a whole plugin as the product would load and use it.

    Registers ``plugin`` beside the built-ins with the start-up checks of
    :func:`~ovpanoptic.plugins.make_plugin_manager` (unknown or unmarked hooks, API version, clean
    ``register`` calls), builds each component it registers through its factory and default config,
    and runs the matching ``check_*`` on :func:`make_shapes_image` (the kit's deterministic
    components supply the other stages). Named vocabularies are loaded.

    :return: ``{kind: [checked component names]}`` (``"vocabulary"`` for vocabularies).
    :raises PluginError: a start-up fault. :raises ComponentError: a component fault.
    """
    plugin_name = name or _plugin_name(plugin)
    pm = make_plugin_manager(entry_points=False, env={})
    if pm.is_registered(plugin):  # a built-in plugin module
        plugin_name = pm.get_name(plugin) or plugin_name
    else:
        origin = _origin_of_object(plugin, plugin_name)
        register_plugin_object(pm, plugin, origin)
        if origin.distribution != Origin.distribution:
            pm.origins[plugin_name] = (origin.distribution, origin.version, origin.builtin)
        check_hooks(pm)
    registry = Registry(pm)
    img = make_shapes_image() if image is None else image
    vocab = Vocabulary(
        (Category(1, "square", True), Category(2, "bar", False), Category(3, "background", False)), name="kit"
    )
    checked: dict[str, list[str]] = {}
    own = {kind: sorted(n for n, s in specs.items() if s.plugin == plugin_name) for kind, specs in registry.components.items()}
    proposals = check_proposal_generator(TilesGenerator(), img)
    scores = check_classifier(CyclingClassifier(), img, proposals, vocab)
    for comp in own["proposal_generator"]:
        built = build_component(registry, "proposal_generator", comp)
        check_proposal_generator(built, img)
        if isinstance(built.obj, PromptSegmenter):
            check_prompt_segmenter(built, img)
    for comp in own["classifier"]:
        check_classifier(build_component(registry, "classifier", comp), img, proposals, vocab)
    result = check_fuser(PaintFuser(), proposals, scores, vocab)
    for comp in own["fuser"]:
        check_fuser(build_component(registry, "fuser", comp), proposals, scores, vocab)
    for comp in own["exporter"]:
        check_exporter(build_component(registry, "exporter", comp), result, img, Path(outdir) / comp)
    for comp in own["refiner"]:
        check_refiner(build_component(registry, "refiner", comp), result, img)
    for kind, names in own.items():
        if names:
            checked[kind] = names
    vocabularies = sorted(n for n, s in registry.vocabularies.items() if s.plugin == plugin_name)
    for vname in vocabularies:
        registry.vocabulary(vname)
    if vocabularies:
        checked["vocabulary"] = vocabularies
    return checked


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def ovpanoptic_pm() -> OvpanopticPluginManager:
    """A fresh plugin manager with the built-in plugins only (no entry points)."""
    return make_plugin_manager(entry_points=False, env={})


@pytest.fixture
def register_plugin(ovpanoptic_pm: OvpanopticPluginManager) -> Iterator[Callable[..., Any]]:
    """``register_plugin(obj, name=None)`` registers on ``ovpanoptic_pm`` for this test only, with
    the product's start-up checks (API version, unmarked hooks, a class instead of an instance)."""
    registered: list[Any] = []

    def register(plugin: Any, name: str | None = None) -> Any:
        default = plugin.__name__ if isinstance(plugin, type) else type(plugin).__name__
        register_plugin_object(ovpanoptic_pm, plugin, Origin(name or default))
        registered.append(plugin)
        return plugin

    yield register
    for plugin in registered:
        if ovpanoptic_pm.is_registered(plugin):
            ovpanoptic_pm.unregister(plugin)


@pytest.fixture
def make_registry(ovpanoptic_pm: OvpanopticPluginManager) -> Callable[[], Registry]:
    """``make_registry()`` collects the components of ``ovpanoptic_pm``'s current plugins, after
    the same start-up checks as the product (``check_pending()`` with the closest hook name)."""

    def make() -> Registry:
        check_hooks(ovpanoptic_pm)
        return Registry(ovpanoptic_pm)

    return make


@pytest.fixture
def shapes_image() -> np.ndarray:
    """See :func:`make_shapes_image`."""
    return make_shapes_image()


def _plugin_name(plugin: Any) -> str:
    """A module's name, a class's name, or an instance's class name."""
    if isinstance(plugin, type) or inspect.ismodule(plugin):
        return str(plugin.__name__)
    return type(plugin).__name__


def registry_with(*plugins: Any, disable: Sequence[str] = ()) -> Registry:
    """A registry over the built-ins plus ``plugins`` (named by module name or class name), with
    the product's start-up checks."""
    named = [(_plugin_name(p), p) for p in plugins]
    return Registry(make_plugin_manager(disable, entry_points=False, plugins=named, env={}))
