"""``python quantize.py --cfg-path x.yaml``: score the float model, calibrate, quantize, score the
quantized model, save it, and report both side by side.

The config is an experiment config (``model``, ``datasets``, ``run``) plus a ``quantization``
section (:class:`lavis.common.quant_schema.QuantizationConfig`). The run's task supplies the
calibration forward pass (``train_step``) and the scores (``evaluation`` on ``run.test_splits``).
Written to ``run.output_dir``: ``model.safetensors`` (the quantized weights and their record),
``config.yaml`` (the config that loads them: ``python evaluate.py --cfg-path <it>``) and
``quantization_report.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch.utils.data import DataLoader, Subset

from lavis.common.errors import ConfigError

if TYPE_CHECKING:
    from lavis.common.config import Config
    from lavis.tasks.base_task import BaseTask


def _loader(dataset: Any, batch_size: int, collate_of: Any = None) -> DataLoader:
    """Batches of ``dataset`` in order, collated by the collater of ``collate_of`` (or of ``dataset``)."""
    from lavis.runners.data import collate_fn_for

    collate = collate_fn_for(dataset if collate_of is None else collate_of)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)


def evaluate_splits(task: "BaseTask", model: Any, datasets: dict, cfg: "Config", tag: str) -> dict[str, Any]:
    """``{"<dataset>/<split>": metrics}`` of the task's evaluation on ``run.test_splits``."""
    scores: dict[str, Any] = {}
    for name, splits in datasets.items():
        for split in cfg.run.test_splits:
            if split in splits:
                loader = _loader(splits[split], cfg.run.batch_size_eval)
                results = task.evaluation(model, loader, progress=False)
                scores[f"{name}/{split}"] = task.after_evaluation(results, split, tag, splits[split])
    return scores


def speed_prompt(samples: dict[str, Any]) -> dict[str, Any] | None:
    """A generation input from one collated sample: its prompt turns (conversation and preference
    data), else its first image with the model's own prompt (benchmarks, captions); ``None``
    without either."""
    from lavis.tasks.post_training.common import prompts_of

    images = samples.get("images")
    if samples.get("conversations") is not None or samples.get("prompt") is not None:
        return {"conversations": prompts_of(samples), "images": images or [[]]}
    if images and images[0]:
        return {"image": [images[0][0]]}
    return None


@torch.no_grad()
def generation_speed(model: Any, dataset: Any, num_samples: int, new_tokens: int = 16) -> float | None:
    """Tokens per second of greedy generation of exactly ``new_tokens`` tokens, one prompt at a time,
    from the first ``num_samples`` items of ``dataset`` (see :func:`speed_prompt`); ``None`` for a
    model without the seam's ``generate_ids``, with ``num_samples`` 0 or items without prompts."""
    if not hasattr(model, "generate_ids") or num_samples == 0:
        return None
    collate = _loader(dataset, 1).collate_fn
    inputs = [speed_prompt(collate([dataset[i]])) for i in range(min(num_samples, len(dataset)))]
    prompts = [p for p in inputs if p is not None]
    if not prompts:
        return None
    model.generate_ids(prompts[0], max_new_tokens=2)  # warm-up
    start = time.perf_counter()
    for prompt in prompts:
        model.generate_ids(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return len(prompts) * new_tokens / (time.perf_counter() - start)


def quantize_run(cfg: "Config") -> dict[str, Any]:
    """Quantize the config's model as its ``quantization`` section says; returns the report."""
    from lavis.common.io import atomic_write_text
    from lavis.common.utils import seed_everything
    from lavis.quantization.apply import weight_bytes
    from lavis.quantization.quantize import quantize_model
    from lavis.quantization.storage import save_quantized
    from lavis.runners.data import dataset_len
    from lavis.tasks import setup_task

    q = cfg.quantization
    if q is None:
        raise ConfigError(["quantization: missing; quantize.py needs a quantization section (method, scheme, "
                           "calibration, ...; see docs/quantization.md)"], source=cfg.source)
    seed_everything(cfg.run.seed)
    task = setup_task(cfg)
    datasets = task.build_datasets(cfg)
    calib_splits = datasets[q.calibration.dataset]
    if q.calibration.split not in calib_splits:
        raise ConfigError([f"quantization.calibration.split: {q.calibration.dataset} has no split {q.calibration.split!r}; "
                           f"it has {', '.join(calib_splits)}"], source=cfg.source)
    model = task.build_model(cfg).eval()
    speed_set = next((s[cfg.run.test_splits[0]] for s in datasets.values() if cfg.run.test_splits
                      and cfg.run.test_splits[0] in s), calib_splits[q.calibration.split])

    def measure(tag: str) -> dict[str, Any]:
        return {"weight_bytes": weight_bytes(model), "tokens_per_s": generation_speed(model, speed_set, q.speed_samples),
                "scores": evaluate_splits(task, model, datasets, cfg, tag) if q.evaluate else {}}

    report: dict[str, Any] = {"quantization": cfg.to_dict()["quantization"], "float": measure("float")}
    full = calib_splits[q.calibration.split]
    size = dataset_len(full, f"{q.calibration.dataset}/{q.calibration.split}")
    calib = _loader(Subset(full, range(min(q.calibration.num_samples, size))), q.calibration.batch_size, full)
    start = time.perf_counter()
    record = quantize_model(model, q, calib, lambda b: task.train_step(model, b))
    report["quantized"] = {"seconds": time.perf_counter() - start, "layers": len(record["layers"]), **measure("quantized")}
    out = Path(cfg.run.output_dir)
    weights = save_quantized(model, record, out / "model.safetensors")
    report["weights"] = str(weights)
    report["config"] = str(write_load_config(cfg, weights, out / "config.yaml"))
    atomic_write_text(json.dumps(report, indent=1, default=str), out / "quantization_report.json")
    print(format_report(report))
    return report


def write_load_config(cfg: "Config", weights: Path, path: Path) -> Path:
    """The experiment config without its ``quantization`` section and with ``model.finetuned`` at
    the quantized weights: ``evaluate.py --cfg-path`` it to score the saved model. Its ``run.amp``
    is ``none``: quantize.py scores in fp32 (no autocast), so the written config reproduces the
    report's scores."""
    from omegaconf import OmegaConf

    from lavis.common.io import atomic_write_text

    plain = cfg.to_dict()
    plain.pop("quantization", None)
    plain["model"].update(finetuned=str(weights.resolve()), load_finetuned=True, load_pretrained=False)
    plain["run"]["output_dir"] = str(path.parent / "eval")
    plain["run"]["amp"] = "none"
    atomic_write_text(OmegaConf.to_yaml(OmegaConf.create(plain)), path)
    return path


def format_report(report: dict[str, Any]) -> str:
    """The report as a table: one row per score and per measurement, float and quantized side by side."""
    f, qz = report["float"], report["quantized"]
    rows = [("weights (MiB)", f["weight_bytes"] / 2**20, qz["weight_bytes"] / 2**20),
            ("generation (tokens/s)", f["tokens_per_s"], qz["tokens_per_s"])]
    for split, metrics in f["scores"].items():
        for key, value in metrics.items():
            rows.append((f"{split} {key}", value, qz["scores"].get(split, {}).get(key)))
    q = report["quantization"]
    head = (f"quantization: {q['method']} {q['scheme']} group_size={q['group_size']} symmetric={q['symmetric']}: "
            f"{qz['layers']} layers in {qz['seconds']:.1f} s")

    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    width = max(len(r[0]) for r in rows)
    lines = [head, f"{'':<{width}}  {'float':>10}  {'quantized':>10}"]
    lines += [f"{name:<{width}}  {cell(a):>10}  {cell(b):>10}" for name, a, b in rows]
    return "\n".join(lines)


def quantize_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python quantize.py --cfg-path X.yaml [--options k=v ...]``; returns the report."""
    from lavis.cli import build_parser
    from lavis.common.config import Config

    args = build_parser("Quantize a lavis model from a config with a quantization section.").parse_args(argv)
    return quantize_run(Config.from_file(args.cfg_path, args.options))


def console_quantize() -> None:
    """The ``lavis-quantize`` console script."""
    from lavis.cli import console

    console(quantize_main)
