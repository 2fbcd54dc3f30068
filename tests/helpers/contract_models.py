"""Small models that follow the task-method contract of ``lavis/models/base_model.py``, for testing
the tasks before (and independently of) the real families.

- :class:`TableRetrievalModel`: embeddings and ITM scores looked up from given tables, so a test
  can compute the expected ranking by hand;
- :class:`ToyRetrievalModel`, :class:`ToyVQAModel`, :class:`ToyClassifier`: tiny learnable
  models (ITC loss, answer scoring, a class head) registered as ``toy_retrieval``, ``toy_vqa`` and
  ``toy_classifier`` by :func:`register_toy_models` for the registry-wide task test.

Images are ``[B, 3, H, W]``; texts are hashed word by word into a small vocabulary.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lavis.models.base_model import BaseModel, ModelOutput, RetrievalFeatures

TOY_ARCHS = ("toy_retrieval", "toy_vqa", "toy_classifier")
_CONFIGS = Path(__file__).resolve().parent.parent / "assets" / "contract_models"


def word_ids(texts: Sequence[str], vocab: int, length: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``, both ``[B, length]``: each word hashed into ``1 .. vocab - 1``, 0 pads."""
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    for row, text in enumerate(texts):
        words = [1 + zlib.crc32(w.encode()) % (vocab - 1) for w in text.lower().split()][:length]
        ids[row, : len(words)] = torch.tensor(words, dtype=torch.long)
    return ids, (ids > 0).long()


class TableRetrievalModel(BaseModel):
    """Image ``i`` is an image tensor filled with ``i``; text ``t`` is the string ``"t<t>"``.
    Embeddings come from ``image_table`` / ``text_table`` (normalised here), ITM scores from
    ``itm[i, t]``; ``calls`` counts the pairs re-ranked."""

    TASK_METHODS = ("encode_for_retrieval", "rerank")

    def __init__(self, image_table: torch.Tensor, text_table: torch.Tensor, itm: torch.Tensor | None = None):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.image_table = F.normalize(image_table.float(), dim=-1)
        self.text_table = F.normalize(text_table.float(), dim=-1)
        self.itm = itm
        self.pairs_scored = 0
        if itm is None:
            self.rerank = None  # type: ignore[assignment]  # an ITC-only model

    def encode_for_retrieval(self, samples: dict[str, Any], modality: str) -> RetrievalFeatures:
        if modality == "image":
            idx = samples["image"][:, 0, 0, 0].round().long().cpu()
            return RetrievalFeatures(self.image_table[idx], {"image_index": idx, "pixels": samples["image"].cpu()})
        idx = torch.tensor([int(t[1:]) for t in samples["text_input"]])
        return RetrievalFeatures(self.text_table[idx], {"text_index": idx})

    def rerank(self, image_states: dict[str, torch.Tensor], text_states: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.itm is not None
        self.pairs_scored += len(image_states["image_index"])
        return self.itm[image_states["image_index"], text_states["text_index"]]


class ToyRetrievalModel(BaseModel):
    """ITC on pooled pixels and bag-of-words text, with an ITM head on the pair."""

    TASK_METHODS = ("encode_for_retrieval", "rerank")

    def __init__(self, embed_dim: int = 16, vocab_size: int = 64):
        super().__init__()
        self.vocab_size = vocab_size
        self.image_proj = nn.Linear(3 * 4 * 4, embed_dim)
        self.text_embed = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=0)
        self.itm_head = nn.Linear(2 * embed_dim, 1)
        self.temp = nn.Parameter(torch.tensor(0.1))

    def _image(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_proj(F.adaptive_avg_pool2d(image, 4).flatten(1))

    def _text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_embed(ids.to(self.device))

    def encode_for_retrieval(self, samples: dict[str, Any], modality: str) -> RetrievalFeatures:
        if modality == "image":
            feat = self._image(samples["image"].to(self.device))
            return RetrievalFeatures(F.normalize(feat, dim=-1), {"image_feat": feat})
        ids, mask = word_ids(samples["text_input"], self.vocab_size)
        return RetrievalFeatures(F.normalize(self._text(ids), dim=-1), {"text_ids": ids, "text_mask": mask})

    def rerank(self, image_states: dict[str, torch.Tensor], text_states: dict[str, torch.Tensor]) -> torch.Tensor:
        pair = torch.cat([image_states["image_feat"], self._text(text_states["text_ids"])], dim=-1)
        return self.itm_head(pair).squeeze(-1)

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        img = self.encode_for_retrieval(samples, "image").embeds
        txt = self.encode_for_retrieval(samples, "text").embeds
        logits = img @ txt.T / self.temp.clamp(min=0.01)
        target = torch.arange(len(img), device=img.device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        return ModelOutput(loss=loss)


class ToyVQAModel(BaseModel):
    """Scores an answer by the dot product of (image, question) and answer word embeddings;
    ``generate`` mode answers from the words it has seen in training answers."""

    TASK_METHODS = ("predict_answers",)

    def __init__(self, embed_dim: int = 16, vocab_size: int = 64):
        super().__init__()
        self.vocab_size = vocab_size
        self.image_proj = nn.Linear(3 * 4 * 4, embed_dim)
        self.words = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=0)
        self.known_answers: list[str] = ["yes", "no", "red", "1", "2"]

    def _query(self, samples: dict[str, Any]) -> torch.Tensor:
        ids, _ = word_ids(samples["text_input"], self.vocab_size)
        return self.image_proj(F.adaptive_avg_pool2d(samples["image"].to(self.device), 4).flatten(1)) + self.words(ids)

    def _scores(self, samples: dict[str, Any], answers: Sequence[str]) -> torch.Tensor:
        ids, _ = word_ids(answers, self.vocab_size)
        return self._query(samples) @ self.words(ids).T  # [B, A]

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        answers = list(dict.fromkeys(samples["answer"]))
        logp = self._scores(samples, answers).log_softmax(-1)
        owner = torch.repeat_interleave(torch.arange(len(samples["n_answers"])), samples["n_answers"])
        cols = torch.tensor([answers.index(a) for a in samples["answer"]])
        loss = -(samples["weight"] * logp[owner, cols]).sum() / len(samples["n_answers"])
        return ModelOutput(loss=loss)

    @torch.no_grad()
    def predict_answers(self, samples: dict[str, Any], answer_list: Sequence[str] | None = None,
                        inference_method: str = "generate", num_ans_candidates: int = 128, **kwargs: Any) -> list[str]:
        if inference_method == "rank":
            if not answer_list:
                raise ValueError("rank mode needs answer_list")
            candidates = list(answer_list)
        else:
            candidates = self.known_answers
        best = self._scores(samples, candidates).argmax(-1).tolist()
        return [candidates[i] for i in best]


class ToyClassifier(BaseModel):
    """Zero-shot when given class names for images alone (image vs. name embeddings), else a head
    on the image (plus the text for SNLI-VE; NLVR2 batches, ``image0``/``image1``, average the two
    images)."""

    TASK_METHODS = ("predict_class",)

    def __init__(self, embed_dim: int = 16, vocab_size: int = 64, num_classes: int = 3):
        super().__init__()
        self.vocab_size = vocab_size
        self.image_proj = nn.Linear(3 * 4 * 4, embed_dim)
        self.words = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=0)
        self.head = nn.Linear(embed_dim, num_classes)

    def _image(self, samples: dict[str, Any]) -> torch.Tensor:
        images = [samples["image"]] if "image" in samples else [samples["image0"], samples["image1"]]
        return sum(self.image_proj(F.adaptive_avg_pool2d(i.to(self.device), 4).flatten(1)) for i in images) / len(images)

    def predict_class(self, samples: dict[str, Any], class_names: Sequence[str] | None = None) -> torch.Tensor:
        img = self._image(samples)
        if class_names is not None and "text_input" not in samples:
            ids, _ = word_ids(class_names, self.vocab_size)
            return F.normalize(img, dim=-1) @ F.normalize(self.words(ids), dim=-1).T
        if "text_input" in samples:  # a statement about the image(s): SNLI-VE, NLVR2
            img = img + self.words(word_ids(samples["text_input"], self.vocab_size)[0])
        return self.head(img)

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        label = torch.as_tensor(samples["label"])
        return ModelOutput(loss=F.cross_entropy(self.predict_class(samples), label))


def register_toy_models() -> list[str]:
    """Register the toy archs (with their ``tiny`` type, from ``tests/assets/contract_models``)
    unless they are; returns the names newly registered, for the caller to remove afterwards."""
    from lavis.common.registry import registry

    added = []
    for name, cls in zip(TOY_ARCHS, (ToyRetrievalModel, ToyVQAModel, ToyClassifier)):
        if name not in registry.models:
            cls.PRETRAINED_MODEL_CONFIG_DICT = {"tiny": str(_CONFIGS / f"{name}.yaml")}
            registry.register_model(name)(cls)
            added.append(name)
    return added


def unregister(names: Sequence[str]) -> None:
    from lavis.common.registry import registry

    for name in names:
        registry.models._entries.pop(name, None)
