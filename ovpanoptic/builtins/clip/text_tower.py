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
    """Text embeddings of ``tokens`` computed on the positions up to each row's end token.

    Two more savings that causality allows: the positions the rows share at their start (the
    start token and a template's words before the class name, e.g. "a photo of a") are computed
    once, and rows are run in groups of equal length, so no row does work on padding
    (:func:`_blocks_with_prefix`; a tower whose blocks are not plain open_clip
    ``ResidualAttentionBlock`` self-attention runs the batch at its longest row instead).

    :param tower: from :func:`causal_text_tower`.
    :param tokens: ``(B, context_length)`` int64 token ids, as the model's tokenizer returns them.
    :return: ``(B, D)`` embeddings (not normalised), equal to the model's ``encode_text(tokens)``
        up to float rounding.
    """
    import torch

    ends = end_positions(tower, tokens)
    if len(tokens) == 0 or not _plain_blocks(tower):
        return _encode_padded(tower, tokens, ends)
    unique, inverse = torch.unique(tokens, dim=0, return_inverse=True)
    if len(unique) < len(tokens):  # rows the tokenizer made alike get one (the same) embedding
        return encode_trimmed(tower, unique)[inverse]
    # The shared start: positions where every row has the first row's token, before any row's end.
    same = (tokens == tokens[:1]).all(dim=0).int().cumprod(dim=0)
    prefix = min(int(same.sum()), int(ends.min()))
    cast_dtype = tower.transformer.get_cast_dtype()
    shared_states = None  # each block's keys and values at the shared positions
    if prefix > 0:
        shared_states = _run_blocks(tower, _embed(tower, tokens[:1, :prefix], 0, cast_dtype), None)
    # Rows run together up to their group's last end token (padding after a row's end cannot change
    # its embedding); a row much shorter than the longest would do mostly padding, so rows are
    # split where the length grows by more than MAX_PADDING positions.
    pooled_rows, order = [], []
    for rows, end in _length_groups(ends):
        x = _embed(tower, tokens[rows, prefix : end + 1], prefix, cast_dtype)
        x = _run_blocks(tower, x, shared_states[:-1] if shared_states else None)[-1]
        picked = x[torch.arange(len(rows)), ends[rows] - prefix]
        pooled_rows.append(tower.ln_final(picked))
        order.append(rows)
    pooled = torch.cat(pooled_rows)
    result = torch.empty_like(pooled)
    result[torch.cat(order)] = pooled
    return _project(tower, result)


#: Padding positions a row may carry in a group before the group is split (see encode_trimmed).
MAX_PADDING = 8


def _length_groups(ends: Any) -> list[tuple[Any, int]]:
    """Rows grouped by end position, ascending, a group's rows ending at most
    :data:`MAX_PADDING` positions before its last: ``[(row indices, last end)]``."""
    import torch

    order = torch.argsort(ends, stable=True)
    groups: list[tuple[Any, int]] = []
    start = 0
    sorted_ends = ends[order].tolist()
    for i in range(1, len(sorted_ends) + 1):
        if i == len(sorted_ends) or sorted_ends[i] - sorted_ends[start] > MAX_PADDING:
            groups.append((order[start:i], sorted_ends[i - 1]))
            start = i
    return groups


def _project(tower: CausalTextTower, pooled: Any) -> Any:
    import torch

    projection = tower.text_projection
    if projection is None:
        return pooled
    if isinstance(projection, torch.nn.Linear):
        return projection(pooled)
    return pooled @ projection


def _embed(tower: CausalTextTower, text: Any, start: int, cast_dtype: Any) -> Any:
    """Token plus positional embeddings of ``text`` placed at positions ``start...``: ``(B, L, D)``."""
    x = tower.token_embedding(text).to(cast_dtype)
    return x + tower.positional_embedding[start : start + text.shape[1]].to(cast_dtype)


def _plain_blocks(tower: CausalTextTower) -> bool:
    """Whether every block is open_clip's ``ResidualAttentionBlock`` with a plain
    ``nn.MultiheadAttention`` (one packed input projection, no extra key/value biases), which
    :func:`_run_blocks` computes step by step so that the shared positions' keys and values are
    computed once."""
    import torch
    from open_clip.transformer import ResidualAttentionBlock

    blocks = getattr(tower.transformer, "resblocks", None)
    return (
        blocks is not None
        and len(blocks) > 0
        and all(
            type(b) is ResidualAttentionBlock
            and not hasattr(b, "ln_1_kv")
            and type(b.attn) is torch.nn.MultiheadAttention
            and b.attn.in_proj_weight is not None
            and b.attn.bias_k is None
            and not b.attn.add_zero_attn
            and b.attn.dropout == 0.0
            for b in blocks
        )
    )


def _run_blocks(tower: CausalTextTower, x: Any, shared: list[Any] | None) -> list[Any]:
    """Run the blocks on ``x`` ``(B, S, D)``, whose positions follow the shared ones.

    :param shared: for each block, the keys and values of the shared positions ``(1, P, 2D)``
        (what this function returns for them), or ``None`` when ``x`` starts at position 0.
    :return: for each block, the keys and values of ``x``'s positions ``(B, S, 2D)``, then the
        last block's output ``(B, S, D)``.
    """
    import torch
    import torch.nn.functional as F

    p = 0 if shared is None else int(shared[0].shape[1])
    b, s, d = x.shape
    mask = tower.attn_mask[p : p + s, : p + s].to(x.dtype)
    keys_values = []
    for k, block in enumerate(tower.transformer.resblocks):
        attn = block.attn
        heads = attn.num_heads
        qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)  # (B, S, 3D)
        q, kv = qkv[..., :d], qkv[..., d:]
        keys_values.append(kv)
        if shared is not None:
            kv = torch.cat([shared[k].expand(b, -1, -1), kv], dim=1)
        key, value = kv[..., :d], kv[..., d:]

        def split(t: Any) -> Any:
            return t.reshape(b, t.shape[1], heads, d // heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(key), split(value), attn_mask=mask)
        out = F.linear(out.transpose(1, 2).reshape(b, s, d), attn.out_proj.weight, attn.out_proj.bias)
        x = x + block.ls_1(out)
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
    keys_values.append(x)
    return keys_values


def _encode_padded(tower: CausalTextTower, tokens: Any, ends: Any) -> Any:
    """The whole batch up to its last end token (towers :func:`_plain_blocks` refuses)."""
    from open_clip.transformer import text_global_pool

    length = int(ends.max()) + 1 if len(tokens) else 1
    text = tokens[:, :length]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = _embed(tower, text, 0, cast_dtype)
    x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
    x = tower.ln_final(x)
    pooled = text_global_pool(x, text, tower.pool_type, eos_token_id=tower.eos_id)
    return _project(tower, pooled)
