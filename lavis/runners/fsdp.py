"""FSDP (``run.distributed_strategy: fsdp``): torch's own ``fully_shard`` as the runner's
alternative to DDP, for models whose weights, gradients and optimizer state do not fit one device.

With more than one rank the runner calls :func:`shard` before it builds the optimizer: every
child of an ``nn.ModuleList`` (the blocks of a transformer) gets its own ``fully_shard`` group,
then the whole model (the rest). Parameters become sharded DTensors, so the optimizer holds one
shard of its state per rank. What else changes:

- gradient accumulation: :func:`no_sync` turns off the reduce-scatter on all but the last
  micro-batch (``set_requires_gradient_sync``), as ``DDP.no_sync`` does;
- gradient norms and clipping work on the sharded gradients (:func:`lavis.runners.stepping.total_norm`
  and :func:`~lavis.runners.stepping.clip_with_norm` reduce over the ranks);
- checkpoints hold the FULL model and optimizer state dicts, in the same layout as a DDP or
  single-process run (:func:`state_dicts`), gathered to CPU on rank 0, which writes them; so a
  checkpoint saved under FSDP loads in one process, and resuming loads a full state into the
  shards (:func:`load_full_model`, :func:`load_full_optimizer`);
- evaluation runs on gathered weights (:func:`gathered`): every rank holds the whole model
  while it evaluates, so tasks may call any method of the model, and ranks may run different
  numbers of batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

log = logging.getLogger("lavis.runners")

__all__ = ["enabled", "gathered", "is_sharded", "load_full_model", "load_full_optimizer", "no_sync", "shard",
           "state_dicts"]


def enabled(run_cfg: Any, world_size: int) -> bool:
    """Whether this run shards its model with FSDP (the strategy asks for it and there are ranks to shard over)."""
    return getattr(run_cfg, "distributed_strategy", "ddp") == "fsdp" and world_size > 1


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _fsdp_modules(model: nn.Module) -> list[nn.Module]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def shard(model: nn.Module, run_cfg: Any, world_size: int) -> None:
    """When :func:`enabled`: ``fully_shard`` every ``nn.ModuleList`` child holding parameters,
    then ``model`` (in place); else nothing.

    Rank 0's weights and buffers are broadcast first (as DDP does when it wraps), so ranks whose
    models were initialized differently still start alike. Collective.
    """
    import torch.distributed as tdist
    from torch.distributed.fsdp import fully_shard

    if not enabled(run_cfg, world_size) or is_sharded(model):
        return
    with torch.no_grad():
        for t in model.state_dict(keep_vars=True).values():
            if isinstance(t, torch.Tensor):
                tdist.broadcast(t.data, src=0)
    blocks = [m for lst in model.modules() if isinstance(lst, nn.ModuleList) for m in lst]
    for block in blocks:
        if any(p.requires_grad for p in block.parameters()) and not is_sharded(block):
            fully_shard(block)
    fully_shard(model)
    log.info("FSDP: fully_shard over %d ranks, %d groups (%d blocks of nn.ModuleLists and the model)",
             world_size, len(_fsdp_modules(model)), len(_fsdp_modules(model)) - 1)


def no_sync(ddp: Any, model: nn.Module, last: bool) -> AbstractContextManager:
    """The context of one micro-batch's backward: gradients are synchronized on the ``last``
    micro-batch of an accumulation group only (DDP's ``no_sync`` or FSDP's gradient sync switch)."""
    if last:
        return nullcontext()
    if ddp is not None:
        return ddp.no_sync()
    return _fsdp_no_sync(model) if is_sharded(model) else nullcontext()


@contextmanager
def _fsdp_no_sync(model: nn.Module) -> Iterator[None]:
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


@contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Hold the full (unsharded) weights on every rank inside the block; no-op unless ``model``
    is sharded. Collective on entry and exit; forward passes inside communicate nothing."""
    mods = _fsdp_modules(model)
    if not mods:
        yield
        return
    for m in mods:
        m.set_reshard_after_forward(False, recurse=False)  # type: ignore[operator]
        m.unshard()  # type: ignore[operator]
    try:
        yield
    finally:
        for m in mods:
            m.reshard()  # type: ignore[operator]
            m.set_reshard_after_forward(m is not model, recurse=False)  # type: ignore[operator]


def _options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """``(model state dict, optimizer state dict)`` for a checkpoint. For a sharded model: full
    and on CPU on rank 0 (empty elsewhere), the optimizer state in ``Optimizer.state_dict``'s
    layout (parameter indices in group order) as a DDP or single-process run has it; collective.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    msd = get_model_state_dict(model, options=_options(cpu_offload=True))
    osd: dict[str, Any] = dict(get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True)))
    if not osd:
        return msd, {}
    names = [n for g in osd["param_groups"] for n in g["params"]]
    index = {n: i for i, n in enumerate(names)}
    groups, i = [], 0
    for g in osd["param_groups"]:
        groups.append({**g, "params": list(range(i, i + len(g["params"])))})
        i += len(g["params"])
    return msd, {"state": {index[n]: s for n, s in osd["state"].items()}, "param_groups": groups}


def load_full_model(model: nn.Module, state: dict) -> tuple[list[str], list[str]]:
    """Load a full state dict (every rank has it) into the sharded ``model``; ``(missing, unexpected)``."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    keys = set_model_state_dict(model, state, options=_options(strict=False))
    return list(keys.missing_keys), list(keys.unexpected_keys)


def load_full_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[dict], None]:
    """A ``load_state_dict`` for ``optimizer`` of the sharded ``model`` that takes the index
    layout :func:`state_dicts` writes."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    def load(saved: dict) -> None:
        fqn = {id(p): n for n, p in model.named_parameters()}
        names = [fqn[id(p)] for g in optimizer.param_groups for p in g["params"]]
        groups, i = [], 0
        for g in saved["param_groups"]:
            groups.append({**g, "params": names[i:i + len(g["params"])]})
            i += len(g["params"])
        state = {names[k]: s for k, s in saved["state"].items()}
        set_optimizer_state_dict(model, optimizer, {"state": state, "param_groups": groups}, options=_options())

    return load
