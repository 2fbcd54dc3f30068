"""Every registered name of every kind works, not models only: processors process an item of
their modality, builders build every split of a fixture and give a batch, LR schedules give
sane rates. A new entry is tested the moment it is registered; one without a fixture here
fails with a message that says what to add."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from lavis.common.config import Config
from lavis.common.registry import registry
from lavis.tasks.base_task import BaseTask
from tests.unit.datasets.benchmark_formats import BENCHMARK_LAYOUTS, benchmark_fixture
from tests.unit.datasets.real_formats import LAYOUTS, builder_fixture


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


# -- processors ---------------------------------------------------------------------------------
def _image() -> Image.Image:
    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(48, 80, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def check_image_output(proc, out: Any) -> None:
    size = proc.image_size
    assert isinstance(out, torch.Tensor) and out.shape == (3, size, size) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.std() > 0


def check_text_output(proc, out: Any) -> None:
    assert isinstance(out, str) and out == out.strip() and "red circle" in out and "!" not in out


def _video() -> str:
    import tempfile

    from tests.unit.datasets.real_formats import video_bytes

    path = Path(tempfile.mkdtemp()) / "clip.mp4"
    path.write_bytes(video_bytes(1))
    return str(path)


def check_video_output(proc, out: Any) -> None:
    size = proc.image_size
    assert isinstance(out, torch.Tensor) and out.shape == (3, proc.num_frames, size, size) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.std() > 0


SAMPLES: dict[str, tuple[Callable[[], Any], Callable[[Any, Any], None]]] = {
    "image": (_image, check_image_output),
    "text": (lambda: "  A RED   circle!  ", check_text_output),
    "video": (_video, check_video_output),
}


@pytest.mark.parametrize("name", registry.list_processors())
def test_every_processor_processes_an_item_of_its_modality(name):
    cls = registry.get_processor_class(name)
    assert cls.modality in SAMPLES, f"processor {name} has modality {cls.modality!r}; add a sample for it to SAMPLES"
    make, check = SAMPLES[cls.modality]
    proc = cls.from_config({"name": name})
    check(proc, proc(make()))


# -- dataset builders ---------------------------------------------------------------------------
def shapes_caption_fixture(tmp_path: Path) -> dict:
    return {"build_info": {"storage": str(tmp_path / "shapes"),
                           "generator": {"image_size": 32, "num_train": 4, "num_val": 2, "num_test": 2}}}


def web_shards_fixture(tmp_path: Path) -> dict:
    from tests.unit.datasets.web_shards import write_shards

    write_shards(tmp_path / "shards")
    return {"build_info": {"shards": {"storage": str(tmp_path / "shards")}},
            "vis_processor": {"train": {"image_size": 32}}}


#: a builder name -> its config overrides on small fixture files (written under tmp_path)
BUILDER_FIXTURES: dict[str, Callable[[Path], dict]] = {
    "shapes_caption": shapes_caption_fixture,
    # the real data sets: published-format files laid out as the download does (tests/unit/datasets/real_formats.py)
    **{name: builder_fixture(name) for name in LAYOUTS},
    "shapes_vqa_chat": shapes_caption_fixture,
    "shapes_vqa_preference": shapes_caption_fixture,
    "shapes_vqa_grpo": shapes_caption_fixture,
    **{name: web_shards_fixture for name in ("cc3m", "cc12m", "laion400m")},
    "shapes_retrieval": shapes_caption_fixture,
    "shapes_vqa": shapes_caption_fixture,
    # the vision-language benchmarks: their published files (tests/unit/datasets/benchmark_formats.py)
    **{name: benchmark_fixture(name) for name in BENCHMARK_LAYOUTS},
}


@pytest.mark.parametrize("name", registry.list_datasets())
def test_every_builder_builds_every_split_of_a_fixture(name, tmp_path, monkeypatch):
    monkeypatch.setenv("LAVIS_CACHE_HOME", str(tmp_path / "cache"))  # indexes and markers stay in the test
    assert name in BUILDER_FIXTURES, f"builder {name} has no fixture; add one to BUILDER_FIXTURES in this file"
    cls = registry.get_builder_class(name)
    types = sorted(cls.DATASET_CONFIG_DICT)
    assert types, f"builder {name} ships no YAML under lavis/configs/datasets/{name}/"
    for dtype in types:
        shipped = cls.default_config(dtype).datasets[name]
        cfg = OmegaConf.merge(shipped, BUILDER_FIXTURES[name](tmp_path / dtype))
        assert cls.validate_config(OmegaConf.to_container(cfg, resolve=True), f"datasets.{name}") == []
        builder = cls(cfg)
        splits = builder.build_datasets()
        assert splits and set(splits) == set(builder.splits())
        for split, dataset in splits.items():
            assert len(dataset) > 0, (name, dtype, split)
            batch = dataset.collater([dataset[i] for i in range(min(2, len(dataset)))])
            assert isinstance(batch, dict) and batch, (name, split)
            for value in batch.values():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    assert torch.isfinite(value).all()


def test_every_shipped_dataset_yaml_validates():
    for name in registry.list_datasets():
        for dtype in registry.get_builder_class(name).DATASET_CONFIG_DICT:
            cfg = {"datasets": {name: {"type": dtype}}, "run": {"task": "captioning"}}
            Config.from_dict(cfg)  # raises ConfigError naming every problem


# -- LR schedulers ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", registry.list_lr_schedulers())
def test_every_lr_schedule_warms_up_then_stays_within_bounds(name):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = registry.get_lr_scheduler_class(name)(
        opt, init_lr=1e-3, min_lr=1e-5, warmup_lr=1e-6, warmup_steps=4, total_steps=40, steps_per_epoch=10,
        decay_rate=0.5,
    )
    rates = [sched.lr_at(step) for step in range(40)]
    assert all(math.isfinite(r) for r in rates)
    assert rates[0] == pytest.approx(1e-6) and rates[4] == pytest.approx(1e-3)
    assert rates[:5] == sorted(rates[:5])  # linear warm-up rises
    assert all(1e-5 - 1e-12 <= r <= 1e-3 + 1e-12 for r in rates[4:])
    assert opt.param_groups[0]["lr"] == pytest.approx(rates[0])  # applied at construction


# -- runners ------------------------------------------------------------------------------------
#: a runner name -> run settings of a short toy run (the toy task is in tests/toy)
RUNNER_SETTINGS: dict[str, dict[str, Any]] = {
    "runner_epoch": {"max_epoch": 1},  # 96 toy samples, batch 8
    "runner_iter": {"max_iters": 12, "iters_per_inner_epoch": 6},
}


@pytest.mark.parametrize("name", registry.list_runners())
def test_every_runner_trains_checkpoints_and_evaluates_the_toy_task(name, tmp_path):
    from lavis.common.checkpoint import safe_torch_load
    from lavis.common.logger import read_metrics
    from tests.toy.components import build_runner

    assert name in RUNNER_SETTINGS, f"runner {name} has no settings; add a short toy run to RUNNER_SETTINGS"
    runner, _ = build_runner(registry.get_runner_class(name), output_dir=str(tmp_path), **RUNNER_SETTINGS[name])
    result = runner.train()
    losses = [e["values"]["loss"] for e in read_metrics(tmp_path) if e["split"] == "train"]
    assert len(losses) == result["train"]["global_step"] == 12
    assert all(math.isfinite(x) for x in losses) and min(losses[-3:]) < losses[0]
    assert 0 <= result["test"]["toy/test"]["accuracy"] <= 100
    ckpt = safe_torch_load(tmp_path / "checkpoint_latest.pth")
    assert ckpt["runner"] == name and ckpt["state"]["global_step"] == 12


# -- tasks --------------------------------------------------------------------------------------
def captioning_fixture(tmp_path: Path) -> dict:
    return {
        "model": {"arch": "blip_caption", "model_type": "tiny"},
        "datasets": {"shapes_caption": shapes_caption_fixture(tmp_path)},
        "run": {"task": "captioning", "max_len": 8, "min_len": 2, "num_beams": 1, "metrics": ["BLEU"],
                "agg_metric": "Bleu_4",
                "output_dir": str(tmp_path / "out")},
    }


def post_training_fixture(task: str, dataset: str, **run: Any) -> Callable[[Path], dict]:
    def make(tmp_path: Path) -> dict:
        return {
            "model": {"arch": "qwen2_vl", "model_type": "tiny"},
            "datasets": {dataset: shapes_caption_fixture(tmp_path)},
            "run": {"task": task, "max_new_tokens": 3, "output_dir": str(tmp_path / "out"), **run},
        }

    return make


def contract_task_fixture(task: str, arch: str, dataset: str, **run: Any) -> Callable[[Path], dict]:
    """A task on one of the contract test models of tests/helpers/contract_models.py (registered for
    the test by the toy_models fixture below) and a shapes or real-format fixture data set."""

    def make(tmp_path: Path) -> dict:
        data = shapes_caption_fixture(tmp_path) if dataset.startswith("shapes") else builder_fixture(dataset)(tmp_path / "default")
        return {"model": {"arch": arch, "model_type": "tiny"}, "datasets": {dataset: data},
                "run": {"task": task, "output_dir": str(tmp_path / "out"), **run}}

    return make


@pytest.fixture
def toy_models():
    from tests.helpers.contract_models import register_toy_models, unregister

    added = register_toy_models()
    yield
    unregister(added)


#: a task name -> an experiment config on a tiny model and fixture data
TASK_FIXTURES: dict[str, Callable[[Path], dict]] = {
    "retrieval": contract_task_fixture("retrieval", "toy_retrieval", "shapes_retrieval", k_test=10),
    "vqa": contract_task_fixture("vqa", "toy_vqa", "shapes_vqa", inference_method="rank"),
    "classification": contract_task_fixture("classification", "toy_classifier", "imagenet"),
    "multimodal_classification": contract_task_fixture("multimodal_classification", "toy_classifier", "snli_ve"),
    "captioning": captioning_fixture,
    "sft": post_training_fixture("sft", "shapes_vqa_chat"),
    "dpo": post_training_fixture("dpo", "shapes_vqa_preference"),
    "grpo": post_training_fixture("grpo", "shapes_vqa_grpo", num_generations=2, rewards=["answer_accuracy"]),
    "benchmark": lambda tmp_path: {  # trains on ScienceQA-IMG's train split, validates on its test split
        "model": {"arch": "llava", "model_type": "tiny"},
        "datasets": {"scienceqa_img": benchmark_fixture("scienceqa_img")(tmp_path)},
        "run": {"task": "benchmark", "max_new_tokens": 3, "output_dir": str(tmp_path / "out")},
    },
}


@pytest.mark.parametrize("name", registry.list_tasks())
def test_every_task_builds_trains_one_step_and_validates_one_batch(name, tmp_path, toy_models):
    assert name in TASK_FIXTURES, f"task {name} has no fixture; add an experiment config to TASK_FIXTURES"
    torch.manual_seed(0)
    cfg = Config.from_dict(TASK_FIXTURES[name](tmp_path))
    task = registry.get_task_class(name).setup_task(cfg)
    datasets = task.build_datasets(cfg)
    model = task.build_model(cfg)
    data_name = next(iter(datasets))
    train = datasets[data_name][cfg.run.train_splits[0]]
    batch = train.collater([train[i] for i in range(2)])
    out = task.train_step(model, batch)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if name != "grpo":  # GRPO's first step has zero advantages when a group's rewards tie (checked in
        assert any(g.abs().sum() > 0 for g in grads)  # tests/test_registry_post_training.py with a varied reward)
    model.eval()
    split = next(s for s in datasets[data_name] if s not in cfg.run.train_splits)
    evalset = datasets[data_name][split]
    if type(task).evaluation is not BaseTask.evaluation:  # tasks that prepare a split (answer list, class
        from torch.utils.data import DataLoader  # prompts) or score it whole (retrieval): the fixture split

        loader = DataLoader(evalset, batch_size=2, collate_fn=evalset.collater)
        results = task.evaluation(model, loader, progress=False)
        metrics = task.after_evaluation(results, split, 0, evalset)
        assert results and all(task.result_id_key in r for r in results)
        assert 0 <= metrics["agg_metrics"] <= 100
        return
    results = task.valid_step(model, evalset.collater([evalset[i] for i in range(2)]))
    assert len(results) == 2 and all(task.result_id_key in r for r in results)


def test_dpo_rewards_and_margins_reach_metrics_jsonl(tmp_path):
    from lavis.cli import train_main
    from lavis.common.logger import read_metrics

    cfg = TASK_FIXTURES["dpo"](tmp_path)
    cfg["run"].update({"max_epoch": 1, "batch_size_train": 2, "log_freq": 1, "progress_bar": False,
                       "tensorboard": False, "valid_splits": [], "test_splits": []})
    path = tmp_path / "dpo.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    train_main(["--cfg-path", str(path)])
    steps = [e["values"] for e in read_metrics(tmp_path / "out") if e["split"] == "train"]
    assert steps and all({"rewards/margins", "rewards/accuracies", "logps/chosen"} <= set(v) for v in steps)
    assert all(0.0 <= v["rewards/accuracies"] <= 1.0 and math.isfinite(v["rewards/margins"]) for v in steps)


# -- quantization methods -----------------------------------------------------------------------
class _TinySeam(torch.nn.Module):
    """The parts of the model seam quantization reads: a language model and an LM head."""

    def __init__(self) -> None:
        super().__init__()
        self.language_model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 64))
        self.lm_head = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.language_model(x))


@pytest.mark.parametrize("name", registry.list_quantizers())
def test_every_quantizer_quantizes_the_language_model_in_each_of_its_schemes(name):
    from lavis.common.quant_schema import QuantizationConfig
    from lavis.quantization.quantize import quantize_model

    for scheme in registry.get_quantizer_class(name).schemes:
        torch.manual_seed(0)
        model = _TinySeam().eval()
        x = torch.randn(256, 64)
        x[:, :2] *= 10.0  # two outlier channels
        with torch.no_grad():
            ref = model(x)
        group = 32 if scheme == "w4a16" else 0
        record = quantize_model(model, QuantizationConfig(method=name, scheme=scheme, group_size=group),
                                batches=[x[:128], x[128:]], step=model)
        assert sorted(record["layers"]) == ["language_model.0", "language_model.2"]
        assert type(model.lm_head.weight) is torch.nn.Parameter  # skipped by default
        with torch.no_grad():
            error = ((model(x) - ref).norm() / ref.norm()).item()
        assert 0 < error < (0.1 if scheme == "w4a16" else 0.02), (scheme, error)
