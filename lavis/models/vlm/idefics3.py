"""Idefics3 / SmolVLM (``idefics3``): transformers' ``Idefics3ForConditionalGeneration`` behind the VLM seam."""

from lavis.common.registry import registry
from lavis.models.vlm.base import HFVisionLanguageModel


@registry.register_model("idefics3")
class Idefics3(HFVisionLanguageModel):
    """Idefics3 and SmolVLM: a SigLIP vision tower, pixel shuffle and a Llama-style decoder."""

    HF_MODEL_CLASS = "transformers:Idefics3ForConditionalGeneration"
    HF_CONFIG_CLASS = "transformers:Idefics3Config"
