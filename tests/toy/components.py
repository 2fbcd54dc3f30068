"""A tiny classification problem for runner tests: Gaussian clusters, an MLP, accuracy.

Items carry random augmentation drawn from Python's ``random``, NumPy's global generator and
torch's generator, so any mistake in per-sample seeding shows up as a difference in results.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from lavis.common import dist
from lavis.common.config import Config
from lavis.common.run_schema import RunConfig
from lavis.models.base_model import BaseModel, ModelOutput
from lavis.tasks.base_task import BaseTask


@dataclass
class ToyRunConfig:
    """Run keys of the toy task."""

    toy_n_train: int = 96
    toy_n_valid: int = 33  # odd on purpose: uneven shares across ranks
    toy_n_test: int = 31
    toy_dim: int = 8
    toy_classes: int = 3
    toy_hidden: int = 32
    toy_dropout: float = 0.1
    toy_noise: float = 0.5  # augmentation strength of training items
    toy_step_delay: float = 0.0  # seconds slept in each train_step (slows a run down for kill tests)
    toy_nan_at_call: int = 0  # train_step call (1-based) whose loss becomes NaN; 0: never
    toy_nan_rank: int = -1  # the rank whose loss toy_nan_at_call spoils; -1: every rank
    toy_log_rank: bool = False  # add extras["toy_rank"] (the process rank) to each training output
    toy_record_eval_ids: bool = False  # write each rank's evaluated ids to <output_dir>/eval_ids_N.json


class ToyClassifier(BaseModel):
    """An MLP over ``samples["x"]`` (batch, dim) with cross-entropy on ``samples["label"]`` (batch,)."""

    def __init__(self, dim: int = 8, hidden: int = 32, num_classes: int = 3, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        logits = self.net(samples["x"])
        accuracy = (logits.argmax(-1) == samples["label"]).float().mean()
        return ModelOutput(loss=F.cross_entropy(logits, samples["label"]),
                           extras={"logits": logits, "train_accuracy": accuracy})

    @torch.no_grad()
    def predict(self, samples: dict[str, Any]) -> torch.Tensor:
        return self.net(samples["x"]).argmax(-1)


class ToyDataset(Dataset):
    """``n`` points around ``num_classes`` fixed centres (the same for every split); training items
    get random noise (python, numpy and torch draws) of strength ``noise``."""

    def __init__(self, n: int, dim: int, num_classes: int, split_seed: int, noise: float = 0.0):
        centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234)) * 0.9
        g = torch.Generator().manual_seed(split_seed)
        self.y = torch.randint(0, num_classes, (n,), generator=g)
        self.x = centres[self.y] + 0.8 * torch.randn(n, dim, generator=g)
        self.noise = noise

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = self.x[i]
        if self.noise:
            jitter = 0.1 * float(np.random.randn()) + 0.1 * (random.random() - 0.5)  # numpy and python draws
            x = x + self.noise * (torch.randn_like(x) + jitter)
        return {"x": x, "label": int(self.y[i]), "instance_id": i}

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "x": torch.stack([s["x"] for s in samples]),
            "label": torch.tensor([s["label"] for s in samples]),
            "instance_id": [s["instance_id"] for s in samples],
        }


class ToyTask(BaseTask):
    """Classification with accuracy (in %) as ``agg_metrics``."""

    run_schema = ToyRunConfig
    result_id_key = "instance_id"

    def __init__(self, run_cfg: Any):
        super().__init__(run_cfg)
        self.calls = 0
        self.eval_rounds = 0

    def build_model(self, cfg: Any) -> ToyClassifier:
        r = cfg.run
        return ToyClassifier(r.toy_dim, r.toy_hidden, r.toy_classes, r.toy_dropout)

    def build_datasets(self, cfg: Any) -> dict[str, dict[str, Dataset]]:
        r = cfg.run
        make = lambda n, seed, noise: ToyDataset(n, r.toy_dim, r.toy_classes, seed, noise)  # noqa: E731
        return {"toy": {"train": make(r.toy_n_train, 1, r.toy_noise), "val": make(r.toy_n_valid, 2, 0.0),
                        "test": make(r.toy_n_test, 3, 0.0)}}

    def train_step(self, model: nn.Module, samples: dict[str, Any]) -> ModelOutput:
        self.calls += 1
        if self.run_cfg.toy_step_delay:
            time.sleep(self.run_cfg.toy_step_delay)
        out = model(samples)
        if self.calls == self.run_cfg.toy_nan_at_call and self.run_cfg.toy_nan_rank in (-1, dist.get_rank()):
            out.loss = out.loss * float("nan")
        if self.run_cfg.toy_log_rank:
            out.extras["toy_rank"] = float(dist.get_rank())
        return out

    def valid_step(self, model: ToyClassifier, samples: dict[str, Any]) -> list[dict[str, Any]]:
        pred = model.predict(samples).tolist()
        return [{"instance_id": int(i), "pred": p, "label": int(l)}
                for i, p, l in zip(samples["instance_id"], pred, samples["label"].tolist())]

    def merge_results(self, per_rank: list[list[dict]]) -> list[dict]:
        if self.run_cfg.toy_record_eval_ids and dist.is_main_process():
            out = Path(self.run_cfg.output_dir) / f"eval_ids_{self.eval_rounds}.json"
            out.write_text(json.dumps([[r["instance_id"] for r in rs] for rs in per_rank]))
        self.eval_rounds += 1
        return super().merge_results(per_rank)

    def after_evaluation(
        self, val_result: list[dict], split_name: str, epoch: int | str, dataset: Dataset
    ) -> dict[str, float]:
        acc = 100.0 * sum(r["pred"] == r["label"] for r in val_result) / max(1, len(val_result))
        return {"accuracy": acc, "agg_metrics": acc, "n": len(val_result)}


# ---------------------------------------------------------------------------------------------
# configs without the registry
# ---------------------------------------------------------------------------------------------
ToyRunSchema = dataclasses.make_dataclass("ToyRunSchema", [], bases=(ToyRunConfig, RunConfig))


class ToyConfig(Config):
    """A :class:`lavis.common.config.Config` built without validation against the registry, so no
    toy class needs registering; everything runners use (``run``, ``save``, ``to_dict``) is Config's."""

    def __init__(self, run: DictConfig):
        self.source = None
        self._cfg = OmegaConf.create({"model": {}, "datasets": {}})
        self._cfg.run = run
        self._run = OmegaConf.to_object(run)


# amp none: the runner's mechanics (accumulation, resume, DDP) are checked in exact fp32 arithmetic;
# bf16 autocast (what the default run.amp=auto picks on bf16 hardware) has its own tests
TEST_DEFAULTS: dict[str, Any] = {
    "task": "toy_task", "device": "cpu", "amp": "none", "progress_bar": False, "tensorboard": False, "log_freq": 1,
    "batch_size_train": 8, "batch_size_eval": 16, "init_lr": 1e-2, "weight_decay": 0.01,
    "warmup_steps": 2, "warmup_lr": 1e-3, "min_lr": 1e-4, "valid_splits": ["val"], "test_splits": ["test"],
}


def make_config(**run: Any) -> ToyConfig:
    """A toy config: :data:`TEST_DEFAULTS` updated with ``run``."""
    merged = OmegaConf.merge(OmegaConf.structured(ToyRunSchema), {**TEST_DEFAULTS, **run})
    return ToyConfig(merged)


def build_runner(runner_cls: type, task_cls: type = ToyTask, **run: Any):
    """``(runner, task)`` for a toy run, built the way the CLI builds a real one."""
    from lavis.common.utils import seed_everything

    cfg = make_config(**run)
    seed_everything(cfg.run.seed)
    task = task_cls(cfg.run)
    datasets = task.build_datasets(cfg)
    model = task.build_model(cfg)
    return runner_cls(cfg=cfg, task=task, model=model, datasets=datasets), task
