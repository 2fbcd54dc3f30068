"""Image-text retrieval: train with the model's own losses (ITC/ITM), evaluate recall@1/5/10 both ways.

Evaluation of one split (a :class:`~lavis.datasets.torch_datasets.image_text_datasets.RetrievalEvalDataset`:
items are images, ``text`` holds every caption, ``img2txt`` / ``txt2img`` the ground truth):

1. each rank encodes its share of the images (the loader's items) with
   ``model.encode_for_retrieval(samples, "image")``, and every caption (every rank, batched);
   re-rank states are kept on the CPU;
2. the image embeddings are gathered; the ITC similarity (dot product of the normalised
   embeddings) is searched in chunks for the ``k_test`` best texts of each image and the
   ``k_test`` best images of each text, so no ``N_img x N_txt`` matrix is held;
3. models with ``rerank`` (an ITM head) score each candidate pair, as LAVIS does: the final
   score of a candidate is its ITM score plus its ITC similarity, and candidates outside the top
   ``k_test`` rank below all of them. A pair is scored by the rank that encoded its image (it
   holds that image's states), ``run.rerank_batch_size`` pairs a call; the scores are summed over
   ranks (every slot is filled by exactly one rank);
4. each image's and each text's rank of its first right answer gives the recalls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch.utils.data import DataLoader

from lavis.common import dist
from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.common.run_schema import RunConfig
from lavis.common.schema import at_least_one
from lavis.tasks.base_task import BaseTask
from lavis.tasks.metrics.errors import MetricError
from lavis.tasks.metrics.retrieval import first_hit_ranks, recall_metrics, sort_candidates, topk_chunked
from lavis.tasks.task_utils import batch_ids, find_dataset, task_model, write_results

_TOP_SAVED = 10  # retrieved ids written per row to the result file


@dataclass
class RetrievalRunConfig:
    """Run keys of the retrieval task (next to the common ones of ``RunConfig``)."""

    k_test: int = 256  # ITC candidates re-ranked with ITM, per image and per text (LAVIS's default)
    rerank_batch_size: int = 256  # image-text pairs per model.rerank call


@dataclass
class RetrievalRun(RetrievalRunConfig, RunConfig):
    """The whole run section of a retrieval config, for type annotations."""


def retrieval_dataset(data: Any) -> Any:
    """The retrieval data set inside ``data`` (a loader, or wrappers with ``.dataset``)."""
    found = find_dataset(data, ("text", "img2txt", "txt2img"))
    if found is None:
        raise TypeError(f"retrieval evaluates a RetrievalEvalDataset (with text, img2txt and txt2img); got "
                        f"{type(data).__name__} without them: use the builder's val/test split, not the training split")
    return found


def _cat_states(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    if not parts or not parts[0]:
        return {}
    out = {}
    for key in parts[0]:
        shapes = {tuple(p[key].shape[1:]) for p in parts}
        if len(shapes) > 1:
            raise ValueError(f"encode_for_retrieval gave states[{key!r}] of different shapes across batches ({sorted(shapes)}); "
                             "re-rank states must share their shape past the batch dimension (pad texts to a fixed length)")
        out[key] = torch.cat([p[key] for p in parts])
    return out


@registry.register_task("retrieval")
class RetrievalTask(BaseTask):
    """Train on image-caption pairs (the model's losses); evaluate image->text and text->image
    recall@1/5/10 with ITC search and ITM re-ranking of the top ``k_test`` (see the module docstring).
    ``agg_metrics`` is ``r_mean``."""

    run_schema = RetrievalRunConfig
    result_id_key = "id"

    def __init__(self, run_cfg: RetrievalRun):
        super().__init__(run_cfg)
        problems = self.validate_run(dataclasses.asdict(run_cfg))
        if problems:
            raise ConfigError(problems)
        self.k_test: int = run_cfg.k_test
        self.rerank_batch_size: int = run_cfg.rerank_batch_size

    @classmethod
    def validate_run(cls, run: Mapping[str, Any]) -> list[str]:
        problems = []
        k = run.get("k_test", RetrievalRunConfig.k_test)
        if isinstance(k, int) and k < 10:
            problems.append(f"run.k_test: must be at least 10 (recall@10 ranks the top 10 candidates), got {k}")
        problems += at_least_one(run, "rerank_batch_size")
        return problems

    @property
    def result_dir(self) -> Path:
        return Path(self.run_cfg.output_dir) / "result"

    # -- evaluation -----------------------------------------------------------------------------
    def valid_step(self, model: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError("retrieval scores a whole split at once: call evaluation(model, loader)")

    @torch.no_grad()
    def evaluation(self, model: Any, data_loader: DataLoader | Iterable, progress: bool = True) -> list[dict]:
        """Rank every caption for each image and every image for each caption (all ranks take part
        and return the same rows): ``[{"id": "i2t/<image>" or "t2i/<text>", "rank": 0-based rank of
        the first right answer or None (not in the top k_test), "top": best ids}, ...]``."""
        from tqdm.auto import tqdm

        net = task_model(model, "encode_for_retrieval", "retrieval")
        dataset = retrieval_dataset(data_loader)
        model.eval()
        device = net.device
        show = progress and dist.is_main_process()

        own: list[int] = []
        img_embeds: list[torch.Tensor] = []
        img_states: list[dict[str, torch.Tensor]] = []
        for samples in tqdm(data_loader, desc="retrieval: images", disable=not show, leave=False):
            feats = net.encode_for_retrieval({"image": samples["image"].to(device)}, "image")
            own += batch_ids(samples["index"])
            img_embeds.append(feats.embeds.float())
            img_states.append({k: v.cpu() for k, v in feats.states.items()})
        txt_embeds_parts: list[torch.Tensor] = []
        txt_states_parts: list[dict[str, torch.Tensor]] = []
        texts = list(dataset.text)
        batch = self.run_cfg.batch_size_eval
        for start in tqdm(range(0, len(texts), batch), desc="retrieval: texts", disable=not show, leave=False):
            feats = net.encode_for_retrieval({"text_input": texts[start : start + batch]}, "text")
            txt_embeds_parts.append(feats.embeds.float())
            txt_states_parts.append({k: v.cpu() for k, v in feats.states.items()})
        txt_embeds = torch.cat(txt_embeds_parts)
        n_img = len(dataset.img2txt)

        image_embeds = self._gather_rows(own, torch.cat(img_embeds) if img_embeds else None, n_img, txt_embeds)
        rerank = callable(getattr(net, "rerank", None))
        scores = retrieval_topk(image_embeds, txt_embeds, own, self.k_test)
        if rerank:
            itm_i2t, itm_t2i = rerank_candidates(net, scores, own, _cat_states(img_states), _cat_states(txt_states_parts),
                                                 self.rerank_batch_size, show)
            scores.i2t_scores += itm_i2t
            scores.t2i_scores += itm_t2i
        dist.all_reduce_sum(scores.i2t_scores)
        dist.all_reduce_sum(scores.i2t_idx)
        return self._rows(scores, dataset)

    def _gather_rows(self, own: list[int], embeds: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
        """The ``[n, D]`` image embeddings of all ranks (each row encoded by one rank)."""
        local = (own, embeds.cpu() if embeds is not None else like.new_zeros(0, like.shape[1]).cpu())
        out = torch.zeros(n, like.shape[1])
        filled = torch.zeros(n, dtype=torch.bool)
        for ids, rows in dist.all_gather_object(local):
            out[ids] = rows
            filled[ids] = True
        if not bool(filled.all()):
            missing = (~filled).nonzero().flatten().tolist()
            raise MetricError(f"{len(missing)} images of the split were encoded by no rank (first: {missing[:5]}); "
                              "evaluation must see every image once (use the runner's eval loader)")
        return out.to(like.device)

    def _rows(self, scores: RetrievalCandidates, dataset: Any) -> list[dict]:
        top_i2t = sort_candidates(scores.i2t_idx.cpu(), scores.i2t_scores.cpu())
        top_t2i = sort_candidates(scores.t2i_idx.cpu(), scores.t2i_scores.cpu())
        # img2txt / txt2img: lists or {index: ...} dicts (as LAVIS keeps them)
        i2t = first_hit_ranks(top_i2t, [list(dataset.img2txt[i]) for i in range(len(dataset.img2txt))])
        t2i = first_hit_ranks(top_t2i, [[int(dataset.txt2img[t])] for t in range(len(dataset.txt2img))])
        rows = [{"id": f"i2t/{i}", "rank": r, "top": top_i2t[i, :_TOP_SAVED].tolist()} for i, r in enumerate(i2t)]
        rows += [{"id": f"t2i/{t}", "rank": r, "top": top_t2i[t, :_TOP_SAVED].tolist()} for t, r in enumerate(t2i)]
        return rows

    def after_evaluation(self, val_result: list[dict], split_name: str, epoch: int | str, dataset: Any) -> dict[str, float | None]:
        """Recall@1/5/10 both ways, their means and ``r_mean`` (= ``agg_metrics``), in percent; the
        rows go to ``<output_dir>/result/{split}_epoch{epoch}.json`` and the metrics next to them
        (``..._metrics.json``), written by the main rank."""
        data = retrieval_dataset(dataset)
        txt = {int(r["id"][4:]): r["rank"] for r in val_result if r["id"].startswith("i2t/")}
        img = {int(r["id"][4:]): r["rank"] for r in val_result if r["id"].startswith("t2i/")}
        if len(txt) != len(data.img2txt) or len(img) != len(data.txt2img):
            raise MetricError(f"split {split_name!r}: results cover {len(txt)} of {len(data.img2txt)} images and "
                              f"{len(img)} of {len(data.txt2img)} texts; score the whole split with evaluation()")
        metrics: dict[str, float | None] = dict(recall_metrics([txt[i] for i in sorted(txt)], [img[t] for t in sorted(img)]))
        metrics["agg_metrics"] = metrics["r_mean"]
        write_results(self.result_dir, split_name, epoch, {"": val_result, "_metrics": metrics})
        return metrics


@dataclass
class RetrievalCandidates:
    """Top-k candidates both ways: ``i2t_idx`` / ``i2t_scores`` ``[N_img, k]`` (rows of images
    this rank does not own are zero until summed over ranks) and ``t2i_idx`` / ``t2i_scores``
    ``[N_txt, k]`` (every row, on every rank)."""

    i2t_idx: torch.Tensor
    i2t_scores: torch.Tensor
    t2i_idx: torch.Tensor
    t2i_scores: torch.Tensor


def retrieval_topk(image_embeds: torch.Tensor, text_embeds: torch.Tensor, own: list[int], k: int) -> RetrievalCandidates:
    """ITC candidates: the ``k`` best texts of each image in ``own`` and the ``k`` best images of every text."""
    n_img, k_i2t = image_embeds.shape[0], min(k, text_embeds.shape[0])
    i2t_idx = torch.zeros(n_img, k_i2t, dtype=torch.long, device=image_embeds.device)
    i2t_scores = torch.zeros(n_img, k_i2t, device=image_embeds.device)
    if own:
        rows = torch.tensor(own, device=image_embeds.device)
        i2t_scores[rows], i2t_idx[rows] = topk_chunked(image_embeds[rows], text_embeds, k)
    t2i_scores, t2i_idx = topk_chunked(text_embeds, image_embeds, k)
    return RetrievalCandidates(i2t_idx, i2t_scores, t2i_idx, t2i_scores)


def owned_pairs(cand: RetrievalCandidates, own: list[int], n_img: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The candidate pairs this rank scores: those whose image it owns.

    Returns ``(images, texts, slots)``: ``images`` / ``texts`` are the unique pairs (sorted by
    image, so one image's states serve consecutive calls), and ``slots`` the pair index of each
    i2t slot of the owned rows followed by each t2i slot with an owned image (``-1`` elsewhere),
    in the order of ``cand.i2t_idx[own].flatten()`` then ``cand.t2i_idx.flatten()``.
    """
    device = cand.t2i_idx.device
    owned = torch.zeros(n_img, dtype=torch.bool, device=device)
    rows = torch.tensor(own, dtype=torch.long, device=device)
    owned[rows] = True
    n_txt, k_i2t = cand.t2i_idx.shape[0], cand.i2t_idx.shape[1]
    i2t_img = rows.repeat_interleave(k_i2t)
    i2t_txt = cand.i2t_idx[rows].flatten()
    t2i_img = cand.t2i_idx.flatten()
    t2i_txt = torch.arange(n_txt, device=device).repeat_interleave(cand.t2i_idx.shape[1])
    mine = owned[t2i_img]
    keys = torch.cat([i2t_img * n_txt + i2t_txt, t2i_img[mine] * n_txt + t2i_txt[mine]])
    unique, inverse = torch.unique(keys, return_inverse=True)
    slots = torch.full((i2t_img.numel() + t2i_img.numel(),), -1, dtype=torch.long, device=device)
    slots[: i2t_img.numel()] = inverse[: i2t_img.numel()]
    slots[i2t_img.numel() :][mine] = inverse[i2t_img.numel() :]
    return unique // n_txt, unique % n_txt, slots


def rerank_candidates(net: Any, cand: RetrievalCandidates, own: list[int], image_states: dict[str, torch.Tensor],
                      text_states: dict[str, torch.Tensor], batch_size: int, progress: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """ITM scores of this rank's pairs, laid out like ``cand.i2t_scores`` and ``cand.t2i_scores``
    (zero in slots another rank scores). ``image_states`` hold the rows of ``own``, in that order;
    ``text_states`` every text."""
    from tqdm.auto import tqdm

    n_img = cand.i2t_idx.shape[0]
    images, texts, slots = owned_pairs(cand, own, n_img)
    device = net.device
    local = torch.full((n_img,), -1, dtype=torch.long)
    local[torch.tensor(own, dtype=torch.long)] = torch.arange(len(own))
    images_local, texts_cpu = local[images.cpu()], texts.cpu()
    pair_scores = torch.zeros(images.numel(), device=cand.t2i_scores.device)
    for start in tqdm(range(0, images.numel(), batch_size), desc="retrieval: re-rank", disable=not progress, leave=False):
        sl = slice(start, start + batch_size)
        img = {k: v[images_local[sl]].to(device) for k, v in image_states.items()}
        txt = {k: v[texts_cpu[sl]].to(device) for k, v in text_states.items()}
        pair_scores[sl] = net.rerank(img, txt).float().to(pair_scores.device)
    n_i2t = len(own) * cand.i2t_idx.shape[1]
    filled = slots >= 0
    flat = torch.zeros(slots.numel(), device=pair_scores.device)
    flat[filled] = pair_scores[slots[filled]]
    itm_i2t = torch.zeros_like(cand.i2t_scores)
    if own:
        itm_i2t[torch.tensor(own, dtype=torch.long, device=itm_i2t.device)] = flat[:n_i2t].view(len(own), -1)
    itm_t2i = dist.all_reduce_sum(flat[n_i2t:].view_as(cand.t2i_scores).clone())
    return itm_i2t, itm_t2i
