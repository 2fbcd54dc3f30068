"""The typed schema of the ``quantization`` section of a config (read by ``quantize.py``).

:func:`validate_quantization` is part of the one config check (:func:`lavis.common.config.validate`):
unknown keys, wrong types, a method that is not registered or does not support the scheme, a
calibration data set the config does not build, and bad method options are reported together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping

from lavis.common.errors import describe_unknown
from lavis.common.schema import check_mapping

#: scheme -> weight bits, activation bits (16: not quantized)
SCHEME_BITS: dict[str, tuple[int, int]] = {"w4a16": (4, 16), "w8a16": (8, 16), "w8a8": (8, 8)}
#: the model parts ``targets`` may name (properties of the vision-language model seam)
TARGET_PARTS = ("language_model", "vision_tower", "projector")


@dataclass
class CalibrationConfig:
    """Where the calibration samples come from."""

    dataset: str = "???"  # a data set of the config's datasets section
    split: str = "train"
    num_samples: int = 64  # samples run through the float model
    batch_size: int = 8
    max_rows: int = 4096  # input rows (tokens) kept per layer for methods that need them (awq)


@dataclass
class QuantizationConfig:
    """Keys of the ``quantization`` section."""

    method: str = "rtn"  # a registered quantization method: rtn, gptq, awq, smoothquant
    scheme: str = "w4a16"  # w4a16, w8a16 (weight-only) or w8a8 (weights and activations)
    group_size: int = 0  # input features that share a scale; 0: one scale per output channel
    symmetric: bool = True  # zero points fixed at 0; false fits one per group
    targets: List[str] = field(default_factory=lambda: ["language_model"])
    skip_layers: List[str] = field(default_factory=lambda: ["lm_head"])  # globs over layer names, kept in float
    options: Dict[str, Any] = field(default_factory=dict)  # the method's settings (its Options dataclass)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    evaluate: bool = True  # score the model on run.test_splits before and after
    speed_samples: int = 8  # prompts generated from (batch 1) to measure tokens per second


def _int_at_least(problems: list[str], dotted: str, value: Any, low: int) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value < low:
        problems.append(f"{dotted}: must be at least {low}, got {value}")


def validate_quantization(section: Any, datasets: Any) -> list[str]:
    """Every problem of a ``quantization`` section as ``quantization.key: what``; ``datasets`` is
    the config's ``datasets`` section (the calibration data set must be one of them)."""
    from lavis.common.registry import registry

    if not isinstance(section, Mapping):
        return ["quantization: must be a mapping (method, scheme, group_size, calibration, ...)"]
    problems = check_mapping(section, QuantizationConfig, "quantization")
    q: dict[str, Any] = {**QuantizationConfig().__dict__, **section}
    scheme, method = q["scheme"], q["method"]
    if isinstance(scheme, str) and scheme not in SCHEME_BITS:
        problems.append(f"quantization.scheme: {scheme!r} is not one of {', '.join(SCHEME_BITS)}")
    if isinstance(method, str) and method not in registry.quantizers:
        problems.append("quantization.method: " + describe_unknown("quantization method", method, registry.list_quantizers()))
    elif isinstance(method, str):
        cls = registry.get_quantizer_class(method)
        if scheme in SCHEME_BITS and scheme not in cls.schemes:
            problems.append(f"quantization.scheme: {method} does not do {scheme}; it does {', '.join(cls.schemes)}")
        if isinstance(q["options"], Mapping):
            problems += check_mapping(q["options"], cls.Options, "quantization.options")
    group = q["group_size"]
    _int_at_least(problems, "quantization.group_size", group, 0)
    if scheme == "w8a8" and (group != 0 or q["symmetric"] is not True):
        problems.append("quantization: w8a8 needs group_size 0 and symmetric true (one int8 scale per output channel)")
    for part in q["targets"] if isinstance(q["targets"], list) else []:
        if part not in TARGET_PARTS:
            problems.append(f"quantization.targets: {part!r} is not one of {', '.join(TARGET_PARTS)}")
    if isinstance(q["targets"], list) and not q["targets"]:
        problems.append(f"quantization.targets: empty; name at least one of {', '.join(TARGET_PARTS)}")
    calib = section.get("calibration") or {}
    if isinstance(calib, Mapping):
        name = calib.get("dataset", "???")
        built = list(datasets) if isinstance(datasets, Mapping) else []
        if name == "???" or name not in built:
            problems.append(f"quantization.calibration.dataset: {'missing' if name == '???' else repr(name)}; name a data "
                            f"set of the datasets section ({', '.join(map(str, built)) or 'none there'})")
        for key, low in (("num_samples", 1), ("batch_size", 1), ("max_rows", 1)):
            _int_at_least(problems, f"quantization.calibration.{key}", calib.get(key), low)
    _int_at_least(problems, "quantization.speed_samples", q["speed_samples"], 0)
    return problems
