"""Runners own the loop: devices, distribution, precision, accumulation, checkpoints, logging."""

from __future__ import annotations

from typing import Any


class BaseRunner:
    """Base of every registered runner.

    Built as ``runner_cls(cfg, task, model, datasets, job_id)`` where ``cfg`` is the validated
    :class:`lavis.common.config.Config`, ``datasets`` is ``{dataset_name: {split: Dataset}}``.
    ``train()`` runs training (with evaluation on ``run.valid_splits``) and returns the final
    metrics; ``evaluate()`` scores ``run.test_splits`` (or the given splits) and returns metrics.
    """

    def train(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, splits: list[str] | None = None) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError
