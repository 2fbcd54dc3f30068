"""Small fixtures of the real data sets, in exactly the published annotation formats and laid out
where ``python -m lavis.datasets.download`` puts them (paths relative to the data root).

``LAYOUTS[name]()`` returns ``{path under the data root: bytes}``: a few real-format JSON records
and tiny images generated here. :func:`write_files` lays them out; :func:`builder_fixture` is what
``BUILDER_FIXTURES`` in ``tests/test_registry_kinds.py`` uses for each real builder.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Callable

from PIL import Image


def image_bytes(seed: int, fmt: str = "JPEG", size: tuple[int, int] = (24, 16)) -> bytes:
    """A tiny image with a colour gradient that depends on ``seed``."""
    w, h = size
    img = Image.new("RGB", size)
    img.putdata([((x * 10 + seed * 37) % 256, (y * 15 + seed * 11) % 256, (seed * 53) % 256)
                 for y in range(h) for x in range(w)])
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


def _coco_image(split: str, n: int) -> str:
    return f"{split}/COCO_{split}_{n:012d}.jpg"


# ------------------------------------------------------------------------------------------- image-text
def coco_files() -> dict[str, bytes]:
    """Karpathy train (one entry per caption), val/test (one per image) and their COCO-format GT."""
    files: dict[str, bytes] = {}
    train = [{"caption": f"a photo number {n} caption {c}", "image": _coco_image("train2014", n), "image_id": f"coco_{n}"}
             for n in (9, 25) for c in (1, 2)]
    files["coco/annotations/coco_karpathy_train.json"] = _json(train)
    for split, ids in (("val", (42, 73)), ("test", (74, 133))):
        entries = [{"image": _coco_image("val2014", n), "caption": [f"{split} image {n} caption {c}" for c in range(5)]}
                   for n in ids]
        files[f"coco/annotations/coco_karpathy_{split}.json"] = _json(entries)
        gt = {"annotations": [{"image_id": n, "caption": c, "id": n * 10 + i}
                              for n, e in zip(ids, entries) for i, c in enumerate(e["caption"])],
              "images": [{"id": n} for n in ids]}
        files[f"coco_gt/coco_karpathy_{split}_gt.json"] = _json(gt)
    for n in (9, 25):
        files[f"coco/images/{_coco_image('train2014', n)}"] = image_bytes(n)
    for n in (42, 73, 74, 133):
        files[f"coco/images/{_coco_image('val2014', n)}"] = image_bytes(n)
    return files


def flickr30k_files() -> dict[str, bytes]:
    ids = ("1000092795", "1007129816", "1009434119")
    files = {"flickr30k/annotations/train.json": _json(
        [{"image": f"flickr30k-images/{ids[0]}.jpg", "caption": f"two young guys caption {c}", "image_id": ids[0]}
         for c in range(2)])}
    for split, i in (("val", 1), ("test", 2)):
        files[f"flickr30k/annotations/{split}.json"] = _json(
            [{"image": f"flickr30k-images/{ids[i]}.jpg", "caption": [f"{split} caption {c}" for c in range(5)]}])
    files.update({f"flickr30k/images/flickr30k-images/{i}.jpg": image_bytes(n) for n, i in enumerate(ids)})
    return files


NOCAPS_IMAGES = {"val": [("0013ea2087020901", "in-domain"), ("00223d8d7e79cfe0", "near-domain"),
                         ("0049a7c4e4c8d0ac", "out-domain")],
                 "test": [("003bd2ae7bc5f1ab", "out-domain")]}


def nocaps_index(split: str) -> dict[str, Any]:
    """The official image list (``nocaps_val_4500_captions.json`` / ``nocaps_test_image_info.json``)."""
    images = [{"id": i, "open_images_id": oid, "file_name": f"{oid}.jpg", "domain": dom, "height": 16, "width": 24,
               "coco_url": f"https://s3.amazonaws.com/nocaps/{split}/{oid}.jpg"}
              for i, (oid, dom) in enumerate(NOCAPS_IMAGES[split])]
    index: dict[str, Any] = {"licenses": [], "info": {}, "images": images}
    if split == "val":
        index["annotations"] = [{"image_id": i, "id": i * 10 + c, "caption": f"a nocaps caption {c} of {i}"}
                                for i in range(len(images)) for c in range(2)]
    return index


def nocaps_files() -> dict[str, bytes]:
    files = {
        "nocaps/annotations/nocaps_val_4500_captions.json": _json(nocaps_index("val")),
        "nocaps/annotations/nocaps_test_image_info.json": _json(nocaps_index("test")),
    }
    for split in ("val", "test"):
        files[f"nocaps/annotations/nocaps_{split}.json"] = _json(
            [{"image": f"{split}/{oid}.jpg", "img_id": i} for i, (oid, _) in enumerate(NOCAPS_IMAGES[split])])
        for n, (oid, _) in enumerate(NOCAPS_IMAGES[split]):
            files[f"nocaps/images/{split}/{oid}.jpg"] = image_bytes(100 + n)
    return files


# ------------------------------------------------------------------------------------------- VQA
def _vqa_entry(qid: int, image: str, answers: list[str] | None, dataset: str = "vqa") -> dict[str, Any]:
    e = {"question_id": qid, "question": f"What is in picture {qid}?", "image": image, "dataset": dataset}
    if answers is not None:
        e["answer"] = answers
    return e


def vqav2_files() -> dict[str, bytes]:
    tr = _coco_image("train2014", 9)
    va = _coco_image("val2014", 42)
    te = _coco_image("test2015", 1)
    ten = ["net"] * 6 + ["netting"] * 3 + ["mesh"]
    files = {
        "coco/annotations/vqa_train.json": _json([_vqa_entry(9000, tr, ten), _vqa_entry(9001, tr, ["yes"] * 10)]),
        "coco/annotations/vqa_val.json": _json([_vqa_entry(42000, va, ["2"] * 7 + ["3"] * 3)]),
        "coco/annotations/vqa_val_eval.json": _json([_vqa_entry(42000, va, ["2"] * 7 + ["3"] * 3),
                                                      _vqa_entry(42001, va, ["no"] * 10)]),
        "coco/annotations/vqa_test.json": _json([_vqa_entry(1000, te, None)]),
        "coco/annotations/answer_list.json": _json(["net", "yes", "no", "2", "3"]),
        "coco/annotations/v2_mscoco_val2014_annotations.json": _json({"annotations": []}),
        "coco/annotations/v2_OpenEnded_mscoco_val2014_questions.json": _json({"questions": []}),
    }
    for rel, n in ((tr, 9), (va, 42), (te, 1)):
        files[f"coco/images/{rel}"] = image_bytes(n)
    return files


def okvqa_files() -> dict[str, bytes]:
    tr, va = _coco_image("train2014", 25), _coco_image("val2014", 73)
    files = {
        "okvqa/annotations/okvqa_train.json": _json([_vqa_entry(251, tr, ["racing"] * 5 + ["race"] * 5, "okvqa")]),
        "okvqa/annotations/vqa_val_eval.json": _json([_vqa_entry(731, va, ["beach"] * 10, "okvqa")]),
        "okvqa/annotations/answer_list.json": _json(["racing", "race", "beach"]),
    }
    files[f"coco/images/{tr}"], files[f"coco/images/{va}"] = image_bytes(25), image_bytes(73)
    return files


def aokvqa_files() -> dict[str, bytes]:
    def entry(split: str, image_id: int, qid: str, answered: bool, with_image: bool) -> dict[str, Any]:
        e: dict[str, Any] = {"split": split, "image_id": image_id, "question_id": qid,
                             "question": "What is the man by the bags awaiting?",
                             "choices": ["skateboarder", "train", "delivery", "cab"], "rationales": ["r1", "r2", "r3"]}
        if answered:
            e.update(correct_choice_idx=3, direct_answers=["cab"] * 8 + ["taxi"] * 2, difficult_direct_answer=False)
        if with_image:  # LAVIS's copies add the image path; the original files do not have it
            e["image"] = f"{split}2017/{image_id:012d}.jpg"
        return e

    files = {
        "aokvqa/annotations/aokvqa_v1p0_train.json": _json([entry("train", 299207, "22MexNkBPpdZGX6sxbxVBH", True, False)]),
        "aokvqa/annotations/aokvqa_v1p0_val.json": _json([entry("val", 461751, "22jbM6gDxdaMaunuzgrsBB", True, True)]),
        "aokvqa/annotations/aokvqa_v1p0_test.json": _json([entry("test", 581929, "2TD4dBfyCkCDdCtq6YwnDd", False, False)]),
        "aokvqa/annotations/specialized_vocab_train_lavis.json": _json(["cab", "taxi", "train"]),
        "aokvqa/annotations/large_vocab_train_lavis.json": _json(["cab", "taxi", "train", "bus"]),
    }
    for split, image_id in (("train", 299207), ("val", 461751), ("test", 581929)):
        files[f"coco/images/{split}2017/{image_id:012d}.jpg"] = image_bytes(image_id % 97)
    return files


def gqa_files() -> dict[str, bytes]:
    """train in the official dict layout, val / testdev in LAVIS's list layout."""
    official = {"02930152": {"imageId": "2354786", "question": "Is the sky dark?", "answer": "yes",
                             "fullAnswer": "Yes, the sky is dark.", "isBalanced": True, "types": {}},
                "02930160": {"imageId": "2354786", "question": "What is on the white wall?", "answer": "pipe",
                             "fullAnswer": "The pipe is on the wall.", "isBalanced": True, "types": {}}}
    files = {"gqa/annotations/train_balanced_questions.json": _json(official),
             "gqa/annotations/test_balanced_questions.json": _json(
                 [{"image": "n15740.jpg", "question": "What is it?", "question_id": "t1"}])}
    for split, image in (("val", "2410161"), ("testdev", "n288870")):
        files[f"gqa/annotations/{split}_balanced_questions.json"] = _json(
            [{"image": f"{image}.jpg", "question": "Which color is the car?", "question_id": f"{split}1",
              "answer": "red", "fullAnswer": "The car is red.", "dataset": "gqa"}])
    files.update({f"gqa/images/{i}.jpg": image_bytes(n) for n, i in enumerate(("2354786", "2410161", "n288870", "n15740"))})
    return files


# ------------------------------------------------------------------------------------------- pairs
def nlvr2_files() -> dict[str, bytes]:
    pairs = {"train": ("images/train/68/train-10171-0-img0.png", "images/train/68/train-10171-0-img1.png"),
             "dev": ("dev/dev-850-0-img0.png", "dev/dev-850-0-img1.png"),
             "test": ("test1/test1-0-1-img0.png", "test1/test1-0-1-img1.png")}
    files: dict[str, bytes] = {}
    for n, (split, images) in enumerate(pairs.items()):
        files[f"nlvr/annotations/{split}.json"] = _json(
            [{"images": list(images), "sentence": "The left image contains exactly two dogs.", "label": "True"},
             {"images": list(images), "sentence": "Both images show cats.", "label": "False"}])
        for k, rel in enumerate(images):
            files[f"nlvr/images/{rel}"] = image_bytes(n * 2 + k, fmt="PNG")
    return files


def snli_ve_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for n, (split, image) in enumerate((("train", "2248275918"), ("dev", "3173418563"), ("test", "4759860941"))):
        files[f"snli/annotations/ve_{split}.json"] = _json(
            [{"image": image, "sentence": "A man is outdoors.", "label": label}
             for label in ("entailment", "neutral", "contradiction")])
        files[f"flickr30k/images/flickr30k-images/{image}.jpg"] = image_bytes(n)
    return files


# ------------------------------------------------------------------------------------------- classification
IMAGENET_CLASSES = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus"}


def imagenet_files() -> dict[str, bytes]:
    files = {"imagenet/LOC_synset_mapping.txt": "".join(f"{k} {v}\n" for k, v in IMAGENET_CLASSES.items()).encode()}
    for split in ("train", "val"):
        for c, wnid in enumerate(IMAGENET_CLASSES):
            for k in range(2):
                files[f"imagenet/{split}/{wnid}/{wnid}_{split}_{k}.JPEG"] = image_bytes(c * 2 + k)
    return files


# ------------------------------------------------------------------------------------------- video
def video_bytes(seed: int, suffix: str = ".mp4", frames: int = 6, size: tuple[int, int] = (32, 24)) -> bytes:
    """A tiny MPEG-4 video (``frames`` frames whose brightness rises) in an .mp4 or .avi container."""
    import tempfile

    import av
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"clip{suffix}"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=5)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            for t in range(frames):
                pixels = np.full((size[1], size[0], 3), (seed * 40 + t * 30) % 256, dtype=np.uint8)
                pixels[:, : size[0] // 2, 0] = 200  # a red left half
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path.read_bytes()


def _video_files(name: str, tasks: tuple[str, ...], videos: list[str]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for task in tasks:
        for split, video in zip(("train", "val", "test"), videos):
            if task == "qa":
                entries = [{"video": video, "question": "what is a man doing?", "answer": a} for a in ("cooking", "dancing")]
            elif split == "train":
                entries = [{"video": video, "caption": f"a man is cooking {c}"} for c in range(2)]
            else:  # eval: LAVIS's files hold one or more entries per video, with a caption or a list
                entries = [{"video": video, "caption": ["a man is cooking", "someone cooks"]},
                           {"video": video, "caption": "a person cooks food"}]
            files[f"{name}/annotations/{task}_{split}.json"] = _json(entries)
    if "qa" in tasks:
        files[f"{name}/annotations/qa_ans2label.json"] = _json({"cooking": 0, "playing": 1})
    for n, video in enumerate(videos):
        files[f"{name}/videos/{video}"] = video_bytes(n, Path(video).suffix)
    return files


def msrvtt_files() -> dict[str, bytes]:
    return _video_files("msrvtt", ("retrieval", "cap", "qa"), ["video0.mp4", "video7010.mp4", "video9770.mp4"])


def msvd_files() -> dict[str, bytes]:
    return _video_files("msvd", ("cap", "qa"), ["-4wsuPCjDBc_5_15.avi", "-7KMZQEsJW4_205_208.avi", "-8y1Q0rA3n8_108_115.avi"])


def didemo_files() -> dict[str, bytes]:
    return _video_files("didemo", ("retrieval",), ["10015567@N08_3655084291.mp4", "10034275@N02_4617219064.mp4",
                                                    "10064186@N06_3213826437.mp4"])


LAYOUTS: dict[str, Callable[[], dict[str, bytes]]] = {
    "coco": coco_files, "flickr30k": flickr30k_files, "nocaps": nocaps_files, "vqav2": vqav2_files,
    "okvqa": okvqa_files, "aokvqa": aokvqa_files, "gqa": gqa_files, "nlvr2": nlvr2_files,
    "snli_ve": snli_ve_files, "imagenet": imagenet_files, "msrvtt": msrvtt_files, "msvd": msvd_files,
    "didemo": didemo_files,
}


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    """Lay ``files`` out under ``root``; returns ``root``."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def relocate(build_info: dict[str, Any], root: Path) -> dict[str, Any]:
    """``build_info`` with every relative path made absolute under ``root``."""
    def move(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: move(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v, key) for v in value]
        if isinstance(value, str) and key in ("storage", "gt", "answer_list", "image_info", "class_names", "ans2label"):
            return str(root / value)
        return value
    return move(build_info)


def builder_fixture(name: str) -> Callable[[Path], dict]:
    """A ``BUILDER_FIXTURES`` entry: writes the fixture under ``tmp_path / "data"`` and points the
    shipped ``build_info`` of the type ``tmp_path.name`` (the registry test passes ``tmp_path / dtype``) at it."""
    def make(tmp_path: Path) -> dict:
        from omegaconf import OmegaConf

        from lavis.common.registry import registry

        root = write_files(tmp_path / "data", LAYOUTS[name]())
        shipped = registry.get_builder_class(name).default_config(tmp_path.name).datasets[name].build_info
        return {"build_info": relocate(OmegaConf.to_container(shipped, resolve=True), root)}
    return make


__all__ = ["LAYOUTS", "builder_fixture", "image_bytes", "nocaps_index", "relocate", "video_bytes", "write_files"]
