"""Reuse of image features inside one evaluation step.

Some evaluations ask a model about the same images more than once in a step: VQA's multiple
choice (A-OKVQA) ranks each question's own choices after the whole batch was answered, one
question at a time, on ``image[i : i + 1]``, and every such call would run the vision encoder
again. :func:`reuse_image_features` lets a task say "these calls see the same images": while it is
active, the model's ``encode_image`` remembers its last result and answers a later call on rows of
the same, unchanged image tensor (the whole batch or a slice of rows) with the matching rows of
that result. Nothing about the model changes outside the ``with`` block, and a model without
``encode_image`` is left alone.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch


def row_range(view: torch.Tensor, base: torch.Tensor) -> tuple[int, int] | None:
    """``(start, stop)`` when ``view`` is exactly ``base[start:stop]`` (the same memory, so the
    same values), else ``None``."""
    if view is base:
        return 0, int(base.shape[0])
    if (view.device != base.device or view.dtype != base.dtype or view.dim() != base.dim() or view.dim() == 0
            or view.shape[1:] != base.shape[1:] or view.stride() != base.stride() or base.stride(0) <= 0
            or view.untyped_storage().data_ptr() != base.untyped_storage().data_ptr()):
        return None
    offset = int(view.storage_offset() - base.storage_offset())
    if offset % base.stride(0):
        return None
    start = offset // base.stride(0)
    stop = start + int(view.shape[0])
    return (start, stop) if 0 <= start and stop <= base.shape[0] else None


class _Remembered:
    """The last ``encode_image`` call: its image, the image's version, its other arguments, its output."""

    def __init__(self, image: torch.Tensor, rest: tuple, output: Any):
        self.image, self.version, self.rest, self.output = image, image._version, rest, output

    def rows(self, image: torch.Tensor, rest: tuple) -> Any | None:
        """The output for ``image`` when it is unchanged rows of the remembered image, else ``None``."""
        if rest != self.rest or self.image._version != self.version:
            return None
        span = row_range(image, self.image)
        if span is None:
            return None
        start, stop = span
        if isinstance(self.output, torch.Tensor):
            return self.output[start:stop]
        if isinstance(self.output, tuple) and all(isinstance(o, torch.Tensor) for o in self.output):
            return type(self.output)(o[start:stop] for o in self.output)
        return None


@contextlib.contextmanager
def reuse_image_features(net: Any) -> Iterator[None]:
    """While active, ``net.encode_image(image, *args, **kwargs)`` runs the vision encoder only for
    an image tensor it has not just encoded; a call on rows of the last one (unchanged since, same
    other arguments) gets the matching rows of its result. The last result is dropped on exit."""
    encode = getattr(net, "encode_image", None)
    if not callable(encode) or "encode_image" in vars(net):
        yield
        return
    last: list[_Remembered] = []

    def encode_image(image: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        rest = (args, tuple(sorted(kwargs.items())))
        if isinstance(image, torch.Tensor) and last:
            reused = last[0].rows(image, rest)
            if reused is not None:
                return reused
        output = encode(image, *args, **kwargs)
        if isinstance(image, torch.Tensor):
            last[:] = [_Remembered(image, rest, output)]
        return output

    net.encode_image = encode_image
    try:
        yield
    finally:
        del net.encode_image
