"""The epoch-based runner: ``run.max_epoch`` passes over the training data, validation after each."""

from __future__ import annotations

import math

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.runners.base_runner import TrainRunnerBase

__all__ = ["RunnerEpoch"]


@registry.register_runner("runner_epoch")
class RunnerEpoch(TrainRunnerBase):
    """Train for ``run.max_epoch`` epochs; after each, validate on ``run.valid_splits`` and write
    ``checkpoint_{epoch}.pth`` / ``checkpoint_latest.pth`` (and ``checkpoint_best.pth`` when the
    mean ``agg_metrics`` improves).

    An epoch is one pass of this rank's share of the training data in micro-batches of
    ``run.batch_size_train``; every ``run.accum_grad_iters`` micro-batches make one optimizer step
    (the last step of an epoch may average fewer), or ``task.updates_per_batch()`` steps for a task
    that makes several on each batch (PPO epochs).
    """

    name = "runner_epoch"

    @property
    def steps_per_epoch(self) -> int:
        groups = math.ceil(self.batches_per_epoch / self.run_cfg.accum_grad_iters)
        return groups * int(self.task.updates_per_batch())

    def schedule_lengths(self) -> tuple[int, int]:
        return self.run_cfg.max_epoch * self.steps_per_epoch, self.steps_per_epoch

    def _check_resume_position(self) -> None:
        st, run = self.state, self.run_cfg
        if st.epoch >= run.max_epoch:
            raise ConfigError([
                f"run.max_epoch: the checkpoint {run.resume_ckpt_path} is in epoch {st.epoch} (global step "
                f"{st.global_step}), past the end of this run ({run.max_epoch} epoch(s), numbered from 0); raise "
                "run.max_epoch to continue training"
            ])

    def train_loop(self) -> None:
        st, run = self.state, self.run_cfg
        while True:
            if not st.epoch_done:
                self._train_epoch()
                self.end_epoch()
            if st.epoch + 1 >= run.max_epoch:
                return
            st.epoch += 1
            st.epoch_done = False
            st.data_epoch, st.data_batches = st.epoch, 0

    def _train_epoch(self) -> None:
        st, accum = self.state, self.run_cfg.accum_grad_iters
        n_batches = self.batches_per_epoch
        st.data_epoch = st.epoch
        batches = self.train_batches(st.data_epoch, st.data_batches)

        def fetch():
            try:
                samples = next(batches)
            except StopIteration:  # pragma: no cover - the sampler length is exact
                raise RuntimeError(
                    f"the training loader ended after {st.data_batches} of {n_batches} batches"
                ) from None
            st.data_batches += 1
            return samples

        done = math.ceil(st.data_batches / accum) * int(self.task.updates_per_batch())
        bar = self.progress(self.steps_per_epoch, done, f"epoch {st.epoch}")
        try:
            while st.data_batches < n_batches:
                bar.update(self.train_group(fetch, min(accum, n_batches - st.data_batches)))
                bar.set_postfix(loss=f"{self.loss_meter.avg:.4f}", refresh=False)
                if st.data_batches < n_batches:
                    self.maybe_save_periodic()
        finally:
            bar.close()
            del batches  # shuts worker processes down
