"""ALBEF visual question answering (``albef_vqa``): a multimodal encoder and an answer decoder.

The question is encoded with the image by all text layers (text-only, then fusion); a causal
answer decoder (cross-attention to the question's states in every layer) scores answers. LAVIS'
ALBEF answers by ranking a candidate list; ``inference_method="generate"`` (greedy decoding of the
same decoder) is this project's addition.

Model types: ``tiny`` (random init, in-repo vocabulary) and ``vqav2`` (LAVIS' VQAv2 finetune;
ViT-B/16 at 384 px, a 6 + 6 layer BERT-base encoder and a 6-layer decoder).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from lavis.common.registry import registry
from lavis.models.albef.base import AlbefBase
from lavis.models.albef.encoders import AnswerDecoder
from lavis.models.alignment import Momentum, rampup
from lavis.models.base_model import ModelOutput

INFERENCE_METHODS = ("generate", "rank")


@registry.register_model("albef_vqa")
class AlbefVQA(AlbefBase):
    """ALBEF VQA.

    Args:
        vision_config, text_config, fusion_layer, tokenizer, max_txt_len: the encoders
            (:class:`~lavis.models.albef.base.AlbefBase`); questions are cut to ``max_txt_len`` tokens.
        decoder_layers: layers of the answer decoder (ALBEF: 6).
        label_smoothing: of the answer cross entropy (training and ranking, as LAVIS).
        momentum, alpha, use_distill: momentum distillation of the answer distribution (``alpha``
            ramped up over the first epoch of a runner's training, from ``train_progress``).
    """

    TASK_METHODS = ("predict_answers",)

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        fusion_layer: int,
        tokenizer: str,
        max_txt_len: int,
        decoder_layers: int = 6,
        label_smoothing: float = 0.1,
        momentum: float = 0.995,
        alpha: float = 0.4,
        use_distill: bool = True,
    ):
        super().__init__(vision_config, text_config, fusion_layer, tokenizer, max_txt_len)
        import copy

        decoder_config = copy.deepcopy(self.text_config)
        decoder_config.num_hidden_layers = int(decoder_layers)
        self.text_decoder = AnswerDecoder(decoder_config, encoder_width=self.text_config.hidden_size)
        self.label_smoothing = float(label_smoothing)
        self.alpha = float(alpha)
        self.use_distill = bool(use_distill)
        self.momentum = (
            Momentum(self, ["visual_encoder", "text_encoder", "text_decoder"], momentum) if use_distill else None
        )

    # -- building blocks ------------------------------------------------------------------------
    def encode_questions(self, samples: Mapping[str, Any], momentum: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Multimodal question states [B, L, hidden] and the question mask [B, L]."""
        questions = samples["text_input"]
        questions = [questions] if isinstance(questions, str) else questions
        ids, mask = self.tokenize(questions)
        image_states = self.encode_image(samples["image"], momentum=momentum)
        encoder = self.get_submodule("text_encoder_m" if momentum else "text_encoder")
        return encoder(ids, mask, image_states), mask

    def answer_losses(
        self, logits: torch.Tensor, answer_ids: torch.Tensor, soft_targets: torch.Tensor | None = None, alpha: float = 0.0
    ) -> torch.Tensor:
        """Per-answer loss [N]: the label-smoothed cross entropy of every answer token after [CLS],
        summed; mixed ``(1 - alpha) * ce + alpha * distillation`` with soft targets [N, L-1, V]."""
        shifted = logits[:, :-1, :].float()
        labels = answer_ids[:, 1:].masked_fill(answer_ids[:, 1:] == self.tokenizer.pad_token_id, -100)
        ce = F.cross_entropy(
            shifted.transpose(1, 2), labels, ignore_index=-100, label_smoothing=self.label_smoothing, reduction="none"
        ).sum(dim=1)
        if soft_targets is None:
            return ce
        distill = -(F.log_softmax(shifted, dim=-1) * soft_targets).sum(dim=-1)
        distill = (distill * (labels != -100)).sum(dim=1)
        return (1 - alpha) * ce + alpha * distill

    # -- the model contract -----------------------------------------------------------------------
    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """VQA loss of a batch.

        Args:
            samples: ``image`` [B, 3, H, W]; ``text_input`` B questions; ``answer`` the answers of
                every question, flattened (``sum(n_answers)`` strings); ``weight`` [sum(n_answers)]
                each answer's weight; ``n_answers`` [B] answers per question.

        Returns:
            ``loss``: ``sum(weight * answer loss) / B`` as LAVIS.
        """
        n_answers = torch.as_tensor(samples["n_answers"], device=self.device)
        weight = torch.as_tensor(samples["weight"], dtype=torch.float, device=self.device)
        if len(samples["answer"]) != int(n_answers.sum()) or weight.numel() != len(samples["answer"]):
            raise ValueError(
                f"samples['answer'] has {len(samples['answer'])} answers, samples['weight'] {weight.numel()} "
                f"weights and samples['n_answers'] sums to {int(n_answers.sum())}: all three must agree"
            )
        states, q_mask = self.encode_questions(samples)
        states, q_mask = states.repeat_interleave(n_answers, 0), q_mask.repeat_interleave(n_answers, 0)
        ans = self.tokenizer(list(samples["answer"]), padding="longest", return_tensors="pt")
        ans_ids, ans_mask = ans.input_ids.to(self.device), ans.attention_mask.to(self.device)
        logits = self.text_decoder(ans_ids, ans_mask, states, q_mask)

        soft, alpha = None, 0.0
        if self.momentum is not None:
            self.momentum.update(self)
            with torch.no_grad():
                states_m, _ = self.encode_questions(samples, momentum=True)
                states_m = states_m.repeat_interleave(n_answers, 0)
                logits_m = self.get_submodule("text_decoder_m")(ans_ids, ans_mask, states_m, q_mask)
                soft = F.softmax(logits_m[:, :-1, :].float(), dim=-1)
            alpha = rampup(self.alpha, self.train_progress, 1)
        losses = self.answer_losses(logits, ans_ids, soft, alpha)
        return ModelOutput(loss=(weight * losses).sum() / samples["image"].shape[0])

    @torch.no_grad()
    def predict_answers(
        self,
        samples: dict[str, Any],
        answer_list: list[str] | None = None,
        inference_method: str = "generate",
        num_ans_candidates: int = 128,
        max_len: int = 10,
        min_len: int = 1,
    ) -> list[str]:
        """One answer per question in ``samples["text_input"]`` about ``samples["image"]``.

        ``"rank"`` (LAVIS' ALBEF method): the ``num_ans_candidates`` answers of ``answer_list``
        whose first token the decoder finds likeliest are scored in full (sum of label-smoothed
        token log-likelihoods, as LAVIS) and the best is returned. ``"generate"``: greedy decoding
        of at least ``min_len`` and at most ``max_len`` tokens.
        """
        if inference_method not in INFERENCE_METHODS:
            raise ValueError(f"inference_method={inference_method!r} is not one of {', '.join(map(repr, INFERENCE_METHODS))}")
        questions = samples["text_input"]
        questions = [questions] if isinstance(questions, str) else list(questions)
        if len(questions) != samples["image"].shape[0]:
            raise ValueError(f"{len(questions)} questions for {samples['image'].shape[0]} images: give one per image")
        states, q_mask = self.encode_questions({**samples, "text_input": questions})
        if inference_method == "generate":
            return self.generate_answers(states, q_mask, max_len, min_len)
        if not answer_list:
            raise ValueError("inference_method='rank' needs answer_list (the candidate answers)")
        return self.rank_answers(states, q_mask, list(answer_list), min(num_ans_candidates, len(answer_list)))

    def rank_answers(self, states: torch.Tensor, q_mask: torch.Tensor, answer_list: list[str], k: int) -> list[str]:
        """Best of ``answer_list`` for each question (question states [B, L, D], mask [B, L])."""
        ans = self.tokenizer(answer_list, padding="longest", return_tensors="pt")
        ans_ids, ans_mask = ans.input_ids.to(self.device), ans.attention_mask.to(self.device)
        b = states.shape[0]
        start = ans_ids[:1, :1].expand(b, 1)  # [CLS]
        first = self.text_decoder(start, torch.ones_like(start), states, q_mask)[:, 0, :]
        prob_first = F.softmax(first.float(), dim=1).index_select(1, ans_ids[:, 1])
        _, topk = prob_first.topk(k, dim=1)  # [B, k]
        cand_ids, cand_mask = ans_ids[topk.flatten()], ans_mask[topk.flatten()]
        logits = self.text_decoder(
            cand_ids, cand_mask, states.repeat_interleave(k, 0), q_mask.repeat_interleave(k, 0)
        )
        scores = -self.answer_losses(logits, cand_ids).view(b, k)
        best = topk.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)
        return [answer_list[i] for i in best.tolist()]

    def generate_answers(self, states: torch.Tensor, q_mask: torch.Tensor, max_len: int, min_len: int) -> list[str]:
        """Greedy answers: from [CLS], the likeliest token each step until [SEP] (not before
        ``min_len`` tokens) or ``max_len`` tokens."""
        if not 0 <= min_len <= max_len:
            raise ValueError(f"need 0 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
        tok = self.tokenizer
        ids = torch.full((states.shape[0], 1), tok.cls_token_id, dtype=torch.long, device=self.device)
        done = torch.zeros(states.shape[0], dtype=torch.bool, device=self.device)
        for step in range(max_len):
            logits = self.text_decoder(ids, torch.ones_like(ids), states, q_mask)[:, -1, :]
            if step < min_len:
                logits[:, tok.sep_token_id] = float("-inf")
            nxt = logits.argmax(dim=-1).masked_fill(done, tok.pad_token_id)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done |= nxt == tok.sep_token_id
            if bool(done.all()):
                break
        return [a.strip() for a in tok.batch_decode(ids[:, 1:], skip_special_tokens=True)]
