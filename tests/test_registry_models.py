"""Every registered model arch: its ``tiny`` type builds offline and runs forward, backward and generate.

A new arch is tested here the moment it is registered. Inputs are made from the tiny type's own
config (image size from its eval image processor); an arch whose ``samples`` need other keys adds
a function to :data:`ARCH_SAMPLES`, and each task method it declares is run by its check in
:data:`TASK_METHOD_CHECKS`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

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


QUESTIONS = ["what colour is the circle?", "how many shapes are there?", "what is left of the star?"]
ANSWERS = ["red", "blue", "two", "square", "circle"]

#: extra or replaced keys of an arch's training ``samples``: ``(batch, image_size, generator) -> dict``
ARCH_SAMPLES: dict[str, Callable[[int, int, torch.Generator], dict[str, Any]]] = {
    # pairs 0 and 2 show the same image: positives of each other in ITC, never hard negatives
    "blip_retrieval": lambda batch, size, g: {"image_id": torch.arange(batch) % 2},
    # two images per sentence, and whether the sentence is true of them
    "blip_nlvr": lambda batch, size, g: {
        "image0": torch.randn(batch, 3, size, size, generator=g),
        "image1": torch.randn(batch, 3, size, size, generator=g),
        "label": torch.arange(batch) % 2,
    },
    "blip_classification": lambda batch, size, g: {"label": torch.arange(batch) % 3},
    # question i has i + 1 answers (weights summing to 1 per question)
    "blip_vqa": lambda batch, size, g: {
        "text_input": [QUESTIONS[i % len(QUESTIONS)] for i in range(batch)],
        "answer": [ANSWERS[(i + j) % len(ANSWERS)] for i in range(batch) for j in range(i + 1)],
        "weight": torch.cat([torch.full((i + 1,), 1.0 / (i + 1)) for i in range(batch)]),
        "n_answers": torch.arange(1, batch + 1),
    },
    # texts of one image are ITC positives of each other: images 0 and 1 share an id
    "albef_retrieval": lambda b, size, g: {"image_id": torch.arange(b) // 2},
    "albef_feature_extractor": lambda b, size, g: {"image_id": torch.arange(b) // 2},
    # question i has 1 + i % 2 weighted answers, flattened
    "albef_vqa": lambda b, size, g: {
        "text_input": [QUESTIONS[i % len(QUESTIONS)] for i in range(b)],
        "answer": [ANSWERS[(i + j) % len(ANSWERS)] for i in range(b) for j in range(1 + i % 2)],
        "weight": torch.tensor([1.0 / (1 + i % 2) for i in range(b) for _ in range(1 + i % 2)]),
        "n_answers": torch.tensor([1 + i % 2 for i in range(b)]),
    },
    "albef_classification": lambda b, size, g: {"label": torch.randint(0, 3, (b,), generator=g)},
    "albef_nlvr": lambda b, size, g: {
        "image0": torch.randn(b, 3, size, size, generator=g),
        "image1": torch.randn(b, 3, size, size, generator=g),
        "label": torch.randint(0, 2, (b,), generator=g),
    },
}


def make_samples(arch: str, batch: int) -> dict:
    g = torch.Generator().manual_seed(0)
    size = image_size(arch)
    samples = {
        "image": torch.randn(batch, 3, size, size, generator=g),
        "text_input": [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)],
    }
    if arch in ARCH_SAMPLES:
        samples.update(ARCH_SAMPLES[arch](batch, size, g))
    return samples


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
    vocab = len(model.tokenizer) if "generate" in model.TASK_METHODS and hasattr(model, "tokenizer") else None
    if vocab:  # a random-init text generator predicts ~uniformly over the vocabulary
        assert abs(loss.item() - math.log(vocab)) < 0.5, (loss.item(), math.log(vocab))
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    with_grad = [(n, p) for n, p in params if p.grad is not None]
    assert all(torch.isfinite(p.grad).all() for _, p in with_grad)
    nonzero = [n for n, p in with_grad if p.grad.abs().sum() > 0]
    assert len(nonzero) >= 0.9 * len(params), sorted({n for n, _ in params} - set(nonzero))


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_trains_under_bf16_autocast(arch):
    """``run.amp: auto`` (the default) trains under bf16 autocast on CPUs that support it: the loss
    and every gradient stay finite, and buffers the step writes (queues) keep their dtype."""
    torch.manual_seed(0)
    model = load_model(arch, "tiny")
    buffers = {n: b.dtype for n, b in model.named_buffers()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(make_samples(arch, 3)).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert {n: b.dtype for n, b in model.named_buffers()} == buffers


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


def _finite_float(t: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert isinstance(t, torch.Tensor) and tuple(t.shape) == shape, (getattr(t, "shape", t), shape)
    assert t.is_floating_point() and torch.isfinite(t).all()


def check_predict_answers(arch: str, model) -> None:
    samples = make_samples(arch, 3)
    samples["text_input"] = QUESTIONS
    generated = model.predict_answers(samples, inference_method="generate", max_len=5, min_len=1)
    assert isinstance(generated, list) and len(generated) == 3 and all(isinstance(a, str) for a in generated)
    ranked = model.predict_answers(samples, answer_list=ANSWERS, inference_method="rank", num_ans_candidates=3)
    assert len(ranked) == 3 and all(a in ANSWERS for a in ranked), ranked
    # the candidate list decides: with one candidate, it is every answer
    assert model.predict_answers(samples, answer_list=["green"], inference_method="rank",
                                 num_ans_candidates=1) == ["green"] * 3


def check_extract_features(arch: str, model) -> None:
    samples = make_samples(arch, 2)
    import dataclasses

    for mode in ("image", "text", "multimodal"):
        try:
            feats = model.extract_features(samples, mode=mode)
        except NotImplementedError:  # e.g. CLIP has no multimodal features; it must say so
            assert mode == "multimodal", f"{arch} must give {mode} features"
            continue
        tensors = {f.name: getattr(feats, f.name) for f in dataclasses.fields(feats)}
        given = {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)}
        assert given, f"{arch}.extract_features(mode={mode!r}) returned no tensors"
        for k, v in given.items():
            assert v.shape[0] == 2 and torch.isfinite(v).all(), (mode, k, v.shape)


def check_predict_class(arch: str, model) -> None:
    samples = make_samples(arch, 3)
    names = ["circle", "square", "triangle", "star"]
    scores = model.predict_class(samples, class_names=names)
    assert isinstance(scores, torch.Tensor) and scores.ndim == 2 and scores.shape[0] == 3
    assert torch.isfinite(scores).all()
    fewer = model.predict_class(samples, class_names=names[:2])
    if fewer.shape[1] != scores.shape[1]:  # zero-shot: one score per class name given
        assert (scores.shape[1], fewer.shape[1]) == (4, 2)
        torch.testing.assert_close(fewer, scores[:, :2], atol=1e-5, rtol=1e-4)


def check_encode_for_retrieval(arch: str, model) -> None:
    samples = make_samples(arch, 3)
    img = model.encode_for_retrieval(samples, "image")
    txt = model.encode_for_retrieval(samples, "text")
    for side in (img, txt):
        assert side.embeds.ndim == 2 and side.embeds.shape[0] == 3 and torch.isfinite(side.embeds).all()
        torch.testing.assert_close(side.embeds.norm(dim=-1), torch.ones(3), atol=1e-4, rtol=0)
        for k, v in side.states.items():
            assert v.shape[0] == 3, (k, v.shape)
    assert img.embeds.shape[1] == txt.embeds.shape[1]


def check_rerank(arch: str, model) -> None:
    samples = make_samples(arch, 3)
    img = model.encode_for_retrieval(samples, "image")
    txt = model.encode_for_retrieval(samples, "text")
    scores = model.rerank(img.states, txt.states)
    _finite_float(scores, (3,))
    # rows are pairs: scoring image 0 against every text equals the matching rows of the full call
    rows = torch.tensor([0, 0, 0])
    one = model.rerank({k: v[rows] for k, v in img.states.items()}, txt.states)
    torch.testing.assert_close(one[0], scores[0], atol=1e-5, rtol=1e-4)


TASK_METHOD_CHECKS = {
    "generate": check_generate,
    "predict_answers": check_predict_answers,
    "extract_features": check_extract_features,
    "predict_class": check_predict_class,
    "encode_for_retrieval": check_encode_for_retrieval,
    "rerank": check_rerank,
}


@pytest.mark.parametrize(
    "arch, method",
    [(a, m) for a in ARCHS for m in registry.get_model_class(a).TASK_METHODS],
)
def test_tiny_task_methods(arch, method):
    model = load_model(arch, "tiny", is_eval=True)
    TASK_METHOD_CHECKS[method](arch, model)
