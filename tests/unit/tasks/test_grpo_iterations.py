"""GRPO with ``num_iterations`` > 1: several updates on one batch of sampled completions, each
with ratios against the policy that sampled them."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lavis.common.registry import registry
from lavis.tasks.post_training.grpo import GrpoRunConfig, GrpoTask


@pytest.fixture(autouse=True)
def _offline_one_thread(monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


def test_grpo_iterations_reuse_the_rollout_against_its_log_probs(monkeypatch):
    import lavis.tasks.post_training.grpo as grpo

    torch.manual_seed(0)
    model = registry.get_model_class("qwen2_vl").from_pretrained("tiny")
    task = GrpoTask(GrpoRunConfig(num_generations=4, num_iterations=3, max_new_tokens=3, beta=0.0,
                                  rewards=["answer_accuracy"]))
    assert task.updates_per_batch() == 3
    olds, objective = [], grpo.grpo_objective
    monkeypatch.setattr(grpo, "grpo_objective", lambda logps, old, *a, **k: (
        olds.append((old.clone(), logps.detach().clone())) or objective(logps, old, *a, **k)))
    samples = {"prompt": [[{"role": "user", "content": "<image>\nwhat color is the circle?"}]] * 2,
               "images": [[Image.new("RGB", (64, 64), (200, 30, 30))], [Image.new("RGB", (64, 64), (30, 30, 200))]],
               "solution": ["red", "blue"]}
    # a reward that differs within each group: the length of the completion
    task.reward_fns, task.reward_weights = [lambda completions, **_: [float(len(c)) for c in completions]], [1.0]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for out in task.train_updates(model, samples):
        losses.append(out.loss.item())
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    assert len(losses) == 3 and losses[0] == pytest.approx(0.0, abs=1e-5)  # ratio 1, zero-mean advantages
    assert all(torch.equal(olds[0][0], old) for old, _ in olds)  # the sampling policy's log-probs, each time
    assert torch.allclose(olds[0][1], olds[0][0], atol=1e-5)  # the first update is at the sampling policy
    assert not torch.allclose(olds[2][1], olds[2][0], atol=1e-3) and abs(losses[2]) > 1e-4  # the ratio moved
    assert GrpoTask.validate_run({"num_iterations": 0, "rewards": ["answer_accuracy"]}) == [
        "run.num_iterations: must be at least 1, got 0"]
