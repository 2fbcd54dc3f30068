"""Base of the torch Datasets built by the dataset builders: annotation loading, image loading,
processors and batch collation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from torch.utils.data import Dataset
from torch.utils.data.dataloader import default_collate

from lavis.processors.base_processor import BaseProcessor


def load_annotation_file(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of a JSON annotation file holding a list (or ``{"annotations": [...]}``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"annotation file {path} does not exist; check build_info.annotations in the dataset config, "
            "or let the builder prepare (download or generate) the data first"
        )
    with open(path, encoding="utf-8") as f:
        return as_list(json.load(f), path)


def as_list(data: Any, path: Path) -> list[dict[str, Any]]:
    """Entries of an annotation file that holds a list, or ``{"annotations": [...]}``."""
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise ValueError(f"{path} must hold a JSON list of annotation entries, got {type(data).__name__}")
    return data


class BaseDataset(Dataset):
    """Annotations from one or more JSON files, with image paths relative to ``vis_root``.

    Args:
        vis_processor: reads an image file (``read``) and turns it into the model's image tensor (identity when ``None``).
        text_processor: turns a raw string into the model's text (identity when ``None``).
        vis_root: folder the ``"image"`` paths of the annotations are relative to.
        ann_paths: annotation files; their entries are concatenated in order.

    Random augmentations use torch's global RNG; the dataset keeps no random state of its own.
    """

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = ()):
        self.vis_root = Path(vis_root)
        if isinstance(ann_paths, (str, os.PathLike)):
            ann_paths = [ann_paths]
        self.ann_paths = [Path(p) for p in ann_paths]
        self.annotation: list[dict[str, Any]] = []
        for p in self.ann_paths:
            self.annotation.extend(load_annotation_file(p))
        self.vis_processor: BaseProcessor = vis_processor or BaseProcessor()
        self.text_processor: BaseProcessor = text_processor or BaseProcessor()

    def __len__(self) -> int:
        return len(self.annotation)

    def set_processors(self, vis_processor: BaseProcessor, text_processor: BaseProcessor) -> None:
        self.vis_processor, self.text_processor = vis_processor, text_processor

    def load_image(self, relative: str) -> Any:
        """The image at ``vis_root / relative`` as the vision processor reads it (``vis_processor.read``)."""
        path = self.vis_root / relative
        try:
            return self.vis_processor.read(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image {path} named in {', '.join(map(str, self.ann_paths))} does not exist; "
                "check build_info (images are looked up relative to the data set's storage folder)"
            ) from None

    def collater(self, samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """A batch from a list of items: tensors are stacked, numbers become tensors, strings stay
        lists (``torch.utils.data.default_collate``). ``None`` items (skipped samples) are dropped."""
        samples = [s for s in samples if s is not None]
        if not samples:
            return {}
        return default_collate(samples)
