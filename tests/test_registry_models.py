"""Every registered model arch: its ``tiny`` type builds offline and runs forward, backward and generate.

A new arch is tested here the moment it is registered. Inputs are made from the tiny type's own
config (image size from its eval image processor); an arch whose ``samples`` need other keys adds
them in :func:`make_samples`.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from lavis.common.registry import registry
from lavis.models import load_model
from lavis.models.base_model import TASK_METHOD_NAMES

ARCHS = registry.list_models()
CAPTIONS = [
    "a picture of a small red circle",
    "a picture of a large blue square to the left of a small green star",
    "a picture of two yellow triangles",
]


@pytest.fixture(autouse=True)
def _offline_one_thread(monkeypatch, one_thread):
    # tiny types must never touch the network (their tokenizer is in the repo)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield


def image_size(arch: str) -> int:
    cfg = registry.get_model_class(arch).default_config("tiny")
    return int(cfg.preprocess.vis_processor.eval.image_size)


def make_samples(arch: str, batch: int) -> dict:
    g = torch.Generator().manual_seed(0)
    size = image_size(arch)
    return {
        "image": torch.randn(batch, 3, size, size, generator=g),
        "text_input": [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)],
    }


def test_registry_has_models():
    assert "blip_caption" in ARCHS


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_has_tiny(arch):
    cls = registry.get_model_class(arch)
    assert "tiny" in cls.model_types()
    cfg = cls.default_config("tiny").model
    assert not cfg.get("load_pretrained") and not cfg.get("load_finetuned"), "tiny must be random init"


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_forward_backward(arch):
    torch.manual_seed(0)
    model = load_model(arch, "tiny")
    assert model.training
    out = model(make_samples(arch, 3))
    loss = out.loss
    assert loss.ndim == 0 and torch.isfinite(loss)
    vocab = len(model.tokenizer) if hasattr(model, "tokenizer") else None
    if vocab:  # random init predicts ~uniformly over the vocabulary
        assert abs(loss.item() - math.log(vocab)) < 0.5, (loss.item(), math.log(vocab))
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    with_grad = [(n, p) for n, p in params if p.grad is not None]
    assert all(torch.isfinite(p.grad).all() for _, p in with_grad)
    nonzero = [n for n, p in with_grad if p.grad.abs().sum() > 0]
    assert len(nonzero) >= 0.9 * len(params), sorted({n for n, _ in params} - set(nonzero))


@pytest.mark.parametrize("arch", ARCHS)
def test_declared_task_methods_are_exactly_those_the_class_has(arch):
    cls = registry.get_model_class(arch)
    unknown = set(cls.TASK_METHODS) - set(TASK_METHOD_NAMES)
    assert not unknown, f"{arch}.TASK_METHODS names {unknown}; known task methods: {TASK_METHOD_NAMES}"
    has = {m for m in TASK_METHOD_NAMES if callable(getattr(cls, m, None))}
    assert has == set(cls.TASK_METHODS), f"{arch} has task methods {sorted(has)} but declares {cls.TASK_METHODS}"
    missing_checks = set(cls.TASK_METHODS) - set(TASK_METHOD_CHECKS)
    assert not missing_checks, f"add a check for {missing_checks} to TASK_METHOD_CHECKS in this file"


def check_generate(arch: str, model) -> None:
    params = inspect.signature(model.generate).parameters
    samples = make_samples(arch, 2)
    del samples["text_input"]
    prompt_len = getattr(model, "prompt_length", 0)
    for nucleus in (False, True):
        torch.manual_seed(0)
        kwargs = {"max_length": 12, "min_length": 8}
        if "use_nucleus_sampling" in params:
            kwargs["use_nucleus_sampling"] = nucleus
        captions = model.generate(samples, **kwargs)
        assert isinstance(captions, list) and len(captions) == 2
        for c in captions:
            assert isinstance(c, str) and c == c.strip() and c
            # every generated token adds at most one word; max_length counts the prompt
            assert len(c.split()) <= 12 - prompt_len, c


TASK_METHOD_CHECKS = {"generate": check_generate}


@pytest.mark.parametrize(
    "arch, method",
    [(a, m) for a in ARCHS for m in registry.get_model_class(a).TASK_METHODS],
)
def test_tiny_task_methods(arch, method):
    model = load_model(arch, "tiny", is_eval=True)
    TASK_METHOD_CHECKS[method](arch, model)
