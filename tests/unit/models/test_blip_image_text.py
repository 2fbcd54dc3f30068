"""BLIP image-text archs (feature extractor, ITM, retrieval): scores, losses, queues, LAVIS layout."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lavis.common.errors import CheckpointError
from lavis.models import load_model
from lavis.models.blip import convert
from lavis.models.alignment import itc_targets, soft_cross_entropy

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["a small red circle", "two blue stars above a large green square", "a yellow triangle"]


def images(n: int, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def itm():
    torch.manual_seed(0)
    return load_model("blip_image_text_matching", "tiny", is_eval=True)


@pytest.fixture(scope="module")
def retrieval():
    torch.manual_seed(1)
    return load_model("blip_retrieval", "tiny", is_eval=True)


def test_itc_targets_spread_over_the_same_image():
    t = itc_targets(torch.tensor([5, 6, 5]), 3, torch.tensor([5, 6, 5, -100, 6]))
    expected = torch.tensor([[0.5, 0, 0.5, 0, 0], [0, 0.5, 0, 0, 0.5], [0.5, 0, 0.5, 0, 0]])
    torch.testing.assert_close(t, expected)
    torch.testing.assert_close(itc_targets(None, 2), torch.eye(2))
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    by_hand = -(torch.log_softmax(logits, 1) * torch.eye(2)).sum(1).mean()
    torch.testing.assert_close(soft_cross_entropy(logits, torch.eye(2)), by_hand)


def test_retrieval_scores_agree_with_direct_scores(itm):
    samples = {"image": images(3), "text_input": TEXTS}
    img = itm.encode_for_retrieval(samples, "image")
    txt = itm.encode_for_retrieval(samples, "text")
    assert txt.states["input_ids"].shape == (3, itm.max_txt_len)  # padded to max_txt_len, so batches concatenate
    # the ITC similarity matrix and the ITM logits do not depend on the padding
    torch.testing.assert_close(img.embeds @ txt.embeds.t(), itm.itc_similarity(samples), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(itm.rerank(img.states, txt.states), itm.itm_scores(samples)[:, 1], atol=1e-5, rtol=1e-4)
    feats = itm.extract_features(samples, mode="image")
    torch.testing.assert_close(feats.image_embeds_proj[:, 0], img.embeds, atol=1e-5, rtol=1e-4)
    text_feats = itm.extract_features(samples, mode="text")
    torch.testing.assert_close(text_feats.text_embeds_proj[:, 0], txt.embeds, atol=1e-5, rtol=1e-4)
    mm = itm.extract_features(samples, mode="multimodal")
    torch.testing.assert_close(itm.itm_head(mm.multimodal_embeds[:, 0]), itm.itm_scores(samples), atol=1e-5, rtol=1e-4)
    assert mm.text_embeds is None and feats.multimodal_embeds is None


def test_bad_inputs_say_what_to_do(itm):
    with pytest.raises(ValueError, match="mode='both' is not one of 'image', 'text', 'multimodal'"):
        itm.extract_features({"image": images(1)}, mode="both")
    with pytest.raises(ValueError, match=r"needs samples\['text_input'\]"):
        itm.extract_features({"image": images(1)}, mode="multimodal")
    with pytest.raises(ValueError, match="modality='video'"):
        itm.encode_for_retrieval({"image": images(1)}, "video")
    with pytest.raises(TypeError, match="list of texts"):
        itm.itm_scores({"image": images(1), "text_input": "one string"})


def test_hard_negatives_never_show_the_positive_image(itm):
    # pairs 0 and 1 show image 7, pair 2 image 8: text 0's and 1's negative image must be image 2's
    embeds = itm.encode_image(images(3))
    text = itm.tokenize(TEXTS)
    sim = torch.zeros(3, 3)
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        _, logits = itm.itm_loss(embeds, text.input_ids, text.attention_mask, sim, sim, torch.tensor([7, 7, 8]))
        neg_image_rows = logits[3:6]  # (negative image, text i)
        for i in (0, 1):
            torch.testing.assert_close(neg_image_rows[i], itm.itm_logits(embeds[2:3], text.input_ids[i : i + 1],
                                                                         text.attention_mask[i : i + 1])[0])
        seen.add(tuple(neg_image_rows[2].tolist()))
    assert len(seen) == 2  # text 2 draws image 0 or 1


def test_queue_wraps_and_momentum_moves(retrieval):
    model = retrieval
    q = model.queue_size
    feats = F.normalize(torch.randn(q - 1, model.image_queue.shape[0]), dim=-1)
    model.queue_ptr.zero_()
    model.enqueue(feats, feats, torch.arange(q - 1))
    assert int(model.queue_ptr) == q - 1
    model.enqueue(feats[:3], feats[:3], torch.tensor([40, 41, 42]))
    assert int(model.queue_ptr) == 2
    assert model.idx_queue[0, -1] == 40 and model.idx_queue[0, :2].tolist() == [41, 42]
    torch.testing.assert_close(model.image_queue[:, 0], feats[1])
    p, p_m = model.vision_proj.weight, model.vision_proj_m.weight
    before = p_m.detach().clone()
    with torch.no_grad():
        p.add_(1.0)
    model.momentum_update()
    torch.testing.assert_close(p_m, model.momentum * before + (1 - model.momentum) * p.detach())
    with pytest.raises(ValueError, match="image_id"):
        model({"image": images(2), "text_input": TEXTS[:2]})


def test_itm_training_learns_to_match():
    torch.manual_seed(0)
    model = load_model("blip_image_text_matching", "tiny")
    samples = {"image": images(4, seed=3), "text_input": TEXTS + ["a purple cross"], "image_id": torch.arange(4)}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(30):
        out = model(samples)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert float(out.extras["loss_itc"]) < 0.2  # ln 4 = 1.39 at the start
    sim = model.eval().itc_similarity(samples)
    assert (sim.argmax(1) == torch.arange(4)).all(), sim


def test_retrieval_itc_loss_by_hand():
    """With alpha = 0 the targets are the ground truth over the batch and the queue; at init the
    momentum encoders equal the model, so the loss is computable from encode_for_retrieval."""
    from lavis.models.blip.blip_retrieval import BlipRetrieval

    torch.manual_seed(2)
    model = BlipRetrieval.from_pretrained("tiny", alpha=0.0).eval()
    ids = torch.tensor([3, 4, 3])
    model.idx_queue[0, :2] = torch.tensor([4, 9])  # queue column 0 shows image 4 too
    samples = {"image": images(3), "text_input": TEXTS, "image_id": ids}
    img = model.encode_for_retrieval(samples, "image").embeds
    txt = model.encode_for_retrieval(samples, "text").embeds
    image_queue, text_queue, idx_queue = model.image_queue.clone(), model.text_queue.clone(), model.idx_queue.clone()
    out = model(samples)
    targets = itc_targets(ids, 3, torch.cat([ids, idx_queue[0]]))
    assert targets[1, 3] == 0.5  # the queue's image-4 column is a positive of pair 1
    i2t = img @ torch.cat([txt.t(), text_queue], 1) / 0.07
    t2i = txt @ torch.cat([img.t(), image_queue], 1) / 0.07
    expected = (soft_cross_entropy(i2t, targets) + soft_cross_entropy(t2i, targets)) / 2
    torch.testing.assert_close(out.extras["loss_itc"], expected, atol=1e-5, rtol=1e-4)
    # the step's momentum embeddings went into the queue at the pointer
    torch.testing.assert_close(model.text_queue[:, :3], txt.t(), atol=1e-5, rtol=1e-4)
    assert model.idx_queue[0, :3].tolist() == [3, 4, 3] and int(model.queue_ptr) == 3


def test_retrieval_alpha_ramps_up_with_the_runners_progress():
    """At the first step (progress 0 of 2 epochs) the ITC targets are the ground truth, as with
    alpha = 0; after two epochs, or outside a runner, the full alpha."""
    import copy

    from lavis.models.base_model import TrainProgress
    from lavis.models.blip.blip_retrieval import BlipRetrieval

    torch.manual_seed(3)
    model = BlipRetrieval.from_pretrained("tiny", alpha=0.4).eval()
    samples = {"image": images(3), "text_input": TEXTS, "image_id": torch.tensor([3, 4, 5])}
    with torch.no_grad():  # the momentum encoders differ from the model, so alpha matters
        for p in model.text_proj.parameters():
            p.add_(0.5)

    def itc(alpha: float, progress: TrainProgress | None) -> torch.Tensor:
        m = copy.deepcopy(model)
        m.alpha, m.train_progress = alpha, progress
        torch.manual_seed(0)
        return m(samples).extras["loss_itc"]

    assert torch.equal(itc(0.4, TrainProgress(0, 10)), itc(0.0, None))
    assert torch.equal(itc(0.4, TrainProgress(10, 10)), itc(0.2, None))
    assert torch.equal(itc(0.4, TrainProgress(25, 10)), itc(0.4, None))
    assert not torch.equal(itc(0.4, None), itc(0.0, None))


def save_lavis(model, path: Path, edit=None) -> dict:
    sd = convert.image_text_to_lavis(model.state_dict())
    if edit is not None:
        edit(sd)
    torch.save({"model": sd}, path)
    return sd


def test_lavis_layout_round_trip(retrieval, tmp_path, caplog):
    sd = save_lavis(retrieval, tmp_path / "r.pth")
    assert "visual_encoder.blocks.0.attn.qkv.weight" in sd and "visual_encoder_m.pos_embed" in sd
    assert "text_encoder.embeddings.position_ids" in sd and "idx_queue" in sd
    torch.manual_seed(5)
    fresh = load_model("blip_retrieval", "tiny", is_eval=True)
    fresh.load_checkpoint(tmp_path / "r.pth")
    samples = {"image": images(2), "text_input": TEXTS[:2]}
    torch.testing.assert_close(fresh.itm_scores(samples), retrieval.itm_scores(samples))
    # a retrieval checkpoint loads into the ITM arch: momentum encoders, queues and temp are left out
    itm = load_model("blip_image_text_matching", "tiny", is_eval=True)
    with caplog.at_level(logging.INFO, logger="lavis.models.blip.convert"):
        itm.load_checkpoint(tmp_path / "r.pth")
    assert "vision_model_m" in caplog.text and "image_queue" in caplog.text
    torch.testing.assert_close(itm.itm_scores(samples), retrieval.itm_scores(samples))


def test_lavis_layout_missing_key_is_named_as_in_the_file(itm, tmp_path):
    save_lavis(itm, tmp_path / "bad.pth", edit=lambda sd: sd.pop("visual_encoder.blocks.1.mlp.fc2.bias"))
    with pytest.raises(CheckpointError, match=r"visual_encoder\.blocks\.1\.mlp\.fc2\.bias"):
        load_model("blip_image_text_matching", "tiny").load_checkpoint(tmp_path / "bad.pth")


def test_pretraining_checkpoint_loads_into_retrieval(retrieval, tmp_path):
    """BLIP's pre-training checkpoint has a caption decoder and no idx_queue: the decoder is left out,
    the id queue starts empty."""
    sd = convert.image_text_to_lavis(retrieval.state_dict())
    del sd["idx_queue"]
    sd["text_decoder.cls.predictions.bias"] = torch.zeros(3)
    torch.save({"model": sd}, tmp_path / "pretrain.pth")
    fresh = load_model("blip_retrieval", "tiny", checkpoint=tmp_path / "pretrain.pth")
    assert (fresh.idx_queue == -100).all()
    torch.testing.assert_close(fresh.image_queue, retrieval.image_queue)
