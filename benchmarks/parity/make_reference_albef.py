"""Reference outputs of LAVIS' own ALBEF models (salesforce-lavis 1.0.2), for check_parity_albef.py.

Runs INSIDE the reference environment (see benchmarks/parity/README.md):

    .venv-lavis/bin/python benchmarks/parity/make_reference_albef.py --out output/parity/albef

It builds LAVIS' ALBEF classes with a seeded random initialization, no downloads, and SHAPES (below):
base widths (ViT-B/16 width 768 with 12 heads, BERT-base width 768 with 12 heads, the full
bert-base-uncased vocabulary) with fewer layers (ViT 4, BERT 2 text-only + 2 fusion, answer decoder
2) at 224 px, so that five models fit the 2 shared cores; the layer names are LAVIS' own. Every
parameter gets seeded noise on top of LAVIS' initialization, so that biases and LayerNorms are not
the zeros and ones of a fresh model. It writes to ``--out``:

* ``lavis_albef_<model>.pth``: ``{"model": state_dict}`` in LAVIS' layout, for ``pretrain`` (the
  layout of ``ALBEF.pth``, the feature extractor's source), ``retrieval``, ``vqa``,
  ``classification`` (SNLI-VE) and ``nlvr``;
* ``full_layouts.pt``: key -> shape of each of those LAVIS models at its published size, the layout
  of the real checkpoints;
* ``reference.pt``: the inputs, the shapes and LAVIS' outputs: feature-extractor features, ITC
  similarities and ITM logits of the pre-training model, the retrieval score matrices of LAVIS'
  ``compute_sim_matrix`` (``k_test`` = ``K_TEST``), the VQA loss and rank-mode answers, the SNLI-VE
  logits and loss, the NLVR2 logits; and every candidate answer's score for every question.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from make_reference import bert_vocab_dir, lavis_tokenizer

SEED = 0
INPUT_SEED = 1234
SHAPES = {"image_size": 224, "vit_depth": 4, "text_layers": 4, "fusion_layer": 2, "decoder_layers": 2, "queue_size": 16}
K_TEST = 2
CAPTIONS = [
    "a man riding a wave on top of a surfboard",
    "two dogs playing with a frisbee in the park",
    "a plate of food with broccoli",
    "a red bus parked next to a building at night",
]
QUESTIONS = ["what is the man riding?", "how many dogs are there?", "what colour is the bus?"]
ANSWER_LIST = ["surfboard", "two", "red", "blue", "three", "a dog", "skateboard"]
TRAIN_ANSWERS = {"answer": ["surfboard", "board", "two", "red", "dark red"], "n_answers": [2, 1, 2],
                 "weight": [0.6, 0.4, 1.0, 0.5, 0.5]}
HYPOTHESES = ["a man is surfing", "the dogs are asleep", "there is food"]
LABELS = [0, 2, 1]
NLVR_TEXTS = ["the left image shows a surfer", "both images contain dogs", "one image shows food"]
NLVR_LABELS = [1, 0, 1]
RAMP = {"epoch": 1, "iters": 0, "num_iters_per_epoch": 10}  # alpha fully ramped up on both sides


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Seeded noise on every parameter (tied tensors once), so biases and LayerNorms are not 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))


def vit(shapes: dict[str, int] = SHAPES) -> Any:
    from lavis.models.vit import VisionTransformerEncoder

    enc = VisionTransformerEncoder(
        img_size=shapes["image_size"], patch_size=16, embed_dim=768, depth=shapes["vit_depth"], num_heads=12,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
    )
    enc.vision_width = 768
    return enc


def bert_config(layers: int, fusion_layer: int) -> Any:
    from transformers import BertConfig

    import lavis

    cfg = BertConfig.from_json_file(str(Path(lavis.__file__).parent / "configs/models/med_config_albef.json"))
    cfg.num_hidden_layers, cfg.fusion_layer = layers, fusion_layer
    return cfg


def makers(shapes: dict[str, int] = SHAPES) -> dict[str, Any]:
    """Builders of LAVIS' ALBEF models at ``shapes``, by name (built one at a time to bound memory)."""
    from lavis.models.albef_models.albef_classification import AlbefClassification
    from lavis.models.albef_models.albef_feature_extractor import AlbefFeatureExtractor
    from lavis.models.albef_models.albef_nlvr import AlbefNLVR
    from lavis.models.albef_models.albef_pretrain import AlbefPretrain
    from lavis.models.albef_models.albef_retrieval import AlbefRetrieval
    from lavis.models.albef_models.albef_vqa import AlbefVQA
    from lavis.models.med import BertForMaskedLM, BertLMHeadModel, BertModel, XBertEncoder

    layers, fusion = shapes["text_layers"], shapes["fusion_layer"]
    q = shapes["queue_size"]
    vit_ = partial(vit, shapes)

    def xbert() -> Any:
        return XBertEncoder(bert_config(layers, fusion), add_pooling_layer=False)

    return {
        "pretrain": lambda: AlbefPretrain(vit_(), BertForMaskedLM(bert_config(layers, fusion)), queue_size=q),
        "feature_extractor": lambda: AlbefFeatureExtractor(vit_(), BertForMaskedLM(bert_config(layers, fusion))),
        "retrieval": lambda: AlbefRetrieval(vit_(), xbert(), queue_size=q),
        "vqa": lambda: AlbefVQA(vit_(), xbert(), BertLMHeadModel(bert_config(shapes["decoder_layers"], 0)),
                                max_txt_len=25),
        "classification": lambda: AlbefClassification(vit_(), xbert(), num_classes=3, max_txt_len=40),
        # NLVR2: LAVIS shares the cross-attention keys/values of fusion layers 6+2i and 7+2i (i < 6),
        # so its text encoder has 6 text-only and 12 fusion layers, fixed: kept at that depth.
        "nlvr": lambda: AlbefNLVR(vit_(), BertModel(bert_config(18, 6), add_pooling_layer=False), num_classes=2,
                                  max_txt_len=40),
    }


def build(name: str, vocab_dir: str) -> Any:
    """LAVIS' model ``name``, seeded and perturbed, in eval mode."""
    i = list(makers()).index(name)
    with lavis_tokenizer(vocab_dir):
        torch.manual_seed(SEED + i)
        model = makers()[name]()
    perturb(model, SEED + 100 + i)
    return model.eval()


def save(model: Any, name: str, out: Path) -> None:
    sd = model.state_dict()
    torch.save({"model": sd}, out / f"lavis_albef_{name}.pth")
    print(f"saved {len(sd)} keys to lavis_albef_{name}.pth", flush=True)


class Loader:
    """What LAVIS' ``compute_sim_matrix`` reads of a data loader: ``dataset.text``, ``dataset.image``
    and batches of ``{"image": ...}``."""

    def __init__(self, images: torch.Tensor, texts: list[str], batch: int = 2):
        self.images, self.batch = images, batch
        self.dataset = type("D", (), {"text": texts, "image": list(range(len(images)))})()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(0, len(self.images), self.batch):
            yield {"image": self.images[i:i + self.batch]}


@torch.no_grad()
def reference(vocab_dir: str, out: Path) -> dict[str, Any]:
    from lavis.models.albef_models import compute_sim_matrix

    g = torch.Generator().manual_seed(INPUT_SEED)
    size = SHAPES["image_size"]
    images = torch.randn(4, 3, size, size, generator=g)
    images1 = torch.randn(3, 3, size, size, generator=g)
    ref: dict[str, Any] = {"shapes": SHAPES, "k_test": K_TEST, "images": images, "images1": images1,
                           "captions": CAPTIONS, "questions": QUESTIONS, "answer_list": ANSWER_LIST,
                           "train_answers": TRAIN_ANSWERS, "hypotheses": HYPOTHESES, "labels": LABELS,
                           "nlvr_texts": NLVR_TEXTS, "nlvr_labels": NLVR_LABELS, "ramp": RAMP}

    # pre-training model (the layout of ALBEF.pth): ITC similarities and ITM logits of (image i, text i)
    pt = build("pretrain", vocab_dir)
    save(pt, "pretrain", out)
    text = pt.tokenizer(CAPTIONS, padding="longest", truncation=True, max_length=30, return_tensors="pt")
    image_embeds = pt.visual_encoder.forward_features(images)
    text_embeds = pt.text_encoder.bert(text.input_ids, attention_mask=text.attention_mask, return_dict=True,
                                       mode="text").last_hidden_state
    image_feat = torch.nn.functional.normalize(pt.vision_proj(image_embeds[:, 0]), dim=-1)
    text_feat = torch.nn.functional.normalize(pt.text_proj(text_embeds[:, 0]), dim=-1)
    fused = pt.text_encoder.bert(encoder_embeds=text_embeds, attention_mask=text.attention_mask,
                                 encoder_hidden_states=image_embeds,
                                 encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long),
                                 return_dict=True, mode="fusion").last_hidden_state
    ref["itc_sim"] = image_feat @ text_feat.t()
    ref["itm_logits"] = pt.itm_head(fused[:, 0])
    del pt

    # feature extractor: LAVIS loads the pre-training checkpoint into it (its own loader)
    fe = build("feature_extractor", vocab_dir)
    fe.load_from_pretrained(str(out / "lavis_albef_pretrain.pth"), rename_text_keys=False)
    samples = {"image": images, "text_input": CAPTIONS}
    feats = fe.extract_features(samples, mode="multimodal")
    ref["features"] = {k: getattr(feats, k) for k in ("image_embeds", "multimodal_embeds")}
    for mode, keys in (("image", ("image_embeds", "image_embeds_proj")), ("text", ("text_embeds", "text_embeds_proj"))):
        f = fe.extract_features(samples, mode=mode)
        ref["features"].update({k: getattr(f, k) for k in keys})
    del fe

    # retrieval: LAVIS' own score matrices (ITC top-k, re-ranked with the ITM score)
    ret = build("retrieval", vocab_dir)
    save(ret, "retrieval", out)
    i2t, t2i = compute_sim_matrix(ret, Loader(images, CAPTIONS), k_test=K_TEST)
    ref["retrieval_i2t"], ref["retrieval_t2i"] = torch.from_numpy(i2t), torch.from_numpy(t2i)
    del ret

    # VQA: the training loss first (LAVIS moves the momentum encoders in every forward_encoder, which
    # the loss reads), then rank-mode answers
    vqa = build("vqa", vocab_dir)
    save(vqa, "vqa", out)
    vqa_samples = {"image": images[:3], "text_input": QUESTIONS, "answer": TRAIN_ANSWERS["answer"],
                   "weight": torch.tensor(TRAIN_ANSWERS["weight"]), "n_answers": torch.tensor(TRAIN_ANSWERS["n_answers"]),
                   **RAMP}
    ref["vqa_loss"] = vqa(dict(vqa_samples)).loss
    ref["vqa_rank_answers"] = {
        k: vqa.predict_answers({"image": images[:3], "text_input": list(QUESTIONS)}, answer_list=ANSWER_LIST,
                               num_ans_candidates=k)
        for k in (3, len(ANSWER_LIST))
    }
    # every answer's score for every question (the decoder pass rank mode ends with: summed
    # label-smoothed log-likelihood of the answer tokens), from LAVIS' decoder
    q = vqa.tokenizer(QUESTIONS, padding="longest", truncation=True, max_length=25, return_tensors="pt")
    states = vqa.text_encoder.forward_automask(q, vqa.visual_encoder.forward_features(images[:3])).last_hidden_state
    ans = vqa.tokenizer(ANSWER_LIST, padding="longest", return_tensors="pt")
    n = len(ANSWER_LIST)
    dec = vqa.text_decoder(ans.input_ids.repeat(3, 1), attention_mask=ans.attention_mask.repeat(3, 1),
                           encoder_hidden_states=states.repeat_interleave(n, 0),
                           encoder_attention_mask=q.attention_mask.repeat_interleave(n, 0),
                           labels=ans.input_ids.masked_fill(ans.input_ids == 0, -100).repeat(3, 1),
                           return_dict=True, reduction="none")
    ref["vqa_answer_scores"] = -dec.loss.view(3, n)
    del vqa

    # SNLI-VE: logits, then the training loss (which moves the momentum encoders)
    cls = build("classification", vocab_dir)
    save(cls, "classification", out)
    ve_samples = {"image": images[:3], "text_input": HYPOTHESES, "label": torch.tensor(LABELS), **RAMP}
    ref["ve_logits"] = cls.predict(dict(ve_samples))["predictions"]
    ref["ve_loss"] = cls(dict(ve_samples)).loss
    del cls

    # NLVR2
    nlvr = build("nlvr", vocab_dir)
    save(nlvr, "nlvr", out)
    nlvr_samples = {"image0": images[:3], "image1": images1, "text_input": NLVR_TEXTS,
                    "label": torch.tensor(NLVR_LABELS), **RAMP}
    ref["nlvr_logits"] = nlvr.predict(dict(nlvr_samples))["predictions"]
    return ref


#: LAVIS' published sizes (its YAMLs): the pre-training model at 224 px, the task models at 384 px
FULL = {"image_size": 384, "vit_depth": 12, "text_layers": 12, "fusion_layer": 6, "decoder_layers": 6,
        "queue_size": 65536}


def full_layouts(vocab_dir: str) -> dict[str, dict[str, list[int]]]:
    """Key -> shape of each LAVIS model at its published size (LAVIS' ViT cannot be built on the meta
    device, so each is built, read and dropped in turn): the layout of the real checkpoints, which
    our published model types must load strictly."""
    layouts = {}
    for name in ("pretrain", "retrieval", "vqa", "classification", "nlvr"):
        shapes = {**FULL, "image_size": 224} if name == "pretrain" else FULL
        with lavis_tokenizer(vocab_dir):
            model = makers(shapes)[name]()
        layouts[name] = {k: list(v.shape) for k, v in model.state_dict().items()}
        del model
        print(f"LAVIS {name} at its published size: {len(layouts[name])} keys", flush=True)
    return layouts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="output/parity/albef", help="output folder")
    ap.add_argument("--layouts-only", action="store_true", help="write full_layouts.pt only")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    t0 = time.perf_counter()
    torch.save(full_layouts(bert_vocab_dir()), out / "full_layouts.pt")
    if args.layouts_only:
        return
    ref = reference(bert_vocab_dir(), out)
    torch.save(ref, out / "reference.pt")
    print(f"models, checkpoints and reference outputs in {time.perf_counter() - t0:.1f}s -> {out / 'reference.pt'}")
    print("rank-mode answers:", ref["vqa_rank_answers"])


if __name__ == "__main__":
    main()
