"""The pipeline: proposals -> classification -> fusion, with components chosen by name.

Constructing a :class:`Pipeline` loads nothing: the plugin registry is built on first need, and
each component is created (and loads its weights) on first use. The proposals and the classifier's
image features of the last few images are cached, so segmenting the same image again with another
vocabulary only re-runs scoring and fusion.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import boundary
from .atomic import check_output_folder
from .boundary import readonly_image, snapshot_files
from .components import KINDS, BatchEncoder, ComponentContext, Finisher, NameKeyer, Progress, PromptSegmenter, VocabularyPreparer
from .config import (
    Config,
    DeviceProfile,
    check_component_tables,
    list_device_profiles,
    load_config,
    load_device_profile,
)
from .constants import CACHE_DIR_ENV, MAX_BATCH_SIZE
from .device import DEVICE_PROFILES, describe_device, resolve_device
from .errors import Cancelled, ComponentError, ConfigError, InputError, OvpanopticError
from .imageio import as_rgb_array, check_pixels, image_digest, read_image, resize_longest_side
from .plugins import Registry
from .threads import intra_op_threads
from .types import ClassScores, PanopticResult, Prompt, ProposalSet, Vocabulary, size_text
from .vocabulary import check_distinct_names
from .weights import is_offline, release_freed_memory

if TYPE_CHECKING:
    from .video import VideoFrameResult

__all__ = ["Pipeline", "SegmentationRun", "check_stem", "default_cache_dir"]

log = logging.getLogger(__name__)

#: How a caller of :meth:`Pipeline.export` chooses another output folder (for its errors).
_EXPORT_FIX = "pass an existing or creatable, writable folder as outdir"

#: Vocabularies whose names a pipeline remembers having checked against its classifier
#: (:meth:`Pipeline.check_names`), so segmenting image after image does not key them again.
CHECKED_VOCABULARIES = 16


def check_stem(stem: object) -> str:
    """Check an output name stem: a plain, visible file name without a folder part.

    :raises InputError: empty, ``.``/``..``, a path separator, a leading dot (hidden files and
        temporary files start with one), a control character, or longer than 200 bytes.
    """
    if not isinstance(stem, str) or not stem.strip():
        raise InputError(f"the output name (stem) must be a non-empty string, got {stem!r}")
    bad = [ch for ch in stem if ch in "/\\" or ch == os.sep or ord(ch) < 32]
    if bad or stem in (".", ".."):
        raise InputError(f"the output name {stem!r} must be a plain file name, without folders or control characters")
    if stem.startswith("."):
        raise InputError(f"the output name {stem!r} starts with '.', which hides its files: drop the dot")
    if len(stem.encode("utf-8")) > 200:
        raise InputError(f"the output name {stem[:20]!r}... is {len(stem.encode())} bytes long: keep it under 200")
    return stem


def default_cache_dir() -> Path:
    """``$OVPANOPTIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/ovpanoptic``, else ``~/.cache/ovpanoptic``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ovpanoptic"


@dataclass(frozen=True, eq=False)
class SegmentationRun:
    """What :meth:`Pipeline.segment_run` made.

    :param result: the panoptic result at the input image's size (what :meth:`Pipeline.segment` returns).
    :param proposals: the proposals at the working size (``pipeline.max_side``), before fusion.
    :param scores: their class scores, one row per proposal.
    :param cached: the proposals and image features came from the cache.
    """

    result: PanopticResult
    proposals: ProposalSet
    scores: ClassScores
    cached: bool


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
        if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
            raise InputError(
                f"overrides must be a list of 'KEY=VALUE' strings, e.g. overrides=['pipeline.max_side=512'], got {overrides!r}"
            )
        if config is not None and not isinstance(config, (Config, str, os.PathLike)):
            raise InputError(f"config must be a preset name, a TOML path or a Config, got {type(config).__name__}")
        cfg = config if isinstance(config, Config) else load_config(config)
        if overrides:
            cfg = cfg.with_overrides(overrides)
        if device is not None:
            cfg = cfg.with_overrides([f"pipeline.device={device!r}"])
        self.config: Config = cfg
        self._registry = registry
        self._disable = tuple(disable_plugins)
        self._device: str | None = None
        #: while a segment_run waits for the device to be resolved: what chooses the thread count then
        self._on_device: Callable[[str], None] | None = None
        self._profile: DeviceProfile | None = None
        self._profiled: set[str] | None = None
        self._components: dict[tuple[str, str], Any] = {}
        self._cache: OrderedDict[str, _ImageEntry] = OrderedDict()
        #: the last encode_batch's images (working image digest) -> each one's share of its seconds
        self._batch_shares: dict[str, float] = {}
        #: whether batch_size has logged where its value comes from
        self._batch_told = False
        #: how many encode_batch calls put how many images through the encoders together
        self.encode_batches: dict[int, int] = {}
        #: component kinds whose encode_batch failed once: not asked again
        self._no_batch: set[str] = set()
        self._names_checked: OrderedDict[tuple[str, Vocabulary], None] = OrderedDict()
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
            log.info("device %s (pipeline.device = %r)", self._device, self.config.pipeline.device)
            if self._on_device is not None:  # the first model loads inside a segment_run: choose its threads now
                self._on_device(self._device)
        return self._device

    @property
    def device_profile(self) -> DeviceProfile | None:
        """The device profile in use (``pipeline.device_profile``; ``None`` for ``"none"``),
        read on first access: for ``"auto"`` that resolves the device (importing torch).

        :raises ConfigError: the profile does not exist or is invalid.
        """
        setting = self.config.pipeline.device_profile.strip()
        if setting == "none":
            return None
        if self._profile is None:
            if setting == "auto":
                info = describe_device(self.device)
                self._profile = load_device_profile(info.profile, reason=f"device {info.device}: {info.reason}")
            else:
                self._profile = load_device_profile(setting, reason=f"pipeline.device_profile = {setting!r}")
            self._check_profile(self._profile)
        return self._profile

    @property
    def tracker(self) -> str:
        """The video tracker's name: ``pipeline.tracker`` where the config states it (preset, file,
        ``--set``, ``--tracker``), else the device profile's ``[pipeline] tracker`` if it has one
        (the CUDA profiles: ``sam2-video``), else the default (``flow``).

        :raises ConfigError: the device profile does not exist or is invalid.
        """
        chosen, profile = self._profile_setting("tracker")
        if profile is not None:
            log.info("pipeline.tracker = %r from device profile %r (%s)", chosen, profile.name, profile.source)
        return str(chosen)

    @property
    def batch_size_source(self) -> str:
        """Where :attr:`batch_size` comes from, in words (for logs and the Ray driver): ``"the
        config"``, ``"device profile NAME (FILE)"`` or ``"the default"``."""
        return self._batch_size_choice()[1]

    @property
    def batch_size(self) -> int:
        """Images whose image encoders run together in batch runs (:meth:`encode_batch`):
        ``pipeline.batch_size`` where the config states it, else the device profile's ``[pipeline]
        batch_size`` if it has one (the CUDA profiles: 8, or 4 without bfloat16), else 1. With
        ``device_profile = "auto"`` the profile's value applies once the device is resolved (by the
        first component that loads a model: the engines read this before each group of images, so a
        batch run's first image goes alone); a model-free pipeline never resolves a device for it.
        The first value above 1 is logged with where it comes from.

        :raises ConfigError: the device profile does not exist or is invalid.
        """
        size, source = self._batch_size_choice()
        if size > 1 and not self._batch_told:
            log.info("pipeline.batch_size = %d from %s: the image encoders take %d images at a time", size, source, size)
            self._batch_told = True
        return size

    def _batch_size_choice(self) -> tuple[int, str]:
        """:attr:`batch_size` and :attr:`batch_size_source`, from one reading."""
        chosen, profile = self._profile_setting("batch_size", resolve=False)
        if profile is not None:
            return int(chosen), f"device profile {profile.name!r} ({profile.source})"
        return int(chosen), "the config" if "batch_size" in self.config.stated else "the default"

    def _profile_setting(self, key: str, *, resolve: bool = True) -> tuple[Any, DeviceProfile | None]:
        """``pipeline.KEY`` (one of :data:`~ovpanoptic.config.PROFILE_PIPELINE_KEYS`) as a run uses
        it, and the device profile it came from (``None`` when not from one): the config's value
        where the config states it or profiles are off, else the profile's ``[pipeline] KEY`` if it
        has one, else the config's (default) value.

        :param resolve: ``False``: with ``device_profile = "auto"`` and the device not resolved
            yet, the config's value (nothing is resolved, nor torch imported, for it).
        :raises ConfigError: the device profile does not exist or is invalid.
        """
        settings = self.config.pipeline
        own = getattr(settings, key)
        setting = settings.device_profile.strip()
        if key in self.config.stated or setting == "none" or (not resolve and self._device is None and setting == "auto"):
            return own, None
        profile = self.device_profile
        chosen = profile.pipeline.get(key) if profile is not None else None
        return (chosen, profile) if chosen else (own, None)

    def _check_profile(self, profile: DeviceProfile) -> None:
        """A profile's component names must be registered (or far from any registered name, like
        a preset's tables for plugins not installed here), and its options valid.

        :raises ConfigError: naming the profile file.
        """
        where = f"device profile {profile.source}"
        check_component_tables(profile.tables, self.registry.components, where, f" of {where}", blocked=self.registry.blocked_components())

    def _profile_defaults(self, kind: str, name: str) -> dict[str, Any]:
        """The device profile's options for one component, logged with where each value comes from.

        With ``device_profile = "auto"``, a component that no shipped profile mentions gets none
        without the device being resolved, so model-free pipelines never import torch.
        """
        setting = self.config.pipeline.device_profile.strip()
        if setting == "none":
            log.info("%s.%s: no device profile (pipeline.device_profile = 'none')", kind, name)
            return {}
        if setting == "auto":
            if self._profiled is None:
                self._profiled = set()
                for path in list_device_profiles().values():
                    try:
                        tables = load_device_profile(path).tables
                    except ConfigError:  # reported if it is ever the one chosen
                        continue
                    self._profiled.update(f"{k}.{n}" for k, t in tables.items() for n in t)
            if f"{kind}.{name}" not in self._profiled:
                return {}
        profile = self.device_profile
        if profile is not None and setting != "auto" and profile.name in DEVICE_PROFILES:
            suited = describe_device(self.device).profile
            if suited != profile.name:
                log.warning(
                    "device profile %r is meant for another device: this run uses %s, whose profile is %r "
                    "(pipeline.device_profile = 'auto' picks it)", profile.name, self.device, suited,
                )
        table = dict(profile.table(kind, name)) if profile is not None else {}
        if table and profile is not None:
            explicit = self.config.explicit(kind, name)
            used = ", ".join(f"{k}={v!r}" for k, v in table.items() if k not in explicit)
            kept = ", ".join(sorted(k for k in table if k in explicit))
            log.info(
                "%s.%s: device profile %r from %s (%s): %s%s", kind, name, profile.name, profile.source, profile.reason,
                used or "nothing (the config sets every option it has)",
                f"; the config's own value kept for {kept}" if kept else "",
            )
        return table

    def check(self) -> None:
        """Validate the config against the registry without loading anything.

        :raises ComponentNotFoundError: a selected component is not provided by any plugin.
        :raises ConfigError: a component table has unknown keys or bad values, or a device profile
            named in ``pipeline.device_profile`` does not exist or sets bad values.
        :raises InputError: ``pipeline.device`` names an accelerator that is not available.
        """
        if self._checked:
            return
        self.config.selected(self.registry.components)
        self.config.check_tables(self.registry.components, self.registry.blocked_components())
        if self.config.pipeline.device not in ("auto", "cpu"):
            self.device  # noqa: B018 - an accelerator asked for by name must exist, model or not ("auto" stays lazy)
        if self.config.pipeline.device_profile.strip() not in ("auto", "none"):  # auto: known once the device is
            self.device_profile  # noqa: B018 - reading it loads and checks the named profile
        for name in self.config.pipeline.exporters:
            self.registry.component("exporter", name)
        for name in self.config.pipeline.refiners:
            self.registry.component("refiner", name)
        self._checked = True

    def component(self, kind: str, name: str | None = None) -> Any:
        """The component of ``kind`` (the configured one unless ``name`` is given; the tracker:
        :attr:`tracker`), created once.

        Built through its registered factory and validated config (see
        :func:`ovpanoptic.boundary.build_component`).

        :raises ComponentNotFoundError: no enabled plugin provides it.
        :raises ConfigError: its config table is invalid.
        :raises ComponentError: the factory raised or built an object that breaks its Protocol.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}")
        if name is None:
            if kind in ("exporter", "refiner"):
                raise ValueError(f"{kind}s are chosen by name: component({kind!r}, NAME)")
            name = self.tracker if kind == "tracker" else getattr(self.config.pipeline, kind)
        key = (kind, name)
        if key not in self._components:
            spec = self.registry.component(kind, name)
            cfg = self.component_config(kind, name)
            context = ComponentContext(
                device=None,  # type: ignore[arg-type]  # resolved on first read
                resolve_device=lambda: self.device,
                cache_dir=default_cache_dir(),
                offline=is_offline(),
                prompt_templates=self.registry.template_sets(),
            )
            self._components[key] = boundary.build_component(spec, cfg, context, self.registry.origin(spec.plugin))
        return self._components[key]

    def component_config(self, kind: str, name: str | None = None) -> Any:
        """The validated config dataclass the component of ``kind`` gets (the configured one unless
        ``name`` is given): its defaults, under the device profile, under the config's table.
        Builds nothing and loads nothing (reading it may resolve the device for the profile).

        :raises ComponentNotFoundError: no enabled plugin provides it. :raises ConfigError: bad table.
        """
        if name is None:
            name = getattr(self.config.pipeline, kind)
        spec = self.registry.component(kind, name)
        return self.config.component_config(spec, self._profile_defaults(kind, name))

    def build_components(self, formats: Sequence[str] | None = None) -> None:
        """Build the configured components and the exporters in ``formats`` now (factories load no
        weights), so that a broken plugin is reported before a batch writes anything.

        :raises OvpanopticError: as :meth:`check` and :meth:`component`.
        """
        self.check()
        for kind in ("proposal_generator", "classifier", "fuser"):
            self.component(kind)
        for name in self.config.pipeline.refiners:
            self.component("refiner", name)
        names = list(formats) if formats is not None else list(self.config.pipeline.exporters)
        for name in names:
            self.component("exporter", name)

    def prepare_vocabulary(self, vocabulary: Vocabulary, progress: Progress | None = None) -> None:
        """Let the classifier do its per-vocabulary work now (see
        :class:`~ovpanoptic.components.VocabularyPreparer`); nothing for classifiers without it.

        :raises VocabularyError: a class name the classifier cannot use (e.g. too many tokens).
        """
        self.check_names(vocabulary)
        classifier = self.component("classifier")
        if isinstance(classifier, VocabularyPreparer):
            boundary.call(
                self.target("classifier"),
                "prepare_vocabulary()",
                classifier.prepare_vocabulary,
                vocabulary,
                progress=progress,
                user_errors=boundary.VOCABULARY_ERRORS,
            )

    def check_names(self, vocabulary: Vocabulary) -> Vocabulary:
        """Refuse names that the configured classifier reads as the same text (CLIP's tokenizer
        reads ``t-shirt`` and ``t - shirt`` alike: the second could never win), using the
        classifier's own :meth:`~ovpanoptic.components.NameKeyer.name_key`; a classifier without it
        gets only the :class:`~ovpanoptic.types.Vocabulary` check (case, Unicode width, spaces).
        :meth:`vocabulary`, :meth:`prepare_vocabulary`, :meth:`segment` and :meth:`segment_video`
        call it; the last :data:`CHECKED_VOCABULARIES` vocabularies checked are remembered.

        :return: ``vocabulary`` itself.
        :raises VocabularyError: ``class name ... appears twice``, naming both entries.
        :raises ComponentError: ``name_key`` failed or returned an unhashable key.
        """
        memo = (self.config.pipeline.classifier, vocabulary)
        if memo in self._names_checked:
            self._names_checked.move_to_end(memo)
            return vocabulary
        classifier = self.component("classifier")
        if isinstance(classifier, NameKeyer):
            target = self.target("classifier")
            names = [n for category in vocabulary for n in category.names]
            keys = boundary.call(
                target, "name_key()", lambda: {n: classifier.name_key(n) for n in names}, user_errors=boundary.VOCABULARY_ERRORS
            )
            for name, key in keys.items():
                try:
                    hash(key)
                except TypeError:
                    raise target.error(
                        "name_key()",
                        f"it returned an unhashable {type(key).__name__} for {name!r}",
                        "name_key() must return a hashable value, e.g. a tuple of token ids",
                    ) from None
            check_distinct_names(vocabulary, keys, f"the {target.what}")
        self._names_checked[memo] = None
        while len(self._names_checked) > CHECKED_VOCABULARIES:
            self._names_checked.popitem(last=False)
        return vocabulary

    def target(self, kind: str, name: str | None = None) -> boundary.Target:
        """The plugin code behind a component, for messages and guarded calls (:func:`ovpanoptic.boundary.call`).

        :param kind: the component kind (``"classifier"``, ``"tracker"``, ...; see :data:`~ovpanoptic.components.KINDS`).
        :param name: the component's name; by default the configured one (for ``"tracker"``, :attr:`tracker`).
        :raises ComponentNotFoundError: no component of that kind has that name.
        """
        spec = self.registry.component(kind, name or (self.tracker if kind == "tracker" else getattr(self.config.pipeline, kind)))
        return self.registry.target(spec)

    def vocabulary(
        self, classes: str | Sequence[str] = "", stuff: str = "", things: str = "", *, name: str | None = None
    ) -> Vocabulary:
        """Build a vocabulary from typed names (see :mod:`ovpanoptic.vocabulary`) or by ``name``.

        :param classes: ``"person, tv|television"`` or a list of entries.
        :param name: a registered vocabulary (``coco``, ``ade20k``, ...); exclusive with the lists.
        """
        if classes is None:
            raise InputError("no class names given: pass a string like \"person, car, road\", a list of names, or name=...")
        if not isinstance(classes, str):
            if not all(isinstance(c, str) for c in classes):
                raise InputError(f"class names must be strings, got {[type(c).__name__ for c in classes][:5]}")
            classes = ", ".join(classes)
        if name is not None:
            if classes.strip() or stuff.strip() or things.strip():
                raise InputError("give either a named vocabulary or class names, not both")
            return self.check_names(self.registry.vocabulary(name))
        return self.check_names(self.registry.parse_vocabulary(classes, stuff, things))

    # -- running -----------------------------------------------------------------------------

    def _read(self, image: Any) -> np.ndarray:
        """An input image (path, PIL image or array) as RGB, refused above ``pipeline.max_pixels``.

        :raises ImageReadError: the file cannot be decoded. :raises InputError: too many pixels.
        """
        if isinstance(image, (str, os.PathLike)):
            return read_image(image, self.config.pipeline.max_pixels)
        rgb = as_rgb_array(image)
        check_pixels(rgb.shape[1], rgb.shape[0], self.config.pipeline.max_pixels, "the image")
        return rgb

    def _working(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` at the pipeline's working size (``pipeline.max_side``, ``pipeline.min_side``):
        what the components get."""
        return resize_longest_side(rgb, self.config.pipeline.max_side, self.config.pipeline.min_side)

    def _image_entry(self, work: np.ndarray, progress: Progress | None) -> tuple[_ImageEntry, bool]:
        key = image_digest(work)
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            return entry, True
        generator = self.component("proposal_generator")
        classifier = self.component("classifier")
        view = readonly_image(work)
        target = self.target("proposal_generator")
        # The model stages' temporaries are large (SAM 2's image encoder peaks ~0.5 GB above its
        # weights at 1024 px) and glibc keeps freed blocks for reuse, so each stage would start on
        # top of the last one's leftovers: hand them back to the OS between stages (measured: peak
        # RSS ~0.3 GB lower, default preset, 1024x768).
        release_freed_memory()
        if progress is not None:
            progress("proposals", 0, 0)
        t0 = time.perf_counter()
        proposals = boundary.call(target, "generate()", generator.generate, view, progress=progress)
        boundary.check_proposals(target, proposals, work.shape[:2])
        t1 = time.perf_counter()
        release_freed_memory()
        if progress is not None:
            progress("image features", 0, 0)
        prepared = boundary.call(self.target("classifier"), "prepare()", classifier.prepare, view, proposals)
        release_freed_memory()
        t2 = time.perf_counter()
        timings = {"proposals": t1 - t0, "features": t2 - t1}
        if key in self._batch_shares:
            timings["batch_encode"] = self._batch_shares.pop(key)
        entry = _ImageEntry(proposals, prepared, timings)
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
        return self.segment_run(image, vocabulary, progress=progress, source=source).result

    def segment_run(
        self,
        image: Any,
        vocabulary: Vocabulary | str,
        *,
        progress: Progress | None = None,
        source: str = "<array>",
        refine: bool = True,
    ) -> SegmentationRun:
        """:meth:`segment`, also returning what the stages made (the proposals and their class
        scores), so a caller can say how many proposals there were and which threshold dropped them.

        ``progress`` is called with each stage's name before it runs (``"proposals"``,
        ``"image features"``, ``"classification"``, ``"fusion"``, ``"refinement"`` when
        ``pipeline.refiners`` names any, ``done = total = 0``), besides the components' own progress.

        :param refine: apply ``pipeline.refiners`` (see :meth:`refine`) to the result; the video
            runner passes ``False`` and refines the frames it composes instead.

        On a CPU the image runs with the intra-op thread count ``pipeline.threads`` chooses from the
        machine's load at that moment (:func:`ovpanoptic.threads.intra_op_threads`), restored after it:
        every caller (CLI, engines, Ray workers, video keyframes, demo) gets the same rule. On the first
        image the choice is made when the device is resolved (by the first component that loads a model,
        before it runs); a model-free pipeline never resolves a device nor imports torch for it.
        """
        with self._threads():
            return self._segment_run(image, vocabulary, progress=progress, source=source, refine=refine)

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """The intra-op thread count ``pipeline.threads`` chooses, for one image's model work or a
        batch's encoders (see :meth:`segment_run`), restored after."""
        with contextlib.ExitStack() as stack:
            if self._device is not None:
                stack.enter_context(intra_op_threads(self.config.pipeline.threads, self._device))
            else:
                self._on_device = lambda device: stack.enter_context(intra_op_threads(self.config.pipeline.threads, device))
                stack.callback(setattr, self, "_on_device", None)
            yield

    def encode_batch(self, images: Sequence[Any], *, sources: Sequence[str] | None = None) -> int:
        """Run the image encoders of the proposal generator and the classifier on ``images`` in one
        forward pass each, where they offer it (:class:`~ovpanoptic.components.BatchEncoder`); the
        next :meth:`segment_run` of each of these images finds its encodings kept (by content: an
        image changed since is encoded again) instead of encoding it alone. The engines call it
        with the next :attr:`batch_size` images when that is above 1; the results are those of
        single images.

        Images already in the pipeline's result cache, duplicates, and those that cannot be read
        or are too large are left out (the latter fail in their own :meth:`segment_run`, with their
        own error). A component's batched pass that fails (a plugin fault, a GPU out of memory) is
        not raised: it is logged (naming ``sources``), each image is then encoded alone, so a fault
        is reported against the image that causes it, and that component is not asked to batch
        again. Each image's ``timings`` get ``batch_encode``: its share of the batch's seconds.

        :param images: a list of paths, PIL images or arrays, as :meth:`segment_run` takes them
            (or an ``(N, H, W, 3)`` array), at most :attr:`batch_size` of them.
        :param sources: names of the images for messages (file names), in the same order.
        :return: how many images went through an encoder together (0 when fewer than 2 were left,
            no component offers ``encode_batch``, or every batched pass failed).
        :raises InputError: ``images`` is not a list of images (one image, a path), or holds more
            than :attr:`batch_size`.
        """
        if isinstance(images, (str, os.PathLike, bytes)) or (isinstance(images, np.ndarray) and images.ndim != 4) or not isinstance(
            images, (Sequence, np.ndarray)
        ):
            raise InputError(
                f"encode_batch() takes a list of images, got {type(images).__name__}"
                + (f" of shape {images.shape}" if isinstance(images, np.ndarray) else "")
                + ": pass [image, ...] (one image needs no batch: segment it)"
            )
        if self._device is None and self.config.pipeline.device_profile.strip() == "auto":
            self.device  # noqa: B018 - the models are about to run: the device's profile sets the batch size
        if len(images) > self.batch_size:
            raise InputError(
                f"encode_batch() got {len(images)} images, more than pipeline.batch_size ({self.batch_size}): pass at most "
                f"{self.batch_size} at a time, or raise pipeline.batch_size (up to {MAX_BATCH_SIZE}, e.g. --set pipeline.batch_size=8)"
            )
        if sources is not None and (isinstance(sources, (str, bytes)) or len(sources) != len(images)):
            raise InputError(
                f"encode_batch(): sources must be a list of {len(images)} names, one per image, got {sources!r}"
            )
        names = list(sources) if sources is not None else [str(i) if isinstance(i, (str, os.PathLike)) else f"image {k + 1}" for k, i in enumerate(images)]
        self._batch_shares = {}
        works: dict[str, tuple[np.ndarray, str]] = {}
        for image, name in zip(images, names):
            try:
                rgb = self._read(image)
            except (OvpanopticError, OSError, ValueError, TypeError):
                continue  # its own segment_run reports it
            work = self._working(rgb)
            key = image_digest(work)
            if key not in self._cache:
                works.setdefault(key, (readonly_image(work), name))
        self.check()
        encoders = [
            (kind, c) for kind in ("proposal_generator", "classifier")
            if kind not in self._no_batch and isinstance(c := self.component(kind), BatchEncoder)
        ]
        if len(works) < 2 or not encoders:
            return 0
        begun = time.perf_counter()
        encoded = 0
        with self._threads():
            for kind, component in encoders:
                try:
                    boundary.call(self.target(kind), "encode_batch()", component.encode_batch, [w for w, _ in works.values()])
                    encoded += 1
                except Cancelled:
                    raise
                except OvpanopticError as exc:  # a speed-up only: each image is encoded alone instead
                    self._no_batch.add(kind)
                    log.warning(
                        "the batched encoder pass of the %s over %d images (%s) failed, so this run encodes each image alone: %s",
                        self.target(kind).what, len(works), ", ".join(name for _, name in works.values()), exc,
                    )
        release_freed_memory()
        if not encoded:
            return 0
        share = (time.perf_counter() - begun) / len(works)
        self._batch_shares = dict.fromkeys(works, share)
        self.encode_batches[len(works)] = self.encode_batches.get(len(works), 0) + 1
        return len(works)

    def _segment_run(
        self, image: Any, vocabulary: Vocabulary | str, *, progress: Progress | None, source: str, refine: bool
    ) -> SegmentationRun:
        """:meth:`segment_run`'s work, under the thread count it chose."""
        if isinstance(image, (str, os.PathLike)) and source == "<array>":
            source = str(image)
        vocab = self.check_names(vocabulary) if isinstance(vocabulary, Vocabulary) else self.vocabulary(vocabulary)
        rgb = self._read(image)
        self.check()
        work = self._working(rgb)
        t_start = time.perf_counter()
        entry, cached = self._image_entry(work, progress)
        timings = {"proposals": 0.0, "features": 0.0} if cached else dict(entry.timings)
        if "batch_encode" in timings:  # its share of the encode_batch that encoded it
            t_start -= timings["batch_encode"]
        if progress is not None:
            progress("classification", 0, 0)
        t0 = time.perf_counter()
        classifier_target = self.target("classifier")
        scores = boundary.call(
            classifier_target, "score()", self.component("classifier").score, entry.prepared, vocab, user_errors=boundary.VOCABULARY_ERRORS
        )
        boundary.check_scores(classifier_target, scores, len(entry.proposals), vocab)
        if progress is not None:
            progress("fusion", 0, 0)
        t1 = time.perf_counter()
        fuser_target = self.target("fuser")
        result = boundary.call(fuser_target, "fuse()", self.component("fuser").fuse, entry.proposals, scores, vocab)
        boundary.check_result(fuser_target, result, vocab, entry.proposals.image_size)
        t2 = time.perf_counter()
        if work.shape[:2] != rgb.shape[:2]:
            result = result.resized(rgb.shape[0], rgb.shape[1])
        t3 = time.perf_counter()
        timings.update({"classify": t1 - t0, "fuse": t2 - t1, "resize": t3 - t2})
        if refine and self.config.pipeline.refiners:
            if progress is not None:
                progress("refinement", 0, 0)
            result = self.refine(result, rgb)
            t4 = time.perf_counter()
            timings["refine"] = t4 - t3
            t3 = t4
        timings["total"] = (t3 - t_start) if not cached else (t3 - t0)
        result = result.with_timings(timings)
        self.registry.image_segmented(source=source, result=result, timings=result.timings)
        return SegmentationRun(result=result, proposals=entry.proposals, scores=scores, cached=cached)

    def refine(self, result: PanopticResult, image: Any = None, names: Sequence[str] | None = None) -> PanopticResult:
        """Apply refiners, in order, to a result (:meth:`segment` does this with ``pipeline.refiners``).

        Each refiner gets the result and a read-only view of its image, and what it returns is
        checked (:func:`ovpanoptic.boundary.check_refined`: same size and vocabulary, segments kept
        or dropped, never added or relabelled).

        :param image: the result's image (path, PIL image or array), or ``None`` when none is at hand.
        :param names: the refiners (default ``pipeline.refiners``; ``PLUGIN:NAME`` picks one of a
            name several plugins register).
        :raises InputError: ``image`` is not the result's size.
        :raises ComponentError: a refiner failed or broke the contract (naming it and ``--disable-plugin``).
        """
        chosen = list(self.config.pipeline.refiners if names is None else names)
        if not chosen:
            return result
        view = None
        if image is not None:
            rgb = self._read(image)
            if rgb.shape[:2] != result.image_size:
                raise InputError(
                    f"the image is {size_text(rgb.shape[:2])} but the result is {size_text(result.image_size)} (width x height): "
                    "refine a result with the image it was computed from"
                )
            view = readonly_image(rgb)
        for name in chosen:
            target = self.target("refiner", name)
            refined = boundary.call(target, "refine()", self.component("refiner", name).refine, result, view)
            result = boundary.check_refined(target, refined, result)
        return result

    def segment_video(
        self,
        video: Any,
        vocabulary: Vocabulary | str,
        *,
        keyframe_every: int = 10,
        match_iou: float = 0.5,
        max_unseen: int = 20,
        max_missed: int = 1,
        track_stuff: bool = False,
        every: int = 1,
        start: int = 0,
        end: int | None = None,
        max_frames: int | None = None,
        tracker: str | None = None,
        bidirectional: bool | None = None,
        progress: Progress | None = None,
    ) -> Iterator[VideoFrameResult]:
        """Segment a video with ids that stay the same across frames (see :mod:`ovpanoptic.video`).

        Keyframes (every ``keyframe_every``-th processed frame) go through :meth:`segment_run`; the
        tracker component (``tracker``, else :attr:`tracker`) carries their segments through the
        frames between; keyframe detections continue the tracks they overlap by at least
        ``match_iou`` (Hungarian assignment). Frames are decoded one at a time.

        :param video: a video file, a folder of frames, a glob of frames, or an opened
            :class:`~ovpanoptic.video.FrameSource`.
        :param every: process every N-th source frame; ``start``/``end`` (source indices, ``end``
            exclusive) and ``max_frames`` limit the range.
        :param bidirectional: also run the tracker backward from each next keyframe and fuse both passes
            (``None``: the tracker's own default; see :class:`~ovpanoptic.video.TrackingOptions`).
        :return: an iterator of :class:`~ovpanoptic.video.VideoFrameResult` (frame index, time,
            keyframe flag, result whose thing ids are track ids), one per processed frame.
        :raises InputError: a missing or unreadable input, or an option out of range (at the call);
            frames of different sizes or no selected frame (while iterating).
        :raises ComponentError: the tracker broke its contract (while iterating).
        """
        from .video import FrameSelection, FrameSource, TrackingOptions, open_frames, segment_video

        vocab = self.check_names(vocabulary) if isinstance(vocabulary, Vocabulary) else self.vocabulary(vocabulary)
        options = TrackingOptions(
            keyframe_every=keyframe_every, match_iou=match_iou, max_unseen=max_unseen, max_missed=max_missed, track_stuff=track_stuff,
            bidirectional=bidirectional,
        )
        if isinstance(video, FrameSource):
            source = video
        else:
            selection = FrameSelection(every=every, start=start, end=end, max_frames=max_frames)
            source = open_frames(video, selection, max_pixels=self.config.pipeline.max_pixels or None)
        return segment_video(self, source, vocab, options, tracker=tracker, progress=progress)

    def segment_prompt(self, image: Any, prompt: Prompt) -> ProposalSet:
        """Segment what a prompt (clicks and/or a box) points at, with the configured proposal
        generator, which must be a :class:`~ovpanoptic.components.PromptSegmenter` (``sam2``).

        The image is worked on at the size :meth:`segment` uses (``pipeline.max_side``), so a
        generator that keeps image embeddings reuses the one a :meth:`segment` of the same image
        computed; the prompt is scaled to that size and the masks resized back (nearest neighbour,
        as :meth:`segment` resizes its result).

        :param image: a path, PIL image or array (see :func:`ovpanoptic.imageio.as_rgb_array`).
        :param prompt: clicks and/or a box in the pixels of ``image``.
        :return: up to 3 candidate masks at the image's size, best first (scores: the generator's,
            SAM's predicted IoU); none when the prompt selects no pixel.
        :raises InputError: the generator cannot segment prompts, or the prompt lies outside the image.
        :raises ComponentError: the generator failed or broke the contract.
        """
        if not isinstance(prompt, Prompt):
            raise InputError(
                f"prompt must be an ovpanoptic.Prompt, got {type(prompt).__name__}: build one with "
                "Prompt(points_xy=[[x, y]], point_labels=[1]) or Prompt(box_xyxy=(x0, y0, x1, y1))"
            )
        rgb = self._read(image)
        self.check()
        generator = self.component("proposal_generator")
        if not isinstance(generator, PromptSegmenter):
            name = self.config.pipeline.proposal_generator
            raise InputError(
                f"proposal generator {name!r} cannot segment clicks or boxes (it has no segment_prompt()): choose one "
                "that can, e.g. --set pipeline.proposal_generator=sam2, or a preset that uses sam2"
            )
        prompt.check_inside(rgb.shape[0], rgb.shape[1])
        work = self._working(rgb)
        h, w = work.shape[:2]
        target = self.target("proposal_generator")
        masks = boundary.call(
            target, "segment_prompt()", generator.segment_prompt, readonly_image(work), prompt.scaled(w / rgb.shape[1], h / rgb.shape[0])
        )
        masks = boundary.check_prompt_proposals(target, masks, (h, w))
        return masks.resized(rgb.shape[0], rgb.shape[1])

    def export(
        self,
        result: PanopticResult,
        image: Any,
        outdir: str | Path,
        stem: str,
        formats: Sequence[str] | None = None,
        *,
        finish: bool = True,
    ) -> list[Path]:
        """Write ``result`` with each exporter in ``formats`` (default ``pipeline.exporters``).

        Exporters get a read-only view of the image. What each returns is checked (a list of the
        files it wrote, inside ``outdir``). An image's export is all or nothing: when an exporter
        raises or breaks that contract, every file that appeared in ``outdir`` during this call is
        removed (a listing of the folder is taken before and after; files that existed before are
        never removed) and the :class:`~ovpanoptic.errors.ComponentError` says so.

        :param finish: then let exporters with shared files (:class:`~ovpanoptic.components.Finisher`,
            e.g. ``panoptic.json``) assemble them from every image in the folder; a batch passes
            ``False`` and calls :meth:`finish` once at its end.
        :return: the files written (for this image, then the shared ones).
        :raises InputError: ``image`` is not the image of ``result`` (another size), or ``stem``
            is not a plain file name (see :func:`check_stem`).
        :raises ComponentError: an exporter failed (see above).
        """
        check_stem(stem)
        names = list(formats) if formats is not None else list(self.config.pipeline.exporters)
        exporters = [(n, self.component("exporter", n)) for n in names]
        rgb = as_rgb_array(image)
        if rgb.shape[:2] != result.image_size:
            raise InputError(
                f"the image is {size_text(rgb.shape[:2])} but the result is {size_text(result.image_size)} (width x height): "
                "export a result with the image it was computed from"
            )
        view = readonly_image(rgb)
        out = check_output_folder(outdir, _EXPORT_FIX)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the output folder {out} ({exc.strerror or exc}): {_EXPORT_FIX}") from None
        before = snapshot_files(out)
        paths: list[Path] = []
        try:
            for name, exporter in exporters:
                target = self.target("exporter", name)
                returned = boundary.call(target, "export()", exporter.export, result, view, out, stem, user_errors=boundary.EXPORT_ERRORS)
                paths.extend(p for p in boundary.check_export(target, returned, out) if p not in paths)
        except BaseException as exc:
            removed = [Path(p) for p in sorted(snapshot_files(out) - before)]
            for path in removed:
                path.unlink(missing_ok=True)
            if removed and isinstance(exc, ComponentError):
                shown = ", ".join(str(p) for p in removed[:3]) + (" ..." if len(removed) > 3 else "")
                raise ComponentError(
                    f"{exc} (removed what this image's export had written: {shown})",
                    plugin=exc.plugin,
                    component=exc.component,
                    call=exc.call,
                ) from exc
            raise
        if finish:
            paths.extend(self.finish(out, names))
        return paths

    def finish(self, outdir: str | Path, formats: Sequence[str] | None = None, stems: Sequence[str] | None = None) -> list[Path]:
        """Let each exporter in ``formats`` that keeps shared files write them (see
        :class:`~ovpanoptic.components.Finisher`) from the parts of ``stems`` (``None``: all).

        :return: the shared files written.
        :raises ComponentError: a finisher failed or reported files it did not write.
        """
        names = list(formats) if formats is not None else list(self.config.pipeline.exporters)
        out = check_output_folder(outdir, _EXPORT_FIX)
        written: list[Path] = []
        for name in names:
            exporter = self.component("exporter", name)
            if isinstance(exporter, Finisher):
                target = self.target("exporter", name)
                returned = boundary.call(target, "finish()", exporter.finish, out, None if stems is None else list(stems), user_errors=boundary.EXPORT_ERRORS)
                written.extend(boundary.check_export(target, returned, out, "finish()"))
        return written

    def clear_cache(self) -> None:
        """Forget cached proposals and features."""
        self._cache.clear()

    def derive(self, overrides: Sequence[str]) -> Pipeline:
        """A pipeline with ``--set`` style overrides applied that shares with this one every
        component whose settings the overrides leave as they are, and the cache of proposals and
        image features while neither the proposal generator, the classifier nor the working size
        changes. A changed fusion threshold thus re-fuses cached proposals without running the
        proposal generator or the classifier's image side again (the demo's threshold sliders).

        :raises ConfigError: an override is malformed or names an unknown section.
        """
        derived = Pipeline(self.config.with_overrides(list(overrides)), registry=self.registry)
        old, new = self.config, derived.config
        # Components are built for a device and its profile: share nothing across a change of either.
        if (old.pipeline.device, old.pipeline.device_profile) != (new.pipeline.device, new.pipeline.device_profile):
            return derived
        derived._device, derived._profile, derived._profiled = self._device, self._profile, self._profiled

        def same_table(kind: str, name: str) -> bool:
            return old.tables.get(kind, {}).get(name, {}) == new.tables.get(kind, {}).get(name, {})

        for kind, name in self._components:
            if (kind in ("exporter", "refiner") or getattr(new.pipeline, kind) == name) and same_table(kind, name):
                derived._components[(kind, name)] = self._components[(kind, name)]
        image_side = ("max_side", "min_side", "proposal_generator", "classifier")
        if all(getattr(old.pipeline, k) == getattr(new.pipeline, k) for k in image_side) and all(
            same_table(k, getattr(old.pipeline, k)) for k in ("proposal_generator", "classifier")
        ):
            derived._cache = self._cache  # the same entries: both pipelines fill and reuse it
        return derived
