"""Optimizers and learning-rate schedules built from the ``run`` section of a config.

Schedules are driven per *optimizer step* (not per micro-batch and not per epoch): before
optimizer step ``s`` (0-based) every parameter group has ``lr = lr_at(s) * group["lr_scale"]``.
A schedule is a pure function of the step, so its state is just the step counter, which makes
exact resume trivial. On resume the schedule is built from the (possibly changed) ``run`` keys and
only the step counter comes from the checkpoint: the config's settings win.

Registered schedules (``run.lr_sched``):

- ``linear_warmup_cosine_lr``: linear warmup over ``run.warmup_steps`` from ``run.warmup_lr`` to
  ``run.init_lr``, then half a cosine down to ``run.min_lr``, reached at the total number of
  optimizer steps of the run.
- ``linear_warmup_step_lr``: the same warmup, then ``init_lr * lr_decay_rate ** epoch`` (never below
  ``min_lr``), where the epoch is counted in optimizer steps per epoch (inner epochs for the
  iteration runner).
- ``constant_lr``: the same warmup, then ``init_lr``.
- ``lavis_cosine_lr`` / ``lavis_step_lr``: LAVIS 1.0's per-epoch schedules (warm-up in the first
  epoch only, then one rate per epoch), for configs that reproduce LAVIS runs; LAVIS-structured
  configs that name ``linear_warmup_cosine_lr`` / ``linear_warmup_step_lr`` get these (see
  :mod:`lavis.common.lavis_compat`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable

import torch
from torch import nn

from lavis.common.errors import CheckpointError, ConfigError
from lavis.common.registry import registry

if TYPE_CHECKING:
    from lavis.common.run_schema import RunConfig

__all__ = [
    "LRScheduler",
    "LinearWarmupCosineLR",
    "LinearWarmupStepLR",
    "ConstantLR",
    "build_lr_scheduler",
    "build_optimizer",
    "param_groups",
]


# ---------------------------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------------------------
class LRScheduler:
    """Base of every registered LR schedule: ``lr_at(step)`` plus a step counter.

    Args:
        optimizer: the optimizer whose groups get the learning rate.
        init_lr: peak learning rate, reached at the end of warmup.
        total_steps: optimizer steps of the whole run (the cosine reaches ``min_lr`` there).
        steps_per_epoch: optimizer steps per (inner) epoch, for per-epoch decay.
        min_lr: floor of the schedule.
        warmup_lr: learning rate of step 0 when ``warmup_steps > 0``.
        warmup_steps: optimizer steps of linear warmup from ``warmup_lr`` to ``init_lr``.
        decay_rate: factor per epoch of the step schedule.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        init_lr: float,
        total_steps: int,
        steps_per_epoch: int,
        min_lr: float = 0.0,
        warmup_lr: float = 0.0,
        warmup_steps: int = 0,
        decay_rate: float = 1.0,
    ):
        if total_steps < 1 or steps_per_epoch < 1:
            raise ConfigError(
                [f"LR schedule needs total_steps >= 1 and steps_per_epoch >= 1, got {total_steps} and "
                 f"{steps_per_epoch}; is the training split empty or run.max_epoch / run.max_iters 0?"]
            )
        if warmup_steps < 0:
            raise ConfigError([f"run.warmup_steps: must be >= 0, got {warmup_steps}"])
        self.optimizer = optimizer
        self.init_lr = float(init_lr)
        self.min_lr = float(min_lr)
        self.warmup_lr = float(warmup_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.steps_per_epoch = int(steps_per_epoch)
        self.decay_rate = float(decay_rate)
        self.last_step = 0  # the next optimizer step to run
        self._apply()

    @classmethod
    def from_config(
        cls, optimizer: torch.optim.Optimizer, run_cfg: "RunConfig", total_steps: int, steps_per_epoch: int
    ) -> "LRScheduler":
        """Build from ``run`` keys ``init_lr``, ``min_lr``, ``warmup_lr``, ``warmup_steps``, ``lr_decay_rate``."""
        return cls(
            optimizer,
            init_lr=run_cfg.init_lr,
            min_lr=run_cfg.min_lr,
            warmup_lr=run_cfg.warmup_lr,
            warmup_steps=run_cfg.warmup_steps,
            decay_rate=run_cfg.lr_decay_rate,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
        )

    # -- the schedule ---------------------------------------------------------------------------
    def warmup_at(self, step: int) -> float | None:
        """The warmup learning rate of ``step``, or ``None`` once warmup is over."""
        if step < self.warmup_steps:
            return self.warmup_lr + (self.init_lr - self.warmup_lr) * step / self.warmup_steps
        return None

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based), before ``lr_scale``."""
        warm = self.warmup_at(step)
        return warm if warm is not None else self.after_warmup(step)

    def after_warmup(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- driving --------------------------------------------------------------------------------
    def _apply(self) -> None:
        lr = self.lr_at(self.last_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        """Call after each optimizer step: sets the learning rate of the next step."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """Current learning rate of each parameter group."""
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Step counter and settings (plain ints/floats/strings; loads with ``weights_only``)."""
        return {
            "name": type(self).__name__,
            "last_step": self.last_step,
            "init_lr": self.init_lr,
            "min_lr": self.min_lr,
            "warmup_lr": self.warmup_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "decay_rate": self.decay_rate,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at the saved step counter with this schedule's own settings (those of the
        current config); the saved settings are only a record of the old run."""
        if "last_step" not in state:
            raise CheckpointError(f"an LR schedule state needs 'last_step'; got keys {sorted(state)}")
        self.last_step = int(state["last_step"])
        self._apply()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(step={self.last_step}/{self.total_steps}, lr={self.lr_at(self.last_step):.3g})"


@registry.register_lr_scheduler("linear_warmup_cosine_lr")
class LinearWarmupCosineLR(LRScheduler):
    """Linear warmup, then half a cosine from ``init_lr`` to ``min_lr`` at ``total_steps``."""

    def after_warmup(self, step: int) -> float:
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, max(0.0, (step - self.warmup_steps) / span))
        return self.min_lr + (self.init_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@registry.register_lr_scheduler("linear_warmup_step_lr")
class LinearWarmupStepLR(LRScheduler):
    """Linear warmup, then ``max(min_lr, init_lr * decay_rate ** epoch)``."""

    def after_warmup(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        return max(self.min_lr, self.init_lr * self.decay_rate**epoch)


@registry.register_lr_scheduler("constant_lr")
class ConstantLR(LRScheduler):
    """Linear warmup, then ``init_lr``."""

    def after_warmup(self, step: int) -> float:
        return self.init_lr


class _LavisEpochLR(LRScheduler):
    """LAVIS 1.0's per-epoch schedules, for configs that reproduce LAVIS runs.

    In the first epoch the rate warms up linearly from ``warmup_lr`` (``init_lr`` when
    ``warmup_lr < 0``, LAVIS's default of -1) to ``init_lr`` over ``warmup_steps`` steps and then
    stays there; from the second epoch on it is one rate per epoch (:meth:`epoch_lr`). LAVIS counts
    data iterations where this counts optimizer steps: the two agree with ``accum_grad_iters: 1``.
    """

    def lr_at(self, step: int) -> float:
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        if epoch == 0:
            start = self.warmup_lr if self.warmup_lr >= 0 else self.init_lr
            return min(self.init_lr, start + (self.init_lr - start) * in_epoch / max(self.warmup_steps, 1))
        return self.epoch_lr(epoch)

    @property
    def num_epochs(self) -> int:
        return max(1, round(self.total_steps / self.steps_per_epoch))

    def epoch_lr(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


@registry.register_lr_scheduler("lavis_cosine_lr")
class LavisCosineLR(_LavisEpochLR):
    """LAVIS's ``linear_warmup_cosine_lr``: warm-up in epoch 0, then
    ``min_lr + (init_lr - min_lr) * (1 + cos(pi * epoch / max_epoch)) / 2`` for the whole epoch."""

    def epoch_lr(self, epoch: int) -> float:
        return self.min_lr + (self.init_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / self.num_epochs))


@registry.register_lr_scheduler("lavis_step_lr")
class LavisStepLR(_LavisEpochLR):
    """LAVIS's ``linear_warmup_step_lr``: warm-up in epoch 0, then ``max(min_lr, init_lr * decay_rate ** epoch)``."""

    def epoch_lr(self, epoch: int) -> float:
        return max(self.min_lr, self.init_lr * self.decay_rate**epoch)


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, run_cfg: "RunConfig", total_steps: int, steps_per_epoch: int
) -> LRScheduler:
    """The schedule named by ``run.lr_sched``, set to step 0."""
    cls = registry.get_lr_scheduler_class(run_cfg.lr_sched)
    return cls.from_config(optimizer, run_cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch)


# ---------------------------------------------------------------------------------------------
# optimizer
# ---------------------------------------------------------------------------------------------
_NORM_TYPES: tuple[type, ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())

_POSITION_HINTS = ("pos_embed", "position_embedding", "position_embeddings", "positional_embedding", "pos_emb")


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()


def _no_decay_names(model: nn.Module) -> set[str]:
    """Names of parameters that get no weight decay (see :func:`param_groups`)."""
    names: set[str] = set()
    explicit = getattr(model, "no_weight_decay", None)
    if callable(explicit):  # timm convention: a set of parameter names (or name prefixes)
        names |= set(explicit())
    for mod_name, module in model.named_modules():
        position_module = isinstance(module, nn.Embedding) and any(h in mod_name for h in ("position", "pos_"))
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if (
                p.ndim <= 1
                or p_name == "bias"
                or p_name.endswith("_bias")
                or _is_norm(module)
                or position_module
                or any(h in full for h in _POSITION_HINTS)
            ):
                names.add(full)
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups of the trainable parameters of ``model``.

    No weight decay on biases, 1-D parameters (norm scales, ...), parameters of normalization
    layers, position-embedding tables and names listed by ``model.no_weight_decay()``; decay
    ``weight_decay`` on everything else. Frozen parameters (``requires_grad=False``) are left out.
    Each group carries ``param_names`` for inspection and ``lr_scale`` (1.0).
    """
    no_decay = _no_decay_names(model)
    decay_p: list[torch.nn.Parameter] = []
    plain_p: list[torch.nn.Parameter] = []
    decay_n: list[str] = []
    plain_n: list[str] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = name in no_decay or any(name.startswith(f"{n}.") for n in no_decay)
        (plain_p if skip else decay_p).append(p)
        (plain_n if skip else decay_n).append(name)
    groups = []
    if decay_p:
        groups.append({"params": decay_p, "param_names": decay_n, "weight_decay": float(weight_decay), "lr_scale": 1.0})
    if plain_p:
        groups.append({"params": plain_p, "param_names": plain_n, "weight_decay": 0.0, "lr_scale": 1.0})
    return groups


def _fused_ok(params: Iterable[torch.Tensor]) -> bool:
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    supported = set(_get_fused_kernels_supported_devices())
    return all(p.device.type in supported and p.is_floating_point() for p in params)


def build_optimizer(model: nn.Module, run_cfg: "RunConfig") -> torch.optim.Optimizer:
    """AdamW over :func:`param_groups` of ``model`` with ``run.init_lr``, ``run.weight_decay``, ``run.betas``.

    Uses the fused kernel where the parameters' device supports it, else the multi-tensor
    (``foreach``) one. Build it after the model is on its device.
    """
    groups = param_groups(model, run_cfg.weight_decay)
    if not groups:
        raise ConfigError(["model: has no trainable parameters (all have requires_grad=False); nothing to optimize"])
    betas = tuple(float(b) for b in run_cfg.betas)
    if len(betas) != 2:
        raise ConfigError([f"run.betas: expected two numbers, got {list(run_cfg.betas)}"])
    params = [p for g in groups for p in g["params"]]
    kwargs: dict[str, Any] = {"lr": float(run_cfg.init_lr), "betas": betas}
    if _fused_ok(params):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, ValueError):  # e.g. a dtype the fused kernel lacks
            pass
    return torch.optim.AdamW(groups, foreach=True, **kwargs)
