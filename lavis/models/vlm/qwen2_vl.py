"""Qwen2-VL (``qwen2_vl``): transformers' ``Qwen2VLForConditionalGeneration`` behind the VLM seam."""

from lavis.common.registry import registry
from lavis.models.vlm.base import HFVisionLanguageModel


@registry.register_model("qwen2_vl")
class Qwen2VL(HFVisionLanguageModel):
    """Qwen2-VL: a native-resolution ViT (patches merged 2x2 by ``visual.merger``) and a Qwen2 decoder."""

    HF_MODEL_CLASS = "transformers:Qwen2VLForConditionalGeneration"
    HF_CONFIG_CLASS = "transformers:Qwen2VLConfig"
    PROCESSING_KEYWORDS = ("min_pixels", "max_pixels")
