"""Experiment configuration: merge, validate, save.

Precedence, lowest first: the shipped defaults of the model type (``arch`` + ``model_type``),
the shipped defaults of each data set (``type``), the experiment file, ``--options key=value``.

:func:`validate` collects every problem (unknown key, wrong type, bad choice, unknown registry
name) and :class:`Config` raises them together in one :class:`ConfigError` before anything is
built.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lavis.common import lavis_compat
from lavis.common.errors import ConfigError, describe_unknown
from lavis.common.quant_schema import QuantizationConfig, validate_quantization
from lavis.common.registry import registry
from lavis.common.run_schema import RUN_CHOICES, RUN_REGISTRY_KEYS, RunConfig
from lavis.common.schema import at_least_one, dataclass_fields, merge_dict_configs, plain_dict
from lavis.common.schema import matches as _matches
from lavis.common.schema import type_name as _type_name
from lavis.common.schema import unknown_key as _unknown_key

TOP_LEVEL_KEYS = ("model", "datasets", "run", "quantization")
DATASET_KEYS = {"type", "build_info", "vis_processor", "text_processor"}


def _fields_of(schemas: Sequence[type]) -> dict[str, dataclasses.Field]:
    fields: dict[str, dataclasses.Field] = {}
    for schema in schemas:
        fields.update(dataclass_fields(schema))
    return fields


def run_schema_for(task_name: str | None) -> type:
    """The run dataclass for ``task_name``: :class:`RunConfig` plus the task's ``run_schema``
    (one class per schema, so run configs of the same task compare equal)."""
    extra = None
    if task_name is not None and task_name in registry.tasks:
        extra = registry.get_task_class(task_name).run_schema
    if extra is None:
        return RunConfig
    return _combined_run_schema(extra)


@functools.cache
def _combined_run_schema(extra: type) -> type:
    return dataclasses.make_dataclass(f"RunConfig_{extra.__name__}", [], bases=(extra, RunConfig))


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _check_registry_name(problems: list[str], dotted: str, kind: str, name: Any) -> bool:
    reg = registry.kinds[kind]
    if not isinstance(name, str) or name not in reg:
        problems.append(f"{dotted}: " + describe_unknown(reg.kind, str(name), reg.names()))
        return False
    return True


def _validate_run(run: Any, problems: list[str]) -> None:
    if not isinstance(run, dict):
        problems.append("run: must be a mapping of run settings")
        return
    task = run.get("task")
    if task is None or task == "???":
        problems.append(f"run.task: missing; set it to one of: {', '.join(registry.list_tasks())}")
        task = None
    known_task = task if isinstance(task, str) and task in registry.tasks else None
    task_known = known_task is not None
    fields = _fields_of([run_schema_for(known_task)])
    # with an unknown task, keys some task declares cannot be judged: only the task name is reported
    other_task_keys = set() if task_known else {
        k for t in registry.list_tasks() for k in _fields_of([run_schema_for(t)])
    }
    for key, value in run.items():
        if key not in fields:
            if key not in other_task_keys:
                problems.append(_unknown_key("run", key, fields))
            continue
        tp = fields[key].type
        if key in RUN_REGISTRY_KEYS:
            if value is not None and not (key == "task" and value == "???"):
                _check_registry_name(problems, f"run.{key}", RUN_REGISTRY_KEYS[key], value)
        elif not _matches(value, tp):
            problems.append(f"run.{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        elif key in RUN_CHOICES and value not in RUN_CHOICES[key]:
            problems.append(f"run.{key}: {value!r} is not one of {', '.join(RUN_CHOICES[key])}")
    problems += at_least_one(run, "batch_size_train", "batch_size_eval", "accum_grad_iters", "max_epoch")
    if known_task is not None:
        typed = {k: v for k, v in run.items() if k in fields and _matches(v, fields[k].type)}
        # hooks see every key: the value given (when its type is right) or the schema default
        full = {**dataclasses.asdict(run_schema_for(known_task)()), **typed}
        problems.extend(registry.get_task_class(known_task).validate_run(full))
        runner = run.get("runner", RunConfig.runner)
        if isinstance(runner, str) and runner in registry.runners:
            problems.extend(registry.get_runner_class(runner).validate_run(full))


def _validate_processor(problems: list[str], dotted: str, cfg: Any) -> None:
    if cfg is None:
        return
    if not isinstance(cfg, dict) or "name" not in cfg:
        problems.append(f"{dotted}: must be a mapping with a 'name' key naming a processor")
        return
    if not _check_registry_name(problems, f"{dotted}.name", "processors", cfg["name"]):
        return
    valid = registry.get_processor_class(cfg["name"]).init_arg_names()
    for key in cfg:
        if key != "name" and key not in valid:
            problems.append(_unknown_key(dotted, key, valid | {"name"}))


def _validate_model(model: Any, problems: list[str]) -> None:
    if not isinstance(model, dict) or "arch" not in model:
        problems.append(f"model.arch: missing; set it to one of: {', '.join(registry.list_models())}")
        return
    if not _check_registry_name(problems, "model.arch", "models", model["arch"]):
        return
    problems.extend(registry.get_model_class(model["arch"]).validate_config(model))


def _validate_datasets(datasets: Any, problems: list[str]) -> None:
    if not isinstance(datasets, dict):
        problems.append("datasets: must be a mapping {dataset_name: {...}}")
        return
    for name, dcfg in datasets.items():
        where = f"datasets.{name}"
        if not _check_registry_name(problems, where, "builders", name):
            continue
        if not isinstance(dcfg, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        builder_cls = registry.get_builder_class(name)
        valid = DATASET_KEYS | set(builder_cls.extra_config_keys)
        for key in dcfg:
            if key not in valid:
                problems.append(_unknown_key(where, key, valid))
        problems.extend(builder_cls.validate_config(dcfg, where))
        for section in ("vis_processor", "text_processor"):
            procs = dcfg.get(section) or {}
            if not isinstance(procs, dict):
                problems.append(f"{where}.{section}: must be a mapping with 'train' and/or 'eval'")
                continue
            for mode, pcfg in procs.items():
                if mode not in ("train", "eval"):
                    problems.append(_unknown_key(f"{where}.{section}", mode, ["train", "eval"]))
                else:
                    _validate_processor(problems, f"{where}.{section}.{mode}", pcfg)


def validate(cfg: DictConfig | Mapping[str, Any]) -> list[str]:
    """Every problem of a merged config as ``dotted.key: what is wrong and the valid choices``."""
    try:
        cfg = plain_dict(cfg)
    except OmegaConfBaseException as e:
        return [f"{getattr(e, 'full_key', '?')}: cannot resolve interpolation: {e.msg if hasattr(e, 'msg') else e}"]
    problems: list[str] = []
    for key in cfg:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"{key}: " + describe_unknown("top-level key", key, TOP_LEVEL_KEYS).replace("Registered", "Valid"))
    if "model" in cfg:
        _validate_model(cfg["model"], problems)
    if "datasets" in cfg:
        _validate_datasets(cfg["datasets"], problems)
    if "quantization" in cfg:
        problems.extend(validate_quantization(cfg["quantization"], cfg.get("datasets")))
    if "run" not in cfg:
        problems.append("run: missing; an experiment config needs a run section (at least run.task)")
    else:
        _validate_run(cfg["run"], problems)
    return problems


# ---------------------------------------------------------------------------------------------
# loading and merging
# ---------------------------------------------------------------------------------------------
def parse_options(options: Sequence[str] | None) -> DictConfig:
    """``["run.max_epoch=2", "model.prompt='a photo of '"]`` -> a config (values parsed as YAML)."""
    options = list(options or [])
    bad = [o for o in options if "=" not in o or o.startswith("=")]
    if bad:
        raise ConfigError([f"--options {o!r}: expected key=value, e.g. run.max_epoch=2" for o in bad])
    try:
        return OmegaConf.from_dotlist(options)
    except OmegaConfBaseException as e:
        raise ConfigError([f"--options: {e}"]) from e


def _load_yaml(path: str | os.PathLike) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"config file {path} does not exist"])
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # YAML syntax errors come in several types
        raise ConfigError([f"cannot parse YAML: {e}"], source=str(path)) from e
    if not isinstance(cfg, DictConfig):
        raise ConfigError(["the file must hold a mapping with model / datasets / run sections"], source=str(path))
    return cfg


def _shipped_defaults(user: DictConfig) -> DictConfig:
    """Model-type defaults and data set defaults named by ``user`` (unknown names are left to validate)."""
    layers: list[Any] = []
    model = user.get("model")
    if isinstance(model, DictConfig) and model.get("arch") in registry.models:
        model_cls = registry.get_model_class(model.arch)
        model_type = model.get("model_type")
        if model_type is not None and model_type in model_cls.PRETRAINED_MODEL_CONFIG_DICT:
            layers.append({"model": model_cls.default_config(model_type).model})
    datasets = user.get("datasets")
    if isinstance(datasets, DictConfig):
        for name, dcfg in datasets.items():
            if not isinstance(name, str) or name not in registry.builders:
                continue
            builder_cls = registry.get_builder_class(name)
            dtype = dcfg.get("type", "default") if isinstance(dcfg, DictConfig) else "default"
            if dtype in builder_cls.DATASET_CONFIG_DICT:
                layers.append({"datasets": {name: builder_cls.default_config(dtype).datasets[name]}})
    return merge_dict_configs(*layers) if layers else OmegaConf.create({})


def _model_type_problems(user: DictConfig) -> list[str]:
    problems = []
    model = user.get("model")
    if isinstance(model, DictConfig) and model.get("arch") in registry.models:
        model_cls = registry.get_model_class(model.arch)
        mt = model.get("model_type")
        if mt is None:
            problems.append(f"model.model_type: missing; {model.arch} has: {', '.join(model_cls.model_types())}")
        elif mt not in model_cls.PRETRAINED_MODEL_CONFIG_DICT:
            problems.append("model.model_type: " + describe_unknown(f"model type of {model.arch}", mt, model_cls.model_types()).replace("Registered", "Valid"))
    datasets = user.get("datasets")
    if isinstance(datasets, DictConfig):
        for name, dcfg in datasets.items():
            if isinstance(name, str) and name in registry.builders and isinstance(dcfg, DictConfig):
                dtype = dcfg.get("type", "default")
                types = registry.get_builder_class(name).DATASET_CONFIG_DICT
                if dtype not in types:
                    problems.append(f"datasets.{name}.type: " + describe_unknown(f"type of {name}", dtype, list(types)).replace("Registered", "Valid"))
    return problems


class Config:
    """A merged, validated experiment config: ``.model``, ``.datasets`` and a typed ``.run``."""

    def __init__(self, cfg: DictConfig, source: str | None = None):
        self.source = source
        problems = validate(cfg)
        if problems:
            raise ConfigError(problems, source=source)
        run = cfg.get("run")
        schema = run_schema_for(run.get("task"))
        self._cfg = merge_dict_configs({"model": {}, "datasets": {}}, cfg)
        self._cfg.run = merge_dict_configs(OmegaConf.structured(schema), run)
        run_obj = OmegaConf.to_object(self._cfg.run)
        assert isinstance(run_obj, RunConfig)  # run_schema_for always subclasses RunConfig
        self._run = run_obj
        self._quantization: QuantizationConfig | None = None
        if cfg.get("quantization") is not None:
            self._cfg.quantization = merge_dict_configs(OmegaConf.structured(QuantizationConfig), cfg.quantization)
            quant = OmegaConf.to_object(self._cfg.quantization)
            assert isinstance(quant, QuantizationConfig)
            self._quantization = quant

    @classmethod
    def from_file(cls, cfg_path: str | os.PathLike, options: Sequence[str] | None = None) -> "Config":
        """Load ``cfg_path``, apply ``options`` and the shipped defaults, validate."""
        return cls.from_dict(_load_yaml(cfg_path), options, source=str(cfg_path))

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any] | DictConfig, options: Sequence[str] | None = None,
                  source: str | None = None) -> "Config":
        """Like :meth:`from_file` for a config given as a mapping (``source`` names it in errors)."""
        user = merge_dict_configs(cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg)),
                                  parse_options(options))
        user, _ = lavis_compat.translate(user)
        problems = _model_type_problems(user)
        merged = merge_dict_configs(_shipped_defaults(user), user)
        problems += validate(merged)
        if problems:
            raise ConfigError(problems, source=source)
        return cls(merged, source=source)

    # -- access ---------------------------------------------------------------------------------
    @property
    def model(self) -> DictConfig:
        return self._cfg.model

    @property
    def datasets(self) -> DictConfig:
        return self._cfg.datasets

    @property
    def run(self) -> RunConfig:
        """The validated ``run`` section as an instance of :func:`run_schema_for` its task: a
        :class:`RunConfig` with the task's extra fields, plain Python values (lists, dicts)."""
        return self._run

    @property
    def quantization(self) -> QuantizationConfig | None:
        """The validated ``quantization`` section (``quantize.py``), or ``None`` without one."""
        return self._quantization

    # LAVIS-style names
    model_cfg = model
    datasets_cfg = datasets
    run_cfg = run

    @property
    def config(self) -> DictConfig:
        return self._cfg

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(self._cfg, resolve=True)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain dicts and lists."""
        return plain_dict(self._cfg)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the resolved config atomically; a folder gets ``config.yaml`` inside it."""
        from lavis.common.io import atomic_write_text

        path = Path(path)
        if path.suffix not in (".yaml", ".yml"):
            path = path / "config.yaml"
        atomic_write_text(self.to_yaml(), path)
        return path

    def __repr__(self) -> str:
        return f"Config(source={self.source!r})\n{self.to_yaml()}"


__all__ = ["Config", "ConfigError", "validate", "parse_options", "run_schema_for"]
