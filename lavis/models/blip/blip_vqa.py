"""BLIP visual question answering (``blip_vqa``), on transformers' BLIP parts as
``BlipForQuestionAnswering`` arranges them: the ViT (``vision_model``), the question encoder
attending to the image (``text_encoder``, reading ``[ENC] question``) and the answer decoder
(``text_decoder``, a ``BlipTextLMHeadModel`` attending to the question states, starting from
``[DEC]``).

What LAVIS' ``blip_vqa`` adds and this module keeps:

* the loss: each answer's label-smoothed (0.1) cross entropy summed over its tokens, weighted by
  ``samples["weight"]`` and summed over a question's ``n_answers``, averaged over the questions;
* ``predict_answers(inference_method="rank")``: the decoder's probability of each answer's first
  token after ``[DEC]``, the ``num_ans_candidates`` best answers by it, then the answer whose
  summed label-smoothed cross entropy is lowest (LAVIS' ``_rank_answers``, smoothing included);
* ``predict_answers(inference_method="generate")``: beam search from ``[DEC]`` with LAVIS' beam
  ranking (:mod:`lavis.models.blip.beam_scoring`); as in LAVIS the decoder attends to every
  question position there, padding included.
"""

from __future__ import annotations

import contextlib
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from lavis.common.registry import registry
from lavis.models.base_model import ModelOutput
from lavis.models.blip.beam_scoring import lavis_beam_scoring
from lavis.models.blip.sdpa import shared_cross_attention_cache
from lavis.models.blip.image_text import BlipEncoders

INFERENCE_METHODS = ("generate", "rank")


@registry.register_model("blip_vqa")
class BlipVQA(BlipEncoders):
    """BLIP VQA (LAVIS ``blip_vqa``: types ``vqav2``, ``okvqa``, ``aokvqa``).

    Args (besides :class:`~lavis.models.blip.image_text.BlipEncoders`'):
        label_smoothing: of the answer cross entropy, in training and in rank-mode scoring (LAVIS: 0.1).
    """

    TASK_METHODS = ("predict_answers",)

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        tokenizer: str = "bert-base-uncased",
        max_txt_len: int = 35,
        label_smoothing: float = 0.1,
    ):
        super().__init__(vision_config, text_config, tokenizer, max_txt_len)
        from transformers import BlipTextConfig, BlipTextLMHeadModel

        self.text_decoder = BlipTextLMHeadModel(BlipTextConfig(**self.text_cfg))
        self.label_smoothing = float(label_smoothing)

    # -- pieces ----------------------------------------------------------------------------------
    def encode_questions(self, samples: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Question states [B, L, width] attending to the image, and the question mask [B, L]."""
        questions = samples["text_input"]
        if isinstance(questions, str):
            questions = [questions]
        image = samples["image"]
        if len(questions) != image.shape[0]:
            raise ValueError(f"{len(questions)} questions for {image.shape[0]} images: give one question per image")
        text = self.tokenize(questions)
        states = self.encode_multimodal(text.input_ids, text.attention_mask, self.encode_image(image))
        return states, text.attention_mask

    def tokenize_answers(self, answers: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[DEC] answer [SEP]`` ids and mask [A, L], padded to the longest (not truncated, as LAVIS)."""
        enc = self.tokenizer(list(answers), padding="longest", return_tensors="pt").to(self.device)
        ids = enc.input_ids
        ids[:, 0] = self.tokenizer.bos_token_id
        return ids, enc.attention_mask

    def answer_losses(
        self, answer_ids: torch.Tensor, answer_atts: torch.Tensor, states: torch.Tensor, state_atts: torch.Tensor
    ) -> torch.Tensor:
        """Summed label-smoothed cross entropy [A] of each answer given its question states [A, L, W]
        and their mask [A, L]."""
        labels = answer_ids[:, 1:].masked_fill(answer_ids[:, 1:] == self.tokenizer.pad_token_id, -100)
        losses = torch.empty(len(answer_ids), device=states.device)
        for rows, visible in self._by_question_length(state_atts):
            logits = self.text_decoder(
                input_ids=answer_ids[rows], attention_mask=answer_atts[rows],
                encoder_hidden_states=states[rows, :visible], use_cache=False,
            ).logits[:, :-1, :]
            token_losses = F.cross_entropy(
                logits.transpose(1, 2).float(), labels[rows], ignore_index=-100,
                label_smoothing=self.label_smoothing, reduction="none",
            )
            losses[rows] = token_losses.sum(1)
        return losses

    @staticmethod
    def _by_question_length(state_atts: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
        """Rows grouped by their question's length: ``(row indices, length)``.

        transformers' BLIP cross-attention does not apply ``encoder_attention_mask`` (5.x), so the
        decoder would attend to the question's padding; LAVIS masks it. The questions are padded on
        the right, so giving each group only its first ``length`` question states is the same as
        masking the rest.
        """
        lengths = state_atts.sum(1)
        return [((lengths == n).nonzero().squeeze(1), int(n)) for n in lengths.unique().tolist()]

    # -- the model contract ----------------------------------------------------------------------
    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """Weighted answer loss.

        Args:
            samples: ``"image"`` [B, 3, H, W]; ``"text_input"`` B questions; ``"answer"`` the answers
                of every question, question by question (sum(n_answers) strings); ``"weight"``
                [sum(n_answers)] each answer's weight; ``"n_answers"`` [B] answers per question.
        """
        missing = [k for k in ("answer", "weight", "n_answers") if k not in samples]
        if missing:
            raise ValueError(f"blip_vqa's forward needs samples {missing} (answers, their weights, answers per question)")
        n_answers = torch.as_tensor(samples["n_answers"]).long().cpu()
        weight = torch.as_tensor(samples["weight"], dtype=torch.float32).to(self.device)
        if int(n_answers.sum()) != len(samples["answer"]) or len(weight) != len(samples["answer"]):
            raise ValueError(
                f"samples['n_answers'] sums to {int(n_answers.sum())} and samples['weight'] has {len(weight)} "
                f"entries; both must equal the {len(samples['answer'])} answers"
            )
        states, atts = self.encode_questions(samples)
        rows = torch.repeat_interleave(torch.arange(len(n_answers)), n_answers).to(self.device)
        answer_ids, answer_atts = self.tokenize_answers(samples["answer"])
        losses = self.answer_losses(answer_ids, answer_atts, states[rows], atts[rows])
        loss = (weight * losses).sum() / states.shape[0]
        return ModelOutput(loss=loss)

    @torch.no_grad()
    def predict_answers(
        self,
        samples: dict[str, Any],
        answer_list: list[str] | None = None,
        inference_method: str = "generate",
        num_ans_candidates: int = 128,
        num_beams: int = 3,
        max_len: int = 10,
        min_len: int = 1,
    ) -> list[str]:
        """One answer per question of ``samples`` (``"image"`` [B, 3, H, W], ``"text_input"`` B questions).

        ``inference_method="generate"``: beam search (``num_beams``; ``max_len`` and ``min_len`` count
        ``[DEC]``). ``"rank"``: the best of ``answer_list`` (required), scored on the
        ``num_ans_candidates`` answers whose first token is likeliest.
        """
        if inference_method not in INFERENCE_METHODS:
            raise ValueError(f"inference_method={inference_method!r} is not one of 'generate', 'rank'")
        if inference_method == "rank":
            if not answer_list:
                raise ValueError("inference_method='rank' needs answer_list, the answers to choose from")
            return self.rank_answers(samples, list(answer_list), min(num_ans_candidates, len(answer_list)))
        return self.generate_answers(samples, num_beams=num_beams, max_len=max_len, min_len=min_len)

    def generate_answers(self, samples: Mapping[str, Any], num_beams: int, max_len: int, min_len: int) -> list[str]:
        """Beam-searched answers (greedy with ``num_beams=1``), decoded without special tokens."""
        states, _ = self.encode_questions(samples)
        batch = states.shape[0]
        bos = torch.full((batch, 1), self.tokenizer.bos_token_id, dtype=torch.long, device=self.device)
        decoder = self.text_decoder
        scoring = lavis_beam_scoring(decoder, self.tokenizer.sep_token_id) if num_beams > 1 else contextlib.nullcontext()
        with scoring:
            out = decoder.generate(
                input_ids=bos,
                attention_mask=torch.ones_like(bos),
                encoder_hidden_states=states,
                encoder_attention_mask=torch.ones(states.shape[:-1], dtype=torch.long, device=self.device),
                cache=shared_cross_attention_cache(decoder, states),
                max_length=max_len, min_length=min_len, num_beams=num_beams, do_sample=False,
                eos_token_id=self.tokenizer.sep_token_id, pad_token_id=self.tokenizer.pad_token_id,
            )
        return [t.strip() for t in self.tokenizer.batch_decode(out[:, 1:], skip_special_tokens=True)]

    def rank_answers(self, samples: Mapping[str, Any], answer_list: list[str], k: int) -> list[str]:
        """LAVIS' two-step ranking: top ``k`` answers by first-token probability, then the lowest
        summed (label-smoothed) cross entropy among them."""
        answer_ids, answer_atts = self.tokenize_answers(answer_list)
        states, atts = self.encode_questions(samples)
        batch = states.shape[0]
        start = answer_ids[:1, :1].expand(batch, 1)
        first_logits = torch.empty(batch, self.text_decoder.config.vocab_size, device=states.device)
        for rows, visible in self._by_question_length(atts):
            first_logits[rows] = self.text_decoder(
                input_ids=start[rows], encoder_hidden_states=states[rows, :visible], use_cache=False
            ).logits[:, 0, :].float()
        first_probs = F.softmax(first_logits.float(), dim=1).index_select(1, answer_ids[:, 1])
        _, topk = first_probs.topk(k, dim=1)  # [B, k] indices into answer_list
        flat = topk.reshape(-1)
        losses = self.answer_losses(
            answer_ids[flat], answer_atts[flat], states.repeat_interleave(k, 0), atts.repeat_interleave(k, 0)
        ).view(batch, k)
        best = topk.gather(1, losses.argmin(1, keepdim=True)).squeeze(1)
        return [answer_list[i] for i in best.tolist()]
