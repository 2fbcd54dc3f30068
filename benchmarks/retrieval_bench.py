"""The retrieval benchmarks (``retrieval_tiny``, ``retrieval_base``): a whole image-text retrieval
evaluation of one split, ITC top-k then ITM re-rank of the ``k`` candidates of each image and of
each text, with the same shapes, inputs and ``k`` in both libraries.

- ours: ``RetrievalTask.evaluation`` with our ``blip_retrieval`` (fp32, or under bf16 autocast as
  the runner evaluates with ``run.amp: bf16``);
- LAVIS 1.0.2: its ``BlipRetrieval`` and its ``compute_sim_matrix``, as its retrieval task runs them.

Imported by both workers, so at module level it needs torch and ``speed_harness`` only.
"""

from __future__ import annotations

import os
import random
import tempfile
from typing import Any, Callable

import torch

import speed_harness as H

#: per benchmark: split size (5 captions per image), candidates ``k``, images per batch, model shapes
SETTINGS: dict[str, dict[str, int]] = {
    # tiny widths (our ``blip_retrieval`` tiny type: 64 px, 8 px patches, 2 + 2 layers of 64) with the BERT vocabulary
    "retrieval_tiny": {"images": 250, "k": 16, "batch": 64, "image_size": 64, "patch": 8, "width": 64,
                       "heads": 4, "mlp": 256, "vision_layers": 2, "text_layers": 2, "embed_dim": 32},
    # BLIP-base widths with the depths and resolution of the chosen size (``speed_harness.SIZES``)
    "retrieval_base": {"images": 16, "k": 10, "batch": 16, "patch": H.PATCH, "width": H.WIDTH, "heads": H.HEADS,
                       "mlp": H.MLP, "embed_dim": 256},
}
CAPTIONS_PER_IMAGE, TEXT_TOKENS = 5, 35  # LAVIS' retrieval evaluation pads every text to 35 tokens


def setting(bench: str, size: dict[str, int]) -> dict[str, int]:
    """The shapes of ``bench`` at ``size`` (the base benchmark takes its depths and resolution from it)."""
    s = dict(SETTINGS[bench])
    for key in ("image_size", "vision_layers", "text_layers"):
        s.setdefault(key, size[key])
    return s


def label(bench: str, size: dict[str, int]) -> str:
    s = setting(bench, size)
    what = "tiny" if bench == "retrieval_tiny" else f"BLIP widths {s['vision_layers']}+{s['text_layers']} layers"
    return f"retrieval {what} {s['image_size']} px, {s['images']} x {s['images'] * CAPTIONS_PER_IMAGE}, ITM top-{s['k']}"


class Split(torch.utils.data.Dataset):
    """An evaluation split in the layout both libraries read: items ``{"image", "index"}``, and
    ``text``, ``image``, ``img2txt``, ``txt2img`` (image i has captions 5i .. 5i+4)."""

    def __init__(self, n_images: int, image_size: int):
        self.images = H.images(n_images, image_size)
        rng = random.Random(0)
        words = H.TEXT_WORDS
        self.text = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(n_images * CAPTIONS_PER_IMAGE)]
        self.image = list(range(n_images))
        self.img2txt = {i: list(range(i * CAPTIONS_PER_IMAGE, (i + 1) * CAPTIONS_PER_IMAGE)) for i in range(n_images)}
        self.txt2img = {t: t // CAPTIONS_PER_IMAGE for t in range(len(self.text))}

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "index": i}


def loader(s: dict[str, int]) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(Split(s["images"], s["image_size"]), batch_size=s["batch"])


def ours(bench: str, size: dict[str, int], vocab: str, autocast: Callable[[], Any]) -> Callable[[], Any]:
    """One call: our retrieval task's evaluation of the split."""
    from lavis.common.registry import registry
    from lavis.tasks.retrieval import RetrievalRun, RetrievalTask

    s = setting(bench, size)
    cfg = {
        "arch": "blip_retrieval", "load_pretrained": False, "load_finetuned": False, "tokenizer": vocab,
        "embed_dim": s["embed_dim"], "max_txt_len": TEXT_TOKENS, "queue_size": 8,
        "vision_config": {"image_size": s["image_size"], "patch_size": s["patch"], "hidden_size": s["width"],
                          "intermediate_size": s["mlp"], "num_hidden_layers": s["vision_layers"],
                          "num_attention_heads": s["heads"], "layer_norm_eps": 1e-6},
        "text_config": {"vocab_size": H.VOCAB, "hidden_size": s["width"], "intermediate_size": s["mlp"],
                        "num_hidden_layers": s["text_layers"], "num_attention_heads": s["heads"],
                        "layer_norm_eps": 1e-12},
    }
    torch.manual_seed(0)
    model = registry.get_model_class("blip_retrieval").from_config(cfg).eval()
    out = tempfile.mkdtemp(prefix="lavis_speed_retrieval_")
    task = RetrievalTask(RetrievalRun(task="retrieval", k_test=s["k"], rerank_batch_size=256,
                                      batch_size_eval=s["batch"], output_dir=out))
    data = loader(s)

    def fn() -> Any:
        with autocast():
            rows = task.evaluation(model, data, progress=False)
        return task.after_evaluation(rows, "test", 0, data.dataset)

    return fn


def lavis(bench: str, size: dict[str, int], vocab: str) -> Callable[[], Any]:
    """One call: LAVIS 1.0.2's retrieval task evaluation (its ``compute_sim_matrix``, then its recall)."""
    from lavis.common.registry import registry
    from lavis.common.utils import get_abs_path
    from lavis.models.blip_models.blip_retrieval import BlipRetrieval
    from lavis.models.med import XBertEncoder
    from lavis.models.vit import VisionTransformerEncoder
    from lavis.tasks.retrieval import RetrievalTask
    from transformers import BertConfig

    s = setting(bench, size)
    med = BertConfig.from_json_file(get_abs_path("configs/models/med_config.json"))
    med.update({"hidden_size": s["width"], "intermediate_size": s["mlp"], "num_hidden_layers": s["text_layers"],
                "num_attention_heads": s["heads"], "encoder_width": s["width"], "vocab_size": H.VOCAB})
    torch.manual_seed(0)
    vit = VisionTransformerEncoder(img_size=s["image_size"], patch_size=s["patch"], embed_dim=s["width"],
                                   depth=s["vision_layers"], num_heads=s["heads"], mlp_ratio=s["mlp"] / s["width"])
    vit.vision_width = s["width"]  # as its from_config sets it
    text = XBertEncoder(config=med, add_pooling_layer=False)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:  # its tokenizer loads "bert-base-uncased" from the working directory
        os.symlink(vocab, os.path.join(tmp, "bert-base-uncased"))
        os.chdir(tmp)
        try:
            model = BlipRetrieval(vit, text, queue_size=8, embed_dim=s["embed_dim"], max_txt_len=TEXT_TOKENS).eval()
        finally:
            os.chdir(cwd)
    data = loader(s)

    class TaskCfg:
        k_test = s["k"]

    task = RetrievalTask(TaskCfg)
    if registry.get_path("output_dir") is None:  # where it appends its metrics
        registry.register_path("output_dir", tempfile.mkdtemp(prefix="lavis_speed_retrieval_"))

    def fn() -> Any:
        with torch.no_grad():
            return task.evaluation(model, data)

    return fn
