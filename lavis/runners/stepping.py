"""What a training step needs besides the loop: the loss and scalar extras of a task's output,
gradient norms and clipping, and the value checks of the common ``run`` keys."""

from __future__ import annotations

import time

import logging
from typing import Any, Callable, Iterator, Mapping

import torch

from lavis.common.errors import LavisError, TrainingError
from lavis.runners.data import batch_size_of, move_to_device

__all__ = ["RUNNER_TRAIN_KEYS", "BatchUpdates", "ScalarExtras", "clip_and_step", "clip_with_norm", "common_run_problems",
           "loss_of", "total_norm"]

log = logging.getLogger("lavis.runners")

# values the runner itself logs for a training step; extras may not reuse these names
RUNNER_TRAIN_KEYS = frozenset({"loss", "loss_avg", "lr", "grad_norm", "samples_per_s", "s_per_step"})


def loss_of(out: Any) -> torch.Tensor:
    """The scalar loss of what ``task.train_step`` returned (a ModelOutput, a dict or a tensor)."""
    loss: object
    if isinstance(out, torch.Tensor):
        loss = out
    else:
        loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TrainingError(
            f"task.train_step must return a ModelOutput (or a dict) whose `loss` is a scalar tensor; "
            f"got {type(out).__name__} with loss {type(loss).__name__}"
        )
    return loss.reshape(())


def _is_scalar(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and value.dtype != torch.bool
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ScalarExtras:
    """Picks the scalar entries of the outputs' ``extras`` for logging.

    The names are fixed at the first micro-batch (every rank must reduce the same values, in the
    same order) and may not reuse a name the runner logs itself.
    """

    def __init__(self) -> None:
        self._names: tuple[str, ...] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The logged names, sorted (empty before the first output)."""
        return self._names or ()

    def collect(self, out: Any, device: torch.device, task_name: str) -> dict[str, torch.Tensor]:
        """``{name: 0-d float tensor on device}`` of the scalar extras of ``out``."""
        extras = out.get("extras") if isinstance(out, Mapping) else getattr(out, "extras", None)
        extras = dict(extras) if isinstance(extras, Mapping) else {}
        if self._names is None:
            scalar = sorted(k for k, v in extras.items() if _is_scalar(v))
            clash = [k for k in scalar if k in RUNNER_TRAIN_KEYS]
            if clash:
                raise TrainingError(
                    f"{task_name}.train_step returned extras {clash}, names the runner logs itself "
                    f"({', '.join(sorted(RUNNER_TRAIN_KEYS))}); rename them in the model's ModelOutput.extras"
                )
            skipped = sorted(set(extras) - set(scalar))
            if skipped:
                log.info("not logging extras %s of the model output: only scalars are logged", skipped)
            self._names = tuple(scalar)
        got = {}
        for name in self._names:
            if name not in extras:
                raise TrainingError(
                    f"the model output's extras lost {name!r} after the first step (it had {list(self._names)}); "
                    "a model must return the same scalar extras at every step"
                )
            value = extras[name]
            got[name] = (value.detach().float().reshape(()) if isinstance(value, torch.Tensor)
                         else torch.tensor(float(value))).to(device)
        return got


class BatchUpdates:
    """The task's outputs for the optimizer updates on one group of micro-batches.

    Micro-batch ``j`` is fetched (``fetch()``, moved to ``device``) when its first output is asked
    for, and its outputs come from ``task.train_updates(model, samples)``, one per update, which
    must yield exactly ``updates`` of them (:meth:`finish` checks that none is left).
    """

    def __init__(self, task: Any, model: torch.nn.Module, fetch: Callable[[], Any], device: torch.device,
                 pin: bool, updates: int) -> None:
        self.task, self.model, self.fetch, self.updates = task, model, fetch, updates
        self.device, self.pin = device, pin
        self.streams: list[Iterator[Any]] = []
        self.fetched = 0  # samples of the micro-batches fetched so far

    def output(self, j: int) -> Any:
        """The next output of micro-batch ``j`` (fetching it at the first update)."""
        if j == len(self.streams):
            samples = self.fetch()
            self.fetched += batch_size_of(samples)
            samples = move_to_device(samples, self.device, non_blocking=self.pin)
            self.streams.append(iter(self.task.train_updates(self.model, samples)))
        try:
            return next(self.streams[j])
        except StopIteration:
            raise TrainingError(self._count_error("fewer")) from None

    def samples_per_update(self) -> float:
        """This group's samples shared evenly over its updates (asked after an update, when every
        micro-batch of the group has been fetched), so that throughput counts each sample once
        and every logged window of steps, even one inside a batch, gets its share."""
        return self.fetched / self.updates

    def finish(self, made: int) -> None:
        """Close the streams after ``made`` updates; an error if a full group's streams are not exhausted."""
        for stream in self.streams:
            if made == self.updates and next(stream, None) is not None:
                raise TrainingError(self._count_error("more"))
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _count_error(self, which: str) -> str:
        name = type(self.task).__name__
        return (f"{name}.train_updates yielded {which} outputs than {name}.updates_per_batch() = {self.updates}; "
                "they must agree (the runner plans the LR schedule and the steps of every rank on that number)")


class Throughput:
    """Samples trained since the last log line, and the time they took (``restart`` after anything
    that is not training, such as validation, so it counts training time only)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.start, self.samples = time.perf_counter(), 0.0

    def rates(self, steps: int) -> dict[str, float]:
        """``samples_per_s`` and ``s_per_step`` over the last ``steps`` steps; restarts the count."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {"samples_per_s": self.samples / elapsed, "s_per_step": elapsed / steps}
        self.restart()
        return out


def _sharded(grads: list[torch.Tensor]) -> bool:
    from torch.distributed.tensor import DTensor

    return bool(grads) and isinstance(grads[0], DTensor)


def _full(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all gradients together (a 0-d float tensor; inf/nan when any gradient is).
    Of the whole gradients when they are FSDP's sharded DTensors (collective then)."""
    if _sharded(grads):
        return _full(torch.nn.utils.get_total_norm(grads, 2.0)).float()
    norms = torch._foreach_norm(grads) if hasattr(torch, "_foreach_norm") else [torch.linalg.vector_norm(g) for g in grads]
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def clip_with_norm(grads: list[torch.Tensor], max_norm: float, norm: torch.Tensor) -> None:
    """Scale ``grads`` in place so that their total norm ``norm`` becomes at most ``max_norm``."""
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    if _sharded(grads):  # scale each rank's shards
        grads = [g.to_local() for g in grads]  # type: ignore[attr-defined]
    torch._foreach_mul_(grads, coef.to(grads[0].device))


def clip_and_step(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, scaler: Any,
                  max_grad_norm: float | None, norm: torch.Tensor | None) -> float | None:
    """Clip the gradients of ``params`` (the parameters that have one) to ``max_grad_norm``
    (``norm``: their total norm, computed when there is no gradient scaler), take the optimizer step
    (through ``scaler`` under fp16) and zero the gradients. Returns the norm before clipping, or
    ``None`` without clipping."""
    grad_norm = None
    if scaler is not None:
        scaler.unscale_(optimizer)
        if max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm).item())
    elif max_grad_norm is not None and norm is not None:
        grad_norm = float(norm.item())
        clip_with_norm([g for p in params if (g := p.grad) is not None], max_grad_norm, norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def common_run_problems(run: Mapping[str, Any]) -> list[str]:
    """Problems with the values of the run keys every training runner reads, as ``run.key: what``."""
    problems = []
    for key in ("num_workers", "save_every_iters", "log_freq", "check_replicas_every", "warmup_steps",
                "skip_nonfinite_steps"):
        value = run.get(key)
        if isinstance(value, int) and value < 0:
            problems.append(f"run.{key}: must be >= 0, got {value}")
    prefetch = run.get("prefetch_factor")
    if isinstance(prefetch, int) and prefetch < 1:
        problems.append(f"run.prefetch_factor: must be >= 1, got {prefetch}")
    norm = run.get("max_grad_norm")
    if isinstance(norm, (int, float)) and norm <= 0:
        problems.append(f"run.max_grad_norm: must be > 0 (or null for no clipping), got {norm}")
    betas = run.get("betas")
    if isinstance(betas, (list, tuple)) and len(betas) != 2:
        problems.append(f"run.betas: expected two numbers, got {list(betas)}")
    if run.get("distributed_strategy") == "fsdp":
        if run.get("check_replicas_every"):
            problems.append("run.check_replicas_every: compares whole weights across DDP replicas; under "
                            "run.distributed_strategy=fsdp each rank holds a shard, so set it to 0")
        if run.get("amp") == "fp16":
            problems.append("run.amp: fp16 (loss scaling) is not supported with run.distributed_strategy=fsdp; "
                            "use bf16 or none")
    if run.get("amp") == "fp16":
        device = run.get("device", "auto")
        if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
            problems.append(
                "run.amp: fp16 needs a CUDA GPU (it relies on loss scaling); this run is on cpu. "
                "Use run.amp=bf16 (or auto) for mixed precision on CPU, or run.amp=none"
            )
    return problems


def validation_score(metrics: Mapping[str, Mapping[str, Any]], task_name: str) -> float | None:
    """The mean ``agg_metrics`` over the validation splits (higher is better), or ``None`` when
    every split reports ``agg_metrics: None`` (the task scores nothing); anything else is an error."""
    if metrics and all(m.get("agg_metrics", 0) is None for m in metrics.values()):
        return None
    missing = [k for k, m in metrics.items() if not isinstance(m.get("agg_metrics"), (int, float))]
    if missing:
        raise LavisError(
            f"{task_name}.after_evaluation returned no numeric 'agg_metrics' for {missing}; "
            "it is the score (higher is better) that picks checkpoint_best.pth"
        )
    return sum(float(m["agg_metrics"]) for m in metrics.values()) / len(metrics)
