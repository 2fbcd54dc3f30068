"""Beam scoring of ``blip_caption``: LAVIS' length normalization (transformers 4.26) vs transformers 5's.

The tiny model is random, so its next-token distributions are nearly flat and every beam runs to
``max_length``. To get beams of different lengths the tests sharpen it (word embeddings, tied to the
output layer, scaled by 5) and raise the ``[SEP]`` logit (the tied prediction bias).
"""

from __future__ import annotations

import pytest
import torch

from lavis.common.errors import ConfigError
from lavis.models.blip.beam_scoring import check_supported, lavis_beam_scoring
from lavis.models.blip.blip_caption import BlipCaption

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT_LEN = 4  # [DEC] a picture of


def sharpened(sep_bias: float, seed: int = 0) -> BlipCaption:
    torch.manual_seed(seed)
    m = BlipCaption.from_pretrained("tiny").eval()
    dec = m.blip.text_decoder
    with torch.no_grad():
        dec.bert.embeddings.word_embeddings.weight.mul_(5.0)
        dec.cls.predictions.bias[m.tokenizer.sep_token_id] += sep_bias
    return m


def images(n: int) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def beams(model: BlipCaption, imgs: torch.Tensor, monkeypatch: pytest.MonkeyPatch, **kw) -> tuple[list, torch.Tensor]:
    """All ``num_beams`` final hypotheses per image (token ids up to the first [SEP], prompt
    included) and the scores transformers returns for them, best first."""
    decoder = model.blip.text_decoder
    original = decoder.generate
    seen = {}

    def recording(*args, **kwargs):
        seen["out"] = original(*args, **kwargs, output_scores=True, return_dict_in_generate=True)
        return seen["out"].sequences

    monkeypatch.setattr(decoder, "generate", recording)
    model.generate({"image": imgs}, num_captions=kw["num_beams"], **kw)
    monkeypatch.undo()
    out = seen["out"]
    # transformers pads finished beams with [SEP], not [PAD] (its fill value is `pad_token_id or eos`)
    sep = model.tokenizer.sep_token_id
    seqs = []
    for row in out.sequences.tolist():
        ends = [i for i, t in enumerate(row) if t == sep and i >= PROMPT_LEN]
        seqs.append(row[: ends[0] + 1] if ends else row)
    return seqs, out.sequences_scores


def step_log_probs(model: BlipCaption, image_embeds: torch.Tensor, ids: torch.Tensor, min_length: int) -> torch.Tensor:
    """Next-token log-probs [N, V] for the sequences ``ids`` [N, L] (no cache), ``[SEP]`` barred
    before ``min_length`` (as the min-length logits processor)."""
    with torch.no_grad():
        logits = model.blip.text_decoder(
            input_ids=ids, attention_mask=torch.ones_like(ids),
            encoder_hidden_states=image_embeds.expand(ids.shape[0], -1, -1), use_cache=False,
        ).logits[:, -1].float()
    lp = torch.log_softmax(logits, dim=-1)
    if ids.shape[1] < min_length:
        lp[:, model.tokenizer.sep_token_id] = -float("inf")
    return lp


def sum_log_probs(model: BlipCaption, image: torch.Tensor, seq: list[int], min_length: int) -> float:
    """Teacher-forced sum of the log-probs of the generated tokens of ``seq`` ([SEP] included)."""
    emb = model.encode_image(image[None])
    total = 0.0
    for n in range(PROMPT_LEN, len(seq)):
        lp = step_log_probs(model, emb, torch.tensor([seq[:n]]), min_length)
        total += lp[0, seq[n]].item()
    return total


def reference_lavis_beams(model: BlipCaption, image: torch.Tensor, num_beams: int, max_length: int,
                          min_length: int) -> list[tuple[float, list[int]]]:
    """transformers 4.26's beam search for one image, written out plainly (BeamSearchScorer.process,
    BeamHypotheses.add/is_done, finalize; length_penalty 1, early_stopping False). Returns
    (score, ids without [SEP]) best first."""
    eos = model.tokenizer.sep_token_id
    emb = model.encode_image(image[None])
    prompt = [model.tokenizer.bos_token_id] + model.tokenizer("a picture of", add_special_tokens=False).input_ids
    ids = torch.tensor([prompt] * num_beams)
    beam_scores = torch.tensor([0.0] + [-1e9] * (num_beams - 1))
    hyps: list[tuple[float, list[int]]] = []

    def add(hyp: list[int], score: float) -> None:
        if len(hyps) < num_beams or score > min(hyps)[0]:
            hyps.append((score, hyp))
            if len(hyps) > num_beams:
                hyps.remove(min(hyps))

    done = False
    while True:
        cur_len = ids.shape[1]
        lp = step_log_probs(model, emb, ids, min_length)
        top, idx = (lp + beam_scores[:, None]).view(-1).topk(2 * num_beams)
        nxt = []
        for rank, (s, i) in enumerate(zip(top.tolist(), idx.tolist())):
            b, t = divmod(i, lp.shape[1])
            if t == eos:
                if rank < num_beams:
                    add(ids[b].tolist(), s / cur_len)
            else:
                nxt.append((s, b, t))
                if len(nxt) == num_beams:
                    break
        done = len(hyps) == num_beams and min(hyps)[0] >= top[0].item() / cur_len
        ids = torch.tensor([ids[b].tolist() + [t] for _, b, t in nxt])
        beam_scores = torch.tensor([s for s, _, _ in nxt])
        if done or ids.shape[1] >= max_length:
            break
    if not done:
        for row, s in zip(ids.tolist(), beam_scores.tolist()):
            add(row, s / len(row))
    return sorted(hyps, reverse=True)


# -- the two normalizations --------------------------------------------------------------------------
def test_scores_are_sum_log_probs_over_full_length_and_pick_different_beams(monkeypatch):
    m = sharpened(sep_bias=4.0)
    imgs = images(2)
    sep = m.tokenizer.sep_token_id
    kw = {"num_beams": 3, "max_length": 14, "min_length": 5}
    lavis_seqs, lavis_scores = beams(m, imgs, monkeypatch, length_normalization="lavis", **kw)
    tf_seqs, tf_scores = beams(m, imgs, monkeypatch, length_normalization="transformers", **kw)

    for seqs, scores, norm in ((lavis_seqs, lavis_scores, "lavis"), (tf_seqs, tf_scores, "transformers")):
        by_hand = []
        for k, seq in enumerate(seqs):
            assert seq[-1] == sep  # every beam here ends with [SEP]
            total = sum_log_probs(m, imgs[k // 3], seq, kw["min_length"])
            # lavis: the whole hypothesis without [SEP]; transformers: generated tokens with [SEP]
            length = len(seq) - 1 if norm == "lavis" else len(seq) - PROMPT_LEN
            by_hand.append(total / length)
        assert scores.tolist() == pytest.approx(by_hand, abs=1e-4), norm
        for i in range(2):  # best first, by the hand-computed scores
            assert by_hand[3 * i: 3 * i + 3] == sorted(by_hand[3 * i: 3 * i + 3], reverse=True)

    # the two rank the same kind of candidates differently: LAVIS' larger divisor favours short captions
    for i in range(2):
        assert len(lavis_seqs[3 * i]) == PROMPT_LEN + 2  # one word + [SEP]
        assert len(tf_seqs[3 * i]) == PROMPT_LEN + 3  # two words + [SEP]
    best = {n: m.generate({"image": imgs}, length_normalization=n, **kw) for n in ("lavis", "transformers")}
    assert best["lavis"] != best["transformers"]
    assert [len(c.split()) for c in best["lavis"]] == [1, 1]
    assert m.generate({"image": imgs}, **kw) == best["lavis"]  # the default


@pytest.mark.parametrize(
    "sep_bias, max_length, min_length",
    [
        (3.0, 14, 5),  # every hypothesis ends with [SEP], at different lengths
        (2.75, 9, 5),  # [SEP] hypotheses and max_length ones
        (2.25, 11, 5),
        (2.25, 12, 9),  # min_length holds [SEP] back; then a mix
        (2.5, 10, 5),  # all kept hypotheses reach max_length, yet transformers keeps others
        (3.5, 10, 7),
    ],
)
def test_lavis_normalization_matches_transformers_4_26_beam_search(monkeypatch, sep_bias, max_length, min_length):
    m = sharpened(sep_bias)
    imgs = images(3)
    sep = m.tokenizer.sep_token_id
    kw = {"num_beams": 3, "max_length": max_length, "min_length": min_length}
    seqs, scores = beams(m, imgs, monkeypatch, length_normalization="lavis", **kw)
    tf_seqs, _ = beams(m, imgs, monkeypatch, length_normalization="transformers", **kw)
    want_all = []
    for k in range(3):
        want = reference_lavis_beams(m, imgs[k], num_beams=3, max_length=max_length, min_length=min_length)
        got = [s[:-1] if s[-1] == sep else s for s in seqs[3 * k: 3 * k + 3]]
        assert got == [h for _, h in want]
        assert scores[3 * k: 3 * k + 3].tolist() == pytest.approx([s for s, _ in want], abs=1e-4)
        want_all += [h for _, h in want]
    # transformers' own scoring keeps other hypotheses in each of these settings
    assert [s[:-1] if s[-1] == sep else s for s in tf_seqs] != want_all


# -- the option ---------------------------------------------------------------------------------------
def test_default_and_bad_values():
    m = BlipCaption.from_pretrained("tiny")
    assert m.length_normalization == "lavis"
    assert BlipCaption.from_pretrained("tiny", length_normalization="transformers").length_normalization == "transformers"
    with pytest.raises(ConfigError, match=r"model.length_normalization: 'LAVIS' is not one of 'lavis', 'transformers'"):
        BlipCaption.from_pretrained("tiny", length_normalization="LAVIS")
    with pytest.raises(ValueError, match=r"length_normalization='hf' is not one of 'lavis', 'transformers'"):
        m.generate({"image": images(1)}, length_normalization="hf")


def test_scoring_is_restored_after_generate_and_on_error():
    m = BlipCaption.from_pretrained("tiny").eval()
    decoder = m.blip.text_decoder
    m.generate({"image": images(1)}, num_beams=2, max_length=8, min_length=5)
    assert "_update_finished_beams" not in vars(decoder) and "_check_early_stop_heuristic" not in vars(decoder)
    with pytest.raises(KeyError), lavis_beam_scoring(decoder, eos_token_id=m.tokenizer.sep_token_id):
        assert "_update_finished_beams" in vars(decoder)
        raise KeyError("boom")
    assert "_update_finished_beams" not in vars(decoder) and "_check_early_stop_heuristic" not in vars(decoder)


def test_unsupported_transformers_is_a_clear_error():
    class NoBeamSteps(torch.nn.Module):
        pass

    with pytest.raises(RuntimeError, match=r"Use length_normalization='transformers'"):
        check_supported(NoBeamSteps())
