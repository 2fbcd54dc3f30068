"""Supervised fine-tuning (``sft``) of a vision-language model on conversations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from lavis.common.registry import registry
from lavis.common.schema import at_least_one
from lavis.models.base_model import ModelOutput
from lavis.tasks.post_training.common import PostTrainingTask


@dataclass
class SftRunConfig:
    """Run keys of ``sft`` (next to the common ones)."""

    max_new_tokens: int = 8  # longest generated answer in evaluation, in tokens


@registry.register_task("sft")
class SftTask(PostTrainingTask):
    """Cross entropy on the assistant tokens of multi-turn, multi-image conversations (right
    padding; user turns, image tokens and padding carry no loss). Evaluation: answer accuracy of
    greedy answers to held-out questions (``agg_metrics``)."""

    run_schema = SftRunConfig

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        return at_least_one(run, "max_new_tokens")

    def train_step(self, model: Any, samples: dict[str, Any]) -> ModelOutput:
        if "conversations" not in samples:
            raise KeyError(f"sft needs conversation records (a 'conversations' key); the batch has {sorted(samples)}. "
                           "Use a conversation data set such as shapes_vqa_chat")
        return model({"conversations": samples["conversations"], "images": samples.get("images")})
