"""Qwen3-VL (``qwen3_vl``): transformers' ``Qwen3VLForConditionalGeneration`` behind the VLM seam."""

from torch import nn

from lavis.common.registry import registry
from lavis.models.vlm.base import HFVisionLanguageModel


@registry.register_model("qwen3_vl")
class Qwen3VL(HFVisionLanguageModel):
    """Qwen3-VL: a native-resolution ViT with DeepStack features and a Qwen3 decoder (interleaved M-RoPE)."""

    HF_MODEL_CLASS = "transformers:Qwen3VLForConditionalGeneration"
    HF_CONFIG_CLASS = "transformers:Qwen3VLConfig"
    PROCESSING_KEYWORDS = ("min_pixels", "max_pixels")
    NO_EMBEDS_GENERATION = ("DeepStack adds image features inside the first decoder layers (deepstack_visual_embeds), "
                            "which generate does not take next to inputs_embeds")

    @property
    def projector(self) -> nn.Module:
        """The merger of the last layer's patches and DeepStack's mergers of intermediate layers'
        (both map vision features into the decoder; both sit inside ``model.visual``)."""
        visual = self.vision_tower
        return nn.ModuleList([visual.get_submodule("merger"), visual.get_submodule("deepstack_merger_list")])
