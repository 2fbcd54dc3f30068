"""LLaVA-OneVision (``llava_onevision``): transformers' ``LlavaOnevisionForConditionalGeneration`` behind the VLM seam."""

from lavis.common.registry import registry
from lavis.models.vlm.base import HFVisionLanguageModel


@registry.register_model("llava_onevision")
class LlavaOnevision(HFVisionLanguageModel):
    """LLaVA-OneVision: a SigLIP vision tower, anyres tiling and a Qwen2 decoder, for images and videos."""

    HF_MODEL_CLASS = "transformers:LlavaOnevisionForConditionalGeneration"
    HF_CONFIG_CLASS = "transformers:LlavaOnevisionConfig"
