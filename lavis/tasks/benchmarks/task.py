"""The ``benchmark`` task: score a vision-language model on MME, POPE, MMBench, ScienceQA-IMG or
TextVQA, whichever data sets the config names (several at once if it likes).

Each question is asked as one user turn (the image, the question, the options lettered ``A.``,
``B.``, ... for multiple choice, and an instruction on the answer's form). Yes/no and open
questions are answered by generation; multiple choice by generation with the letter read out of
the reply (:func:`~lavis.tasks.benchmarks.scoring.extract_choice`), or, with
``run.mc_method: likelihood``, by the option the model finds most likely
(:meth:`~lavis.models.vlm.base.HFVisionLanguageModel.option_loglikelihoods`). Each split's
scores are written, per subtask and with every prediction, to
``<output_dir>/result/<benchmark>_<split>.json`` and printed as a table.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from lavis.common import dist
from lavis.common.registry import registry
from lavis.common.schema import at_least_one
from lavis.datasets.builders.benchmark_data import choice_letters
from lavis.models.base_model import ModelOutput
from lavis.models.vlm.conversation import IMAGE_PLACEHOLDER
from lavis.tasks.benchmarks import scoring
from lavis.tasks.post_training.common import PostTrainingTask, unwrap

#: benchmark -> (scorer, the metric reported as agg_metrics)
SCORERS: dict[str, tuple[Callable[[Sequence[Mapping[str, Any]]], scoring.Scores], str]] = {
    "mme": (scoring.score_mme, "total"),
    "pope": (scoring.score_pope, "f1"),
    "mmbench": (scoring.score_circular, "circular_accuracy"),
    "scienceqa_img": (scoring.score_accuracy, "accuracy"),
    "textvqa": (scoring.score_accuracy, "accuracy"),
}
MC_METHODS = ("generate", "likelihood")
LIKELIHOOD_TARGETS = ("letter", "text")


@dataclass
class BenchmarkRunConfig:
    """Run keys of ``benchmark`` (next to the common ones)."""

    max_new_tokens: int = 16  # longest generated reply, in tokens
    mc_method: str = "generate"  # multiple choice: "generate" (read the letter) or "likelihood"
    likelihood_target: str = "letter"  # with mc_method likelihood: score the letters or the option texts
    yes_no_prompt: str = "Answer the question using a single word or phrase."
    choice_prompt: str = "Answer with the option's letter from the given choices directly."
    open_prompt: str = "Answer the question using a single word or phrase."


def question_text(record: Mapping[str, Any], run: BenchmarkRunConfig) -> str:
    """The user turn of a benchmark record (without the image placeholder)."""
    kind = record["kind"]
    if kind == "multiple_choice":
        options = record["options"]
        lines = [f"{letter}. {text}" for letter, text in zip(choice_letters(len(options)), options)]
        return "\n".join([record["question"], *lines, run.choice_prompt])
    return f"{record['question']}\n{run.yes_no_prompt if kind == 'yes_no' else run.open_prompt}"


def reference_reply(record: Mapping[str, Any], option_text: bool = False) -> str:
    """What a right reply says: ``Yes``/``No``, the right option's letter (its text with
    ``option_text``), or the most common reference answer."""
    answer = record["answer"]
    if record["kind"] == "open":
        return Counter(answer).most_common(1)[0][0] if answer else ""
    if record["kind"] == "multiple_choice" and option_text:
        return str(record["options"][choice_letters(len(record["options"])).index(answer)])
    return str(answer).capitalize() if record["kind"] == "yes_no" else str(answer)


def judge(record: Mapping[str, Any], reply: str) -> dict[str, Any]:
    """``prediction`` read out of ``reply`` by the benchmark's rule, and ``correct`` (a bool, or
    the VQA accuracy in [0, 1] for open questions)."""
    kind = record["kind"]
    if kind == "yes_no":
        prediction = scoring.mme_yes_no(reply) if record["benchmark"] == "mme" else scoring.pope_yes_no(reply)
        return {"prediction": prediction, "correct": prediction == record["answer"]}
    if kind == "multiple_choice":
        choice = scoring.extract_choice(reply, record["options"])
        return {"prediction": choice, "correct": choice == record["answer"]}
    from lavis.tasks.metrics.vqa import vqa_accuracy

    return {"prediction": reply, "correct": vqa_accuracy(reply, record["answer"])}


def format_table(title: str, metrics: Mapping[str, float], subtasks: Mapping[str, Mapping[str, float]]) -> str:
    """A plain-text table: one row per subtask, then the headline metrics."""
    columns = list(dict.fromkeys(k for row in subtasks.values() for k in row))
    width = max([len(n) for n in subtasks] + [len(k) for k in metrics] + [8])
    cell = {c: max(len(c) + 2, 10) for c in columns}

    def fmt(value: Any, w: int = 10) -> str:
        return f"{value:>{w}.2f}" if isinstance(value, float) else f"{value:>{w}}"

    lines = [title, f"{'subtask':<{width}}" + "".join(f"{c:>{cell[c]}}" for c in columns)]
    lines += [f"{name:<{width}}" + "".join(fmt(row.get(c, ""), cell[c]) for c in columns) for name, row in subtasks.items()]
    lines += [f"{name:<{width}}{fmt(value)}" for name, value in metrics.items()]
    return "\n".join(lines)


@registry.register_task("benchmark")
class BenchmarkTask(PostTrainingTask):
    """Benchmark evaluation of a vision-language model (see the module docstring); training on a
    benchmark's split (e.g. ScienceQA's train questions) fits the reference replies (SFT): the
    option's text instead of its letter when multiple choice is scored by the texts' likelihood."""

    run_schema = BenchmarkRunConfig
    run_cfg: Any

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        problems = at_least_one(run, "max_new_tokens")
        if (m := run.get("mc_method", "generate")) not in MC_METHODS:
            problems.append(f"run.mc_method: {m!r} is not one of {', '.join(MC_METHODS)}")
        if (t := run.get("likelihood_target", "letter")) not in LIKELIHOOD_TARGETS:
            problems.append(f"run.likelihood_target: {t!r} is not one of {', '.join(LIKELIHOOD_TARGETS)}")
        return problems

    @staticmethod
    def records(samples: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        """The collated batch back as one dict per question."""
        return [{k: v[i] for k, v in samples.items()} for i in range(len(samples["id"]))]

    def conversation(self, record: Mapping[str, Any]) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"{IMAGE_PLACEHOLDER}\n{question_text(record, self.run_cfg)}"}]

    def train_step(self, model: Any, samples: dict[str, Any]) -> ModelOutput:
        records = self.records(samples)
        by_text = self.run_cfg.mc_method == "likelihood" and self.run_cfg.likelihood_target == "text"
        convs = [[*self.conversation(r), {"role": "assistant", "content": reference_reply(r, by_text)}] for r in records]
        return model({"conversations": convs, "images": [r["images"] for r in records]})

    @torch.no_grad()
    def valid_step(self, model: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
        seam = unwrap(model)
        records = self.records(samples)
        by_likelihood = [r["kind"] == "multiple_choice" and self.run_cfg.mc_method == "likelihood" for r in records]
        replies: dict[int, str] = {}
        gen = [i for i, lik in enumerate(by_likelihood) if not lik]
        if gen:
            texts = seam.generate({"conversations": [self.conversation(records[i]) for i in gen],
                                   "images": [records[i]["images"] for i in gen]},
                                  max_new_tokens=int(self.run_cfg.max_new_tokens))
            replies.update(zip(gen, texts))
        lik = [i for i, flag in enumerate(by_likelihood) if flag]
        if lik:
            by_text = self.run_cfg.likelihood_target == "text"
            targets = [list(records[i]["options"]) if by_text else choice_letters(len(records[i]["options"]))
                       for i in lik]
            scores = seam.option_loglikelihoods({"conversations": [self.conversation(records[i]) for i in lik],
                                                 "images": [records[i]["images"] for i in lik]}, targets)
            for i, s in zip(lik, scores):
                replies[i] = choice_letters(len(s))[int(s.argmax())]
        results = []
        for i, r in enumerate(records):
            out = {k: r[k] for k in ("id", "subtask", "group", "shift", "answer") if r.get(k) is not None}
            results.append({**out, "reply": replies[i], **judge(r, replies[i])})
        return results

    def after_evaluation(self, val_result: list[dict], split_name: str, epoch: int | str,
                         dataset: Any) -> dict[str, float | None]:
        """The benchmark's scores of the merged results (the same on every rank); rank 0 writes
        ``<benchmark>_<split>.json`` (metrics, per-subtask table, predictions) and prints the table."""
        benchmark = getattr(dataset, "benchmark", None)
        if benchmark not in SCORERS:
            raise ValueError(f"split {split_name!r}: the data set ({type(dataset).__name__}) is not a benchmark "
                             f"({', '.join(SCORERS)}); the benchmark task scores the data sets of those builders")
        scorer, agg = SCORERS[benchmark]
        metrics, subtasks = scorer(val_result)
        if dist.is_main_process():
            from lavis.common.io import atomic_write_text

            report = {"benchmark": benchmark, "split": split_name, "epoch": epoch, "metrics": metrics,
                      "subtasks": subtasks, "predictions": val_result}
            atomic_write_text(json.dumps(report, indent=1, default=str), self.result_dir / f"{benchmark}_{split_name}.json")
            print(format_table(f"{benchmark} / {split_name}", metrics, subtasks), flush=True)
        out: dict[str, float | None] = dict(metrics)
        out["agg_metrics"] = metrics.get(agg)
        return out
