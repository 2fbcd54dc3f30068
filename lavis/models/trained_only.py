"""Checkpoints that hold only the trained parameters of a model, and how they load again.

With LoRA adapters or a frozen vision tower most of a model's state dict is its base: the weights
it was built with, which training does not change. A *trained-only* checkpoint keeps every entry
of the state dict except the frozen parameters (``requires_grad`` off) that kept their values: the
trained parameters, frozen ones that changed anyway (momentum encoders, see :class:`FrozenWatch`),
all buffers (running statistics change even in frozen modules) and extra state. Next to the
weights it records what it is (:func:`select`)::

    kind              "trained_only"
    keys              the state-dict keys it holds
    base              the weight keys of the model block of the run (arch, model_type,
                      pretrained/finetuned and their switches, a family's own such as
                      ``checkpoint``), local paths made absolute
    model             the whole model block of the run (LoRA settings and the like)
    base_keys         the keys it left out, as :func:`canonical_key` names them
    base_fingerprint  a hash of the left-out tensors (a strided sample of each, rounded to bf16)

:func:`load` puts such weights onto a model only when the model has every key and its base
tensors hash to the recorded fingerprint; otherwise one :class:`CheckpointError` says what to do.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from lavis.common.checkpoint import RecordedStateDict
from lavis.common.errors import CheckpointError
from lavis.common.run_schema import RUN_CHOICES

KIND = "trained_only"
#: ``run.save_weights``: ``auto`` saves trained-only when some parameters are frozen and the model
#: block names weight files for the rest; ``trained`` whenever some are frozen; ``all`` never
SAVE_MODES = RUN_CHOICES["save_weights"]
_SAMPLE = 512  # values hashed per tensor


def canonical_key(model: nn.Module, key: str) -> str:
    """``key`` as the model names it without training wrappers (``model.canonical_state_key``
    where the model has one, e.g. the VLM seam strips peft's LoRA wrapping)."""
    rename: Callable[[str], str] | None = getattr(model, "canonical_state_key", None)
    return rename(key) if rename is not None else key


def frozen_keys(model: nn.Module) -> set[str]:
    """State-dict names of the parameters that do not train (tied aliases included)."""
    return {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}


class FrozenWatch:
    """Which frozen parameters (``requires_grad`` off) change anyway, e.g. momentum encoders
    updated in place by an exponential moving average: they belong in a trained-only checkpoint.

    Made when training starts, from the model as built; :meth:`changed` compares each frozen
    parameter's float64 sum and norm (over all its values, on each rank's own shard) with that
    start and gathers the answer of every rank (collective under torch.distributed)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.start = self._stats()

    def _stats(self) -> dict[str, tuple[float, float]]:
        stats = {}
        for name, p in self.model.named_parameters(remove_duplicate=False):
            if not p.requires_grad:
                t = p.detach()
                t = t.to_local() if hasattr(t, "to_local") else t  # an FSDP shard: this rank's part
                stats[name] = (float(torch.sum(t, dtype=torch.float64)),
                               float(torch.linalg.vector_norm(t, dtype=torch.float64)))
        return stats

    def changed(self) -> set[str]:
        """Names of the frozen parameters whose values changed since the start, on any rank."""
        from lavis.common import dist

        mine = {k for k, v in self._stats().items() if self.start.get(k) != v}
        return set().union(*dist.all_gather_object(mine))


def fingerprint(state: Mapping[str, torch.Tensor], keys: Any) -> str:
    """A hash of the tensors ``state[k]`` for ``keys``: names, shapes and up to 512 evenly spaced
    values of each, rounded to bf16 (so a base held in bf16 matches its fp32 file). Collective for
    tensors sharded by FSDP (each is gathered in turn), so call it on every rank."""
    digest = hashlib.sha256()
    for key in sorted(keys):
        t = state[key].detach()
        if hasattr(t, "full_tensor"):  # a DTensor shard (FSDP): every rank gathers the same tensors in order
            t = t.full_tensor()
        flat = t.reshape(-1)
        if flat.numel() > _SAMPLE:
            flat = flat[torch.linspace(0, flat.numel() - 1, _SAMPLE, device=flat.device).long()]
        digest.update(f"{key}{tuple(t.shape)}".encode())
        digest.update(flat.float().to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes())
    return digest.hexdigest()


def names_weight_files(model_cfg: Mapping[str, Any], model: nn.Module) -> bool:
    """Whether a ``model`` block loads its weights from files (a zoo source, a local
    ``finetuned``/``pretrained`` path, or a family's ``BASE_WEIGHT_KEYS`` such as ``checkpoint``),
    rather than initialising them at random."""
    from lavis.zoo.entries import default_sources

    return bool(default_sources(model_cfg)) or any(model_cfg.get(k) for k in getattr(model, "BASE_WEIGHT_KEYS", ()))


def base_block(model_cfg: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """The keys of ``model_cfg`` that say where the base weights come from; local files absolute."""
    from lavis.models.base_model import RESERVED_MODEL_KEYS

    keys = RESERVED_MODEL_KEYS | set(getattr(model, "BASE_WEIGHT_KEYS", ()))
    block = {k: v for k, v in model_cfg.items() if k in keys}
    for key in ("pretrained", "finetuned", *getattr(model, "BASE_WEIGHT_KEYS", ())):
        value = block.get(key)
        if isinstance(value, str) and Path(value).expanduser().exists():
            block[key] = str(Path(value).expanduser().resolve())
    return block


def select(
    model: nn.Module, state: Mapping[str, torch.Tensor], model_cfg: Mapping[str, Any], mode: str,
    changed: Any = (),
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """``(weights, record)`` to save from the full ``state`` of ``model`` (built from
    ``model_cfg``): all of it and ``None`` for a full checkpoint, else the trained-only subset and
    its record. ``mode`` is one of :data:`SAVE_MODES`; ``changed`` names frozen parameters that
    changed all the same (:meth:`FrozenWatch.changed`), which are kept."""
    if mode not in SAVE_MODES:
        raise ValueError(f"save mode must be one of {SAVE_MODES}, got {mode!r}")
    frozen = (frozen_keys(model) - set(changed)) & set(state)
    if mode == "all" or not frozen or (mode == "auto" and not names_weight_files(model_cfg, model)):
        return dict(state), None
    base = {canonical_key(model, k): state[k] for k in frozen}
    kept = {k: v for k, v in state.items() if k not in frozen}
    record = {"kind": KIND, "keys": sorted(kept), "base": base_block(model_cfg, model), "model": dict(model_cfg),
              "base_keys": sorted(base), "base_fingerprint": fingerprint(base, base)}
    return kept, record


def describe(record: Mapping[str, Any]) -> str:
    """The base of a record in words: ``qwen2_vl tiny, finetuned=/x/sft/checkpoint_best.pth``."""
    base = dict(record.get("base") or {})
    head = " ".join(str(base.pop(k)) for k in ("arch", "model_type") if base.get(k) is not None)
    rest = ", ".join(f"{k}={v}" for k, v in sorted(base.items()) if v not in (None, False, ""))
    return f"{head or 'a model'}{', ' + rest if rest else ''}"


def base_problem(model: nn.Module, record: Mapping[str, Any], *, exact: bool) -> str | None:
    """Why ``model``'s base does not fit ``record`` (``None`` when it does): base keys missing,
    (with ``exact``) keys the run's model did not have, or base tensors that differ."""
    saved = set(record["keys"])
    state = {canonical_key(model, k): v for k, v in model.state_dict().items() if k not in saved}
    wanted = set(record["base_keys"])
    missing = sorted(wanted - set(state))
    if missing:
        return f"this model lacks {len(missing)} of the base keys, e.g. {missing[:3]}"
    extra = sorted(set(state) - wanted)
    if exact and extra:
        return f"this model has {len(extra)} keys the run's model did not, e.g. {extra[:3]}"
    if fingerprint(state, wanted) != record["base_fingerprint"]:
        return "the base weights of this model differ from the ones the run trained on"
    return None


def key_problem(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> str | None:
    """Why ``weights`` cannot go into ``model`` whatever its base (``None`` when they can): keys
    the model lacks, or tensors of other shapes."""
    state = model.state_dict()
    lacking = sorted(set(weights) - set(state))
    if lacking:
        return f"this model lacks {len(lacking)} of its keys, e.g. {lacking[:3]}"
    shapes = sorted(k for k in weights if tuple(state[k].shape) != tuple(weights[k].shape))
    if shapes:
        return f"{len(shapes)} of its tensors have other shapes in this model, e.g. {shapes[:3]}"
    return None


def check(model: nn.Module, weights: RecordedStateDict, where: str, *, exact: bool = True, base: bool = True) -> None:
    """Raise :class:`CheckpointError`, saying what to do, when trained-only ``weights`` (read from
    ``where``) do not fit ``model``: :func:`key_problem`, and with ``base`` :func:`base_problem`."""
    record = weights.record
    problem = key_problem(model, weights) or (base_problem(model, record, exact=exact) if base else None)
    if problem is None:
        return
    lora = (record.get("model") or {}).get("lora")
    raise CheckpointError(
        f"{where} holds only the trained parameters ({len(weights)} tensors) of a run on {describe(record)}, "
        f"and {problem}. Load it onto the model that run trained: build it from the run's model block "
        f"(config.yaml in its output folder{', with its lora settings ' + repr(lora) if lora else ''}), or name "
        "this file as model.finetuned (its base is then loaded first). To save whole models instead, train "
        "with run.save_weights: all."
    )


def load(
    model: nn.Module, weights: RecordedStateDict, where: str, *, exact: bool = True,
    load_state: Callable[[nn.Module, dict[str, torch.Tensor]], tuple[list[str], list[str]]] | None = None,
) -> None:
    """Load trained-only ``weights`` (read from ``where``) onto ``model``, whose other parameters
    must be the recorded base (:func:`check`). ``exact``: the model may have no keys beyond the
    run's. ``load_state(model, weights) -> (missing, unexpected)`` does the loading (default
    ``load_state_dict(strict=False)``; the runners pass one that handles FSDP)."""
    check(model, weights, where, exact=exact)
    if load_state is None:
        missing, unexpected = model.load_state_dict(dict(weights), strict=False)
    else:
        missing, unexpected = load_state(model, dict(weights))
    assert not unexpected and not set(missing) & set(weights), (missing, unexpected)


def record_of(weights: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trained-only record of weights read by :func:`lavis.common.checkpoint.load_state_dict_file`,
    ``None`` for full weights."""
    record = weights.record if isinstance(weights, RecordedStateDict) else None
    return record if isinstance(record, dict) and record.get("kind") == KIND else None
