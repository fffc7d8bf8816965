"""Built-in plugin: registers the ``label-studio`` exporter, whose code is the Label Studio writer of
:mod:`ovpanoptic.formats.label_studio` (tasks with BrushLabels predictions + the labelling config)."""

from __future__ import annotations

from ..components import RegisterComponent
from ..formats.label_studio import LabelStudioConfig, LabelStudioExporter
from ..hookspecs import hookimpl

__all__ = ["register_exporters"]


@hookimpl
def register_exporters(register: RegisterComponent) -> None:
    """Register ``label-studio``."""
    register("label-studio", LabelStudioExporter, config=LabelStudioConfig, description="Label Studio tasks with BrushLabels predictions + labelling config")
