"""Built-in plugin: registers the ``cityscapes`` and ``cityscapes-panoptic`` exporters, whose code is
the Cityscapes writer of :mod:`ovpanoptic.formats.cityscapes` (through cityscapesscripts)."""

from __future__ import annotations

from ..components import RegisterComponent
from ..formats.cityscapes import CityscapesConfig, CityscapesExporter, CityscapesPanopticExporter
from ..hookspecs import hookimpl

__all__ = ["register_exporters"]


@hookimpl
def register_exporters(register: RegisterComponent) -> None:
    """Register ``cityscapes`` and ``cityscapes-panoptic``."""
    register(
        "cityscapes",
        CityscapesExporter,
        config=CityscapesConfig,
        description="Cityscapes gtFine labelIds + instanceIds PNGs (cityscapesscripts labels)",
    )
    register(
        "cityscapes-panoptic",
        CityscapesPanopticExporter,
        config=CityscapesConfig,
        description="Cityscapes-panoptic JSON + PNGs, made by cityscapesscripts' convert2panoptic",
    )
