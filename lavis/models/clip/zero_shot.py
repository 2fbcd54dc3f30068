"""Zero-shot classification with CLIP: prompt templates, class-name lists and the text classifier.

The prompt templates and the ImageNet class names are the lists open_clip ships in
``open_clip.zero_shot_metadata`` (the 80 templates of OpenAI's ImageNet evaluation, a short
subset of them, and the 1000 ImageNet class names); they are named here, not copied.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Template = Callable[[str], str]


def _open_clip_templates(attr: str) -> tuple[Template, ...]:
    from open_clip import zero_shot_metadata

    return tuple(getattr(zero_shot_metadata, attr))


#: named template sets -> the open_clip list they stand for
TEMPLATE_SETS: dict[str, str] = {
    "openai_imagenet": "OPENAI_IMAGENET_TEMPLATES",
    "simple_imagenet": "SIMPLE_IMAGENET_TEMPLATES",
}

#: named class-name lists -> the open_clip list they stand for
CLASS_NAME_LISTS: dict[str, str] = {"imagenet": "IMAGENET_CLASSNAMES"}


def get_templates(templates: str | Sequence[str]) -> tuple[Template, ...]:
    """Prompt makers for ``templates``: a set's name (see :data:`TEMPLATE_SETS`) or format strings
    with one ``{}`` for the class name (``["a photo of a {}."]``)."""
    from lavis.common.errors import UnknownNameError

    if isinstance(templates, str):
        if templates not in TEMPLATE_SETS:
            raise UnknownNameError("prompt template set", templates, sorted(TEMPLATE_SETS))
        return _open_clip_templates(TEMPLATE_SETS[templates])
    texts = list(templates)
    bad = [t for t in texts if not isinstance(t, str) or t.count("{}") != 1]
    if not texts or bad:
        raise ValueError(
            f"templates must be a set name ({', '.join(sorted(TEMPLATE_SETS))}) or a non-empty list of strings with "
            f"exactly one '{{}}' for the class name; bad entries: {bad or 'the list is empty'}"
        )
    return tuple(t.format for t in texts)


def get_class_names(name: str) -> list[str]:
    """A shipped class-name list by name (``"imagenet"``: the 1000 ImageNet-1k classes, in label order)."""
    from open_clip import zero_shot_metadata

    from lavis.common.errors import UnknownNameError

    if name not in CLASS_NAME_LISTS:
        raise UnknownNameError("class-name list", name, sorted(CLASS_NAME_LISTS))
    return list(getattr(zero_shot_metadata, CLASS_NAME_LISTS[name]))


def build_classifier(
    encode_text: Callable[[list[str]], torch.Tensor],
    class_names: Sequence[str],
    templates: Sequence[Template],
) -> torch.Tensor:
    """The zero-shot classifier ``[D, C]``: column ``c`` is the mean of the L2-normalised text
    embeddings of every template filled with class name ``c``, normalised again.

    ``encode_text`` maps a list of texts to their (unnormalised) embeddings ``[N, D]``.
    """
    columns = []
    for name in class_names:
        emb = F.normalize(encode_text([t(name) for t in templates]), dim=-1).mean(dim=0)
        columns.append(emb / emb.norm())
    return torch.stack(columns, dim=1)
