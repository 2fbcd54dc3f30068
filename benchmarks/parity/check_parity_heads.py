"""Check that LAVIS BLIP image-text and VQA checkpoints, loaded through our converter, give LAVIS'
outputs (the files ``make_reference_heads.py`` wrote inside the reference venv):

    python benchmarks/parity/check_parity_heads.py --ref output/parity/blip_heads

Each arch's published type is built without downloads (weights off, the tokenizer read from the
same local bert-base-uncased vocabulary), the LAVIS ``{"model": state_dict}`` is loaded with
``model.load_checkpoint`` (strict) and, on the same inputs, compared with LAVIS:

* ``blip_image_text_matching``: ``itm_scores`` (ITM logits) and ``itc_similarity``;
* ``blip_retrieval``: the ITC similarity matrix from ``encode_for_retrieval``, and LAVIS' retrieval
  scores (ITC over all pairs, then ``rerank`` (the ITM "match" logit) + ITC for the top k of each row
  and column, -100 elsewhere) built from our ``encode_for_retrieval`` and ``rerank``;
* ``blip_feature_extractor``: every tensor of ``extract_features`` in the three modes;
* ``blip_vqa``: the summed label-smoothed answer losses of every (question, answer) pair, the
  rank-mode answers, greedy and 3-beam generated answers, and the weighted training loss;
* ``blip_nlvr``: the NLVR2 class logits (``predict_class``).

Prints a table and exits 1 on any mismatch beyond ``--atol``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_parity import vocab_dir

Row = tuple[str, str, bool]


def load(arch: str, model_type: str, ckpt: Path, **overrides: Any):
    from lavis.common.registry import registry

    cls = registry.get_model_class(arch)
    model = cls.from_pretrained(model_type, load_pretrained=False, load_finetuned=False, tokenizer=vocab_dir(), **overrides)
    model.load_checkpoint(ckpt)  # strict: every key of the LAVIS file used, none missing
    return model.eval()


def close(name: str, ours: torch.Tensor, ref: torch.Tensor, atol: float) -> Row:
    ref = torch.as_tensor(ref, dtype=ours.dtype)
    if ours.shape != ref.shape:
        return (f"{name} {tuple(ref.shape)}", f"shape {tuple(ours.shape)} vs {tuple(ref.shape)}", False)
    diff = (ours - ref).abs().max().item()
    return (f"{name} {tuple(ref.shape)}", f"max|d|={diff:.1e}", diff <= atol)


def equal(name: str, ours: Any, ref: Any) -> Row:
    return (name, "equal" if ours == ref else f"{ours} vs {ref}", ours == ref)


def retrieval_scores(model, image: torch.Tensor, texts: list[str], k: int) -> tuple[torch.Tensor, ...]:
    """LAVIS' retrieval scores from our task methods: ITC of all pairs; the top ``k`` of each image
    (row) and of each text re-scored as ``rerank + ITC``, all other entries -100."""
    img = model.encode_for_retrieval({"image": image}, "image")
    txt = model.encode_for_retrieval({"text_input": texts}, "text")
    sims = img.embeds @ txt.embeds.t()
    i2t = torch.full_like(sims, -100.0)
    for i in range(sims.shape[0]):
        top_sim, top = sims[i].topk(k)
        states = {key: v[[i] * k] for key, v in img.states.items()}
        i2t[i, top] = model.rerank(states, {key: v[top] for key, v in txt.states.items()}) + top_sim
    t2i = torch.full_like(sims.t(), -100.0)
    for t in range(sims.shape[1]):
        top_sim, top = sims[:, t].topk(k)
        states = {key: v[[t] * k] for key, v in txt.states.items()}
        t2i[t, top] = model.rerank({key: v[top] for key, v in img.states.items()}, states) + top_sim
    return sims, i2t, t2i


def check_itm(ref: dict, root: Path, atol: float) -> list[Row]:
    model = load("blip_image_text_matching", "base", root / "blip_image_text_matching.pth")
    g = torch.Generator().manual_seed(ref["image_seed"])
    samples = {"image": torch.randn(2, 3, 384, 384, generator=g), "text_input": ref["texts"][:2]}
    r = ref["itm"]
    return [close("ITM logits", model.itm_scores(samples), r["itm"], atol),
            close("ITC similarity", model.itc_similarity(samples), r["itc"], atol)]


def check_retrieval(ref: dict, root: Path, atol: float) -> list[Row]:
    model = load("blip_retrieval", "coco", root / "blip_retrieval.pth", queue_size=64)
    r = ref["retrieval"]
    with torch.no_grad():
        sims, i2t, t2i = retrieval_scores(model, r["image"], ref["texts"], ref["k_test"])
    k = ref["k_test"]
    return [close("retrieval ITC similarity", sims, r["itc"], atol),
            close(f"retrieval scores i2t (top {k} re-ranked)", i2t, r["i2t"], atol),
            close(f"retrieval scores t2i (top {k} re-ranked)", t2i, r["t2i"], atol)]


def check_features(ref: dict, root: Path, atol: float) -> list[Row]:
    model = load("blip_feature_extractor", "base", root / "blip_feature_extractor.pth")
    g = torch.Generator().manual_seed(ref["image_seed"])
    samples = {"image": torch.randn(2, 3, 224, 224, generator=g), "text_input": ref["texts"][2:4]}
    rows = []
    for mode, tensors in ref["features"].items():
        feats = model.extract_features(samples, mode=mode)
        for name, value in tensors.items():
            rows.append(close(f"features {mode}: {name}", getattr(feats, name), value, atol))
    return rows


def check_vqa(ref: dict, root: Path, atol: float) -> list[Row]:
    model = load("blip_vqa", "vqav2", root / "blip_vqa.pth")
    r, answers = ref["vqa"], ref["answer_list"]
    samples = {"image": r["image"], "text_input": ref["questions"]}
    with torch.no_grad():
        states, atts = model.encode_questions(samples)
        ids, masks = model.tokenize_answers(answers)
        n = len(answers)
        losses = torch.stack([
            model.answer_losses(ids, masks, states[q : q + 1].expand(n, -1, -1), atts[q : q + 1].expand(n, -1))
            for q in range(states.shape[0])
        ])
        train = dict(samples, answer=["red", "blue", "two"], weight=torch.tensor([0.75, 0.25, 1.0]),
                     n_answers=torch.tensor([2, 1]))
        rows = [close("VQA answer losses (rank scores)", losses, r["answer_losses"], atol),
                close("VQA weighted training loss", model(train).loss, r["loss"], atol)]
    for key in sorted(k for k in r if k.startswith("rank_")):
        k = int(key.split("_")[1])
        ours = model.predict_answers(samples, answer_list=answers, inference_method="rank", num_ans_candidates=k)
        rows.append(equal(f"VQA rank answers, {k} candidates", ours, r[key]))
    for key in sorted(k for k in r if k.startswith("generate_")):
        beams = int(key.split("_")[1])
        ours = model.predict_answers(samples, inference_method="generate", num_beams=beams, max_len=10, min_len=1)
        rows.append(equal(f"VQA generated answers, {beams} beam(s)", ours, r[key]))
    return rows


def check_nlvr(ref: dict, root: Path, atol: float) -> list[Row]:
    model = load("blip_nlvr", "nlvr", root / "blip_nlvr.pth")
    image = ref["nlvr"]["image"]
    samples = {"image0": image[:2], "image1": image[2:], "text_input": ref["texts"][:2]}
    return [close("NLVR2 logits", model.predict_class(samples), ref["nlvr"]["logits"], atol)]


CHECKS = {"itm": check_itm, "retrieval": check_retrieval, "features": check_features, "vqa": check_vqa, "nlvr": check_nlvr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", type=Path, required=True)
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--only", nargs="*", default=list(CHECKS), choices=list(CHECKS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    ref = torch.load(args.ref / "reference_heads.pt", weights_only=False)
    rows: list[Row] = []
    for name, check in CHECKS.items():
        if name in ref and name in args.only:
            rows += check(ref, args.ref, args.atol)
    width = max(len(r[0]) for r in rows)
    print(f"{'check':{width}}  {'ours vs LAVIS 1.0.2':24}  result")
    for name, result, ok in rows:
        print(f"{name:{width}}  {result:24}  {'ok' if ok else 'MISMATCH'}")
    bad = [r for r in rows if not r[2]]
    print("PARITY OK" if not bad else f"PARITY FAILED: {len(bad)} mismatches")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
