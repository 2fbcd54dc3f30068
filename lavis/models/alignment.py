"""Image-text alignment losses that the BLIP and ALBEF families share.

* :func:`itc_targets` and :func:`soft_cross_entropy`: the image-text contrastive (ITC) loss with
  soft targets (pairs showing the same image share the mass; momentum distillation mixes in the
  momentum model's similarities);
* :func:`hard_negatives`: the in-batch negatives of image-text matching (ITM), drawn with
  probability ``softmax(similarity)`` among the pairs that do not show the same image;
* :class:`Momentum`, :func:`distilled_cross_entropy` and :func:`rampup`: momentum
  (moving-average) copies of modules, the loss that distils from their predictions, and the
  ramp-up of the distillation weight over the first epochs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from lavis.models.base_model import TrainProgress


def itc_targets(image_id: torch.Tensor | None, batch: int, columns: torch.Tensor | None = None) -> torch.Tensor:
    """Contrastive targets [B, C]: row i spreads its mass evenly over the columns showing its image.

    ``image_id`` [B] names each pair's image (``None``: every pair its own image); ``columns`` [C]
    the image ids of the columns (default: ``image_id``, the in-batch pairs).
    """
    ids = torch.arange(batch) if image_id is None else image_id.view(-1)
    cols = ids if columns is None else columns.view(-1)
    pos = (ids.view(-1, 1) == cols.view(1, -1).to(ids.device)).float()
    return pos / pos.sum(1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum(targets * log_softmax(logits))`` ([B, C] each)."""
    return -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()


def hard_negatives(sim: torch.Tensor, positive: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One hard negative column per row of the in-batch similarities ``sim`` [B, B].

    Row i draws column j with probability ``softmax(sim[i])[j]`` restricted to the columns that are
    not positives of row i (``positive`` [B, B] bool, e.g. pairs showing the same image). A row
    whose every column is positive (the whole batch shows one image) draws uniformly among the
    other rows, so that it never pairs with itself. Returns indices [B].
    """
    with torch.no_grad():
        weights = F.softmax(sim.float(), dim=1).masked_fill(positive, 0.0)
        empty = weights.sum(dim=1, keepdim=True) <= 0
        others = (~torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)).float()
        weights = torch.where(empty, others, weights)  # no host sync on the hot path
        return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def distilled_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, logits_m: torch.Tensor | None, alpha: float
) -> torch.Tensor:
    """``(1 - alpha) * CE(logits, labels) + alpha * CE(logits, softmax(logits_m))``; plain CE without ``logits_m``."""
    ce = F.cross_entropy(logits, labels)
    if logits_m is None:
        return ce
    soft = -(F.log_softmax(logits, dim=1) * F.softmax(logits_m, dim=1)).sum(dim=1).mean()
    return (1 - alpha) * ce + alpha * soft


class Momentum:
    """Momentum (exponential moving average) copies of some modules, which ALBEF and BLIP distil from.

    The copies are registered on the model under ``<name>_m`` (so checkpoints hold them, as LAVIS'
    do), take no gradient, and move by ``copy = m * copy + (1 - m) * online`` at :meth:`update`.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], momentum: float):
        self.names = list(names)
        self.momentum = float(momentum)
        for name in self.names:
            twin = copy.deepcopy(getattr(model, name))
            for p in twin.parameters():
                p.requires_grad_(False)
            model.add_module(f"{name}_m", twin)

    def pairs(self, model: nn.Module) -> list[tuple[nn.Parameter, nn.Parameter]]:
        return [
            (p, p_m)
            for name in self.names
            for p, p_m in zip(getattr(model, name).parameters(), getattr(model, f"{name}_m").parameters())
        ]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for p, p_m in self.pairs(model):
            p_m.mul_(self.momentum).add_(p.detach(), alpha=1.0 - self.momentum)


def rampup(value: float, progress: TrainProgress | None, epochs: float) -> float:
    """``value`` ramped up linearly from 0 over the first ``epochs`` epochs of training (ALBEF's
    and BLIP's distillation weight ``alpha``); ``value`` itself when ``progress`` is unknown (no
    runner is training the model) or ``epochs`` is 0."""
    if progress is None or epochs <= 0:
        return value
    return value * min(1.0, progress.epochs / epochs)
