"""SmolVLM2 (``smolvlm``): transformers' ``SmolVLMForConditionalGeneration`` behind the VLM seam."""

from lavis.common.registry import registry
from lavis.models.vlm.base import HFVisionLanguageModel


@registry.register_model("smolvlm")
class SmolVLM(HFVisionLanguageModel):
    """SmolVLM2: Idefics3's layout (a SigLIP vision tower, pixel shuffle, a Llama-style decoder)
    with its own processor, which also takes videos."""

    HF_MODEL_CLASS = "transformers:SmolVLMForConditionalGeneration"
    HF_CONFIG_CLASS = "transformers:SmolVLMConfig"
