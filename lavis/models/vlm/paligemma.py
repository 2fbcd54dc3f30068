"""PaliGemma (``paligemma``): transformers' ``PaliGemmaForConditionalGeneration`` behind the VLM seam.

Two overrides: PaliGemma's processor takes no text without images, so text-only segments of a
conversation are tokenised by the tokenizer alone; and its decoder attends bidirectionally over
tokens whose ``token_type_ids`` are 0 (the prompt), so training batches mark every token from the
first reply token on with 1 (causal), as the processor's ``suffix`` does.
"""

from typing import Any, Sequence, Mapping

import torch

from lavis.common.registry import registry
from lavis.models.vlm.base import HFVisionLanguageModel


@registry.register_model("paligemma")
class PaliGemma(HFVisionLanguageModel):
    """PaliGemma: a SigLIP vision tower and a Gemma decoder with a bidirectional prompt prefix."""

    HF_MODEL_CLASS = "transformers:PaliGemmaForConditionalGeneration"
    HF_CONFIG_CLASS = "transformers:PaliGemmaConfig"
    NO_EMBEDS_GENERATION = "transformers' PaliGemmaForConditionalGeneration.generate does not take inputs_embeds"

    def _process(self, text: str, images: list[Any]) -> dict[str, torch.Tensor]:
        if images:
            return super()._process(text, images)
        return dict(self.tokenizer([text], return_tensors="pt", add_special_tokens=False, return_token_type_ids=True))

    def process_batch_conv(
        self, conversations: Sequence[Sequence[Mapping[str, Any]]], images: Sequence[Sequence[Any]] | None = None,
        phase: str = "train",
    ) -> dict[str, torch.Tensor]:
        """As the base class; in ``"train"`` batches ``token_type_ids`` is 1 from the first reply
        token on (the prompt before it stays a bidirectional prefix)."""
        batch = super().process_batch_conv(conversations, images, phase)
        if phase == "train":
            batch["token_type_ids"] = ((batch["labels"] != -100).cumsum(1) > 0).long()
        return batch
