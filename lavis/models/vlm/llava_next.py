"""LLaVA-NeXT (``llava_next``): transformers' ``LlavaNextForConditionalGeneration`` behind the VLM seam."""

from lavis.common.registry import registry
from lavis.models.vlm.base import HFVisionLanguageModel


@registry.register_model("llava_next")
class LlavaNext(HFVisionLanguageModel):
    """LLaVA-NeXT (LLaVA-1.6): LLaVA-1.5 with "anyres" tiling of high-resolution images."""

    HF_MODEL_CLASS = "transformers:LlavaNextForConditionalGeneration"
    HF_CONFIG_CLASS = "transformers:LlavaNextConfig"
