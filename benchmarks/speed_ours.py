"""Speed worker for this library: runs one benchmark of ``speed_harness.BENCHES`` and prints its
``RESULT`` line. Started by ``benchmarks/speed.py`` with ``PYTHONPATH`` at the repository root.

The model is built through ``BlipCaption.from_config``, so it gets this library's defaults
(SDPA attention); training uses the runner's optimizer (``build_optimizer``: fused AdamW), its
precision (``--precision bf16``: bf16 autocast, fp32 weights), its per-step gradient norm and its
malloc settings on a CPU (``run.reuse_cpu_memory``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_harness as H  # noqa: E402


def build(size: dict[str, int], vocab: str, image_size: int, attn: str = "sdpa") -> Any:
    from lavis.models.blip.blip_caption import BlipCaption

    cfg = {
        "arch": "blip_caption", "load_pretrained": False, "load_finetuned": False, "tokenizer": vocab,
        "max_txt_len": size["caption_tokens"], "attn_implementation": attn,
        "vision_config": {"image_size": image_size, "patch_size": H.PATCH, "hidden_size": H.WIDTH,
                          "intermediate_size": H.MLP, "num_hidden_layers": size["vision_layers"],
                          "num_attention_heads": H.HEADS, "layer_norm_eps": 1e-6},
        "text_config": {"vocab_size": H.VOCAB, "hidden_size": H.WIDTH, "intermediate_size": H.MLP,
                        "num_hidden_layers": size["text_layers"], "num_attention_heads": H.HEADS,
                        "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1},
    }
    torch.manual_seed(0)
    return BlipCaption.from_config(cfg)


def train_step_fn(model: Any, size: dict[str, int], precision: str) -> Any:
    from lavis.common.optim import build_optimizer
    from lavis.common.run_schema import RunConfig
    from lavis.runners.precision import resolve_precision
    from lavis.runners.stepping import total_norm

    model.train()
    opt = build_optimizer(model, RunConfig(task="captioning", init_lr=1e-5))
    prec = resolve_precision("bf16" if precision == "bf16" else "none", torch.device("cpu"))
    samples = {"image": H.images(size["batch"], size["image_size"]), "text_input": H.captions(size["batch"])}

    def step() -> float:
        with prec.autocast():
            loss = model(samples).loss
        loss.float().backward()
        total_norm([p.grad for p in model.parameters() if p.grad is not None])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    return step


def main() -> None:
    args = H.worker_args(__doc__.split("\n\n")[0])
    size = H.SIZES[args.size]
    if args.compile and not (args.bench == "train" or args.bench.startswith("generate")):
        sys.exit(f"--compile: measured for train and generate_* only, not {args.bench}")
    from lavis.runners.precision import resolve_precision

    autocast = resolve_precision("bf16" if args.precision == "bf16" else "none", torch.device("cpu")).autocast
    extra: dict[str, Any] = {}
    if args.bench == "train":
        from lavis.common.allocator import reuse_freed_memory

        reuse_freed_memory()  # what the runner does when it trains on a CPU (run.reuse_cpu_memory)
        model = build(size, args.vocab, size["image_size"])
        if args.compile:  # what run.compile does: the training view of the model through torch.compile
            model.compile()
        fn = train_step_fn(model, size, args.precision)
    elif args.bench == "flops":  # model FLOPs of one training step, all matrix products visible (eager)
        from torch.utils.flop_counter import FlopCounterMode

        step = train_step_fn(build(size, args.vocab, size["image_size"], attn="eager"), size, "fp32")
        with FlopCounterMode(display=False) as counter:
            step()
        H.emit([], flops=counter.get_total_flops())
        return
    elif args.bench.startswith("generate"):
        model = build(size, args.vocab, size["image_size"]).eval()
        if args.compile:  # the ViT and every decoding step of the text decoder
            model.blip.vision_model.compile()
            model.blip.text_decoder.compile()
        beams = 3 if args.bench == "generate_beam3" else 1
        image = H.images(size["gen_batch"], size["image_size"])
        n = size["caption_tokens"]

        def fn() -> Any:
            with torch.no_grad(), autocast():
                extra["captions"] = model.generate({"image": image}, num_beams=beams, max_length=n, min_length=n)
    elif args.bench == "image_features":
        model = build(size, args.vocab, size["feat_image_size"]).eval()
        image = H.images(size["feat_batch"], size["feat_image_size"])

        def fn() -> Any:
            with torch.no_grad(), autocast():
                return model.encode_image(image)
    elif args.bench == "text_features":  # BLIP's BERT-base text encoder (no cross-attention), as a feature extractor
        from transformers import BlipTextConfig
        from transformers.models.blip.modeling_blip_text import BlipTextModel

        from lavis.models.blip.tokenizer import load_blip_tokenizer
        from lavis.models.runtime import set_attn_implementation

        tok = load_blip_tokenizer(args.vocab)
        torch.manual_seed(0)
        encoder = BlipTextModel(BlipTextConfig(vocab_size=H.VOCAB, hidden_size=H.WIDTH, intermediate_size=H.MLP,
                                               num_hidden_layers=12, num_attention_heads=H.HEADS),
                                add_pooling_layer=False).eval()
        set_attn_implementation(encoder, "sdpa")
        text = tok(H.captions(size["text_batch"]), padding="max_length", truncation=True,
                   max_length=size["text_tokens"], return_tensors="pt")

        def fn() -> Any:
            with torch.no_grad(), autocast():
                return encoder(input_ids=text.input_ids, attention_mask=text.attention_mask).last_hidden_state
    elif args.bench.startswith("retrieval"):
        import retrieval_bench

        fn = retrieval_bench.ours(args.bench, size, args.vocab, autocast)
    elif args.bench in ("dpo", "grpo"):
        import post_training_bench

        fn = post_training_bench.step_fn(args.bench, args.precision, extra)
    elif args.bench == "data":
        from lavis.processors.blip_processors import BlipImageTrainProcessor

        torch.set_num_threads(1)  # one data-loader worker
        proc = BlipImageTrainProcessor(image_size=size["data_image_size"], randaugment=True)
        items = H.data_items(Path(args.images))
        # as our data sets read an image: the processor decodes the file (BlipImageTrainProcessor.read)
        H.emit(**H.time_items(lambda k: proc(items[k]), len(items), args.repeats), images=len(items))
        return
    H.emit(**H.timings(fn, args.repeats), **extra)


if __name__ == "__main__":
    main()
