"""Video processors: a video file path -> ``num_frames`` uniformly sampled frames, normalized, as a
float tensor ``[3, num_frames, image_size, image_size]`` (channels, time, height, width, as LAVIS's
ALPRO processors return). Frames are decoded with decord (``pip install decord``), imported only when
a video is read. The train processor applies one random resized crop and one flip to all frames of
a clip (torchvision transforms v2 draw their parameters once per call).
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from lavis.common.errors import LavisError
from lavis.common.registry import registry
from lavis.processors.base_processor import BaseProcessor
from lavis.processors.blip_processors import BLIP_MEAN, BLIP_STD, _check_norm


class VideoDecodeError(Exception):
    """A video file that is missing or cannot be decoded."""


def _decord():
    try:
        import decord
    except ImportError:
        raise LavisError("reading videos needs decord: pip install decord (wheels for Linux and Windows; "
                         "on macOS build it from https://github.com/dmlc/decord)") from None
    return decord


def frame_indices(num_total: int, num_frames: int) -> list[int]:
    """``num_frames`` indices spread uniformly over ``num_total`` frames (the middle of each of
    ``num_frames`` equal segments); short videos repeat frames."""
    if num_total <= 0:
        raise VideoDecodeError("the video has no frames")
    return [min(int((i + 0.5) * num_total / num_frames), num_total - 1) for i in range(num_frames)]


def load_frames(path: str | os.PathLike, num_frames: int) -> torch.Tensor:
    """``num_frames`` uint8 RGB frames of the video at ``path``: ``[num_frames, 3, H, W]``."""
    decord = _decord()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: file not found")
    try:
        reader = decord.VideoReader(path, num_threads=1)
        frames = reader.get_batch(frame_indices(len(reader), num_frames)).asnumpy()
    except VideoDecodeError:
        raise
    except Exception as e:  # decord raises its own error types (DECORDError, RuntimeError)
        raise VideoDecodeError(f"{path}: cannot decode ({type(e).__name__}: {e})") from None
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


class VideoBaseProcessor(BaseProcessor):
    """Shared part of the video processors: decoding, then a v2 transform of the ``[T, 3, H, W]`` frames."""

    modality = "video"

    def __init__(self, image_size: int, num_frames: int, mean: Sequence[float], std: Sequence[float]):
        if int(image_size) <= 0 or int(num_frames) <= 0:
            raise ValueError(f"image_size and num_frames must be positive, got {image_size}, {num_frames}")
        self.image_size, self.num_frames = int(image_size), int(num_frames)
        self.mean, self.std = _check_norm(mean, std)
        self.transform: v2.Compose

    def __call__(self, item: str | os.PathLike | torch.Tensor) -> torch.Tensor:
        """A video path (or uint8 frames ``[T, 3, H, W]``) -> ``[3, num_frames, image_size, image_size]``.
        Raises :class:`VideoDecodeError` when the file is missing or unreadable."""
        frames = item if isinstance(item, torch.Tensor) else load_frames(item, self.num_frames)
        return self.transform(frames).permute(1, 0, 2, 3).contiguous()

    def _tail(self) -> list:
        return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]


@registry.register_processor("blip_video_train")
class BlipVideoTrainProcessor(VideoBaseProcessor):
    """Training clips: one random resized crop (area in ``[min_scale, max_scale]``) and optional
    horizontal flip for all frames, then scaling to [0, 1] and ``Normalize(mean, std)``."""

    def __init__(self, image_size: int = 224, num_frames: int = 8, mean: Sequence[float] = BLIP_MEAN,
                 std: Sequence[float] = BLIP_STD, min_scale: float = 0.5, max_scale: float = 1.0,
                 horizontal_flip: bool = True):
        super().__init__(image_size, num_frames, mean, std)
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
        steps: list = [v2.RandomResizedCrop(self.image_size, scale=(min_scale, max_scale),
                                            interpolation=InterpolationMode.BICUBIC, antialias=True)]
        if horizontal_flip:
            steps.append(v2.RandomHorizontalFlip())
        self.transform = v2.Compose(steps + self._tail())


@registry.register_processor("blip_video_eval")
class BlipVideoEvalProcessor(VideoBaseProcessor):
    """Evaluation clips: resize every frame to ``(image_size, image_size)``, scale, normalize."""

    def __init__(self, image_size: int = 224, num_frames: int = 8, mean: Sequence[float] = BLIP_MEAN,
                 std: Sequence[float] = BLIP_STD):
        super().__init__(image_size, num_frames, mean, std)
        self.transform = v2.Compose([v2.Resize((self.image_size, self.image_size),
                                               interpolation=InterpolationMode.BICUBIC, antialias=True)] + self._tail())


__all__ = ["BlipVideoEvalProcessor", "BlipVideoTrainProcessor", "VideoDecodeError", "frame_indices", "load_frames"]
