"""The synthetic shapes generator: determinism, content that matches the captions, file formats."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from lavis.datasets.synthetic.shapes import SPLITS, ShapesConfig, coco_image_id, generate
from lavis.datasets.synthetic.shapes_render import PALETTE, SIZE_SCALES
from lavis.datasets.synthetic.shapes_text import CAPTION_WORDS, QA_EXTRA_WORDS

OBJ = re.compile(r"a (small|medium|large) (\w+) (\w+)")


def load(folder: Path, rel: str):
    return json.loads((folder / rel).read_text())


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    cfg = ShapesConfig(seed=5, num_train=15, num_val=5, num_test=5)
    generate(tmp_path / "a", cfg)
    generate(tmp_path / "b", cfg)
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert len(a) == 25 + 1 + 3 * 4 + 2 + 3 * 2  # images, manifest, 4 json per split, 2 gts, vqa official
    assert a == b
    generate(tmp_path / "c", ShapesConfig(seed=6, num_train=15, num_val=5, num_test=5))
    c = tree_bytes(tmp_path / "c")
    assert set(c) == set(a)
    images = [k for k in a if k.endswith(".png")]
    assert sum(a[k] != c[k] for k in images) >= len(images) - 1
    assert a["captions/train.json"] != c["captions/train.json"]


def test_val_and_test_do_not_depend_on_the_train_size(tmp_path: Path) -> None:
    generate(tmp_path / "a", ShapesConfig(num_train=3, num_val=4, num_test=4))
    generate(tmp_path / "b", ShapesConfig(num_train=9, num_val=4, num_test=4))
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    for key in a:
        if "/val" in key or "/test" in key or key.startswith(("images/val", "images/test")):
            assert a[key] == b[key], key


@pytest.mark.parametrize("split", SPLITS)
def test_captions_describe_what_is_drawn(shapes_dir: Path, split: str) -> None:
    scenes = load(shapes_dir, f"scenes/{split}.json")
    retrieval = load(shapes_dir, f"retrieval/{split}.json")
    assert len(scenes) == len(retrieval) > 0
    counts = set()
    for scene, entry in zip(scenes, retrieval):
        assert scene["image"] == entry["image"]
        pixels = np.asarray(Image.open(shapes_dir / scene["image"]))
        assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
        caption = entry["caption"][0]
        named = OBJ.findall(caption)
        objects = {(o["size"], o["color"], o["kind"]): o for o in scene["objects"]}
        assert sorted(named) == sorted(objects), caption
        counts.add(len(named))
        # the pixel at each shape's centre has the named colour ...
        for size, color, kind in named:
            x, y = objects[(size, color, kind)]["center"]
            assert tuple(pixels[y, x]) == PALETTE[color], (caption, color)
        # ... and no other palette colour appears anywhere
        flat = {tuple(p) for p in pixels.reshape(-1, 3)}
        for color, rgb in PALETTE.items():
            assert (rgb in flat) == (color in {c for _, c, _ in named}), (caption, color)
        # the spatial words match the centres
        centres = [objects[o]["center"] for o in named]
        if " to the left of " in caption:
            assert centres[0][0] < centres[1][0]
        elif " above " in caption:
            assert centres[0][1] < centres[1][1]
        elif " on the left " in caption:
            assert caption.endswith(" on the right") and " in the middle " in caption
            assert centres[0][0] < centres[1][0] < centres[2][0]
        else:
            assert len(named) == 1
        # sizes: "large" shapes are larger than "small" ones
        for (size, _, _), o in zip(named, (objects[n] for n in named)):
            assert o["radius"] == pytest.approx(SIZE_SCALES[2][size] * 64, abs=1e-3)
    if split == "train":
        assert counts == {1, 2, 3}


def test_reference_captions_use_only_the_vocabulary(shapes_dir: Path) -> None:
    for split in SPLITS:
        for entry in load(shapes_dir, f"retrieval/{split}.json"):
            caps = entry["caption"]
            assert len(caps) == 5 and len(set(caps)) == 5
            for cap in caps:
                assert "picture of" not in cap
                assert set(cap.split()) <= CAPTION_WORDS, cap
            first = caps[0]
            assert all(first in c for c in (caps[1], caps[2], caps[4]))
    for entry in load(shapes_dir, "vqa/train.json"):
        words = set(entry["question"].rstrip("?").split()) | set(entry["answer"])
        assert words <= CAPTION_WORDS | QA_EXTRA_WORDS, entry


def test_caption_annotation_files_have_the_documented_fields(shapes_dir: Path, small_cfg: ShapesConfig) -> None:
    train = load(shapes_dir, "captions/train.json")
    assert len(train) == small_cfg.num_train * 5
    for e in train:
        assert set(e) == {"image", "caption", "image_id"}
        assert isinstance(e["caption"], str) and isinstance(e["image_id"], str)
        assert (shapes_dir / e["image"]).is_file() and e["image"].startswith("images/train/")
    assert train[0]["image"] == "images/train/000001.png"
    for split in ("val", "test"):
        entries = load(shapes_dir, f"captions/{split}.json")
        assert len(entries) == small_cfg.num_images(split)
        for e in entries:
            assert set(e) == {"image", "caption", "image_id"}
            assert isinstance(e["caption"], list) and len(e["caption"]) == 5
            assert (shapes_dir / e["image"]).is_file()


@pytest.mark.parametrize("split", ["val", "test"])
def test_coco_ground_truth_loads_with_pycocotools(shapes_dir: Path, split: str) -> None:
    coco = COCO(str(shapes_dir / f"captions/{split}_gt.json"))
    entries = load(shapes_dir, f"captions/{split}.json")
    assert sorted(coco.getImgIds()) == sorted(coco_image_id(e["image_id"]) for e in entries)
    for e in entries:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=coco_image_id(e["image_id"])))
        assert [a["caption"] for a in anns] == e["caption"]


def test_questions_are_answered_correctly(shapes_dir: Path) -> None:
    for split in SPLITS:
        scenes = {s["image_id"]: s for s in load(shapes_dir, f"scenes/{split}.json")}
        vqa = load(shapes_dir, f"vqa/{split}.json")
        assert len(vqa) == 4 * len(scenes)
        assert len({q["question_id"] for q in vqa}) == len(vqa)
        seen_answers = set()
        for q in vqa:
            assert {"question_id", "image", "question", "answer"} <= set(q)
            assert len(q["answer"]) == 10 and len(set(q["answer"])) == 1
            objs = scenes[q["image_id"]]["objects"]
            answer, question = q["answer"][0], q["question"]
            seen_answers.add(answer)
            if question == "how many shapes are there?":
                assert answer == ["one", "two", "three"][len(objs) - 1]
            elif m := re.fullmatch(r"what color is the (\w+)\?", question):
                assert [o["color"] for o in objs if o["kind"] == m.group(1)] == [answer]
            elif m := re.fullmatch(r"what is the (\w+) shape\?", question):
                assert [o["kind"] for o in objs if o["color"] == m.group(1)] == [answer]
            elif m := re.fullmatch(r"is there an? (\w+)\?", question):
                assert answer == ("yes" if m.group(1) in {o["kind"] for o in objs} else "no")
            else:
                pytest.fail(f"unexpected question {question!r}")
        if split == "train":
            assert {"yes", "no"} <= seen_answers
        official_q = load(shapes_dir, f"vqa/{split}_questions.json")["questions"]
        official_a = load(shapes_dir, f"vqa/{split}_annotations.json")["annotations"]
        assert [q["question_id"] for q in official_q] == [q["question_id"] for q in vqa]
        assert [a["multiple_choice_answer"] for a in official_a] == [q["answer"][0] for q in vqa]
        assert all(len(a["answers"]) == 10 for a in official_a)


def test_retrieval_files_pair_each_image_with_its_captions(shapes_dir: Path) -> None:
    for split in SPLITS:
        entries = load(shapes_dir, f"retrieval/{split}.json")
        caption_file = load(shapes_dir, f"captions/{split}.json")
        for e in entries:
            assert isinstance(e["caption"], list) and (shapes_dir / e["image"]).is_file()
        if split != "train":
            assert [e["caption"] for e in entries] == [c["caption"] for c in caption_file]


def test_image_size_and_three_sizes_are_configurable(tmp_path: Path) -> None:
    cfg = ShapesConfig(image_size=96, num_sizes=3, num_train=40, num_val=0, num_test=0, background="plain")
    generate(tmp_path / "d", cfg)
    sizes = set()
    for scene in load(tmp_path / "d", "scenes/train.json"):
        img = Image.open(tmp_path / "d" / scene["image"])
        assert img.size == (96, 96) and img.mode == "RGB"
        sizes |= {o["size"] for o in scene["objects"]}
    assert sizes == {"small", "medium", "large"}
    assert load(tmp_path / "d", "captions/val.json") == []

