"""ovpanoptic: open-vocabulary panoptic segmentation as a plugin suite.

Quick start::

    import ovpanoptic
    result = ovpanoptic.segment("street.jpg", classes="person, car, road, sky")

For several images, build one :class:`Pipeline` and reuse it (models load once; re-querying an
image with new class names reuses its proposals and features).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl
from .types import Category, ClassScores, PanopticResult, Prompt, ProposalSet, Segment, Vocabulary

if TYPE_CHECKING:
    from .pipeline import Pipeline

__version__ = "0.1.0"

__all__ = [
    "Category",
    "ClassScores",
    "PanopticResult",
    "Pipeline",
    "Prompt",
    "ProposalSet",
    "Segment",
    "Vocabulary",
    "__version__",
    "hookimpl",
    "segment",
]


def __getattr__(name: str) -> Any:
    if name == "Pipeline":
        from .pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'ovpanoptic' has no attribute {name!r}")


def segment(
    image: Any,
    classes: str = "",
    *,
    stuff: str = "",
    things: str = "",
    vocabulary: str | None = None,
    config: str | Path | None = None,
    overrides: tuple[str, ...] = (),
    device: str | None = None,
) -> PanopticResult:
    """Segment one image with typed class names (or a named ``vocabulary``) in one call.

    Builds a fresh :class:`Pipeline` each call; use a :class:`Pipeline` directly to segment many
    images or to re-query one image with new class names.
    """
    from .pipeline import Pipeline

    pipe = Pipeline(config, overrides=overrides, device=device)
    vocab = pipe.vocabulary(classes, stuff, things, name=vocabulary)
    return pipe.segment(image, vocab)
