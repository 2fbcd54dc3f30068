"""Tasks own what is specific to a job: the model and data they build, the loss step, the
validation step and the metrics. The runner knows nothing of captioning or VQA."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, Mapping

import torch
from torch.utils.data import DataLoader, Dataset

from lavis.common import dist
from lavis.common.registry import registry
from lavis.common.run_schema import RunConfig

if TYPE_CHECKING:
    from lavis.common.config import Config
    from lavis.models.base_model import BaseModel, ModelOutput


class BaseTask:
    """Base of every registered task.

    ``run_schema`` is an optional dataclass whose fields are extra keys this task reads from the
    ``run`` section (for example generation lengths); config validation accepts and type-checks
    them next to the common run keys, and the task is built with ``Config.run``: an instance of
    :class:`RunConfig` extended by ``run_schema`` (see :func:`lavis.common.config.run_schema_for`).

    ``result_id_key`` names the field of each validation result that identifies it; results
    gathered from all ranks are de-duplicated on it, so every sample counts exactly once.
    """

    run_schema: ClassVar[type | None] = None
    result_id_key: ClassVar[str] = "instance_id"

    def __init__(self, run_cfg: RunConfig):
        self.run_cfg = run_cfg

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        """Problems with the values of this task's run keys, as ``run.key: what``; called by config
        validation with every run key (the schema default where one is not set; types already
        checked against the schema). None by default."""
        return []

    @classmethod
    def setup_task(cls, cfg: "Config") -> "BaseTask":
        return cls(cfg.run)

    # -- building -------------------------------------------------------------------------------
    def build_model(self, cfg: "Config") -> "BaseModel":
        from lavis.zoo.resolve import warn_unloaded_finetuned

        warn_unloaded_finetuned(cfg.model)
        model_cls = registry.get_model_class(cfg.model.arch)
        return model_cls.from_config(cfg.model)

    def build_datasets(self, cfg: "Config") -> dict[str, dict[str, Dataset]]:
        """``{dataset_name: {split: Dataset}}`` for every entry of ``cfg.datasets``.

        Rank 0 builds first (``build_datasets`` prepares the files: download or generation), the
        other ranks after it, when the files are there.
        """
        out: dict[str, dict[str, Dataset]] = {}
        for name, dcfg in cfg.datasets.items():
            name = str(name)  # OmegaConf types keys loosely; validation made them registered names
            builder = registry.get_builder_class(name)(dcfg)
            with dist.main_process_first():
                out[name] = builder.build_datasets()
        return out

    # -- steps ----------------------------------------------------------------------------------
    def train_step(self, model: torch.nn.Module, samples: dict[str, Any]) -> "ModelOutput":
        """One forward pass; the runner does backward, accumulation and the optimizer step."""
        return model(samples)

    def updates_per_batch(self) -> int:
        """How many optimizer updates the task makes on each training batch (what
        :meth:`train_updates` yields); 1 unless the task reuses a batch (PPO epochs over a rollout)."""
        return 1

    def train_updates(self, model: torch.nn.Module, samples: dict[str, Any]) -> Iterator["ModelOutput"]:
        """The outputs of the optimizer updates made on one batch, exactly :meth:`updates_per_batch`
        of them. The runner does backward and, once every micro-batch of the step has given its
        output, the optimizer step, before it asks for the next one: so the next output is computed
        with the updated weights. The runner owns the optimizer, the LR schedule, precision,
        clipping, logging and checkpoints (written only between batches). Default: one
        :meth:`train_step`."""
        yield self.train_step(model, samples)

    def valid_step(self, model: "BaseModel", samples: dict[str, Any]) -> list[dict[str, Any]]:
        """Per-sample results of one batch, each carrying ``result_id_key``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement valid_step")

    @torch.no_grad()
    def evaluation(self, model: "BaseModel", data_loader: DataLoader | Iterable, progress: bool = True) -> list[dict]:
        """Run ``valid_step`` over this rank's share of ``data_loader``, gather every rank's results,
        drop duplicates (on ``result_id_key``) and sort them, so each sample appears exactly once."""
        from tqdm.auto import tqdm

        model.eval()
        results: list[dict] = []
        bar = tqdm(data_loader, desc="evaluation", disable=not (progress and dist.is_main_process()), leave=False)
        for samples in bar:
            results.extend(self.valid_step(model, samples))
        return self.merge_results(dist.all_gather_object(results))

    def merge_results(self, per_rank: list[list[dict]]) -> list[dict]:
        seen: dict[Any, dict] = {}
        for results in per_rank:
            for r in results:
                seen.setdefault(r[self.result_id_key], r)
        return [seen[k] for k in sorted(seen, key=lambda k: (str(type(k)), k))]

    def after_evaluation(self, val_result: list[dict], split_name: str, epoch: int | str, dataset: Dataset) -> dict[str, float | None]:
        """Metrics of one split from the merged results; must include ``agg_metrics`` (higher is better),
        or ``agg_metrics: None`` when the task scores nothing (the runner then takes the latest
        weights as the best)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement after_evaluation")
