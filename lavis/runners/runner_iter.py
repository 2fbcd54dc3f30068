"""The iteration-based runner: ``run.max_iters`` optimizer steps over an endless stream of batches,
validation and checkpoints every ``run.iters_per_inner_epoch`` steps."""

from __future__ import annotations

from typing import Any, Mapping

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.runners.base_runner import TrainRunnerBase

__all__ = ["RunnerIter"]


def _max_iters_problem(value: Any) -> str:
    return (f"run.max_iters: runner_iter needs the number of optimizer steps (>= 1), got {value}; "
            "set run.max_iters, or use run.runner: runner_epoch with run.max_epoch")


@registry.register_runner("runner_iter")
class RunnerIter(TrainRunnerBase):
    """Train for ``run.max_iters`` optimizer steps, in inner epochs of ``run.iters_per_inner_epoch``
    steps (default: one inner epoch of ``max_iters``). After each inner epoch: validation and
    ``checkpoint_{inner_epoch}.pth`` / ``checkpoint_latest.pth`` / ``checkpoint_best.pth``.

    Training data loops for ever: when this rank's share of a data epoch runs out, the next one
    starts (reshuffled); an optimizer step may span two data epochs. Resume is exact as for the
    epoch runner: the checkpoint records the data epoch and the micro-batches consumed in it.
    """

    name = "runner_iter"
    _batches: Any = None  # the live iterator of the endless stream (None: make one at the saved position)

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        """The common checks plus ``max_iters`` (required) and ``iters_per_inner_epoch``."""
        problems = super().validate_run(run)
        if run.get("evaluate"):
            return problems
        max_iters, ipe = run.get("max_iters"), run.get("iters_per_inner_epoch")
        if max_iters is None or max_iters < 1:
            problems.append(_max_iters_problem(max_iters))
        if ipe is not None and ipe < 1:
            problems.append(f"run.iters_per_inner_epoch: must be >= 1 (or null: one inner epoch), got {ipe}")
        return problems

    @property
    def max_iters(self) -> int:
        """``run.max_iters``, the number of optimizer steps (config validation requires it)."""
        n = self.run_cfg.max_iters
        if n is None or n < 1:
            raise ConfigError([_max_iters_problem(n)])
        return int(n)

    @property
    def iters_per_inner_epoch(self) -> int:
        return int(self.run_cfg.iters_per_inner_epoch or self.max_iters)

    def schedule_lengths(self) -> tuple[int, int]:
        return self.max_iters, self.iters_per_inner_epoch

    def _check_resume_position(self) -> None:
        st, run = self.state, self.run_cfg
        if st.global_step > self.max_iters:
            raise ConfigError([
                f"run.max_iters: the checkpoint {run.resume_ckpt_path} is at global step {st.global_step}, past the "
                f"end of this run ({run.max_iters} steps); raise run.max_iters to continue training"
            ])

    def train_loop(self) -> None:
        st, max_iters = self.state, self.max_iters
        self._batches = None
        try:
            while True:
                if not st.epoch_done:
                    self._train_until(min((st.epoch + 1) * self.iters_per_inner_epoch, max_iters))
                    self.end_epoch()
                if st.global_step >= max_iters:
                    return
                st.epoch += 1
                st.epoch_done = False
        finally:
            self._batches = None  # shuts worker processes down

    def _fetch(self) -> Any:
        """The next micro-batch of the endless stream, moving to the next data epoch when one ends."""
        st = self.state
        while True:
            if self._batches is None:
                self._batches = self.train_batches(st.data_epoch, st.data_batches)
            try:
                samples = next(self._batches)
            except StopIteration:
                self._batches = None
                st.data_epoch, st.data_batches = st.data_epoch + 1, 0
                continue
            st.data_batches += 1
            return samples

    def _train_until(self, target: int) -> None:
        st = self.state
        ipe = self.iters_per_inner_epoch
        start = st.epoch * ipe
        bar = self.progress(target - start, max(0, st.global_step - start), f"inner epoch {st.epoch}")
        try:
            while st.global_step < target:
                # a task's several steps per batch stop at the target (the rest of that batch's are dropped)
                bar.update(self.train_group(self._fetch, self.run_cfg.accum_grad_iters, target - st.global_step))
                bar.set_postfix(loss=f"{self.loss_meter.avg:.4f}", refresh=False)
                if st.global_step < target:
                    self.maybe_save_periodic()
        finally:
            bar.close()
