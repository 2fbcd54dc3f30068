"""Image classification (top-1/top-5, zero-shot with prompt templates) and multimodal
classification (NLVR2, SNLI-VE accuracy), both through ``model.predict_class``.

Zero-shot models get the class names and the prompt templates (``run.prompt_templates``, or a
named set, ``run.template_set``). A model whose ``predict_class`` takes ``templates`` (CLIP) gets
both, ``predict_class(samples, class_names=names, templates=...)``, and builds its own prompt
ensemble; any other gets every template filled with every class name,
``predict_class(samples, class_names=prompts)``, and the task averages each class's scores over
its templates. A model with a trained head ignores the names and returns one score per class.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, List, Mapping, Optional

import torch
from torch.utils.data import DataLoader

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.common.run_schema import RunConfig
from lavis.tasks.base_task import BaseTask
from lavis.tasks.metrics.errors import MetricError
from lavis.tasks.task_utils import batch_ids, find_dataset, task_model, write_results


def _open_clip_metadata(name: str) -> Any:
    from open_clip import zero_shot_metadata

    return getattr(zero_shot_metadata, name)


#: named template sets (open_clip's ImageNet ensembles); a template is a callable of the class name
TEMPLATE_SETS: dict[str, Callable[[], list[Callable[[str], str]]]] = {
    "openai_imagenet": lambda: list(_open_clip_metadata("OPENAI_IMAGENET_TEMPLATES")),  # the 80 of CLIP's paper
    "simple_imagenet": lambda: list(_open_clip_metadata("SIMPLE_IMAGENET_TEMPLATES")),
}
#: named class-name lists: CLIP's curated ImageNet names, in ImageNet's class (wnid) order
CLASS_NAME_SETS: dict[str, Callable[[], list[str]]] = {
    "imagenet": lambda: list(_open_clip_metadata("IMAGENET_CLASSNAMES")),
}


@dataclass
class ClassificationRunConfig:
    """Run keys of the classification task (next to the common ones of ``RunConfig``)."""

    prompt_templates: List[str] = field(default_factory=lambda: ["a photo of a {}."])  # each with one "{}"
    template_set: Optional[str] = None  # instead of prompt_templates: openai_imagenet (80) or simple_imagenet
    class_names: Optional[str] = None  # default: the data set's; or imagenet (CLIP's names), or a JSON list file


@dataclass
class ClassificationRun(ClassificationRunConfig, RunConfig):
    """The whole run section of a classification config, for type annotations."""


def _accuracy_rows(rows: list[dict], key: str) -> float:
    return 100.0 * sum(r[key] for r in rows) / len(rows)


@registry.register_task("classification")
class ClassificationTask(BaseTask):
    """Top-1 and top-5 accuracy (percent; ``agg_metrics`` is ``top1``) of ``predict_class`` over
    the data set's classes (``dataset.classnames``: ImageNet's)."""

    run_schema = ClassificationRunConfig
    result_id_key = "instance_id"

    def __init__(self, run_cfg: ClassificationRun):
        super().__init__(run_cfg)
        problems = self.validate_run(dataclasses.asdict(run_cfg))
        if problems:
            raise ConfigError(problems)
        self.templates: list[Callable[[str], str]] = (
            TEMPLATE_SETS[run_cfg.template_set]() if run_cfg.template_set else
            [t.format for t in run_cfg.prompt_templates]
        )
        #: what a model that takes ``templates`` gets: the set's name or the format strings
        self.template_arg: str | list[str] = run_cfg.template_set or list(run_cfg.prompt_templates)
        self.class_names_key = run_cfg.class_names
        self._names: list[str] | None = None

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        v = {**dataclasses.asdict(ClassificationRunConfig()),
             **{k: run[k] for k in ClassificationRunConfig.__dataclass_fields__ if k in run}}
        problems = []
        templates = v["prompt_templates"]
        if isinstance(templates, (list, tuple)):
            if not templates:
                problems.append("run.prompt_templates: empty; give at least one, e.g. ['a photo of a {}.']")
            problems += [f"run.prompt_templates: {t!r} must hold exactly one '{{}}' where the class name goes"
                         for t in templates if not isinstance(t, str) or t.count("{}") != 1]
        if v["template_set"] is not None and v["template_set"] not in TEMPLATE_SETS:
            problems.append(f"run.template_set: {v['template_set']!r} is not one of {', '.join(TEMPLATE_SETS)}")
        names = v["class_names"]
        if names is not None and names not in CLASS_NAME_SETS and not Path(str(names)).is_file():
            problems.append(f"run.class_names: {names!r} is neither one of {', '.join(CLASS_NAME_SETS)} nor a JSON "
                            "file of class names; leave it unset to use the data set's")
        return problems

    @property
    def result_dir(self) -> Path:
        return Path(self.run_cfg.output_dir) / "result"

    def class_names(self, dataset: Any) -> list[str]:
        """The class names prompts are made of: ``run.class_names``, else ``dataset.classnames``."""
        have = list(getattr(dataset, "classnames", None) or [])
        key = self.class_names_key
        if key is None:
            if not have:
                raise MetricError(f"{type(dataset).__name__} has no classnames; set run.class_names to a JSON list of names")
            return have
        if key in CLASS_NAME_SETS:
            names = CLASS_NAME_SETS[key]()
        else:
            from lavis.datasets.torch_datasets.media_dataset import read_json

            names = read_json(key)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConfigError([f"run.class_names: {key} must hold a JSON list of class names"])
        if have and len(names) != len(have):
            raise ConfigError([f"run.class_names: {key} names {len(names)} classes but the data set has {len(have)}"])
        return names

    def prompts(self, class_names: list[str]) -> list[str]:
        """Every template filled with every class name, class-major: ``[c0t0, c0t1, ..., c1t0, ...]``."""
        return [t(c) for c in class_names for t in self.templates]

    @torch.no_grad()
    def evaluation(self, model: Any, data_loader: DataLoader | Iterable, progress: bool = True) -> list[dict]:
        """As :meth:`BaseTask.evaluation`, with the split's class names turned into prompts."""
        dataset = find_dataset(data_loader, ("classnames",))
        self._names = self.class_names(dataset if dataset is not None else data_loader)
        try:
            return super().evaluation(model, data_loader, progress)
        finally:
            self._names = None

    def class_scores(self, net: Any, samples: dict[str, Any]) -> torch.Tensor:
        """``[B, C]``: the model's scores, averaged over templates when it scored every prompt."""
        assert self._names is not None
        n, t = len(self._names), len(self.templates)
        if "templates" in inspect.signature(net.predict_class).parameters:
            scores = net.predict_class(samples, class_names=self._names, templates=self.template_arg)
        else:
            scores = net.predict_class(samples, class_names=self.prompts(self._names))
        if scores.shape[-1] == n * t:
            return scores.view(scores.shape[0], n, t).float().mean(-1)
        if scores.shape[-1] != n:
            raise MetricError(f"predict_class returned {scores.shape[-1]} scores per image for {n} classes "
                              f"({t} templates each)")
        return scores.float()

    def valid_step(self, model: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
        """``[{"instance_id", "label", "top5": best 5 class indices, "top1_correct", "top5_correct"}, ...]``."""
        if self._names is None:
            raise RuntimeError("classification valid_step runs inside evaluation(), which reads the split's class names")
        net = task_model(model, "predict_class", "classification")
        scores = self.class_scores(net, samples)
        top = scores.topk(min(5, scores.shape[-1]), dim=-1).indices.cpu()
        labels = torch.as_tensor(samples["label"]).cpu()
        return [{"instance_id": iid, "label": int(y), "top5": row.tolist(), "top1_correct": float(row[0] == y),
                 "top5_correct": float(bool((row == y).any()))}
                for iid, y, row in zip(batch_ids(samples["instance_id"]), labels, top)]

    def after_evaluation(self, val_result: list[dict], split_name: str, epoch: int | str, dataset: Any) -> dict[str, float | None]:
        if not val_result:
            raise MetricError(f"split {split_name!r}: nothing was classified")
        metrics: dict[str, float | None] = {"top1": _accuracy_rows(val_result, "top1_correct"),
                                            "top5": _accuracy_rows(val_result, "top5_correct")}
        metrics["agg_metrics"] = metrics["top1"]
        write_results(self.result_dir, split_name, epoch, {"": val_result, "_metrics": metrics})
        return metrics


@registry.register_task("multimodal_classification")
class MultimodalClassificationTask(BaseTask):
    """Accuracy (percent, = ``agg_metrics``) of the arg-max of ``predict_class(samples)`` against
    each item's ``label``: NLVR2 (true/false of an image pair), SNLI-VE (contradiction, neutral,
    entailment)."""

    result_id_key = "instance_id"

    @property
    def result_dir(self) -> Path:
        return Path(self.run_cfg.output_dir) / "result"

    def valid_step(self, model: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
        """``[{"instance_id", "label", "prediction", "correct"}, ...]``."""
        net = task_model(model, "predict_class", "multimodal_classification")
        predictions = net.predict_class(samples).argmax(-1).cpu()
        labels = torch.as_tensor(samples["label"]).cpu()
        return [{"instance_id": iid, "label": int(y), "prediction": int(p), "correct": float(p == y)}
                for iid, y, p in zip(batch_ids(samples["instance_id"]), labels, predictions)]

    def after_evaluation(self, val_result: list[dict], split_name: str, epoch: int | str, dataset: Any) -> dict[str, float | None]:
        if not val_result:
            raise MetricError(f"split {split_name!r}: nothing was classified")
        accuracy = _accuracy_rows(val_result, "correct")
        metrics: dict[str, float | None] = {"accuracy": accuracy, "agg_metrics": accuracy}
        write_results(self.result_dir, split_name, epoch, {"": val_result, "_metrics": metrics})
        return metrics
