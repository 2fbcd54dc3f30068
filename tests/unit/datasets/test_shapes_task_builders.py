"""shapes_retrieval and shapes_vqa: what their splits hold, read from one generated folder."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from lavis.common.registry import registry
from lavis.datasets.builders.shapes_builders import shapes_answer_list
from lavis.datasets.synthetic.shapes import ShapesConfig
from lavis.tasks.metrics.vqa import normalize_answer


def build(name: str, tmp_path: Path) -> dict:
    cls = registry.get_builder_class(name)
    cfg = OmegaConf.merge(cls.default_config().datasets[name], {"build_info": {
        "storage": str(tmp_path / "shapes"), "generator": {"image_size": 32, "num_train": 6, "num_val": 4, "num_test": 3}}})
    return cls(cfg).build_datasets()


def test_shapes_retrieval_splits(tmp_path):
    splits = build("shapes_retrieval", tmp_path)
    train, val = splits["train"], splits["val"]
    assert len(train) == 6 * 5 and len(val) == 4 and len(splits["test"]) == 3
    item = train[0]
    assert item["image"].shape == (3, 64, 64) and isinstance(item["text_input"], str)
    assert sorted({train[i]["image_id"] for i in range(len(train))}) == list(range(6))  # 5 captions per image
    assert len(val.text) == 20 and all(len(val.img2txt[i]) == 5 for i in range(4))
    assert all(val.txt2img[t] == i for i in range(4) for t in val.img2txt[i])
    assert val[2]["index"] == 2


def test_shapes_vqa_splits_and_answer_list(tmp_path):
    splits = build("shapes_vqa", tmp_path)
    train, val = splits["train"], splits["val"]
    assert len(train) == 6 * 4 and len(val) == 4 * 4  # count, colour, kind and presence per image
    answers = val.answer_list
    assert answers == shapes_answer_list(ShapesConfig(image_size=32, num_train=6, num_val=4, num_test=3))
    first = train[0]  # ten identical human answers: one answer, weight 1
    assert len(first["answers"]) == 1 and first["answers"][0] in answers and first["weights"] == [1.0]
    assert len(set(map(normalize_answer, answers))) == len(answers)  # distinct after normalisation
    seen = {a for i in range(len(val)) for a in val[i]["answers"]}
    assert seen <= set(answers) and {"yes", "no"} & seen
    batch = val.collater([val[0], val[1]])
    assert batch["text_input"][0].endswith("?") and len(batch["answers"][0]) == 10


def test_answer_list_follows_the_generator():
    cfg = ShapesConfig(min_shapes=1, max_shapes=2, colors=("red", "blue", "green"), kinds=("circle", "square", "star"))
    assert shapes_answer_list(cfg) == ["one", "two", "red", "blue", "green", "circle", "square", "star", "yes", "no"]
