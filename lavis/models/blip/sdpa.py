"""Fused attention for transformers' BLIP, which only has an eager implementation.

Each class here is a subclass of one of transformers' BLIP attention modules with the same
parameters and state-dict keys; only ``forward`` differs: scores, softmax, dropout and the
weighted sum run in one ``torch.nn.functional.scaled_dot_product_attention`` call (flash or
memory-efficient kernels on GPU, the fused CPU kernel on CPU) instead of materialising the
``[B, heads, L, S]`` probabilities. They are switched in and out of a built model by
:func:`lavis.models.runtime.set_attn_implementation`, never built directly.

The attention probabilities are not returned (``None`` in their place), as with transformers'
own SDPA backends.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache, EncoderDecoderCache
from transformers.models.blip.modeling_blip import BlipAttention
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

__all__ = ["SdpaBlipAttention", "SdpaBlipTextSelfAttention"]


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
        context = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], dropout_p=self.dropout.p if self.training else 0.0, scale=self.scale
        )
        return self.projection(context.transpose(1, 2).reshape(bsz, length, dim)), None


class SdpaBlipTextSelfAttention(BlipTextSelfAttention):
    """Self- and cross-attention of BLIP's BERT text model, with its key/value cache.

    The cache contract is the eager module's: self-attention appends this step's keys and values
    to the cache; cross-attention projects the image tokens once, at the first step, and reads
    them back from the cache after that.
    """

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
            key = self.key(source).view(bsz, -1, heads, head_dim).transpose(1, 2)
            value = self.value(source).view(bsz, -1, heads, head_dim).transpose(1, 2)
            if cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx, kwargs=kwargs)
                if cross and isinstance(cache, EncoderDecoderCache):
                    cache.is_updated[self.layer_idx] = True

        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=_mask_for(query.dtype, mask),
            dropout_p=self.dropout.p if self.training else 0.0,
        )
        return context.transpose(1, 2).reshape(bsz, length, self.all_head_size), None
