"""The ``benchmark`` task: scores of scripted replies on the fixture files match hand-computed
values (MME's acc+ rule, MMBench's circular rule, through the answer-reading rules), multiple
choice by likelihood learns what SFT on a benchmark's train split teaches, and ``evaluate.py``
runs all five benchmarks on the tiny model, writing a JSON report per split and a table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.common.config import run_schema_for
from lavis.tasks.benchmarks.task import SCORERS, BenchmarkTask
from tests.unit.datasets.benchmark_formats import BENCHMARK_LAYOUTS, benchmark_fixture


@pytest.fixture(autouse=True)
def _offline_one_thread(monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


def make_task(tmp_path: Path, **run: Any) -> BenchmarkTask:
    return BenchmarkTask(run_schema_for("benchmark")(output_dir=str(tmp_path / "out"), **run))


def dataset(name: str, tmp_path: Path) -> Any:
    cls = registry.get_builder_class(name)
    cfg = OmegaConf.merge(cls.default_config().datasets[name], benchmark_fixture(name)(tmp_path))
    return next(iter(cls(cfg).build_datasets().values()))


class ScriptedModel:
    """Answers each question with the reply scripted for the first key found in its user turn."""

    def __init__(self, script: dict[str, list[str]]):
        self.script = {k: list(v) for k, v in script.items()}

    def process_batch_conv(self, *args: Any, **kwargs: Any) -> None:  # marks a model of the VLM seam
        raise AssertionError("not used")

    def eval(self) -> "ScriptedModel":
        return self

    def generate(self, samples: dict, **kwargs: Any) -> list[str]:
        out = []
        for conv in samples["conversations"]:
            text = conv[-1]["content"]
            key = next(k for k in self.script if k in text)
            out.append(self.script[key].pop(0))
        return out


def evaluate(task: BenchmarkTask, model: Any, data: Any, split: str) -> dict:
    loader = [data.collater([data[i] for i in range(s, min(s + 3, len(data)))]) for s in range(0, len(data), 3)]
    return task.after_evaluation(task.evaluation(model, loader, progress=False), split, 0, data)


def test_mme_scores_of_scripted_replies_follow_the_acc_plus_rule(tmp_path, capsys):
    task = make_task(tmp_path)
    model = ScriptedModel({
        "train": ["Yes"], "bed": ["No."],  # image 6040: both right
        "dog": ["Yes, it is"], "cat": ["yes"],  # image 44279: the first wrong (answer No)
        "Leonardo": ["Yes"], "Monet": ["I cannot tell"],  # artwork: "other" is wrong
        "print 3": ["No, it prints 4"], "print 5": ["No"],  # code_reasoning: first wrong
    })
    metrics = evaluate(task, model, dataset("mme", tmp_path), "test")
    # existence: acc 3/4, acc+ 1/2 -> 125; artwork: 1/2, 0/1 -> 50; code_reasoning: 1/2, 0/1 -> 50
    assert metrics == {"perception": 175.0, "cognition": 50.0, "total": 225.0, "agg_metrics": 225.0}
    report = json.loads((tmp_path / "out" / "result" / "mme_test.json").read_text())
    assert report["subtasks"]["existence"] == {"acc": 75.0, "acc_plus": 50.0, "score": 125.0, "questions": 4}
    assert {p["id"]: p["prediction"] for p in report["predictions"]}["artwork/10002/1"] == "other"
    table = capsys.readouterr().out
    assert "mme / test" in table and "existence" in table and "125.00" in table


def test_mmbench_counts_a_question_only_when_every_circular_copy_is_right(tmp_path):
    task = make_task(tmp_path)
    # "a cat" names the right option wherever the rotation put it; "B" is right only unrotated
    model = ScriptedModel({"animal": ["It is a cat"] * 3, "colour": ["B", "B"]})
    metrics = evaluate(task, model, dataset("mmbench", tmp_path), "dev")
    assert metrics["circular_accuracy"] == 50.0 and metrics["vanilla_accuracy"] == 100.0
    report = json.loads((tmp_path / "out" / "result" / "mmbench_dev.json").read_text())
    assert report["subtasks"]["color"]["circular_accuracy"] == 0.0
    assert [p["prediction"] for p in report["predictions"] if p["group"] == "0"] == ["A", "C", "B"]


def test_a_split_that_is_no_benchmark_is_named_in_the_error(tmp_path):
    with pytest.raises(ValueError, match=r"split 'val': the data set \(list\) is not a benchmark \(mme, pope, mmbench"):
        make_task(tmp_path).after_evaluation([], "val", 0, [])


def test_bad_run_values_are_one_config_error_with_the_choices():
    from lavis.common.config import Config

    cfg = {"model": {"arch": "llava", "model_type": "tiny"}, "datasets": {"mmbench": {}},
           "run": {"task": "benchmark", "mc_method": "logits", "likelihood_target": "both", "max_new_tokens": 0}}
    with pytest.raises(ConfigError) as err:
        Config.from_dict(cfg)
    text = str(err.value)
    assert "run.mc_method: 'logits' is not one of generate, likelihood" in text
    assert "run.likelihood_target: 'both' is not one of letter, text" in text and "run.max_new_tokens" in text


def test_option_likelihoods_learn_what_sft_on_the_train_split_teaches(tmp_path):
    from lavis.models import load_model

    torch.manual_seed(0)
    model = load_model("llava", "tiny")
    data = dataset("scienceqa_img", tmp_path)  # the train split: answers "square" (of 2) and "yellow" (of 4)
    batch = data.collater([data[0], data[1]])
    # the tiny word-level vocabulary has no capital letters, so the option texts are scored
    task = make_task(tmp_path, mc_method="likelihood", likelihood_target="text")
    conv = {"conversations": [task.conversation(r) for r in task.records(batch)], "images": batch["images"]}
    options = batch["options"]

    before = model.option_loglikelihoods(conv, options)
    # each score is the summed log-probability of the reply tokens, as forward computes them
    replies = [[*c, {"role": "assistant", "content": o[1]}] for c, o in zip(conv["conversations"], options)]
    out = model({"conversations": replies, "images": batch["images"], "output_token_logps": True})
    assert torch.allclose(torch.stack([s[1] for s in before]), out.extras["token_logps"].sum(-1), atol=1e-4)

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(10):
        loss = task.train_step(model, batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.option_loglikelihoods(conv, options, batch_size=4)
    assert [int(s.argmax()) for s in after] == [1, 3]
    assert after[0][1] > before[0][1] and after[1][3] > before[1][3]
    results = task.valid_step(model, batch)
    assert [r["prediction"] for r in results] == ["B", "D"] and all(r["correct"] for r in results)
    logps, greedy = model.reply_loglikelihoods(conv["conversations"], batch["images"], ["square", "red"])
    assert greedy.tolist() == [True, False]


def test_evaluate_py_runs_every_benchmark_on_the_tiny_model(tmp_path, capsys, monkeypatch):
    """The shipped configs/benchmarks/tiny_all.yaml, with the fixtures laid out in the cache root
    where the download commands put the real files."""
    from lavis.cli import evaluate_main
    from tests.unit.datasets.real_formats import write_files

    cache = tmp_path / "cache"
    for layout in BENCHMARK_LAYOUTS.values():
        write_files(cache, layout())
    monkeypatch.setenv("LAVIS_CACHE_HOME", str(cache))
    config = Path(__file__).resolve().parents[3] / "configs" / "benchmarks" / "tiny_all.yaml"
    metrics = evaluate_main(["--cfg-path", str(config), "--options", f"run.output_dir={tmp_path / 'out'}",
                             "run.batch_size_eval=4", "run.max_new_tokens=3", "run.progress_bar=false",
                             "run.tensorboard=false"])
    assert set(metrics) == {"mme/test", "pope/test", "mmbench/dev", "scienceqa_img/test", "textvqa/val"}
    table = capsys.readouterr().out
    sizes = {"mme": 8, "pope": 6, "mmbench": 5, "scienceqa_img": 2, "textvqa": 2}
    for key, values in metrics.items():
        name, split = key.split("/")
        report = json.loads((tmp_path / "out" / "result" / f"{name}_{split}.json").read_text())
        assert len(report["predictions"]) == sizes[name] and report["subtasks"]
        scorer, agg = SCORERS[name]
        assert scorer(report["predictions"])[0] == report["metrics"]  # the report rescores to its numbers
        assert values["agg_metrics"] == report["metrics"][agg] and f"{name} / {split}" in table
    assert set(json.loads((tmp_path / "out" / "result" / "pope_test.json").read_text())["subtasks"]) == {
        "random", "popular", "adversarial"}
