"""Check that LAVIS ALBEF checkpoints, loaded through our converter, give LAVIS' outputs.

Runs in OUR environment, on the files ``make_reference_albef.py`` wrote (inside the reference venv):

    python benchmarks/parity/check_parity_albef.py --ref output/parity/albef

For each LAVIS checkpoint it builds our arch at the reference's shapes (the published type's YAML
with fewer layers, ``load_pretrained``/``load_finetuned`` off, the tokenizer read from the same local
bert-base-uncased vocabulary), loads LAVIS' ``{"model": state_dict}`` with ``model.load_checkpoint``
(strict; renaming in ``lavis/models/albef/convert.py``) and compares on the same inputs:

* ``albef_feature_extractor`` (from the pre-training checkpoint, as LAVIS' ``base`` type): image,
  text and multimodal features and their projections, ITC similarities, ITM logits;
* ``albef_pretrain`` (the whole pre-training checkpoint): ITC similarities, ITM logits;
* ``albef_retrieval``: the i2t and t2i score matrices of LAVIS' ``compute_sim_matrix`` (ITC, top-k
  re-ranked by ITM), rebuilt from our ``encode_for_retrieval`` and ``rerank``;
* ``albef_vqa``: the training loss, every candidate answer's score, rank-mode answers;
* ``albef_classification``: SNLI-VE logits and the training loss;
* ``albef_nlvr``: NLVR2 logits;
* the key layout of each published type at its real size (built on the meta device) against LAVIS'
  model of that size (``full_layouts.pt``): after conversion, the same keys with the same shapes.

Prints a table and exits 1 on any mismatch beyond ``--atol``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

Row = tuple[str, str, str, bool]


def build(arch: str, model_type: str, ckpt: Path, vocab: str, shapes: dict[str, int], **extra: Any) -> Any:
    """Our ``arch``/``model_type`` at the reference's shapes, with LAVIS' checkpoint loaded strictly."""
    from lavis.common.registry import registry

    overrides: dict[str, Any] = {
        "load_pretrained": False, "load_finetuned": False, "tokenizer": vocab,
        "vision_config": {"image_size": shapes["image_size"], "layers": shapes["vit_depth"]},
        "text_config": {"num_hidden_layers": shapes["text_layers"]}, "fusion_layer": shapes["fusion_layer"],
        **extra,
    }
    model = registry.get_model_class(arch).from_pretrained(model_type, **overrides)
    model.load_checkpoint(ckpt)  # strict
    return model.eval()


def close(what: str, ours: torch.Tensor, ref: torch.Tensor, atol: float) -> Row:
    ours, ref = ours.detach().float(), ref.detach().float()
    if ours.shape != ref.shape:
        return (what, f"shape {tuple(ours.shape)} vs {tuple(ref.shape)}", f"<= {atol}", False)
    d = (ours - ref).abs().max().item() if ours.numel() else 0.0
    if ours.ndim == 0:
        return (what, f"{ours.item():.7f} vs {ref.item():.7f} (|d|={d:.3e})", f"<= {atol}", d <= atol)
    return (f"{what} {tuple(ours.shape)}", f"max|d|={d:.3e}", f"<= {atol}", d <= atol)


def equal(what: str, ours: Any, ref: Any) -> Row:
    return (what, f"{ours} vs {ref}" if ours != ref else f"equal ({ours})", "equal", ours == ref)


#: our published type that loads each LAVIS checkpoint (the feature extractor's source is ALBEF.pth)
PUBLISHED = (
    ("albef_feature_extractor", "base", "pretrain"), ("albef_pretrain", "base", "pretrain"),
    ("albef_retrieval", "coco", "retrieval"), ("albef_vqa", "vqav2", "vqa"),
    ("albef_classification", "ve", "classification"), ("albef_nlvr", "nlvr", "nlvr"),
)


def layout_rows(layouts: dict[str, dict[str, list[int]]], vocab: str) -> list[Row]:
    """Each published type, built at its published size on the meta device, against the converted key
    layout of LAVIS' model of that size: the same keys and shapes, i.e. a strict load of the real file."""
    from lavis.common.registry import registry

    rows = []
    for arch, model_type, source in PUBLISHED:
        cls = registry.get_model_class(arch)
        with torch.device("meta"):
            model = cls.from_pretrained(model_type, load_pretrained=False, load_finetuned=False, tokenizer=vocab)
            fake = {k: torch.empty(shape) for k, shape in layouts[source].items()}
            converted = model.convert_state_dict(fake)
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        theirs = {k: list(v.shape) for k, v in converted.items()}
        missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        shapes = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
        ok = not (missing or unexpected or shapes)
        how = f"{len(ours)} keys, shapes equal" if ok else f"missing {missing[:3]} unexpected {unexpected[:3]} shape {shapes[:3]}"
        rows.append((f"layout {arch}/{model_type} <- LAVIS {source} (full size)", how, "equal", ok))
    return rows


@torch.no_grad()
def retrieval_matrices(model: Any, images: torch.Tensor, texts: list[str], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LAVIS' ``compute_sim_matrix`` scheme on our task methods: ITC similarity of all pairs, then
    each image's (text's) top ``k`` scored ``ITM + ITC``, the rest -100."""
    img = model.encode_for_retrieval({"image": images}, "image")
    txt = model.encode_for_retrieval({"text_input": texts}, "text")
    sims = img.embeds @ txt.embeds.t()
    i2t = torch.full_like(sims, -100.0)
    for i in range(sims.shape[0]):
        top, idx = sims[i].topk(k)
        rows = {n: v[[i] * k] for n, v in img.states.items()}
        i2t[i, idx] = model.rerank(rows, {n: v[idx] for n, v in txt.states.items()}) + top
    t2i = torch.full_like(sims.t(), -100.0)
    for t in range(sims.shape[1]):
        top, idx = sims[:, t].topk(k)
        rows = {n: v[[t] * k] for n, v in txt.states.items()}
        t2i[t, idx] = model.rerank({n: v[idx] for n, v in img.states.items()}, rows) + top
    return i2t, t2i


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="output/parity/albef", help="folder written by make_reference_albef.py")
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    ref_dir, atol = Path(args.ref), args.atol
    ref = torch.load(ref_dir / "reference.pt", weights_only=False)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from check_parity import vocab_dir

    vocab, shapes = vocab_dir(), ref["shapes"]
    images, captions = ref["images"], ref["captions"]
    rows: list[Row] = layout_rows(torch.load(ref_dir / "full_layouts.pt"), vocab)
    t0 = time.perf_counter()

    with torch.no_grad():
        fe = build("albef_feature_extractor", "base", ref_dir / "lavis_albef_pretrain.pth", vocab, shapes)
        samples = {"image": images, "text_input": captions}
        feats = {m: fe.extract_features(samples, mode=m) for m in ("image", "text", "multimodal")}
        for key, want in ref["features"].items():
            mode = "multimodal" if key == "multimodal_embeds" else key.split("_")[0]
            rows.append(close(f"features {key}", getattr(feats[mode], key), want, atol))
        image_states = feats["image"].image_embeds
        ids, mask = fe.tokenize(captions)
        text_states = fe.text_encoder.forward_text(ids, mask)
        rows.append(close("ITC similarity", fe.image_feat(image_states) @ fe.text_feat(text_states).t(),
                          ref["itc_sim"], atol))
        rows.append(close("ITM logits", fe.itm_logits(image_states, text_states, mask), ref["itm_logits"], atol))
        del fe

        # the same checkpoint, whole (LM head, momentum copies, queues), into albef_pretrain
        pt = build("albef_pretrain", "base", ref_dir / "lavis_albef_pretrain.pth", vocab, shapes,
                   queue_size=shapes["queue_size"])
        text_states = pt.text_encoder.forward_text(ids, mask)
        image_states = pt.encode_image(images)
        rows.append(close("pretrain ITC similarity", pt.image_feat(image_states) @ pt.text_feat(text_states).t(),
                          ref["itc_sim"], atol))
        rows.append(close("pretrain ITM logits", pt.itm_logits(image_states, text_states, mask), ref["itm_logits"], atol))
        del pt

        ret = build("albef_retrieval", "coco", ref_dir / "lavis_albef_retrieval.pth", vocab, shapes,
                    queue_size=shapes["queue_size"])
        i2t, t2i = retrieval_matrices(ret, images, captions, ref["k_test"])
        rows.append(close(f"retrieval i2t (k_test={ref['k_test']})", i2t, ref["retrieval_i2t"], atol))
        rows.append(close(f"retrieval t2i (k_test={ref['k_test']})", t2i, ref["retrieval_t2i"], atol))
        del ret

        vqa = build("albef_vqa", "vqav2", ref_dir / "lavis_albef_vqa.pth", vocab, shapes,
                    decoder_layers=shapes["decoder_layers"])
        ta = ref["train_answers"]
        vqa_samples = {"image": images[:3], "text_input": ref["questions"], "answer": ta["answer"],
                       "weight": torch.tensor(ta["weight"]), "n_answers": torch.tensor(ta["n_answers"]), **ref["ramp"]}
        rows.append(close("VQA loss", vqa(vqa_samples).loss, ref["vqa_loss"], atol))
        states, q_mask = vqa.encode_questions({"image": images[:3], "text_input": ref["questions"]})
        answers = ref["answer_list"]
        ans = vqa.tokenizer(answers, padding="longest", return_tensors="pt")
        n = len(answers)
        logits = vqa.text_decoder(ans.input_ids.repeat(3, 1), ans.attention_mask.repeat(3, 1),
                                  states.repeat_interleave(n, 0), q_mask.repeat_interleave(n, 0))
        scores = -vqa.answer_losses(logits, ans.input_ids.repeat(3, 1)).view(3, n)
        rows.append(close("VQA answer scores", scores, ref["vqa_answer_scores"], atol))
        for k, want in ref["vqa_rank_answers"].items():
            got = vqa.predict_answers({"image": images[:3], "text_input": ref["questions"]}, answer_list=answers,
                                      inference_method="rank", num_ans_candidates=k)
            rows.append(equal(f"VQA rank answers (k={k})", got, want))
        del vqa

        ve = build("albef_classification", "ve", ref_dir / "lavis_albef_classification.pth", vocab, shapes)
        ve_samples = {"image": images[:3], "text_input": ref["hypotheses"], "label": torch.tensor(ref["labels"]),
                      **ref["ramp"]}
        rows.append(close("SNLI-VE logits", ve.predict_class(ve_samples), ref["ve_logits"], atol))
        rows.append(close("SNLI-VE loss", ve(ve_samples).loss, ref["ve_loss"], atol))
        del ve

        nlvr = build("albef_nlvr", "nlvr", ref_dir / "lavis_albef_nlvr.pth", vocab, shapes,
                     text_config={"num_hidden_layers": 18}, fusion_layer=6)
        nlvr_samples = {"image0": images[:3], "image1": ref["images1"], "text_input": ref["nlvr_texts"],
                        "label": torch.tensor(ref["nlvr_labels"])}
        rows.append(close("NLVR2 logits", nlvr.predict_class(nlvr_samples), ref["nlvr_logits"], atol))

    print(f"ran in {time.perf_counter() - t0:.1f}s")
    width = max(len(r[0]) for r in rows)
    print(f"{'check':<{width}}  {'ours vs LAVIS 1.0.2':<40} {'tolerance':<10} result")
    for what, how, tol, ok in rows:
        print(f"{what:<{width}}  {how:<40} {tol:<10} {'ok' if ok else 'FAIL'}")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
