"""PPO: GAE and the clipped objectives against hand computations, and a step on the tiny model
with a reward model as the reward."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from lavis.common.registry import registry
from lavis.tasks.post_training.ppo import PpoRunConfig, PpoTask, gae, ppo_objective, whiten
from lavis.tasks.post_training.reward_model import reply_scores


@pytest.fixture(autouse=True)
def _offline_one_thread(monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 9.0]])
    values = torch.tensor([[0.5, 0.2, 0.4], [0.5, 0.2, 7.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])  # the second completion ends after 2 tokens
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0: deltas 0.2-0.5, 0.4-0.2, 1-0.4 -> A2 = 0.6, A1 = 0.2 + 0.5 * 0.6, A0 = -0.3 + 0.5 * 0.5
    assert torch.allclose(adv[0], torch.tensor([-0.05, 0.5, 0.6]), atol=1e-6)
    assert torch.allclose(ret[0], torch.tensor([0.45, 0.7, 1.0]), atol=1e-6)
    # row 1: the masked token's reward and value are ignored; the value after the end is 0
    assert torch.allclose(adv[1], torch.tensor([0.1, 0.8, 0.0]), atol=1e-6)
    assert torch.allclose(ret[1], torch.tensor([0.6, 1.0, 0.0]), atol=1e-6)
    # gamma discounts the next value: one token, V = 0, r = 1, then nothing
    a, _ = gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool), 0.9, 1.0)
    assert torch.allclose(a, torch.tensor([[0.9, 1.0]]))


def test_ppo_objective_by_hand():
    logps = torch.log(torch.tensor([[1.5, 0.5]]))
    old = torch.zeros(1, 2)  # ratios 1.5 (clipped to 1.2) and 0.5 (clipped to 0.8)
    adv = torch.ones(1, 2)
    values, old_values, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.1]]), torch.tensor([[2.0, 0.0]])
    loss, logs = ppo_objective(logps, old, adv, values, old_values, returns, torch.ones(1, 2, dtype=torch.bool),
                               cliprange=0.2, cliprange_value=0.2, vf_coef=0.1)
    # policy: max(-1.5, -1.2) = -1.2 and max(-0.5, -0.8) = -0.5
    assert logs["policy_loss"].item() == pytest.approx(-0.85, abs=1e-6)
    assert logs["clipfrac"].item() == pytest.approx(0.5)
    # value: V 1.0 is clipped to 0.7 around 0.5: max((1-2)^2, (0.7-2)^2) = 1.69; V 0.0 clipped to 0.0 -> 0
    assert logs["value_loss"].item() == pytest.approx(0.5 * 1.69 / 2, abs=1e-6)
    assert logs["value_clipfrac"].item() == pytest.approx(0.5)
    assert loss.item() == pytest.approx(-0.85 + 0.1 * 0.4225, abs=1e-6)
    # masked tokens do not count
    _, only_first = ppo_objective(logps, old, adv, values, old_values, returns, torch.tensor([[True, False]]))
    assert only_first["policy_loss"].item() == pytest.approx(-1.2, abs=1e-6)


def test_whiten_is_zero_mean_unit_variance_on_the_mask():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    w = whiten(x, mask)
    assert w[mask.bool()].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert (w[mask.bool()] ** 2).mean().item() == pytest.approx(1.0, abs=1e-4) and (w[~mask.bool()] == 0).all()


def test_ppo_step_with_a_reward_model_as_the_reward():
    torch.manual_seed(0)
    policy = registry.get_model_class("qwen2_vl").from_pretrained("tiny", value_head=True)
    block = {"arch": "llava", "model_type": "tiny", "value_head": True}  # a reward model of another family
    task = PpoTask(PpoRunConfig(rewards=[], reward_model=block, max_new_tokens=3))
    task.reward_model = PpoTask.load_reward_model(block)
    prompts = [[{"role": "user", "content": "<image>\nwhat color is the circle?"}]] * 2
    images = [[Image.new("RGB", (64, 64), (200, 30, 30))], [Image.new("RGB", (64, 64), (30, 30, 200))]]
    samples = {"prompt": prompts, "images": images, "solution": ["red", "blue"]}
    rewards = task.rewards_of(["red", "blue"], samples)
    want = reply_scores(task.reward_model, [[*p, {"role": "assistant", "content": c}] for p, c in
                                            zip(prompts, ["red", "blue"])], images)
    assert rewards == pytest.approx(want.tolist(), abs=1e-6)
    out = task.train_step(policy, samples)
    # the policy is the reference: no KL; whitened advantages at ratio 1 give a zero policy loss
    assert out.extras["kl"] == pytest.approx(0.0, abs=1e-6)
    assert out.extras["policy_loss"] == pytest.approx(0.0, abs=1e-5) and out.extras["value_loss"] > 0
    assert math.isfinite(out.extras["reward"]) and 1 <= out.extras["completion_length"] <= 3
    out.loss.backward()
    assert policy.value_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in task.reward_model.parameters())


def test_ppo_needs_a_value_head_and_some_reward():
    from lavis.common.config import Config
    from lavis.common.errors import ConfigError

    problems = PpoTask.validate_run({"rewards": [], "reward_model": None})
    assert problems == ["run.rewards / run.reward_model: give registered rewards (e.g. [answer_accuracy]), a reward "
                        "model, or both"]
    assert "value_head: true" in PpoTask.validate_run({"reward_model": {"arch": "llava", "model_type": "tiny"}})[0]
    cfg = Config.from_dict({"model": {"arch": "qwen2_vl", "model_type": "tiny"}, "datasets": {}, "run": {"task": "ppo"}})
    with pytest.raises(ConfigError, match="set model.value_head: true"):
        PpoTask(PpoRunConfig()).build_model(cfg)


def test_ppo_epochs_move_the_ratio_against_the_rollout_and_the_clips_bind(monkeypatch):
    import lavis.tasks.post_training.ppo as ppo

    torch.manual_seed(0)
    policy = registry.get_model_class("qwen2_vl").from_pretrained("tiny", value_head=True)
    task = PpoTask(PpoRunConfig(rewards=["answer_accuracy"], max_new_tokens=3, ppo_epochs=2, num_mini_batches=2,
                                cliprange=0.05))
    assert task.updates_per_batch() == 4
    seen = []  # (rows, old log-probs given to the objective, the policy's log-probs)
    objective = ppo.ppo_objective
    monkeypatch.setattr(ppo, "ppo_objective", lambda logps, old, *a, **k: (
        seen.append((old.clone(), logps.detach().clone())) or objective(logps, old, *a, **k)))
    rollouts, update = [], PpoTask.update
    monkeypatch.setattr(PpoTask, "update", lambda self, m, r, rows=None: (
        rollouts.append((r, rows)) or update(self, m, r, rows)))
    colors = [(200, 30, 30), (30, 30, 200), (30, 200, 30), (200, 200, 30)]
    samples = {"prompt": [[{"role": "user", "content": "<image>\nwhat color is the circle?"}]] * 4,
               "images": [[Image.new("RGB", (64, 64), c)] for c in colors],
               "solution": ["red", "blue", "green", "yellow"]}
    opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.5)
    outs = []
    for out in task.train_updates(policy, samples):
        outs.append(out.extras)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    assert len(outs) == 4
    rollout = rollouts[0][0]
    assert all(r is rollout for r, _ in rollouts)  # one rollout for the four updates
    rows = [sorted(r.tolist()) for _, r in rollouts]
    assert sorted(rows[0] + rows[1]) == sorted(rows[2] + rows[3]) == [0, 1, 2, 3]  # each pass covers the rollout
    for (old, _), (_, r) in zip(seen, rollouts):  # ratios against the sampling policy's log-probs
        assert torch.equal(old, rollout.logps[r])
    # the first update is at the sampling policy (its prompts tokenised again): ratio 1, no clipping
    assert outs[0]["approx_kl"] < 1e-8 and outs[0]["clipfrac"] == 0.0
    # after steps the ratio moves, and with cliprange 0.05 the clip binds
    assert all(o["approx_kl"] > 1e-4 for o in outs[2:]) and max(o["clipfrac"] for o in outs[1:]) > 0
    assert all(o["reward"] == outs[0]["reward"] for o in outs)  # the rollout's reward, logged with each update


def test_ppo_epoch_and_mini_batch_counts_are_checked():
    assert PpoTask.validate_run({"ppo_epochs": 0, "num_mini_batches": 1}) == ["run.ppo_epochs: must be at least 1, got 0"]
    assert PpoTask.validate_run({"num_mini_batches": 8, "batch_size_train": 4}) == [
        "run.num_mini_batches: 8 mini-batches of a rollout of run.batch_size_train=4 prompts leave some empty; make it "
        "at most the batch size"]
