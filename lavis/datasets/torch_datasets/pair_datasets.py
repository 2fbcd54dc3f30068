"""Datasets of a statement about images: NLVR2 (two images) and SNLI-VE (visual entailment).

Published formats read as they are:

- NLVR2 (BLIP's ``nlvr_{train,dev,test}.json``): ``{"images": ["images/train/68/train-10171-0-img0.png",
  "...-img1.png"], "sentence": str, "label": "True" | "False"}``;
- SNLI-VE (ALBEF's ``ve_{train,dev,test}.json``): ``{"image": "2248275918" (a Flickr30k id, no
  extension), "sentence": str, "label": "entailment" | "neutral" | "contradiction"}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lavis.datasets.torch_datasets.media_dataset import MediaDataset, as_list

#: SNLI-VE label ids, as ALBEF and LAVIS number them
SNLI_VE_LABELS: dict[str, int] = {"contradiction": 0, "neutral": 1, "entailment": 2}


class NLVR2Dataset(MediaDataset):
    """Item: ``{"image0", "image1": vis_processor outputs, "text_input": processed sentence,
    "label": 1 if the sentence is true of the image pair else 0, "instance_id": str}``."""

    def parse(self, data: Any, path: Path) -> list[dict[str, Any]]:
        records = as_list(data, path)
        for i, r in enumerate(records):
            images, label = r.get("images"), r.get("label")
            if not (isinstance(images, list) and len(images) == 2) or str(label) not in ("True", "False") or "sentence" not in r:
                raise ValueError(f"entry {i} of {path} is not an NLVR2 entry ({{'images': [2 paths], 'sentence', "
                                 f"'label': 'True'|'False'}}); got {r!r:.200}")
        return records

    def item(self, index: int) -> dict[str, Any]:
        r = self.annotation[index]
        return {
            "image0": self.vis_processor(self.open_image(r["images"][0])),
            "image1": self.vis_processor(self.open_image(r["images"][1])),
            "text_input": self.text_processor(r["sentence"]),
            "label": 1 if str(r["label"]) == "True" else 0,
            "instance_id": str(index),
        }


class SNLIVEDataset(MediaDataset):
    """Item: ``{"image", "text_input": processed hypothesis, "label": 0 contradiction, 1 neutral,
    2 entailment (:data:`SNLI_VE_LABELS`), "image_id": Flickr30k id, "instance_id": str}``.

    ``image`` entries are Flickr30k ids; the file read is ``vis_root / "<id>.jpg"``.
    """

    def parse(self, data: Any, path: Path) -> list[dict[str, Any]]:
        records = as_list(data, path)
        for i, r in enumerate(records):
            if r.get("label") not in SNLI_VE_LABELS or "image" not in r or "sentence" not in r:
                raise ValueError(f"entry {i} of {path} is not an SNLI-VE entry ({{'image': flickr id, 'sentence', "
                                 f"'label': one of {', '.join(SNLI_VE_LABELS)}}}); got {r!r:.200}")
        return records

    def item(self, index: int) -> dict[str, Any]:
        r = self.annotation[index]
        name = str(r["image"])
        return {
            "image": self.vis_processor(self.open_image(name if name.lower().endswith(".jpg") else f"{name}.jpg")),
            "text_input": self.text_processor(r["sentence"]),
            "label": SNLI_VE_LABELS[r["label"]],
            "image_id": name,
            "instance_id": str(index),
        }


__all__ = ["NLVR2Dataset", "SNLIVEDataset", "SNLI_VE_LABELS"]
