"""The typed schema of the ``run`` section of an experiment config.

Every key a runner reads is a field here, with its default. Tasks add their own keys through
``BaseTask.run_schema`` (a dataclass); :func:`lavis.common.config.validate` checks the union, and
``Config.run`` is an instance of it.

A field marked ``metadata={"resume": "sensitive"}`` changes the numbers of a run: when it differs
between a checkpoint and the config that resumes it, the resumed run cannot match an
uninterrupted one (see :func:`resume_sensitive_keys`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, List, Optional

_SENSITIVE = {"resume": "sensitive"}


def _sensitive(default: Any = None, factory: Any = None) -> Any:
    """A field whose change on resume makes the run differ from an uninterrupted one."""
    if factory is not None:
        return field(default_factory=factory, metadata=_SENSITIVE)
    return field(default=default, metadata=_SENSITIVE)

# Keys whose value must be one of a closed set (registry names are checked separately).
RUN_CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "amp": ("none", "auto", "bf16", "fp16"),
    "dist_backend": ("auto", "gloo", "nccl"),
    "distributed_strategy": ("ddp", "fsdp"),
    "save_weights": ("auto", "trained", "all"),
}

# Keys that name an entry of a registry kind (attribute of ``lavis.common.registry.registry``).
RUN_REGISTRY_KEYS: dict[str, str] = {
    "task": "tasks",
    "runner": "runners",
    "lr_sched": "lr_schedulers",
}


@dataclass
class RunConfig:
    """Keys of the ``run`` section common to every task and runner."""

    task: str = "???"  # required: a registered task name
    runner: str = "runner_epoch"  # registered runner: runner_epoch or runner_iter

    # where and how
    output_dir: str = "output/run"  # checkpoints, metrics.jsonl, config.yaml, TensorBoard events
    seed: int = _sensitive(42)
    device: str = "auto"  # auto: cuda when available, else cpu
    amp: str = _sensitive("auto")  # auto (bf16 where supported, else fp32) | none (fp32) | bf16 | fp16 (GPU only)
    dist_backend: str = "auto"  # auto: nccl on GPU, gloo on CPU
    deterministic: bool = False  # torch.use_deterministic_algorithms
    reuse_cpu_memory: bool = True  # on a CPU: glibc's malloc keeps freed memory for the next step (lavis/common/allocator.py)
    compile: bool = False  # torch.compile the training steps (off: not faster end to end on CPU, benchmarks/README.md)
    find_unused_parameters: bool = False  # DDP: set when some parameters get no gradient in a step
    distributed_strategy: str = "ddp"  # with several ranks: ddp (replicas) | fsdp (fully_shard; lavis/runners/fsdp.py)

    # data
    batch_size_train: int = _sensitive(32)  # per process
    batch_size_eval: int = 64  # per process
    num_workers: Optional[int] = None  # data-loader workers per process; null: several on a GPU, 0 on a CPU
    prefetch_factor: int = 2  # batches each data-loader worker keeps ready
    train_splits: List[str] = _sensitive(factory=lambda: ["train"])
    valid_splits: List[str] = field(default_factory=list)
    test_splits: List[str] = field(default_factory=list)

    # optimization
    max_epoch: int = _sensitive(1)  # epoch runner: number of epochs
    max_iters: Optional[int] = _sensitive(None)  # iteration runner: total optimizer-step iterations
    iters_per_inner_epoch: Optional[int] = _sensitive(None)  # iteration runner: iterations between evaluations
    init_lr: float = _sensitive(1e-4)
    min_lr: float = _sensitive(0.0)
    warmup_lr: float = _sensitive(0.0)
    warmup_steps: int = _sensitive(0)
    lr_sched: str = _sensitive("linear_warmup_cosine_lr")
    lr_decay_rate: float = _sensitive(0.9)  # step scheduler: factor per epoch
    weight_decay: float = _sensitive(0.05)
    betas: List[float] = _sensitive(factory=lambda: [0.9, 0.999])
    accum_grad_iters: int = _sensitive(1)
    max_grad_norm: Optional[float] = _sensitive(None)  # clip the global gradient norm; None: no clipping
    skip_nonfinite_steps: int = 0  # skip up to N optimizer steps with a NaN/inf loss or gradient, then stop

    # evaluation, checkpoints, logging
    evaluate: bool = False  # skip training; evaluate test_splits (evaluate.py sets this)
    eval_checkpoint: Optional[str] = None  # weights to evaluate: a checkpoint path, "best" or None (current)
    save_every_iters: int = 0  # also checkpoint every N optimizer steps (0: at epoch ends only)
    # checkpoint weights: auto (only the trained parameters when some are frozen and the model block names
    # weight files for the rest) | trained (only the trained ones whenever some are frozen) | all (every weight)
    save_weights: str = "auto"
    resume_ckpt_path: Optional[str] = None  # exact resume from this checkpoint
    log_freq: int = 10  # log every N optimizer steps
    tensorboard: bool = True
    progress_bar: bool = True
    check_replicas_every: int = 0  # DDP debugging: every N steps verify all ranks hold identical weights


def resume_sensitive_keys(schema: type) -> tuple[str, ...]:
    """Names of the fields of the run dataclass ``schema`` (or of an instance's class) marked
    ``metadata={"resume": "sensitive"}``, in field order."""
    return tuple(f.name for f in dataclasses.fields(schema) if f.metadata.get("resume") == "sensitive")
