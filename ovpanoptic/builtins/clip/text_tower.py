"""Running an open_clip text tower only as far as the end-of-text token.

CLIP's text towers are causal transformers (each position attends to itself and the positions
before it) whose embedding is read at one position: the end-of-text token (``argmax`` pooling in
OpenAI's CLIP, ``eos`` pooling in open_clip's configs with another tokenizer). The hidden state at
that position depends only on the tokens up to it, so the positions after the last end-of-text
token of a batch (padding, up to the 77-token context) can be dropped without changing the
embedding: a prompt like "a photo of a dog." is 8 tokens, so most of the tower's work on a
77-token context is padding (Radford et al. 2021, "Learning Transferable Visual Models From
Natural Language Supervision", section 2.4; open_clip ``TextTransformer`` / ``CLIP.encode_text``).

:func:`causal_text_tower` checks that a model's tower is of that kind (a causal attention mask,
no class token, no padding mask, pooling at the end-of-text token) and returns its parts;
:func:`encode_trimmed` runs them on the trimmed tokens. A tower that does not pass the check is
run by the model's own ``encode_text`` on the full context. ``tests/test_clip.py`` compares the two
for every architecture with a default in :data:`~ovpanoptic.builtins.clip.DEFAULT_TAGS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CausalTextTower", "causal_text_tower", "encode_trimmed"]

#: Pooling types that read the embedding at the end-of-text token.
END_TOKEN_POOLING = ("argmax", "eos")


@dataclass(frozen=True, eq=False)
class CausalTextTower:
    """The modules of an open_clip text tower that :func:`encode_trimmed` runs (shared, not copied)."""

    token_embedding: Any
    positional_embedding: Any
    transformer: Any
    attn_mask: Any
    ln_final: Any
    text_projection: Any
    pool_type: str
    eos_id: int | None


def _is_causal(mask: Any) -> bool:
    import torch

    if mask is None or mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        return False
    upper = torch.triu(torch.ones_like(mask, dtype=torch.bool), diagonal=1)
    return bool(torch.isneginf(mask[upper]).all() and (mask[~upper] == 0).all())


def causal_text_tower(model: Any) -> CausalTextTower | None:
    """The text tower of an open_clip ``CLIP`` or ``CustomTextCLIP`` when trimming cannot change
    its embeddings, else ``None``.

    Conditions: a square additive causal attention mask (``-inf`` above the diagonal, 0 elsewhere),
    pooling at the end-of-text token (``argmax`` or ``eos``), no appended class token (CoCa) and no
    padding mask (which would make earlier positions depend on the padding).
    """
    text = getattr(model, "text", None)
    if text is not None:  # CustomTextCLIP: the tower is a TextTransformer (or a Hugging Face model)
        if getattr(text, "cls_emb", None) is not None or getattr(text, "use_pad_mask", False):
            return None
        owner, pool_type, eos_id = text, getattr(text, "pool_type", None), getattr(text, "eos_id", None)
    else:
        owner, pool_type, eos_id = model, getattr(model, "text_pool_type", None), getattr(model, "text_eos_id", None)
    parts = {
        name: getattr(owner, name, None)
        for name in ("token_embedding", "positional_embedding", "transformer", "attn_mask", "ln_final")
    }
    if any(value is None for value in parts.values()) or pool_type not in END_TOKEN_POOLING:
        return None
    if pool_type == "eos" and eos_id is None:
        return None
    if not _is_causal(parts["attn_mask"]):
        return None
    return CausalTextTower(
        text_projection=getattr(owner, "text_projection", None), pool_type=pool_type, eos_id=eos_id, **parts
    )


def end_positions(tower: CausalTextTower, tokens: Any) -> Any:
    """``(B,)`` int64: the position each row's embedding is read at (as ``text_global_pool``)."""
    if tower.pool_type == "argmax":
        return tokens.argmax(dim=-1)
    return (tokens == tower.eos_id).int().argmax(dim=-1)


def encode_trimmed(tower: CausalTextTower, tokens: Any) -> Any:
    """Text embeddings of ``tokens`` computed on the positions up to the batch's last end token.

    :param tower: from :func:`causal_text_tower`.
    :param tokens: ``(B, context_length)`` int64 token ids, as the model's tokenizer returns them.
    :return: ``(B, D)`` embeddings (not normalised), equal to the model's ``encode_text(tokens)``
        up to float rounding.
    """
    import torch
    from open_clip.transformer import text_global_pool

    ends = end_positions(tower, tokens)
    length = int(ends.max()) + 1 if len(tokens) else 1
    text = tokens[:, :length]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(text).to(cast_dtype)
    x = x + tower.positional_embedding[:length].to(cast_dtype)
    x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
    x = tower.ln_final(x)
    pooled = text_global_pool(x, text, tower.pool_type, eos_token_id=tower.eos_id)
    projection = tower.text_projection
    if projection is None:
        return pooled
    if isinstance(projection, torch.nn.Linear):
        return projection(pooled)
    return pooled @ projection
