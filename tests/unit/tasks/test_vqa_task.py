"""VQA task: both answer modes reach the model as the contract says, per-question VQA accuracy,
GQA exact match, A-OKVQA direct answer and multiple choice, result files and run keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch
from torch.utils.data import DataLoader

from lavis.common.config import run_schema_for
from lavis.common.errors import ConfigError
from lavis.datasets.torch_datasets.media_dataset import collate_with_lists
from lavis.tasks.vqa import VQATask


class ScriptedVQA(torch.nn.Module):
    """Answers from a table keyed by question (generate) or the candidate listed first in
    ``prefer`` (rank); records every call."""

    def __init__(self, answers: dict[str, str], prefer: Sequence[str] = ()):
        super().__init__()
        self.answers, self.prefer, self.calls = answers, list(prefer), []

    def predict_answers(self, samples, answer_list=None, inference_method="generate", num_ans_candidates=128, **kw):
        self.calls.append({"method": inference_method, "answer_list": answer_list, "k": num_ans_candidates, **kw})
        if inference_method == "rank":
            return [min(answer_list, key=lambda a: self.prefer.index(a) if a in self.prefer else 99) for _ in samples["text_input"]]
        return [self.answers[q] for q in samples["text_input"]]


class QuestionSet(torch.utils.data.Dataset):
    def __init__(self, items: list[dict], answer_list: list[str] | None = None):
        self.items, self.answer_list = items, answer_list

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": torch.zeros(3, 2, 2), "instance_id": str(i), **self.items[i]}

    def collater(self, samples: list[dict]) -> dict[str, Any]:
        return collate_with_lists(samples, ("answers", "choices"))


def make_task(tmp_path: Path, **run: Any) -> VQATask:
    return VQATask(run_schema_for("vqa")(output_dir=str(tmp_path), **run))


def run_eval(task: VQATask, model, data: QuestionSet, batch_size: int = 2) -> tuple[list[dict], dict]:
    rows = task.evaluation(model, DataLoader(data, batch_size=batch_size, collate_fn=data.collater), progress=False)
    return rows, task.after_evaluation(rows, "val", 1, data)


VQAV2 = [
    {"question_id": 1, "text_input": "what color?", "answers": ["red"] * 2 + ["blue"] * 8},
    {"question_id": 2, "text_input": "how many?", "answers": ["two"] * 10},
    {"question_id": 3, "text_input": "is it?", "answers": ["yes"] * 3 + ["no"] * 7},
]


def test_generate_mode_scores_vqa_accuracy(tmp_path):
    model = ScriptedVQA({"what color?": "Red", "how many?": "2", "is it?": "no"})
    task = make_task(tmp_path, num_beams=2, max_len=7, min_len=1)
    rows, metrics = run_eval(task, model, QuestionSet(VQAV2))
    # red: 2 of 10 -> 0.6; "2" == "two" after normalisation -> 1; no: 7 of 10 -> 1
    assert [r["accuracy"] for r in rows] == pytest.approx([0.6, 1.0, 1.0])
    assert metrics["accuracy"] == metrics["agg_metrics"] == pytest.approx(100 * 2.6 / 3)
    assert model.calls[0] == {"method": "generate", "answer_list": None, "k": 128, "num_beams": 2, "max_len": 7, "min_len": 1}
    assert json.loads((tmp_path / "result" / "val_epoch1.json").read_text()) == [
        {"question_id": 1, "answer": "Red"}, {"question_id": 2, "answer": "2"}, {"question_id": 3, "answer": "no"}]
    scored = json.loads((tmp_path / "result" / "val_epoch1_scored.json").read_text())
    assert scored[0]["accuracy"] == pytest.approx(0.6)


def test_rank_mode_uses_the_split_answer_list_or_the_run_key(tmp_path):
    model = ScriptedVQA({}, prefer=["blue", "yes", "2"])
    task = make_task(tmp_path, inference_method="rank", num_ans_candidates=2)
    rows, metrics = run_eval(task, model, QuestionSet(VQAV2, answer_list=["blue", "2", "cat"]), batch_size=3)
    assert [r["answer"] for r in rows] == ["blue", "blue", "blue"]
    assert metrics["accuracy"] == pytest.approx(100 * (1.0 + 0 + 0) / 3)
    assert model.calls[0]["answer_list"] == ["blue", "2", "cat"] and model.calls[0]["k"] == 2
    own = tmp_path / "answers.json"
    own.write_text(json.dumps(["yes", "2"]))
    task = make_task(tmp_path, inference_method="rank", answer_list=str(own))
    model.calls.clear()
    rows, _ = run_eval(task, model, QuestionSet(VQAV2, answer_list=["blue"]))
    assert [r["answer"] for r in rows] == ["yes", "yes", "yes"] and model.calls[0]["k"] == 2  # capped at the list


def test_generate_settings_reach_only_models_that_take_them(tmp_path):
    class Greedy(torch.nn.Module):  # like ALBEF: no num_beams
        def predict_answers(self, samples, answer_list=None, inference_method="generate", num_ans_candidates=128,
                            max_len=10, min_len=1):
            self.got = (max_len, min_len)
            return ["yes"] * len(samples["text_input"])

    model = Greedy()
    _, metrics = run_eval(make_task(tmp_path, num_beams=5, max_len=4, min_len=2), model, QuestionSet(VQAV2))
    assert model.got == (4, 2) and metrics["accuracy"] == pytest.approx(100 * 0.9 / 3)


def test_rank_mode_without_an_answer_list_says_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match="set run.answer_list"):
        run_eval(make_task(tmp_path, inference_method="rank"), ScriptedVQA({}), QuestionSet(VQAV2))


def test_gqa_single_answer_is_exact_match(tmp_path):
    items = [{"question_id": "g1", "text_input": "q1", "answers": ["the left"]},
             {"question_id": "g2", "text_input": "q2", "answers": ["table"]}]
    _, metrics = run_eval(make_task(tmp_path), ScriptedVQA({"q1": "Left.", "q2": "tables"}), QuestionSet(items))
    assert metrics["accuracy"] == pytest.approx(50.0)


def test_aokvqa_direct_answer_and_multiple_choice(tmp_path):
    items = [
        {"question_id": "a", "text_input": "q1", "answers": ["dog"] * 4 + ["cat"] * 6,
         "choices": ["dog", "cat", "cow", "hen"], "correct_choice_idx": 1},
        {"question_id": "b", "text_input": "q2", "answers": ["cow"] * 10,
         "choices": ["hen", "cow", "pig", "ant"], "correct_choice_idx": 1},
    ]
    model = ScriptedVQA({"q1": "dog", "q2": "pig"}, prefer=["dog", "cow"])
    rows, metrics = run_eval(make_task(tmp_path), model, QuestionSet(items))
    assert metrics["accuracy"] == pytest.approx(50.0)  # dog: 4 of 10 -> 1; pig -> 0
    assert [r["mc_answer"] for r in rows] == ["dog", "cow"]
    assert metrics["mc_accuracy"] == pytest.approx(50.0)  # wrong on a (cat is right), right on b
    mc_calls = [c for c in model.calls if c["method"] == "rank"]
    assert [c["answer_list"] for c in mc_calls] == [items[0]["choices"], items[1]["choices"]] and mc_calls[0]["k"] == 4
    _, metrics = run_eval(make_task(tmp_path, multiple_choice=False), model, QuestionSet(items))
    assert "mc_accuracy" not in metrics


def test_split_without_answers_writes_answers_and_scores_nothing(tmp_path):
    items = [{"question_id": 7, "text_input": "q"}]
    rows, metrics = run_eval(make_task(tmp_path), ScriptedVQA({"q": "yes"}), QuestionSet(items))
    assert metrics == {"agg_metrics": None} and rows == [{"question_id": 7, "answer": "yes"}]


def test_run_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError) as err:
        make_task(tmp_path, inference_method="beam", min_len=5, max_len=3, answer_list=str(tmp_path / "none.json"))
    text = str(err.value)
    assert "run.inference_method: 'beam' is not one of generate, rank" in text
    assert "run.min_len: 5 is above run.max_len 3" in text and "run.answer_list" in text


def test_a_model_without_predict_answers_is_a_clear_error(tmp_path):
    with pytest.raises(TypeError, match="has no predict_answers"):
        run_eval(make_task(tmp_path), torch.nn.Linear(1, 1), QuestionSet(VQAV2))
