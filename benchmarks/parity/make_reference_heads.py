"""Reference outputs of LAVIS' BLIP image-text and VQA models (salesforce-lavis 1.0.2), for
check_parity_heads.py.

Runs INSIDE the reference environment (see benchmarks/parity/README.md):

    .venv-lavis/bin/python benchmarks/parity/make_reference_heads.py --out output/parity/blip_heads

For each arch it builds LAVIS' published model type with a seeded random initialization and no
downloads (full size: ViT-B/16, BERT-base), saves ``{"model": state_dict}`` in LAVIS' own layout and
records LAVIS' outputs on seeded inputs:

* ``blip_image_text_matching`` / ``base`` (384 px): ITM logits (``match_head="itm"``) and ITC
  similarities (``match_head="itc"``);
* ``blip_retrieval`` / ``coco`` (384 px, with its momentum encoders and queues): LAVIS'
  ``compute_sim_matrix`` (ITC over all pairs, ITM re-ranking of the top ``K_TEST``) on 4 images x 6
  texts, and the plain ITC similarity matrix;
* ``blip_feature_extractor`` / ``base`` (224 px): ``extract_features`` in the three modes. LAVIS'
  feature extractor has no ITM head, the published checkpoint (BLIP pre-training) has one: the
  saved file gets a seeded ``itm_head`` as that checkpoint has;
* ``blip_vqa`` / ``vqav2`` (480 px): the summed label-smoothed answer losses of every (question,
  answer) pair (what rank mode ranks by), rank-mode answers for two candidate counts, greedy and
  3-beam generated answers, and the training loss of weighted answers;
* ``blip_nlvr`` / ``nlvr`` (384 px): the class logits of two (image pair, sentence) examples.

Writes ``<arch>.pth`` and ``reference_heads.pt`` (inputs and outputs) to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_reference import bert_vocab_dir, build_lavis

SEED = 0
IMAGE_SEED = 1234
CAPTIONS = [
    "A man riding a WAVE on top of a surfboard!",
    "two dogs playing with a frisbee in the park",
    "a plate of food with broccoli and rice",
    "A red double-decker bus driving down a street.",
    "a cat sleeping on a laptop keyboard",
    "people standing around a kitchen counter",
]
QUESTIONS = ["What colour is the bus?", "How many dogs are there in the picture?"]
ANSWER_LIST = ["red", "blue", "two", "three", "a frisbee", "broccoli and rice", "yes", "no"]
K_TEST = 3


def build(arch: str, model_type: str, vocab_dir: str, **overrides):
    """LAVIS' ``arch``/``model_type`` with a seeded random init: no checkpoint, no download."""
    # blip_feature_extractor loads ``pretrained`` whenever it is set
    return build_lavis(arch, model_type, vocab_dir, pretrained=None, **overrides)


def images(n: int, size: int) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(IMAGE_SEED))


def itm_reference(vocab_dir: str, out: Path, texts: list[str]) -> dict:
    model = build("blip_image_text_matching", "base", vocab_dir)
    torch.save({"model": model.state_dict()}, out / "blip_image_text_matching.pth")
    samples = {"image": images(2, 384), "text_input": texts[:2]}
    with torch.no_grad():
        return {"itm": model(samples, match_head="itm"), "itc": model(samples, match_head="itc")}


class _Texts(torch.utils.data.Dataset):
    def __init__(self, image: torch.Tensor, text: list[str]):
        self.image, self.text = list(image), text

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.image[i]}


def retrieval_reference(vocab_dir: str, out: Path, texts: list[str]) -> dict:
    import torch.nn.functional as F
    from lavis.models.albef_models import compute_sim_matrix

    model = build("blip_retrieval", "coco", vocab_dir, queue_size=64)
    torch.save({"model": model.state_dict()}, out / "blip_retrieval.pth")
    image = images(4, 384)
    loader = torch.utils.data.DataLoader(_Texts(image, texts), batch_size=2)
    with torch.no_grad():
        i2t, t2i = compute_sim_matrix(model, loader, k_test=K_TEST)
        text = model.tokenizer(texts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
        text_embeds = F.normalize(model.text_proj(model.text_encoder.forward_text(text).last_hidden_state[:, 0]), dim=-1)
        image_embeds = F.normalize(model.vision_proj(model.visual_encoder.forward_features(image)[:, 0]), dim=-1)
    return {"image": image, "i2t": torch.as_tensor(i2t), "t2i": torch.as_tensor(t2i), "itc": image_embeds @ text_embeds.t()}


def features_reference(vocab_dir: str, out: Path, texts: list[str]) -> dict:
    model = build("blip_feature_extractor", "base", vocab_dir)
    sd = dict(model.state_dict())
    head = torch.nn.Linear(768, 2)  # the ITM head of the published (pre-training) checkpoint
    torch.nn.init.normal_(head.weight, std=0.02, generator=torch.Generator().manual_seed(SEED))
    sd.update({"itm_head.weight": head.weight.detach(), "itm_head.bias": torch.zeros(2)})
    torch.save({"model": sd}, out / "blip_feature_extractor.pth")
    samples = {"image": images(2, 224), "text_input": texts[2:4]}
    ref = {}
    with torch.no_grad():
        for mode in ("image", "text", "multimodal"):
            feats = model.extract_features(samples, mode=mode)
            ref[mode] = {k: v for k, v in feats.items() if v is not None}
    return ref


def vqa_reference(vocab_dir: str, out: Path, questions: list[str]) -> dict:
    model = build("blip_vqa", "vqav2", vocab_dir)
    torch.save({"model": model.state_dict()}, out / "blip_vqa.pth")
    image = images(2, 480)
    samples = {"image": image, "text_input": list(questions)}
    ref: dict = {"image": image}
    with torch.no_grad():
        enc, _ = model.forward_encoder(dict(samples))
        answers = model.tokenizer(ANSWER_LIST, padding="longest", return_tensors="pt")
        answers.input_ids[:, 0] = model.tokenizer.bos_token_id
        losses = []
        q_atts = model.tokenizer(questions, padding="longest", return_tensors="pt").attention_mask
        for q in range(len(questions)):
            n = len(ANSWER_LIST)
            out_q = model.text_decoder(
                answers.input_ids, attention_mask=answers.attention_mask,
                encoder_hidden_states=enc.last_hidden_state[q : q + 1].expand(n, -1, -1),
                encoder_attention_mask=q_atts[q : q + 1].expand(n, -1),
                labels=answers.input_ids.masked_fill(answers.input_ids == 0, -100), return_dict=True, reduction="none",
            )
            losses.append(out_q.loss)
        ref["answer_losses"] = torch.stack(losses)
        for k in (3, len(ANSWER_LIST)):
            ref[f"rank_{k}"] = model.predict_answers(
                dict(samples), answer_list=ANSWER_LIST, inference_method="rank", num_ans_candidates=k
            )
        for beams in (1, 3):
            ref[f"generate_{beams}"] = model.predict_answers(
                dict(samples), inference_method="generate", num_beams=beams, max_len=10, min_len=1
            )
        train = dict(samples, answer=["red", "blue", "two"], weight=torch.tensor([0.75, 0.25, 1.0]),
                     n_answers=torch.tensor([2, 1]))
        ref["loss"] = model(train).loss
    return ref


def nlvr_reference(vocab_dir: str, out: Path, texts: list[str]) -> dict:
    model = build("blip_nlvr", "nlvr", vocab_dir)
    torch.save({"model": model.state_dict()}, out / "blip_nlvr.pth")
    image = images(4, 384)
    samples = {"image0": image[:2], "image1": image[2:], "text_input": texts[:2], "label": torch.tensor([0, 1])}
    with torch.no_grad():
        return {"image": image, "logits": model(samples, is_train=False)["predictions"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="*", default=["itm", "retrieval", "features", "vqa", "nlvr"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    from lavis.common.registry import registry

    vocab_dir = bert_vocab_dir()
    caption = registry.get_processor_class("blip_caption").from_config({})
    question = registry.get_processor_class("blip_question").from_config({})
    texts = [caption(c) for c in CAPTIONS]
    questions = [question(q) for q in QUESTIONS]
    path = args.out / "reference_heads.pt"
    ref = torch.load(path, weights_only=False) if path.exists() else {}
    ref.update(seed=SEED, image_seed=IMAGE_SEED, texts=texts, questions=questions, answer_list=ANSWER_LIST, k_test=K_TEST)
    makers = {"itm": (itm_reference, texts), "retrieval": (retrieval_reference, texts),
              "features": (features_reference, texts), "vqa": (vqa_reference, questions),
              "nlvr": (nlvr_reference, texts)}
    for name in args.only:
        t0 = time.perf_counter()
        fn, inputs = makers[name]
        ref[name] = fn(vocab_dir, args.out, inputs)
        ref.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {ref['seconds'][name]} s", flush=True)
        torch.save(ref, path)
    for name in ("vqa",):
        if name in ref:
            print({k: v for k, v in ref[name].items() if k.startswith(("rank", "generate"))})


if __name__ == "__main__":
    main()
