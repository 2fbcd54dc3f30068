"""Proximal policy optimisation (``ppo``) of a vision-language model: a policy with a value head,
rewards from a reward model and/or registered reward functions, a KL penalty to the reference,
GAE, and clipped policy and value objectives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional

import torch

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.common.schema import at_least_one
from lavis.models.base_model import ModelOutput
from lavis.tasks.post_training.common import (FrozenReference, PostTrainingRun, PostTrainingTask, completion_batch,
                                              reward_functions, reward_problems, sampled_rewards,
                                              unwrap, weighted_rewards, with_reply)


@dataclass
class PpoRunConfig:
    """Run keys of ``ppo`` (next to the common ones)."""

    rewards: List[str] = field(default_factory=lambda: ["answer_accuracy"])  # registered reward functions
    reward_weights: Optional[List[float]] = None  # one per reward (default: all 1)
    reward_model: Optional[Dict[str, Any]] = None  # a model block of a trained reward model (value_head: true)
    beta: float = 0.05  # weight of the per-token KL penalty to the reference in the rewards
    gamma: float = 1.0  # discount
    lam: float = 0.95  # GAE lambda
    cliprange: float = 0.2  # clip range of the policy ratio
    cliprange_value: float = 0.2  # clip range of the value prediction around the rollout's values
    vf_coef: float = 0.1  # weight of the value loss
    whiten_advantages: bool = True  # normalise advantages over the batch's completion tokens
    # passes of optimizer updates over each rollout, and updates per pass (each on a random share of its
    # prompts). Two and two: on the shapes demo (docs/post_training.md) four steps per rollout raised the
    # held-out mean reward by 0.04, one step by 0.011 (about the noise). They set the number of optimizer steps
    # and so the LR schedule: changing them on resume changes the run
    ppo_epochs: int = field(default=2, metadata={"resume": "sensitive"})
    num_mini_batches: int = field(default=2, metadata={"resume": "sensitive"})
    temperature: float = 1.0  # sampling temperature of the rollouts
    max_new_tokens: int = 8  # longest completion, in tokens (also in evaluation)
    eval_samples: int = 1  # completions sampled per prompt in evaluation, whose mean reward is mean_reward


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` minus its mean over ``mask``, divided by its standard deviation there (+1e-8)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over completion tokens.

    Args:
        rewards / values: per completion token, [B, T]; ``values[:, t]`` is the value of the state
            before token ``t`` is generated.
        mask: True on completion tokens (a prefix of each row), [B, T]; the value after a
            completion's last token is 0.

    Returns:
        ``(advantages, returns)``, [B, T], 0 off the mask: ``A_t = delta_t + gamma * lam * A_{t+1}``
        with ``delta_t = r_t + gamma * V_{t+1} - V_t``, and ``returns = A + V``.
    """
    m = mask.to(values.dtype)
    values, rewards = values * m, rewards * m
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * m[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * m


def ppo_objective(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, values: torch.Tensor,
    old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange: float = 0.2,
    cliprange_value: float = 0.2, vf_coef: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped PPO objective (a loss to minimise), averaged over completion tokens.

    All arguments are [B, T] per completion token: log-probabilities under the policy and under the
    policy that sampled the rollout, advantages, value predictions, the rollout's values, returns,
    and the completion mask.

    ``policy = max(-A * r, -A * clip(r, 1 - c, 1 + c))`` with ``r = exp(logp - old_logp)``;
    ``value = 0.5 * max((V - R)^2, (clip(V, V_old - cv, V_old + cv) - R)^2)``; the loss is
    ``policy + vf_coef * value``. Logs: ``policy_loss``, ``value_loss``, ``clipfrac`` (share of
    tokens whose ratio is clipped), ``value_clipfrac`` and ``approx_kl`` (``0.5 * (logp - old_logp)^2``,
    how far the policy has moved from the one that sampled).
    """
    m = mask.to(logps.dtype)
    ratio = torch.exp(logps - old_logps)
    pg_unclipped = -advantages * ratio
    pg_clipped = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    policy_loss = masked_mean(torch.max(pg_unclipped, pg_clipped), m)
    values_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    vf_unclipped, vf_clipped = (values - returns) ** 2, (values_clipped - returns) ** 2
    value_loss = 0.5 * masked_mean(torch.max(vf_unclipped, vf_clipped), m)
    logs = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
            "clipfrac": masked_mean((pg_clipped > pg_unclipped).float(), m).detach(),
            "value_clipfrac": masked_mean((vf_clipped > vf_unclipped).float(), m).detach(),
            "approx_kl": 0.5 * masked_mean((logps - old_logps).detach() ** 2, m)}
    return policy_loss + vf_coef * value_loss, logs


@dataclass
class Rollout:
    """One batch's sampled completions and what the updates on them need; tensors are [B, T] per
    completion token, on the model's device."""

    prompts: list  # the prompt turns of each row
    images: list  # the images of each row
    batch: dict[str, Any]  # prompts + completions, as the model scores them (completion_batch)
    completion: torch.Tensor  # completion ids
    mask: torch.Tensor  # True on completion tokens
    logps: torch.Tensor  # log-probabilities under the policy that sampled
    values: torch.Tensor  # its value of the state before each token
    advantages: torch.Tensor
    returns: torch.Tensor
    extras: dict[str, float]  # reward, kl, completion_length


@dataclass
class PpoRun(PpoRunConfig, PostTrainingRun):
    """The whole run section of a ``ppo`` config, for type annotations."""


@registry.register_task("ppo")
class PpoTask(PostTrainingTask):
    """PPO on prompts (with solutions for reward functions that need them). Each batch samples one
    completion per prompt, scores it (registered ``run.rewards``, weighted, plus the score of
    ``run.reward_model`` when given), turns the score and a per-token KL penalty to the reference
    (``-beta * (logp - ref_logp)``) into per-token rewards, estimates advantages with GAE from the
    policy's value head, and minimises :func:`ppo_objective` in ``ppo_epochs`` passes over the
    rollout of ``num_mini_batches`` optimizer updates each (:meth:`train_updates`): from the
    second update on, the ratio to the sampling policy moves and the clips bind. The model needs
    ``model.value_head: true``. Evaluation as ``grpo``: ``mean_reward`` (``agg_metrics``) of
    ``run.eval_samples`` sampled completions per prompt, and ``answer_accuracy`` of greedy answers."""

    run_schema = PpoRunConfig
    run_cfg: PpoRun
    agg_metric = "mean_reward"

    def __init__(self, run_cfg: Any):
        super().__init__(run_cfg)
        self.reference: FrozenReference | None = None
        self.reward_fns, self.reward_weights = reward_functions(self.run_cfg.rewards, self.run_cfg.reward_weights)
        self.reward_model: Any = None

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        get = run.get
        problems = []
        names = list(get("rewards", ["answer_accuracy"]) or [])
        if not names and not get("reward_model"):
            problems.append("run.rewards / run.reward_model: give registered rewards (e.g. [answer_accuracy]), "
                            "a reward model, or both")
        problems += reward_problems(names, get("reward_weights", None))
        rm = get("reward_model", None)
        if rm is not None and not ({"arch", "model_type"} <= set(rm) and rm.get("value_head")):
            problems.append("run.reward_model: a model block with arch, model_type and value_head: true (and "
                            "finetuned: the reward_model run's checkpoint)")
        problems += at_least_one(run, "ppo_epochs", "num_mini_batches", "eval_samples")
        m, b = get("num_mini_batches", 1), get("batch_size_train", None)
        if isinstance(m, int) and isinstance(b, int) and m > b:
            problems.append(f"run.num_mini_batches: {m} mini-batches of a rollout of run.batch_size_train={b} prompts "
                            "leave some empty; make it at most the batch size")
        return problems

    def build_model(self, cfg: Any) -> Any:
        model = super().build_model(cfg)
        if model.value_head is None:
            raise ConfigError(["model.value_head: ppo learns a value function with a value head; "
                               "set model.value_head: true"])
        self.reference = FrozenReference(model)
        if self.run_cfg.reward_model is not None:
            self.reward_model = self.load_reward_model(dict(self.run_cfg.reward_model))
        return model

    @staticmethod
    def load_reward_model(block: Mapping[str, Any]) -> Any:
        """The frozen reward model of a model block (its shipped type's defaults under it)."""
        cls = registry.get_model_class(str(block["arch"]))
        overrides = {k: v for k, v in block.items() if k not in ("arch", "model_type")}
        return cls.from_pretrained(str(block["model_type"]), **overrides).requires_grad_(False).eval()

    def rewards_of(self, completions: list[str], samples: Mapping[str, Any]) -> list[float] | None:
        """Registered rewards (weighted) plus the reward model's score of each prompt + completion."""
        total = weighted_rewards(self.reward_fns, self.reward_weights, completions, samples)
        if self.reward_model is not None:
            from lavis.tasks.post_training.reward_model import reply_scores

            convs = [with_reply(p, c) for p, c in zip(samples["prompt"], completions)]
            images = list(samples.get("images") or [[] for _ in completions])
            with torch.no_grad():
                scores = reply_scores(self.reward_model, convs, images)
            total = [t + float(s) for t, s in zip(total, scores)]
        return total

    @torch.no_grad()
    def valid_step(self, model: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
        results = super().valid_step(model, samples)
        return sampled_rewards(self, model, samples, results, float(self.run_cfg.temperature),
                               int(self.run_cfg.eval_samples))

    def updates_per_batch(self) -> int:
        return int(self.run_cfg.ppo_epochs) * int(self.run_cfg.num_mini_batches)

    def train_updates(self, model: Any, samples: dict[str, Any]) -> Iterator[ModelOutput]:
        """``ppo_epochs`` passes over one rollout of ``samples``, each in ``num_mini_batches``
        updates on a random share of its prompts (the whole rollout where a share would be empty,
        when the batch has fewer prompts than ``num_mini_batches``)."""
        rollout = self.rollout(model, samples)
        n, m = rollout.completion.shape[0], int(self.run_cfg.num_mini_batches)
        for _ in range(int(self.run_cfg.ppo_epochs)):
            if m == 1:
                yield self.update(model, rollout)
                continue
            order = torch.randperm(n, device=rollout.completion.device)
            for rows in order.tensor_split(m):
                yield self.update(model, rollout, rows if len(rows) else order)

    def train_step(self, model: Any, samples: dict[str, Any]) -> ModelOutput:
        """One rollout of ``samples`` and one update on all of it (the ratio is 1 there)."""
        return self.update(model, self.rollout(model, samples))

    @torch.no_grad()
    def rollout(self, model: Any, samples: dict[str, Any]) -> Rollout:
        """Sample one completion per prompt and score it; per-token rewards (the score on the last
        token, ``-beta * (logp - ref_logp)`` on each), the sampling policy's log-probabilities
        and values, and GAE advantages and returns."""
        if "prompt" not in samples:
            raise KeyError(f"ppo needs prompts ('prompt', and 'solution' for answer rewards); the batch has "
                           f"{sorted(samples)}. Use a prompt data set such as shapes_vqa_grpo")
        seam = unwrap(model)
        if self.reference is None:  # a model given without build_model
            self.reference = FrozenReference(seam)
        n, cfg = len(samples["prompt"]), self.run_cfg
        images = list(samples.get("images") or [[] for _ in range(n)])
        prompt, completion, cmask = seam.generate_ids(
            {"conversations": samples["prompt"], "images": images}, do_sample=True,
            temperature=float(cfg.temperature), max_new_tokens=int(cfg.max_new_tokens))
        texts = [t.strip() for t in seam.tokenizer.batch_decode(completion, skip_special_tokens=True)]
        scores = torch.tensor(self.rewards_of(texts, samples), dtype=torch.float32, device=seam.device)
        batch = completion_batch(prompt, completion, cmask)
        t = completion.shape[1]
        out = seam({**batch, "output_token_logps": True, "output_values": True})
        logps = out.extras["token_logps"][:, -t:]
        values = out.extras["values"][:, :-1][:, -t:]  # the value of the state before each completion token
        ref_logps = self.reference(model, {**batch, "output_token_logps": True}).extras["token_logps"][:, -t:]
        mask = cmask.to(logps.dtype)
        kl = (logps - ref_logps) * mask
        rewards = -float(cfg.beta) * kl
        last = (cmask.long().cumsum(1).argmax(1))  # each completion's last token
        rewards[torch.arange(n, device=rewards.device), last] += scores
        advantages, returns = gae(rewards, values, mask, float(cfg.gamma), float(cfg.lam))
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask)
        extras = {"reward": scores.mean().item(), "kl": kl.sum(1).mean().item(),
                  "completion_length": cmask.sum(1).float().mean().item()}
        return Rollout(list(samples["prompt"]), images, batch, completion, cmask, logps, values, advantages,
                       returns, extras)

    def update(self, model: Any, r: Rollout, rows: torch.Tensor | None = None) -> ModelOutput:
        """The clipped PPO loss of the policy on ``rows`` of the rollout (all of it when ``None``),
        against the rollout's log-probabilities and values."""
        batch = r.batch
        if rows is not None:  # the prompts of these rows, tokenised again, and their completions
            seam, idx = unwrap(model), rows.tolist()
            prompt = seam.batch_inputs({"conversations": [r.prompts[i] for i in idx],
                                        "images": [r.images[i] for i in idx]}, "generate")
            batch = completion_batch(prompt, r.completion[rows], r.mask[rows])
        t, cfg = r.completion.shape[1], self.run_cfg
        out = model({**batch, "output_token_logps": True, "output_values": True})
        logps = out.extras["token_logps"][:, -t:]
        values = out.extras["values"][:, :-1][:, -t:]
        sel = slice(None) if rows is None else rows
        loss, logs = ppo_objective(logps, r.logps[sel], r.advantages[sel], values, r.values[sel], r.returns[sel],
                                   r.mask[sel], float(cfg.cliprange), float(cfg.cliprange_value), float(cfg.vf_coef))
        return ModelOutput(loss=loss, extras={**{k: v.item() for k, v in logs.items()}, **r.extras})
