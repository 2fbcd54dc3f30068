"""Run under ``torchrun --nproc_per_node 2`` (gloo): :mod:`lavis.runners.fsdp` on a model with an
``nn.ModuleList`` of blocks, checked against the same model unsharded in the same process.

Each rank accumulates two micro-batches without gradient sync; the sharded gradients, their total
norm and the clipped gradients must equal one process's over the whole batch (float tolerance);
evaluation inside ``gathered`` runs a method other than ``forward``, a different number of
times on each rank, and training forward/backward works again afterwards. Exits non-zero on failure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as td
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lavis.runners import fsdp  # noqa: E402
from lavis.runners.stepping import clip_with_norm, total_norm  # noqa: E402


class Blocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Linear(4, 6)
        self.layers = nn.ModuleList([nn.Linear(6, 6) for _ in range(3)])
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x)
        for layer in self.layers:
            h = torch.relu(layer(h))
        return self.head(h)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).argmax(-1)


def main() -> None:
    td.init_process_group("gloo")
    rank = td.get_rank()
    torch.manual_seed(rank)  # different initial weights: shard() starts every rank from rank 0's
    model = Blocks()
    torch.manual_seed(0)
    ref = Blocks()
    td.broadcast_object_list(box := [model.state_dict() if rank == 0 else None], src=0)
    ref.load_state_dict(box[0])
    fsdp.shard(model, SimpleNamespace(distributed_strategy="fsdp"), 2)
    assert len(fsdp._fsdp_modules(model)) == 4 and fsdp.is_sharded(model.layers[0])
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    mine = x[rank * 4:(rank + 1) * 4]
    for j in range(2):
        with fsdp.no_sync(None, model, last=j == 1):
            model(mine[j * 2:(j + 1) * 2]).square().mean().div(2).backward()
    for j in range(4):
        ref(x[j * 2:(j + 1) * 2]).square().mean().div(4).backward()
    grads = [p.grad for p in model.parameters()]
    norm = total_norm(grads)
    ref_norm = total_norm([p.grad for p in ref.parameters()])
    torch.testing.assert_close(norm, ref_norm)
    clip_with_norm(grads, 0.1, norm)
    clip_with_norm([p.grad for p in ref.parameters()], 0.1, ref_norm)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad.full_tensor(), q.grad, msg=name)
    model.eval()
    with torch.no_grad(), fsdp.gathered(model):
        for _ in range(3 if rank == 0 else 1):
            assert torch.equal(model.predict(x), ref.predict(x))
    model.train()
    model(mine).sum().backward()
    print(f"rank {rank}: fsdp blocks ok")
    td.destroy_process_group()


if __name__ == "__main__":
    main()
