"""Visual question answering: train with the model's answer loss, evaluate answers with the VQA
accuracy (VQAv2, OK-VQA, A-OKVQA direct answers), exact match (GQA, one reference answer) and
A-OKVQA multiple choice.

Answers come from ``model.predict_answers`` in one of two modes (``run.inference_method``):
``generate`` (free text: ``num_beams``, ``max_len``, ``min_len``, passed on where the model's
``predict_answers`` takes them: ALBEF decodes greedily and has no ``num_beams``) or ``rank`` (the best of the
answer list: ``run.answer_list`` if set, else the eval split's own, e.g. VQAv2's
``answer_list.json``; ``num_ans_candidates`` of them are scored in full). Every answer is scored
with :func:`lavis.tasks.metrics.vqa.vqa_accuracy` against the question's reference answers (with a
single reference, as in GQA, that is exact match after normalisation). Questions that carry
``choices`` (A-OKVQA) are also answered by ranking their own choices (``run.multiple_choice``),
on the image features the batch's answers computed (the vision encoder runs once per image).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import torch
from torch.utils.data import DataLoader

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.common.run_schema import RunConfig
from lavis.tasks.base_task import BaseTask
from lavis.tasks.feature_cache import reuse_image_features
from lavis.tasks.metrics.vqa import vqa_accuracy
from lavis.tasks.task_utils import accepted_kwargs, batch_ids, find_dataset, task_model, write_results

INFERENCE_METHODS = ("generate", "rank")


@dataclass
class VQARunConfig:
    """Run keys of the VQA task (next to the common ones of ``RunConfig``)."""

    inference_method: str = "generate"  # "generate" (free text) or "rank" (pick from the answer list)
    num_beams: int = 3  # beam width of generate mode
    max_len: int = 10  # longest generated answer, in tokens
    min_len: int = 1  # shortest generated answer, in tokens
    num_ans_candidates: int = 128  # rank mode: answers of the list scored in full per question
    answer_list: Optional[str] = None  # rank mode: a JSON list of answers (default: the eval split's own)
    multiple_choice: bool = True  # also rank each question's own choices where it has them (A-OKVQA)


@dataclass
class VQARun(VQARunConfig, RunConfig):
    """The whole run section of a VQA config, for type annotations."""


def _one(samples: dict[str, Any], i: int) -> dict[str, Any]:
    """Item ``i`` of a collated batch, as a batch of one."""
    out: dict[str, Any] = {}
    for key, value in samples.items():
        out[key] = value[i : i + 1] if isinstance(value, (torch.Tensor, list, tuple)) else value
    return out


@registry.register_task("vqa")
class VQATask(BaseTask):
    """Answer each question; score VQA accuracy (or exact match) and A-OKVQA multiple choice.
    Metrics, in percent: ``accuracy`` (= ``agg_metrics``) and, where questions have choices,
    ``mc_accuracy``. Splits without answers (test-dev) only write the answers."""

    run_schema = VQARunConfig
    result_id_key = "question_id"

    def __init__(self, run_cfg: VQARun):
        super().__init__(run_cfg)
        problems = self.validate_run(dataclasses.asdict(run_cfg))
        if problems:
            raise ConfigError(problems)
        self.cfg = run_cfg
        self.answer_list: list[str] | None = None
        if run_cfg.answer_list is not None:
            from lavis.datasets.torch_datasets.media_dataset import read_json

            answers = read_json(run_cfg.answer_list)
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers) or not answers:
                raise ConfigError([f"run.answer_list: {run_cfg.answer_list} must hold a non-empty JSON list of answer strings"])
            self.answer_list = answers
        self._split_answers: list[str] | None = None

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        v = {**dataclasses.asdict(VQARunConfig()), **{k: run[k] for k in VQARunConfig.__dataclass_fields__ if k in run}}
        problems = []
        if v["inference_method"] not in INFERENCE_METHODS:
            problems.append(f"run.inference_method: {v['inference_method']!r} is not one of {', '.join(INFERENCE_METHODS)}")
        for key, low in (("num_beams", 1), ("max_len", 1), ("min_len", 0), ("num_ans_candidates", 1)):
            if isinstance(v[key], int) and v[key] < low:
                problems.append(f"run.{key}: must be at least {low}, got {v[key]}")
        if isinstance(v["min_len"], int) and isinstance(v["max_len"], int) and v["min_len"] > v["max_len"]:
            problems.append(f"run.min_len: {v['min_len']} is above run.max_len {v['max_len']}")
        if v["answer_list"] is not None and not Path(str(v["answer_list"])).is_file():
            problems.append(f"run.answer_list: {v['answer_list']} is not a file; give a JSON list of answers or leave it "
                            "unset to use the eval split's answer list")
        return problems

    @property
    def result_dir(self) -> Path:
        return Path(self.run_cfg.output_dir) / "result"

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluation(self, model: Any, data_loader: DataLoader | Iterable, progress: bool = True) -> list[dict]:
        """As :meth:`BaseTask.evaluation`, with the split's answer list at hand for rank mode."""
        dataset = find_dataset(data_loader, ("answer_list",))
        self._split_answers = dataset.answer_list if dataset is not None else None
        try:
            return super().evaluation(model, data_loader, progress)
        finally:
            self._split_answers = None

    def candidate_answers(self) -> list[str]:
        """Rank mode's answer list: ``run.answer_list``, else the split's; a clear error without either."""
        answers = self.answer_list or self._split_answers
        if not answers:
            raise ConfigError([(
                "run.inference_method: 'rank' needs an answer list, and neither run.answer_list nor the eval split "
                "(build_info.annotations.<split>.answer_list) gives one; set run.answer_list to a JSON list of answers "
                "or use inference_method: generate"
            )])
        return answers

    def valid_step(self, model: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
        """``[{"question_id", "answer", "accuracy" (where the item has answers), "mc_answer",
        "mc_correct" (where it has choices)}, ...]``, one per question; accuracies in [0, 1].
        The multiple-choice calls reuse the batch's image features (:mod:`lavis.tasks.feature_cache`)."""
        net = task_model(model, "predict_answers", "vqa")
        with reuse_image_features(net):
            return self._answer(net, samples)

    def _answer(self, net: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
        cfg = self.cfg
        if cfg.inference_method == "rank":
            answers = self.candidate_answers()
            predicted = net.predict_answers(samples, answer_list=answers, inference_method="rank",
                                            num_ans_candidates=min(cfg.num_ans_candidates, len(answers)))
        else:
            settings = {"num_beams": cfg.num_beams, "max_len": cfg.max_len, "min_len": cfg.min_len}
            predicted = net.predict_answers(samples, inference_method="generate",
                                            **accepted_kwargs(net.predict_answers, settings))
        ids = batch_ids(samples["question_id"])
        if len(predicted) != len(ids):
            raise ValueError(f"predict_answers returned {len(predicted)} answers for {len(ids)} questions")
        rows: list[dict[str, Any]] = []
        for i, (qid, answer) in enumerate(zip(ids, predicted)):
            row: dict[str, Any] = {"question_id": qid, "answer": answer}
            refs = samples.get("answers")
            if refs is not None and refs[i]:
                row["accuracy"] = vqa_accuracy(answer, refs[i])
            choices = samples.get("choices")
            if cfg.multiple_choice and choices is not None and choices[i]:
                picked = net.predict_answers(_one(samples, i), answer_list=list(choices[i]), inference_method="rank",
                                             num_ans_candidates=len(choices[i]))[0]
                row["mc_answer"] = picked
                if "correct_choice_idx" in samples:
                    row["mc_correct"] = float(picked == choices[i][int(samples["correct_choice_idx"][i])])
            rows.append(row)
        return rows

    def after_evaluation(self, val_result: list[dict], split_name: str, epoch: int | str, dataset: Any) -> dict[str, float | None]:
        """``accuracy`` (VQA accuracy, or exact match with one reference; percent) as ``agg_metrics``,
        and ``mc_accuracy`` where questions have choices; ``agg_metrics: None`` for a split without
        answers. Writes ``{split}_epoch{epoch}.json`` (``[{"question_id", "answer"}]``, the VQA
        submission format), ``..._scored.json`` (every row) and ``..._metrics.json``."""
        metrics: dict[str, float | None] = {"agg_metrics": None}
        scored = [r["accuracy"] for r in val_result if "accuracy" in r]
        if scored:
            metrics["accuracy"] = metrics["agg_metrics"] = 100.0 * sum(scored) / len(scored)
        mc = [r["mc_correct"] for r in val_result if "mc_correct" in r]
        if mc:
            metrics["mc_accuracy"] = 100.0 * sum(mc) / len(mc)
        submission = [{"question_id": r["question_id"], "answer": r["answer"]} for r in val_result]
        write_results(self.result_dir, split_name, epoch, {"": submission, "_scored": val_result, "_metrics": metrics})
        return metrics
