"""Built-in plugin: registers the ``cvat`` exporter, whose code is the CVAT writer of
:mod:`ovpanoptic.formats.cvat` ("CVAT for images 1.1" XML, one mask shape per segment)."""

from __future__ import annotations

from ..components import RegisterComponent
from ..formats.cvat import CvatConfig, CvatExporter
from ..hookspecs import hookimpl

__all__ = ["register_exporters"]


@hookimpl
def register_exporters(register: RegisterComponent) -> None:
    """Register ``cvat``."""
    register("cvat", CvatExporter, config=CvatConfig, description="CVAT for images 1.1: cvat/annotations.xml (mask shapes, scores in %) + cvat/images/")
