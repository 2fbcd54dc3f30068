"""CLIP image processors: CLIP's evaluation transform (shorter side resized, centre crop) and its
light training augmentation. Both take a PIL image or an image path and return a normalised
``[3, image_size, image_size]`` tensor (CLIP's mean and std, which BLIP shares)."""

from __future__ import annotations

from typing import Sequence

from torchvision import transforms
from torchvision.transforms import InterpolationMode, v2

from lavis.common.registry import registry
from lavis.processors.blip_processors import (
    BLIP_MEAN, BLIP_STD, BlipImageBaseProcessor, NormalizeUint8, Uint8TrainProcessor,
)


@registry.register_processor("clip_image_train")
class ClipImageTrainProcessor(Uint8TrainProcessor):
    """Training images: random resized crop (bicubic, area fraction in ``[min_scale, max_scale]``,
    0.9-1.0 as LAVIS's CLIP fine-tuning uses), conversion to float and ``Normalize``; no flip.
    On uint8 tensors, as :class:`~lavis.processors.blip_processors.BlipImageTrainProcessor`."""

    def __init__(self, image_size: int = 224, mean: Sequence[float] = BLIP_MEAN, std: Sequence[float] = BLIP_STD,
                 min_scale: float = 0.9, max_scale: float = 1.0):
        super().__init__(image_size, mean, std)
        self.transform = v2.Compose([self.random_resized_crop(min_scale, max_scale), NormalizeUint8(self.mean, self.std)])


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
