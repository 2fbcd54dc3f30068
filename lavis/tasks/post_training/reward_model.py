"""Reward modelling (``reward_model``): a pairwise Bradley-Terry model on preference pairs, a
scalar head on a vision-language model (``model.value_head``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F

from lavis.common.registry import registry
from lavis.models.base_model import ModelOutput
from lavis.tasks.post_training.common import PostTrainingRun, PostTrainingTask, unwrap, with_reply


@dataclass
class RewardModelRunConfig:
    """Run keys of ``reward_model`` (next to the common ones)."""

    center_rewards_coefficient: Optional[float] = None  # adds this times mean((r_chosen + r_rejected)^2)


def reward_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
    center_rewards_coefficient: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The Bradley-Terry loss ``-log sigma(r_chosen - r_rejected - margin)``, averaged over pairs.

    Args:
        chosen / rejected: the scalar rewards of each pair's replies, [B].
        margin: how much higher the chosen reward should be, [B] (``None``: 0).
        center_rewards_coefficient: weight of ``mean((r_chosen + r_rejected)^2)``, which keeps the
            rewards centred on 0 (Eisenstein et al., 2023); ``None``: off.

    Returns:
        ``(loss, logs)``: logs hold ``accuracy`` (share of pairs with ``r_chosen > r_rejected``),
        ``margin`` (mean ``r_chosen - r_rejected``), ``rewards/chosen`` and ``rewards/rejected``
        (means), detached.
    """
    diff = chosen - rejected
    loss = -F.logsigmoid(diff if margin is None else diff - margin).mean()
    if center_rewards_coefficient is not None:
        loss = loss + center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
    logs = {"accuracy": (diff > 0).float().mean().detach(), "margin": diff.mean().detach(),
            "rewards/chosen": chosen.mean().detach(), "rewards/rejected": rejected.mean().detach()}
    return loss, logs


def reply_scores(model: torch.nn.Module, conversations: list, images: list) -> torch.Tensor:
    """The value head at the last token of each conversation's final reply (its end-of-turn
    token, which has seen the whole reply): one reward per conversation, [B]."""
    out = model({"conversations": conversations, "images": images, "output_values": True})
    mask = out.extras["loss_mask"]  # [B, L-1], True where the next token is a reply token
    if not mask.any(1).all():
        raise ValueError("a conversation has no reply tokens to score; give each one an assistant reply")
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = torch.where(mask, positions, -1).max(1).values + 1  # index of the last reply token
    return out.extras["values"].gather(1, last.unsqueeze(1)).squeeze(1)


@dataclass
class RewardModelRun(RewardModelRunConfig, PostTrainingRun):
    """The whole run section of a ``reward_model`` config, for type annotations."""


@registry.register_task("reward_model")
class RewardModelTask(PostTrainingTask):
    """Train a reward model on ``{"prompt", "chosen", "rejected"}`` pairs (with images, and an
    optional ``margin`` column): the model's value head scores the last token of each reply and
    :func:`reward_loss` pushes the chosen score above the rejected one. Each step's ``extras`` hold
    ``accuracy``, ``margin``, ``rewards/chosen`` and ``rewards/rejected``; evaluation reports
    ``preference_accuracy`` (``agg_metrics``) and ``mean_margin`` on held-out pairs. The model
    needs ``model.value_head: true``."""

    run_schema = RewardModelRunConfig
    run_cfg: RewardModelRun
    agg_metric = "preference_accuracy"

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        c = run.get("center_rewards_coefficient", None)
        return [f"run.center_rewards_coefficient: must be 0 or more, got {c}"] if isinstance(c, (int, float)) and c < 0 else []

    def build_model(self, cfg: Any) -> Any:
        model = super().build_model(cfg)
        if model.value_head is None:
            from lavis.common.errors import ConfigError

            raise ConfigError(["model.value_head: the reward_model task scores replies with a value head; "
                               "set model.value_head: true"])
        return model

    @staticmethod
    def _pairs(samples: Mapping[str, Any]) -> tuple[list, list, int]:
        for key in ("prompt", "chosen", "rejected"):
            if key not in samples:
                raise KeyError(f"reward_model needs preference pairs ('prompt', 'chosen', 'rejected'); the batch has "
                               f"{sorted(samples)}. Use a preference data set such as shapes_vqa_preference")
        n = len(samples["prompt"])
        images = list(samples.get("images") or [[] for _ in range(n)])
        convs = [with_reply(p, c) for p, c in zip(samples["prompt"], samples["chosen"])]
        convs += [with_reply(p, r) for p, r in zip(samples["prompt"], samples["rejected"])]
        return convs, images + images, n

    def train_step(self, model: Any, samples: dict[str, Any]) -> ModelOutput:
        convs, images, n = self._pairs(samples)
        scores = reply_scores(model, convs, images)
        margin = samples.get("margin")
        margin_t = None if margin is None else torch.as_tensor(margin, dtype=scores.dtype, device=scores.device)
        coef = self.run_cfg.center_rewards_coefficient
        loss, logs = reward_loss(scores[:n], scores[n:], margin_t, None if coef is None else float(coef))
        return ModelOutput(loss=loss, extras={k: v.item() for k, v in logs.items()})

    @torch.no_grad()
    def valid_step(self, model: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
        """Whether each held-out pair's chosen reply scores higher, and by how much."""
        convs, images, n = self._pairs(samples)
        scores = reply_scores(unwrap(model), convs, images)
        return [{"id": samples["id"][i], "prefers_chosen": bool(scores[i] > scores[n + i]),
                 "reward_margin": float(scores[i] - scores[n + i])} for i in range(n)]
