"""The post-training benchmarks of this library (LAVIS has none): a ``dpo`` training step and a
``grpo`` round (sample the completions, score them with the rewards, one update) on a Qwen2-VL
with two decoder layers and two vision blocks at Qwen2-VL-2B's widths (decoder 1536 wide with 12
heads and 2 key/value heads, MLP 8960; vision 1280 wide with 16 heads), the tokenizer and image
processor of our tiny Qwen2-VL (its small vocabulary instead of the 151,936 tokens of the real
one; 8 px patches instead of 14), random weights.

A step is what the runner does with ``task.train_step``: forward (policy and frozen reference),
backward, gradient norm, fused AdamW step; the precision as ``run.amp`` sets it (bf16: autocast,
fp32 weights). The data are the project's shapes data sets (``shapes_vqa_preference`` pairs,
``shapes_vqa_grpo`` prompts) with 112 px images.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

import torch

#: the model shapes (overrides of the tiny type's ``hf_config``) and the batch
TEXT = {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 2, "num_attention_heads": 12,
        "num_key_value_heads": 2, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                                      "mrope_section": [16, 24, 24]}}
VISION = {"depth": 2, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "mlp_ratio": 4}
#: 112 px images in the tiny processor's 8 px patches, merged 2x2: 49 image tokens
IMAGE_SIZE, PAIRS, PROMPTS, GENERATIONS, NEW_TOKENS = 112, 2, 2, 4, 16


def label(bench: str) -> str:
    if bench == "dpo":
        return f"DPO step, Qwen2-VL 2+2 layers at 2B widths, {PAIRS} pairs"
    return f"GRPO round, same model, {PROMPTS} prompts x {GENERATIONS} samples x {NEW_TOKENS} tokens"


def build_model() -> Any:
    from omegaconf import OmegaConf

    from lavis.common.registry import registry

    cls = registry.get_model_class("qwen2_vl")
    cfg = OmegaConf.load(cls.default_config_path("tiny")).model
    cfg = OmegaConf.merge(cfg, {"max_length": 512, "hf_config": {"text_config": TEXT, "vision_config": VISION}})
    torch.manual_seed(0)
    return cls.from_config(cfg)


def batch(builder: str) -> dict[str, Any]:
    """The first ``PAIRS`` / ``PROMPTS`` records of a shapes post-training data set, collated."""
    from omegaconf import OmegaConf

    from lavis.common.registry import registry

    n = PAIRS if builder == "shapes_vqa_preference" else PROMPTS
    cls = registry.get_builder_class(builder)
    cfg = OmegaConf.merge(cls.default_config().datasets[builder], {"build_info": {
        "storage": tempfile.mkdtemp(prefix="lavis_speed_shapes_"), "max_records": n,
        "generator": {"image_size": IMAGE_SIZE, "num_train": n, "num_val": 1, "num_test": 1}}})
    data = cls(cfg).build_datasets()["train"]
    return dict(data.collater([data[i] for i in range(n)]))


def step_fn(bench: str, precision: str, extra: dict[str, Any]) -> Callable[[], float]:
    """One training step of ``bench`` (``dpo`` or ``grpo``) as the runner runs it; ``extra`` gets
    the model FLOPs of one step (counted once, before timing) and the sequence shapes."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny Qwen2-VL's files are in the repository
    from torch.utils.flop_counter import FlopCounterMode

    from lavis.common.optim import build_optimizer
    from lavis.common.run_schema import RunConfig
    from lavis.runners.precision import resolve_precision
    from lavis.runners.stepping import total_norm
    from lavis.tasks.post_training.dpo import DpoRunConfig, DpoTask
    from lavis.tasks.post_training.grpo import GrpoRunConfig, GrpoTask

    model = build_model().train()
    if bench == "dpo":
        task: Any = DpoTask(DpoRunConfig(beta=0.1))
        samples = batch("shapes_vqa_preference")
    else:
        task = GrpoTask(GrpoRunConfig(num_generations=GENERATIONS, max_new_tokens=NEW_TOKENS, rewards=["answer_accuracy"]))
        samples = batch("shapes_vqa_grpo")
    opt = build_optimizer(model, RunConfig(task=bench, init_lr=1e-6))
    prec = resolve_precision("bf16" if precision == "bf16" else "none", torch.device("cpu"))

    def step() -> float:
        torch.manual_seed(0)  # the same completions in every GRPO round
        with prec.autocast():
            loss = task.train_step(model, samples).loss
        loss.float().backward()
        total_norm([p.grad for p in model.parameters() if p.grad is not None])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    with FlopCounterMode(display=False) as counter:
        step()
    extra["flops"] = counter.get_total_flops()
    extra["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    return step
