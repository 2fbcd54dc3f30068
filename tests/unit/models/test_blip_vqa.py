"""blip_vqa: the weighted answer loss, both answer modes, and the LAVIS layout."""

from __future__ import annotations

import pytest
import torch

from lavis.models import load_model
from lavis.models.blip import convert

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = ["what colour is the circle?", "how many shapes are there?"]
ANSWERS = ["red", "blue", "two", "a large green square", "circle"]


@pytest.fixture(scope="module")
def vqa():
    torch.manual_seed(0)
    return load_model("blip_vqa", "tiny", is_eval=True)


def samples() -> dict:
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    return {"image": image, "text_input": list(QUESTIONS)}


def scores(model, s: dict) -> torch.Tensor:
    """Summed label-smoothed CE [2, len(ANSWERS)] of every answer for each question, one at a time."""
    states, atts = model.encode_questions(s)
    ids, masks = model.tokenize_answers(ANSWERS)
    rows = []
    for q in range(2):
        n = len(ANSWERS)
        rows.append(model.answer_losses(ids, masks, states[q : q + 1].expand(n, -1, -1), atts[q : q + 1].expand(n, -1)))
    return torch.stack(rows)


def test_rank_mode_picks_the_lowest_loss_answer(vqa):
    s = samples()
    with torch.no_grad():
        by_hand = scores(vqa, s)
    best = [ANSWERS[i] for i in by_hand.argmin(1).tolist()]
    assert vqa.predict_answers(s, answer_list=ANSWERS, inference_method="rank", num_ans_candidates=5) == best
    # one candidate: the answer whose first token the decoder finds likeliest after [DEC]
    states, atts = vqa.encode_questions(s)
    ids, _ = vqa.tokenize_answers(ANSWERS)
    with torch.no_grad():
        logits = vqa.text_decoder(input_ids=ids[:2, :1], encoder_hidden_states=states, encoder_attention_mask=atts).logits
    first = logits[:, 0].softmax(-1)[:, ids[:, 1]].argmax(1)
    assert vqa.predict_answers(s, answer_list=ANSWERS, inference_method="rank", num_ans_candidates=1) == [
        ANSWERS[i] for i in first.tolist()
    ]


def test_generate_mode_greedy_is_argmax_decoding(vqa):
    s = samples()
    answers = vqa.predict_answers(s, inference_method="generate", num_beams=1, max_len=4, min_len=4)
    states, _ = vqa.encode_questions(s)
    ids = torch.full((2, 1), vqa.tokenizer.bos_token_id)
    ones = torch.ones(states.shape[:-1], dtype=torch.long)
    with torch.no_grad():
        for _ in range(3):  # min_len=4 with [DEC]: three tokens, [SEP] forbidden
            logits = vqa.text_decoder(input_ids=ids, encoder_hidden_states=states, encoder_attention_mask=ones).logits[:, -1]
            logits[:, vqa.tokenizer.sep_token_id] = -float("inf")
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
    assert answers == [t.strip() for t in vqa.tokenizer.batch_decode(ids[:, 1:], skip_special_tokens=True)]


def test_loss_weights_answers_per_question(vqa):
    s = samples()
    s.update(answer=["red", "blue", "two"], weight=torch.tensor([0.75, 0.25, 1.0]), n_answers=torch.tensor([2, 1]))
    with torch.no_grad():
        loss = vqa(s).loss
        by_hand = scores(vqa, s)
    expected = (0.75 * by_hand[0, 0] + 0.25 * by_hand[0, 1] + 1.0 * by_hand[1, 2]) / 2
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-4)


def test_bad_inputs_say_what_to_do(vqa):
    s = samples()
    with pytest.raises(ValueError, match="needs answer_list"):
        vqa.predict_answers(s, inference_method="rank")
    with pytest.raises(ValueError, match="inference_method='beam'"):
        vqa.predict_answers(s, inference_method="beam")
    with pytest.raises(ValueError, match="one question per image"):
        vqa.predict_answers({"image": s["image"], "text_input": QUESTIONS[:1]})
    with pytest.raises(ValueError, match=r"needs samples \['answer', 'weight', 'n_answers'\]"):
        vqa(s)
    s.update(answer=["red"], weight=torch.tensor([1.0]), n_answers=torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="must equal the 1 answers"):
        vqa(s)


def test_lavis_layout_round_trip(vqa, tmp_path):
    sd = convert.image_text_to_lavis(vqa.state_dict())
    assert "text_decoder.bert.embeddings.position_ids" in sd and "visual_encoder.cls_token" in sd
    del sd["text_decoder.cls.predictions.decoder.weight"]  # tied to the word embeddings: may be stored once
    torch.save({"model": sd}, tmp_path / "vqa.pth")
    torch.manual_seed(9)
    fresh = load_model("blip_vqa", "tiny", checkpoint=tmp_path / "vqa.pth", is_eval=True)
    s = samples()
    assert fresh.predict_answers(s, answer_list=ANSWERS, inference_method="rank", num_ans_candidates=3) == (
        vqa.predict_answers(s, answer_list=ANSWERS, inference_method="rank", num_ans_candidates=3)
    )
    torch.testing.assert_close(scores(fresh, s), scores(vqa, s))
