"""Retrieval task: ITC search + ITM re-ranking against a brute-force computation of LAVIS's scheme
(full matrices, -100 outside the top k), recall values, rank shares and the result files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lavis.common.config import run_schema_for
from lavis.common.errors import ConfigError
from lavis.runners.data import ShardedEvalSampler
from lavis.tasks.metrics.errors import MetricError
from lavis.tasks.metrics.retrieval import first_hit_ranks, recall_metrics, sort_candidates, topk_chunked
from lavis.tasks.retrieval import RetrievalTask, owned_pairs, rerank_candidates, retrieval_topk
from tests.helpers.contract_models import TableRetrievalModel

N_IMG, PER_IMG, DIM = 14, 3, 6


class TableDataset(torch.utils.data.Dataset):
    """Image ``i`` is a tensor filled with ``i``; its captions are ``t<3i>, t<3i+1>, t<3i+2>``."""

    def __init__(self, n: int = N_IMG):
        self.text = [f"t{t}" for t in range(n * PER_IMG)]
        self.img2txt = [list(range(i * PER_IMG, (i + 1) * PER_IMG)) for i in range(n)]
        self.txt2img = [t // PER_IMG for t in range(n * PER_IMG)]

    def __len__(self) -> int:
        return len(self.img2txt)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": torch.full((3, 2, 2), float(i)), "index": i}

    def collater(self, items: list[dict]) -> dict[str, Any]:
        return {"image": torch.stack([x["image"] for x in items]), "index": torch.tensor([x["index"] for x in items])}


def tables(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(N_IMG, DIM, generator=g)
    # captions near their image, so the ranking is informative but imperfect
    txt = img.repeat_interleave(PER_IMG, 0) + 1.2 * torch.randn(N_IMG * PER_IMG, DIM, generator=g)
    return img, txt, torch.randn(N_IMG, N_IMG * PER_IMG, generator=g)


def lavis_reference(img: torch.Tensor, txt: torch.Tensor, itm: torch.Tensor | None, k: int, data: TableDataset) -> dict:
    """LAVIS's compute_sim_matrix + _report_metrics, on full matrices with numpy argsort."""
    img, txt = torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1)
    sims = img @ txt.T
    if itm is None:
        i2t, t2i = sims.numpy(), sims.T.numpy()
    else:
        i2t = np.full(sims.shape, -100.0)
        for i, row in enumerate(sims):
            s, idx = row.topk(k)
            i2t[i, idx] = (itm[i, idx] + s).numpy()
        t2i = np.full(sims.T.shape, -100.0)
        for t, row in enumerate(sims.T):
            s, idx = row.topk(k)
            t2i[t, idx] = (itm[idx, t] + s).numpy()
    tr = [min(int(np.where(np.argsort(r)[::-1] == g)[0][0]) for g in data.img2txt[i]) for i, r in enumerate(i2t)]
    ir = [int(np.where(np.argsort(r)[::-1] == data.txt2img[t])[0][0]) for t, r in enumerate(t2i)]
    out = {f"txt_r{r}": 100.0 * np.mean(np.array(tr) < r) for r in (1, 5, 10)}
    out.update({f"img_r{r}": 100.0 * np.mean(np.array(ir) < r) for r in (1, 5, 10)})
    return out


def make_task(tmp_path: Path, **run: Any) -> RetrievalTask:
    return RetrievalTask(run_schema_for("retrieval")(output_dir=str(tmp_path), batch_size_eval=4, **run))


@pytest.mark.parametrize("rerank", [True, False])
def test_evaluation_matches_lavis_scheme(tmp_path, rerank):
    img, txt, itm = tables()
    data = TableDataset()
    model = TableRetrievalModel(img, txt, itm if rerank else None)
    task = make_task(tmp_path, k_test=10, rerank_batch_size=7)
    loader = DataLoader(data, batch_size=5, collate_fn=data.collater)
    rows = task.evaluation(model, loader, progress=False)
    metrics = task.after_evaluation(rows, "test", 3, data)
    want = lavis_reference(img, txt, itm if rerank else None, 10, data)
    for key, value in want.items():
        assert metrics[key] == pytest.approx(value), key
    assert 0 < metrics["txt_r1"] < 100 and 0 < metrics["img_r1"] < 100  # the case is not trivial
    assert metrics["agg_metrics"] == metrics["r_mean"] == pytest.approx((metrics["txt_r_mean"] + metrics["img_r_mean"]) / 2)
    if rerank:  # each distinct candidate pair is re-ranked once: 14 x 10 i2t slots + 42 x 10 t2i slots, minus shared ones
        assert N_IMG * 10 <= model.pairs_scored < N_IMG * 10 + N_IMG * PER_IMG * 10
    assert (tmp_path / "result" / "test_epoch3_metrics.json").is_file()
    assert len(rows) == N_IMG + N_IMG * PER_IMG


def test_rank_shares_score_every_pair_once_and_sum_to_the_single_process_result():
    img, txt, itm = tables(1)
    model = TableRetrievalModel(img, txt, itm)
    i_emb, t_emb = model.image_table, model.text_table
    whole = retrieval_topk(i_emb, t_emb, list(range(N_IMG)), 10)
    single = rerank_candidates(model, whole, list(range(N_IMG)), {"image_index": torch.arange(N_IMG)},
                               {"text_index": torch.arange(N_IMG * PER_IMG)}, batch_size=16)
    world = 3
    shares = [list(ShardedEvalSampler(N_IMG, world, r)) for r in range(world)]
    assert sorted(i for s in shares for i in s) == list(range(N_IMG))
    total_i2t, total_t2i = torch.zeros_like(single[0]), torch.zeros_like(single[1])
    pairs: list[tuple[int, int]] = []
    for own in shares:
        cand = retrieval_topk(i_emb, t_emb, own, 10)
        images, texts, _ = owned_pairs(cand, own, N_IMG)
        assert set(images.tolist()) <= set(own)
        pairs += list(zip(images.tolist(), texts.tolist()))
        i2t, t2i = rerank_candidates(model, cand, own, {"image_index": torch.tensor(own)},
                                     {"text_index": torch.arange(N_IMG * PER_IMG)}, batch_size=5)
        total_i2t += i2t
        total_t2i += t2i
    assert len(pairs) == len(set(pairs))  # no pair scored on two ranks
    torch.testing.assert_close(total_i2t, single[0])
    torch.testing.assert_close(total_t2i, single[1])
    expected_t2i = itm[whole.t2i_idx, torch.arange(N_IMG * PER_IMG)[:, None]]
    torch.testing.assert_close(single[1], expected_t2i)


def test_topk_chunked_equals_full_topk():
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(11, 4, generator=g), torch.randn(30, 4, generator=g)
    s, i = topk_chunked(q, k, 5, chunk=3)
    full_s, full_i = (q @ k.T).topk(5, dim=1)
    torch.testing.assert_close(s, full_s)
    assert torch.equal(i, full_i)
    assert topk_chunked(q, k[:3], 5)[1].shape == (11, 3)  # k capped at the number of keys


def test_first_hit_ranks_and_recall_by_hand():
    cand = torch.tensor([[5, 6, 7], [1, 2, 3]])
    scores = torch.tensor([[0.1, 0.9, 0.5], [3.0, 2.0, 1.0]])
    # row 0 sorted: 6, 7, 5 -> first of {5, 7} at 1; row 1: target 9 absent
    ranked = sort_candidates(cand, scores)
    assert ranked.tolist() == [[6, 7, 5], [1, 2, 3]]
    assert first_hit_ranks(ranked, [[5, 7], [9]]) == [1, None]
    m = recall_metrics([0, 4, 9, None], [0, 0, 12])
    assert (m["txt_r1"], m["txt_r5"], m["txt_r10"]) == (25.0, 50.0, 75.0)
    assert m["img_r1"] == pytest.approx(200 / 3) and m["img_r10"] == pytest.approx(200 / 3)
    assert m["r_mean"] == pytest.approx((50.0 + 200 / 3) / 2)
    with pytest.raises(MetricError, match="at least one image"):
        recall_metrics([], [0])


def test_run_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="run.k_test: must be at least 10"):
        make_task(tmp_path, k_test=5)
    with pytest.raises(ConfigError, match="run.rerank_batch_size"):
        make_task(tmp_path, rerank_batch_size=0)


def test_missing_rows_and_wrong_split_are_clear_errors(tmp_path):
    data = TableDataset()
    task = make_task(tmp_path)
    with pytest.raises(MetricError, match="cover 1 of 14 images"):
        task.after_evaluation([{"id": "i2t/0", "rank": 0}], "val", 0, data)
    with pytest.raises(TypeError, match="val/test split"):
        task.evaluation(TableRetrievalModel(*tables()), [{"image": torch.zeros(1, 3, 2, 2)}], progress=False)
