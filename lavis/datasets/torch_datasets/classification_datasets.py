"""Image classification in the usual folder layout (ImageNet: ``<split>/<wnid>/<file>.JPEG``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lavis.datasets.torch_datasets.media_dataset import MediaDataset
from lavis.processors.base_processor import BaseProcessor

IMAGE_SUFFIXES: tuple[str, ...] = (".jpeg", ".jpg", ".png", ".webp", ".bmp")


def read_class_names(path: str | os.PathLike) -> dict[str, str]:
    """``{wnid: class name}`` from a synset mapping file, one class a line: ``n01440764 tench, Tinca
    tinca`` (the ``LOC_synset_mapping.txt`` of the ImageNet challenge); the name is the text up to
    the first comma."""
    names: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            wnid, _, rest = line.partition(" ")
            if not rest:
                raise ValueError(f"{path} line {n}: expected '<wnid> <class name>[, synonyms]', got {line!r}")
            names[wnid] = rest.split(",")[0].strip()
    return names


class ImageFolderDataset(MediaDataset):
    """One item per image file under ``vis_root/<class folder>/``; classes are the sorted folder names.

    ``classes`` lists the folder names (ImageNet wnids), ``classnames`` their readable names (from
    ``class_names``, else the folder names). Listing the folders happens at construction; images are
    opened in ``__getitem__``. Item: ``{"image", "label": class index, "image_id": path relative to
    vis_root, "instance_id": str}``.
    """

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", max_skipped: int = 100,
                 class_names: str | os.PathLike | None = None):
        root = Path(vis_root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist; check build_info.images")
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not self.classes:
            raise ValueError(f"{root} holds no class folders; expected {root}/<class>/<image>.JPEG")
        records = [
            {"image": f"{c}/{f.name}", "label": i}
            for i, c in enumerate(self.classes)
            for f in sorted((root / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES
        ]
        super().__init__(vis_processor, text_processor, root, (), max_skipped, records=records)
        mapping = read_class_names(class_names) if class_names is not None else {}
        unnamed = [c for c in self.classes if mapping and c not in mapping]
        if unnamed:
            raise ValueError(f"{len(unnamed)} class folders of {root} have no name in {class_names} (first: {unnamed[:5]})")
        self.classnames = [mapping.get(c, c) for c in self.classes]

    def item(self, index: int) -> dict[str, Any]:
        r = self.annotation[index]
        return {"image": self.vis_processor(self.open_image(r["image"])), "label": r["label"],
                "image_id": r["image"], "instance_id": str(index)}


__all__ = ["ImageFolderDataset", "read_class_names"]
