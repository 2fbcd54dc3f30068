"""BLIP pre-training (``blip_pretrain``): the three losses, the LM labels, encoder-decoder weight
sharing, the momentum update, learning on a fixed batch and the LAVIS checkpoint layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lavis.common.errors import CheckpointError
from lavis.models import load_model
from lavis.models.blip import convert

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTIONS = ["a picture of a small red circle", "two blue stars above a large green square", "a yellow triangle"]
LAVIS_KEYS = Path(__file__).parents[2] / "assets" / "blip_pretrain_lavis_keys.txt"


def images(n: int, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def tiny(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return load_model("blip_pretrain", "tiny", **overrides)


@pytest.fixture(scope="module")
def model():
    return tiny()


def test_three_finite_losses_sum_to_the_total(model):
    out = model({"image": images(3), "text_input": CAPTIONS})
    parts = [out.extras[k] for k in ("loss_itc", "loss_itm", "loss_lm")]
    assert all(torch.isfinite(p) and p > 0 for p in parts)
    torch.testing.assert_close(out.loss.detach(), sum(parts))
    # a random-init decoder predicts about uniformly over the vocabulary
    assert abs(float(out.extras["loss_lm"]) - torch.log(torch.tensor(len(model.tokenizer))).item()) < 0.5
    # captions in the batch: every word piece after [DEC] and [SEP]; no prompt on rows 1, 2
    n_pieces = [len(model.tokenizer(c).input_ids) - 1 for c in CAPTIONS]
    assert int(out.extras["n_tokens"]) == sum(n_pieces) - (model.prompt_length - 1)


def test_lm_labels_leave_out_the_prompt_and_padding(model):
    text = model.tokenize(CAPTIONS, padding="max_length")
    labels = model.lm_labels(text.input_ids)
    n = model.prompt_length  # [DEC] a picture of
    assert n == 4
    # row 0 starts with the prompt: its first n positions are not scored; the others are scored whole
    assert (labels[0, :n] == -100).all() and (labels[0, n:][text.attention_mask[0, n:] == 1] != -100).all()
    assert (labels[1:, 1:][text.attention_mask[1:, 1:] == 1] != -100).all()
    assert (labels[text.attention_mask == 0] == -100).all()


def test_lm_loss_by_hand_and_independent_of_padding(model):
    model.eval()
    try:
        image_embeds = model.encode_image(images(3))
        long = model.tokenize(CAPTIONS, padding="max_length")
        short = model.tokenize(CAPTIONS, padding="longest")
        assert long.input_ids.shape[1] > short.input_ids.shape[1]
        loss_long, n_long = model.lm_loss(image_embeds, long.input_ids, long.attention_mask)
        loss_short, n_short = model.lm_loss(image_embeds, short.input_ids, short.attention_mask)
        torch.testing.assert_close(loss_long, loss_short, atol=1e-5, rtol=1e-4)
        assert int(n_long) == int(n_short)
        # by hand: label-smoothed CE of the caption tokens only (row 0 from its first word after the prompt)
        ids = short.input_ids.clone()
        ids[:, 0] = model.tokenizer.bos_token_id
        logits = model.text_decoder(input_ids=ids, attention_mask=short.attention_mask,
                                    encoder_hidden_states=image_embeds).logits
        terms = []
        for row in range(3):
            start = model.prompt_length if row == 0 else 1
            end = int(short.attention_mask[row].sum())
            terms.append(F.cross_entropy(logits[row, start - 1 : end - 1], ids[row, start:end], label_smoothing=0.1,
                                         reduction="sum"))
        torch.testing.assert_close(loss_short, sum(terms) / int(n_short), atol=1e-5, rtol=1e-4)
    finally:
        model.train()


def test_encoder_and_decoder_share_all_but_self_attention():
    m = tiny()
    enc, dec = m.text_encoder, m.text_decoder.bert
    shared = [
        "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight", "embeddings.LayerNorm.bias",
        "encoder.layer.1.crossattention.self.key.weight", "encoder.layer.0.crossattention.output.dense.bias",
        "encoder.layer.0.intermediate.dense.weight", "encoder.layer.1.output.LayerNorm.weight",
    ]
    enc_params, dec_params = dict(enc.named_parameters()), dict(dec.named_parameters())
    for name in shared:
        assert enc_params[name] is dec_params[name], name
    for name in ("encoder.layer.0.attention.self.query.weight", "encoder.layer.1.attention.output.dense.bias"):
        assert enc_params[name] is not dec_params[name], name
    # the LM head stays tied to the (shared) word embeddings; the momentum encoder is a copy
    assert m.text_decoder.cls.predictions.decoder.weight is enc.embeddings.word_embeddings.weight
    assert m.text_encoder_m.embeddings.word_embeddings.weight is not enc.embeddings.word_embeddings.weight
    torch.testing.assert_close(m.text_encoder_m.embeddings.word_embeddings.weight,
                               enc.embeddings.word_embeddings.weight)
    # a change to one shows in the other
    with torch.no_grad():
        enc.encoder.layer[0].crossattention.self.query.weight.add_(1.0)
        dec.embeddings.LayerNorm.weight.mul_(3.0)
    torch.testing.assert_close(dec.encoder.layer[0].crossattention.self.query.weight,
                               enc.encoder.layer[0].crossattention.self.query.weight)
    torch.testing.assert_close(enc.embeddings.LayerNorm.weight, torch.full_like(enc.embeddings.LayerNorm.weight, 3.0))
    # 3 embedding modules, and 8 per layer: cross-attention (q, k, v, dense, LayerNorm) + feed-forward (3)
    assert len(m.tied_modules) == 3 + 8 * 2


def test_one_step_moves_the_momentum_copies_by_ema():
    m = tiny(seed=3)
    samples = {"image": images(3), "text_input": CAPTIONS}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    m(samples).loss.backward()
    opt.step()
    opt.zero_grad()
    watched = [
        (m.text_encoder.encoder.layer[0].crossattention.self.value.weight,  # shared with the decoder
         m.text_encoder_m.encoder.layer[0].crossattention.self.value.weight),
        (m.text_encoder.encoder.layer[1].attention.self.query.weight,
         m.text_encoder_m.encoder.layer[1].attention.self.query.weight),
        (m.vision_model.encoder.layers[0].mlp.fc1.weight, m.vision_model_m.encoder.layers[0].mlp.fc1.weight),
        (m.vision_proj.weight, m.vision_proj_m.weight),
        (m.text_proj.bias, m.text_proj_m.bias),
    ]
    before = [(p.detach().clone(), p_m.detach().clone()) for p, p_m in watched]
    assert all(not torch.equal(p, p_m) for p, p_m in before)  # the step moved the model away from its copies
    m(samples)  # the momentum update comes first in forward
    for (p, p_m), (p0, p_m0) in zip(watched, before):
        torch.testing.assert_close(p_m.detach(), m.momentum * p_m0 + (1 - m.momentum) * p0)
        assert not p_m.requires_grad


def test_a_few_steps_lower_the_loss():
    m = tiny(seed=1)
    samples = {"image": images(4, seed=3), "text_input": CAPTIONS + ["a purple cross"], "image_id": torch.arange(4)}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    first = None
    for _ in range(16):
        torch.manual_seed(0)  # the same hard negatives each step
        out = m(samples)
        first = first or {k: float(out.extras[k]) for k in ("loss_itm", "loss_lm")} | {"loss": float(out.loss.detach())}
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    # (ITC barely moves in so few steps: the queue fills with this batch and the slow momentum
    # model's soft targets are near uniform; the total still falls)
    assert float(out.loss.detach()) < 0.9 * first["loss"], (first, out)
    assert float(out.extras["loss_lm"]) < 0.8 * first["loss_lm"]
    assert float(out.extras["loss_itm"]) < first["loss_itm"]


def test_queue_records_ids_only_when_given():
    m = tiny()
    m({"image": images(3), "text_input": CAPTIONS})
    assert (m.idx_queue == -100).all() and int(m.queue_ptr) == 3
    m({"image": images(3), "text_input": CAPTIONS, "image_id": torch.tensor([5, 6, 5])})
    assert m.idx_queue[0, 3:6].tolist() == [5, 6, 5] and int(m.queue_ptr) == 6


def lavis_state_dict(m) -> dict[str, torch.Tensor]:
    """A LAVIS BlipPretrain state dict of random values, named from our keys by the inverse mapping."""
    sd = convert.image_text_to_lavis(m.state_dict())
    del sd["idx_queue"]  # LAVIS' pre-training model has no image-id queue
    g = torch.Generator().manual_seed(11)
    tensors: dict[int, torch.Tensor] = {}  # tied tensors stay one tensor, as in a LAVIS checkpoint
    out = {}
    for k, v in sd.items():
        if v.is_floating_point():
            v = tensors.setdefault(v.data_ptr(), torch.randn(v.shape, generator=g) * 0.02)
        out[k] = v
    return out


def test_lavis_layout_covers_every_key_and_loads_strictly(tmp_path):
    m = tiny()
    sd = lavis_state_dict(m)
    listed = {line for line in LAVIS_KEYS.read_text().splitlines() if line and not line.startswith("#")}
    assert set(sd) == listed  # exactly the names LAVIS' BlipPretrain has
    torch.save({"model": sd}, tmp_path / "pretrain.pth")
    fresh = tiny(seed=9)
    fresh.load_checkpoint(tmp_path / "pretrain.pth")  # strict
    assert (fresh.idx_queue == -100).all()
    ours = fresh.state_dict()
    for lavis_key, value in sd.items():
        key = convert.image_text_key_from_lavis(lavis_key)
        if key in ours:
            torch.testing.assert_close(ours[key], value, msg=lavis_key)
    # loading kept the ties: one tensor, the checkpoint's value
    dense = fresh.text_encoder.encoder.layer[1].output.dense.weight
    assert dense is fresh.text_decoder.bert.encoder.layer[1].output.dense.weight
    torch.testing.assert_close(fresh.text_encoder.encoder.layer[1].output.dense.weight,
                               sd["text_decoder.bert.encoder.layer.1.output.dense.weight"])
    out = fresh({"image": images(2), "text_input": CAPTIONS[:2]})
    assert torch.isfinite(out.loss)


def test_lavis_checkpoint_missing_a_decoder_key_names_it(tmp_path):
    m = tiny()
    sd = lavis_state_dict(m)
    del sd["text_decoder.bert.encoder.layer.0.attention.self.key.bias"]
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"text_decoder\.bert\.encoder\.layer\.0\.attention\.self\.key\.bias"):
        tiny().load_checkpoint(tmp_path / "bad.pth")
