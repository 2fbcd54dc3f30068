"""Quantizing the tiny vision-language model: which layers change, how close its outputs stay,
and the save -> load round trip."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lavis.common.errors import CheckpointError, ConfigError
from lavis.common.quant_schema import CalibrationConfig, QuantizationConfig
from lavis.models import load_model
from lavis.quantization.apply import PreScaledLinear, weight_bytes
from lavis.quantization.quantize import quantize_model
from lavis.quantization.storage import read_record, save_quantized


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _images(n: int, seed: int) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.rand(3, 32, 32, generator=g)] for _ in range(n)]


def conversations(n: int, seed: int) -> dict:
    words = ["red", "blue", "green", "circle", "square", "two", "yes", "no"]
    convs = [[{"role": "user", "content": f"<image>\nwhat is {words[(seed + i) % 8]}?"},
              {"role": "assistant", "content": words[(seed + 3 * i) % 8]}] for i in range(n)]
    return {"conversations": convs, "images": _images(n, seed)}


@pytest.fixture(scope="module")
def float_model():
    torch.manual_seed(0)
    return load_model("qwen2_vl", "tiny", is_eval=True)


def logits(model: nn.Module, batch: dict) -> torch.Tensor:
    inputs = model.batch_inputs(batch, "train")
    inputs.pop("labels")
    with torch.no_grad():
        return model.hf_model(**inputs).logits


def quantized(model: nn.Module, **settings) -> tuple[nn.Module, dict]:
    copy_ = copy.deepcopy(model)
    q = QuantizationConfig(**settings, calibration=CalibrationConfig(dataset="x", max_rows=512))
    calib = [conversations(4, seed=s) for s in range(2)]
    record = quantize_model(copy_, q, calib, lambda b: copy_(b))
    return copy_, record


# relative logit errors measured on this random model (2 CPU cores): rtn/gptq/awq w8a16 0.008/0.002/0.006,
# rtn/gptq/awq w4a16 g32 0.128/0.029/0.109, rtn/smoothquant w8a8 0.010/0.010, rtn w4a16 per channel 0.163
@pytest.mark.parametrize("method,scheme,group,bound", [
    ("rtn", "w8a16", 0, 0.02), ("gptq", "w8a16", 0, 0.02), ("gptq", "w4a16", 32, 0.06), ("awq", "w4a16", 32, 0.125),
    ("smoothquant", "w8a8", 0, 0.02), ("rtn", "w4a16", 0, 0.25),
])
def test_quantized_outputs_stay_close_to_the_float_ones(float_model, method, scheme, group, bound):
    model, record = quantized(float_model, method=method, scheme=scheme, group_size=group)
    held_out = conversations(4, seed=9)
    ref, out = logits(float_model, held_out), logits(model, held_out)
    error = ((out - ref).norm() / ref.norm()).item()
    assert 0 < error < bound, error
    assert len(record["layers"]) == 14  # 7 linear layers in each of the 2 decoder layers
    assert weight_bytes(model) < weight_bytes(float_model)


def test_only_targets_are_quantized_and_skip_layers_stay_float(float_model):
    model, record = quantized(float_model, method="awq", scheme="w4a16", group_size=32)
    lm = model.language_model
    q_proj = lm.layers[0].self_attn.q_proj
    assert isinstance(q_proj, PreScaledLinear) and type(q_proj.weight).__name__ == "IntxUnpackedToInt8Tensor"
    assert type(model.lm_head.weight) is nn.Parameter and model.lm_head.weight.dtype == torch.float32
    assert torch.equal(model.lm_head.weight, float_model.lm_head.weight)
    for name, p in model.vision_tower.named_parameters():
        assert type(p) is nn.Parameter, name  # the vision tower is not a default target
    model, record = quantized(float_model, method="rtn", scheme="w8a16",
                              targets=["language_model", "vision_tower"], skip_layers=["lm_head", "*.mlp.*"])
    names = set(record["layers"])
    assert "hf_model.model.visual.blocks.0.attn.qkv" in names
    assert not any(".mlp." in n for n in names)
    assert type(model.get_submodule("hf_model.model.visual.blocks.0.mlp.fc1").weight) is nn.Parameter
    assert {n for n in names if ".visual." in n} >= {"hf_model.model.visual.blocks.1.attn.proj"}


def test_save_then_load_gives_identical_outputs(float_model, tmp_path):
    model, record = quantized(float_model, method="smoothquant", scheme="w8a8")
    path = save_quantized(model, record, tmp_path / "model.safetensors")
    assert read_record(path)["method"] == "smoothquant" and read_record(path)["layers"] == record["layers"]
    loaded = load_model("qwen2_vl", "tiny", is_eval=True, checkpoint=path)
    batch = conversations(3, seed=4)
    assert torch.equal(logits(loaded, batch), logits(model, batch))
    prompts = {"conversations": [c[:1] for c in batch["conversations"]], "images": batch["images"]}
    assert loaded.generate(prompts, max_new_tokens=5) == model.generate(prompts, max_new_tokens=5)
    assert type(loaded.language_model.layers[1].mlp.down_proj.weight).__name__ == "Int8Tensor"


def test_a_file_that_does_not_fit_the_model_is_one_clear_error(float_model, tmp_path):
    model, record = quantized(float_model, method="rtn", scheme="w4a16", group_size=32)
    record["layers"]["hf_model.model.language_model.layers.5.mlp.up_proj"] = False
    path = save_quantized(model, record, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="layers.5.mlp.up_proj, which Qwen2VL does not have"):
        load_model("qwen2_vl", "tiny", checkpoint=path)


def test_a_group_size_that_does_not_divide_a_layer_is_a_config_error(float_model):
    with pytest.raises(ConfigError, match="group_size: 48 does not divide the inputs of .*q_proj \\(64 inputs\\)"):
        quantized(float_model, method="rtn", scheme="w4a16", group_size=48)


@pytest.mark.parametrize("arch,projector", [
    ("llava", ["hf_model.model.multi_modal_projector.linear_1", "hf_model.model.multi_modal_projector.linear_2"]),
    ("qwen2_vl", ["hf_model.model.visual.merger.mlp.0", "hf_model.model.visual.merger.mlp.2"]),
    ("qwen2_5_vl", ["hf_model.model.visual.merger.mlp.0", "hf_model.model.visual.merger.mlp.2"]),
])
def test_each_part_of_the_seam_can_be_targeted_in_every_family(arch, projector):
    torch.manual_seed(0)
    model = load_model(arch, "tiny", is_eval=True)
    ref = logits(model, conversations(2, seed=1))
    only = quantize_model(copy.deepcopy(model), QuantizationConfig(method="rtn", scheme="w8a16", targets=["projector"]))
    assert sorted(only["layers"]) == projector
    record = quantize_model(model, QuantizationConfig(method="rtn", scheme="w8a16",
                                                      targets=["language_model", "vision_tower", "projector"]))
    assert set(projector) < set(record["layers"]) and any(".language_model." in n for n in record["layers"])
    assert all(type(model.get_submodule(n).weight).__name__ == "IntxUnpackedToInt8Tensor" for n in record["layers"])
    out = logits(model, conversations(2, seed=1))
    assert 0 < ((out - ref).norm() / ref.norm()).item() < 0.03


def test_a_quantized_or_lora_model_is_refused_with_what_to_do(float_model):
    model, _ = quantized(float_model, method="rtn", scheme="w8a16")
    with pytest.raises(ConfigError, match="target layer\\(s\\) are quantized already .*; quantize the float model"):
        quantize_model(model, QuantizationConfig(method="rtn", scheme="w8a16"))
    from lavis.models.vlm.adapters import apply_lora

    lora = copy.deepcopy(float_model)
    apply_lora(lora, {"r": 4})
    with pytest.raises(ConfigError, match="has LoRA adapters; merge them into its weights first"):
        quantize_model(lora, QuantizationConfig(method="rtn", scheme="w8a16"))
