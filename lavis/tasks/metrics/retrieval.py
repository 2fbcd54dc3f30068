"""Image-text retrieval metrics: chunked top-k similarity search, ranks and recall@k.

Recall is reported as LAVIS reports it, in percent: ``txt_r{1,5,10}`` (image -> text: an image
counts as found at rank ``r`` when any of its captions is among the first ``r`` texts),
``img_r{1,5,10}`` (text -> image), their means ``txt_r_mean`` / ``img_r_mean`` and ``r_mean``,
the mean of the two.
"""

from __future__ import annotations

from typing import Sequence

import torch

from lavis.tasks.metrics.errors import MetricError

RECALL_AT: tuple[int, ...] = (1, 5, 10)


def topk_chunked(queries: torch.Tensor, keys: torch.Tensor, k: int, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` keys most similar to each query (dot product), ``chunk`` queries at a time.

    ``queries``: ``[Q, D]``, ``keys``: ``[K, D]``. Returns ``(scores, indices)``, both ``[Q, min(k, K)]``,
    best first. Memory is ``chunk x K`` scores at a time, never ``Q x K``. Similarities are computed
    in fp32 even under autocast (bf16 would tie and reorder close candidates).
    """
    if queries.shape[-1] != keys.shape[-1]:
        raise MetricError(f"query and key embeddings differ in size: {tuple(queries.shape)} vs {tuple(keys.shape)}")
    k = min(k, keys.shape[0])
    scores, indices = [], []
    queries, keys = queries.float(), keys.float()
    for start in range(0, queries.shape[0], chunk):
        with torch.autocast(queries.device.type, enabled=False):
            sims = queries[start : start + chunk] @ keys.T
        s, i = sims.topk(k, dim=1)
        scores.append(s)
        indices.append(i)
    if not scores:
        return queries.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=queries.device)
    return torch.cat(scores), torch.cat(indices)


def sort_candidates(candidates: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``candidates`` (``[R, k]`` ids) of each row sorted by ``scores`` (``[R, k]``), best first;
    ties keep the candidates' order."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return torch.gather(candidates, 1, order)


def first_hit_ranks(ranked: torch.Tensor, targets: Sequence[Sequence[int]]) -> list[int | None]:
    """For each row of ``ranked`` (``[R, k]`` ids, best first), the 0-based position of its first
    id in ``targets[r]`` (the ids that count as right); ``None`` when none is among the ``k``."""
    if len(targets) != ranked.shape[0]:
        raise MetricError(f"{len(targets)} target lists for {ranked.shape[0]} rows")
    out: list[int | None] = []
    for row, want in zip(ranked.tolist(), targets):
        wanted = {int(t) for t in want}
        out.append(next((pos for pos, c in enumerate(row) if c in wanted), None))
    return out


def recall_metrics(txt_ranks: Sequence[int | None], img_ranks: Sequence[int | None]) -> dict[str, float]:
    """Recall@1/5/10 in percent from ranks (``None``: not found in the candidates).

    ``txt_ranks``: one per image (image -> text), ``img_ranks``: one per text (text -> image).
    """
    if not txt_ranks or not img_ranks:
        raise MetricError(f"retrieval needs at least one image and one text, got {len(txt_ranks)} and {len(img_ranks)}")

    def recall(ranks: Sequence[int | None], r: int) -> float:
        return 100.0 * sum(1 for x in ranks if x is not None and x < r) / len(ranks)

    out = {f"txt_r{r}": recall(txt_ranks, r) for r in RECALL_AT}
    out.update({f"img_r{r}": recall(img_ranks, r) for r in RECALL_AT})
    out["txt_r_mean"] = sum(out[f"txt_r{r}"] for r in RECALL_AT) / len(RECALL_AT)
    out["img_r_mean"] = sum(out[f"img_r{r}"] for r in RECALL_AT) / len(RECALL_AT)
    out["r_mean"] = (out["txt_r_mean"] + out["img_r_mean"]) / 2
    return out
