"""Image captioning: generate one caption per image and score them with the COCO caption metrics."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Mapping

import torch

from lavis.common import dist
from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.common.run_schema import RunConfig
from lavis.common.schema import at_least_one
from lavis.tasks.base_task import BaseTask
from lavis.tasks.metrics.caption_metrics import DEFAULT_METRICS, aggregate, metric_problems, score_captions
from lavis.tasks.metrics.errors import MetricError

# generate() arguments the task sets from its own run keys (so run.generate_kwargs must not repeat them)
_GENERATE_KEYS = {"use_nucleus_sampling": "use_nucleus_sampling", "num_beams": "num_beams",
                  "max_length": "max_len", "min_length": "min_len", "top_p": "top_p"}


@dataclass
class CaptionRunConfig:
    """Run keys of the captioning task (next to the common ones of ``RunConfig``)."""

    # generation
    max_len: int = 30  # longest caption, in tokens
    min_len: int = 5  # shortest caption, in tokens
    num_beams: int = 3  # beam search width (1: greedy)
    use_nucleus_sampling: bool = False  # sample with top_p instead of beam search
    top_p: float = 0.9  # nucleus sampling mass, in (0, 1]
    generate_kwargs: dict = field(default_factory=dict)  # extra model.generate arguments, e.g. repetition_penalty
    # scoring
    report_metric: bool = True  # score against the split's ground truth (False: only write the captions)
    metrics: List[str] = field(default_factory=lambda: list(DEFAULT_METRICS))  # of BLEU, METEOR, ROUGE_L, CIDEr, SPICE
    agg_metric: str = "CIDEr"  # the selection metric reported as agg_metrics; a sum like "CIDEr+Bleu_4" works


@dataclass
class CaptionRun(CaptionRunConfig, RunConfig):
    """The whole run section of a captioning config, for type annotations (``Config.run`` is an
    instance of the equivalent class that :func:`lavis.common.config.run_schema_for` makes)."""


def _as_id(x: Any) -> Any:
    """A JSON-friendly image id: tensors and numpy scalars become Python ints."""
    return x.item() if hasattr(x, "item") and not isinstance(x, (str, bytes)) else x


@registry.register_task("captioning")
class CaptionTask(BaseTask):
    """Generate a caption per image; score BLEU, METEOR, ROUGE-L, CIDEr against the split's COCO-format
    ground truth (``dataset.gt_path``). Results go to ``<output_dir>/result/{split}_epoch{epoch}.json``."""

    run_schema = CaptionRunConfig
    result_id_key = "image_id"

    def __init__(self, run_cfg: "CaptionRun"):
        if not isinstance(run_cfg, CaptionRunConfig):
            raise TypeError(
                f"CaptionTask needs the typed run section (Config.run, an instance of "
                f"run_schema_for('captioning')), got {type(run_cfg).__name__}"
            )
        super().__init__(run_cfg)
        problems = self.validate_run(dataclasses.asdict(run_cfg))
        if problems:
            raise ConfigError(problems)
        self.max_len: int = run_cfg.max_len
        self.min_len: int = run_cfg.min_len
        self.num_beams: int = run_cfg.num_beams
        self.use_nucleus_sampling: bool = run_cfg.use_nucleus_sampling
        self.top_p: float = run_cfg.top_p
        self.generate_kwargs: dict[str, Any] = dict(run_cfg.generate_kwargs or {})
        self.report_metric: bool = run_cfg.report_metric
        self.metrics: list[str] = list(run_cfg.metrics)
        self.agg_metric: str = run_cfg.agg_metric
        self._result_dir: Path | None = None
        if self.report_metric:  # fail now rather than after the first epoch of training
            from lavis.tasks.metrics.caption_metrics import canonical_metrics, spice_problem
            from lavis.tasks.metrics.java import find_java

            find_java()
            if "SPICE" in canonical_metrics(self.metrics) and (why := spice_problem()):
                raise ConfigError([f"run.metrics: {why}"])

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        """Problems with the values (not the types) of this task's run keys, as ``run.key: what``;
        a key missing from ``run`` has its schema default."""
        v = {**dataclasses.asdict(CaptionRunConfig()), **{k: run[k] for k in CaptionRunConfig.__dataclass_fields__ if k in run}}
        problems = at_least_one(v, "max_len")
        ok_int = lambda x: isinstance(x, int) and not isinstance(x, bool)  # noqa: E731
        if ok_int(v["min_len"]) and v["min_len"] < 0:
            problems.append(f"run.min_len: must be at least 0, got {v['min_len']}")
        if ok_int(v["max_len"]) and ok_int(v["min_len"]) and v["min_len"] > v["max_len"]:
            problems.append(f"run.min_len: {v['min_len']} is above run.max_len {v['max_len']}")
        if ok_int(v["num_beams"]) and v["num_beams"] < 1:
            problems.append(f"run.num_beams: must be at least 1 (1 is greedy), got {v['num_beams']}")
        if isinstance(v["top_p"], (int, float)) and not 0 < v["top_p"] <= 1:
            problems.append(f"run.top_p: must be in (0, 1], got {v['top_p']}")
        if isinstance(v["generate_kwargs"], Mapping):
            for key in v["generate_kwargs"]:
                if key in _GENERATE_KEYS:
                    problems.append(f"run.generate_kwargs.{key}: set run.{_GENERATE_KEYS[key]} instead")
        if isinstance(v["metrics"], (list, tuple)) and isinstance(v["agg_metric"], str) and v["report_metric"] is not False:
            problems += [f"run.{p}" for p in metric_problems(v["metrics"], v["agg_metric"])]
        return problems

    # -- where results go -----------------------------------------------------------------------
    @property
    def result_dir(self) -> Path:
        """``<run.output_dir>/result`` unless a runner set another folder."""
        if self._result_dir is not None:
            return self._result_dir
        return Path(self.run_cfg.output_dir) / "result"

    @result_dir.setter
    def result_dir(self, folder: str | Path) -> None:
        self._result_dir = Path(folder)

    # -- steps ----------------------------------------------------------------------------------
    def valid_step(self, model: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
        """Caption the batch: ``[{"image_id": id, "caption": str}, ...]``, one per image."""
        generator = model if hasattr(model, "generate") else getattr(model, "module", None)  # DDP-wrapped
        if generator is None or not hasattr(generator, "generate"):
            raise TypeError(f"{type(model).__name__} has no generate(samples, ...); captioning needs a model that generates")
        if "image_id" not in samples:
            raise KeyError(f"the captioning batch has no 'image_id' (keys: {sorted(samples)}); the eval data set must return one")
        captions = generator.generate(
            samples,
            use_nucleus_sampling=self.use_nucleus_sampling,
            num_beams=self.num_beams,
            max_length=self.max_len,
            min_length=self.min_len,
            top_p=self.top_p,
            **self.generate_kwargs,
        )
        ids = samples["image_id"]
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else [_as_id(i) for i in ids]
        if len(captions) != len(ids):
            raise ValueError(f"generate returned {len(captions)} captions for {len(ids)} images; "
                             "captioning expects one caption per image")
        return [{"image_id": i, "caption": c} for i, c in zip(ids, captions)]

    def after_evaluation(self, val_result: list[dict], split_name: str, epoch: int | str,
                         dataset: Any) -> dict[str, float | None]:
        """Write the merged results (main rank), score them, and return the same metrics on every rank.

        Returns ``{"Bleu_1".."Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "agg_metrics"}`` (the scorers of
        run.metrics); ``agg_metrics`` is run.agg_metric. Without run.report_metric: ``{"agg_metrics": None}`` (nothing scored: the runner then keeps
        the latest weights as the best).
        """
        outcome: dict[str, Any] | None = None
        error: BaseException | None = None
        if dist.is_main_process():
            try:
                outcome = {"metrics": self._save_and_score(val_result, split_name, epoch, dataset)}
            except Exception as e:  # other ranks must learn of it instead of waiting forever
                error = e
                outcome = {"error": f"{type(e).__name__}: {e}"}
        outcome = dist.broadcast_object(outcome)
        if error is not None:
            raise error
        if "error" in outcome:
            raise MetricError(f"scoring on rank 0 failed: {outcome['error']}")
        return outcome["metrics"]

    def _score_by_domain(self, results: list[dict], gt_path: Any, image_ids: list[Any],
                         domains: list[str]) -> dict[str, float]:
        """``{"<domain>/<metric>": value}``: each domain's images scored on their own."""
        from lavis.tasks.metrics.caption_metrics import load_caption_gt

        references = load_caption_gt(gt_path)
        out: dict[str, float] = {}
        for domain in sorted(set(domains)):
            ids = {_as_id(i) for i, d in zip(image_ids, domains) if d == domain}
            gt = {"images": [{"id": i} for i in references if i in ids],
                  "annotations": [{"image_id": i, "id": n, "caption": c}
                                  for n, (i, c) in enumerate((i, c) for i in references if i in ids for c in references[i])]}
            scores = score_captions([r for r in results if r["image_id"] in ids], gt, self.metrics)
            out.update({f"{domain}/{name}": value for name, value in scores.items()})
        return out

    def _save_and_score(self, val_result: list[dict], split_name: str, epoch: int | str,
                        dataset: Any) -> dict[str, float | None]:
        from lavis.common.io import atomic_write_text

        stem = f"{split_name}_epoch{epoch}"
        results = [{"image_id": _as_id(r["image_id"]), "caption": r["caption"]} for r in val_result]
        atomic_write_text(json.dumps(results, ensure_ascii=False), self.result_dir / f"{stem}.json")
        if not self.report_metric:
            return {"agg_metrics": None}
        gt_path = getattr(dataset, "gt_path", None)
        if gt_path is None:
            raise MetricError(f"split {split_name!r}: the data set ({type(dataset).__name__}) has no gt_path, the COCO-format "
                              "caption ground truth to score against; give the eval data set one or set run.report_metric: false")
        try:
            metrics = score_captions(results, gt_path, self.metrics)
        except MetricError as e:
            raise type(e)(f"split {split_name!r}, epoch {epoch}: {e}") from e
        scored: dict[str, float | None] = {**metrics, "agg_metrics": aggregate(metrics, self.agg_metric)}
        domains = getattr(dataset, "domains", None)
        if domains:  # NoCaps: the in-, near- and out-domain scores next to the overall ones
            scored.update(self._score_by_domain(results, gt_path, list(dataset.image_ids), list(domains)))
        atomic_write_text(json.dumps(scored, indent=2), self.result_dir / f"{stem}_metrics.json")
        return scored
