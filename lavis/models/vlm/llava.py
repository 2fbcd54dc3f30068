"""LLaVA-1.5 (``llava``): transformers' ``LlavaForConditionalGeneration`` behind the VLM seam."""

from lavis.common.registry import registry
from lavis.models.vlm.base import HFVisionLanguageModel


@registry.register_model("llava")
class Llava(HFVisionLanguageModel):
    """LLaVA-1.5: a CLIP vision tower, an MLP projector and a Llama/Vicuna decoder."""

    HF_MODEL_CLASS = "transformers:LlavaForConditionalGeneration"
    HF_CONFIG_CLASS = "transformers:LlavaConfig"
