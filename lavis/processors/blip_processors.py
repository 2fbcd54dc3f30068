"""BLIP-style image and text processors.

Image processors take a PIL image or a path to an image file and return a normalized float
tensor of shape ``[3, image_size, image_size]``. Text processors take one string and return the
cleaned string. Randomness (crops, flips) comes from torch's global RNG, which the runner seeds.

The training processors hold the image as a uint8 tensor from decoding to the end: a path is
decoded by torchvision (libjpeg-turbo, the same pixels as PIL's decoder), the random crop and its
bicubic resize are one antialiased uint8 resampling (within 2/255 of PIL's bicubic resize), the
augmentations run on uint8, and the conversion to float and the normalization are one pass. The
evaluation processors keep their PIL transforms, so evaluation inputs are unchanged.
torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec (a warning per call,
hidden by Python's default filters); TorchCodec's ``decode_image(data, mode="RGB")`` replaces it.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from lavis.common.registry import registry
from lavis.processors.base_processor import BaseProcessor, read_rgb

#: BLIP's (CLIP's) normalization of RGB values in [0, 1].
BLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
BLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

_PUNCTUATION = re.compile(r"[.!\"()*#:;~]")


def load_rgb(item: Image.Image | str | os.PathLike) -> Image.Image:
    """``item`` as an RGB PIL image; ``item`` is a PIL image or the path of an image file."""
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    if isinstance(item, (str, os.PathLike)):
        try:
            return read_rgb(item)
        except FileNotFoundError:
            raise FileNotFoundError(f"image file {os.fspath(item)!r} does not exist") from None
    raise TypeError(f"an image processor takes a PIL image or an image path, got {type(item).__name__}")


def read_uint8(item: Image.Image | str | os.PathLike | torch.Tensor) -> torch.Tensor:
    """``item`` as a uint8 RGB tensor ``[3, H, W]``: a JPEG, 8-bit PNG, GIF or WebP path is decoded
    by torchvision (the pixels of PIL's decoder), other files and PIL images go through
    :func:`load_rgb`; a uint8 ``[3, H, W]`` tensor (what this returned before) is taken as it is."""
    if isinstance(item, torch.Tensor) and item.dtype == torch.uint8 and item.dim() == 3 and item.shape[0] == 3:
        return item
    if isinstance(item, (str, os.PathLike)):
        from torchvision.io import ImageReadMode, decode_image

        path = os.fspath(item)
        try:
            with open(path, "rb") as f:
                data = bytearray(f.read())
        except FileNotFoundError:
            raise FileNotFoundError(f"image file {path!r} does not exist") from None
        try:
            decoded = decode_image(torch.frombuffer(data, dtype=torch.uint8), mode=ImageReadMode.RGB) if data else None
        except RuntimeError:  # a format torchvision does not decode (BMP, TIFF ...) or a bad file: PIL's turn
            decoded = None
        if decoded is not None and decoded.dtype == torch.uint8:  # 16-bit PNGs decode to uint16: PIL's turn
            return decoded
    if isinstance(item, torch.Tensor):
        raise TypeError(f"an image processor takes a PIL image, an image path or a uint8 [3, H, W] tensor, got a "
                        f"{item.dtype} tensor of shape {tuple(item.shape)}")
    return F.pil_to_tensor(load_rgb(item))


def clean_text(text: str, max_words: int) -> str:
    """Lower-case ``text``, turn ``.!"()*#:;~`` into spaces, collapse whitespace, keep the first
    ``max_words`` words."""
    if not isinstance(text, str):
        raise TypeError(f"a text processor takes a string, got {type(text).__name__}")
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(words[:max_words])


def _check_norm(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need three values each (RGB) and std > 0; got mean={mean}, std={std}")
    return mean, std


class BlipImageBaseProcessor(BaseProcessor):
    """Shared part of the BLIP image processors: RGB loading and normalization."""

    modality = "image"

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float]):
        if int(image_size) <= 0:
            raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
        self.image_size = int(image_size)
        self.mean, self.std = _check_norm(mean, std)
        self.normalize = transforms.Normalize(self.mean, self.std)
        self.transform: transforms.Compose | v2.Compose

    def __call__(self, item: Image.Image | str | os.PathLike) -> torch.Tensor:
        """The normalized image, shape ``[3, image_size, image_size]``."""
        return self.transform(load_rgb(item))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform})"


class NormalizeUint8:
    """uint8 ``[3, H, W]`` (any strides) to a contiguous float32 tensor ``(x / 255 - mean) / std``,
    computed as ``(x - 255 mean) * (1 / (255 std))`` in one conversion and two in-place passes."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = _check_norm(mean, std)
        self.shift = torch.tensor(self.mean).mul_(255).view(3, 1, 1)
        self.scale = torch.tensor(self.std).mul_(255).reciprocal_().view(3, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        out = torch.empty(img.shape, dtype=torch.float32)
        return out.copy_(img).sub_(self.shift).mul_(self.scale)

    def __repr__(self) -> str:
        return f"NormalizeUint8(mean={self.mean}, std={self.std})"


class Uint8TrainProcessor(BlipImageBaseProcessor):
    """Shared part of the training processors: the image is read with :func:`read_uint8` and
    ``self.transform`` works on uint8 tensors, ending with :class:`NormalizeUint8`."""

    def random_resized_crop(self, min_scale: float, max_scale: float) -> v2.RandomResizedCrop:
        """The random crop (area fraction in ``[min_scale, max_scale]``, aspect ratio 3/4 to 4/3,
        the same draws from torch's RNG as ``transforms.RandomResizedCrop``) resized to
        ``image_size`` with antialiased bicubic interpolation."""
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got min_scale={min_scale}, max_scale={max_scale}")
        return v2.RandomResizedCrop(self.image_size, scale=(float(min_scale), float(max_scale)),
                                    interpolation=InterpolationMode.BICUBIC, antialias=True)

    def read(self, path: str | os.PathLike) -> torch.Tensor:
        """The image file at ``path`` as a uint8 tensor (:func:`read_uint8`): data sets hand it on
        to ``__call__`` without a PIL image in between."""
        return read_uint8(path)

    def __call__(self, item: Image.Image | str | os.PathLike | torch.Tensor) -> torch.Tensor:
        """The augmented, normalized image, shape ``[3, image_size, image_size]``, of a PIL image,
        an image path or a uint8 ``[3, H, W]`` tensor."""
        return self.transform(read_uint8(item))


@registry.register_processor("blip_image_train")
class BlipImageTrainProcessor(Uint8TrainProcessor):
    """Training images: random resized crop (bicubic, area fraction in ``[min_scale, max_scale]``),
    optional horizontal flip, optional ``randaugment`` (LAVIS's ``RandomAugment(2, 5)`` of
    :mod:`lavis.processors.randaugment`, as BLIP's published fine-tuning recipes use), then
    conversion to float and ``Normalize(mean, std)``, all on uint8 tensors.

    Turn ``horizontal_flip`` off when captions speak of left and right.
    """

    def __init__(self, image_size: int = 384, mean: Sequence[float] = BLIP_MEAN, std: Sequence[float] = BLIP_STD,
                 min_scale: float = 0.5, max_scale: float = 1.0, horizontal_flip: bool = True,
                 randaugment: bool = False):
        super().__init__(image_size, mean, std)
        steps: list = [self.random_resized_crop(min_scale, max_scale)]
        self.min_scale, self.max_scale, self.horizontal_flip = float(min_scale), float(max_scale), bool(horizontal_flip)
        self.randaugment = bool(randaugment)
        if self.horizontal_flip:
            steps.append(v2.RandomHorizontalFlip())
        if self.randaugment:
            from lavis.processors.randaugment import RandomAugment

            steps.append(RandomAugment(num_ops=2, magnitude=5))
        steps.append(NormalizeUint8(self.mean, self.std))
        self.transform = v2.Compose(steps)


@registry.register_processor("blip_image_eval")
class BlipImageEvalProcessor(BlipImageBaseProcessor):
    """Evaluation images: resize to ``(image_size, image_size)`` (bicubic), ``ToTensor``, ``Normalize``."""

    def __init__(self, image_size: int = 384, mean: Sequence[float] = BLIP_MEAN, std: Sequence[float] = BLIP_STD):
        super().__init__(image_size, mean, std)
        self.transform = transforms.Compose([
            transforms.Resize((self.image_size, self.image_size), interpolation=InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            self.normalize,
        ])


@registry.register_processor("blip_caption")
class BlipCaptionProcessor(BaseProcessor):
    """Captions: :func:`clean_text` with ``max_words``, then ``prompt`` prepended as is
    (``prompt="a picture of "`` gives ``"a picture of a red circle"``)."""

    modality = "text"

    def __init__(self, prompt: str = "", max_words: int = 50):
        if int(max_words) <= 0:
            raise ValueError(f"max_words must be positive, got {max_words}")
        self.prompt, self.max_words = str(prompt), int(max_words)

    def __call__(self, caption: str) -> str:
        return self.prompt + clean_text(caption, self.max_words)

    def __repr__(self) -> str:
        return f"BlipCaptionProcessor(prompt={self.prompt!r}, max_words={self.max_words})"


@registry.register_processor("blip_question")
class BlipQuestionProcessor(BaseProcessor):
    """Questions: :func:`clean_text` with ``max_words`` (``"?"`` is kept)."""

    modality = "text"

    def __init__(self, max_words: int = 50):
        if int(max_words) <= 0:
            raise ValueError(f"max_words must be positive, got {max_words}")
        self.max_words = int(max_words)

    def __call__(self, question: str) -> str:
        return clean_text(question, self.max_words)

    def __repr__(self) -> str:
        return f"BlipQuestionProcessor(max_words={self.max_words})"
