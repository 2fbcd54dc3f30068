"""Generation from ``inputs_embeds``: the multimodal input embeddings of a batch, built by the
transformers model itself, and the inputs of ``generate`` that start from them.

:func:`multimodal_inputs_embeds` runs the family's own embedding and merge step (text embeddings
with the projected image features in place of the image tokens: ``get_input_embeddings``,
``get_image_features`` and the placeholder scatter of the transformers base model) and stops where
the decoder would begin, so every family gets exactly the embeddings its decoder sees.
:func:`generate_inputs` gives ``generate`` those embeddings instead of the pixels; ``input_ids``
go along for the tokens ``generate`` returns and for the M-RoPE position ids of Qwen2-VL and
Qwen2.5-VL, which transformers derives from the ids and ``image_grid_thw``. A family whose
``generate`` cannot start from embeddings says why in ``NO_EMBEDS_GENERATION``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch

if TYPE_CHECKING:
    from lavis.models.vlm.base import HFVisionLanguageModel


class _DecoderReached(Exception):
    """Raised by the hook on the decoder: the embeddings are known, the rest is not needed."""


def multimodal_inputs_embeds(model: "HFVisionLanguageModel", batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """[B, L, D] embeddings of a tokenised batch (``input_ids``, ``attention_mask`` and the
    multimodal keys, as :meth:`~HFVisionLanguageModel.batch_inputs` makes them): the text
    embeddings with the image features in place of the image tokens, as the decoder receives them."""
    seen: dict[str, Any] = {}

    def grab(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        seen.update(kwargs)
        raise _DecoderReached

    inputs = {k: v for k, v in batch.items() if k not in model.non_generate_params}
    handle = model.language_model.register_forward_pre_hook(grab, with_kwargs=True)
    base: torch.nn.Module = getattr(model.inner, "base_model")  # the *Model under the LM head
    try:
        base(**inputs, use_cache=False)
    except _DecoderReached:
        pass
    finally:
        handle.remove()
    if not isinstance(seen.get("inputs_embeds"), torch.Tensor):
        raise RuntimeError(f"{type(model).__name__}: the transformers model did not hand inputs_embeds to its decoder "
                           f"by keyword (got {sorted(seen)}); set NO_EMBEDS_GENERATION on the class")
    return seen["inputs_embeds"]


def generate_inputs(
    model: "HFVisionLanguageModel", inputs: Mapping[str, torch.Tensor], embeds: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The keyword arguments of transformers' ``generate`` that start from ``embeds`` [B, L, D]
    (by default the multimodal embeddings of ``inputs``); the pixel inputs are left out, their
    features are in the embeddings. Raises ``ValueError`` for a family that cannot
    (``NO_EMBEDS_GENERATION``) and for embeddings of another shape than the batch's."""
    if not model.is_embeds_input:
        raise ValueError(f"{type(model).__name__} cannot generate from inputs_embeds: {model.NO_EMBEDS_GENERATION}. "
                         "Generate from input ids (leave out from_embeds and inputs_embeds).")
    ids = inputs["input_ids"]
    if embeds is None:
        embeds = multimodal_inputs_embeds(model, inputs)
    elif embeds.dim() != 3 or tuple(embeds.shape[:2]) != tuple(ids.shape):
        raise ValueError(f"inputs_embeds has shape {tuple(embeds.shape)}; the batch's prompts need [B, L, D] with "
                         f"[B, L] = {list(ids.shape)} (build them with model.inputs_embeds(samples))")
    embeds = embeds.to(ids.device)
    kept = {k: v for k, v in inputs.items() if not k.startswith("pixel_") and k not in model.non_generate_params}
    return {**kept, "inputs_embeds": embeds}
