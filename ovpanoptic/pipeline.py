"""The pipeline: proposals -> classification -> fusion, with components chosen by name.

Constructing a :class:`Pipeline` loads nothing: the plugin registry is built on first need, and
each component is created (and loads its weights) on first use. The proposals and the classifier's
image features of the last few images are cached, so segmenting the same image again with another
vocabulary only re-runs scoring and fusion.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .components import KINDS, Classifier, ComponentContext, Exporter, Fuser, Progress, ProposalGenerator
from .config import Config, load_config
from .constants import CACHE_DIR_ENV
from .device import resolve_device
from .errors import InputError, PluginError
from .imageio import as_rgb_array, image_digest, resize_longest_side
from .plugins import Registry
from .weights import is_offline
from .types import ClassScores, PanopticResult, ProposalSet, Vocabulary

__all__ = ["Pipeline", "default_cache_dir"]

log = logging.getLogger(__name__)

_PROTOCOLS: dict[str, tuple[type, str]] = {
    "proposal_generator": (ProposalGenerator, "generate(image, *, progress=None)"),
    "classifier": (Classifier, "prepare(image, proposals) and score(prepared, vocabulary)"),
    "fuser": (Fuser, "fuse(proposals, scores, vocabulary)"),
    "exporter": (Exporter, "export(result, image, outdir, stem)"),
}


def default_cache_dir() -> Path:
    """``$OVPANOPTIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/ovpanoptic``, else ``~/.cache/ovpanoptic``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ovpanoptic"


@dataclass(frozen=True)
class _ImageEntry:
    proposals: ProposalSet
    prepared: Any
    timings: dict[str, float]


class Pipeline:
    """Open-vocabulary panoptic segmentation with pluggable components.

    :param config: a :class:`~ovpanoptic.config.Config`, a preset name, a TOML path, or ``None``
        for the ``default`` preset.
    :param overrides: ``--set`` style overrides (``"pipeline.max_side=512"``).
    :param device: overrides ``pipeline.device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    :param registry: a prepared :class:`~ovpanoptic.plugins.Registry` (tests, embedding apps);
        by default one is built from the installed plugins on first need.
    :param disable_plugins: plugin names to block when building the registry.
    """

    def __init__(
        self,
        config: Config | str | Path | None = None,
        *,
        overrides: Sequence[str] = (),
        device: str | None = None,
        registry: Registry | None = None,
        disable_plugins: Iterable[str] = (),
    ) -> None:
        cfg = config if isinstance(config, Config) else load_config(config)
        if overrides:
            cfg = cfg.with_overrides(overrides)
        if device is not None:
            cfg = cfg.with_overrides([f"pipeline.device={device!r}"])
        self.config: Config = cfg
        self._registry = registry
        self._disable = tuple(disable_plugins)
        self._device: str | None = None
        self._components: dict[tuple[str, str], Any] = {}
        self._cache: OrderedDict[str, _ImageEntry] = OrderedDict()
        self._checked = False

    # -- resolution --------------------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        """The plugin registry (built on first access)."""
        if self._registry is None:
            self._registry = Registry.create(self._disable)
        return self._registry

    @property
    def device(self) -> str:
        """The resolved torch device (resolved once, on first access)."""
        if self._device is None:
            self._device = resolve_device(self.config.pipeline.device)
        return self._device

    def check(self) -> None:
        """Validate the config against the registry without loading anything.

        :raises ComponentNotFoundError: a selected component is not provided by any plugin.
        :raises ConfigError: a component table has unknown keys or bad values.
        """
        if self._checked:
            return
        self.config.selected(self.registry.components)
        self.config.check_tables(self.registry.components)
        for name in self.config.pipeline.exporters:
            self.registry.component("exporter", name)
        self._checked = True

    def component(self, kind: str, name: str | None = None) -> Any:
        """The component of ``kind`` (the configured one unless ``name`` is given), created once."""
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}")
        if name is None:
            if kind == "exporter":
                raise ValueError("exporters are chosen by name: component('exporter', NAME)")
            name = getattr(self.config.pipeline, kind)
        key = (kind, name)
        if key not in self._components:
            spec = self.registry.component(kind, name)
            cfg = self.config.component_config(spec)
            context = ComponentContext(
                device=self.device,
                cache_dir=default_cache_dir(),
                offline=is_offline(),
                prompt_templates={name: t for name, (t, _, _) in self.registry.prompt_templates.items()},
            )
            obj = spec.factory(cfg, context)
            protocol, methods = _PROTOCOLS[kind]
            if not isinstance(obj, protocol):
                raise PluginError(
                    f"{KINDS[kind]} {name!r} from plugin {spec.plugin!r} built a {type(obj).__name__}, which "
                    f"lacks {methods}"
                )
            self._components[key] = obj
        return self._components[key]

    def vocabulary(
        self, classes: str | Sequence[str] = "", stuff: str = "", things: str = "", *, name: str | None = None
    ) -> Vocabulary:
        """Build a vocabulary from typed names (see :mod:`ovpanoptic.vocabulary`) or by ``name``.

        :param classes: ``"person, tv|television"`` or a list of entries.
        :param name: a registered vocabulary (``coco``, ``ade20k``, ...); exclusive with the lists.
        """
        if not isinstance(classes, str):
            classes = ", ".join(classes)
        if name is not None:
            if classes.strip() or stuff.strip() or things.strip():
                raise InputError("give either a named vocabulary or class names, not both")
            return self.registry.vocabulary(name)
        return self.registry.parse_vocabulary(classes, stuff, things)

    # -- running -----------------------------------------------------------------------------

    def _image_entry(self, work: np.ndarray, progress: Progress | None) -> tuple[_ImageEntry, bool]:
        key = image_digest(work)
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            return entry, True
        generator = self.component("proposal_generator")
        classifier = self.component("classifier")
        t0 = time.perf_counter()
        proposals = generator.generate(work, progress=progress)
        t1 = time.perf_counter()
        if not isinstance(proposals, ProposalSet):
            raise PluginError(
                f"proposal generator {self.config.pipeline.proposal_generator!r} returned "
                f"{type(proposals).__name__}, not a ProposalSet"
            )
        if proposals.image_size != work.shape[:2]:
            raise PluginError(
                f"proposal generator {self.config.pipeline.proposal_generator!r} returned masks of size "
                f"{proposals.image_size} for an image of size {work.shape[:2]}"
            )
        prepared = classifier.prepare(work, proposals)
        t2 = time.perf_counter()
        entry = _ImageEntry(proposals, prepared, {"proposals": t1 - t0, "features": t2 - t1})
        if self.config.pipeline.cache_images:
            self._cache[key] = entry
            while len(self._cache) > self.config.pipeline.cache_images:
                self._cache.popitem(last=False)
        return entry, False

    def segment(
        self,
        image: Any,
        vocabulary: Vocabulary | str,
        *,
        progress: Progress | None = None,
        source: str = "<array>",
    ) -> PanopticResult:
        """Segment one image.

        :param image: a path, PIL image or array (see :func:`ovpanoptic.imageio.as_rgb_array`).
        :param vocabulary: a :class:`Vocabulary` or a typed class list (``"person, car, road"``).
        :param progress: ``progress(message, done, total)`` callback for long stages.
        :param source: a label passed to the ``image_segmented`` hook.
        :return: the result at the input image's size; ``result.timings`` has seconds per stage
            (``proposals`` and ``features`` are 0 when they came from the cache).
        """
        if isinstance(image, (str, os.PathLike)) and source == "<array>":
            source = str(image)
        vocab = vocabulary if isinstance(vocabulary, Vocabulary) else self.vocabulary(vocabulary)
        rgb = as_rgb_array(image)
        self.check()
        work = resize_longest_side(rgb, self.config.pipeline.max_side)
        t_start = time.perf_counter()
        entry, cached = self._image_entry(work, progress)
        timings = {"proposals": 0.0, "features": 0.0} if cached else dict(entry.timings)
        t0 = time.perf_counter()
        scores = self.component("classifier").score(entry.prepared, vocab)
        t1 = time.perf_counter()
        if not isinstance(scores, ClassScores) or len(scores) != len(entry.proposals):
            raise PluginError(
                f"classifier {self.config.pipeline.classifier!r} must return ClassScores with one row per "
                f"proposal ({len(entry.proposals)})"
            )
        if scores.category_ids != vocab.ids:
            raise PluginError(
                f"classifier {self.config.pipeline.classifier!r} returned columns for categories "
                f"{scores.category_ids[:5]}..., expected the vocabulary's ids in order"
            )
        result = self.component("fuser").fuse(entry.proposals, scores, vocab)
        t2 = time.perf_counter()
        if not isinstance(result, PanopticResult):
            raise PluginError(f"fuser {self.config.pipeline.fuser!r} returned {type(result).__name__}")
        if work.shape[:2] != rgb.shape[:2]:
            result = result.resized(rgb.shape[0], rgb.shape[1])
        t3 = time.perf_counter()
        timings.update({"classify": t1 - t0, "fuse": t2 - t1, "resize": t3 - t2})
        timings["total"] = (t3 - t_start) if not cached else (t3 - t0)
        result = result.with_timings(timings)
        self.registry.pm.hook.image_segmented(source=source, result=result, timings=result.timings)
        return result

    def export(
        self, result: PanopticResult, image: Any, outdir: str | Path, stem: str, formats: Sequence[str] | None = None
    ) -> list[Path]:
        """Write ``result`` with each exporter in ``formats`` (default ``pipeline.exporters``)."""
        names = list(formats) if formats is not None else list(self.config.pipeline.exporters)
        exporters = [self.component("exporter", n) for n in names]
        rgb = as_rgb_array(image)
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        for exporter in exporters:
            paths.extend(Path(p) for p in exporter.export(result, rgb, out, stem))
        return paths

    def clear_cache(self) -> None:
        """Forget cached proposals and features."""
        self._cache.clear()
