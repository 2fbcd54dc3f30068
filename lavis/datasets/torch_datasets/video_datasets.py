"""Video-text datasets of LAVIS's MSR-VTT, MSVD and DiDeMo files (``{"video": "video0.mp4", ...}``).

- retrieval / caption files: ``{"video": file name, "caption": str or [str, ...]}``;
- QA files: ``{"video": file name, "question": str, "answer": str}``, with an ``ans2label`` file
  ``{answer: class id}``.

The vis processor gets the video's path and decodes it (``blip_video_train`` / ``blip_video_eval``:
frames sampled with decord); a missing or undecodable video is skipped like an unreadable image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from lavis.datasets.torch_datasets.media_dataset import (
    MediaDataset, UnreadableMedia, as_list, read_json, retrieval_index,
)
from lavis.processors.base_processor import BaseProcessor


def _captions(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(c) for c in value or []]


class _VideoBase(MediaDataset):
    def parse(self, data: Any, path: Path) -> list[dict[str, Any]]:
        records = as_list(data, path)
        for i, r in enumerate(records):
            if "video" not in r:
                raise ValueError(f"entry {i} of {path} names no 'video' (keys: {sorted(r)}); not a video annotation file")
        return records

    def open_video(self, relative: str) -> Any:
        """The vis processor's output for the video at ``vis_root / relative``; raises
        :class:`UnreadableMedia` when it is missing or cannot be decoded."""
        from lavis.processors.video_processors import VideoDecodeError

        path = self.vis_root / relative
        if not path.is_file():
            raise UnreadableMedia(path, "file not found")
        try:
            return self.vis_processor(path)
        except VideoDecodeError as e:
            raise UnreadableMedia(path, str(e)) from None


class VideoTextTrainDataset(_VideoBase):
    """One item per caption: ``{"video": [3, T, H, W], "text_input", "image_id": video index}``
    (captions of one video share ``image_id``)."""

    def parse(self, data: Any, path: Path) -> list[dict[str, Any]]:
        return [{"video": r["video"], "caption": c} for r in super().parse(data, path) for c in _captions(r.get("caption"))]

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = (),
                 max_skipped: int = 100):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths, max_skipped)
        self.video_ids: dict[str, int] = {}
        for r in self.annotation:
            self.video_ids.setdefault(r["video"], len(self.video_ids))

    def item(self, index: int) -> dict[str, Any]:
        r = self.annotation[index]
        return {"video": self.open_video(r["video"]), "text_input": self.text_processor(r["caption"]),
                "image_id": self.video_ids[r["video"]]}


class VideoEvalDataset(_VideoBase):
    """One item per video (entries of the same video are merged): ``{"video", "image_id": video
    index, "instance_id"}``. For retrieval, ``text``, ``img2txt`` and ``txt2img`` hold the captions
    (as :class:`~lavis.datasets.torch_datasets.image_text_datasets.RetrievalEvalDataset`)."""

    def parse(self, data: Any, path: Path) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for r in super().parse(data, path):
            merged.setdefault(r["video"], {"video": r["video"], "caption": []})["caption"] += _captions(r.get("caption"))
        return list(merged.values())

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = (),
                 max_skipped: int = 100):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths, max_skipped)
        self.text, self.img2txt, self.txt2img = retrieval_index((r["caption"] for r in self.annotation),
                                                                self.text_processor)

    def item(self, index: int) -> dict[str, Any]:
        return {"video": self.open_video(self.annotation[index]["video"]), "image_id": index,
                "instance_id": str(index)}


class VideoQADataset(_VideoBase):
    """``{"video", "text_input": processed question, "answer": str, "label": class id of the answer
    in ``ans2label`` (-1 when the answer is not in it), "question_id": entry index}``."""

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = (),
                 max_skipped: int = 100, ans2label: str | os.PathLike | None = None):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths, max_skipped)
        self.ans2label: dict[str, int] = dict(read_json(ans2label)) if ans2label is not None else {}

    def item(self, index: int) -> dict[str, Any]:
        r = self.annotation[index]
        return {"video": self.open_video(r["video"]), "text_input": self.text_processor(r["question"]),
                "answer": r["answer"], "label": self.ans2label.get(r["answer"], -1), "question_id": index}


__all__ = ["VideoEvalDataset", "VideoQADataset", "VideoTextTrainDataset"]
