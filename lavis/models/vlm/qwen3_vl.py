"""Qwen3-VL (``qwen3_vl``): transformers' ``Qwen3VLForConditionalGeneration`` behind the VLM seam."""

from lavis.common.registry import registry
from lavis.models.vlm.base import HFVisionLanguageModel


@registry.register_model("qwen3_vl")
class Qwen3VL(HFVisionLanguageModel):
    """Qwen3-VL: a native-resolution ViT with DeepStack features and a Qwen3 decoder (interleaved M-RoPE)."""

    HF_MODEL_CLASS = "transformers:Qwen3VLForConditionalGeneration"
    HF_CONFIG_CLASS = "transformers:Qwen3VLConfig"
    PROCESSING_KEYWORDS = ("min_pixels", "max_pixels")
