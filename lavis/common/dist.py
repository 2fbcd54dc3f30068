"""torch.distributed helpers. Processes are started by ``torchrun``; nothing home-made."""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.distributed as dist


def is_dist_avail_and_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(backend: str = "auto", timeout_s: int = 1800) -> bool:
    """Join the process group ``torchrun`` set up (env vars); return whether training is distributed.

    ``backend="auto"`` takes nccl when CUDA is available, gloo otherwise.
    """
    if is_dist_avail_and_initialized():
        return True
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return False
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def barrier() -> None:
    if is_dist_avail_and_initialized():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]``; ``[obj]`` when not distributed."""
    if not is_dist_avail_and_initialized():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_dist_avail_and_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. to download or generate files), then the others."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op when not distributed); returns it."""
    if is_dist_avail_and_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


# ---------------------------------------------------------------------------------------------
# replica checks (a debugging aid for DDP: every rank must hold bit-identical weights)
# ---------------------------------------------------------------------------------------------
def tensor_digest(tensor: torch.Tensor) -> str:
    """A short hash of the exact bytes (and dtype/shape) of ``tensor``."""
    import hashlib

    t = tensor.detach().to("cpu").contiguous().reshape(-1)
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{t.dtype}{tuple(tensor.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def param_digests(module: torch.nn.Module, buffers: bool = False) -> dict[str, str]:
    """``{parameter name: digest}`` of every parameter of ``module`` (see :func:`tensor_digest`),
    and of every buffer as ``buffer:<name>`` with ``buffers=True``.

    Buffers are left out by default: DDP re-broadcasts them from rank 0 at the start of each
    forward pass, so between passes (batch-norm running statistics, say) they legitimately differ.
    """
    out = {name: tensor_digest(p) for name, p in module.named_parameters()}
    if buffers:
        out.update({f"buffer:{name}": tensor_digest(b) for name, b in module.named_buffers()})
    return out


def find_replica_divergence(per_rank: list[dict[str, str]]) -> list[str]:
    """Names whose digest differs between ranks, each as ``"name (ranks 0 vs 1)"``; empty if all agree.

    ``per_rank[r]`` is :func:`param_digests` of rank ``r``; a name missing on some rank counts as
    a difference.
    """
    if not per_rank:
        return []
    ref = per_rank[0]
    problems: list[str] = []
    names = sorted(set().union(*(d.keys() for d in per_rank)))
    for name in names:
        bad = [r for r, d in enumerate(per_rank) if d.get(name) != ref.get(name)]
        if bad:
            problems.append(f"{name} (rank 0 vs rank{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))})")
    return problems


def check_replicas(module: torch.nn.Module, step: int | None = None) -> None:
    """Raise :class:`lavis.common.errors.TrainingError` on every rank if ranks hold different weights.

    Collective: every rank must call it at the same point. Cheap for small models; meant for
    debugging (``run.check_replicas_every``).
    """
    from lavis.common.errors import TrainingError

    if not is_dist_avail_and_initialized():
        return
    diff = find_replica_divergence(all_gather_object(param_digests(module)))
    if diff:
        where = f" at global step {step}" if step is not None else ""
        shown = "; ".join(diff[:10]) + (f"; ... and {len(diff) - 10} more" if len(diff) > 10 else "")
        raise TrainingError(
            f"model replicas diverged{where}: {len(diff)} tensor(s) differ between ranks: {shown}. "
            "Something updates weights outside DDP (a rank-dependent branch, an unsynchronized buffer, "
            "a parameter changed in-place after wrapping); fix that, or set find_unused_parameters if "
            "some parameters get no gradient."
        )


def all_gather_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` of every rank concatenated along dim 0, without gradient; ``tensor`` itself on
    one process."""
    world = get_world_size()
    if world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
