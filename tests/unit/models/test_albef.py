"""The ALBEF family: encoders, losses against hand computations, the LAVIS-layout converter, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lavis.common.errors import CheckpointError, ConfigError
from lavis.models import load_model
from lavis.models.albef import convert
from lavis.models.alignment import distilled_cross_entropy, hard_negatives, rampup, soft_cross_entropy
from lavis.models.base_model import TrainProgress

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTIONS = ["a small red circle", "two blue stars above a large green square", "a yellow triangle"]


def images(n: int = 3, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def retrieval():
    torch.manual_seed(0)
    return load_model("albef_retrieval", "tiny", is_eval=True)


def to_lavis(model, mlm: bool) -> dict[str, torch.Tensor]:
    """Our state dict in LAVIS' layout: a position_ids buffer, and ``text_encoder.bert.*`` if ``mlm``."""
    sd = {convert.ours_key_to_lavis(k, mlm): v for k, v in model.state_dict().items()}
    n = model.text_config.max_position_embeddings
    sd[("text_encoder.bert." if mlm else "text_encoder.") + "embeddings.position_ids"] = torch.arange(n)[None]
    return sd


# -- encoders -----------------------------------------------------------------------------------------
def test_padding_changes_no_text_or_fusion_output(retrieval):
    ids, mask = retrieval.tokenize(CAPTIONS)
    ids_max, mask_max = retrieval.tokenize(CAPTIONS, pad_to_max=True)
    assert ids_max.shape[1] == retrieval.max_txt_len > ids.shape[1]
    with torch.no_grad():
        short = retrieval.text_encoder.forward_text(ids, mask)
        long = retrieval.text_encoder.forward_text(ids_max, mask_max)
        torch.testing.assert_close(long[:, : ids.shape[1]][mask.bool()], short[mask.bool()], atol=1e-5, rtol=1e-5)
        states = retrieval.encode_image(images())
        fused = retrieval.text_encoder.forward_fusion(short, mask, states)
        fused_long = retrieval.text_encoder.forward_fusion(long, mask_max, states)
        torch.testing.assert_close(fused_long[:, 0], fused[:, 0], atol=1e-5, rtol=1e-5)
        # the fusion layers read the image: another image gives other states
        assert (retrieval.text_encoder.forward_fusion(short, mask, states.flip(0))[:, 0] - fused[:, 0]).abs().max() > 1e-3


def test_nlvr_pairs_share_cross_attention_keys_and_alternate_images():
    torch.manual_seed(0)
    model = load_model("albef_nlvr", "tiny", is_eval=True)
    layers = model.text_encoder.encoder.layer
    f = model.text_encoder.fusion_layer
    assert layers[f].crossattention.self.key.weight is layers[f + 1].crossattention.self.key.weight
    assert layers[f].crossattention.self.query.weight is not layers[f + 1].crossattention.self.query.weight
    x = images(2)
    same = model.predict_class({"image0": x, "image1": x, "text_input": CAPTIONS[:2]})
    swapped = model.predict_class({"image0": x, "image1": x.flip(0), "text_input": CAPTIONS[:2]})
    assert (same - swapped).abs().max() > 1e-4  # the second image matters


# -- losses against hand computations ------------------------------------------------------------------
def test_soft_and_distilled_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    log_p = logits - logits.exp().sum(1, keepdim=True).log()
    want = -(log_p * targets).sum(1).mean()
    torch.testing.assert_close(soft_cross_entropy(logits, targets), want)
    labels = torch.tensor([0, 2])
    logits_m = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    ce = -(log_p[0, 0] + log_p[1, 2]) / 2
    soft = -(log_p * logits_m.softmax(1)).sum(1).mean()
    torch.testing.assert_close(distilled_cross_entropy(logits, labels, logits_m, 0.4), 0.6 * ce + 0.4 * soft)
    torch.testing.assert_close(distilled_cross_entropy(logits, labels, None, 0.4), ce)


def test_rampup_follows_the_runners_progress():
    assert rampup(0.4, None, epochs=2) == 0.4  # not trained by a runner: the full weight
    assert rampup(0.4, TrainProgress(global_step=5, steps_per_epoch=10), epochs=2) == pytest.approx(0.1)
    assert rampup(0.4, TrainProgress(global_step=30, steps_per_epoch=10), epochs=2) == pytest.approx(0.4)
    assert rampup(0.4, TrainProgress(global_step=0, steps_per_epoch=10), epochs=0) == 0.4


def test_hard_negatives_never_pick_positives():
    sim = torch.tensor([[5.0, 4.0, -9.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    positive = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([hard_negatives(sim, positive, g) for _ in range(200)])
    assert (draws[:, 0] == 1).float().mean() > 0.99  # softmax weight of column 1 vs 2: e^13 to 1
    assert (draws[:, 1] == 2).all()
    assert set(draws[:, 2].tolist()) == {0, 1}  # every column positive: uniform over the other rows


def test_vqa_answer_loss_is_the_summed_token_nll():
    torch.manual_seed(0)
    model = load_model("albef_vqa", "tiny", is_eval=True)
    model.label_smoothing = 0.0
    ans = model.tokenizer(["red", "two blue"], padding="longest", return_tensors="pt")
    logits = torch.randn(2, ans.input_ids.shape[1], len(model.tokenizer), generator=torch.Generator().manual_seed(1))
    log_p = logits.log_softmax(-1)
    want = []
    for row, (ids, mask) in enumerate(zip(ans.input_ids, ans.attention_mask)):
        want.append(-sum(log_p[row, t - 1, ids[t]] for t in range(1, int(mask.sum()))))
    torch.testing.assert_close(model.answer_losses(logits, ans.input_ids), torch.stack(want))


def test_retrieval_queue_and_momentum():
    torch.manual_seed(0)
    model = load_model("albef_retrieval", "tiny")
    p, p_m = model.text_proj.weight, model.text_proj_m.weight
    with torch.no_grad():
        p_m.copy_(p + 1.0)
    before = p_m.clone()
    out = model({"image": images(), "text_input": CAPTIONS, "image_id": torch.tensor([4, 4, 9])})
    torch.testing.assert_close(p_m, 0.995 * before + 0.005 * p)
    assert int(model.queue_ptr) == 3 and model.idx_queue[0, :3].tolist() == [4, 4, 9]
    torch.testing.assert_close(model.image_queue[:, :3].norm(dim=0), torch.ones(3))
    assert out.loss.item() == pytest.approx((out.extras["loss_itc"] + out.extras["loss_itm"]).item())
    model.queue_ptr[0] = model.queue_size - 3
    model({"image": images(), "text_input": CAPTIONS})
    assert int(model.queue_ptr) == 0  # wrapped around


def test_feature_extractor_learns_to_match_pairs():
    torch.manual_seed(0)
    model = load_model("albef_feature_extractor", "tiny")
    samples = {"image": images(4, seed=3), "text_input": CAPTIONS + ["a green star"]}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(25):
        out = model(samples)
        first = first if first is not None else out.extras["loss_itc"].item()
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert first > math.log(4) - 0.3  # about chance: 4 candidates
    assert out.extras["loss_itc"].item() < 0.5 * first
    with torch.no_grad():
        model.eval()
        img = model.encode_for_retrieval(samples, "image")
        txt = model.encode_for_retrieval(samples, "text")
    assert (img.embeds @ txt.embeds.t()).argmax(1).tolist() == [0, 1, 2, 3]


# -- the LAVIS layout -----------------------------------------------------------------------------------
def test_lavis_retrieval_layout_loads_strictly_and_gives_the_same_scores(retrieval, tmp_path: Path):
    path = tmp_path / "albef.pth"
    torch.save({"model": to_lavis(retrieval, mlm=False)}, path)
    torch.manual_seed(1)
    other = load_model("albef_retrieval", "tiny", is_eval=True)
    other.load_checkpoint(path)
    s = {"image": images(), "text_input": CAPTIONS}
    a, b = retrieval.encode_for_retrieval(s, "image"), other.encode_for_retrieval(s, "image")
    t = retrieval.encode_for_retrieval(s, "text")
    torch.testing.assert_close(other.rerank(b.states, t.states), retrieval.rerank(a.states, t.states))


def test_pretrain_layout_into_feature_extractor(retrieval, tmp_path: Path):
    """ALBEF.pth holds a masked-LM BERT (text_encoder.bert.*), its head, momentum encoders and queues."""
    sd = to_lavis(retrieval, mlm=True)
    sd["text_encoder.cls.predictions.bias"] = torch.zeros(3)
    # a 224 px checkpoint grid (2x2 patches here) is resized to the model's 8x8
    sd["visual_encoder.pos_embed"] = torch.randn(1, 5, 64)
    path = tmp_path / "pretrain.pth"
    torch.save({"model": sd}, path)
    torch.manual_seed(1)
    fe = load_model("albef_feature_extractor", "tiny", is_eval=True)
    fe.load_checkpoint(path)
    torch.testing.assert_close(fe.text_encoder.embeddings.word_embeddings.weight,
                               retrieval.text_encoder.embeddings.word_embeddings.weight)
    assert fe.visual_encoder.pos_embed.shape == (1, 65, 64)
    assert not any(k.endswith("_m") or "queue" in k for k, _ in fe.named_buffers())


def test_mismatch_names_keys_in_both_layouts(retrieval, tmp_path: Path):
    sd = to_lavis(retrieval, mlm=True)
    del sd["text_encoder.bert.encoder.layer.3.crossattention.self.key.weight"]
    sd["text_encoder.bert.pooler.dense.weight"] = torch.zeros(2, 2)
    path = tmp_path / "broken.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as e:
        load_model("albef_retrieval", "tiny").load_checkpoint(path)
    msg = str(e.value)
    assert "text_encoder.encoder.layer.3.crossattention.self.key.weight" in msg
    assert "'text_encoder.bert.encoder.layer.3.crossattention.self.key.weight'" in msg
    assert "text_encoder.bert.pooler.dense.weight" in msg and "LAVIS layout" in msg


# -- errors ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    ({"fusion_layer": 4}, "model.fusion_layer: 4 must lie between 1 and"),
    ({"vision_config": {"depth": 2}}, "model.vision_config.depth: unknown key"),
    ({"text_config": {"vocab_size": 10}}, "model.text_config.vocab_size: 10 is smaller than the tokenizer"),
])
def test_config_errors(overrides, message):
    from lavis.models.albef.albef_retrieval import AlbefRetrieval

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        AlbefRetrieval.from_pretrained("tiny", **overrides)


def test_config_check_reports_vision_config_keys_before_building():
    from lavis.models.albef.albef_retrieval import AlbefRetrieval

    cfg = {**AlbefRetrieval.default_config("tiny").model, "vision_config": {"image_size": 32, "widht": 64}}
    problems = AlbefRetrieval.validate_config(cfg)
    assert any(p.startswith("model.vision_config.widht: unknown key") and "width" in p for p in problems), problems


def test_nlvr_needs_an_even_number_of_fusion_layers():
    from lavis.models.albef.albef_nlvr import AlbefNLVR

    with pytest.raises(ConfigError, match="leave 3 fusion layers; NLVR2 pairs them"):
        AlbefNLVR.from_pretrained("tiny", fusion_layer=1)


def test_vqa_input_errors():
    torch.manual_seed(0)
    model = load_model("albef_vqa", "tiny")
    s = {"image": images(2), "text_input": ["what colour?", "how many?"]}
    with pytest.raises(ValueError, match="needs answer_list"):
        model.predict_answers(s, inference_method="rank")
    with pytest.raises(ValueError, match="is not one of 'generate', 'rank'"):
        model.predict_answers(s, inference_method="beam")
    with pytest.raises(ValueError, match="all three must agree"):
        model({**s, "answer": ["red"], "weight": torch.ones(1), "n_answers": torch.tensor([1, 1])})
    answers = model.predict_answers(s, inference_method="generate", max_len=3, min_len=2)
    assert len(answers) == 2 and all(1 <= len(a.split()) <= 3 for a in answers)


# -- pre-training ------------------------------------------------------------------------------------------
def test_pretrain_masking_and_ties():
    torch.manual_seed(0)
    model = load_model("albef_pretrain", "tiny")
    tok = model.tokenizer
    ids, _ = model.tokenize(CAPTIONS * 20)
    inputs, labels = model.mask_tokens(ids, torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert not chosen[(ids == tok.pad_token_id) | (ids == tok.cls_token_id)].any()
    torch.testing.assert_close(labels[chosen], ids[chosen])
    share = chosen.sum() / ((ids != tok.pad_token_id) & (ids != tok.cls_token_id)).sum()
    assert 0.1 < share.item() < 0.2  # mlm_mask_prob 0.15
    assert 0.7 < (inputs[chosen] == tok.mask_token_id).float().mean().item() < 0.9
    assert (inputs[~chosen] == ids[~chosen]).all()
    # a batch with too few tokens still masks one, so the MLM loss is defined
    _, one_labels = model.mask_tokens(model.tokenize(["a"])[0], torch.Generator().manual_seed(0))
    assert (one_labels != -100).sum() == 1
    # the LM heads are tied to the word embeddings, in the momentum copy too
    assert model.mlm_head.predictions.decoder.weight is model.text_encoder.embeddings.word_embeddings.weight
    assert model.mlm_head_m.predictions.decoder.weight is model.text_encoder_m.embeddings.word_embeddings.weight


def test_pretrain_round_trips_the_albef_pth_layout(tmp_path: Path):
    torch.manual_seed(0)
    model = load_model("albef_pretrain", "tiny", is_eval=True)
    sd = to_lavis(model, mlm=True)
    assert "text_encoder.cls.predictions.transform.dense.weight" in sd
    assert "text_encoder_m.bert.encoder.layer.0.attention.self.query.weight" in sd
    torch.save({"model": sd}, tmp_path / "ALBEF.pth")
    torch.manual_seed(1)
    other = load_model("albef_pretrain", "tiny", is_eval=True)
    other.load_checkpoint(tmp_path / "ALBEF.pth")
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
