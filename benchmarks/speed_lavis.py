"""Speed worker for LAVIS 1.0.2 (salesforce-lavis), run INSIDE its reference environment by
``benchmarks/speed.py``: the same benchmarks and shapes as ``speed_ours.py``, with LAVIS' own
classes (its ViT, its BERT decoder ``XBertLMHeadDecoder``, its ``BlipCaption``, its image processor)
and the optimizer its runner builds (``torch.optim.AdamW`` over two weight-decay groups).
LAVIS has no CPU autocast, so it runs in fp32.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_harness as H  # noqa: E402


def med_config(layers: int) -> Any:
    from lavis.common.utils import get_abs_path
    from transformers import BertConfig

    cfg = BertConfig.from_json_file(get_abs_path("configs/models/med_config.json"))
    cfg.num_hidden_layers = layers
    return cfg


def build(size: dict[str, int], vocab: str, image_size: int) -> Any:
    """LAVIS' BlipCaption with ``size``'s depths; its tokenizer finds ``bert-base-uncased`` as a
    folder in the working directory (a link to ``vocab``), so LAVIS' own tokenizer code runs."""
    from lavis.models.blip_models.blip_caption import BlipCaption
    from lavis.models.med import XBertLMHeadDecoder
    from lavis.models.vit import VisionTransformerEncoder

    torch.manual_seed(0)
    vit = VisionTransformerEncoder(img_size=image_size, patch_size=H.PATCH, embed_dim=H.WIDTH,
                                   depth=size["vision_layers"], num_heads=H.HEADS)
    decoder = XBertLMHeadDecoder(config=med_config(size["text_layers"]))
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(vocab, os.path.join(tmp, "bert-base-uncased"))
        os.chdir(tmp)
        try:
            return BlipCaption(vit, decoder, prompt=H.PROMPT, max_txt_len=size["caption_tokens"])
        finally:
            os.chdir(cwd)


def optimizer(model: Any, lr: float = 1e-5, weight_decay: float = 0.05) -> torch.optim.Optimizer:
    """As LAVIS' runner builds it: no decay for biases, norms and other 1-d parameters."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "bias" in name or "ln" in name or "bn" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))


def main() -> None:
    args = H.worker_args(__doc__.split("\n\n")[0])
    if args.precision != "fp32":
        sys.exit("LAVIS 1.0.2 runs fp32 on CPU (its autocast is fp16 on GPU only)")
    size = H.SIZES[args.size]
    extra: dict[str, Any] = {}
    if args.bench == "train":
        model = build(size, args.vocab, size["image_size"]).train()
        opt = optimizer(model)
        samples = {"image": H.images(size["batch"], size["image_size"]), "text_input": H.captions(size["batch"])}

        def fn() -> Any:
            loss = model(samples)["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss.item()
    elif args.bench.startswith("generate"):
        model = build(size, args.vocab, size["image_size"]).eval()
        beams = 3 if args.bench == "generate_beam3" else 1
        image = H.images(size["gen_batch"], size["image_size"])
        n = size["caption_tokens"]

        def fn() -> Any:
            with torch.no_grad():
                extra["captions"] = model.generate({"image": image}, num_beams=beams, max_length=n, min_length=n)
    elif args.bench == "image_features":
        model = build(size, args.vocab, size["feat_image_size"]).eval()
        image = H.images(size["feat_batch"], size["feat_image_size"])

        def fn() -> Any:
            with torch.no_grad():
                return model.forward_encoder({"image": image})
    elif args.bench == "text_features":  # BLIP's BERT-base text encoder, as blip_feature_extractor runs it
        from lavis.models.med import XBertEncoder
        from transformers import BertTokenizer

        torch.manual_seed(0)
        encoder = XBertEncoder(config=med_config(12), add_pooling_layer=False).eval()
        tok = BertTokenizer.from_pretrained(args.vocab)
        text = tok(H.captions(size["text_batch"]), padding="max_length", truncation=True,
                   max_length=size["text_tokens"], return_tensors="pt")

        def fn() -> Any:
            with torch.no_grad():
                return encoder.forward_text(text).last_hidden_state
    elif args.bench.startswith("retrieval"):
        import retrieval_bench

        fn = retrieval_bench.lavis(args.bench, size, args.vocab)
    elif args.bench == "data":
        from lavis.processors.blip_processors import BlipImageTrainProcessor
        from PIL import Image

        import cv2  # LAVIS' RandomAugment runs on OpenCV, which uses a thread per core by default

        torch.set_num_threads(1)  # one data-loader worker, one thread
        cv2.setNumThreads(1)
        proc = BlipImageTrainProcessor(image_size=size["data_image_size"])  # RandomAugment(2, 5) included
        items = H.data_items(Path(args.images))
        # as LAVIS' caption data set reads an image
        H.emit(**H.time_items(lambda k: proc(Image.open(items[k]).convert("RGB")), len(items), args.repeats),
               images=len(items))
        return
    else:
        sys.exit(f"{args.bench}: not a LAVIS benchmark")
    H.emit(**H.timings(fn, args.repeats), **extra)


if __name__ == "__main__":
    main()
