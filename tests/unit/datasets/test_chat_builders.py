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
    assert any("question_types: 'where' is not one of count, color, shape, exists, locate" in p for p in problems)
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


def _colour_box(image: Image.Image, rgb) -> tuple[int, int, int, int]:
    """Pixel box of the pixels of ``image`` within 30 of ``rgb`` on every channel."""
    import numpy as np

    arr = np.asarray(image.convert("RGB")).astype(int)
    ys, xs = np.nonzero((np.abs(arr - np.asarray(rgb)) <= 30).all(-1))
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def test_locate_questions_box_the_drawn_shape(root):
    from lavis.datasets.synthetic.shapes_render import PALETTE
    from lavis.rewards.iou import parse_box

    splits = build("shapes_vqa_chat", root, question_types=["count", "locate"])
    assert {k: len(v) for k, v in splits.items()} == {"train": 12, "val": 6, "test": 4}  # 2 per image
    assert [splits["train"][i]["question_type"] for i in range(4)] == ["count", "locate"] * 2  # image order
    for split in splits.values():
        for i in range(len(split)):
            item = split[i]
            if item["question_type"] != "locate":
                continue
            question = item["conversations"][0]["value"]
            colour = question.removeprefix("<image>\nwhere is the ").removesuffix(" shape?")
            assert colour in PALETTE, question
            box = parse_box(item["answer"])
            drawn = _colour_box(item["images"][0], PALETTE[colour])
            # the box holds every pixel of the shape and is at most a pixel wider on each side
            assert box[0] <= drawn[0] <= box[0] + 1 and box[1] <= drawn[1] <= box[1] + 1, (box, drawn)
            assert box[2] - 1 <= drawn[2] <= box[2] and box[3] - 1 <= drawn[3] <= box[3], (box, drawn)
            assert item["answer"] == "[{}, {}, {}, {}]".format(*(int(v) for v in box))
    only = build("shapes_vqa_grpo", root, question_types=["locate"])
    assert len(only["val"]) == 3 and all(only["val"][i]["question_type"] == "locate" for i in range(3))


def test_locate_pairs_reject_a_box_that_misses(root):
    from lavis.datasets.builders.chat_builders import wrong_box
    from lavis.rewards.iou import box_iou, parse_box

    one = [{"kind": "circle", "color": "red", "size": "small", "center": [31, 31], "radius": 6.0}]  # centred: mirroring would not move it
    got = parse_box(wrong_box(one, "[25, 25, 37, 37]", 64))
    assert box_iou(got, (25, 25, 37, 37)) == 0.0 and got[2] - got[0] == 12
    two = one + [{"kind": "square", "color": "blue", "size": "small", "center": [10, 50], "radius": 5.0}]
    assert wrong_box(two, "[25, 25, 37, 37]", 64) == "[6, 46, 14, 54]"
    corner = parse_box(wrong_box([{"kind": "circle", "color": "red", "size": "small", "center": [8, 20], "radius": 5.0}],
                                 "[3, 15, 13, 25]", 64))
    assert corner == (50, 15, 60, 25)  # mirrored left-right
    pairs = build("shapes_vqa_preference", root, question_types=["locate"])["train"]
    for item in (pairs[i] for i in range(len(pairs))):
        assert box_iou(parse_box(item["chosen"]), parse_box(item["rejected"])) < 0.5, item


def test_locate_is_a_known_question_type():
    cls = registry.get_builder_class("shapes_vqa_grpo")
    assert cls.validate_config({"build_info": {"storage": "x", "question_types": ["locate"]}}, "d") == []
    problems = cls.validate_config({"build_info": {"storage": "x", "question_types": ["where"]}}, "d")
    assert problems == ["d.build_info.question_types: 'where' is not one of count, color, shape, exists, locate"]
