"""Merge a run's LoRA adapters into its model and save a plain transformers checkpoint.

    python -m lavis.models.vlm merge --cfg-path output/demo_dpo_shapes/config.yaml \\
        --checkpoint output/demo_dpo_shapes/checkpoint_best.pth --out merged/

The model is built from the config's ``model`` block (its base weights and ``lora`` settings),
the run's checkpoint is loaded (strictly), the adapters are merged into the weights and the
transformers model is written with its processor, so that ``from_pretrained(out)`` of the
family's transformers class (or ``AutoModelForImageTextToText``) loads it without lavis. A model
without adapters is saved as it is. The value head of a reward model or PPO policy
(``model.value_head: true``) goes next to the weights as ``value_head.safetensors``; transformers
ignores it, and lavis loads it back for ``value_head: true`` (``load_vlm(out, value_head=True)`` or
``model.checkpoint: out``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

from torch import nn

from lavis.common.errors import CheckpointError

#: the file of a merged model's value head, next to its transformers weights
VALUE_HEAD_FILE = "value_head.safetensors"


def load_value_head(head: nn.Linear, checkpoint: str | os.PathLike) -> bool:
    """Load ``head`` from :data:`VALUE_HEAD_FILE` in the local checkpoint folder when it has one;
    returns whether it did (a Hub repo id or a folder without the file keeps the fresh head)."""
    file = Path(checkpoint).expanduser() / VALUE_HEAD_FILE
    if not file.is_file():
        return False
    from lavis.common.checkpoint import load_state_dict_file

    state = load_state_dict_file(file)
    try:
        head.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{file} does not fit a value head of hidden size {head.in_features} "
                              f"(keys {sorted(state)}): {e}") from e
    return True


def merge_and_save(cfg_path: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike,
                   options: Sequence[str] = ()) -> Path:
    """Build the config's model, load ``checkpoint``, merge LoRA, write ``out``; returns ``out``."""
    from lavis.common.config import Config
    from lavis.common.registry import registry
    from lavis.models.vlm.base import HFVisionLanguageModel

    out = Path(out)
    if out.exists():
        raise SystemExit(f"{out} exists; remove it or give another --out")
    cfg = Config.from_file(cfg_path, list(options))
    cls = registry.get_model_class(cfg.model.arch)
    if not issubclass(cls, HFVisionLanguageModel):
        raise SystemExit(f"model.arch {cfg.model.arch} is not a vision-language model of lavis.models.vlm; "
                         "merge works on those only")
    model = cls.from_config(cfg.model)
    model.load_checkpoint(checkpoint)
    hf_model = model.hf_model.merge_and_unload() if model.has_lora else model.hf_model
    tmp = out.with_name(out.name + ".partial")
    hf_model.save_pretrained(str(tmp))
    model.processor.save_pretrained(str(tmp))
    if model.value_head is not None:
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in model.value_head.state_dict().items()},
                  str(tmp / VALUE_HEAD_FILE))
    os.replace(tmp, out)  # the folder appears complete or not at all
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lavis.models.vlm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge", help="merge LoRA adapters and save a transformers checkpoint")
    merge.add_argument("--cfg-path", required=True, help="the run's config (its output folder holds config.yaml)")
    merge.add_argument("--checkpoint", required=True, help="the run's checkpoint (checkpoint_best.pth, ...)")
    merge.add_argument("--out", required=True, help="folder to write (must not exist)")
    merge.add_argument("--options", nargs="*", default=[], help="config overrides, key=value")
    args = parser.parse_args(argv)
    out = merge_and_save(args.cfg_path, args.checkpoint, args.out, args.options)
    print(f"wrote {out}")
    return 0
