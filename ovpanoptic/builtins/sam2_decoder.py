"""A faster evaluation of SAM 2's mask decoder for many point prompts on one image.

It computes the same function as ``model.sam_mask_decoder`` (the model's own weights, its own
prompt encoder and heads), rearranged for throughput on CPUs:

* the image embedding is never repeated per prompt: shared tensors broadcast;
* the first two-way block's image-side projections (keys and values of the token-to-image
  attention, queries of the image-to-token attention) depend only on the image and are computed
  once per image;
* attentions with few tokens (8 per prompt) against 4096 image positions are regrouped by
  associativity, so per-prompt work is ``(tokens x heads) x positions x channels`` matrix products
  instead of projecting 4096 positions per prompt: ``softmax(q Wk (K + P)^T) (K Wv^T)`` is
  evaluated as ``(softmax(A K^T) K) Wv^T`` with ``A = q Wk`` (key biases cancel in the softmax),
  and the image-to-token output projection is applied to the 8 token values before mixing;
* the transposed convolutions of the upscaling head run as plain matrix products;
* the large per-batch temporaries (image keys, upscaled features, mask logits before reordering)
  live in scratch buffers reused from batch to batch and are updated in place (``gelu_``,
  ``add_``, ``out=``):
  a fresh tensor of tens of MB costs a page fault per 4 KB on first touch, which made GELU and the
  second upscaling product 3-5x slower than their arithmetic.

Only torch is used at run time; the arithmetic follows the module structure of
``sam2.modeling.sam.mask_decoder.MaskDecoder`` and ``sam2.modeling.sam.transformer``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FastMaskDecoder", "ImageContext"]


@dataclass
class ImageContext:
    """Per-image tensors the decoder reuses for every prompt batch."""

    src: Any  # (N, C) image embedding + no-mask dense embedding
    pos: Any  # (N, C) dense positional encoding
    src_pos: Any  # src + pos
    k1: Any  # layer-1 token->image keys, (heads, N, dh)
    v1: Any  # layer-1 token->image values, (heads, N, dh)
    q1_img: Any  # layer-1 image->token queries, (heads, N, dh)
    feat_s0: Any  # (16 h w, 32) high-res features, blocked layout, + upscaling bias
    feat_s1: Any  # (4 h w, 64)
    hw: tuple[int, int]


def _heads(x: Any, heads: int) -> Any:
    """(..., T, C) -> (..., heads, T, C // heads)."""
    *lead, t, c = x.shape
    return x.reshape(*lead, t, heads, c // heads).transpose(-3, -2)


class FastMaskDecoder:
    """Evaluates a SAM 2 model's mask decoder for batches of single-point prompts.

    :param model: a ``sam2.modeling.sam2_base.SAM2Base`` (weights already loaded).
    :param dtype: compute dtype of the decoder (``torch.float32``, or ``torch.bfloat16`` for speed
        on CPUs with bf16 matrix units, at the cost of slightly different logits).
    """

    def __init__(self, model: Any, dtype: Any = None) -> None:
        import copy

        import torch

        self.model = model
        self.dtype = dtype or torch.float32
        self.device = next(model.parameters()).device
        # native_layer_norm's mean/rstd dtype differs by device for bf16 inputs (bf16 on CPU,
        # float32 on CUDA): ask the op once, so the scratch buffers match on any device.
        probe = torch.ones(1, 2, dtype=self.dtype, device=self.device)
        self._stats_dtype = torch.native_layer_norm(probe, [2], None, None, 1e-5)[1].dtype
        decoder = model.sam_mask_decoder
        self.decoder = decoder if self.dtype == torch.float32 else copy.deepcopy(decoder).to(self.dtype)
        self._buffers: dict[str, Any] = {}
        self.transformer = self.decoder.transformer
        if self.transformer.depth != 2:
            raise ValueError(f"expected a two-block SAM decoder transformer, got depth {self.transformer.depth}")
        if not self.decoder.use_high_res_features:
            raise ValueError("expected a SAM 2 decoder with high-resolution features")
        act1, act2 = self.decoder.output_upscaling[2], self.decoder.output_upscaling[4]
        if not (isinstance(act1, torch.nn.GELU) and isinstance(act2, torch.nn.GELU)):
            raise ValueError(f"expected GELU activations in SAM 2's upscaling head, got {act1} and {act2}")

    # -- per image ---------------------------------------------------------------------------

    def prepare(self, features: dict[str, Any]) -> ImageContext:
        """Image-only terms from ``SAM2ImagePredictor._features``."""
        import torch

        pe_module = self.model.sam_prompt_encoder
        embed = features["image_embed"][0]  # (C, h, w)
        c, h, w = embed.shape
        dense = pe_module.no_mask_embed.weight.reshape(c, 1, 1)
        src = (embed + dense).reshape(c, h * w).T.contiguous()
        pos = pe_module.get_dense_pe()[0].reshape(c, h * w).T.contiguous()
        src_pos = src + pos
        layer = self.model.sam_mask_decoder.transformer.layers[0]
        t2i = layer.cross_attn_token_to_image
        i2t = layer.cross_attn_image_to_token
        with torch.no_grad():
            k1 = _heads(t2i.k_proj(src_pos), t2i.num_heads).contiguous()
            v1 = _heads(t2i.v_proj(src), t2i.num_heads).contiguous()
            q1_img = _heads(i2t.q_proj(src_pos), i2t.num_heads).contiguous()
        feat_s0, feat_s1 = features["high_res_feats"]
        dc1, _, _, dc2, _ = self.model.sam_mask_decoder.output_upscaling
        # Upscaling runs in a "blocked" channels-last layout: pixel (2i+a, 2j+b) of the 2x map sits at
        # [i, j, a, b]; pixel (4i+2a+c, 4j+2b+d) of the 4x map at [i, j, a, b, c, d]. The high-res
        # features are rearranged into it once per image, with the transposed convolutions' biases added.
        f1 = feat_s1[0].reshape(-1, h, 2, w, 2).permute(1, 3, 2, 4, 0) + dc1.bias
        f0 = feat_s0[0].reshape(-1, h, 2, 2, w, 2, 2).permute(1, 4, 2, 5, 3, 6, 0) + dc2.bias
        d = self.dtype
        return ImageContext(
            src.to(d), pos.to(d), src_pos.to(d), k1.to(d), v1.to(d), q1_img.to(d),
            f0.reshape(h * w * 16, -1).to(d).contiguous(), f1.reshape(h * w * 4, -1).to(d).contiguous(), (h, w),
        )

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """A reusable scratch tensor of ``shape`` (contents undefined): a view of one flat buffer per
        name, grown when a larger batch needs it, so smaller batches (IoU-gated rows, the last
        batch) add no memory."""
        import torch

        numel = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = self._buffers[name] = torch.empty(numel, dtype=dtype or self.dtype, device=self.device)
        return buf[:numel].view(shape)

    # -- attention pieces --------------------------------------------------------------------

    @staticmethod
    def _self_attention(attn: Any, q: Any, k: Any, v: Any) -> Any:
        import torch.nn.functional as F

        qh = _heads(attn.q_proj(q), attn.num_heads)
        kh = _heads(attn.k_proj(k), attn.num_heads)
        vh = _heads(attn.v_proj(v), attn.num_heads)
        out = F.scaled_dot_product_attention(qh, kh, vh)
        b, hd, t, dh = out.shape
        return attn.out_proj(out.transpose(1, 2).reshape(b, t, hd * dh))

    @staticmethod
    def _token_to_image_shared(attn: Any, q: Any, k_heads: Any, v_heads: Any) -> Any:
        """Token->image attention whose keys/values (already projected) are shared by all prompts."""
        import torch.nn.functional as F

        qh = _heads(attn.q_proj(q), attn.num_heads)  # (B, H, T, dh)
        b = qh.shape[0]
        out = F.scaled_dot_product_attention(qh, k_heads.expand(b, -1, -1, -1), v_heads.expand(b, -1, -1, -1))
        b, hd, t, dh = out.shape
        return attn.out_proj(out.transpose(1, 2).reshape(b, t, hd * dh))

    @staticmethod
    def _token_to_image(attn: Any, q: Any, keys: Any, keys_pos: Any) -> Any:
        """Token->image attention with per-prompt image keys ``keys`` (B, N, C), ``keys_pos = keys + pos``."""
        import torch

        heads = attn.num_heads
        dh = attn.internal_dim // heads
        b, t, _ = q.shape
        c = keys.shape[-1]
        qh = _heads(attn.q_proj(q), heads)  # (B, H, T, dh)
        wk = attn.k_proj.weight.reshape(heads, dh, c)  # (H, dh, C)
        a = torch.einsum("bhtd,hdc->bhtc", qh, wk).reshape(b, heads * t, c) * (1.0 / math.sqrt(dh))
        scores = torch.bmm(a, keys_pos.transpose(1, 2))  # (B, H*T, N); the key bias cancels in softmax
        weights = torch.softmax(scores, dim=-1)
        mixed = torch.bmm(weights, keys).reshape(b, heads, t, c)  # (B, H, T, C)
        wv = attn.v_proj.weight.reshape(heads, dh, c)
        vals = torch.einsum("bhtc,hdc->bhtd", mixed, wv) + attn.v_proj.bias.reshape(heads, 1, dh)
        return attn.out_proj(vals.transpose(1, 2).reshape(b, t, heads * dh))

    def _layer_norm(self, norm: Any, x: Any, name: str) -> Any:
        """``norm(x)`` for a (B, N, C) ``x``, written into the scratch buffer ``name``."""
        import torch

        b, n, c = x.shape
        out = self._buffer(name, (b, n, c))
        stats = (
            self._buffer(name + ".mean", (b, n, 1), self._stats_dtype),
            self._buffer(name + ".rstd", (b, n, 1), self._stats_dtype),
        )
        torch.ops.aten.native_layer_norm.out(
            x, [c], norm.weight, norm.bias, norm.eps, out0=out, out1=stats[0], out2=stats[1]
        )
        return out

    def _image_to_token(
        self, attn: Any, q_img_heads: Any | None, keys_pos: Any | None, residual: Any, tokens_q: Any, tokens_v: Any
    ) -> Any:
        """Image->token attention; returns ``residual + update`` (B, N, C), before the layer norm.

        ``residual`` is ``(N, C)`` shared by the batch, or ``(B, N, C)``, which is updated in place.

        Queries are the shared projected ``q_img_heads`` (H, N, dh) (block 1), or ``q_proj(keys_pos)``
        evaluated per prompt by associativity (block 2).
        """
        import torch

        heads = attn.num_heads
        dh = attn.internal_dim // heads
        b, t, _ = tokens_q.shape
        kt = _heads(attn.k_proj(tokens_q), heads)  # (B, H, T, dh)
        vt = _heads(attn.v_proj(tokens_v), heads)  # (B, H, T, dh)
        scale = 1.0 / math.sqrt(dh)
        # Scores are laid out (B, H, T, N) so the softmax over the few tokens T runs along a
        # non-innermost axis, which torch vectorises over the N image positions.
        if q_img_heads is not None:
            scores = torch.matmul(kt * scale, q_img_heads.transpose(-1, -2))  # (B, H, T, N)
        else:
            c = keys_pos.shape[-1]
            wq = attn.q_proj.weight.reshape(heads, dh, c)
            g = torch.einsum("bhtd,hdc->bhtc", kt, wq).reshape(b, heads * t, c) * scale  # (B, H*T, C)
            bias = torch.einsum("hd,bhtd->bht", attn.q_proj.bias.reshape(heads, dh), kt).reshape(b, heads * t, 1) * scale
            scores = torch.baddbmm(bias, g, keys_pos.transpose(1, 2))  # (B, H*T, N)
        weights = torch.softmax(scores.reshape(b, heads, t, -1), dim=2).reshape(b, heads * t, -1)
        wo = attn.out_proj.weight.reshape(-1, heads, dh)  # (C, H, dh)
        # Each head's weights sum to 1 over the tokens, so adding bias / heads to every token's
        # projected value adds the output bias once per position: no separate pass over (B, N, C).
        u = torch.einsum("bhtd,chd->bhtc", vt, wo) + attn.out_proj.bias / heads
        u = u.reshape(b, heads * t, -1)  # (B, H*T, C)
        if residual.dim() == 2:  # shared by the batch (block 1): into a scratch buffer
            out = self._buffer("block1", (b, residual.shape[0], residual.shape[1]))
            return torch.baddbmm(residual, weights.transpose(1, 2), u, out=out)
        return residual.baddbmm_(weights.transpose(1, 2), u)  # per prompt (block 2): in place

    # -- full decoder ------------------------------------------------------------------------

    def __call__(self, ctx: ImageContext, sparse: Any) -> tuple[Any, Any]:
        """Decode a batch of prompts: ``(mask_logits (B, M, 4h, 4w), iou_pred (B, M))`` for all
        ``M`` mask tokens (4 in SAM 2), as ``sam_mask_decoder.predict_masks`` computes them."""
        iou_pred, mask_tokens, keys = self.transform(ctx, sparse)
        return self.masks(ctx, keys, mask_tokens), iou_pred

    def transform(self, ctx: ImageContext, sparse: Any) -> tuple[Any, Any, Any]:
        """The two-way transformer and the IoU head, without building any mask.

        :param ctx: from :meth:`prepare`.
        :param sparse: ``(B, P, C)`` sparse prompt embeddings from the model's prompt encoder.
        :return: ``(iou_pred (B, M), mask_tokens (B, M, C), image_keys (B, N, C))``; ``image_keys``
            is a scratch buffer of this decoder, valid until its next ``transform`` call.
        """
        import torch

        dec = self.decoder
        tr = self.transformer
        sparse = sparse.to(self.dtype)
        b = sparse.shape[0]
        output_tokens = torch.cat([dec.obj_score_token.weight, dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        s = 1 if dec.pred_obj_scores else 0
        if not dec.pred_obj_scores:
            output_tokens = output_tokens[1:]
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        query_pe = tokens
        l1, l2 = tr.layers

        # Block 1 (no PE on its self-attention); image side shared until the image->token update.
        queries = l1.norm1(self._self_attention(l1.self_attn, tokens, tokens, tokens))
        queries = l1.norm2(queries + self._token_to_image_shared(l1.cross_attn_token_to_image, queries + query_pe, ctx.k1, ctx.v1))
        queries = l1.norm3(queries + l1.mlp(queries))
        # The (B, N, C) image-side tensors live in scratch buffers (see the module docstring).
        keys = self._layer_norm(
            l1.norm4,
            self._image_to_token(l1.cross_attn_image_to_token, ctx.q1_img, None, ctx.src, queries + query_pe, queries),
            "keys1",
        )  # (B, N, C)
        keys_pos = torch.add(keys, ctx.pos, out=self._buffer("keys_pos", tuple(keys.shape)))

        # Block 2.
        q = queries + query_pe
        queries = l2.norm1(queries + self._self_attention(l2.self_attn, q, q, queries))
        queries = l2.norm2(queries + self._token_to_image(l2.cross_attn_token_to_image, queries + query_pe, keys, keys_pos))
        queries = l2.norm3(queries + l2.mlp(queries))
        block1_keys = keys  # the residual of block 2's image->token update, overwritten by it
        keys = self._layer_norm(
            l2.norm4,
            self._image_to_token(l2.cross_attn_image_to_token, None, keys_pos, block1_keys, queries + query_pe, queries),
            "keys2",
        )
        keys_pos = torch.add(keys, ctx.pos, out=keys_pos)  # block 1's keys_pos is no longer needed

        # Final token->image attention.
        queries = tr.norm_final_attn(
            queries + self._token_to_image(tr.final_attn_token_to_image, queries + query_pe, keys, keys_pos)
        )
        iou_pred = dec.iou_prediction_head(queries[:, s, :]).float()
        mask_tokens = queries[:, s + 1 : s + 1 + dec.num_mask_tokens, :]
        return iou_pred, mask_tokens, keys

    def masks(self, ctx: ImageContext, keys: Any, mask_tokens: Any, token_index: Sequence[int] | None = None) -> Any:
        """Low-resolution mask logits ``(B, len(token_index), 4h, 4w)`` (all tokens by default)."""
        import torch

        dec = self.decoder
        b = keys.shape[0]
        index = list(range(mask_tokens.shape[1])) if token_index is None else list(token_index)
        # Upscaling: transposed convolutions (kernel 2, stride 2) as matrix products, blocked layout.
        h, w = ctx.hw
        dc1, ln1, act1, dc2, act2 = dec.output_upscaling
        c1, c2 = dc1.weight.shape[1], dc2.weight.shape[1]
        n = keys.shape[1]
        up1 = torch.matmul(keys, self._blocked_weight(dc1), out=self._buffer("up1", (b, n, 4 * c1)))
        up1 = up1.view(b, -1, c1).add_(ctx.feat_s1)  # (B, 4hw, C1)
        up1 = self._layer_norm(ln1, up1, "up1_norm")
        torch.ops.aten.gelu_(up1, approximate=act1.approximate)
        up2 = torch.matmul(up1, self._blocked_weight(dc2), out=self._buffer("up2", (b, 4 * n, 4 * c2)))
        up2 = up2.view(b, -1, c2).add_(ctx.feat_s0)  # (B, 16hw, C2)
        torch.ops.aten.gelu_(up2, approximate=act2.approximate)
        hyper = torch.stack(
            [dec.output_hypernetworks_mlps[i](mask_tokens[:, i, :]) for i in index], dim=1
        )  # (B, M, C2)
        m = hyper.shape[1]
        blocked = torch.bmm(hyper, up2.transpose(1, 2), out=self._buffer("blocked", (b, m, 16 * n)))  # blocked order
        blocked = blocked.view(b, m, h, w, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
        out = torch.empty((b, m, 4 * h, 4 * w), dtype=torch.float32, device=blocked.device)
        out.view(b, m, h, 2, 2, w, 2, 2).copy_(blocked)
        return out

    @staticmethod
    def _blocked_weight(conv: Any) -> Any:
        """ConvTranspose2d(k=2, s=2) weight (Cin, Cout, 2, 2) as a (Cin, [a, b, Cout]) matrix."""
        weight = conv.weight
        return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
