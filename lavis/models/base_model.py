"""The one contract every registered model follows.

A model's variants are the YAML files in ``lavis/configs/models/<arch>/``: the file name is the
``model_type``. Registering the class fills ``PRETRAINED_MODEL_CONFIG_DICT`` (``model_type`` ->
YAML path under ``lavis/configs``) from that folder unless the class sets it itself. Each YAML has a ``model`` block (constructor arguments plus the
reserved keys below) and a ``preprocess`` block (processors for ``load_preprocess``).

Constructor arguments are the single home of defaults: ``from_config`` passes each key of the
``model`` block whose name is a parameter of ``__init__``; any other key that is not reserved is
a configuration error, reported by :func:`lavis.common.config.validate`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import torch
from omegaconf import DictConfig
from torch import nn

from lavis.common.errors import CheckpointError, UnknownNameError
from lavis.common.paths import package_path
from lavis.common.registry import init_arg_names
from lavis.common.schema import load_dict_config, merge_dict_configs, plain_dict
from lavis.models.runtime import RUNTIME_MODEL_KEYS, apply_runtime_options, runtime_option_problems
from lavis.zoo.entries import PIN_KEYS

# Keys of a ``model`` config block that are not constructor arguments: names, weight sources and
# their pins (``hf_revision``, ``finetuned_sha256``, ...: see lavis.zoo.entries).
RESERVED_MODEL_KEYS = frozenset(
    {"arch", "model_type", "pretrained", "finetuned", "load_pretrained", "load_finetuned", "hf_repo"} | PIN_KEYS
)


class ConvertedStateDict(dict):
    """A state dict that ``convert_state_dict`` renamed from another layout.

    ``layout`` names that layout (``"LAVIS"``) and ``original_name`` maps one of our keys back to
    its name there, so that key-mismatch errors can name keys as they are in the user's file.
    """

    def __init__(self, data: Mapping[str, torch.Tensor], layout: str, original_name: Callable[[str], str]):
        super().__init__(data)
        self.layout = layout
        self.original_name = original_name


#: Methods through which tasks use a model besides ``forward``. An arch declares the ones it has
#: in ``TASK_METHODS``; their contracts (``samples`` is a collated batch of the data set's items):
#:
#: - ``generate(samples, **generation_kwargs) -> list[str]``: one text per item (captions, replies).
#: - ``predict_answers(samples, answer_list=None, inference_method="generate", num_ans_candidates=128,
#:   **generation_kwargs) -> list[str]``: one answer per question (``samples["text_input"]``);
#:   ``inference_method="rank"`` picks each answer from ``answer_list`` (required then).
#: - ``extract_features(samples, mode="multimodal") -> dataclass`` of ``[B, ...]`` tensors; ``mode``
#:   is ``"image"``, ``"text"`` or ``"multimodal"``.
#: - ``predict_class(samples, class_names=None) -> Tensor [B, C]``: a score per class (logits or
#:   similarities; higher is more likely). Zero-shot models need ``class_names``; models with a
#:   trained head (NLVR2, SNLI-VE) ignore it.
#: - ``encode_for_retrieval(samples, modality) -> RetrievalFeatures``: ``modality`` ``"image"`` reads
#:   ``samples["image"]``, ``"text"`` reads ``samples["text_input"]`` (a list of str).
#: - ``rerank(image_states, text_states) -> Tensor [N]``: a matching score for each of ``N`` pairs
#:   (row ``i`` of the image states with row ``i`` of the text states, both sliced out of
#:   :attr:`RetrievalFeatures.states`); models with an ITM head have it, ITC-only models do not.
TASK_METHOD_NAMES = (
    "generate",
    "predict_answers",
    "extract_features",
    "predict_class",
    "encode_for_retrieval",
    "rerank",
)


@dataclass
class RetrievalFeatures:
    """One side (images or texts) of image-text retrieval, for a batch of ``B`` items.

    ``embeds``: ``[B, D]``, L2-normalised; the similarity of image ``i`` and text ``t`` is
    ``image.embeds[i] @ text.embeds[t]`` (ITC). ``states``: tensors whose first dimension is ``B``
    (image token states; text ids and attention mask) that :meth:`rerank` takes, sliced and
    concatenated row-wise by the retrieval task; empty for models without re-ranking.
    """

    embeds: torch.Tensor
    states: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ModelOutput:
    """What ``forward`` returns: ``loss`` (a scalar tensor) plus named ``extras``.

    The runners log every scalar entry of ``extras`` (a one-element tensor or a number, e.g. token
    counts or an accuracy) next to the loss: averaged over the micro-batches of an optimizer step
    and over ranks, into stdout, ``metrics.jsonl`` and TensorBoard. An entry must keep its name at
    every step and may not reuse a name the runner logs (``loss``, ``lr``, ...). Other entries
    (e.g. logits) are left to the task and not logged.
    """

    loss: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainProgress:
    """Where training stands, as the runner tells the model before each batch
    (:attr:`BaseModel.train_progress`): ``global_step`` optimizer steps done, of
    ``steps_per_epoch`` per (inner) epoch. For schedules inside a model, such as the ramp-up of a
    distillation weight over the first epochs."""

    global_step: int
    steps_per_epoch: int

    @property
    def epochs(self) -> float:
        """Epochs done, fractional."""
        return self.global_step / max(1, self.steps_per_epoch)


class BaseModel(nn.Module):
    """Base of every registered model."""

    #: set by the training runners before each batch; ``None`` outside training by a runner
    train_progress: TrainProgress | None = None

    PRETRAINED_MODEL_CONFIG_DICT: ClassVar[dict[str, str]] = {}
    #: the task methods this arch offers, from :data:`TASK_METHOD_NAMES`; the registry-wide test
    #: runs exactly these on the ``tiny`` type and fails if the class has one it does not declare
    TASK_METHODS: ClassVar[tuple[str, ...]] = ()
    #: constructor arguments that are blocks of a transformers config class, checked key by key
    #: with the rest of the config: ``{"vision_config": "transformers:BlipVisionConfig"}``
    NESTED_CONFIGS: ClassVar[dict[str, str]] = {}
    #: constructor arguments that name base weight files besides ``pretrained``/``finetuned``
    #: (the VLM seam's ``checkpoint``); recorded in trained-only checkpoints as part of the base
    BASE_WEIGHT_KEYS: ClassVar[tuple[str, ...]] = ()

    # -- configuration --------------------------------------------------------------------------
    @classmethod
    def model_types(cls) -> list[str]:
        return sorted(cls.PRETRAINED_MODEL_CONFIG_DICT)

    @classmethod
    def default_config_path(cls, model_type: str) -> str:
        """Absolute path of the shipped YAML for ``model_type``."""
        if model_type not in cls.PRETRAINED_MODEL_CONFIG_DICT:
            raise UnknownNameError(f"{cls.__name__} model_type", model_type, cls.model_types())
        return str(package_path(cls.PRETRAINED_MODEL_CONFIG_DICT[model_type]))

    @classmethod
    def default_config(cls, model_type: str) -> DictConfig:
        """The shipped YAML of ``model_type`` (``model`` and ``preprocess`` blocks)."""
        return load_dict_config(cls.default_config_path(model_type))

    @classmethod
    def init_arg_names(cls) -> set[str]:
        """Names a ``model`` config block may set besides the reserved keys."""
        return init_arg_names(cls)

    @classmethod
    def validate_config(cls, cfg: Mapping[str, Any]) -> list[str]:
        """Every problem of a merged ``model`` block as ``model.key: what``, found before anything is
        built: unknown keys, constructor arguments of the wrong type (from the ``__init__``
        annotations) and bad keys or values in the nested transformers config blocks named by
        ``NESTED_CONFIGS``."""
        from lavis.common.registry import _resolve
        from lavis.common.schema import check_call_arguments, check_hf_config, unknown_key

        valid = cls.config_keys()
        problems = [unknown_key("model", str(k), valid) for k in cfg if k not in valid]
        names = cls.init_arg_names()
        problems += check_call_arguments({k: v for k, v in cfg.items() if k in names}, cls.__init__, "model")
        problems += runtime_option_problems({k: v for k, v in cfg.items() if k in RUNTIME_MODEL_KEYS and k not in names})
        for key, path in cls.NESTED_CONFIGS.items():
            block = cfg.get(key)
            if isinstance(block, Mapping):
                problems += check_hf_config(block, _resolve(path), f"model.{key}")
        return problems

    @classmethod
    def config_keys(cls) -> set[str]:
        """Every key a ``model`` config block may hold: constructor arguments, reserved keys (names,
        weight sources and their pins) and the runtime keys of every arch (``attn_implementation``,
        ``gradient_checkpointing``: see :mod:`lavis.models.runtime`); config validation asks the
        class for these."""
        return cls.init_arg_names() | RESERVED_MODEL_KEYS | set(RUNTIME_MODEL_KEYS)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | DictConfig) -> "BaseModel":
        """Build from a ``model`` config block and load the weights it asks for.

        The weights are resolved once, before the network is built (fetched, or found missing with
        the command that fetches them; see :func:`lavis.zoo.resolve.resolve_config_weights`), and
        the local file is loaded with :meth:`load_checkpoint_file`. The runtime keys that are not
        constructor arguments (``attn_implementation``, default ``sdpa``; ``gradient_checkpointing``,
        default off) are applied last, by :func:`lavis.models.runtime.apply_runtime_options`.
        """
        params = plain_dict(cfg)
        from lavis.zoo.resolve import resolve_config_weights

        weights = resolve_config_weights(params, cls.__name__)
        names = cls.init_arg_names()
        model = cls(**{k: v for k, v in params.items() if k in names})
        if weights is not None:
            model.load_checkpoint_file(weights)
        apply_runtime_options(model, params, str(params.get("arch", cls.__name__)), handled=names)
        return model

    @classmethod
    def from_pretrained(cls, model_type: str, **overrides: Any) -> "BaseModel":
        """Build ``model_type`` from its shipped config, with ``overrides`` merged over the ``model`` block."""
        cfg = merge_dict_configs(cls.default_config(model_type).model, {"model_type": model_type, **overrides})
        return cls.from_config(cfg)

    # -- weights --------------------------------------------------------------------------------
    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a foreign checkpoint layout onto this model's keys; families override this."""
        return state_dict

    def load_checkpoint(self, url_or_filename: str | os.PathLike, strict: bool = True) -> None:
        """Load weights from a local file or a URL.

        A URL is resolved once (downloaded into ``cache_root()/models/``, or found there and
        checked; see :func:`lavis.zoo.resolve.resolve_location`); the local file is then loaded
        with :meth:`load_checkpoint_file`.
        """
        from lavis.zoo.resolve import resolve_location

        path = resolve_location(url_or_filename, type(self).__name__)
        source = str(url_or_filename)
        self.load_checkpoint_file(path, strict=strict, source=source if source != str(path) else None)

    def load_checkpoint_file(self, path: str | os.PathLike, strict: bool = True, *, source: str | None = None) -> None:
        """Load weights from the local file ``path`` (``.safetensors``, or a ``.pth``/``.bin`` state dict).

        Pickles are read with ``weights_only=True``; a state dict stored under ``"model"`` is
        unwrapped and foreign layouts go through :meth:`convert_state_dict`. With ``strict`` (the
        default) missing or unexpected keys raise :class:`CheckpointError` listing both (also by
        their names in the checkpoint's own layout when it was converted). ``source`` (the URL the
        file came from) is named in messages. A quantized model written by ``quantize.py`` (see
        :mod:`lavis.quantization.storage`) loads with its quantized layers.
        """
        from lavis.common.checkpoint import load_state_dict_file
        from lavis.models.trained_only import record_of
        from lavis.quantization.storage import quantized_state, read_record

        record = read_record(path)  # a quantized model (quantize.py) brings its torchao tensors
        if record is None:
            raw = load_state_dict_file(path)
            if record_of(raw) is not None:
                self.load_trained_only(raw, str(path if source is None else f"{path} (from {source})"), strict=strict)
                return
            state_dict = self.convert_state_dict(raw)
        else:
            state_dict = quantized_state(self, path, record)
        missing, unexpected = self.load_state_dict(state_dict, strict=False)
        if strict and (missing or unexpected):
            where = f"{path} (from {source})" if source else str(path)
            msg = (
                f"checkpoint {where} does not fit {type(self).__name__}: "
                f"missing keys {sorted(missing)}; unexpected keys {sorted(unexpected)}."
            )
            if isinstance(state_dict, ConvertedStateDict):
                msg += (
                    f" It was converted from the {state_dict.layout} layout, where these keys are named: missing "
                    f"{sorted(state_dict.original_name(k) for k in missing)}; unexpected "
                    f"{sorted(state_dict.original_name(k) for k in unexpected)}. The file is incomplete or is not "
                    f"a {type(self).__name__} checkpoint."
                )
            else:
                msg += " If it is in another layout, convert it first (see the family's converter)."
            raise CheckpointError(msg)

    def load_trained_only(self, weights: Mapping[str, torch.Tensor], where: str, strict: bool = True) -> None:
        """Load a trained-only checkpoint's ``weights`` (see :mod:`lavis.models.trained_only`):
        first the base its record names (:meth:`load_base`), then the trained entries, checked
        against the recorded base. ``strict``: this model may have no keys beyond the run's."""
        from lavis.common.checkpoint import RecordedStateDict
        from lavis.models import trained_only

        record = trained_only.record_of(weights)
        assert record is not None
        weights = RecordedStateDict(self.convert_state_dict(dict(weights)), record)
        trained_only.check(self, weights, where, base=False)  # before the base is loaded
        try:
            self.load_base(record)
        except CheckpointError as e:
            raise CheckpointError(f"{where} holds only the trained parameters of a run on {trained_only.describe(record)}"
                                  f", and its base does not load: {e}") from e
        trained_only.load(self, weights, where, exact=strict)

    def load_base(self, record: Mapping[str, Any]) -> None:
        """Load the base weights a trained-only ``record`` names (its run's ``pretrained`` or
        ``finetuned`` file, itself possibly trained-only) unless this model holds them already."""
        from lavis.models import trained_only
        from lavis.zoo.resolve import resolve_config_weights

        if trained_only.base_problem(self, record, exact=False) is None:
            return
        path = resolve_config_weights(record["base"], type(self).__name__)
        if path is not None:
            self.load_checkpoint_file(path)

    # -- conveniences ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(self, samples: dict[str, Any]) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(samples)")

