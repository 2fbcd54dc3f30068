"""Runners own the loop: devices, distribution, precision, accumulation, checkpoints, logging.

:class:`BaseRunner` is the contract every registered runner follows. :class:`TrainRunnerBase`
implements everything the epoch- and iteration-based runners share: setup, one optimizer step,
evaluation, checkpoints and resume. A subclass decides only how steps are grouped into (inner)
epochs (:meth:`TrainRunnerBase.schedule_lengths` and :meth:`TrainRunnerBase.train_loop`).

The runner talks to the task only through :class:`lavis.tasks.base_task.BaseTask`:
``train_updates(ddp_model, samples)`` (``updates_per_batch()`` outputs, one per optimizer step, each with
a ``.loss``; by default one ``train_step``),
``evaluation(model, loader)`` and ``after_evaluation(results, split, epoch, dataset)`` (a dict with
``agg_metrics``, higher is better).
"""

from __future__ import annotations

import dataclasses
import gc
import inspect
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Mapping

import torch
from torch.utils.data import DataLoader, Dataset

from lavis.common import dist
from lavis.common.allocator import reuse_freed_memory
from lavis.common.checkpoint import get_rng_state
from lavis.common.errors import CheckpointError, ConfigError, LavisError
from lavis.common.logger import MetricLogger, SmoothedValue, setup_logging, to_plain
from lavis.common.optim import LRScheduler, build_lr_scheduler, build_optimizer
from lavis.common.utils import resolve_device, seed_everything
from lavis.common.run_schema import RunConfig
from lavis.models.base_model import TrainProgress
from lavis.runners import checkpointing as ckpt_io, fsdp
from lavis.runners.divergence import STABLE_NAME, LossWatch, nonfinite_advice, nonfinite_error, record_skipped_step
from lavis.runners.data import (
    LoaderSettings, ResumableDistributedSampler, SeededDataset, ShardedEvalSampler, concat_splits,
    dataset_len, make_loader, mix_seed, skipped_report, split_problems
)
from lavis.runners.precision import resolve_precision
from lavis.runners.stepping import (
    BatchUpdates, ScalarExtras, Throughput, clip_and_step, common_run_problems, loss_of, total_norm, validation_score,
)

if TYPE_CHECKING:
    from torch.nn.parallel import DistributedDataParallel
    from tqdm import tqdm

    from lavis.common.config import Config
    from lavis.models.base_model import BaseModel
    from lavis.tasks.base_task import BaseTask

log = logging.getLogger("lavis.runners")

class BaseRunner:
    """Base of every registered runner.

    Built as ``runner_cls(cfg, task, model, datasets, job_id)`` where ``cfg`` is the validated
    :class:`lavis.common.config.Config`, ``datasets`` is ``{dataset_name: {split: Dataset}}``.
    ``train()`` runs training (with evaluation on ``run.valid_splits``) and returns the final
    metrics; ``evaluate()`` scores ``run.test_splits`` (or the given splits) and returns metrics.
    """

    def __init__(
        self,
        cfg: "Config",
        task: "BaseTask",
        model: "BaseModel",
        datasets: Mapping[str, Mapping[str, Dataset]],
        job_id: str | None = None,
    ) -> None:
        """Keep what every runner works on; ``datasets`` (``{name: {split: Dataset}}``) is copied."""
        self.cfg = cfg
        self.task = task
        self.model = model
        self.datasets = {name: dict(splits) for name, splits in datasets.items()}
        self.job_id = job_id

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        """Problems with the ``run`` values this runner reads, as ``run.key: what`` strings.

        Config validation calls it with every run key (the schema default where a key is not
        set; types already checked), before anything is built, so a bad run section fails at
        once. Checks that need the built data sets stay in the runner.
        """
        return []

    def train(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, splits: list[str] | None = None) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


class TrainRunnerBase(BaseRunner):
    """Shared machinery of the epoch and iteration runners (see the module docstring).

    Attributes a caller may use: ``model`` (unwrapped, on ``device``), ``optimizer``,
    ``lr_scheduler`` (after training starts), ``state`` (:class:`TrainState`), ``output_dir``.
    """

    name: ClassVar[str] = "runner"

    def __init__(
        self,
        cfg: "Config",
        task: "BaseTask",
        model: "BaseModel",
        datasets: Mapping[str, Mapping[str, Dataset]],
        job_id: str | None = None,
    ) -> None:
        super().__init__(cfg, task, model, datasets, job_id)
        self.run_cfg: RunConfig = cfg.run
        run = self.run_cfg
        setup_logging()
        dist.init_distributed(run.dist_backend)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.device = resolve_device(run.device)
        self.precision = resolve_precision(run.amp, self.device)
        if run.reuse_cpu_memory and self.device.type == "cpu":
            reuse_freed_memory()  # fewer page faults per step (lavis/common/allocator.py)
        self.output_dir = Path(run.output_dir)
        self._check_config()
        if run.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        self.model = model.to(self.device)
        self._optimizer: torch.optim.Optimizer | None = None
        self.scaler = self.precision.make_scaler()
        self.lr_scheduler: LRScheduler | None = None
        self.state = ckpt_io.TrainState()
        self.loss_meter = SmoothedValue(window=max(1, run.log_freq))
        self.loss_watch = LossWatch()
        self.extras = ScalarExtras()  # the model output's scalar extras, logged with the loss
        self._last_saved_step: int | None = None
        self.logger: MetricLogger | None = None
        self._ddp: DistributedDataParallel | None = None
        self._compiled: torch.nn.Module | None = None  # torch.compile of the training view (run.compile)
        self._train_loader: DataLoader | None = None
        self._train_sampler: ResumableDistributedSampler | None = None
        self._eval_loaders: dict[tuple[str, str], DataLoader] = {}
        self.throughput = Throughput()
        self._loading = LoaderSettings.for_run(run.num_workers, run.prefetch_factor, self.device)

    # ------------------------------------------------------------------------------------------
    # configuration checks and sizes
    # ------------------------------------------------------------------------------------------
    def _check_config(self) -> None:
        run = self.run_cfg
        problems = split_problems(self.datasets, run.train_splits, run.valid_splits, run.test_splits, run.evaluate)
        # config validation ran these already; repeated for runners built from an unvalidated config
        problems += type(self).validate_run(dataclasses.asdict(run))
        if problems:
            raise ConfigError(problems, source=getattr(self.cfg, "source", None))

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        """Value checks of the common run keys (see :meth:`BaseRunner.validate_run`)."""
        return common_run_problems(run)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """AdamW over the trainable parameters (built on first use, so evaluation needs none)."""
        if self._optimizer is None:
            fsdp.shard(self.model, self.run_cfg, self.world_size)  # no-op unless run.distributed_strategy: fsdp
            self._frozen_watch = ckpt_io.FrozenWatch(self.model)  # frozen weights that change anyway (momentum)
            self._optimizer = build_optimizer(self.model, self.run_cfg)
        return self._optimizer

    @property
    def batches_per_epoch(self) -> int:
        """Micro-batches each rank gets from one pass over the training data."""
        sampler = self.train_sampler
        return math.ceil(sampler.per_rank / self.run_cfg.batch_size_train)

    def schedule_lengths(self) -> tuple[int, int]:  # pragma: no cover - abstract
        """``(total optimizer steps of the run, optimizer steps per (inner) epoch)``."""
        raise NotImplementedError

    def train_loop(self) -> None:  # pragma: no cover - abstract
        """Run training from ``self.state`` to the end, calling :meth:`train_group`,
        :meth:`maybe_save_periodic` and :meth:`end_epoch`."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------
    # model views and data
    # ------------------------------------------------------------------------------------------
    @property
    def train_model(self) -> torch.nn.Module:
        """The model given to ``task.train_step``: DDP-wrapped when distributed, compiled with ``run.compile``."""
        if self._compiled is not None:
            return self._compiled
        return self._ddp if self._ddp is not None else self.model

    def _wrap_ddp(self) -> None:
        if self.world_size > 1 and self._ddp is None and not fsdp.is_sharded(self.model):
            from torch.nn.parallel import DistributedDataParallel

            self._ddp = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.run_cfg.find_unused_parameters,
            )
        if self.run_cfg.compile and self._compiled is None:
            compiled = torch.compile(self._ddp if self._ddp is not None else self.model)
            assert isinstance(compiled, torch.nn.Module)  # compiling a module gives an OptimizedModule
            self._compiled = compiled

    @property
    def train_sampler(self) -> ResumableDistributedSampler:
        if self._train_sampler is None:
            self._build_train_loader()
        return self._train_sampler  # type: ignore[return-value]

    def _build_train_loader(self) -> None:
        run = self.run_cfg
        data = concat_splits(self.datasets, list(run.train_splits))
        self._train_sampler = ResumableDistributedSampler(
            dataset_len(data, "run.train_splits"), self.world_size, self.rank, shuffle=True, seed=run.seed
        )
        if self._train_sampler.per_rank == 0:
            raise ConfigError([f"run.train_splits: {list(run.train_splits)} hold no samples"])
        self._train_loader = make_loader(
            SeededDataset(data, run.seed), self._train_sampler, run.batch_size_train,
            self._loading, seed=mix_seed(run.seed, self.rank),
        )

    def train_batches(self, data_epoch: int, start_batch: int) -> Iterator[Any]:
        """An iterator over this rank's micro-batches of ``data_epoch`` from batch ``start_batch``."""
        self.train_sampler.set_epoch(data_epoch, start=start_batch * self.run_cfg.batch_size_train)
        assert self._train_loader is not None
        return iter(self._train_loader)

    def eval_loader(self, name: str, split: str) -> DataLoader:
        """Loader over this rank's share of ``datasets[name][split]`` (each item on exactly one rank)."""
        key = (name, split)
        if key not in self._eval_loaders:
            run = self.run_cfg
            data = self.datasets[name][split]
            sampler = ShardedEvalSampler(dataset_len(data, f"datasets.{name}"), self.world_size, self.rank)
            self._eval_loaders[key] = make_loader(
                SeededDataset(data, run.seed), sampler, run.batch_size_eval, self._loading, seed=run.seed
            )
        return self._eval_loaders[key]

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train (resuming from ``run.resume_ckpt_path`` if set), then score ``run.test_splits``.

        Returns ``{"train": {loss, global_step, epochs, replica_checks}, "best": {epoch, agg_metrics},
        "valid": {"<dataset>/<split>": metrics of the last validation}, "test": {...}}``. After it,
        ``model`` holds the best weights when there was validation, else the last ones.
        """
        if self.run_cfg.evaluate:
            return self.evaluate()
        self._begin_training()
        try:
            self.train_loop()
            result = self._finish_training()
            dist.barrier()  # no rank leaves (and tears the process group down) while another still communicates
            return result
        finally:
            self._close()

    def _begin_training(self) -> None:
        run = self.run_cfg
        if dist.is_main_process():
            self.output_dir.mkdir(parents=True, exist_ok=True)
            for p in ckpt_io.remove_stale_temp_files(self.output_dir):
                log.info("removed %s left by an interrupted run", p.name)
            self.cfg.save(self.output_dir)
        self._open_logger()
        total_steps, steps_per_epoch = self.schedule_lengths()
        self._steps_per_epoch = steps_per_epoch
        self.lr_scheduler = build_lr_scheduler(self.optimizer, run, total_steps, steps_per_epoch)
        if run.resume_ckpt_path:
            self._resume(run.resume_ckpt_path)
        else:
            seed_everything(run.seed + self.rank)  # per-rank streams for dropout and the like
        self._wrap_ddp()
        self.model.train()
        self.throughput.restart()
        log.info(
            "%s: %d rank(s) on %s, precision %s, %d optimizer steps (%d per epoch), %d micro-batches of %d per rank "
            "per data epoch, accumulation %d", self.name, self.world_size, self.device, self.precision.name,
            total_steps, steps_per_epoch, self.batches_per_epoch, run.batch_size_train, run.accum_grad_iters,
        )

    def _open_logger(self) -> None:
        if self.logger is None:
            main = dist.is_main_process()
            self.logger = MetricLogger(self.output_dir, tensorboard=self.run_cfg.tensorboard and main, enabled=main)

    def _close(self) -> None:
        # Free the DDP wrapper (and its reducer's pending work) while the process group still exists:
        # destroying it after destroy_process_group, or at interpreter exit, can abort the process.
        self._compiled = None
        if self._ddp is not None:
            self._ddp = None
            gc.collect()
        if self.logger is not None:
            self.logger.close()
            self.logger = None

    def progress(self, total: int, initial: int, desc: str) -> "tqdm[Any]":
        """A tqdm bar over optimizer steps on the main rank (disabled by ``run.progress_bar=false``)."""
        from tqdm.auto import tqdm

        return tqdm(
            total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True,
            disable=not (self.run_cfg.progress_bar and dist.is_main_process()),
        )

    def train_group(self, fetch: Callable[[], Any], group_size: int, max_updates: int | None = None) -> int:
        """The task's optimizer steps on the next ``group_size`` micro-batches from ``fetch()``:
        ``task.updates_per_batch()`` of them (at most ``max_updates``), each averaging the
        micro-batches' next outputs of ``task.train_updates``; returns the number of steps made."""
        per_batch = int(self.task.updates_per_batch())
        n = per_batch if max_updates is None else min(per_batch, max_updates)
        self.model.train_progress = TrainProgress(self.state.global_step, self._steps_per_epoch)
        updates = BatchUpdates(self.task, self.train_model, fetch, self.device, self._loading.pin_memory, per_batch)
        for _ in range(n):
            self.optimizer_step(updates, group_size)
        updates.finish(n)
        return n

    def optimizer_step(self, updates: BatchUpdates, group_size: int) -> float:
        """One optimizer step over the next outputs of ``group_size`` micro-batches; returns the mean loss.

        Gradients of the micro-batches are averaged (DDP synchronizes only on the last one). The
        loss and the scalar ``extras`` of the outputs are averaged over micro-batches and ranks.
        A NaN/inf loss (or, without a gradient scaler, gradient) on any rank skips the step on
        every rank when ``run.skip_nonfinite_steps`` allows one more skip, and otherwise raises
        :class:`TrainingError`; either way the weights do not change. (With fp16 the
        ``GradScaler`` skips steps with inf gradients itself and lowers its scale; those are not
        counted.)
        """
        run, st = self.run_cfg, self.state
        loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        extras_sum: dict[str, torch.Tensor] = {}
        for j in range(group_size):
            # DDP / FSDP synchronize the gradients on the last micro-batch only
            with fsdp.no_sync(self._ddp, self.model, last=j == group_size - 1):
                with self.precision.autocast():
                    out = updates.output(j)
                    loss = loss_of(out)
                scaled = loss.float() / group_size
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            loss_sum += loss.detach().float()
            for name, value in self.extras.collect(out, self.device, type(self.task).__name__).items():
                extras_sum[name] = extras_sum.get(name, 0) + value
        n_samples = updates.samples_per_update()
        params = [p for p in self.model.parameters() if p.grad is not None]
        grads = [g for p in params if (g := p.grad) is not None]
        gnorm: torch.Tensor | None = None
        bad_grad = torch.zeros((), device=self.device)
        if self.scaler is None and grads:  # the scaler finds inf gradients itself
            gnorm = total_norm(grads)
            bad_grad = (~torch.isfinite(gnorm)).float()
        names = self.extras.names
        parts = [loss_sum, torch.tensor(float(group_size), device=self.device), bad_grad]
        parts += [extras_sum.get(n, torch.zeros((), device=self.device)).float() for n in names]
        stats = dist.all_reduce_sum(torch.stack(parts))  # one collective: every rank decides alike
        mean_loss = float((stats[0] / stats[1]).item())
        step = st.global_step + 1
        if not math.isfinite(mean_loss) or stats[2].item() > 0:
            if not math.isfinite(mean_loss):
                what, bad_value = "loss", mean_loss
            else:  # NaN here when this rank had no gradients and another rank's were not finite
                what, bad_value = "gradient norm", float(gnorm) if gnorm is not None else math.nan
            self.optimizer.zero_grad(set_to_none=True)
            if st.skipped_steps < run.skip_nonfinite_steps:
                self._skip_step(what, bad_value, step)
                return mean_loss
            self._raise_nonfinite(what, bad_value, step)
        lr = self.optimizer.param_groups[0]["lr"]
        grad_norm = clip_and_step(params, self.optimizer, self.scaler, run.max_grad_norm, gnorm)
        assert self.lr_scheduler is not None
        self.lr_scheduler.step()
        st.global_step = step
        self.loss_meter.update(mean_loss)
        self.loss_watch.update(mean_loss)
        extras = {name: float(stats[3 + k] / stats[1]) for k, name in enumerate(names)}
        if run.check_replicas_every and step % run.check_replicas_every == 0:
            dist.check_replicas(self.model, step)
            st.replica_checks += 1
        self._log_step(mean_loss, lr, grad_norm, n_samples * self.world_size, extras)
        return mean_loss

    def _skip_step(self, what: str, value: float, step: int) -> None:
        self.state.skipped_steps += 1
        record_skipped_step(self.state, self.run_cfg.skip_nonfinite_steps, self.logger, what, value, step)

    def _raise_nonfinite(self, what: str, value: float, step: int) -> None:
        st, run = self.state, self.run_cfg
        where = f"epoch {st.epoch}, data epoch {st.data_epoch}, micro-batch {st.data_batches}"
        raise nonfinite_error(what, value, step, where, st.skipped_steps, run.skip_nonfinite_steps,
                              nonfinite_advice(self.loss_watch, self.output_dir, run.init_lr))

    def _log_step(
        self, loss: float, lr: float, grad_norm: float | None, samples: float, extras: Mapping[str, float]
    ) -> None:
        run, st = self.run_cfg, self.state
        self.throughput.samples += samples
        if not run.log_freq or st.global_step % run.log_freq:
            return
        values: dict[str, Any] = {"loss": loss, "loss_avg": self.loss_meter.avg, "lr": lr}
        if grad_norm is not None:
            values["grad_norm"] = grad_norm
        values.update(extras)  # like the loss: this step's mean over micro-batches and ranks
        values.update(self.throughput.rates(run.log_freq))
        assert self.logger is not None
        self.logger.log_event("train", values, step=st.global_step, epoch=st.epoch)

    def maybe_save_periodic(self) -> None:
        """Write ``checkpoint_latest.pth`` when ``run.save_every_iters`` says so (collective)."""
        every, step = self.run_cfg.save_every_iters, self.state.global_step
        # a multiple of `every` reached since the last save (a task may make several steps per batch)
        if every and step // every > (self._last_saved_step or 0) // every:
            self._save(epoch_end=False, improved=False)

    def end_epoch(self) -> None:
        """Validate, mark the epoch done and write the epoch checkpoints (collective)."""
        for line in skipped_report(self.datasets, list(self.run_cfg.train_splits)):
            log.warning("epoch %d: %s", self.state.epoch, line)
        improved = self._validate()
        self.state.epoch_done = True
        self._save(epoch_end=True, improved=improved)
        self.model.train()
        self.throughput.restart()  # throughput counts training time only

    # ------------------------------------------------------------------------------------------
    # evaluation
    # ------------------------------------------------------------------------------------------
    def _evaluate_splits(
        self, splits: list[str], epoch: int | str, step: int | None = None
    ) -> dict[str, dict[str, Any]]:
        step = self.state.global_step if step is None else step
        out: dict[str, dict[str, Any]] = {}
        takes_progress = "progress" in inspect.signature(self.task.evaluation).parameters
        kwargs = {"progress": self.run_cfg.progress_bar} if takes_progress else {}
        for split in splits:
            for name, ds in self.datasets.items():
                if split not in ds:
                    continue
                with torch.no_grad(), self.precision.autocast(), fsdp.gathered(self.model):
                    results = self.task.evaluation(self.model, self.eval_loader(name, split), **kwargs)
                metrics = self.task.after_evaluation(results, split, epoch, ds[split])
                if not isinstance(metrics, Mapping):
                    raise LavisError(
                        f"{type(self.task).__name__}.after_evaluation must return a dict of metrics, "
                        f"got {type(metrics).__name__}"
                    )
                metrics = to_plain(dict(metrics))
                out[f"{name}/{split}"] = metrics
                if self.logger is not None:
                    self.logger.log_event(f"{name}/{split}", metrics, step=step, epoch=epoch)
        return out

    def _validate(self) -> bool:
        """Evaluate ``run.valid_splits``; returns whether ``agg_metrics`` improved."""
        if not self.run_cfg.valid_splits:
            return False
        st = self.state
        metrics = self._evaluate_splits(list(self.run_cfg.valid_splits), epoch=st.epoch)
        st.last_valid = metrics
        score = validation_score(metrics, type(self.task).__name__)
        if score is None:  # the task scores nothing (e.g. report_metric: false): keep the latest weights
            if st.best_epoch is None:
                log.info("validation computes no metric (the task reports agg_metrics: null, e.g. "
                         "run.report_metric: false): checkpoint_best.pth holds the latest epoch's weights")
            st.best_metric, st.best_epoch = None, st.epoch
            return True
        if st.best_metric is None or score > st.best_metric:
            st.best_metric, st.best_epoch = score, st.epoch
            return True
        return False

    def evaluate(self, splits: list[str] | None = None) -> dict[str, Any]:
        """Score ``splits`` (default ``run.test_splits``) with the weights ``run.eval_checkpoint``
        names: a checkpoint path, ``"best"`` (``<output_dir>/checkpoint_best.pth``) or null (the
        current weights). Returns ``{"<dataset>/<split>": metrics}``."""
        run = self.run_cfg
        splits = list(splits if splits is not None else run.test_splits)
        if not splits:
            raise ConfigError(["run.test_splits: empty, so there is nothing to evaluate; name the splits to score"])
        unknown = [s for s in splits if not any(s in d for d in self.datasets.values())]
        if unknown:
            have = "; ".join(f"{n}: {', '.join(d)}" for n, d in self.datasets.items())
            raise ConfigError([f"evaluate: {unknown} matches no split of the datasets ({have})"])
        own_logger = self.logger is None
        self._open_logger()
        try:
            label: int | str = self.state.epoch
            step = self.state.global_step
            if run.eval_checkpoint:
                best = run.eval_checkpoint == "best"
                path = self.output_dir / "checkpoint_best.pth" if best else Path(run.eval_checkpoint)
                if not path.is_file():
                    hint = " (train with run.valid_splits first, or give a checkpoint path)" if best else ""
                    raise CheckpointError(f"run.eval_checkpoint: {path} does not exist{hint}")
                saved = ckpt_io.load_model_weights(self.model, path) or {}
                label = "best" if best else saved.get("epoch", str(path))
                step = int(saved.get("global_step", 0))  # log at the step the weights come from
            return self._evaluate_splits(splits, epoch=label, step=step)
        finally:
            if own_logger:
                self._close()

    def _finish_training(self) -> dict[str, Any]:
        run, st = self.run_cfg, self.state
        test: dict[str, Any] = {}
        best_path = self.output_dir / "checkpoint_best.pth"
        if run.test_splits:
            label: int | str = st.epoch
            if run.valid_splits and st.best_epoch is not None:
                dist.barrier()  # rank 0 wrote it
                ckpt_io.load_model_weights(self.model, best_path)
                label = "best"
            test = self._evaluate_splits(list(run.test_splits), epoch=label)
        return {
            "train": {"loss": self.loss_meter.avg, "global_step": st.global_step, "epochs": st.epoch + 1,
                      "replica_checks": st.replica_checks},
            "best": {"epoch": st.best_epoch, "agg_metrics": st.best_metric},
            "valid": dict(st.last_valid),
            "test": test,
        }

    # ------------------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        assert self.lr_scheduler is not None
        rng = dist.all_gather_object(get_rng_state())  # collective: one state per rank
        model_state, optimizer_state = fsdp.state_dicts(self.model, self.optimizer)  # full; collective under FSDP
        return {
            **ckpt_io.model_entries(self.model, model_state, self.cfg, self._frozen_watch),
            "optimizer": optimizer_state,
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "state": self.state.to_dict(),
            "rng": rng,
            "meters": {"loss": self.loss_meter.state_dict(), "loss_watch": self.loss_watch.state_dict()},
            "config": self.cfg.to_dict(),
            "world_size": self.world_size,
            "job_id": self.job_id,
            "runner": self.name,
        }

    def _save(self, epoch_end: bool, improved: bool) -> None:
        stable = self.loss_watch.at_checkpoint(self.state.global_step)  # same verdict on every rank
        payload = self._payload()  # collective
        if dist.is_main_process():
            written = ckpt_io.write_checkpoints(payload, self.output_dir, self.state.epoch, epoch_end, improved)
            if stable:
                ckpt_io.link_or_copy(written, self.output_dir / STABLE_NAME)
            log.info("saved %s at global step %d%s", written.name, self.state.global_step,
                     "" if stable else " (the training loss rose since the last stable checkpoint; "
                     f"{STABLE_NAME} stays at global step {self.loss_watch.stable_step})")
        self._last_saved_step = self.state.global_step

    def _resume(self, path: str | os.PathLike) -> None:
        assert self.lr_scheduler is not None
        ckpt = ckpt_io.load_training_checkpoint(path)
        self.state = ckpt_io.restore_training(
            ckpt, path, model=self.model, optimizer=self.optimizer, lr_scheduler=self.lr_scheduler,
            scaler=self.scaler, loss_meter=self.loss_meter, run_cfg=self.run_cfg, rank=self.rank,
            world_size=self.world_size,
        )
        if "loss_watch" in (ckpt.get("meters") or {}):
            self.loss_watch.load_state_dict(ckpt["meters"]["loss_watch"])
        self._check_resume_position()
        st = self.state
        if self.logger is not None:
            self.logger.truncate_after(st.global_step)
        if self.rank == 0:
            ckpt_io.adopt_best_checkpoint(path, self.output_dir, st.best_epoch)
        self._last_saved_step = st.global_step
        log.info("resumed from %s: epoch %d (%s), global step %d, learning rate now %.4g", path, st.epoch,
                 "done" if st.epoch_done else f"{st.data_batches} micro-batches in", st.global_step,
                 self.optimizer.param_groups[0]["lr"])

    def _check_resume_position(self) -> None:
        """Raise :class:`ConfigError` when the config ends the run before the checkpoint's position
        (overridden by the runners)."""
