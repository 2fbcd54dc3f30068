"""Classification (top-1/top-5, zero-shot prompts and template averaging) and multimodal
classification (NLVR2 / SNLI-VE accuracy) against hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from lavis.common.config import run_schema_for
from lavis.common.errors import ConfigError
from lavis.tasks.classification import ClassificationTask, MultimodalClassificationTask
from lavis.tasks.metrics.errors import MetricError
from tests.helpers.contract_models import ToyClassifier

CLASSES = ["cat", "dog", "cow", "hen", "pig", "ant"]


class Images(torch.utils.data.Dataset):
    """Image ``i`` is filled with ``i``; ``labels[i]`` is its class."""

    def __init__(self, labels: list[int], classnames: list[str] | None = CLASSES):
        self.labels = labels
        if classnames is not None:
            self.classnames = classnames

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": torch.full((3, 2, 2), float(i)), "label": self.labels[i], "instance_id": str(i)}


class PromptScorer(torch.nn.Module):
    """Zero-shot: the score of a prompt is ``table[image, class] + bonus[template]`` (the template is
    told by the prompt's first word), so template averaging shifts every class alike."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table, self.seen = table, []

    def predict_class(self, samples, class_names=None):
        self.seen.append(list(class_names))
        rows = samples["image"][:, 0, 0, 0].long()
        cls = torch.tensor([CLASSES.index(p.split()[-1].rstrip(".")) for p in class_names])
        bonus = torch.tensor([1.0 if p.startswith("art") else 0.0 for p in class_names])
        return self.table[rows][:, cls] + bonus


def run(task, model, data, batch_size=2):
    rows = task.evaluation(model, DataLoader(data, batch_size=batch_size, collate_fn=default_collate), progress=False)
    return rows, task.after_evaluation(rows, "test", 0, data)


def make(tmp_path: Path, **run_keys: Any) -> ClassificationTask:
    return ClassificationTask(run_schema_for("classification")(output_dir=str(tmp_path), **run_keys))


def test_top1_top5_with_template_averaging(tmp_path):
    # the true class of each image sits at rank: image0 -> 1st, image1 -> 3rd, image2 -> 6th, image3 -> 1st
    table = torch.tensor([
        [9, 1, 2, 3, 4, 5],
        [9, 8, 7, 1, 2, 3],
        [6, 5, 4, 3, 2, 1],
        [1, 2, 3, 4, 5, 9],
    ], dtype=torch.float)
    labels = [0, 2, 5, 5]
    model = PromptScorer(table)
    task = make(tmp_path, prompt_templates=["a photo of a {}.", "art of a {}."])
    rows, metrics = run(task, model, Images(labels))
    assert metrics["top1"] == pytest.approx(50.0) and metrics["top5"] == pytest.approx(75.0)
    assert metrics["agg_metrics"] == metrics["top1"]
    assert model.seen[0][:4] == ["a photo of a cat.", "art of a cat.", "a photo of a dog.", "art of a dog."]
    assert rows[1]["top5"] == [0, 1, 2, 5, 4]
    saved = json.loads((tmp_path / "result" / "test_epoch0_metrics.json").read_text())
    assert saved["top5"] == pytest.approx(75.0)


def test_toy_zero_shot_and_head_models_give_class_scores(tmp_path):
    model = ToyClassifier(num_classes=6)
    rows, metrics = run(make(tmp_path), model, Images([0, 1, 2]))
    assert len(rows) == 3 and 0 <= metrics["top1"] <= metrics["top5"] <= 100


def test_class_names_from_the_run_key(tmp_path):
    names = tmp_path / "names.json"
    names.write_text(json.dumps(["kitty", "puppy", "calf", "chick", "piglet", "bug"]))
    task = make(tmp_path, class_names=str(names), prompt_templates=["{}"])
    assert task.prompts(task.class_names(Images([0])))[:2] == ["kitty", "puppy"]
    names.write_text(json.dumps(["a", "b"]))
    with pytest.raises(ConfigError, match="names 2 classes but the data set has 6"):
        task.class_names(Images([0]))
    with pytest.raises(MetricError, match="set run.class_names"):
        make(tmp_path).class_names(Images([0], classnames=None))


def test_named_template_set_is_clips_ensemble(tmp_path):
    task = make(tmp_path, template_set="openai_imagenet")
    prompts = task.prompts(["goldfish"])
    assert len(prompts) == 80 and all("goldfish" in p for p in prompts)


def test_run_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError) as err:
        make(tmp_path, prompt_templates=["no slot"], template_set="mine", class_names="nowhere.json")
    text = str(err.value)
    assert "exactly one '{}'" in text and "run.template_set: 'mine'" in text and "run.class_names" in text


def test_multimodal_classification_accuracy(tmp_path):
    class Fixed(torch.nn.Module):
        def predict_class(self, samples, class_names=None):
            assert class_names is None
            return torch.tensor([[0.1, 0.7, 0.2], [0.9, 0.0, 0.1], [0.2, 0.3, 0.5]])[samples["image"][:, 0, 0, 0].long()]

    task = MultimodalClassificationTask(run_schema_for("multimodal_classification")(output_dir=str(tmp_path)))
    rows, metrics = run(task, Fixed(), Images([1, 1, 2]), batch_size=3)
    assert [r["prediction"] for r in rows] == [1, 0, 2]
    assert metrics["accuracy"] == metrics["agg_metrics"] == pytest.approx(200 / 3)


def test_a_model_that_takes_templates_gets_names_and_templates(tmp_path):
    class Ensemble(torch.nn.Module):  # like CLIP: builds its own prompt ensemble
        def predict_class(self, samples, class_names=None, templates=None):
            self.got = (list(class_names), templates)
            return torch.eye(6)[samples["image"][:, 0, 0, 0].long()]

    model = Ensemble()
    _, metrics = run(make(tmp_path, template_set="simple_imagenet"), model, Images([0, 1, 0]))
    assert model.got == (CLASSES, "simple_imagenet") and metrics["top1"] == pytest.approx(200 / 3)
    run(make(tmp_path, prompt_templates=["a {} here"]), model, Images([0]))
    assert model.got[1] == ["a {} here"]
