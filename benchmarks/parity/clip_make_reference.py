"""Reference outputs of LAVIS's own CLIP (salesforce-lavis 1.0.2), for clip_check_parity.py.

Runs INSIDE the reference environment (see benchmarks/parity/README.md):

    .venv-lavis/bin/python benchmarks/parity/clip_make_reference.py --model ViT-B-16 --out output/parity/clip_ViT-B-16

It builds LAVIS's CLIP network for ``--model`` at full size with a seeded random initialization
and QuickGELU (as LAVIS builds it for OpenAI's weights, which cannot be downloaded here), sets the
temperature to OpenAI's ``logit_scale = ln 100`` (LAVIS's ``predict`` multiplies by a fixed 100),
and writes to ``--out``:

* ``lavis_clip_<model>.pth``: the plain state dict in LAVIS's layout (what its ``create_model`` loads);
* ``reference.pt``: the inputs (seeded random normalised images, texts, ImageNet class names, a
  PIL test image's pixels) and LAVIS's outputs: token ids, image and text embeddings (raw and
  normalised, ``extract_features``), the zero-shot classifier of the class names over LAVIS's 80
  templates (``zero_shot_classifier``) and its logits (``predict``), the contrastive loss
  (``model(samples)``), the 80 prompts of the first class, and the ``clip_image_eval`` pixels.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

SEED = 0
IMAGE_SEED = 1234
TEXTS = [
    "a photo of a dog playing in the snow",
    "A man riding a WAVE on top of a surfboard!",
    "two cats sleeping on a red sofa",
]
# ImageNet-1k label indices of the classes scored zero-shot (tench, goldfish, crane, maillot, ...)
CLASS_INDICES = [0, 1, 134, 517, 638, 639, 999]


def pil_test_image():
    """A deterministic non-square RGB image (300 x 200) with structure to resize and crop."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:200, 0:300]
    rgb = np.stack([(x * 255 // 299), (y * 255 // 199), ((x + y) % 64) * 4], axis=-1).astype("uint8")
    return Image.fromarray(rgb, "RGB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ViT-B-16", help="LAVIS/open_clip model name (ViT-B-16, RN50, ...)")
    ap.add_argument("--out", default=None, help="output folder (default output/parity/clip_<model>)")
    args = ap.parse_args()
    out = Path(args.out or f"output/parity/clip_{args.model}")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    import math

    import numpy as np
    import torch.distributed as dist

    from lavis.models.clip_models.model import create_model, openai_imagenet_template
    from lavis.models.clip_models.tokenizer import tokenize
    from lavis.processors.clip_processors import ClipImageEvalProcessor

    t0 = time.perf_counter()
    torch.manual_seed(SEED)
    model = create_model(args.model, pretrained="", force_quick_gelu=True).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    print(f"built LAVIS CLIP {args.model} in {time.perf_counter() - t0:.1f}s")
    sd = model.state_dict()
    ckpt = out / f"lavis_clip_{args.model}.pth"
    torch.save(sd, ckpt)
    print(f"saved {len(sd)} keys to {ckpt}")

    size = model.visual.image_size
    size = size if isinstance(size, int) else size[0]
    image = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(IMAGE_SEED))
    from lavis.datasets.builders.imagefolder_builder import imagenet_classnames

    class_names = [imagenet_classnames[i] for i in CLASS_INDICES]
    ref: dict = {"model": args.model, "image": image, "texts": TEXTS, "class_names": class_names,
                 "all_class_names": list(imagenet_classnames),
                 "prompts_of_first_class": [t(class_names[0]) for t in openai_imagenet_template]}
    with torch.no_grad():
        ref["token_ids"] = tokenize(TEXTS)
        both = model.extract_features({"image": image, "text_input": TEXTS})
        ref["image_embeds"], ref["image_embeds_proj"] = both.image_embeds, both.image_embeds_proj
        ref["text_embeds"], ref["text_embeds_proj"] = both.text_embeds, both.text_embeds_proj
        t0 = time.perf_counter()
        model.classifier = model.zero_shot_classifier(class_names, openai_imagenet_template)
        print(f"zero-shot classifier of {len(class_names)} classes x {len(openai_imagenet_template)} templates "
              f"in {time.perf_counter() - t0:.1f}s")
        ref["classifier"] = model.classifier
        ref["zero_shot_logits"] = model.predict({"image": image, "label": torch.zeros(2)})["predictions"]
        # LAVIS's ClipLoss asks torch.distributed for the world size: a one-process gloo group
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29561", rank=0, world_size=1)
        ref["loss"] = model({"image": image, "text_input": TEXTS[:2]}).loss
        dist.destroy_process_group()
        pil = pil_test_image()
        ref["pil_rgb"] = torch.from_numpy(np.asarray(pil).copy())
        ref["eval_pixels"] = ClipImageEvalProcessor(image_size=size)(pil)
    torch.save(ref, out / "reference.pt")
    print(f"loss {ref['loss'].item():.6f}; zero-shot logits {tuple(ref['zero_shot_logits'].shape)}; "
          f"wrote {out / 'reference.pt'}")


if __name__ == "__main__":
    main()
