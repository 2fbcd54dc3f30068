"""``quantize.py`` end to end on the tiny model and fixture data, and its config check."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from lavis.common.config import Config
from lavis.common.errors import ConfigError


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def experiment(tmp_path: Path, **quantization) -> dict:
    shapes = {"build_info": {"storage": str(tmp_path / "shapes"),
                             "generator": {"image_size": 32, "num_train": 6, "num_val": 2, "num_test": 3}}}
    return {
        "model": {"arch": "qwen2_vl", "model_type": "tiny"},
        "datasets": {"shapes_vqa_chat": shapes},
        "run": {"task": "sft", "max_new_tokens": 3, "output_dir": str(tmp_path / "out"), "test_splits": ["test"],
                "batch_size_eval": 8},
        "quantization": {"method": "gptq", "scheme": "w4a16", "group_size": 32, "speed_samples": 2,
                         "calibration": {"dataset": "shapes_vqa_chat", "num_samples": 4, "batch_size": 2},
                         **quantization},
    }


def write(tmp_path: Path, cfg: dict) -> str:
    path = tmp_path / "quantize.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_quantize_py_reports_saves_and_the_saved_config_loads_the_quantized_model(tmp_path):
    import quantize
    from lavis.cli import evaluate_main

    report = quantize.main(["--cfg-path", write(tmp_path, experiment(tmp_path))])
    out = tmp_path / "out"
    assert json.loads((out / "quantization_report.json").read_text())["quantized"]["layers"] == 14
    before, after = report["float"], report["quantized"]
    assert after["weight_bytes"] < before["weight_bytes"] and after["seconds"] > 0
    assert before["tokens_per_s"] > 0 and after["tokens_per_s"] > 0
    scores = after["scores"]["shapes_vqa_chat/test"]
    assert set(before["scores"]) == {"shapes_vqa_chat/test"} and 0.0 <= scores["answer_accuracy"] <= 1.0
    # the written config loads the quantized weights: evaluate.py scores them exactly as quantize.py did
    again = evaluate_main(["--cfg-path", report["config"]])
    assert again["shapes_vqa_chat/test"]["answer_accuracy"] == scores["answer_accuracy"]
    answers = json.loads((out / "result" / "test_epochquantized.json").read_text())["results"]
    reread = json.loads(next((out / "eval" / "result").glob("test_*.json")).read_text())["results"]
    assert [r["prediction"] for r in reread] == [r["prediction"] for r in answers]


def test_quantize_py_without_a_quantization_section_says_what_to_add(tmp_path, monkeypatch, capsys):
    import quantize
    from lavis.cli import console

    cfg = experiment(tmp_path)
    del cfg["quantization"]
    monkeypatch.setattr(sys, "argv", ["quantize.py", "--cfg-path", write(tmp_path, cfg)])
    with pytest.raises(SystemExit) as e:
        console(quantize.main)
    assert e.value.code == 2
    assert "quantization: missing; quantize.py needs a quantization section" in capsys.readouterr().err


def test_a_calibration_split_the_data_set_lacks_names_the_splits_it_has(tmp_path):
    import quantize

    cfg = experiment(tmp_path, calibration={"dataset": "shapes_vqa_chat", "split": "dev"})
    with pytest.raises(ConfigError, match="calibration.split: shapes_vqa_chat has no split 'dev'; it has train, val, test"):
        quantize.main(["--cfg-path", write(tmp_path, cfg)])


def test_every_bad_quantization_key_is_reported_in_one_error(tmp_path):
    cfg = experiment(tmp_path, method="gtpq", scheme="w3a16", group_size=-1, targets=["vision"],
                     options={"damp": "high"}, calibration={"dataset": "coco", "num_samples": 0})
    cfg["quantization"]["skip_layer"] = ["lm_head"]
    with pytest.raises(ConfigError) as e:
        Config.from_dict(cfg)
    problems = "\n".join(e.value.problems)
    assert "quantization.method: unknown quantization method 'gtpq'; did you mean 'gptq'?" in problems
    assert "quantization.scheme: 'w3a16' is not one of w4a16, w8a16, w8a8" in problems
    assert "quantization.group_size: must be at least 0, got -1" in problems
    assert "quantization.targets: 'vision' is not one of language_model, vision_tower, projector" in problems
    assert "quantization.calibration.dataset: 'coco'; name a data set of the datasets section (shapes_vqa_chat)" in problems
    assert "quantization.calibration.num_samples: must be at least 1, got 0" in problems
    assert "quantization.skip_layer" in problems and "skip_layers" in problems  # unknown key, close match named


@pytest.mark.parametrize("settings,message", [
    ({"method": "gptq", "scheme": "w8a8", "group_size": 0}, "quantization.scheme: gptq does not do w8a8; it does w4a16, w8a16"),
    ({"method": "smoothquant", "scheme": "w8a8", "group_size": 32}, "w8a8 needs group_size 0 and symmetric true"),
    ({"method": "awq", "options": {"alpha": 0.5}}, "quantization.options.alpha: unknown key 'alpha'. Valid keys: grid_points"),
    ({"method": "smoothquant", "scheme": "w8a8", "group_size": 0, "options": {"alpha": "half"}},
     "quantization.options.alpha: expected float"),
])
def test_method_scheme_and_options_are_checked_against_the_method(tmp_path, settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config.from_dict(experiment(tmp_path, **settings))


def test_a_good_section_becomes_a_typed_config_with_defaults(tmp_path):
    cfg = Config.from_dict(experiment(tmp_path, options={"damp": 0.05}))
    q = cfg.quantization
    assert q is not None and q.method == "gptq" and q.options == {"damp": 0.05}
    assert q.targets == ["language_model"] and q.skip_layers == ["lm_head"]
    assert q.calibration.dataset == "shapes_vqa_chat" and q.calibration.split == "train"


def test_the_report_holds_benchmark_scores_before_and_after(tmp_path, monkeypatch):
    """quantize.py with the benchmark task: POPE fixture files, calibrated on the benchmark's own
    questions (train_step fits the reference replies)."""
    import quantize
    from tests.unit.datasets.benchmark_formats import benchmark_fixture

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = {
        "model": {"arch": "qwen2_vl", "model_type": "tiny"},
        "datasets": {"pope": benchmark_fixture("pope")(tmp_path)},
        "run": {"task": "benchmark", "max_new_tokens": 2, "output_dir": str(tmp_path / "out"),
                "test_splits": ["test"], "batch_size_eval": 8},
        "quantization": {"method": "awq", "scheme": "w4a16", "group_size": 32, "speed_samples": 2,
                         "calibration": {"dataset": "pope", "split": "test", "num_samples": 4, "batch_size": 2}},
    }
    report = quantize.main(["--cfg-path", write(tmp_path, cfg)])
    for side in ("float", "quantized"):
        scores = report[side]["scores"]["pope/test"]
        assert {"accuracy", "f1", "yes_ratio", "agg_metrics"} <= set(scores) and report[side]["tokens_per_s"] > 0
