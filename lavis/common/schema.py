"""Checking plain (YAML) values against type annotations and dataclass schemas.

Config validation uses this for the ``run`` section, for model constructor arguments, for the
nested transformers config blocks of a model (``model.vision_config``, ...) and for each data set
builder's ``build_info``. Every function returns problems as ``dotted.key: what is wrong`` strings
and never raises on bad input, so all problems of a config are reported together.

It also holds the typed OmegaConf helpers (:func:`plain_dict`, :func:`load_dict_config`,
:func:`merge_dict_configs`); these do raise on input that is not a mapping.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from lavis.common.errors import ConfigError, describe_unknown

if TYPE_CHECKING:
    from omegaconf import DictConfig


def plain_dict(cfg: Any) -> dict[str, Any]:
    """A config block (``DictConfig``, mapping or ``None``) as a plain ``dict`` with interpolations
    resolved; anything else is a ``TypeError`` naming what it got."""
    if cfg is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        DictConfig = ()  # type: ignore[assignment,misc]
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(cfg, Mapping):
        raise TypeError(f"expected a mapping of config keys, got {type(cfg).__name__}")
    return {str(k): v for k, v in cfg.items()}


def load_dict_config(path: str | os.PathLike[str]) -> DictConfig:
    """The YAML file at ``path`` as a ``DictConfig``; a file whose top level is not a mapping is a
    :class:`ConfigError` naming the file."""
    from omegaconf import DictConfig, OmegaConf

    cfg = OmegaConf.load(Path(path))
    if not isinstance(cfg, DictConfig):
        raise ConfigError([f"the top level must be a mapping of config keys, got a {type(cfg).__name__}"],
                          source=str(path))
    return cfg


def merge_dict_configs(*cfgs: DictConfig | Mapping[str, Any]) -> DictConfig:
    """``OmegaConf.merge`` of mappings, later ones winning; typed as the ``DictConfig`` it always is
    when the first argument is a mapping."""
    from omegaconf import DictConfig, OmegaConf

    if not cfgs or not isinstance(cfgs[0], (DictConfig, Mapping)):
        raise TypeError(f"merge_dict_configs needs mappings, got {[type(c).__name__ for c in cfgs]}")
    merged = OmegaConf.merge(*cfgs)
    assert isinstance(merged, DictConfig)  # OmegaConf.merge keeps the type of its first argument
    return merged


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def type_name(tp: Any) -> str:
    """A short readable name of an annotation: ``int``, ``list of str``, ``float or null``."""
    if _is_union(tp):
        args = typing.get_args(tp)
        named = " or ".join(type_name(a) for a in args if a is not type(None))
        return named + (" or null" if type(None) in args else "")
    origin = typing.get_origin(tp)
    if origin in (list, tuple, collections.abc.Sequence):
        inner = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list of {type_name(inner[0])}" if inner else "list"
    if origin in (dict, collections.abc.Mapping) or tp in (dict, collections.abc.Mapping):
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def matches(value: Any, tp: Any) -> bool:
    """Whether a plain (YAML) value fits the annotation ``tp`` (shallowly for dataclasses)."""
    if tp is Any or tp is object:
        return True
    if isinstance(tp, str):  # an unresolved forward reference: nothing to judge
        return True
    if _is_union(tp):
        return any(matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    origin = typing.get_origin(tp)
    if origin in (list, tuple, collections.abc.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and Ellipsis not in typing.get_args(tp):
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
        return all(matches(v, args[0]) for v in value) if args else True
    if origin in (dict, collections.abc.Mapping) or tp in (dict, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            return False
        key_tp, value_tp = typing.get_args(tp) or (Any, Any)
        return all(matches(k, key_tp) and matches(v, value_tp) for k, v in value.items())
    if dataclasses.is_dataclass(tp):
        return isinstance(value, Mapping)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin is not None:
        tp = origin
    try:
        return isinstance(value, tp)
    except TypeError:  # an annotation we cannot judge
        return True


def unknown_key(dotted: str, key: str, valid: Iterable[str]) -> str:
    """``dotted.key: unknown key 'key'; did you mean ...? Valid keys: ...``"""
    where = f"{dotted}.{key}" if dotted else key
    return f"{where}: " + describe_unknown("key", key, sorted(valid)).replace("Registered keys", "Valid keys")


def at_least_one(values: Mapping[str, Any], *keys: str, prefix: str = "run") -> list[str]:
    """``<prefix>.<key>: must be at least 1, got N`` for each of ``keys`` whose value in ``values``
    is an integer (not a bool) below 1; other values are the type check's to judge."""
    return [f"{prefix}.{key}: must be at least 1, got {values[key]}" for key in keys
            if matches(values.get(key), int) and values[key] < 1]


def dataclass_fields(schema: type) -> dict[str, dataclasses.Field]:
    """The fields of dataclass ``schema`` with their annotations resolved into ``field.type``."""
    hints = typing.get_type_hints(schema)
    fields = {}
    for f in dataclasses.fields(schema):
        f.type = hints.get(f.name, Any)
        fields[f.name] = f
    return fields


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def check_value(value: Any, tp: Any, dotted: str) -> list[str]:
    """Problems of ``value`` against annotation ``tp``, recursing into dataclasses, mappings and
    lists of them."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            return [f"{dotted}: expected a mapping, got {type(value).__name__} {value!r}"]
        return check_mapping(value, tp, dotted)
    if _is_union(tp):
        options = [a for a in typing.get_args(tp) if matches(value, a)]
        if not options:
            return [f"{dotted}: expected {type_name(tp)}, got {type(value).__name__} {value!r}"]
        return check_value(value, options[0], dotted)
    origin = typing.get_origin(tp)
    if origin in (dict, collections.abc.Mapping) and isinstance(value, Mapping):
        key_tp, value_tp = typing.get_args(tp) or (Any, Any)
        if dataclasses.is_dataclass(value_tp):
            problems = []
            for k, v in value.items():
                problems += check_value(v, value_tp, f"{dotted}.{k}")
            return problems
    if origin in (list, collections.abc.Sequence) and isinstance(value, (list, tuple)):
        (inner,) = typing.get_args(tp) or (Any,)
        if dataclasses.is_dataclass(inner):
            problems = []
            for i, v in enumerate(value):
                problems += check_value(v, inner, f"{dotted}[{i}]")
            return problems
    if not matches(value, tp):
        return [f"{dotted}: expected {type_name(tp)}, got {type(value).__name__} {value!r}"]
    return []


def check_mapping(values: Mapping[str, Any], schema: type, dotted: str, *, require: bool = True) -> list[str]:
    """Problems of a mapping against dataclass ``schema``: unknown keys (with close matches), wrong
    types (recursively) and, with ``require``, missing fields that have no default."""
    fields = dataclass_fields(schema)
    problems = []
    for key, value in values.items():
        if key not in fields:
            problems.append(unknown_key(dotted, str(key), fields))
            continue
        problems += check_value(value, fields[key].type, f"{dotted}.{key}" if dotted else str(key))
    if require:
        for name, f in fields.items():
            if _required(f) and name not in values:
                problems.append(f"{dotted}.{name}: missing; expected {type_name(f.type)}")
    return problems


def check_call_arguments(values: Mapping[str, Any], func: Any, dotted: str) -> list[str]:
    """Type problems of keyword ``values`` passed to ``func`` (from its annotations); unknown
    names are left to the caller, which knows what else is allowed."""
    import inspect

    try:
        hints = typing.get_type_hints(func)
    except Exception:  # annotations that do not resolve at run time: nothing to judge
        return []
    params = inspect.signature(func).parameters
    problems = []
    for key, value in values.items():
        if key in params and key in hints:
            problems += check_value(value, hints[key], f"{dotted}.{key}")
    return problems


__all__ = [
    "plain_dict",
    "type_name",
    "matches",
    "unknown_key",
    "dataclass_fields",
    "check_value",
    "check_mapping",
    "check_call_arguments",
    "check_hf_config",
]


def check_hf_config(values: Mapping[str, Any], config_cls: type, dotted: str) -> list[str]:
    """Problems of a nested block meant for a transformers config class (``BlipVisionConfig``,
    ...): keys the class does not know (transformers would silently keep them as attributes) and
    values of the wrong type, from the class's annotations or, where it has none, its defaults."""
    import inspect

    hints: dict[str, Any] = {}
    for klass in reversed(config_cls.__mro__):
        try:
            hints.update(typing.get_type_hints(klass))
        except Exception:  # an annotation that does not resolve: leave that class's hints out
            continue
    params = {
        n for n, p in inspect.signature(getattr(config_cls, "__init__")).parameters.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    try:
        defaults = config_cls().to_dict()
    except Exception:  # a config class that cannot be built without arguments
        defaults = {}
    valid = params | set(defaults) | {h for h in hints if not h.startswith("_")}
    problems = []
    for key, value in values.items():
        where = f"{dotted}.{key}"
        if key not in valid:
            problems.append(unknown_key(dotted, str(key), valid) + f" (of transformers' {config_cls.__name__})")
        elif key in hints and typing.get_origin(hints[key]) is not typing.ClassVar:
            problems += check_value(value, hints[key], where)
        elif defaults.get(key) is not None and value is not None:
            default_type = type(defaults[key])
            tp = float if default_type is float else default_type
            if not matches(value, tp):
                problems.append(f"{where}: expected {type_name(tp)}, got {type(value).__name__} {value!r}")
    return problems
