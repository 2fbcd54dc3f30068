"""Divergence: which checkpoint predates a blow-up of the training loss, and what to tell the user.

A loss that turns NaN or inf is usually the end of a blow-up that began some steps earlier, so the
latest checkpoint may already hold wrecked (finite but useless) weights. :class:`LossWatch`
judges each checkpoint as it is written: *stable* when the losses since the previous checkpoint
stayed within :attr:`LossWatch.factor` times the healthy level seen so far (the first step's loss,
then the lowest mean loss of a stable stretch). The runner keeps the newest stable checkpoint as
``checkpoint_last_stable.pth`` and names it in the error when training diverges.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from pathlib import Path
from typing import Any

from lavis.common.errors import TrainingError

log = logging.getLogger("lavis.runners")

__all__ = ["LossWatch", "STABLE_NAME", "nonfinite_advice"]

STABLE_NAME = "checkpoint_last_stable.pth"


class LossWatch:
    """Follows the training loss between checkpoints and says whether a checkpoint is stable.

    Args:
        factor: a stretch is stable when its mean loss and each of its last ``tail`` losses are at
            most ``factor`` times the healthy level (first-step loss, then the lowest stable mean).
        tail: how many of the latest losses must be below the bound as well as the mean.
    """

    def __init__(self, factor: float = 3.0, tail: int = 5):
        self.factor = float(factor)
        self.tail = int(tail)
        self.healthy: float | None = None  # the level losses are compared with
        self._sum, self._n = 0.0, 0
        self._last: deque[float] = deque(maxlen=self.tail)
        self.stable_step: int | None = None  # global step of the newest stable checkpoint
        self.latest_step: int | None = None  # global step of the newest checkpoint
        self.latest_loss: float | None = None  # mean loss of the stretch before the newest checkpoint

    def update(self, loss: float) -> None:
        """Record the (rank-averaged) loss of one optimizer step that updated the weights."""
        if self.healthy is None and math.isfinite(loss):
            self.healthy = abs(loss)
        self._sum += loss
        self._n += 1
        self._last.append(loss)

    def at_checkpoint(self, step: int) -> bool:
        """Judge the checkpoint about to be written at ``step`` and start a new stretch."""
        if self._n == 0:  # no step since the last checkpoint (an epoch end right after a periodic save)
            stable = self.stable_step is not None and self.stable_step == self.latest_step
        else:
            mean = self._sum / self._n
            bound = self.factor * (self.healthy if self.healthy is not None else math.inf)
            stable = math.isfinite(mean) and mean <= bound and all(math.isfinite(x) and x <= bound for x in self._last)
            if stable:
                self.healthy = min(self.healthy if self.healthy is not None else mean, abs(mean))
            self.latest_loss = mean
        self._sum, self._n = 0.0, 0
        self._last.clear()
        self.latest_step = step
        if stable:
            self.stable_step = step
        return stable

    def state_dict(self) -> dict[str, Any]:
        return {"factor": self.factor, "tail": self.tail, "healthy": self.healthy, "sum": self._sum, "n": self._n,
                "last": list(self._last), "stable_step": self.stable_step, "latest_step": self.latest_step,
                "latest_loss": self.latest_loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.factor, self.tail = float(state["factor"]), int(state["tail"])
        self.healthy = state["healthy"]
        self._sum, self._n = float(state["sum"]), int(state["n"])
        self._last = deque((float(x) for x in state["last"]), maxlen=self.tail)
        self.stable_step, self.latest_step = state["stable_step"], state["latest_step"]
        self.latest_loss = state["latest_loss"]


def nonfinite_advice(watch: LossWatch, output_dir: Path, init_lr: float) -> str:
    """What the non-finite error says about the checkpoints, with the ``--options`` that continue.

    Names the latest checkpoint, whether it may hold diverged weights, and the newest checkpoint
    from before the loss rose (``checkpoint_last_stable.pth``) when there is one.
    """
    lower = f"{init_lr / 10:g}"
    latest, stable = output_dir / "checkpoint_latest.pth", output_dir / STABLE_NAME
    if watch.latest_step is None or not latest.is_file():
        return (f"no checkpoint was written yet. Start again with a lower learning rate: "
                f"--options run.init_lr={lower}")
    level = f"{watch.healthy:.4g}" if watch.healthy is not None else "unknown"
    if watch.stable_step is not None and stable.is_file():
        if watch.stable_step == watch.latest_step:
            where = (f"the latest checkpoint {latest} (global step {watch.latest_step}) was written while the "
                     f"training loss was still healthy (about {level}), and {stable} holds the same weights")
        else:
            where = (f"the latest checkpoint {latest} (global step {watch.latest_step}, mean training loss "
                     f"{watch.latest_loss:.4g} before it, against a healthy {level}) may already hold diverged "
                     f"weights; the last checkpoint from before the loss rose is {stable} "
                     f"(global step {watch.stable_step})")
        return (f"{where}. Resume from it with a lower learning rate: "
                f"--options run.resume_ckpt_path={stable} run.init_lr={lower}")
    return (f"every checkpoint so far, including the latest {latest} (global step {watch.latest_step}, mean "
            f"training loss {watch.latest_loss:.4g} before it, against {level} at the first step), was written "
            f"after the training loss rose, so it may hold diverged weights. Start again with a lower learning "
            f"rate: --options run.init_lr={lower}")


def nonfinite_error(what: str, value: float, step: int, where: str, skipped: int, allowed: int,
                    advice: str) -> TrainingError:
    """The error that stops training at a non-finite loss or gradient: where it happened, how many
    steps were skipped before it, what the checkpoints hold (``advice``) and the remedies."""
    after = f" after skipping {skipped} such step(s) (run.skip_nonfinite_steps={allowed})" if skipped else ""
    return TrainingError(
        f"non-finite {what} ({value}) at global step {step} ({where}){after}; the weights were not updated. "
        f"About the checkpoints: {advice} (add the options of the failed command). Other remedies: set "
        "run.max_grad_norm, use run.amp=bf16 instead of fp16, check the data, or set run.skip_nonfinite_steps=N "
        "to step over rare bad batches."
    )


def record_skipped_step(state: Any, allowed: int, logger: Any, what: str, value: float, step: int) -> None:
    """Log a skipped non-finite step (a warning, and a ``train/skipped`` event in ``metrics.jsonl``
    when a run logger is given); ``state`` is the runner's TrainState, already counting this skip."""
    log.warning(
        "skipped optimizer step %d: non-finite %s (%s) at epoch %d, data epoch %d, micro-batch %d; the weights "
        "and optimizer state were not updated (%d of run.skip_nonfinite_steps=%d skips used)", step, what, value,
        state.epoch, state.data_epoch, state.data_batches, state.skipped_steps, allowed,
    )
    if logger is not None:
        logger.log_event("train/skipped", {"nonfinite": what, "value": value, "skipped_steps": state.skipped_steps},
                         step=step, epoch=state.epoch, echo=False)
