"""Helpers the classic tasks (retrieval, VQA, classification) share: finding the model's task
method behind a DDP wrapper, the data set behind a loader, JSON-friendly ids of a batch, the
keyword arguments a model method takes, and writing result files."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch


def task_model(model: Any, method: str, task: str) -> Any:
    """``model`` itself, or the module inside a DDP wrapper, that has ``method``; else a clear error."""
    for candidate in (model, getattr(model, "module", None)):
        if candidate is not None and callable(getattr(candidate, method, None)):
            return candidate
    raise TypeError(f"{type(model).__name__} has no {method}(); the {task} task needs a model that declares it "
                    f"in TASK_METHODS (see lavis/models/base_model.py)")


def find_dataset(data: Any, attrs: Sequence[str]) -> Any | None:
    """The first of ``data``, ``data.dataset``, ``data.dataset.dataset``, ... (a loader, wrappers,
    the data set) that has every attribute in ``attrs``; ``None`` when none has them."""
    seen = data
    while seen is not None:
        if all(hasattr(seen, a) for a in attrs):
            return seen
        seen = getattr(seen, "dataset", None)
    return None


def batch_ids(value: Any) -> list[Any]:
    """A batch's ids as plain Python values (a tensor becomes ints; strings stay strings)."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return [v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v for v in value]


def write_results(folder: Path, split: str, epoch: int | str, files: dict[str, Any]) -> None:
    """On the main rank, write each ``{suffix: obj}`` of ``files`` atomically as JSON to
    ``folder / f"{split}_epoch{epoch}{suffix}.json"`` (``""`` for the results, ``"_metrics"``, ...)."""
    from lavis.common import dist
    from lavis.common.io import atomic_write_text

    if not dist.is_main_process():
        return
    for suffix, obj in files.items():
        atomic_write_text(json.dumps(obj, indent=2 if suffix == "_metrics" else None), folder / f"{split}_epoch{epoch}{suffix}.json")


def accepted_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``kwargs`` that ``fn`` takes (all of them when it has ``**kwargs``): a task
    can offer settings, such as beam width, that only some models have."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}
