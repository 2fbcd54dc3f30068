"""What the post-training tasks share: turning batches into model samples, sequence log-probs,
a frozen reference, and evaluation on held-out questions (answer accuracy, preference accuracy,
mean reward)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, cast

import torch

from lavis.common import dist
from lavis.common.registry import registry
from lavis.common.run_schema import RunConfig
from lavis.rewards.answers import answer_matches
from lavis.rewards.iou import CORRECT_IOU, answer_iou
from lavis.tasks.base_task import BaseTask

if TYPE_CHECKING:
    from lavis.common.config import Config
    from lavis.models.vlm.base import HFVisionLanguageModel


def unwrap(model: torch.nn.Module) -> "HFVisionLanguageModel":
    """The seam model under a DDP wrapper (or the model itself)."""
    inner = getattr(model, "module", model)
    if not hasattr(inner, "process_batch_conv"):
        raise TypeError(f"{type(inner).__name__} is not a vision-language model of lavis.models.vlm; post-training "
                        "tasks need one (model.arch: llava, qwen2_vl, ...)")
    return cast("HFVisionLanguageModel", inner)


def with_reply(prompt: Sequence[Mapping[str, str]], reply: str) -> list[Mapping[str, str]]:
    """The prompt turns followed by an assistant turn saying ``reply``."""
    return [*prompt, {"role": "assistant", "content": reply}]


def reference_of(samples: Mapping[str, Any], i: int) -> str | None:
    """The right answer of sample ``i``: ``answer``, ``chosen`` or ``solution``, or the last
    assistant turn of its conversation."""
    for key in ("answer", "chosen", "solution"):
        if samples.get(key) is not None:
            return str(samples[key][i])
    turns = samples["conversations"][i]
    last = turns[-1]
    return last.get("content", last.get("value")) if last.get("role", last.get("from")) in ("assistant", "gpt") else None


def prompts_of(samples: Mapping[str, Any]) -> list[list[Mapping[str, str]]]:
    """The turns to generate from: ``prompt``, or the conversation without its final reply."""
    if samples.get("prompt") is not None:
        return [list(p) for p in samples["prompt"]]
    out = []
    for turns in samples["conversations"]:
        last = turns[-1]
        out.append(list(turns[:-1]) if last.get("role", last.get("from")) in ("assistant", "gpt") else list(turns))
    return out


def completion_batch(prompt: Mapping[str, torch.Tensor], completion: torch.Tensor,
                     cmask: torch.Tensor) -> dict[str, Any]:
    """A training batch of prompts (left padded, as :meth:`generate_ids` returns them) followed by
    their sampled completions [B, T] (``cmask`` True up to each one's end), with labels on the
    completion tokens: what GRPO and PPO score with one forward pass."""
    from lavis.models.vlm.base import TOKEN_KEYS

    batch: dict[str, Any] = dict(prompt)
    batch["input_ids"] = torch.cat([prompt["input_ids"], completion], 1)
    for key in TOKEN_KEYS:
        if key in prompt and key != "input_ids":
            # attention on the completion up to its end; token_type_ids 1 marks the reply part
            # (PaliGemma's causal suffix); other per-token keys are 0 on text tokens
            fill = cmask if key == "attention_mask" else torch.ones_like(cmask) if key == "token_type_ids" else torch.zeros_like(cmask)
            batch[key] = torch.cat([prompt[key], fill.to(prompt[key].dtype)], 1)
    batch["labels"] = torch.cat([torch.full_like(prompt["input_ids"], -100), completion.masked_fill(~cmask, -100)], 1)
    return batch


def reward_functions(names: Sequence[str] | None, weights: Sequence[float] | None) -> tuple[list[Any], list[float]]:
    """The registered reward functions ``names`` and their weights (1 each when ``weights`` is None)."""
    fns = [registry.get_reward(name) for name in names or []]
    return fns, [1.0] * len(fns) if weights is None else [float(w) for w in weights]


def reward_problems(names: Sequence[str], weights: Sequence[float] | None) -> list[str]:
    """Config problems of ``run.rewards`` / ``run.reward_weights``: unregistered names, a weight
    count that differs from the reward count."""
    problems = [f"run.rewards: {name!r} is not a registered reward; registered: {', '.join(registry.list_rewards())}"
                for name in names if name not in registry.rewards]
    if weights is not None and len(weights) != len(names):
        problems.append(f"run.reward_weights: {len(weights)} weights for {len(names)} rewards")
    return problems


def weighted_rewards(fns: Sequence[Any], weights: Sequence[float], completions: list[str],
                     samples: Mapping[str, Any]) -> list[float]:
    """The weighted sum of registered reward functions of each completion (sample columns are
    passed to them as keyword arguments: ``solution``, ``question_type``, ...)."""
    columns = {k: v for k, v in samples.items() if k not in ("images", "prompt", "completions")}
    total = [0.0] * len(completions)
    for fn, w in zip(fns, weights):
        values = fn(completions=completions, **columns)
        if len(values) != len(completions):
            raise ValueError(f"reward {fn.__name__} returned {len(values)} values for {len(completions)} completions")
        total = [t + w * float(v) for t, v in zip(total, values)]
    return total


def repeat_rows(samples: Mapping[str, Any], times: int) -> dict[str, list]:
    """The list columns of ``samples`` with each row repeated ``times`` times in a row."""
    n = len(samples["prompt"])
    return {k: [v[i] for i in range(n) for _ in range(times)] for k, v in samples.items() if isinstance(v, list)}


def sampled_rewards(task: "PostTrainingTask", model: torch.nn.Module, samples: Mapping[str, Any],
                    results: list[dict[str, Any]], temperature: float, num_samples: int = 1) -> list[dict[str, Any]]:
    """``results`` with the mean reward (``task.rewards_of``) of ``num_samples`` completions sampled
    per prompt at ``temperature`` (``reward``; the completions in ``sampled``): the expected reward
    that GRPO and PPO raise, estimated with less noise the more samples."""
    seam = unwrap(model)
    rep = repeat_rows({**samples, "images": samples.get("images") or [[] for _ in samples["prompt"]]}, num_samples)
    _, ids, _ = seam.generate_ids({"conversations": rep["prompt"], "images": rep["images"]}, do_sample=True,
                                  temperature=temperature, max_new_tokens=int(task.run_cfg.max_new_tokens))
    sampled = [t.strip() for t in seam.tokenizer.batch_decode(ids, skip_special_tokens=True)]
    rewards = task.rewards_of(sampled, rep) or []
    for i, r in enumerate(results):
        texts, values = sampled[i * num_samples:(i + 1) * num_samples], rewards[i * num_samples:(i + 1) * num_samples]
        r["sampled"] = texts[0] if num_samples == 1 else texts
        r["reward"] = sum(float(v) for v in values) / len(values)
    return results


def sequence_logps(model: torch.nn.Module, conversations: list, images: list) -> torch.Tensor:
    """Sum of the log-probabilities of the reply tokens of each conversation: [B]."""
    out = model({"conversations": conversations, "images": images, "output_token_logps": True})
    return out.extras["token_logps"].sum(-1)


class FrozenReference:
    """A frozen copy of the model as it was built (before training and before any resume), or,
    for a model with LoRA adapters, the same model with its adapters disabled."""

    def __init__(self, model: "HFVisionLanguageModel"):
        self.copy = None if model.has_lora else copy.deepcopy(model).requires_grad_(False).eval()

    def __call__(self, policy: torch.nn.Module, samples: Mapping[str, Any]) -> Any:
        """The reference's output for ``samples`` (no gradients)."""
        seam = unwrap(policy)
        with torch.no_grad():
            if self.copy is None:
                with seam.adapters_disabled():
                    return seam(samples)
            if self.copy.device != seam.device:
                self.copy.to(seam.device)
            return self.copy(samples)


@dataclass
class PostTrainingRun(RunConfig):
    """The run section every post-training task reads (for type annotations; the task's
    ``run_schema`` is what config validation checks)."""

    max_new_tokens: int = 8


class PostTrainingTask(BaseTask):
    """Base of the post-training tasks: evaluation by generating answers to held-out prompts.

    ``valid_step`` generates one answer per sample (greedy, ``run.max_new_tokens``) and scores it
    against the sample's reference; with preference pairs it also records whether the model gives
    the chosen reply a higher log-probability than the rejected one. ``after_evaluation`` reports
    ``answer_accuracy``, ``preference_accuracy`` (pairs only), ``mean_reward`` (tasks with rewards),
    accuracy per ``question_type`` and ``agg_metrics`` (:attr:`agg_metric`).
    """

    result_id_key = "id"
    agg_metric = "answer_accuracy"
    run_cfg: PostTrainingRun

    def __init__(self, run_cfg: Any):
        super().__init__(run_cfg)
        self._result_dir: Path | None = None

    def build_model(self, cfg: "Config") -> "HFVisionLanguageModel":
        return unwrap(super().build_model(cfg))

    @property
    def result_dir(self) -> Path:
        if self._result_dir is not None:
            return self._result_dir
        return Path(getattr(self.run_cfg, "output_dir", None) or "output/run") / "result"

    @result_dir.setter
    def result_dir(self, folder: str | Path) -> None:
        self._result_dir = Path(folder)

    def rewards_of(self, completions: list[str], samples: Mapping[str, Any]) -> list[float] | None:
        """Rewards of generated answers; ``None`` in tasks without reward functions."""
        return None

    @torch.no_grad()
    def valid_step(self, model: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
        seam = unwrap(model)
        prompts, images = prompts_of(samples), samples.get("images") or [[] for _ in samples["id"]]
        answers = seam.generate({"conversations": prompts, "images": images},
                                max_new_tokens=int(self.run_cfg.max_new_tokens))
        results = []
        for i, answer in enumerate(answers):
            ref = reference_of(samples, i)
            iou = answer_iou(answer, ref) if ref is not None else None
            r = {"id": samples["id"][i], "prediction": answer, "reference": ref,
                 "correct": bool(ref is not None and answer_matches(answer, ref)) if iou is None else iou >= CORRECT_IOU}
            if iou is not None:
                r["iou"] = iou
            if samples.get("question_type") is not None:
                r["question_type"] = samples["question_type"][i]
            results.append(r)
        if samples.get("chosen") is not None and samples.get("rejected") is not None:
            n = len(prompts)
            convs = [with_reply(p, c) for p, c in zip(prompts, samples["chosen"])]
            convs += [with_reply(p, r) for p, r in zip(prompts, samples["rejected"])]
            logps = sequence_logps(seam, convs, list(images) + list(images))
            for i in range(n):
                results[i]["prefers_chosen"] = bool(logps[i] > logps[n + i])
        rewards = self.rewards_of(answers, samples)
        if rewards is not None:
            for r, value in zip(results, rewards):
                r["reward"] = float(value)
        return results

    def after_evaluation(self, val_result: list[dict], split_name: str, epoch: int | str,
                         dataset: Any) -> dict[str, float | None]:
        """Metrics of the merged results (the same on every rank); rank 0 writes them with the answers
        to ``<output_dir>/result/{split}_epoch{epoch}.json``."""
        metrics: dict[str, float | None] = dict(summarize(val_result))
        if self.agg_metric not in metrics:
            raise KeyError(f"split {split_name!r} gives no {self.agg_metric} (metrics: {sorted(metrics)}); evaluate "
                           f"{type(self).__name__} on a data set that has what it needs (pairs, solutions)")
        metrics["agg_metrics"] = metrics[self.agg_metric]
        if dist.is_main_process():
            from lavis.common.io import atomic_write_text

            text = json.dumps({"metrics": metrics, "results": val_result}, indent=1, default=str)
            atomic_write_text(text, self.result_dir / f"{split_name}_epoch{epoch}.json")
        return metrics


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``answer_accuracy`` and ``accuracy/<question_type>`` (results with generated answers; a box
    answer is correct at IoU >= 0.5), ``preference_accuracy`` and ``preference_accuracy/<question_type>``
    (pairs), ``mean_margin`` (a reward model's), ``mean_reward`` and ``mean_iou`` (box answers),
    each where the results have what it needs."""
    if not results:
        raise ValueError("no evaluation results: the split is empty")
    metrics: dict[str, float] = {}
    for name, key, prefix in (("answer_accuracy", "correct", "accuracy"),
                              ("preference_accuracy", "prefers_chosen", "preference_accuracy")):
        scored = [r for r in results if key in r]
        if scored:
            metrics[name] = sum(r[key] for r in scored) / len(scored)
        by_type: dict[str, list[bool]] = {}
        for r in scored:
            if "question_type" in r:
                by_type.setdefault(str(r["question_type"]), []).append(r[key])
        metrics.update({f"{prefix}/{t}": sum(v) / len(v) for t, v in sorted(by_type.items())})
    margins = [r["reward_margin"] for r in results if "reward_margin" in r]
    if margins:
        metrics["mean_margin"] = sum(margins) / len(margins)
    for name, key in (("mean_reward", "reward"), ("mean_iou", "iou")):
        values = [r[key] for r in results if key in r]
        if values:
            metrics[name] = sum(values) / len(values)
    return metrics
