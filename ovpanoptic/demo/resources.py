"""The demo's shared resources (:class:`DemoResources`): the plugin registry, one pipeline per preset
(and per threshold setting, derived from it so caches are shared), decoded uploads, the browser
sessions and the folder of downloads; and the page's constants (:data:`TUNABLE`,
:data:`CUSTOM_VOCABULARY`, ...).

The handlers (:mod:`.handlers`, :mod:`.video`) and the page (:mod:`.layout`) work on a
:class:`DemoResources`; :class:`~.app.DemoApp` adds :meth:`~.app.DemoApp.build` on top of them.
This module imports only :mod:`.state` of the demo's modules.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Config, list_presets, load_config
from ..constants import DEMO_PRESET
from ..errors import ConfigError, ImageReadError, InputError, OvpanopticError, VocabularyError
from ..imageio import as_rgb_array, image_digest, read_image, resize_longest_side
from ..types import Vocabulary
from ..vocabulary import format_class_lists
from .state import LoadedImage, RunRequest, Session

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..plugins import Registry

__all__ = [
    "APP_PIPELINE",
    "CUSTOM_VOCABULARY",
    "EXAMPLES_DIR",
    "EXAMPLE_CLASSES",
    "TUNABLE",
    "DemoResources",
    "DemoSettings",
    "TuningControl",
]

#: Value of the vocabulary menu entry that means "the typed class names".
CUSTOM_VOCABULARY = "custom (type below)"
#: Label of the preset entry for a pipeline or config handed to the factory that is no shipped preset.
APP_PIPELINE = "this app's pipeline"
#: Where the example images live in a checkout.
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "demo" / "examples"
#: Suggested class names for the shipped examples (file name -> (classes, stuff)).
EXAMPLE_CLASSES: dict[str, tuple[str, str]] = {
    "street.jpg": ("car, tree, street lamp", "sky, road, building, sidewalk"),
    "tabletop.jpg": ("cup|mug, apple, plate, book", "table, wall"),
    "room.jpg": ("chair, window, lamp, rug|carpet", "floor, wall"),
}
#: Component options offered as threshold controls: ``(kind, option)`` -> (label, min, max, step).
#: An option appears when the preset's component has it (any plugin's component may).
TUNABLE: dict[tuple[str, str], tuple[str, float, float, float]] = {
    ("proposal_generator", "points_per_side"): ("points per side (prompt grid)", 4, 64, 1),
    ("proposal_generator", "pred_iou_thresh"): ("keep masks with predicted IoU above", 0.0, 1.0, 0.01),
    ("proposal_generator", "stability_score_thresh"): ("keep masks at least this stable", 0.0, 1.0, 0.01),
    ("fuser", "min_class_prob"): ("a proposal needs a class probability of", 0.0, 1.0, 0.01),
    ("fuser", "object_mask_threshold"): ("drop proposals scoring at or below", 0.0, 1.0, 0.01),
    ("fuser", "instances_score_thresh"): ("drop things scoring below", 0.0, 1.0, 0.01),
    ("fuser", "overlap_threshold"): ("overlap threshold (fraction of a mask still its own)", 0.0, 1.0, 0.01),
    ("fuser", "stuff_area_thresh"): ("drop stuff smaller than (pixels)", 0, 16384, 64),
}


@dataclass(frozen=True)
class DemoSettings:
    """Limits and display options of the demo.

    :param max_pixels: largest accepted image (width x height); larger uploads get a message
        asking to downscale them. Pillow refuses images above ~179 MP regardless.
    :param display_max_side: the page shows the image at most this large (long side); the
        download is always at the uploaded image's size.
    :param cached_images: how many decoded uploads are kept (shared by all sessions).
    :param max_sessions: browser sessions kept; beyond it the least recently used session without a
        result is dropped (else the least recently used one).
    :param tuned_pipelines: pipelines with changed thresholds kept per preset.
    """

    max_pixels: int = 50_000_000
    display_max_side: int = 800
    cached_images: int = 4
    max_sessions: int = 256
    tuned_pipelines: int = 4

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.display_max_side < 32:
            raise ConfigError(f"display_max_side must be >= 32, got {self.display_max_side}")
        if min(self.cached_images, self.max_sessions, self.tuned_pipelines) < 1:
            raise ConfigError("cached_images, max_sessions and tuned_pipelines must be >= 1")


@dataclass(frozen=True)
class TuningControl:
    """One threshold control of the page: the option ``option`` of component ``component`` of kind ``kind``."""

    kind: str
    component: str
    option: str
    label: str
    minimum: float
    maximum: float
    step: float
    value: float
    integer: bool

    @property
    def key(self) -> str:
        """The ``--set`` key (``fuser.maskformer.overlap_threshold``)."""
        return f"{self.kind}.{self.component}.{self.option}"


def _stem(name: str) -> str:
    """A file-name-safe stem (``"my photo.jpg"`` -> ``"my_photo"``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._-")
    return stem[:64] or "image"


def _preset_name(config: Config) -> str | None:
    """The preset name of a config loaded from a preset file (without overrides), else ``None``."""
    for name, path in list_presets().items():
        if config.source == str(path):
            return name
    return None


class DemoResources:
    """The demo's shared state, which the handlers and the page work on (:class:`~.app.DemoApp`
    adds :meth:`~.app.DemoApp.build`, which makes the Gradio page).

    :param pipeline: a ready pipeline (tests, embedding apps); its registry is used for every
        preset. Default: a pipeline from ``config``, built on first use.
    :param config: preset name, TOML path or :class:`~ovpanoptic.config.Config` for the initial
        preset (default: the ``interactive`` preset, see configs/interactive.toml).
    :param overrides: ``--set`` overrides applied to every preset the page selects.
    :param device: overrides ``pipeline.device`` of every preset.
    :param registry: a prepared plugin registry; default: the pipeline's, else one built from the
        installed plugins.
    :param disable_plugins: plugin names to block when building the registry.
    :param settings: limits and display options.
    :param examples_dir: folder of example images (default: ``demo/examples`` of a checkout).
    :raises InputError: both a pipeline and a config. :raises ConfigError: a bad config path.
    """

    def __init__(
        self,
        pipeline: Pipeline | None = None,
        *,
        config: Config | str | Path | None = None,
        overrides: Sequence[str] = (),
        device: str | None = None,
        registry: Registry | None = None,
        disable_plugins: Iterable[str] = (),
        settings: DemoSettings | None = None,
        examples_dir: str | Path | None = None,
    ) -> None:
        if pipeline is not None and config is not None:
            raise InputError("give build_demo either a pipeline or a config, not both")
        self.settings = settings or DemoSettings()
        self.examples_dir = Path(examples_dir) if examples_dir is not None else EXAMPLES_DIR
        self._overrides = tuple(overrides)
        self._device = device
        self._disable = tuple(disable_plugins)
        self._registry = registry if registry is not None else (pipeline.registry if pipeline is not None else None)
        self._pipelines: dict[str, Pipeline] = {}
        self._tuned: OrderedDict[tuple[str, tuple[str, ...]], Pipeline] = OrderedDict()
        self._configs: dict[str, Config] = {}
        if pipeline is not None:
            self.initial_preset = _preset_name(pipeline.config) or APP_PIPELINE
            self._pipelines[self.initial_preset] = pipeline
        elif isinstance(config, Config):
            self.initial_preset = _preset_name(config) or APP_PIPELINE
            self._configs[self.initial_preset] = config
        else:
            spec = str(config) if config is not None else DEMO_PRESET
            self.initial_preset = spec
            if spec not in list_presets():
                self._configs[spec] = load_config(spec)  # a TOML path: read (and checked) now
        self._images: OrderedDict[tuple[Any, ...], LoadedImage] = OrderedDict()
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        #: Browser tab (Gradio's session hash) -> the workbench key its browser keeps.
        self._tabs: OrderedDict[str, str] = OrderedDict()
        #: Components whose checkpoints were found (kind, name, settings): the weights stage runs once each.
        self.weights_ready: set[tuple[str, str, str]] = set()
        #: Model work (segmenting, prompts) runs one request at a time.
        self.lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._workdir: Path | None = None
        self._finalizer: weakref.finalize | None = None

    # -- what the page offers ------------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        """The plugin registry (built on first access)."""
        if self._registry is None:
            from ..plugins import Registry

            self._registry = Registry.create(self._disable)
        return self._registry

    def vocabulary_choices(self) -> list[tuple[str, str]]:
        """``(label, value)`` pairs of the vocabulary menu: custom, then the registered names."""
        return [(CUSTOM_VOCABULARY, CUSTOM_VOCABULARY)] + [(name, name) for name in sorted(self.registry.vocabularies)]

    def vocabulary_info(self, name: str) -> str:
        """What a named vocabulary holds, for the menu's info line: classes, names and prompts."""
        if not name or name == CUSTOM_VOCABULARY:
            return "Pick one to load its names into the boxes, where you can edit them."
        vocab = self.registry.vocabulary(name)
        names = sum(len(c.names) for c in vocab)
        prompts = self.prompt_count(names)
        return (
            f"{len(vocab)} classes "
            f"({len(vocab.things)} things, {len(vocab.stuff)} stuff) with {names} names"
            f"{f' = {prompts} prompts to encode the first time' if prompts else ''}. Loaded into the boxes: edit them freely."
        )

    def prompt_count(self, names: int, preset: str | None = None) -> int:
        """Text prompts the classifier encodes for ``names`` names (0 when it has no templates)."""
        pipe = self.pipeline_for(preset)
        templates = getattr(pipe.component_config("classifier"), "templates", None)
        if isinstance(templates, str) and templates in self.registry.prompt_templates:
            return names * len(self.registry.prompt_templates[templates][0])
        if isinstance(templates, (list, tuple)):
            return names * len(templates)
        return 0

    def tracker_choices(self) -> list[str]:
        """Registered trackers, the initial preset's ``pipeline.tracker`` first."""
        names = sorted(self.registry.components.get("tracker", {}))
        try:
            first = self.pipeline_for().tracker
        except OvpanopticError:
            first = ""
        return sorted(names, key=lambda n: n != first)

    def preset_choices(self) -> list[str]:
        """The initial preset first, then every other shipped or ``$OVPANOPTIC_CONFIG_PATH`` preset."""
        return [self.initial_preset] + [p for p in sorted(list_presets()) if p != self.initial_preset]

    def example_rows(self) -> list[list[str]]:
        """``[image path, classes, stuff, things, vocabulary]`` rows of the examples (the images that exist)."""
        rows = []
        for name, (classes, stuff) in EXAMPLE_CLASSES.items():
            path = self.examples_dir / name
            if path.is_file():
                rows.append([str(path), classes, stuff, "", CUSTOM_VOCABULARY])
        return rows

    def tuning_controls(self, preset: str | None = None) -> list[TuningControl]:
        """The threshold controls for a preset's proposal generator and fuser (see :data:`TUNABLE`),
        at the values the preset (and the device profile) give."""
        pipe = self.pipeline_for(preset)
        controls = []
        for kind in ("proposal_generator", "fuser"):
            name = getattr(pipe.config.pipeline, kind)
            config = pipe.component_config(kind)
            present = {f.name for f in fields(config)}
            for (k, option), (label, lo, hi, step) in TUNABLE.items():
                if k == kind and option in present:
                    value = getattr(config, option)
                    controls.append(TuningControl(kind, name, option, label, lo, hi, step, value, isinstance(value, int)))
        return controls

    def tuning_overrides(self, preset: str | None, values: Mapping[tuple[str, str], float | None]) -> tuple[str, ...]:
        """``--set`` overrides for threshold values (``(kind, option) -> value``) that differ from
        the preset's: each applies to the component the preset selects, when it has that option
        (a value for an option the preset's component lacks is ignored)."""
        overrides = []
        for control in self.tuning_controls(preset):
            raw = values.get((control.kind, control.option))
            if raw is None:
                continue
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise InputError(f"the threshold {control.option} must be a number, got {raw!r}") from None
            if not math.isfinite(value):
                raise InputError(f"the threshold {control.option} must be a finite number, got {raw!r}")
            value = int(round(value)) if control.integer else value
            if value != control.value:
                overrides.append(f"{control.key}={value!r}")
        return tuple(overrides)

    # -- pipelines ------------------------------------------------------------------------------

    def pipeline_for(self, preset: str | None = None, tuning: Sequence[str] = ()) -> Pipeline:
        """The pipeline of a preset offered by the page (created on first use), with ``tuning``
        overrides applied through :meth:`~ovpanoptic.pipeline.Pipeline.derive` (so unchanged
        components and the image cache are shared).

        :raises ConfigError: an unknown preset, or a bad override.
        """
        from ..pipeline import Pipeline

        key = (preset or "").strip() or self.initial_preset
        if key not in self._pipelines:
            if key in self._configs:
                config = self._configs[key]
            elif key in list_presets():
                config = load_config(key)
            else:
                raise ConfigError(f"no preset named {key!r}; choose one of: {', '.join(self.preset_choices())}")
            self._pipelines[key] = Pipeline(config, overrides=self._overrides, device=self._device, registry=self.registry)
        base = self._pipelines[key]
        tuning = tuple(sorted(tuning))
        if not tuning:
            return base
        tkey = (key, tuning)
        if tkey not in self._tuned:
            self._tuned[tkey] = base.derive(tuning)
        self._tuned.move_to_end(tkey)
        while len(self._tuned) > self.settings.tuned_pipelines:
            self._tuned.popitem(last=False)
        return self._tuned[tkey]

    def video_pipeline(self, preset: str | None, tracker: str) -> Pipeline:
        """The pipeline the Video tab runs with ``tracker``: the preset's, with the tracker's weights
        resolved like the Image tab's. When the tracker's config leaves its ``model`` at the default
        and the proposal generator's names other weights (``--set proposal_generator.sam2.model=PATH``),
        the tracker loads that same checkpoint (SAM 2's image and video predictors share it).

        :raises ConfigError, ComponentNotFoundError: an unknown preset or tracker.
        """
        pipe = self.pipeline_for(preset)
        name = tracker or pipe.tracker
        tracker_config = pipe.component_config("tracker", name)
        generator_config = pipe.component_config("proposal_generator")
        if not (hasattr(tracker_config, "model") and hasattr(generator_config, "model")):
            return pipe
        tracker_default = {f.name: f.default for f in fields(tracker_config)}
        generator_default = {f.name: f.default for f in fields(generator_config)}
        if tracker_config.model != tracker_default["model"] or generator_config.model == generator_default["model"]:
            return pipe
        overrides = [f"tracker.{name}.model={generator_config.model!r}"]
        if getattr(generator_config, "architecture", "") and hasattr(tracker_config, "architecture") and not tracker_config.architecture:
            overrides.append(f"tracker.{name}.architecture={generator_config.architecture!r}")
        return self.pipeline_for(preset, overrides)

    def check(self) -> None:
        """Validate the initial preset against the registry (loads no model)."""
        self.pipeline_for(self.initial_preset).check()

    def vocabulary_for(self, pipe: Pipeline, request: RunRequest) -> Vocabulary:
        """The vocabulary of a request. The boxes are what runs: when they hold exactly what the
        named vocabulary menu loaded into them, that vocabulary itself (its ids, colours and
        descriptions); otherwise the typed names (an example or an edit changed them).

        :raises VocabularyError: no names, or names that do not parse (the message names the box).
        """
        classes, stuff, things = request.classes or "", request.stuff or "", request.things or ""
        name = (request.vocabulary or "").strip()
        if name and name != CUSTOM_VOCABULARY:
            named = pipe.vocabulary(name=name)
            lists = format_class_lists(named)
            if (lists.classes, lists.stuff, lists.things) == (classes.strip(), stuff.strip(), things.strip()):
                return named
        if not (classes.strip() or stuff.strip() or things.strip()):
            raise VocabularyError(
                "No class names: type the classes to look for in the Class names box, e.g. "
                "\"person, car, tree\" (synonyms with '|': \"tv|television\"), or pick a named vocabulary"
            )
        return pipe.vocabulary(classes, stuff, things)

    # -- images and sessions --------------------------------------------------------------------

    def load_image(self, image: Any) -> LoadedImage:
        """Decode an upload (Gradio payload, path, PIL image or array); decoded files are kept (by
        path, size and modification time), so re-querying does not decode again.

        :raises InputError: no image, or an image larger than ``settings.max_pixels``.
        :raises ImageReadError: the file is not an image, or is corrupt.
        """
        if image is None or (isinstance(image, dict) and not image.get("path")):
            raise InputError("No image: upload an image (or click one of the examples) first")
        if isinstance(image, dict):
            path = Path(image["path"])
            name = image.get("orig_name") or path.name
        elif isinstance(image, (str, os.PathLike)):
            path = Path(image)
            name = path.name
        else:
            rgb = as_rgb_array(image)
            self._check_pixels(rgb.shape[1], rgb.shape[0], "the image")
            return self._loaded(rgb, "image", "image", None)
        try:
            stat = path.stat()
        except OSError:
            raise ImageReadError(f"{name}: the uploaded file is gone; upload it again") from None
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        with self._state_lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        self._check_file_pixels(path, name)
        try:
            rgb = read_image(path)
        except ImageReadError as exc:
            raise ImageReadError(f"{str(exc).replace(str(path), name)} Upload a JPEG, PNG, WebP, BMP or TIFF image.") from None
        loaded = self._loaded(rgb, _stem(name), name, path)
        with self._state_lock:
            self._images[key] = loaded
            while len(self._images) > self.settings.cached_images:
                self._images.popitem(last=False)
        return loaded

    def _loaded(self, rgb: np.ndarray, stem: str, name: str, path: Path | None) -> LoadedImage:
        display = resize_longest_side(rgb, self.settings.display_max_side)
        return LoadedImage(rgb=rgb, display=display, stem=stem, name=name, path=path, digest=image_digest(rgb))

    def _check_pixels(self, width: int, height: int, name: str) -> None:
        limit = self.settings.max_pixels
        if width * height > limit:
            raise InputError(
                f"{name} is {width} x {height} pixels ({width * height / 1e6:.3g} megapixels); the demo accepts "
                f"up to {limit / 1e6:.3g} megapixels: downscale it (e.g. to 4000 pixels on the long side) and "
                "upload it again"
            )

    def _check_file_pixels(self, path: Path, name: str) -> None:
        """Read only the header: refuse huge images before decoding them."""
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    width, height = img.size
        except Image.DecompressionBombError:
            raise InputError(
                f"{name} is too large to open safely (over {2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.3g} "
                f"megapixels); the demo accepts up to {self.settings.max_pixels / 1e6:.3g} megapixels: "
                "downscale it (e.g. to 4000 pixels on the long side) and upload it again"
            ) from None
        except (OSError, SyntaxError, ValueError):  # not an image: read_image says why, with the file's name
            return
        self._check_pixels(width, height, name)

    def session(self, key: str | None) -> Session:
        """The state of browser session ``key`` (created on first use; the least recently used
        sessions beyond ``settings.max_sessions`` are dropped, with their downloads)."""
        key = key or "default"
        with self._state_lock:
            if key not in self._sessions:
                self._sessions[key] = Session(key=key)
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.settings.max_sessions:
                # The least recently used session without a result goes first: requests that only
                # open sessions cannot push out someone's work.
                old = next((k for k, v in self._sessions.items() if v.result is None and v.video is None and k != key), None)
                if old is None:
                    old = next(iter(self._sessions))
                self._sessions.pop(old)
                shutil.rmtree(self.work_dir() / "sessions" / _stem(old), ignore_errors=True)
            return self._sessions[key]

    def cancel_all(self) -> None:
        """Ask every session's run to stop (when the server shuts down)."""
        with self._state_lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.cancel.set()

    def bind(self, tab: str | None, workbench: str) -> None:
        """Let browser tab ``tab`` (Gradio's session hash) work on the session ``workbench`` (a random
        key the browser keeps, so a reload or a second tab of that browser finds its work again)."""
        with self._state_lock:
            self._tabs[tab or "default"] = workbench
            while len(self._tabs) > 4 * self.settings.max_sessions:
                self._tabs.popitem(last=False)

    def session_of_tab(self, tab: str | None) -> Session:
        """The session of browser tab ``tab``: its workbench's (see :meth:`bind`), else its own."""
        with self._state_lock:
            key = self._tabs.get(tab or "default", tab)
        return self.session(key)

    def end_session(self, key: str | None) -> None:
        """Forget a session that closed its page, and delete its downloads; a tab bound to a
        workbench (:meth:`bind`) only lets go of it: the work stays for a reload."""
        with self._state_lock:
            if self._tabs.pop(key or "default", None) is not None:
                return
            self._sessions.pop(key or "default", None)
        if self._workdir is not None:
            shutil.rmtree(self._workdir / "sessions" / _stem(key or "default"), ignore_errors=True)

    def session_dir(self, session: Session) -> Path:
        """The session's folder for downloads (inside :meth:`work_dir`)."""
        return self.work_dir() / "sessions" / _stem(session.key)

    def work_dir(self) -> Path:
        """The app's temporary folder (downloads, and Gradio's uploads when launched by
        :func:`~ovpanoptic.demo.launch_demo`); removed by :meth:`close`."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="ovpanoptic-demo-"))
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        return self._workdir

    def close(self) -> None:
        """Delete the temporary folder (also done when the app is garbage-collected)."""
        if self._finalizer is not None:
            self._finalizer()
