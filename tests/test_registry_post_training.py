"""Every registered vision-language arch runs an SFT, a DPO, a reward-model, a PPO and a GRPO step on
its ``tiny`` type, on batches of the shapes post-training builders (a new VLM arch is tested the
moment it is registered), and each objective moves the way it should after a few steps on the same
batch."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from lavis.common.registry import registry
from lavis.models import load_model
from lavis.models.vlm.base import HFVisionLanguageModel
from lavis.tasks.post_training.dpo import DpoRunConfig, DpoTask
from lavis.tasks.post_training.grpo import GrpoRunConfig, GrpoTask
from lavis.tasks.post_training.ppo import PpoRunConfig, PpoTask
from lavis.tasks.post_training.reward_model import RewardModelRunConfig, RewardModelTask
from lavis.tasks.post_training.sft import SftRunConfig, SftTask

VLM_ARCHS = [a for a in registry.list_models() if issubclass(registry.get_model_class(a), HFVisionLanguageModel)]


@pytest.fixture(autouse=True)
def _offline_one_thread(monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    """One batch of 4 records of each post-training builder (conversations, pairs, prompts)."""
    root = tmp_path_factory.mktemp("shapes")
    out = {}
    for name in ("shapes_vqa_chat", "shapes_vqa_preference", "shapes_vqa_grpo"):
        cls = registry.get_builder_class(name)
        cfg = OmegaConf.merge(cls.default_config().datasets[name], {"build_info": {
            "storage": str(root / "shapes"), "max_records": 4,
            "generator": {"image_size": 64, "num_train": 2, "num_val": 1, "num_test": 1}}})
        data = cls(cfg).build_datasets()["train"]
        out[name] = data.collater([data[i] for i in range(4)])
    return out


def test_every_vlm_arch_is_covered():
    assert {"llava", "llava_next", "llava_onevision", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "idefics3", "smolvlm",
            "paligemma", "internvl"} <= set(VLM_ARCHS)


def _steps(model, step, n: int, lr: float = 3e-3):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    outs = []
    for _ in range(n):
        out = step()
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        outs.append(out)
    return outs


@pytest.mark.parametrize("arch", VLM_ARCHS)
def test_sft_step_trains_on_replies(arch, batches):
    torch.manual_seed(0)
    model = load_model(arch, "tiny")
    task = SftTask(SftRunConfig())
    outs = _steps(model, lambda: task.train_step(model, batches["shapes_vqa_chat"]), 4)
    losses = [o.loss.item() for o in outs]
    assert abs(losses[0] - math.log(len(model.tokenizer))) < 0.6, losses[0]
    assert losses[-1] < losses[0] - 0.5, losses


@pytest.mark.parametrize("arch", VLM_ARCHS)
def test_dpo_step_starts_at_log2_and_separates_the_pairs(arch, batches):
    torch.manual_seed(0)
    model = load_model(arch, "tiny")
    task = DpoTask(DpoRunConfig(beta=0.5))
    outs = _steps(model, lambda: task.train_step(model, batches["shapes_vqa_preference"]), 4)
    first, last = outs[0], outs[-1]
    assert first.loss.item() == pytest.approx(math.log(2), abs=1e-5)  # the policy is the reference
    assert first.extras["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert last.loss.item() < math.log(2) - 0.05 and last.extras["rewards/margins"] > 0
    assert last.extras["rewards/accuracies"] == 1.0
    # the reference stays where it was
    assert all(not p.requires_grad for p in task.reference.copy.parameters())


@pytest.mark.parametrize("arch", VLM_ARCHS)
def test_reward_model_step_scores_replies_and_separates_the_pairs(arch, batches):
    torch.manual_seed(0)
    model = registry.get_model_class(arch).from_pretrained("tiny", value_head=True)
    task = RewardModelTask(RewardModelRunConfig())
    pairs = batches["shapes_vqa_preference"]
    outs = _steps(model, lambda: task.train_step(model, pairs), 8, lr=1e-2)
    first, last = outs[0], outs[-1]
    # log 2 when the scores tie; the small random head starts near it
    assert abs(first.loss.item() - math.log(2)) < 0.3
    assert last.loss.item() < first.loss.item() - 0.1 and last.extras["accuracy"] == 1.0 and last.extras["margin"] > 0
    assert model.value_head.weight.grad is not None


@pytest.fixture
def word_count_reward():
    """A user reward, added with one decorated function: the number of characters of a completion."""

    @registry.register_reward("test_length")
    def length(completions, **_):
        return [float(len(c)) for c in completions]

    yield "test_length"
    registry.rewards._entries.pop("test_length")


@pytest.mark.parametrize("arch", VLM_ARCHS)
def test_grpo_step_is_zero_mean_at_the_reference_and_has_gradients(arch, batches, word_count_reward):
    torch.manual_seed(0)
    model = load_model(arch, "tiny")
    task = GrpoTask(GrpoRunConfig(num_generations=4, max_new_tokens=4, rewards=[word_count_reward, "answer_accuracy"]))
    out = task.train_step(model, batches["shapes_vqa_grpo"])
    # the policy is the reference and the ratio is 1: advantages sum to zero in every group
    assert out.loss.item() == pytest.approx(0.0, abs=1e-5)
    assert out.extras["kl"] == pytest.approx(0.0, abs=1e-6)
    assert out.extras["reward_std"] > 0 and 1 <= out.extras["completion_length"] <= 4
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum().item() for g in grads) > 0


@pytest.mark.parametrize("arch", VLM_ARCHS)
def test_ppo_step_starts_at_the_reference_and_trains_policy_and_value(arch, batches, word_count_reward):
    torch.manual_seed(0)
    model = registry.get_model_class(arch).from_pretrained("tiny", value_head=True)
    task = PpoTask(PpoRunConfig(max_new_tokens=4, rewards=[word_count_reward]))
    out = task.train_step(model, batches["shapes_vqa_grpo"])
    # the policy is the reference (no KL); whitened advantages at ratio 1 give a zero policy loss
    assert out.extras["kl"] == pytest.approx(0.0, abs=1e-5)
    assert out.extras["policy_loss"] == pytest.approx(0.0, abs=1e-5) and out.extras["value_loss"] > 0
    assert out.extras["reward"] > 0 and 1 <= out.extras["completion_length"] <= 4
    out.loss.backward()
    assert model.value_head.weight.grad.abs().sum() > 0
    assert sum(p.grad.abs().sum().item() for p in model.hf_model.parameters() if p.grad is not None) > 0


def test_dpo_sft_term_is_the_chosen_cross_entropy(batches):
    torch.manual_seed(0)
    model = load_model("qwen2_vl", "tiny")
    plain = DpoTask(DpoRunConfig(beta=0.5)).train_step(model, batches["shapes_vqa_preference"])
    mixed = DpoTask(DpoRunConfig(beta=0.5, sft_weight=2.0)).train_step(model, batches["shapes_vqa_preference"])
    chat = [[*p, {"role": "assistant", "content": c}] for p, c in zip(batches["shapes_vqa_preference"]["prompt"],
                                                                     batches["shapes_vqa_preference"]["chosen"])]
    sft = model({"conversations": chat, "images": batches["shapes_vqa_preference"]["images"]}).loss
    assert mixed.extras["sft_loss"] == pytest.approx(sft.item(), abs=1e-5)
    assert mixed.loss.item() == pytest.approx(plain.loss.item() + 2 * sft.item(), abs=1e-5)


def test_dpo_with_lora_takes_the_model_without_adapters_as_reference(batches):
    from lavis.models.vlm.adapters import apply_lora
    from lavis.tasks.post_training.common import sequence_logps, with_reply

    torch.manual_seed(0)
    model = load_model("qwen2_vl", "tiny")
    pairs = batches["shapes_vqa_preference"]
    convs = [with_reply(p, c) for p, c in zip(pairs["prompt"], pairs["chosen"])]
    with torch.no_grad():
        base = sequence_logps(model, convs, pairs["images"])
    apply_lora(model, {"r": 4, "alpha": 8, "target_modules": "auto"})
    task = DpoTask(DpoRunConfig(beta=0.5))
    outs = _steps(model, lambda: task.train_step(model, pairs), 4)
    assert task.reference.copy is None  # no second copy of the weights is held
    assert outs[0].loss.item() == pytest.approx(math.log(2), abs=1e-5)
    assert outs[-1].extras["rewards/margins"] > 0
    reference = task.reference(model, {"conversations": convs, "images": pairs["images"], "output_token_logps": True})
    assert torch.allclose(reference.extras["token_logps"].sum(-1), base, atol=1e-5)  # the SFT model, untouched
    with torch.no_grad():
        assert not torch.allclose(sequence_logps(model, convs, pairs["images"]), base, atol=1e-3)  # the policy moved
