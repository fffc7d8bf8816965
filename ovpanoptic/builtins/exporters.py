"""Built-in plugin: exporters (chosen with ``--format NAME``). Every write is atomic.

``coco-panoptic``, ``coco-instances``
    registered here; their code is the COCO writers of :mod:`ovpanoptic.formats.coco_panoptic` and
    :mod:`ovpanoptic.formats.coco_instances` (the files are described there).
``overlay``
    ``OUTDIR/STEM.overlay.png``: the image with segments and class names drawn by detectron2's
    ``Visualizer.draw_panoptic_seg`` (instance colours jittered deterministically). A preview: drawn
    at most ``max_side`` pixels on the long side (default 1024, the pipeline's default working size,
    so no detail of the result is lost; 0 = full size): detectron2 draws each segment on full-size
    masks, which took 234 s and 14.5 GB for 283 segments at 24 megapixels (now 1.3 s).
``summary``
    ``OUTDIR/STEM.summary.json``: segments (class, thing/stuff, score, area, XYXY box), timings.

``overlay`` and ``summary`` are no tool's file format and stay here; the formats' writers live in
:mod:`ovpanoptic.formats`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_text
from ..components import ComponentContext, RegisterComponent
from ..errors import ExportError, MissingDependencyError
from ..formats.coco_instances import CocoInstancesConfig, CocoInstancesExporter
from ..formats.coco_panoptic import CocoPanopticConfig, CocoPanopticExporter
from ..formats.common import png_bytes
from ..hookspecs import hookimpl
from ..imageio import working_size
from ..types import PanopticResult
from ._quiet import import_quietly, require
from .fonts import LabelFonts, ascii_label

__all__ = ["ExportError"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OverlayConfig:
    """Options of the ``overlay`` exporter.

    :param alpha: opacity of the segment colours.
    :param show_scores: add thing scores to their labels.
    :param area_threshold: segments smaller than this (pixels) get no label; 0 labels all.
    :param max_side: draw at most this many pixels on the long side (the image and the result are
        scaled down first); 0 draws at full size.
    """

    alpha: float = 0.5
    show_scores: bool = True
    area_threshold: int = 0
    max_side: int = 1024

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.max_side < 0 or 0 < self.max_side < 32:
            raise ValueError(f"max_side must be 0 (full size) or at least 32, got {self.max_side}")


class OverlayExporter:
    """Draws the result with detectron2's ``Visualizer.draw_panoptic_seg``."""

    def __init__(self, config: OverlayConfig, context: ComponentContext | None = None) -> None:
        require("detectron2", "the overlay exporter", "run scripts/bootstrap.sh (it installs detectron2)")
        require("matplotlib", "the overlay exporter", "pip install matplotlib")
        self.config = config
        self._fonts = LabelFonts()
        self._warned: set[str] = set()

    def label(self, name: str, category_id: int) -> str:
        """The text drawn for a class: its name when some installed font can draw it, else an
        ASCII stand-in (see :func:`~ovpanoptic.builtins.fonts.ascii_label`), with one warning per
        name and exporter."""
        if self._fonts.can_draw(name):
            return name
        stand_in = ascii_label(name, category_id)
        if name not in self._warned:
            self._warned.add(name)
            log.warning(
                "overlay: no installed font can draw the class name %r; it is labelled %r. Install a font that has "
                "its characters (e.g. Debian's fonts-noto-cjk for Chinese, Japanese and Korean)",
                name,
                stand_in,
            )
        return stand_in

    def render(self, result: PanopticResult, image: np.ndarray) -> np.ndarray:
        """The overlay as an ``(h, w, 3)`` uint8 RGB array: the result's size, scaled down to
        ``max_side`` on the long side when it is larger."""
        try:
            import torch

            import_quietly("detectron2.utils.visualizer")
            from detectron2.data.catalog import Metadata
            from detectron2.utils.visualizer import ColorMode
        except ImportError as exc:
            raise MissingDependencyError(
                f"the overlay exporter needs detectron2 ({exc}); run scripts/bootstrap.sh"
            ) from None
        h, w = working_size(*result.image_size, self.config.max_side)
        if (h, w) != result.image_size:
            result = result.resized(h, w)
        if image.shape[:2] != result.image_size:
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize(result.image_size[::-1], Image.Resampling.BILINEAR, reducing_gap=3.0))
        vocab = result.vocabulary
        things = list(vocab.things)
        stuff = list(vocab.stuff)
        meta = Metadata(
            name="ovpanoptic",
            thing_classes=[self.label(c.name, c.id) for c in things],
            thing_colors=[c.display_color for c in things],
            stuff_classes=[self.label(c.name, c.id) for c in stuff],
            stuff_colors=[c.display_color for c in stuff],
        )
        thing_index = {c.id: i for i, c in enumerate(things)}
        stuff_index = {c.id: i for i, c in enumerate(stuff)}
        infos = [
            {
                "id": s.id,
                "isthing": s.isthing,
                "category_id": thing_index[s.category_id] if s.isthing else stuff_index[s.category_id],
                **({"score": s.score} if self.config.show_scores and s.isthing else {}),
            }
            for s in result.segments
        ]
        visualizer = _stable_visualizer_class()(image, meta, instance_mode=ColorMode.IMAGE, fonts=self._fonts)
        area = self.config.area_threshold or None
        out = visualizer.draw_panoptic_seg(
            torch.from_numpy(np.array(result.panoptic_map)), infos, area_threshold=area, alpha=self.config.alpha
        )
        return np.ascontiguousarray(out.get_image())

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        path = Path(outdir) / f"{stem}.overlay.png"
        return [atomic_write_bytes(path, png_bytes(self.render(result, image)))]


def _stable_visualizer_class() -> type:
    from detectron2.utils.visualizer import Visualizer

    class StableVisualizer(Visualizer):  # type: ignore[misc]
        """detectron2's Visualizer with instance colour jitter from a seeded generator, so the
        same result always draws the same picture (detectron2 uses numpy's global RNG)."""

        def __init__(self, *args: Any, fonts: LabelFonts, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._rng = np.random.default_rng(0)
            self._fonts = fonts
            # The canvas has fixed limits (the image), so each polygon need not update the axes' data
            # limits: add_artist does what add_patch does but that (2 of 7 s for 200 segments).
            ax = self.output.ax
            ax.add_patch = ax.add_artist

        def draw_text(self, text: str, position: Any, **kwargs: Any) -> Any:
            family = self._fonts.family_for(text)
            if family is None:
                return super().draw_text(text, position, **kwargs)
            # The label needs another font: draw it like detectron2 does, with that font first.
            before = len(self.output.ax.texts)
            out = super().draw_text(text, position, **kwargs)
            for artist in self.output.ax.texts[before:]:
                artist.set_fontfamily([family, "sans-serif"])
            return out

        def _jitter(self, color: Sequence[float]) -> tuple[float, ...]:
            offset = self._rng.random(3)
            offset = offset / np.linalg.norm(offset) * 0.5
            return tuple(np.clip(offset + np.asarray(color, dtype=np.float64), 0.0, 1.0))

    return StableVisualizer



class SummaryExporter:
    """A per-image JSON summary."""

    def __init__(self, config: Any, context: ComponentContext | None = None) -> None:
        self.config = config

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        data = {"image": stem, **result.to_dict()}
        return [atomic_write_text(Path(outdir) / f"{stem}.summary.json", json.dumps(data, indent=1))]


@hookimpl
def register_exporters(register: RegisterComponent) -> None:
    """Register ``coco-panoptic``, ``overlay``, ``coco-instances`` and ``summary``."""
    register("coco-panoptic", CocoPanopticExporter, config=CocoPanopticConfig, description="COCO-panoptic PNG + panoptic.json")
    register("overlay", OverlayExporter, config=OverlayConfig, description="image with labelled segments (detectron2 Visualizer)")
    register("coco-instances", CocoInstancesExporter, config=CocoInstancesConfig, description="COCO instances.json with RLE masks (things) + instances_results.json for COCO.loadRes")
    register("summary", SummaryExporter, description="per-image JSON summary")
