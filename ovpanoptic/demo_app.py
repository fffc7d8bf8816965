"""The Gradio demo: upload an image, type class names, see the panoptic result, re-query instantly.

:func:`build_demo` is the factory (``ovpanoptic demo`` and ``python demo/app.py`` call it, then
:func:`launch_demo`). Importing this module imports neither gradio nor torch: gradio is imported
by the factory, models load on the first request. All state lives in the :class:`DemoApp` the
factory builds: one :class:`~ovpanoptic.pipeline.Pipeline` per preset (created when first used,
so its proposal and feature cache is what makes re-querying an image instant), the decoded
uploads of the last few requests, and a temporary folder for the downloads.

:meth:`DemoApp.run` is the handler as a plain function (it raises ovpanoptic's own errors);
:meth:`DemoApp.respond` is the Gradio event handler around it, which turns every error into a
``gr.Error`` whose message says what to do, never a traceback.

Like the CLI, the demo asks the plugin registry for names (vocabularies) and
:func:`~ovpanoptic.config.list_presets` for presets, so installed plugins appear without code
changes.
"""

from __future__ import annotations

import colorsys
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
import weakref
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .components import Progress
from .config import Config, list_presets, load_config
from .constants import DEMO_PRESET
from .errors import ConfigError, ImageReadError, InputError, MissingDependencyError, OvpanopticError, VocabularyError
from .imageio import as_rgb_array, read_image, resize_longest_side
from .types import PanopticResult, Vocabulary

if TYPE_CHECKING:
    import gradio

    from .pipeline import Pipeline
    from .plugins import Registry

__all__ = [
    "CUSTOM_VOCABULARY",
    "DEFAULT_HOST",
    "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_PORT",
    "TABLE_HEADERS",
    "DemoApp",
    "DemoOutput",
    "DemoSettings",
    "annotated_payload",
    "build_demo",
    "launch_demo",
]

log = logging.getLogger(__name__)

#: Value of the vocabulary dropdown entry that means "use the typed class names".
CUSTOM_VOCABULARY = "custom (type below)"
#: Label of the preset entry for a pipeline or config handed to the factory that is no shipped preset.
APP_PIPELINE = "this app's pipeline"
#: Loopback only unless the user asks for more (``--host 0.0.0.0``).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Upload limit (Gradio's ``max_file_size`` syntax).
DEFAULT_MAX_FILE_SIZE = "25mb"
#: Columns of the segment table.
TABLE_HEADERS: tuple[str, ...] = ("segment", "class", "kind", "score", "area %")
#: Opacity (0-255) of the segment colours drawn over the image.
MASK_ALPHA = 160
#: The exporter that makes the download.
DOWNLOAD_FORMAT = "coco-panoptic"
#: Where the example images live in a checkout.
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "demo" / "examples"
#: Suggested class names for the shipped examples (file name -> (classes, stuff)).
EXAMPLE_CLASSES: dict[str, tuple[str, str]] = {
    "street.jpg": ("car, tree, street lamp", "sky, road, building, sidewalk"),
    "tabletop.jpg": ("cup|mug, apple, plate, book", "table, wall"),
    "room.jpg": ("chair, window, lamp, rug|carpet", "floor, wall"),
}

_VOCABULARY_FLAGS = (
    ("--classes", "the Class names box"),
    ("--stuff", "the Stuff box"),
    ("--things", "the class list"),
    ("--vocabulary", "the Named vocabulary menu"),
)


@dataclass(frozen=True)
class DemoSettings:
    """Limits and display options of the demo.

    :param max_pixels: largest accepted image (width x height); larger uploads get a message
        asking to downscale them. Pillow refuses images above ~179 MP regardless.
    :param display_max_side: the annotated image is shown at most this large (long side); the
        download is always at the uploaded image's size.
    :param keep_downloads: how many requests' download folders are kept on disk.
    :param cached_images: how many decoded uploads are kept, so re-querying does not decode again.
    """

    max_pixels: int = 50_000_000
    display_max_side: int = 800
    keep_downloads: int = 16
    cached_images: int = 4

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.display_max_side < 32:
            raise ConfigError(f"display_max_side must be >= 32, got {self.display_max_side}")
        if self.keep_downloads < 1 or self.cached_images < 1:
            raise ConfigError("keep_downloads and cached_images must be >= 1")


@dataclass(frozen=True, eq=False)
class DemoOutput:
    """What one request produced.

    :param annotated: ``(display image, [(mask, label), ...])``, the value of ``gr.AnnotatedImage``;
        masks are ``(h, w)`` bool at the display size, labels are class names (``"person #2"``
        for the second person instance).
    :param colors: label -> ``"#rrggbb"`` (the ``color_map`` of the annotated image).
    :param table: rows of :data:`TABLE_HEADERS`, largest segment first.
    :param timings: seconds per stage (the pipeline's, plus ``outputs`` for display and download).
    :param cached: the proposals and image features came from the cache (same image as before).
    :param timings_markdown: the timings as shown in the page.
    :param download: zip of the COCO-panoptic PNG and JSON, or ``None`` without the exporter.
    :param result: the pipeline's result at the uploaded image's size.
    """

    annotated: tuple[np.ndarray, list[tuple[np.ndarray, str]]]
    colors: dict[str, str]
    table: list[list[Any]]
    timings: dict[str, float]
    cached: bool
    timings_markdown: str
    download: Path | None
    result: PanopticResult = field(repr=False)


def _import_gradio() -> Any:
    try:
        import gradio
    except ImportError as exc:
        raise MissingDependencyError(
            f"the demo needs gradio ({exc}): run scripts/bootstrap.sh, or pip install 'ovpanoptic[demo]'"
        ) from None
    return gradio


def _stem(name: str) -> str:
    """A file-name-safe stem for the download (``"my photo.jpg"`` -> ``"my_photo"``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._-")
    return stem[:64] or "image"


def _hex(rgb: Sequence[float]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(round(c)) for c in rgb))


def _instance_rgb(base: tuple[float, float, float], instance: int) -> tuple[float, float, float]:
    """Instance ``k`` (1-based) of a thing class: the class colour, lighter or darker by instance."""
    if instance <= 1:
        return base
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in base))
    shift = ((instance - 1) % 5 + 1) * 0.09 * (1 if instance % 2 else -1)
    h = (h + shift / 3) % 1.0
    v = min(1.0, max(0.35, v + shift))
    return tuple(c * 255 for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def segment_labels(result: PanopticResult) -> dict[int, str]:
    """Segment id -> label: the class name for stuff, ``"name #k"`` for the k-th instance of a thing."""
    counts: dict[int, int] = {}
    labels: dict[int, str] = {}
    used: set[str] = set()
    for seg in result.segments:
        name = result.category_of(seg).name
        if seg.isthing:
            counts[seg.category_id] = counts.get(seg.category_id, 0) + 1
            label = f"{name} #{counts[seg.category_id]}"
        else:
            label = name
        if label in used:  # a class literally named like another's instance label
            label = f"{label} (segment {seg.id})"
        used.add(label)
        labels[seg.id] = label
    return labels


def _segment_colors(result: PanopticResult, labels: dict[int, str]) -> dict[str, str]:
    colors: dict[str, str] = {}
    counts: dict[int, int] = {}
    for seg in result.segments:
        base = result.category_of(seg).display_color
        if seg.isthing:
            counts[seg.category_id] = counts.get(seg.category_id, 0) + 1
            colors[labels[seg.id]] = _hex(_instance_rgb(base, counts[seg.category_id]))
        else:
            colors[labels[seg.id]] = _hex(base)
    return colors


def _nearest(panoptic_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an id map."""
    h, w = panoptic_map.shape
    if (h, w) == (height, width):
        return panoptic_map
    rows = np.minimum((np.arange(height) * h) // height, h - 1)
    cols = np.minimum((np.arange(width) * w) // width, w - 1)
    return panoptic_map[rows[:, None], cols[None, :]]


def _format_timings(timings: dict[str, float], cached: bool, summary: str) -> str:
    rows = [
        ("proposals", "proposals"),
        ("image features", "features"),
        ("classification", "classify"),
        ("fusion", "fuse"),
        ("resize to the image", "resize"),
        ("pipeline total", "total"),
        ("display + download", "outputs"),
    ]
    lines = [summary, "", "| stage | seconds |", "|---|---:|"]
    for label, key in rows:
        if key in ("proposals", "features") and cached:
            lines.append(f"| {label} | cached |")
        elif key in timings:
            lines.append(f"| {label} | {timings[key]:.3f} |")
    lines.append("")
    if cached:
        lines.append(
            "Same image as before: proposals and image features came from the cache, only "
            "classification and fusion ran."
        )
    else:
        lines.append("First run on this image: change the class names and run again to re-query it instantly.")
    return "\n".join(lines)


def _page_message(exc: OvpanopticError) -> str:
    """The error's message, with CLI flag names replaced by the names of the demo's fields."""
    message = str(exc)
    if isinstance(exc, VocabularyError):
        for flag, field_name in _VOCABULARY_FLAGS:
            message = message.replace(f"with {flag}", f"with {field_name}").replace(flag, field_name)
    return message


def _progress_callback(progress: Callable[..., Any]) -> Progress:
    """Adapt a ``gr.Progress`` to the pipeline's ``progress(message, done, total)``."""

    def report(message: str, done: int, total: int) -> None:
        progress((done, total) if total > 0 else None, desc=message)

    return report


def annotated_payload(
    annotated: tuple[np.ndarray, Sequence[tuple[np.ndarray, str]]], colors: dict[str, str], cache_dir: str | Path
) -> dict[str, Any]:
    """The value of ``gr.AnnotatedImage`` as sent to the page, with the files written to ``cache_dir``.

    Gradio's own postprocessing turns each mask into a float64 RGBA array and a full-colour PNG:
    about 0.1 s per segment for a 1024 x 768 image, seconds per answer. Here each mask is a
    one-byte-per-pixel palette PNG (transparent, and the label's colour at :data:`MASK_ALPHA`):
    a few milliseconds. The base image is a JPEG.
    """
    from gradio import processing_utils
    from gradio.components.annotated_image import AnnotatedImageData, Annotation
    from gradio.data_classes import FileData
    from PIL import Image

    base, masks = annotated
    base = np.ascontiguousarray(base)
    height, width = base.shape[:2]
    base_path = processing_utils.save_img_array_to_cache(base, cache_dir=str(cache_dir), format="jpeg")
    sections = []
    for mask, label in masks:
        rgb = colors.get(label, "#ff0000").lstrip("#")
        image = Image.frombytes("P", (width, height), np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
        image.putpalette([0, 0, 0, int(rgb[0:2], 16), int(rgb[2:4], 16), int(rgb[4:6], 16)])
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", transparency=bytes([0, MASK_ALPHA]), compress_level=1)
        path = processing_utils.save_bytes_to_cache(buffer.getvalue(), "mask.png", str(cache_dir))
        sections.append(Annotation(image=FileData(path=path), label=label))
    data = AnnotatedImageData(image=FileData(path=str(Path(base_path).resolve())), annotations=sections)
    return data.model_dump()


class DemoApp:
    """The demo's state and handlers; :meth:`build` makes the Gradio page.

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
        self._images: OrderedDict[tuple[Any, ...], tuple[np.ndarray, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._requests = 0
        self._workdir: Path | None = None
        self._finalizer: weakref.finalize | None = None
        self._display: tuple[np.ndarray, np.ndarray] | None = None
        self.blocks: gradio.Blocks | None = None
        self._outputs: tuple[Any, Any, Any, Any] | None = None

    # -- what the page offers ------------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        """The plugin registry (built on first access)."""
        if self._registry is None:
            from .plugins import Registry

            self._registry = Registry.create(self._disable)
        return self._registry

    def vocabulary_choices(self) -> list[tuple[str, str]]:
        """``(label, value)`` pairs of the vocabulary dropdown: custom, then the registered ones."""
        specs = sorted(self.registry.vocabularies.values(), key=lambda s: s.name)
        return [(CUSTOM_VOCABULARY, CUSTOM_VOCABULARY)] + [
            (f"{s.name} ({s.description})" if s.description else s.name, s.name) for s in specs
        ]

    def preset_choices(self) -> list[str]:
        """The initial preset first, then every other shipped or ``$OVPANOPTIC_CONFIG_PATH`` preset."""
        return [self.initial_preset] + [p for p in sorted(list_presets()) if p != self.initial_preset]

    def example_rows(self) -> list[list[str]]:
        """``[image path, classes, stuff]`` rows for ``gr.Examples`` (the images that exist)."""
        rows = []
        for name, (classes, stuff) in EXAMPLE_CLASSES.items():
            path = self.examples_dir / name
            if path.is_file():
                rows.append([str(path), classes, stuff])
        return rows

    # -- the handler ---------------------------------------------------------------------------

    def pipeline_for(self, preset: str | None = None) -> Pipeline:
        """The pipeline of a preset offered by the page, created on first use."""
        from .pipeline import Pipeline

        key = (preset or "").strip() or self.initial_preset
        if key in self._pipelines:
            return self._pipelines[key]
        if key in self._configs:
            config = self._configs[key]
        elif key in list_presets():
            config = load_config(key)
        else:
            raise ConfigError(
                f"no preset named {key!r}; choose one of: {', '.join(self.preset_choices())}"
            )
        pipe = Pipeline(config, overrides=self._overrides, device=self._device, registry=self.registry)
        self._pipelines[key] = pipe
        return pipe

    def check(self) -> None:
        """Validate the initial preset against the registry (loads no model)."""
        self.pipeline_for(self.initial_preset).check()

    def vocabulary_for(self, pipe: Pipeline, classes: str | None, stuff: str | None, vocabulary: str | None) -> Vocabulary:
        """The vocabulary of a request: the named one when chosen, else the typed names."""
        name = (vocabulary or "").strip()
        if name and name != CUSTOM_VOCABULARY:
            return pipe.vocabulary(name=name)
        classes, stuff = classes or "", stuff or ""
        if not classes.strip() and not stuff.strip():
            raise VocabularyError(
                "No class names: type the classes to look for in the Class names box, e.g. "
                "\"person, car, tree\" (synonyms with '|': \"tv|television\"), or pick a named vocabulary"
            )
        return pipe.vocabulary(classes, stuff)

    def load_image(self, image: Any) -> tuple[np.ndarray, str]:
        """Decode an upload (Gradio payload, path, PIL image or array) to RGB; returns ``(rgb, stem)``.

        Decoded files are kept (by path, size and modification time), so re-querying does not
        decode the image again.

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
            return rgb, "image"
        try:
            stat = path.stat()
        except OSError:
            raise ImageReadError(f"{name}: the uploaded file is gone; upload it again") from None
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        self._check_file_pixels(path, name)
        try:
            rgb = read_image(path)
        except ImageReadError as exc:
            raise ImageReadError(str(exc).replace(str(path), name)) from None
        entry = (rgb, _stem(name))
        self._images[key] = entry
        while len(self._images) > self.settings.cached_images:
            self._images.popitem(last=False)
        return entry

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

    def run(
        self,
        image: Any,
        classes: str | None = "",
        stuff: str | None = "",
        vocabulary: str | None = CUSTOM_VOCABULARY,
        preset: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> DemoOutput:
        """Segment ``image`` with the typed names (or a named vocabulary) and make the page's outputs.

        :param image: a Gradio image payload (``{"path": ..., "orig_name": ...}``), a path, a PIL
            image or an array.
        :param classes: ``"person, car, tv|television"``.
        :param stuff: names that are stuff (``"road, sky"``).
        :param vocabulary: a registered vocabulary name, or :data:`CUSTOM_VOCABULARY` for the typed names.
        :param preset: one of :meth:`preset_choices` (default: the initial one).
        :param progress: ``progress(message, done, total)`` for the slow first run.
        :raises OvpanopticError: with a message for the page (no image, no classes, bad vocabulary,
            unknown preset, missing weights, ...).
        """
        with self._lock:
            rgb, stem = self.load_image(image)
            pipe = self.pipeline_for(preset)
            vocab = self.vocabulary_for(pipe, classes, stuff, vocabulary)
            if progress is not None:
                progress("segmenting (the first run on an image computes proposals and image features)", 0, 0)
            result = pipe.segment(rgb, vocab, progress=progress, source=f"<demo: {stem}>")
            t0 = time.perf_counter()
            annotated, colors, table = self._view(result, rgb)
            download = self._export(pipe, result, rgb, stem)
            timings = dict(result.timings)
            timings["outputs"] = time.perf_counter() - t0
            cached = timings.get("proposals", 1.0) == 0.0 and timings.get("features", 1.0) == 0.0
            things = sum(1 for s in result.segments if s.isthing)
            summary = (
                f"**{len(result.segments)} segments** ({things} things, {len(result.segments) - things} stuff) · "
                f"{rgb.shape[1]} x {rgb.shape[0]} px · {len(vocab)} classes"
                f"{f' ({vocab.name})' if vocab.name != 'custom' else ''} · preset `{(preset or '').strip() or self.initial_preset}`"
            )
            if download is None:
                summary += f" · no download: the {DOWNLOAD_FORMAT!r} exporter is not installed or is disabled"
            return DemoOutput(
                annotated=annotated,
                colors=colors,
                table=table,
                timings=timings,
                cached=cached,
                timings_markdown=_format_timings(timings, cached, summary),
                download=download,
                result=result,
            )

    def _view(
        self, result: PanopticResult, rgb: np.ndarray
    ) -> tuple[tuple[np.ndarray, list[tuple[np.ndarray, str]]], dict[str, str], list[list[Any]]]:
        labels = segment_labels(result)
        if self._display is None or self._display[0] is not rgb:  # same upload: same array object
            self._display = (rgb, resize_longest_side(rgb, self.settings.display_max_side))
        display = self._display[1]
        dh, dw = display.shape[:2]
        h, w = result.image_size
        small = _nearest(np.asarray(result.panoptic_map), dh, dw)
        masks = []
        for seg in result.segments:
            # Display row r shows source row (r * h) // dh: look only inside the segment's box.
            x0, y0, x1, y1 = seg.bbox_xyxy
            r0, r1 = (y0 * dh) // h, min(dh, -(-y1 * dh // h))
            c0, c1 = (x0 * dw) // w, min(dw, -(-x1 * dw // w))
            mask = np.zeros((dh, dw), bool)
            mask[r0:r1, c0:c1] = small[r0:r1, c0:c1] == seg.id
            masks.append((mask, labels[seg.id]))
        total = float(result.image_size[0] * result.image_size[1])
        rows = [
            [
                labels[seg.id],
                result.category_of(seg).name,
                "thing" if seg.isthing else "stuff",
                round(seg.score, 3),
                round(100.0 * seg.area / total, 2),
            ]
            for seg in sorted(result.segments, key=lambda s: (-s.area, s.id))
        ]
        return (display, masks), _segment_colors(result, labels), rows

    def _export(self, pipe: Pipeline, result: PanopticResult, rgb: np.ndarray, stem: str) -> Path | None:
        """COCO-panoptic PNG + JSON of this request, zipped, in a fresh folder of the app's work dir."""
        if DOWNLOAD_FORMAT not in pipe.registry.components.get("exporter", {}):
            return None
        workdir = self._work_dir()
        self._requests += 1
        folder = workdir / f"request-{self._requests:06d}"
        written = pipe.export(result, rgb, folder / "coco", stem, formats=[DOWNLOAD_FORMAT])
        archive = folder / f"{stem}-coco-panoptic.zip"
        root = folder / "coco"
        # The user's files only: not the exporters' bookkeeping (per-image parts in dot-folders).
        shown = [p for p in written if not any(part.startswith(".") for part in p.relative_to(root).parts)]
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted(shown, key=lambda p: p.relative_to(root).as_posix()):  # PNGs are compressed already: stored as they are
                method = zipfile.ZIP_STORED if path.suffix == ".png" else zipfile.ZIP_DEFLATED
                zf.write(path, path.relative_to(folder / "coco").as_posix(), compress_type=method)
        old = sorted(p for p in workdir.iterdir() if p.name.startswith("request-"))
        for stale in old[: max(0, len(old) - self.settings.keep_downloads)]:
            shutil.rmtree(stale, ignore_errors=True)
        return archive

    def _work_dir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="ovpanoptic-demo-"))
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        return self._workdir

    def close(self) -> None:
        """Delete the downloads folder (also done when the app is garbage-collected)."""
        if self._finalizer is not None:
            self._finalizer()

    # -- Gradio --------------------------------------------------------------------------------

    def respond(
        self,
        image: Any,
        classes: str | None,
        stuff: str | None,
        vocabulary: str | None,
        preset: str | None,
        progress: Callable[..., Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], str, dict[str, Any] | None]:
        """The Gradio handler of the page :meth:`build` made: :meth:`run`, then the four outputs.

        The event skips Gradio's pre- and postprocessing: this gets the upload's path unread and
        returns the outputs as sent to the page (an update of the annotated image with its
        ``color_map``, the table, the timings, the download). Every error becomes a ``gr.Error``:
        ovpanoptic's own errors with their message (which says the fix), anything else with a short
        message that points to the server log.
        """
        gr = _import_gradio()
        if self._outputs is None:
            raise RuntimeError("DemoApp.respond needs the page: call build() first")
        annotated, table, timings, download = self._outputs
        try:
            out = self.run(
                image, classes, stuff, vocabulary, preset,
                progress=_progress_callback(progress) if progress is not None else None,
            )
        except OvpanopticError as exc:
            log.info("demo request refused: %s", exc)
            raise gr.Error(_page_message(exc), title="Cannot segment", print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - the page gets a message, the log the traceback
            log.exception("demo request failed")
            detail = (str(exc).strip().splitlines() or [""])[0][:300]
            raise gr.Error(
                f"Unexpected {type(exc).__name__}{f': {detail}' if detail else ''}. This is a bug in ovpanoptic or in "
                "one of its plugins; the traceback is in the server log. If a plugin is at fault, restart the demo "
                "with --disable-plugin NAME (or choose another preset).",
                title="Something went wrong",
                print_exception=False,
            ) from None
        image_value = annotated_payload(out.annotated, out.colors, annotated.GRADIO_CACHE)
        file_value = download.postprocess(str(out.download)) if out.download else None
        return (
            gr.update(value=image_value, color_map=out.colors),
            table.postprocess(out.table).model_dump(),
            timings.postprocess(out.timings_markdown),
            file_value.model_dump() if file_value is not None else None,
        )

    def build(self) -> gradio.Blocks:
        """Build the Gradio page (loads no model). The queue is on; launch it with :func:`launch_demo`."""
        gr = _import_gradio()
        vocabularies = self.vocabulary_choices()
        descriptions = {s.name: s.description for s in self.registry.vocabularies.values()}
        with gr.Blocks(title="ovpanoptic demo", analytics_enabled=False, delete_cache=(3600, 7200)) as demo:
            gr.Markdown(
                "# ovpanoptic: open-vocabulary panoptic segmentation\n"
                "Upload an image, type the class names to look for, and every pixel gets a class and every "
                "object its own id. The first run on an image computes mask proposals and image features (slow "
                "on a CPU); after that, changing the class names answers in a fraction of a second."
            )
            with gr.Row():
                with gr.Column(scale=2):
                    image = gr.Image(
                        type="filepath", image_mode=None, label="Image", sources=["upload", "clipboard"],
                        elem_id="ovp-image",
                    )
                    classes = gr.Textbox(
                        label="Class names", lines=2, elem_id="ovp-classes",
                        placeholder="person, car, tv|television",
                        info="Comma-separated; '|' separates synonyms. Names known as stuff (road, sky, floor, ...) "
                        "are stuff, the rest things (one segment per object).",
                    )
                    stuff = gr.Textbox(
                        label="Stuff (optional)", elem_id="ovp-stuff", placeholder="road, sky",
                        info="Amorphous regions: one segment per class.",
                    )
                    with gr.Row():
                        vocabulary = gr.Dropdown(
                            choices=vocabularies, value=CUSTOM_VOCABULARY, label="Named vocabulary",
                            elem_id="ovp-vocabulary", info="Replaces the typed names when chosen.",
                        )
                        preset = gr.Dropdown(
                            choices=self.preset_choices(), value=self.initial_preset, label="Preset",
                            elem_id="ovp-preset", info="Components and their settings (configs/).",
                        )
                    run = gr.Button("Segment", variant="primary", elem_id="ovp-run")
                    examples = self.example_rows()
                    if examples:
                        gr.Examples(examples=examples, inputs=[image, classes, stuff], label="Examples (made by the project, CC0)")
                with gr.Column(scale=3):
                    annotated = gr.AnnotatedImage(label="Panoptic segments", elem_id="ovp-annotated", format="jpeg")
                    table = gr.Dataframe(
                        headers=list(TABLE_HEADERS), datatype=["str", "str", "str", "number", "number"],
                        label="Segments", interactive=False, elem_id="ovp-table",
                    )
                    timings = gr.Markdown(elem_id="ovp-timings")
                    download = gr.File(label="COCO-panoptic PNG + JSON (zip)", interactive=False, elem_id="ovp-download")

            def segment(
                image: Any, classes: str, stuff: str, vocabulary: str, preset: str, progress: Any = gr.Progress()
            ) -> tuple[Any, ...]:
                return self.respond(image, classes, stuff, vocabulary, preset, progress=progress)

            def vocabulary_changed(name: str) -> tuple[Any, Any]:
                named = bool(name) and name != CUSTOM_VOCABULARY
                info = (
                    f"Using the named vocabulary '{name}' ({descriptions.get(name, '')}); pick "
                    f"'{CUSTOM_VOCABULARY}' to type class names."
                    if named
                    else "Comma-separated; '|' separates synonyms."
                )
                return gr.update(interactive=not named, info=info), gr.update(interactive=not named)

            inputs = [image, classes, stuff, vocabulary, preset]
            outputs = [annotated, table, timings, download]
            self._outputs = (annotated, table, timings, download)
            # preprocess=False: the handler gets the upload's path unread, so a non-image or a huge
            # image gets the handler's message instead of Gradio's generic error. postprocess=False:
            # the handler writes the masks itself, 20x faster (see annotated_payload). One queue for
            # the three triggers: requests run one at a time, in order.
            event = {"preprocess": False, "postprocess": False, "concurrency_limit": 1, "concurrency_id": "segment"}
            run.click(segment, inputs, outputs, api_name="segment", **event)
            for box in (classes, stuff):
                box.submit(segment, inputs, outputs, api_visibility="private", **event)
            vocabulary.change(vocabulary_changed, vocabulary, [classes, stuff], api_visibility="private", queue=False)
        demo.queue(default_concurrency_limit=1)
        self.blocks = demo
        return demo


def _preset_name(config: Config) -> str | None:
    """The preset name of a config loaded from a preset file (without overrides), else ``None``."""
    source = config.source
    for name, path in list_presets().items():
        if source == str(path):
            return name
    return None


def build_demo(
    pipeline: Pipeline | None = None,
    *,
    config: Config | str | Path | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
    registry: Registry | None = None,
    disable_plugins: Iterable[str] = (),
    settings: DemoSettings | None = None,
    examples_dir: str | Path | None = None,
) -> gradio.Blocks:
    """Build the demo page (a ``gr.Blocks`` with the queue on); loads no model.

    The :class:`DemoApp` behind it is ``demo.ovpanoptic_app``. See :class:`DemoApp` for the
    parameters.

    :raises ConfigError: the config is invalid; :raises ComponentNotFoundError: it names a
        component no plugin provides; :raises PluginError: a plugin fails to load.
    """
    app = DemoApp(
        pipeline, config=config, overrides=overrides, device=device, registry=registry,
        disable_plugins=disable_plugins, settings=settings, examples_dir=examples_dir,
    )
    app.check()
    demo = app.build()
    demo.ovpanoptic_app = app  # type: ignore[attr-defined]
    return demo


def launch_demo(
    demo: gradio.Blocks,
    *,
    host: str = DEFAULT_HOST,
    port: int | None = DEFAULT_PORT,
    max_file_size: str | int | None = DEFAULT_MAX_FILE_SIZE,
    block: bool = True,
) -> gradio.Blocks:
    """Serve the demo on ``host:port`` (loopback by default) with an upload limit.

    :param block: wait until interrupted (the CLI); ``False`` returns once the server is up
        (tests, notebooks): stop it with ``demo.close()``.
    :raises InputError: the port is taken or the address cannot be bound.
    """
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            max_file_size=max_file_size,
            prevent_thread_lock=not block,
            ssr_mode=False,
            show_error=False,
            quiet=not block,
        )
    except OSError as exc:
        raise InputError(f"cannot serve the demo on {host}:{port} ({exc}); choose another port with --port") from None
    return demo
