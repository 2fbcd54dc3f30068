"""Any registered lavis vision-language model as an lmms-eval model (``pip install lavis[lmms-eval]``).

The model class :class:`LavisVLM` is lmms-eval's model ``lavis`` (installed lavis declares it in
the ``lmms_eval.models`` entry-point group, see :func:`manifest`; importing this module registers
it too), so lmms-eval's task library runs on every arch of :mod:`lavis.models.vlm`::

    python -m lmms_eval --model lavis --model_args arch=qwen2_vl,model_type=tiny --tasks <task>

or from Python with ``lmms_eval.evaluator.simple_evaluate(model=LavisVLM(...), tasks=[...])``.
Both request kinds lmms-eval sends map onto the VLM seam: ``generate_until`` onto
:meth:`~lavis.models.vlm.base.HFVisionLanguageModel.generate` (the text is cut at the first
``until`` string), ``loglikelihood`` onto
:meth:`~lavis.models.vlm.base.HFVisionLanguageModel.reply_loglikelihoods` (the continuation is the
assistant's reply, scored with the chat template's end-of-turn token, as lmms-eval's own
``llava_hf`` model does). Each request's images (``doc_to_visual``) go in front of its text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Sequence

from lavis.common.errors import LavisError

try:
    from lmms_eval.api.instance import Instance
    from lmms_eval.api.model import lmms
    from lmms_eval.api.registry import register_model
except ImportError as e:  # pragma: no cover - depends on the environment
    raise LavisError("lavis.integrations.lmms_eval needs the optional package lmms-eval (the 'lmms-eval' extra "
                     f"of lavis) ({e})") from e

if TYPE_CHECKING:
    from lavis.models.vlm.base import HFVisionLanguageModel

#: generation keywords of lmms-eval tasks that lavis passes on to ``generate``
GENERATE_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "num_beams")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def cut_at(text: str, until: Sequence[str]) -> str:
    """``text`` up to the first of the ``until`` strings (all of it when none occurs)."""
    for stop in until:
        if stop and stop in text:
            text = text.split(stop, 1)[0]
    return text


@register_model("lavis")
class LavisVLM(lmms):
    """A lavis VLM behind lmms-eval's model interface.

    Args:
        arch / model_type: a registered vision-language arch and one of its types (``tiny``, ...).
        model: an already built model instead (then ``arch`` and ``model_type`` are ignored).
        batch_size: requests per forward or generate call.
        device: where to put a model this class builds (``cpu``, ``cuda``).
    """

    def __init__(self, arch: str = "", model_type: str = "", model: "HFVisionLanguageModel | None" = None,
                 batch_size: int | str = 1, device: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        built: Any = model
        if built is None:
            if not arch or not model_type:
                raise LavisError("the lavis lmms-eval model needs model_args arch=<registered VLM>,model_type=<type> "
                                 "(e.g. arch=qwen2_vl,model_type=tiny)")
            from lavis.models import load_model

            built = load_model(arch, model_type, is_eval=True, device=device or "cpu")
        if not hasattr(built, "reply_loglikelihoods"):
            raise LavisError(f"{type(built).__name__} is not a vision-language model of lavis.models.vlm; lmms-eval "
                             "needs one (arch llava, qwen2_vl, ...)")
        self.model: "HFVisionLanguageModel" = built.eval()
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 1

    def _conversation(self, context: str, images: list[Any]) -> tuple[list[dict[str, str]], list[Any]]:
        from lavis.models.vlm.conversation import IMAGE_PLACEHOLDER

        images = [im for im in images if im is not None]
        if context.count(IMAGE_PLACEHOLDER) != len(images):
            context = self.model.remove_image_placeholder(context)
            context = f"{IMAGE_PLACEHOLDER}\n" * len(images) + context
        return [{"role": "user", "content": context}], images

    def _visuals(self, doc_to_visual: Any, doc_id: int, task: str, split: str) -> list[Any]:
        if doc_to_visual is None:
            return []
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        return list(visuals or [])

    def generate_until(self, requests: list[Instance]) -> list[str]:
        out: list[str] = []
        for chunk in _chunks(requests, self.batch_size):
            convs, images, until, kwargs = [], [], [], {}
            for context, gen_kwargs, doc_to_visual, doc_id, task, split in (r.args for r in chunk):
                conv, imgs = self._conversation(context, self._visuals(doc_to_visual, doc_id, task, split))
                convs.append(conv)
                images.append(imgs)
                stops = gen_kwargs.get("until") or []
                until.append([stops] if isinstance(stops, str) else list(stops))
                kwargs = {k: gen_kwargs[k] for k in GENERATE_KEYS if k in gen_kwargs}
            if not kwargs.get("do_sample"):
                kwargs.pop("temperature", None)
            texts = self.model.generate({"conversations": convs, "images": images}, **kwargs)
            out += [cut_at(t, stops) for t, stops in zip(texts, until)]
        return out

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        out: list[tuple[float, bool]] = []
        for chunk in _chunks(requests, self.batch_size):
            convs, images, replies = [], [], []
            for context, doc_to_target, doc_to_visual, doc_id, task, split in (r.args for r in chunk):
                conv, imgs = self._conversation(context, self._visuals(doc_to_visual, doc_id, task, split))
                target = doc_to_target if isinstance(doc_to_target, str) else doc_to_target(
                    self.task_dict[task][split][doc_id])
                convs.append(conv)
                images.append(imgs)
                replies.append(str(target).strip())
            logps, greedy = self.model.reply_loglikelihoods(convs, images, replies)
            out += [(float(lp), bool(g)) for lp, g in zip(logps, greedy)]
        return out

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("the lavis lmms-eval model answers single-round tasks (generate_until, loglikelihood)")


def manifest() -> Any:
    """lmms-eval's record of the ``lavis`` model: the payload of the ``lmms_eval.models`` entry point
    that setup.py declares, through which ``python -m lmms_eval --model lavis`` finds :class:`LavisVLM`."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="lavis", simple_class_path=f"{__name__}.{LavisVLM.__name__}")


__all__ = ["LavisVLM", "cut_at", "manifest"]
