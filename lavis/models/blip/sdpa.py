"""Fused attention for transformers' BLIP, which only has an eager implementation.

Each class here is a subclass of one of transformers' BLIP attention modules with the same
parameters and state-dict keys; only ``forward`` differs: scores, softmax, dropout and the
weighted sum run in one ``torch.nn.functional.scaled_dot_product_attention`` call (flash or
memory-efficient kernels on GPU, the fused CPU kernel on CPU) instead of materialising the
``[B, heads, L, S]`` probabilities. They are switched in and out of a built model by
:func:`lavis.models.runtime.set_attn_implementation`, never built directly.

The attention probabilities are not returned (``None`` in their place), as with transformers'
own SDPA backends.

On a CPU in bf16 (or fp16), :func:`attend` runs three matrix products and a softmax instead of
SDPA: PyTorch's fused CPU kernel repacks the keys and values at each call and is slower there than
the plain products (``benchmarks/README.md``, "Attention on CPU"). In fp32 and on GPUs it is SDPA.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache, EncoderDecoderCache
from transformers.models.blip.modeling_blip import BlipAttention
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

__all__ = [
    "SdpaBlipAttention",
    "SdpaBlipTextSelfAttention",
    "SharedCrossAttentionCache",
    "attend",
    "shared_cross_attention_cache",
]


def _matmul_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, dropout_p: float,
    scale: float,
) -> torch.Tensor:
    """softmax(scale * query @ key^T + mask) @ value, with dropout on the probabilities."""
    scores = torch.matmul(query, key.transpose(-1, -2)).mul_(scale)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if mask.dtype == torch.bool else scores + mask
    probs = F.dropout(scores.softmax(dim=-1), p=dropout_p, training=dropout_p > 0)
    return torch.matmul(probs, value)


def attend(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None,
    dropout_p: float = 0.0, scale: float | None = None,
) -> torch.Tensor:
    """Attention of ``query`` [B, heads, L, d] over ``key``/``value`` [B, heads, S, d] -> [B, heads, L, d].

    ``mask``: additive (in any float dtype) or bool (True = attend), broadcastable to [B, heads, L, S];
    ``scale`` defaults to ``d ** -0.5``. SDPA, except in reduced precision on a CPU (module docstring).
    """
    mask = _mask_for(query.dtype, mask)
    if query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16):
        scale = query.shape[-1] ** -0.5 if scale is None else scale
        return _matmul_attention(query, key, value, mask, dropout_p, scale)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout_p, scale=scale)


def _mask_for(scores_dtype: torch.dtype, mask: torch.Tensor | None) -> torch.Tensor | None:
    """An additive float mask in the query's dtype (SDPA wants bool or the query dtype); bool as is."""
    if mask is None or mask.dtype == torch.bool:
        return mask
    return mask.to(scores_dtype)


class SdpaBlipAttention(BlipAttention):
    """The ViT self-attention of ``BlipVisionModel`` (no mask, fused ``qkv`` projection)."""

    def forward(self, hidden_states: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        """``hidden_states`` [B, L, D] -> ([B, L, D], None)."""
        bsz, length, dim = hidden_states.shape
        # [B, L, 3 * D] -> three [B, heads, L, head_dim]
        qkv = self.qkv(hidden_states).view(bsz, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        context = attend(qkv[0], qkv[1], qkv[2], dropout_p=self.dropout.p if self.training else 0.0, scale=self.scale)
        return self.projection(context.transpose(1, 2).reshape(bsz, length, dim)), None


class SdpaBlipTextSelfAttention(BlipTextSelfAttention):
    """Self- and cross-attention of BLIP's BERT text model, with its key/value cache.

    The cache contract is the eager module's: self-attention appends this step's keys and values
    to the cache; cross-attention projects the image tokens once, at the first step, and reads
    them back from the cache after that.
    """

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, heads, S, head_dim] of ``source`` [B, S, D]."""
        rows, heads, head_dim = source.shape[0], self.num_attention_heads, self.attention_head_size
        key = self.key(source).view(rows, -1, heads, head_dim).transpose(1, 2)
        return key, self.value(source).view(rows, -1, heads, head_dim).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        """``hidden_states`` [B, L, D] (queries); keys from ``encoder_hidden_states`` [B, S, De] in
        cross-attention, else from ``hidden_states``; ``attention_mask`` additive [B, 1, L, S] (or
        bool, True = attend). Returns ([B, L, D], None)."""
        if "past_key_values" in kwargs:  # the name transformers deprecates in favour of ``cache``
            cache = kwargs.pop("past_key_values")
        bsz, length = hidden_states.shape[:2]
        heads, head_dim = self.num_attention_heads, self.attention_head_size
        query = self.query(hidden_states).view(bsz, length, heads, head_dim).transpose(1, 2)
        cross = encoder_hidden_states is not None
        # as in the eager module: cross-attention is masked by ``encoder_attention_mask`` alone
        mask = encoder_attention_mask if cross else attention_mask

        layer_cache: Any = cache
        reuse = False
        if isinstance(cache, EncoderDecoderCache):
            reuse = cross and bool(cache.is_updated.get(self.layer_idx))
            layer_cache = cache.cross_attention_cache if cross else cache.self_attention_cache
        if reuse:
            key, value = layer_cache.layers[self.layer_idx].keys, layer_cache.layers[self.layer_idx].values
        else:
            source = encoder_hidden_states if cross else hidden_states
            assert source is not None
            key, value = self.keys_values(source)
            if cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx, kwargs=kwargs)
                if cross and isinstance(cache, EncoderDecoderCache):
                    cache.is_updated[self.layer_idx] = True

        dropout_p = self.dropout.p if self.training else 0.0
        inputs = key.shape[0]
        if inputs == bsz:
            context = attend(query, key, value, mask, dropout_p=dropout_p)
        else:  # keys per input (SharedCrossAttentionCache): the rows (beams) of an input attend as one query
            group = bsz // inputs
            query = query.reshape(inputs, group, heads, length, head_dim).transpose(1, 2)
            if mask is not None:
                mask = mask[::group]  # [B * group, 1, 1, S] -> [B, 1, 1, S]: the rows of an input share it
            context = attend(query.reshape(inputs, heads, group * length, head_dim), key, value, mask,
                             dropout_p=dropout_p)
            context = context.view(inputs, heads, group, length, head_dim).transpose(1, 2)
            context = context.reshape(bsz, heads, length, head_dim)
        return context.transpose(1, 2).reshape(bsz, length, self.all_head_size), None


class SharedCrossAttentionCache(EncoderDecoderCache):
    """A decoder cache whose cross-attention keys and values are held once per input (image, or
    question for VQA), not once per decoder row.

    Beam search and sampling run ``n`` consecutive decoder rows per input (the layout of
    ``generate``'s ``repeat_interleave``), whose cross-attention keys and values are the same. Held
    once, they are projected once per input, not per row, and never copied when beam search
    reorders its rows (it only permutes the rows of one input). Made by
    :func:`shared_cross_attention_cache`; read by :class:`SdpaBlipTextSelfAttention`, which attends
    the ``n`` rows of an input together.
    """

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.self_attention_cache.reorder_cache(beam_idx)


def shared_cross_attention_cache(
    decoder: torch.nn.Module, encoder_states: torch.Tensor
) -> SharedCrossAttentionCache | None:
    """A :class:`SharedCrossAttentionCache` for ``decoder.generate`` (a transformers BLIP text
    decoder), filled with every layer's cross-attention keys and values of ``encoder_states``
    [B, S, D] (one row per input, before ``generate`` expands them to beams); ``None`` when a
    cross-attention module of ``decoder`` is not :class:`SdpaBlipTextSelfAttention` (eager
    attention needs the usual cache)."""
    from transformers.cache_utils import DynamicCache

    cross = [m for name, m in decoder.named_modules() if ".crossattention." in f".{name}." and
             isinstance(m, BlipTextSelfAttention)]
    if not cross or not all(isinstance(m, SdpaBlipTextSelfAttention) for m in cross):
        return None
    cache = SharedCrossAttentionCache(DynamicCache(), DynamicCache())
    for module in cross:
        assert isinstance(module, SdpaBlipTextSelfAttention)
        cache.cross_attention_cache.update(*module.keys_values(encoder_states), module.layer_idx)
        cache.is_updated[module.layer_idx] = True
    return cache
