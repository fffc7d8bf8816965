"""Built-in plugin: the ``clip`` classifier (open_clip models) and the prompt-template sets.

The classifier scores each mask proposal against the vocabulary's text embeddings. Image side,
chosen by ``mode`` (see ``docs/components/clip.md``):

``crop``
    each mask's box, enlarged by ``crop_context`` and made square, is cut out, the pixels outside
    the mask are set to the model's mean colour (or a blur of the image, ``crop_fill="blur"``), and
    the crops go through the image encoder in batches;
``dense``
    one forward pass of the image encoder at ``dense_size`` pixels (long side); the features are
    averaged inside each mask (area-weighted) and projected to the embedding space;
``ensemble``
    both, combined by a weighted geometric mean of their probabilities.

Modules, lowest first: :mod:`.config` (:class:`ClipConfig`, the default models; imports no
sibling), :mod:`.templates` (the prompt-template sets), :mod:`.image` (crops, mask pooling),
:mod:`.text` (text embeddings and their cache), :mod:`.text_tower`, :mod:`.loading` (weights and
model building) and :mod:`.classifier` (:class:`~.classifier.ClipClassifier`, using them all). This
``__init__`` only re-exports and registers; no submodule imports it. The package may import the
core modules below the pipeline (components, hookspecs, types, errors, device, weights, atomic),
never :mod:`ovpanoptic.pipeline`, the CLI, the demo or another built-in.

Importing this module imports neither torch nor open_clip: the model is built and its weights
loaded on the first ``prepare``, ``score`` or ``download`` call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...components import ComponentContext, RegisterComponent, RegisterPromptTemplates
from ...hookspecs import hookimpl
from .config import DEFAULT_MODELS, DEFAULT_TAGS, ClipConfig
from .templates import TEMPLATE_SETS

if TYPE_CHECKING:
    from .classifier import ClipClassifier

__all__ = ["DEFAULT_MODELS", "DEFAULT_TAGS", "ClipConfig", "make_clip_classifier"]


def make_clip_classifier(config: ClipConfig, context: ComponentContext) -> ClipClassifier:
    """Factory registered as ``clip``: builds the classifier; loads nothing."""
    from .classifier import ClipClassifier

    return ClipClassifier(config, context)


@hookimpl
def register_classifiers(register: RegisterComponent) -> None:
    """Register ``clip``."""
    register(
        "clip",
        make_clip_classifier,
        config=ClipConfig,
        description="open_clip text-embedding classifier: crop, dense mask-pooled or ensemble",
    )


@hookimpl
def register_prompt_templates(register: RegisterPromptTemplates) -> None:
    """Register ``imagenet-80``, ``short`` and ``single``."""
    for name, (templates, description) in TEMPLATE_SETS.items():
        register(name, templates, description=description)
