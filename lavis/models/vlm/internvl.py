"""InternVL (``internvl``): transformers' ``InternVLForConditionalGeneration`` behind the VLM seam."""

from lavis.common.registry import registry
from lavis.models.vlm.base import HFVisionLanguageModel


@registry.register_model("internvl")
class InternVL(HFVisionLanguageModel):
    """InternVL (2.5 / 3): an InternViT vision tower, pixel shuffle, an MLP projector and a Qwen2 decoder."""

    HF_MODEL_CLASS = "transformers:InternVLForConditionalGeneration"
    HF_CONFIG_CLASS = "transformers:InternVLConfig"
