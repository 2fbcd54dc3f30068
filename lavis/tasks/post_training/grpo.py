"""Group relative policy optimisation (``grpo``) of a vision-language model with registered rewards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, List, Mapping, Optional

import torch

from lavis.common.registry import registry
from lavis.common.schema import at_least_one
from lavis.models.base_model import ModelOutput
from lavis.tasks.post_training.common import (FrozenReference, PostTrainingRun, PostTrainingTask, completion_batch,
                                              repeat_rows, reward_functions, reward_problems,
                                              sampled_rewards, unwrap, weighted_rewards)


@dataclass
class GrpoRunConfig:
    """Run keys of ``grpo`` (next to the common ones)."""

    num_generations: int = 4  # completions sampled per prompt (the group)
    beta: float = 0.04  # weight of the KL penalty to the reference (0: no reference model)
    epsilon: float = 0.2  # clip range of the probability ratio, below 1
    epsilon_high: Optional[float] = None  # clip range above 1 (default: epsilon)
    temperature: float = 1.0  # sampling temperature of the completions
    max_new_tokens: int = 8  # longest completion, in tokens (also in evaluation)
    eval_samples: int = 1  # completions sampled per prompt in evaluation, whose mean reward is mean_reward
    rewards: List[str] = field(default_factory=lambda: ["answer_accuracy"])  # registered reward functions
    reward_weights: Optional[List[float]] = None  # one per reward (default: all 1)
    scale_rewards: bool = True  # divide advantages by the group's standard deviation
    # optimizer updates on each batch of sampled completions (sets the LR schedule's length, like batch sizes)
    num_iterations: int = field(default=1, metadata={"resume": "sensitive"})


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """Rewards [B * G] (each prompt's G completions consecutive) minus their group mean, divided by
    the group's (unbiased) standard deviation + 1e-4 when ``scale``."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size)
    adv = (grouped - grouped.mean(1, keepdim=True)).view(-1)
    if scale:
        std = grouped.std(1, unbiased=True) if group_size > 1 else torch.zeros(grouped.shape[0])
        adv = adv / (std.repeat_interleave(group_size) + 1e-4)
    return adv


def grpo_objective(
    logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor | None, advantages: torch.Tensor,
    mask: torch.Tensor, epsilon_low: float = 0.2, epsilon_high: float = 0.2, beta: float = 0.04,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped GRPO objective (as a loss to minimise), averaged over each completion's tokens
    and then over completions.

    Args:
        logps / old_logps / ref_logps: per-token log-probabilities of the completion tokens under the
            policy, the policy that sampled them and the reference, [B, T] (``ref_logps`` may be
            ``None`` when ``beta`` is 0).
        advantages: one per completion, [B].
        mask: True on completion tokens, [B, T].

    Per token: ``-min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A) + beta * KL`` with
    ``r = exp(logp - old_logp)`` and the k3 estimator ``KL = exp(ref - logp) - (ref - logp) - 1``.
    """
    mask = mask.to(logps.dtype)
    ratio = torch.exp(logps - old_logps)
    adv = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * adv, torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * adv)
    logs: dict[str, torch.Tensor] = {}
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta != 0 needs the reference log-probabilities")
        kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
        per_token = per_token + beta * kl
        logs["kl"] = ((kl * mask).sum() / mask.sum().clamp(min=1)).detach()
    loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    return loss, logs


@dataclass
class GroupRollout:
    """One batch's groups of sampled completions and what the updates on them need."""

    batch: dict[str, Any]  # prompts + completions, as the model scores them (completion_batch)
    mask: torch.Tensor  # True on completion tokens, [B * G, T]
    advantages: torch.Tensor  # one per completion, [B * G]
    ref_logps: torch.Tensor | None  # the reference's per-token log-probabilities (None when beta is 0)
    old_logps: torch.Tensor | None  # the sampling policy's (None: one update, at ratio 1)
    extras: dict[str, float]  # reward, reward_std, completion_length


@dataclass
class GrpoRun(GrpoRunConfig, PostTrainingRun):
    """The whole run section of a ``grpo`` config, for type annotations."""


@registry.register_task("grpo")
class GrpoTask(PostTrainingTask):
    """GRPO on prompts with reference solutions: sample ``run.num_generations`` completions per
    prompt, score them with the registered rewards of ``run.rewards`` (weighted sum), normalise
    the rewards within each group into advantages and minimise :func:`grpo_objective` with a KL
    penalty to the reference (frozen copy, or LoRA disabled). ``num_iterations`` policy updates
    per sampled batch: at the first the ratio is 1 in value and the clipping matters only for its
    gradient; from the second on the ratio to the sampling policy moves. Evaluation:
    ``mean_reward`` (``agg_metrics``) of ``run.eval_samples`` completions sampled per prompt, and
    ``answer_accuracy`` of greedy answers."""

    run_schema = GrpoRunConfig
    run_cfg: GrpoRun
    agg_metric = "mean_reward"

    def __init__(self, run_cfg: Any):
        super().__init__(run_cfg)
        self.reference: FrozenReference | None = None
        self.reward_fns, self.reward_weights = reward_functions(self.run_cfg.rewards, self.run_cfg.reward_weights)

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        get = run.get
        problems = []
        names = list(get("rewards", ["answer_accuracy"]) or [])
        if not names:
            problems.append("run.rewards: give at least one registered reward, e.g. [answer_accuracy]")
        problems += reward_problems(names, get("reward_weights", None))
        if isinstance(get("num_generations", 4), int) and get("num_generations", 4) < 2:
            problems.append(f"run.num_generations: must be at least 2 (a group), got {get('num_generations')}")
        problems += at_least_one(run, "eval_samples", "num_iterations")
        return problems

    def build_model(self, cfg: Any) -> Any:
        model = super().build_model(cfg)
        if float(self.run_cfg.beta) != 0.0:
            self.reference = FrozenReference(model)
        return model

    def rewards_of(self, completions: list[str], samples: Mapping[str, Any]) -> list[float] | None:
        """The weighted sum of the rewards of each completion (sample columns are passed to the
        reward functions as keyword arguments: ``solution``, ``question_type``, ...)."""
        return weighted_rewards(self.reward_fns, self.reward_weights, completions, samples)

    @torch.no_grad()
    def valid_step(self, model: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
        """Greedy answers for ``answer_accuracy``, and the mean reward of ``run.eval_samples``
        completions sampled per prompt at ``run.temperature`` for ``mean_reward`` (the expected
        reward GRPO raises)."""
        results = super().valid_step(model, samples)
        return sampled_rewards(self, model, samples, results, float(self.run_cfg.temperature),
                               int(self.run_cfg.eval_samples))

    def updates_per_batch(self) -> int:
        return int(self.run_cfg.num_iterations)

    def train_updates(self, model: Any, samples: dict[str, Any]) -> Iterator[ModelOutput]:
        """``num_iterations`` updates on one rollout of ``samples``, with ratios against the
        policy that sampled it."""
        rollout = self.rollout(model, samples, with_old_logps=int(self.run_cfg.num_iterations) > 1)
        for _ in range(int(self.run_cfg.num_iterations)):
            yield self.update(model, rollout)

    def train_step(self, model: Any, samples: dict[str, Any]) -> ModelOutput:
        """One rollout of ``samples`` and one update on it (the ratio is 1 in value there)."""
        return self.update(model, self.rollout(model, samples))

    @torch.no_grad()
    def rollout(self, model: Any, samples: dict[str, Any], with_old_logps: bool = False) -> GroupRollout:
        """``num_generations`` completions per prompt, their rewards and group advantages, the
        reference's log-probabilities and, ``with_old_logps``, the sampling policy's."""
        for key in ("prompt", "solution"):
            if key not in samples:
                raise KeyError(f"grpo needs prompts with solutions ('prompt', 'solution'); the batch has {sorted(samples)}. "
                               "Use a prompt data set such as shapes_vqa_grpo")
        seam, g = unwrap(model), int(self.run_cfg.num_generations)
        if self.reference is None and float(self.run_cfg.beta) != 0.0:
            self.reference = FrozenReference(seam)
        n = len(samples["prompt"])
        rep = repeat_rows(samples, g)
        prompt, completion, cmask = seam.generate_ids(
            {"conversations": rep["prompt"], "images": rep.get("images", [[] for _ in range(n * g)])},
            do_sample=True, temperature=float(self.run_cfg.temperature), max_new_tokens=int(self.run_cfg.max_new_tokens))
        texts = [t.strip() for t in seam.tokenizer.batch_decode(completion, skip_special_tokens=True)]
        rewards = torch.tensor(self.rewards_of(texts, rep), dtype=torch.float32)
        advantages = group_advantages(rewards, g, bool(self.run_cfg.scale_rewards)).to(seam.device)
        batch = {**completion_batch(prompt, completion, cmask), "output_token_logps": True}
        t = completion.shape[1]
        ref_logps = self.reference(model, batch).extras["token_logps"][:, -t:] if self.reference is not None else None
        old_logps = seam(batch).extras["token_logps"][:, -t:] if with_old_logps else None
        extras = {"reward": rewards.mean().item(), "reward_std": rewards.std().item() if rewards.numel() > 1 else 0.0,
                  "completion_length": cmask.sum(1).float().mean().item()}
        return GroupRollout(batch, cmask, advantages, ref_logps, old_logps, extras)

    def update(self, model: Any, r: GroupRollout) -> ModelOutput:
        """:func:`grpo_objective` of the policy on the rollout (against its own detached
        log-probabilities when the rollout has none of the sampling policy)."""
        t = r.mask.shape[1]
        logps = model(r.batch).extras["token_logps"][:, -t:]
        old_logps = r.old_logps if r.old_logps is not None else logps.detach()
        eps = float(self.run_cfg.epsilon)
        eps_high = float(self.run_cfg.epsilon_high) if self.run_cfg.epsilon_high is not None else eps
        loss, logs = grpo_objective(logps, old_logps, r.ref_logps, r.advantages, r.mask, eps, eps_high,
                                    float(self.run_cfg.beta))
        return ModelOutput(loss=loss, extras={**{k: v.item() for k, v in logs.items()}, **r.extras})
