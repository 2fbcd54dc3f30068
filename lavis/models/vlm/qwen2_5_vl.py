"""Qwen2.5-VL (``qwen2_5_vl``): transformers' ``Qwen2_5_VLForConditionalGeneration`` behind the VLM seam."""

from lavis.common.registry import registry
from lavis.models.vlm.base import HFVisionLanguageModel


@registry.register_model("qwen2_5_vl")
class Qwen2_5_VL(HFVisionLanguageModel):
    """Qwen2.5-VL: a windowed-attention ViT (patches merged 2x2 by ``visual.merger``) and a Qwen2.5 decoder."""

    HF_MODEL_CLASS = "transformers:Qwen2_5_VLForConditionalGeneration"
    HF_CONFIG_CLASS = "transformers:Qwen2_5_VLConfig"
    PROCESSING_KEYWORDS = ("min_pixels", "max_pixels")
