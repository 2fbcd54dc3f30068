"""Logging: python ``logging`` with a rank prefix, and metric logging for runners.

:class:`MetricLogger` writes every event to three places (the last two on the main rank only):

- stdout through python logging (``INFO``);
- ``metrics.jsonl`` in the output folder: one JSON object per event,
  ``{"time": ..., "split": "train", "epoch": 0, "step": 120, "values": {"loss": 0.31, ...}}``;
- TensorBoard event files under ``<output_dir>/tensorboard`` (only with ``run.tensorboard``),
  tag ``<split>/<name>``, x axis the global optimizer step.

:class:`SmoothedValue` keeps a window of recent values (the smoothed training loss); its state
goes into checkpoints so that a resumed run logs the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Mapping

from lavis.common import dist

__all__ = ["setup_logging", "SmoothedValue", "MetricLogger", "read_metrics", "to_plain"]

_FORMAT = "%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s"


class _RankFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = dist.get_rank()
        return True


def setup_logging(level: int | str = logging.INFO, all_ranks: bool = False) -> None:
    """Configure the ``lavis`` logger: records carry ``[rank N]``; other ranks log warnings only.

    Safe to call more than once (the handler is replaced, not added again).
    """
    logger = logging.getLogger("lavis")
    rank = dist.get_rank()
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    logger.setLevel(level if (rank == 0 or all_ranks) else max(level, logging.WARNING))
    for h in list(logger.handlers):
        if getattr(h, "_lavis", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stdout)
    handler._lavis = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(_FORMAT.format(rank=rank), datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.propagate = False


class SmoothedValue:
    """Mean of the last ``window`` values and of all values since creation."""

    def __init__(self, window: int = 20):
        self.window = max(1, int(window))
        self.values: deque[float] = deque(maxlen=self.window)
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.values.append(float(value))
        self.total += float(value) * n
        self.count += n

    @property
    def avg(self) -> float:
        """Mean over the window (``nan`` before the first update)."""
        return sum(self.values) / len(self.values) if self.values else math.nan

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def last(self) -> float:
        return self.values[-1] if self.values else math.nan

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window, "values": list(self.values), "total": self.total, "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.window = int(state["window"])
        self.values = deque((float(v) for v in state["values"]), maxlen=self.window)
        self.total = float(state["total"])
        self.count = int(state["count"])


def to_plain(value: Any) -> Any:
    """A JSON-friendly version of a metric value (tensors and numpy scalars become numbers)."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{key}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class MetricLogger:
    """Write metric events to stdout, ``metrics.jsonl`` and TensorBoard.

    Args:
        output_dir: folder of ``metrics.jsonl`` and ``tensorboard/``; ``None`` logs to stdout only.
        tensorboard: also write TensorBoard events.
        enabled: whether this process writes (the main rank); others do nothing.
    """

    FILENAME = "metrics.jsonl"

    def __init__(self, output_dir: str | os.PathLike | None, tensorboard: bool = False, enabled: bool | None = None):
        self.enabled = dist.is_main_process() if enabled is None else enabled
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.log = logging.getLogger("lavis.metrics")
        self._file = None
        self._tb = None
        if not self.enabled or self.output_dir is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # pragma: no cover - tensorboard is a dependency
                raise ImportError("run.tensorboard=true needs the tensorboard package: pip install tensorboard") from e
            self._tb = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))

    @property
    def path(self) -> Path:
        assert self.output_dir is not None
        return self.output_dir / self.FILENAME

    def log_event(
        self, split: str, values: Mapping[str, Any], step: int, epoch: int | str | None = None, echo: bool = True
    ) -> None:
        """Record one event: ``values`` of ``split`` (train, valid split name, test split name) at ``step``."""
        if not self.enabled:
            return
        values = to_plain(dict(values))
        if echo:
            body = "  ".join(f"{k}={_fmt(v)}" for k, v in _flatten(values).items())
            where = f"epoch {epoch} " if epoch is not None else ""
            self.log.info("%s | %sstep %d | %s", split, where, step, body)
        if self._file is not None:
            event = {"time": round(time.time(), 3), "split": split, "epoch": epoch, "step": int(step), "values": values}
            self._file.write(json.dumps(event, sort_keys=True) + "\n")
            self._file.flush()
        if self._tb is not None:
            for k, v in _flatten(values).items():
                self._tb.add_scalar(f"{split}/{k}", v, global_step=int(step))
            self._tb.flush()

    def truncate_after(self, step: int) -> None:
        """Drop events logged after optimizer step ``step`` (used when resuming from a checkpoint
        written at ``step``: a killed run may have logged further steps that will run again)."""
        if not self.enabled or self._file is None:
            return
        self._file.close()
        kept = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if int(event.get("step", 0)) <= step:
                    kept.append(json.dumps(event, sort_keys=True) + "\n")
        from lavis.common.io import atomic_write_text

        mode = os.stat(self.path).st_mode & 0o7777  # what open() gave it (umask), or what the user set
        atomic_write_text("".join(kept), self.path)  # its temporary file is private (0600) ...
        os.chmod(self.path, mode)  # ... so give the new file the old one's mode back
        self._file = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> "MetricLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Events of a ``metrics.jsonl`` file (or of the one inside a folder), in order."""
    path = Path(path)
    if path.is_dir():
        path = path / MetricLogger.FILENAME
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
