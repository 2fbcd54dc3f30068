"""The shapes post-training builders: records in each format, wrong answers, filters, LLaVA JSON."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from PIL import Image

from lavis.common.registry import registry
from lavis.datasets.builders.chat_builders import wrong_answer
from lavis.datasets.builders.chat_data import ChatRecordsDataset, check_records
from lavis.datasets.synthetic.shapes import ShapesConfig


def build(name: str, root, **build_info):
    cls = registry.get_builder_class(name)
    info = {"storage": str(root), "generator": {"image_size": 32, "num_train": 6, "num_val": 3, "num_test": 2},
            **build_info}
    cfg = OmegaConf.merge(cls.default_config().datasets[name], {"build_info": info})
    assert cls.validate_config(OmegaConf.to_container(cfg), f"datasets.{name}") == []
    return cls(cfg).build_datasets()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("shapes") / "data"


def test_chat_records_are_llava_conversations_with_their_answer(root):
    splits = build("shapes_vqa_chat", root)
    assert {k: len(v) for k, v in splits.items()} == {"train": 24, "val": 12, "test": 8}  # 4 questions per image
    item = splits["val"][0]
    human, gpt = item["conversations"]
    assert human["from"] == "human" and human["value"].startswith("<image>\n") and human["value"].endswith("?")
    assert gpt == {"from": "gpt", "value": item["answer"]}
    assert len(item["images"]) == 1 and isinstance(item["images"][0], Image.Image)
    batch = splits["val"].collater([splits["val"][i] for i in range(3)])
    assert set(batch) >= {"id", "conversations", "images", "answer", "question_type"} and len(batch["id"]) == 3


def test_preference_pairs_reject_a_wrong_answer_of_the_same_type(root):
    gen = ShapesConfig(image_size=32, num_train=6, num_val=3, num_test=2)
    pools = {"color": set(gen.colors), "shape": set(gen.kinds), "count": {"one", "two", "three"},
             "exists": {"yes", "no"}}
    for item in build("shapes_vqa_preference", root)["train"]:
        assert item["chosen"] != item["rejected"]
        assert {item["chosen"], item["rejected"]} <= pools[item["question_type"]]
        assert item["prompt"][-1]["from"] == "human"
    assert wrong_answer("exists", "yes", gen, 7) == "no"
    with pytest.raises(ValueError, match="no answer pool"):
        wrong_answer("where", "left", gen, 0)


def test_grpo_prompts_filter_and_cut(root):
    splits = build("shapes_vqa_grpo", root, question_types=["color"], max_records=2)
    assert len(splits["train"]) == 2
    item = splits["train"][1]
    assert item["question_type"] == "color" and item["solution"] in ShapesConfig().colors
    cls = registry.get_builder_class("shapes_vqa_grpo")
    bad = {"storage": "x", "question_types": ["where"], "max_records": 0}
    problems = cls.validate_config({"build_info": bad}, "datasets.shapes_vqa_grpo")
    assert any("question_types: 'where' is not one of count, color, shape, exists" in p for p in problems)
    assert any("max_records: must be at least 1" in p for p in problems)


def test_llava_json_records_load_multi_image(tmp_path):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / name)
    records = [{"id": "x1", "image": ["a.png", "b.png"], "conversations": [
        {"from": "human", "value": "<image>\n<image>\nsame?"}, {"from": "gpt", "value": "yes"}]}]
    check_records(records, "conversation", "llava.json")
    item = ChatRecordsDataset(records, tmp_path)[0]
    assert len(item["images"]) == 2 and "image" not in item
    with pytest.raises(ValueError, match=r"record 0 \(id 'x1'\) lacks \['chosen', 'rejected'\]"):
        check_records([{"id": "x1", "image": "a.png", "prompt": []}], "preference", "pairs.json")
