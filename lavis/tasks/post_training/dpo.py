"""Direct preference optimisation (``dpo``) of a vision-language model on preference pairs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from lavis.common.registry import registry
from lavis.models.base_model import ModelOutput
from lavis.tasks.post_training.common import FrozenReference, PostTrainingRun, PostTrainingTask, unwrap, with_reply

DPO_LOSSES = ("sigmoid", "ipo", "hinge")


@dataclass
class DpoRunConfig:
    """Run keys of ``dpo`` (next to the common ones)."""

    beta: float = 0.1  # strength of the pull towards the reference (IPO: its regularisation tau)
    loss_type: str = "sigmoid"  # sigmoid (DPO), ipo or hinge
    sft_weight: float = 0.0  # adds this times the chosen replies' cross entropy (TRL's "sft" loss term)
    max_new_tokens: int = 8  # longest generated answer in evaluation, in tokens


def dpo_loss(
    chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor, beta: float, loss_type: str = "sigmoid",
    chosen_tokens: torch.Tensor | None = None, rejected_tokens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The DPO loss of a batch of pairs and what to log.

    Args:
        chosen_logps / rejected_logps: summed log-probabilities of each reply under the policy, [B].
        ref_chosen_logps / ref_rejected_logps: the same under the reference, [B].
        beta: the temperature of the implicit reward ``beta * (logp - ref_logp)``.
        loss_type: ``sigmoid`` (-log sigma(beta * margin), Rafailov et al.), ``hinge``
            (relu(1 - beta * margin)) or ``ipo`` ((margin / tokens - 1 / (2 beta))^2 with each
            log-ratio averaged over its reply tokens, as TRL does).
        chosen_tokens / rejected_tokens: reply lengths in tokens [B], needed by ``ipo``.

    Returns:
        ``(loss, logs)``: the mean loss and ``rewards/chosen``, ``rewards/rejected``,
        ``rewards/margins``, ``rewards/accuracies`` (batch means, detached).
    """
    chosen_ratio = chosen_logps - ref_chosen_logps
    rejected_ratio = rejected_logps - ref_rejected_logps
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * (chosen_ratio - rejected_ratio))
    elif loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the ipo loss needs chosen_tokens and rejected_tokens (reply lengths)")
        delta = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
        losses = (delta - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"loss_type {loss_type!r} is not one of {', '.join(DPO_LOSSES)}")
    chosen_rewards, rejected_rewards = beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
    logs = {
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
    }
    return losses.mean(), logs


@dataclass
class DpoRun(DpoRunConfig, PostTrainingRun):
    """The whole run section of a ``dpo`` config, for type annotations."""


@registry.register_task("dpo")
class DpoTask(PostTrainingTask):
    """DPO on ``{"prompt", "chosen", "rejected"}`` pairs (with images). The reference is a frozen
    copy of the model as built (e.g. from an SFT checkpoint), or the same weights with the LoRA
    adapters disabled when the model has LoRA. Logs rewards, margins and preference accuracy in the
    step's ``extras``; evaluation reports ``preference_accuracy`` (``agg_metrics``) and
    ``answer_accuracy``."""

    run_schema = DpoRunConfig
    run_cfg: DpoRun
    agg_metric = "preference_accuracy"

    def __init__(self, run_cfg: Any):
        super().__init__(run_cfg)
        self.reference: FrozenReference | None = None

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        get = run.get
        problems = []
        if get("loss_type", "sigmoid") not in DPO_LOSSES:
            problems.append(f"run.loss_type: {get('loss_type')!r} is not one of {', '.join(DPO_LOSSES)}")
        beta = get("beta", 0.1)
        if isinstance(beta, (int, float)) and beta <= 0:
            problems.append(f"run.beta: must be above 0, got {beta}")
        return problems

    def build_model(self, cfg: Any) -> Any:
        model = super().build_model(cfg)
        self.reference = FrozenReference(model)
        return model

    def train_step(self, model: Any, samples: dict[str, Any]) -> ModelOutput:
        if self.reference is None:  # a model given without build_model
            self.reference = FrozenReference(unwrap(model))
        for key in ("prompt", "chosen", "rejected"):
            if key not in samples:
                raise KeyError(f"dpo needs preference pairs ('prompt', 'chosen', 'rejected'); the batch has "
                               f"{sorted(samples)}. Use a preference data set such as shapes_vqa_preference")
        n = len(samples["prompt"])
        images = samples.get("images") or [[] for _ in range(n)]
        convs = [with_reply(p, c) for p, c in zip(samples["prompt"], samples["chosen"])]
        convs += [with_reply(p, r) for p, r in zip(samples["prompt"], samples["rejected"])]
        # tokenised once: the policy and the reference read the same batch
        batch = {**unwrap(model).process_batch_conv(convs, list(images) + list(images)), "output_token_logps": True}
        out = model(batch)
        ref = self.reference(model, batch)
        logps = out.extras["token_logps"].sum(-1)
        ref_logps = ref.extras["token_logps"].sum(-1)
        tokens = out.extras["loss_mask"].sum(-1)
        loss, logs = dpo_loss(logps[:n], logps[n:], ref_logps[:n], ref_logps[n:], float(self.run_cfg.beta),
                              str(self.run_cfg.loss_type), tokens[:n], tokens[n:])
        logs["logps/chosen"], logs["logps/rejected"] = logps[:n].detach().mean(), logps[n:].detach().mean()
        sft_weight = float(self.run_cfg.sft_weight)
        if sft_weight:  # keeps the chosen replies likely, their end-of-turn token included
            nll = -out.extras["token_logps"][:n].sum() / tokens[:n].sum().clamp(min=1)
            loss = loss + sft_weight * nll
            logs["sft_loss"] = nll.detach()
        return ModelOutput(loss=loss, extras={k: v.item() for k, v in logs.items()})
