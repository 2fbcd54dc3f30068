"""Run under ``torchrun --nproc_per_node 2`` (gloo): trained-only weights of an FSDP-sharded model
with frozen blocks. The record made from rank 0's full state dict matches the sharded base on
every rank (the fingerprint gathers each shard), the trained entries load back into the shards,
and a changed base is refused on every rank. Exits non-zero on failure."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as td

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lavis.common.errors import CheckpointError  # noqa: E402
from lavis.models import trained_only  # noqa: E402
from lavis.runners import checkpointing as ckpt_io, fsdp  # noqa: E402
from tests.toy.fsdp_blocks import Blocks  # noqa: E402


def main() -> None:
    td.init_process_group("gloo")
    rank = td.get_rank()
    torch.manual_seed(0)
    model = Blocks()
    model.emb.requires_grad_(False)
    model.layers[0].requires_grad_(False)
    want = {k: v.clone() for k, v in model.state_dict().items()}
    fsdp.shard(model, SimpleNamespace(distributed_strategy="fsdp"), 2)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    state, _ = fsdp.state_dicts(model, optimizer)  # full on rank 0, empty elsewhere
    box = [trained_only.select(model, state, {"arch": "blocks"}, "trained") if rank == 0 else None]
    td.broadcast_object_list(box, src=0)
    weights, record = box[0]
    assert record is not None and sorted(record["base_keys"]) == ["emb.bias", "emb.weight", "layers.0.bias",
                                                                   "layers.0.weight"], record
    assert sorted(weights) == ["head.bias", "head.weight", "layers.1.bias", "layers.1.weight", "layers.2.bias",
                               "layers.2.weight"]
    assert trained_only.base_problem(model, record, exact=True) is None
    with torch.no_grad():
        model.head.weight.zero_()
    ckpt_io._load_checked(model, weights, record, "checkpoint.pth", "resume with the model config of that run")
    assert torch.equal(model.head.weight.full_tensor(), want["head.weight"])
    with torch.no_grad():
        model.emb.weight.add_(1.0)
    try:
        ckpt_io._load_checked(model, weights, record, "checkpoint.pth", "resume with the model config of that run")
    except CheckpointError as e:
        assert "the base weights of this model differ" in str(e), e
    else:
        raise AssertionError("a changed base was loaded")
    print(f"rank {rank}: fsdp trained-only ok")
    td.destroy_process_group()


if __name__ == "__main__":
    main()
