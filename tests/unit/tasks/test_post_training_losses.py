"""The DPO losses and the GRPO objective against TRL's own code on identical inputs (TRL is the
independent reference; install it with requirements-dev.txt).

TRL computes its losses inside its trainers' ``_compute_loss``; the tests call those methods
unbound, on a stand-in trainer whose model returns the given per-token log-probabilities."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from lavis.tasks.post_training.dpo import dpo_loss
from lavis.tasks.post_training.grpo import group_advantages, grpo_objective

trl = pytest.importorskip("trl", reason="TRL is the reference of these tests: pip install -r requirements-dev.txt")


class _Accelerator:
    device = torch.device("cpu")
    num_processes = 1
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def _pairs(seed: int, batch: int = 3, length: int = 7):
    """Per-token log-probs of chosen and rejected replies (policy and reference) and reply masks."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2 * batch, length)
    for i in range(2 * batch):
        start = int(torch.randint(1, 4, (1,), generator=g))
        stop = int(torch.randint(start + 1, length + 1, (1,), generator=g))
        mask[i, start:stop] = 1
    logps = -torch.rand(2 * batch, length - 1, generator=g, dtype=torch.float64) * 3 * mask[:, 1:]
    ref = -torch.rand(2 * batch, length - 1, generator=g, dtype=torch.float64) * 3 * mask[:, 1:]
    return logps, ref, mask


def _trl_dpo(logps, ref, mask, beta, loss_type):
    from trl.trainer.dpo_trainer import DPOTrainer

    two_b, length = mask.shape
    out = SimpleNamespace(log_probs=logps, entropy=torch.zeros_like(logps), mean_logits=torch.zeros_like(logps),
                          is_top1=torch.zeros_like(logps, dtype=torch.bool))
    ref_sums = ref.sum(1)
    fake = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=_Accelerator(), aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0],
        beta=beta, use_weighting=False, _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {"input_ids": torch.zeros(two_b, length, dtype=torch.long), "attention_mask": torch.ones(two_b, length),
              "completion_mask": mask, "ref_chosen_logps": ref_sums[: two_b // 2],
              "ref_rejected_logps": ref_sums[two_b // 2:]}
    loss = DPOTrainer._compute_loss(fake, lambda **kw: out, inputs, return_outputs=False)
    return loss, fake._metrics["train"]


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_losses_match_trl(loss_type, beta):
    for seed in range(3):
        logps, ref, mask = _pairs(seed)
        want, metrics = _trl_dpo(logps, ref, mask, beta, loss_type)
        s, r, tokens = logps.sum(1), ref.sum(1), mask.sum(1)
        b = s.shape[0] // 2
        got, logs = dpo_loss(s[:b], s[b:], r[:b], r[b:], beta, loss_type, tokens[:b], tokens[b:])
        assert got.item() == pytest.approx(float(want), abs=1e-5)
        assert logs["rewards/margins"].item() == pytest.approx(metrics["rewards/margins"][0], abs=1e-5)
        assert logs["rewards/accuracies"].item() == pytest.approx(metrics["rewards/accuracies"][0], abs=1e-6)
        assert logs["rewards/chosen"].item() == pytest.approx(metrics["rewards/chosen"][0], abs=1e-5)


def test_dpo_loss_at_the_reference_is_log_2_and_unknown_type_is_refused():
    zero = torch.zeros(4)
    loss, logs = dpo_loss(zero, zero, zero, zero, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2)) and logs["rewards/accuracies"].item() == 0.0
    with pytest.raises(ValueError, match="not one of sigmoid, ipo, hinge"):
        dpo_loss(zero, zero, zero, zero, beta=0.1, loss_type="kto")
    with pytest.raises(ValueError, match="needs chosen_tokens"):
        dpo_loss(zero, zero, zero, zero, beta=0.1, loss_type="ipo")


def _trl_grpo(logps, old, ref, advantages, mask, beta, eps_low, eps_high):
    from trl.trainer.grpo_trainer import GRPOTrainer

    fake = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=_Accelerator(), aux_loss_enabled=False,
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token", beta=beta,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None), loss_type="grpo", epsilon_low=eps_low,
        epsilon_high=eps_high, use_vllm=False, current_gradient_accumulation_steps=1, _entropy_bonus_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
    )
    b, t = mask.shape
    inputs = {"prompt_ids": torch.zeros(b, 2, dtype=torch.long), "prompt_mask": torch.ones(b, 2),
              "completion_ids": torch.zeros(b, t, dtype=torch.long), "completion_mask": mask,
              "advantages": advantages, "old_per_token_logps": old, "ref_per_token_logps": ref}
    return GRPOTrainer._compute_loss(fake, None, inputs)


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_objective_matches_trl(beta):
    g = torch.Generator().manual_seed(1)
    b, t = 8, 6
    mask = (torch.rand(b, t, generator=g) > 0.3).float()
    mask[:, 0] = 1
    logps = -torch.rand(b, t, generator=g, dtype=torch.float64) * 2
    old = logps + 0.3 * torch.randn(b, t, generator=g, dtype=torch.float64)  # ratios inside and outside the clip range
    ref = logps + 0.5 * torch.randn(b, t, generator=g, dtype=torch.float64)
    rewards = torch.randint(0, 2, (b,), generator=g).double()
    adv = group_advantages(rewards, 4)
    want = _trl_grpo(logps, old, ref, adv, mask, beta, 0.2, 0.28)
    got, logs = grpo_objective(logps, old, ref, adv, mask, 0.2, 0.28, beta)
    assert got.item() == pytest.approx(want.item(), abs=1e-6)
    assert ("kl" in logs) == (beta != 0)


def test_group_advantages_match_trl_normalisation():
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.0, 0.2, 0.9, 0.3])
    grouped = rewards.view(-1, 4)
    want = (rewards - grouped.mean(1).repeat_interleave(4)) / (nanstd(grouped, dim=1).repeat_interleave(4) + 1e-4)
    assert torch.allclose(group_advantages(rewards, 4), want, atol=1e-6)
    assert torch.equal(group_advantages(rewards, 4)[4:8], torch.zeros(4))  # equal rewards: no signal
    with pytest.raises(ValueError, match="do not split into groups of 5"):
        group_advantages(rewards, 5)


def _trl_reward(chosen, rejected, margin, center):
    from trl.trainer.reward_trainer import RewardTrainer

    fake = SimpleNamespace(model=SimpleNamespace(training=True), accelerator=_Accelerator(), _tp_size=1,
                           _total_train_tokens=0, args=SimpleNamespace(center_rewards_coefficient=center),
                           _metrics=defaultdict(lambda: defaultdict(list)))
    logits = torch.cat([chosen, rejected]).unsqueeze(-1)  # TRL's model gives [2B, 1] scores, chosen first
    inputs = {"input_ids": torch.zeros(logits.shape[0], 3, dtype=torch.long), "attention_mask": torch.ones(logits.shape[0], 3)}
    if margin is not None:
        inputs["margin"] = margin
    loss = RewardTrainer.compute_loss(fake, lambda **kw: SimpleNamespace(logits=logits), inputs)
    return loss, fake._metrics["train"]


@pytest.mark.parametrize("with_margin", [False, True])
@pytest.mark.parametrize("center", [None, 0.01])
def test_reward_model_loss_matches_trl(with_margin, center):
    from lavis.tasks.post_training.reward_model import reward_loss

    g = torch.Generator().manual_seed(2)
    chosen, rejected = torch.randn(6, generator=g, dtype=torch.float64) * 2, torch.randn(6, generator=g, dtype=torch.float64) * 2
    margin = torch.rand(6, generator=g, dtype=torch.float64) if with_margin else None
    want, metrics = _trl_reward(chosen, rejected, margin, center)
    got, logs = reward_loss(chosen, rejected, margin, center)
    assert got.item() == pytest.approx(want.item(), abs=1e-5)
    assert logs["accuracy"].item() == pytest.approx(metrics["accuracy"][0], abs=1e-6)
    assert logs["margin"].item() == pytest.approx(metrics["margin"][0], abs=1e-5)
    # a hand case: equal rewards cost log 2 per pair, a margin of 1 in favour costs log(1 + e^-1)
    loss, _ = reward_loss(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0]))
    assert loss.item() == pytest.approx((math.log(2) + math.log(1 + math.exp(-1))) / 2, abs=1e-6)


def test_reward_model_task_needs_a_value_head(one_thread):
    from lavis.common.config import Config
    from lavis.common.errors import ConfigError
    from lavis.tasks.post_training.reward_model import RewardModelRunConfig, RewardModelTask

    cfg = Config.from_dict({"model": {"arch": "qwen2_vl", "model_type": "tiny"}, "datasets": {},
                            "run": {"task": "reward_model"}})
    with pytest.raises(ConfigError, match="set model.value_head: true"):
        RewardModelTask(RewardModelRunConfig()).build_model(cfg)
