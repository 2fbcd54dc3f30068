"""Check our ``clip`` against LAVIS's CLIP (a) and against open_clip itself (b), on the same weights.

Runs in OUR environment, on the files ``clip_make_reference.py`` wrote (inside the reference venv):

    python benchmarks/parity/clip_check_parity.py --ref output/parity/clip_ViT-B-16

(a) Our ``clip`` / ``<model>`` built without downloads loads LAVIS's state dict with
``model.load_checkpoint`` (strict, through ``lavis/models/clip/convert.py``) and must give, on the
reference's inputs: the same token ids, image and text embeddings (raw and normalised), the same
zero-shot classifier over OpenAI's 80 templates (ours come from open_clip's list) and the same
zero-shot logits (``predict_class``), contrastive loss and ``clip_image_eval`` pixels, each within
``--atol``; and the same prompts and ImageNet class names (strings equal).

(b) open_clip's own model (``open_clip.create_model(<model>, pretrained=<the same file>,
force_quick_gelu=True)``), tokenizer, ``build_zero_shot_classifier``, ``ClipLoss`` and eval
preprocessing, on the same inputs, against ours.

Prints a table and exits 1 on any mismatch beyond tolerance.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch


class Table:
    def __init__(self, atol: float):
        self.atol, self.rows, self.ok = atol, [], True

    def close(self, name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
        ours, theirs = torch.as_tensor(ours).float(), torch.as_tensor(theirs).float()
        if ours.shape != theirs.shape:
            self.add(name, f"shape {tuple(ours.shape)} vs {tuple(theirs.shape)}", False)
            return
        d = (ours - theirs).abs().max().item() if ours.numel() else 0.0
        self.add(f"{name} {tuple(ours.shape)}", f"max|d|={d:.3e}", d <= self.atol, f"<= {self.atol:g}")

    def equal(self, name: str, ours: Any, theirs: Any) -> None:
        same = torch.equal(ours, theirs) if isinstance(ours, torch.Tensor) else ours == theirs
        self.add(name, "equal" if same else "DIFFER", bool(same), "equal")

    def add(self, name: str, value: str, ok: bool, tol: str = "") -> None:
        self.rows.append((name, value, tol, "ok" if ok else "FAIL"))
        self.ok &= ok

    def print(self, title: str) -> None:
        w = max(len(r[0]) for r in self.rows)
        print(f"\n{title}\n{'check':<{w}}  {'value':<18}  {'tolerance':<10}  result")
        for name, value, tol, res in self.rows:
            print(f"{name:<{w}}  {value:<18}  {tol:<10}  {res}")


def ours_outputs(model: Any, ref: dict, proc: Any, pil: Any) -> dict[str, torch.Tensor]:
    samples = {"image": ref["image"], "text_input": ref["texts"]}
    img, txt = model.extract_features(samples, "image"), model.extract_features(samples, "text")
    # in eval mode, as the reference: a train-mode forward would use (and update) RN50's BatchNorm batch statistics
    loss = model({"image": ref["image"], "text_input": ref["texts"][:2]}).loss.detach()
    return {
        "token_ids": model.tokenize(ref["texts"]),
        "image_embeds": img.image_embeds, "image_embeds_proj": img.image_embeds_proj,
        "text_embeds": txt.text_embeds, "text_embeds_proj": txt.text_embeds_proj,
        "classifier": model.zero_shot_classifier(ref["class_names"]),
        "zero_shot_logits": model.predict_class({"image": ref["image"]}, ref["class_names"]),
        "loss": loss,
        "eval_pixels": proc(pil),
    }


def open_clip_outputs(name: str, ckpt: Path, ref: dict, pil: Any) -> dict[str, torch.Tensor]:
    import open_clip
    import torch.nn.functional as F
    from open_clip.loss import ClipLoss
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=str(ckpt), force_quick_gelu=True, weights_only=True
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    with torch.no_grad():
        image = model.encode_image(ref["image"])
        text = model.encode_text(tokenizer(ref["texts"]))
        classifier = open_clip.build_zero_shot_classifier(
            model, tokenizer, ref["class_names"], OPENAI_IMAGENET_TEMPLATES,
            num_classes_per_batch=None, device="cpu", use_tqdm=False,
        )
        logits = model.logit_scale.exp() * F.normalize(image, dim=-1) @ classifier
        loss = ClipLoss()(F.normalize(image[:2], dim=-1), F.normalize(text[:2], dim=-1), model.logit_scale.exp())
    return {
        "token_ids": tokenizer(ref["texts"]),
        "image_embeds": image, "image_embeds_proj": F.normalize(image, dim=-1),
        "text_embeds": text, "text_embeds_proj": F.normalize(text, dim=-1),
        "classifier": classifier, "zero_shot_logits": logits, "loss": loss, "eval_pixels": preprocess(pil),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="output/parity/clip_ViT-B-16", help="folder written by clip_make_reference.py")
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_num_threads(2)
    from PIL import Image

    from lavis.models import load_model
    from lavis.models.clip.zero_shot import get_class_names, get_templates
    from lavis.processors import build_processor

    ref_dir = Path(args.ref)
    ref = torch.load(ref_dir / "reference.pt", weights_only=True)
    name = ref["model"]
    ckpt = ref_dir / f"lavis_clip_{name}.pth"
    pil = Image.fromarray(ref["pil_rgb"].numpy(), "RGB")

    t0 = time.perf_counter()
    model = load_model("clip", name, is_eval=True, checkpoint=ckpt)  # strict, through the converter
    proc = build_processor({"name": "clip_image_eval", "image_size": model.image_size})
    with torch.no_grad():
        ours = ours_outputs(model, ref, proc, pil)
    print(f"ours: built {name}, loaded {ckpt.name} and ran in {time.perf_counter() - t0:.1f}s")

    a = Table(args.atol)
    a.equal("ImageNet class names (1000)", get_class_names("imagenet"), ref["all_class_names"])
    a.equal("prompts of the 80 templates", [t(ref["class_names"][0]) for t in get_templates("openai_imagenet")],
            ref["prompts_of_first_class"])
    for key in ours:
        if key == "token_ids":
            a.equal("token ids", ours[key], ref[key])
        else:
            a.close(key, ours[key], ref[key])
    a.print(f"(a) ours vs LAVIS 1.0.2, CLIP {name} (random init, LAVIS layout, {len(ref['class_names'])} classes)")

    t0 = time.perf_counter()
    theirs = open_clip_outputs(name, ckpt, ref, pil)
    print(f"\nopen_clip: built {name} and ran in {time.perf_counter() - t0:.1f}s")
    b = Table(args.atol)
    for key in ours:
        if key == "token_ids":
            b.equal("token ids", ours[key], theirs[key])
        else:
            b.close(key, ours[key], theirs[key])
    b.print(f"(b) ours vs open_clip {__import__('open_clip').__version__}, same weights")

    ok = a.ok and b.ok
    print("\nPARITY OK" if ok else "\nPARITY FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
