"""The demo's wiring class: :class:`DemoApp` is the shared resources (:class:`~.resources.DemoResources`)
plus :meth:`DemoApp.build`, which makes the page (:mod:`.layout`, imported only then: it imports gradio).

The top of the demo's modules: it imports :mod:`.resources` and :mod:`.layout`; nothing in the demo
imports it but the package ``__init__``. The page's constants and settings are re-exported from
:mod:`.resources`, where they live.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .resources import APP_PIPELINE, CUSTOM_VOCABULARY, EXAMPLE_CLASSES, EXAMPLES_DIR, TUNABLE, DemoResources, DemoSettings, TuningControl

if TYPE_CHECKING:
    import gradio

__all__ = [
    "APP_PIPELINE",
    "CUSTOM_VOCABULARY",
    "EXAMPLES_DIR",
    "EXAMPLE_CLASSES",
    "TUNABLE",
    "DemoApp",
    "DemoSettings",
    "TuningControl",
]


class DemoApp(DemoResources):
    """The demo's shared state (see :class:`~.resources.DemoResources` for the parameters);
    :meth:`build` makes the Gradio page.
    """

    #: The page, once :meth:`build` has made it.
    blocks: gradio.Blocks | None = None

    def build(self) -> gradio.Blocks:
        """Build the Gradio page (loads no model). The queue is on; launch it with
        :func:`~ovpanoptic.demo.launch_demo`."""
        from .layout import build_page

        self.blocks = build_page(self)
        return self.blocks
