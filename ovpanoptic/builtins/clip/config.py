"""The ``clip`` classifier's options (:class:`ClipConfig`) and default models, shared by its modules.

The bottom of :mod:`ovpanoptic.builtins.clip`: it imports no sibling module, and every sibling that
needs the options imports them from here (never from the package ``__init__``, which imports them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_MODELS", "DEFAULT_TAGS", "ClipConfig", "Fill", "Mode"]

#: Model used when ``model`` is empty, by mode: (open_clip architecture, pretrained tag).
DEFAULT_MODELS: dict[str, tuple[str, str]] = {
    "crop": ("ViT-B-16", "laion2b_s34b_b88k"),
    "dense": ("convnext_base_w", "laion2b_s13b_b82k_augreg"),
    "ensemble": ("convnext_base_w", "laion2b_s13b_b82k_augreg"),
}

#: Pretrained tag used when ``model`` is set and ``pretrained`` is empty.
DEFAULT_TAGS: dict[str, str] = {
    "ViT-B-16": "laion2b_s34b_b88k",
    "ViT-B-32": "laion2b_s34b_b79k",
    "ViT-L-14": "laion2b_s32b_b82k",
    "convnext_base_w": "laion2b_s13b_b82k_augreg",
    "convnext_base_w_320": "laion_aesthetic_s13b_b82k_augreg",
    "convnext_large_d": "laion2b_s26b_b102k_augreg",
    "convnext_large_d_320": "laion2b_s29b_b131k_ft_soup",
}

Mode = Literal["crop", "dense", "ensemble"]
Fill = Literal["mean", "blur"]


@dataclass(frozen=True)
class ClipConfig:
    """Options of the ``clip`` classifier.

    :param model: open_clip architecture (``ViT-B-16``, ``convnext_base_w``, ...); empty: the
        default of ``mode`` (:data:`DEFAULT_MODELS`).
    :param pretrained: the weights: an open_clip pretrained tag of ``model`` (fetched from its
        Hugging Face repository), a local checkpoint path, or ``hf-hub:ORG/REPO[/FILE]``; empty:
        the default tag of ``model`` (:data:`DEFAULT_TAGS`).
    :param mode: ``crop``, ``dense`` or ``ensemble`` (see :mod:`ovpanoptic.builtins.clip`).
    :param templates: name of a registered prompt-template set (``imagenet-80``, ``short``, ``single``).
    :param crop_context: crop mode: the mask's box is enlarged by this factor (>= 1) around its centre.
    :param crop_fill: crop mode: pixels outside the mask become the model's mean colour (``mean``)
        or a blurred copy of the image (``blur``).
    :param crop_batch_size: crop mode: crops per image-encoder batch.
    :param dense_size: dense mode: long side, in pixels, of the image fed to the encoder.
    :param ensemble_weight: ensemble mode: weight of the dense probabilities in the geometric mean
        (0 = crop only, 1 = dense only).
    :param no_object_similarity: the "no object" rule: a virtual column with this cosine
        similarity joins the softmax, so a mask whose best class is less similar than this gets
        most of its probability on "no object" (its row sums to well below 1); -1 disables it.
    :param background_prompts: extra names (e.g. ``["background"]``) whose columns join the
        softmax and are then dropped: probability they win counts as "no object".
    :param text_batch_size: prompts per text-encoder batch (bounds memory for huge vocabularies).
    :param text_cache: keep text embeddings on disk under the cache directory (always in memory).
    :param keep_text_tower: keep the text tower in memory once the vocabulary is prepared. Off
        (batch presets), ``prepare_vocabulary`` releases it (about 0.36 GB for ``convnext_base_w``):
        it is used only for names the cache does not hold, and a later new name loads it again
        from the checkpoint (seconds). On (the ``interactive`` preset): new names in a session are
        encoded without that reload.
    :param precision: ``float32``, or ``bfloat16``: the image encoder runs under ``torch.autocast``
        (CUDA tensor cores, CPUs with native bf16: see ``configs/devices/``). Text embeddings are
        always computed in float32, so the text cache does not depend on the device.
    """

    model: str = ""
    pretrained: str = ""
    mode: Mode = "dense"
    templates: str = "imagenet-80"
    crop_context: float = 1.5
    crop_fill: Fill = "mean"
    crop_batch_size: int = 32
    dense_size: int = 768
    ensemble_weight: float = 0.5
    no_object_similarity: float = 0.2
    background_prompts: tuple[str, ...] = ()
    text_batch_size: int = 256
    text_cache: bool = True
    keep_text_tower: bool = False
    precision: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        if self.mode not in DEFAULT_MODELS:
            raise ValueError(f"mode must be one of {', '.join(DEFAULT_MODELS)}, got {self.mode!r}")
        if self.crop_fill not in ("mean", "blur"):
            raise ValueError(f"crop_fill must be 'mean' or 'blur', got {self.crop_fill!r}")
        if not isinstance(self.model, str) or self.model != self.model.strip():
            raise ValueError(f"model must be an open_clip architecture name without spaces, got {self.model!r}")
        if not isinstance(self.pretrained, str):
            raise ValueError(f"pretrained must be a string (tag, path or hf-hub id), got {self.pretrained!r}")
        if not self.templates:
            raise ValueError("templates must name a prompt-template set, e.g. 'imagenet-80' or 'short'")
        if not 1.0 <= self.crop_context <= 10.0:
            raise ValueError(f"crop_context must be in [1, 10] (a box enlargement factor), got {self.crop_context}")
        if self.crop_batch_size < 1:
            raise ValueError(f"crop_batch_size must be >= 1, got {self.crop_batch_size}")
        if not 64 <= self.dense_size <= 4096:
            raise ValueError(f"dense_size must be in [64, 4096] pixels, got {self.dense_size}")
        if not 0.0 <= self.ensemble_weight <= 1.0:
            raise ValueError(f"ensemble_weight must be in [0, 1], got {self.ensemble_weight}")
        if not -1.0 <= self.no_object_similarity <= 1.0:
            raise ValueError(
                f"no_object_similarity must be a cosine similarity in [-1, 1] (-1 disables the rule), "
                f"got {self.no_object_similarity}"
            )
        if isinstance(self.background_prompts, str) or not all(
            isinstance(p, str) and p.strip() for p in self.background_prompts
        ):
            raise ValueError(f"background_prompts must be a list of non-empty names, got {self.background_prompts!r}")
        object.__setattr__(self, "background_prompts", tuple(self.background_prompts))
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {self.precision!r}")
        if self.text_batch_size < 1:
            raise ValueError(f"text_batch_size must be >= 1, got {self.text_batch_size}")

    @property
    def architecture(self) -> str:
        """The open_clip architecture: ``model``, or the default of ``mode``."""
        return self.model or DEFAULT_MODELS[self.mode][0]
