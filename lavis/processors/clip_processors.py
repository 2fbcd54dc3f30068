"""CLIP image processors: CLIP's evaluation transform (shorter side resized, centre crop) and its
light training augmentation. Both take a PIL image or an image path and return a normalised
``[3, image_size, image_size]`` tensor (CLIP's mean and std, which BLIP shares)."""

from __future__ import annotations

from typing import Sequence

from torchvision import transforms
from torchvision.transforms import InterpolationMode

from lavis.common.registry import registry
from lavis.processors.blip_processors import BLIP_MEAN, BLIP_STD, BlipImageBaseProcessor


@registry.register_processor("clip_image_train")
class ClipImageTrainProcessor(BlipImageBaseProcessor):
    """Training images: random resized crop (bicubic, area fraction in ``[min_scale, max_scale]``,
    0.9-1.0 as LAVIS's CLIP fine-tuning uses), ``ToTensor``, ``Normalize``; no flip."""

    def __init__(self, image_size: int = 224, mean: Sequence[float] = BLIP_MEAN, std: Sequence[float] = BLIP_STD,
                 min_scale: float = 0.9, max_scale: float = 1.0):
        super().__init__(image_size, mean, std)
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got min_scale={min_scale}, max_scale={max_scale}")
        self.transform = transforms.Compose([
            transforms.RandomResizedCrop(
                self.image_size, scale=(float(min_scale), float(max_scale)), interpolation=InterpolationMode.BICUBIC
            ),
            transforms.ToTensor(),
            self.normalize,
        ])


@registry.register_processor("clip_image_eval")
class ClipImageEvalProcessor(BlipImageBaseProcessor):
    """Evaluation images as CLIP's own preprocessing: the shorter side resized to ``image_size``
    (bicubic, aspect ratio kept), the centre ``image_size`` square cropped, ``ToTensor``, ``Normalize``."""

    def __init__(self, image_size: int = 224, mean: Sequence[float] = BLIP_MEAN, std: Sequence[float] = BLIP_STD):
        super().__init__(image_size, mean, std)
        self.transform = transforms.Compose([
            transforms.Resize(self.image_size, interpolation=InterpolationMode.BICUBIC),
            transforms.CenterCrop(self.image_size),
            transforms.ToTensor(),
            self.normalize,
        ])
