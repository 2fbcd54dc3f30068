"""The post-training tasks' evaluation and checks, on a stand-in model with known answers."""

from __future__ import annotations

import json

import pytest
import torch

from lavis.models.base_model import ModelOutput
from lavis.tasks.post_training.common import summarize
from lavis.tasks.post_training.dpo import DpoRunConfig, DpoTask
from lavis.tasks.post_training.grpo import GrpoRunConfig, GrpoTask
from lavis.tasks.post_training.sft import SftRunConfig, SftTask


class StubVLM(torch.nn.Module):
    """Answers ``answers`` in order; scores a reply by its length (so the longer reply is preferred)."""

    def __init__(self, answers):
        super().__init__()
        self.answers = list(answers)
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def process_batch_conv(self, *a, **k):  # marks it as a seam model
        raise AssertionError("not used")

    class tokenizer:  # noqa: N801 - decodes the "ids" generate_ids returns
        @staticmethod
        def batch_decode(ids, skip_special_tokens=True):
            return list(ids)

    def generate_ids(self, samples, **kw):
        assert kw["do_sample"] is True
        return {}, ["<answer> red </answer>", "blue"][: len(samples["conversations"])], None

    def generate(self, samples, **kw):
        self.seen.append(kw)
        n = len(samples["conversations"])
        out, self.answers = self.answers[:n], self.answers[n:]
        return out

    def forward(self, samples):
        scores = torch.tensor([[float(len(c[-1]["content"]))] for c in samples["conversations"]])
        return ModelOutput(loss=self.w * 0, extras={"token_logps": scores, "loss_mask": torch.ones_like(scores)})


def chat_batch():
    convs = [[{"from": "human", "value": "<image>\nwhat color is the circle?"}, {"from": "gpt", "value": "red"}],
             [{"from": "human", "value": "<image>\nhow many shapes are there?"}, {"from": "gpt", "value": "two"}],
             [{"from": "human", "value": "<image>\nis there a star?"}, {"from": "gpt", "value": "no"}]]
    return {"id": [3, 1, 2], "conversations": convs, "images": [[], [], []], "answer": ["red", "two", "no"],
            "question_type": ["color", "count", "exists"]}


def test_sft_evaluation_scores_generated_answers(tmp_path):
    task = SftTask(SftRunConfig(max_new_tokens=3))
    task.result_dir = tmp_path
    model = StubVLM(["Red", "three", "no."])
    results = task.valid_step(model, chat_batch())
    assert model.seen[0]["max_new_tokens"] == 3
    assert [r["correct"] for r in results] == [True, False, True]
    metrics = task.after_evaluation(task.merge_results([results]), "val", 0, None)
    assert metrics["answer_accuracy"] == pytest.approx(2 / 3) and metrics["agg_metrics"] == metrics["answer_accuracy"]
    assert metrics["accuracy/count"] == 0.0 and metrics["accuracy/color"] == 1.0
    saved = json.loads((tmp_path / "val_epoch0.json").read_text())
    assert [r["id"] for r in saved["results"]] == [1, 2, 3] and saved["metrics"]["answer_accuracy"] == metrics["answer_accuracy"]


def test_box_answers_are_scored_by_iou(tmp_path):
    task = SftTask(SftRunConfig(max_new_tokens=12))
    task.result_dir = tmp_path
    batch = chat_batch()
    batch["answer"] = ["[0, 0, 10, 10]", "[0, 0, 10, 10]", "no"]
    batch["question_type"] = ["locate", "locate", "exists"]
    # IoU 0.5 (correct: the usual referring-expression rule), IoU 0.25, and a word answer
    results = task.valid_step(StubVLM(["[ 0 , 0 , 10 , 5 ]", "[0, 0, 5, 5]", "no"]), batch)
    assert [r["correct"] for r in results] == [True, False, True]
    assert [r.get("iou") for r in results] == [0.5, 0.25, None]
    metrics = task.after_evaluation(results, "val", 0, None)
    assert metrics["mean_iou"] == pytest.approx(0.375) and metrics["accuracy/locate"] == 0.5
    assert "mean_iou" not in summarize([results[2]])


def test_sft_refuses_a_batch_without_conversations():
    with pytest.raises(KeyError, match="sft needs conversation records"):
        SftTask(SftRunConfig()).train_step(StubVLM([]), {"prompt": []})


def test_dpo_evaluation_reports_preference_accuracy(tmp_path):
    task = DpoTask(DpoRunConfig())
    task.result_dir = tmp_path
    batch = {"id": [1, 2, 3], "prompt": [[{"from": "human", "value": "q?"}]] * 3, "images": [[], [], []],
             "chosen": ["three", "no", "red"], "rejected": ["one", "yes", "blue"],
             "question_type": ["count", "exists", "color"]}
    results = task.valid_step(StubVLM(["three", "yes", "blue"]), batch)
    # the stub prefers longer replies: "three" > "one" but "no" < "yes" and "red" < "blue"
    assert [r["prefers_chosen"] for r in results] == [True, False, False]
    metrics = task.after_evaluation(results, "val", 1, None)
    assert metrics["preference_accuracy"] == pytest.approx(1 / 3) and metrics["agg_metrics"] == metrics["preference_accuracy"]
    assert metrics["answer_accuracy"] == pytest.approx(1 / 3)
    # per question type, so that a type the model cannot tell apart shows next to the ones it can
    assert {k: v for k, v in metrics.items() if k.startswith("preference_accuracy/")} == {
        "preference_accuracy/color": 0.0, "preference_accuracy/count": 1.0, "preference_accuracy/exists": 0.0}


def test_grpo_evaluation_reports_mean_reward_and_refuses_a_chat_split(tmp_path):
    task = GrpoTask(GrpoRunConfig(rewards=["answer_accuracy", "format"], reward_weights=[1.0, 0.5]))
    task.result_dir = tmp_path
    batch = {"id": [1, 2], "prompt": [[{"from": "human", "value": "q?"}]] * 2, "images": [[], []],
             "solution": ["red", "blue"]}
    results = task.valid_step(StubVLM(["<answer> red </answer>", "green"]), batch)
    assert [r["correct"] for r in results] == [True, False]  # greedy answers
    assert [r["sampled"] for r in results] == ["<answer> red </answer>", "blue"]  # sampled ones carry the reward
    assert [r["reward"] for r in results] == [1.5, 1.0]
    assert task.after_evaluation(results, "val", 0, None)["mean_reward"] == 1.25
    with pytest.raises(KeyError, match="gives no mean_reward"):
        task.after_evaluation([{"id": 1, "correct": True}], "val", 0, None)


def test_summarize_needs_results():
    with pytest.raises(ValueError, match="split is empty"):
        summarize([])


def test_run_checks():
    assert GrpoTask.validate_run({"num_generations": 1, "rewards": ["answer_accuracy"], "reward_weights": [1, 2]}) == [
        "run.reward_weights: 2 weights for 1 rewards", "run.num_generations: must be at least 2 (a group), got 1"]
    assert SftTask.validate_run({"max_new_tokens": 0}) == ["run.max_new_tokens: must be at least 1, got 0"]


def test_mean_reward_averages_eval_samples_completions_per_prompt(tmp_path):
    class Sampler(StubVLM):
        def generate_ids(self, samples, **kw):
            self.seen.append([turns[0]["value"] for turns in samples["conversations"]])
            return {}, ["red", "green", "no", "blue"], None

    task = GrpoTask(GrpoRunConfig(eval_samples=2))
    batch = {"id": [1, 2], "prompt": [[{"from": "human", "value": "q1?"}], [{"from": "human", "value": "q2?"}]],
             "images": [[], []], "solution": ["red", "blue"]}
    model = Sampler(["red", "blue"])
    results = task.valid_step(model, batch)
    assert model.seen[-1] == ["q1?", "q1?", "q2?", "q2?"]  # two samples of each prompt
    assert [r["sampled"] for r in results] == [["red", "green"], ["no", "blue"]]
    assert [r["reward"] for r in results] == [0.5, 0.5]
    assert GrpoTask.validate_run({"eval_samples": 0, "rewards": ["answer_accuracy"]}) == [
        "run.eval_samples: must be at least 1, got 0"]
