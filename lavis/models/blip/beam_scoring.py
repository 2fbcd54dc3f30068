"""LAVIS' beam scoring (transformers 4.26) on top of transformers 5's beam search.

Beam search ranks finished hypotheses by ``sum of token log-probs / length ** length_penalty``. The
two versions differ in ``length``:

* transformers 5 divides by the number of generated tokens, the final ``[SEP]`` included
  (``cur_len + 1 - decoder_prompt_len`` in ``GenerationMixin._update_finished_beams``);
* transformers 4.26, which LAVIS 1.0.2 runs, divides by the length of the whole hypothesis, the
  prompt included and the final ``[SEP]`` not (``BeamHypotheses.add`` receives the ids before
  ``[SEP]`` is appended); a beam that reaches ``max_length`` without ``[SEP]`` is divided by
  ``max_length``.

With BLIP's 4-token prompt ``[DEC] a picture of`` a caption of n words plus ``[SEP]`` is divided by
n + 1 in transformers 5 and by n + 4 in LAVIS, so 3-beam captions differ.

:func:`lavis_beam_scoring` swaps, for one ``generate`` call, the two steps of transformers 5's beam
search that score finished hypotheses and decide when a sentence is done, for LAVIS' rules:

1. a hypothesis ending in ``[SEP]`` counts only if its candidate ranks among the top ``num_beams``
   (as in both versions), and scores ``sum / cur_len ** length_penalty``, ``cur_len`` being the
   hypothesis length with the prompt and without ``[SEP]``;
2. a sentence is done once it holds ``num_beams`` hypotheses and the worst of them scores at least
   ``best candidate sum / cur_len ** length_penalty`` (``BeamHypotheses.is_done``); a done sentence
   takes no more hypotheses;
3. at ``max_length``, a sentence not done after step 1 adds its ``num_beams`` open beams (the best
   candidates not ending in ``[SEP]``) with ``sum / max_length ** length_penalty``
   (``BeamSearchScorer.finalize``).

Everything else (logits processors, candidate selection, caching, output layout) stays transformers'.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any, Literal

import torch

LengthNormalization = Literal["lavis", "transformers"]
LENGTH_NORMALIZATIONS: tuple[str, ...] = ("lavis", "transformers")

# The private GenerationMixin steps replaced here, and the keyword arguments transformers passes them.
_UPDATE = "_update_finished_beams"
_UPDATE_ARGS = (
    "sequences", "topk_running_sequences", "beam_scores", "topk_log_probs", "beam_indices",
    "topk_running_beam_indices", "is_early_stop_heuristic_unsatisfied", "is_sent_finished",
    "next_token_hits_stopping_criteria", "top_num_beam_mask", "num_beams", "cur_len", "length_penalty",
    "early_stopping",
)
_HEURISTIC = "_check_early_stop_heuristic"
_HEURISTIC_ARGS = ("is_early_stop_heuristic_unsatisfied",)
_NEG = -1.0e9  # transformers' "not a hypothesis" score


def check_supported(decoder: torch.nn.Module) -> None:
    """Raise if ``decoder``'s transformers beam search lacks the steps :func:`lavis_beam_scoring` replaces."""
    import transformers

    for name, needed in ((_UPDATE, _UPDATE_ARGS), (_HEURISTIC, _HEURISTIC_ARGS)):
        method = getattr(type(decoder), name, None)
        params = set(inspect.signature(method).parameters) if method is not None else set()
        missing = [a for a in needed if a not in params]
        if method is None or missing:
            raise RuntimeError(
                f"length_normalization='lavis' needs GenerationMixin.{name}({', '.join(needed)}) as in "
                f"transformers 5.x; transformers {transformers.__version__} "
                f"{'has no ' + name if method is None else 'lacks ' + ', '.join(missing)}. "
                "Use length_normalization='transformers' (transformers' own scoring) with this version."
            )


def _merge(
    sequences: torch.Tensor,
    beam_scores: torch.Tensor,
    beam_indices: torch.Tensor,
    is_sent_finished: torch.Tensor,
    cand_sequences: torch.Tensor,
    cand_scores: torch.Tensor,
    cand_indices: torch.Tensor,
    eligible: torch.Tensor,
    num_beams: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the ``num_beams`` best of the finished hypotheses and the eligible candidates, best first."""
    scores = torch.cat((beam_scores, torch.where(eligible, cand_scores, torch.full_like(cand_scores, _NEG))), dim=1)
    keep = torch.topk(scores, k=num_beams, dim=1).indices

    def gather(t: torch.Tensor) -> torch.Tensor:
        idx = keep.view(*keep.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:])
        return torch.take_along_dim(t, idx, dim=1)

    return (
        gather(torch.cat((sequences, cand_sequences), dim=1)),
        gather(scores),
        gather(torch.cat((beam_indices, cand_indices), dim=1)),
        gather(torch.cat((is_sent_finished, eligible), dim=1)),
    )


@contextlib.contextmanager
def lavis_beam_scoring(decoder: torch.nn.Module, eos_token_id: int) -> Iterator[None]:
    """Within the block, ``decoder.generate(num_beams > 1)`` ranks beams as transformers 4.26 (LAVIS).

    Args:
        decoder: a transformers model with ``GenerationMixin`` (here BLIP's text decoder); its two
            beam-scoring steps are replaced on this instance only and restored on exit.
        eos_token_id: the token that ends a hypothesis (``[SEP]`` for BLIP).
    """
    check_supported(decoder)
    # "done" per sentence [B, 1], decided in the update step (after the [SEP] hypotheses of a step
    # are added, as in 4.26) and handed to the stop-heuristic step that transformers calls next.
    state: dict[str, torch.Tensor] = {}

    def update_finished_beams(
        *,
        sequences: torch.Tensor,
        topk_running_sequences: torch.Tensor,
        beam_scores: torch.Tensor,
        topk_log_probs: torch.Tensor,
        beam_indices: torch.Tensor,
        topk_running_beam_indices: torch.Tensor,
        is_early_stop_heuristic_unsatisfied: torch.Tensor,
        is_sent_finished: torch.Tensor,
        next_token_hits_stopping_criteria: torch.Tensor,
        top_num_beam_mask: torch.Tensor,
        num_beams: int,
        cur_len: int,
        length_penalty: float,
        early_stopping: bool | str,
        **_: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # candidates [B, 2 * num_beams], best first; their sums of log-probs are topk_log_probs
        is_eos = topk_running_sequences[:, :, cur_len] == eos_token_id
        open_before = is_early_stop_heuristic_unsatisfied  # [B, 1]: not done at an earlier step
        finished = next_token_hits_stopping_criteria
        cands = (topk_running_sequences, topk_running_beam_indices)

        # 1. [SEP] hypotheses among the top num_beams candidates; length = cur_len ([SEP] not counted)
        eos_ok = finished & is_eos & top_num_beam_mask[None, :] & open_before
        eos_scores = topk_log_probs / float(cur_len) ** length_penalty
        sequences, beam_scores, beam_indices, is_sent_finished = _merge(
            sequences, beam_scores, beam_indices, is_sent_finished, cands[0], eos_scores, cands[1], eos_ok, num_beams
        )

        # 2. BeamHypotheses.is_done with the best candidate's sum (next_scores.max() in 4.26)
        full = is_sent_finished.all(dim=1, keepdim=True)
        worst = beam_scores.min(dim=1, keepdim=True).values
        best_possible = topk_log_probs[:, :1] / float(cur_len) ** length_penalty
        done_now = full & ((early_stopping is True) | (worst >= best_possible))
        state["done"] = ~open_before | done_now

        # 3. at max_length (finished without [SEP]): the num_beams best open beams, length cur_len + 1
        open_rank = (~is_eos).cumsum(dim=1)  # 1-based rank among candidates not ending in [SEP]
        max_ok = finished & ~is_eos & (open_rank <= num_beams) & ~state["done"]
        if bool(max_ok.any()):
            max_scores = topk_log_probs / float(cur_len + 1) ** length_penalty
            sequences, beam_scores, beam_indices, is_sent_finished = _merge(
                sequences, beam_scores, beam_indices, is_sent_finished, cands[0], max_scores, cands[1], max_ok,
                num_beams,
            )
        return sequences, beam_scores, beam_indices, is_sent_finished

    def check_early_stop_heuristic(*, is_early_stop_heuristic_unsatisfied: torch.Tensor, **_: Any) -> torch.Tensor:
        return is_early_stop_heuristic_unsatisfied & ~state["done"]

    had = {name: name in vars(decoder) for name in (_UPDATE, _HEURISTIC)}
    if any(had.values()):
        raise RuntimeError("lavis_beam_scoring is already active on this decoder (nested generate calls?)")
    object.__setattr__(decoder, _UPDATE, update_finished_beams)
    object.__setattr__(decoder, _HEURISTIC, check_early_stop_heuristic)
    try:
        yield
    finally:
        for name in (_UPDATE, _HEURISTIC):
            vars(decoder).pop(name, None)
