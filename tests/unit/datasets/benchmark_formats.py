"""Small fixtures of the vision-language benchmarks in exactly their published formats, laid out
where ``python -m lavis.datasets.download`` (or, for MME, unpacking the release zip) puts them.

``BENCHMARK_LAYOUTS[name]()`` returns ``{path under the data root: bytes}``; ``benchmark_fixture``
is the ``BUILDER_FIXTURES`` entry of each benchmark builder.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Callable

from tests.unit.datasets.real_formats import image_bytes, relocate, write_files

MME = "mme/MME_Benchmark_release_version"


def mme_files() -> dict[str, bytes]:
    """Both release layouts: ``existence`` and ``code_reasoning`` keep each image next to its
    ``.txt``; ``artwork`` has ``images/`` and ``questions_answers_YN/``."""
    files: dict[str, bytes] = {}
    pairs = {"existence": [("000000006040", "Is there a train in this image? Please answer yes or no.", "Yes",
                            "Is there a bed in this image? Please answer yes or no.", "No"),
                           ("000000044279", "Is there a dog in this image? Please answer yes or no.", "No",
                            "Is there a cat in this image? Please answer yes or no.", "Yes")],
             "code_reasoning": [("0001", "Will the code print 3? Please answer yes or no.", "Yes",
                                 "Will the code print 5? Please answer yes or no.", "No")]}
    for n, (task, entries) in enumerate(pairs.items()):
        for k, (stem, q1, a1, q2, a2) in enumerate(entries):
            suffix = ".png" if task == "code_reasoning" else ".jpg"
            files[f"{MME}/{task}/{stem}{suffix}"] = image_bytes(n * 10 + k, "PNG" if suffix == ".png" else "JPEG")
            files[f"{MME}/{task}/{stem}.txt"] = f"{q1}\t{a1}\n{q2}\t{a2}\n".encode()
    files[f"{MME}/artwork/images/10002.jpg"] = image_bytes(7)
    files[f"{MME}/artwork/questions_answers_YN/10002.txt"] = (
        "Is this artwork created by Leonardo? Please answer yes or no.\tYes\n"
        "Is this artwork created by Monet? Please answer yes or no.\tNo\n").encode()
    return files


POPE_SPLITS = ("random", "popular", "adversarial")


def pope_files() -> dict[str, bytes]:
    """Each split's JSON-lines file (two questions, one ``yes`` and one ``no``) and the COCO images."""
    files: dict[str, bytes] = {}
    for s, split in enumerate(POPE_SPLITS):
        lines = [{"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?",
                  "label": "yes"},
                 {"question_id": 2, "image": "COCO_val2014_000000210789.jpg", "text": f"Is there a {split} car in the image?",
                  "label": "no"}]
        files[f"pope/coco/coco_pope_{split}.json"] = "".join(json.dumps(x) + "\n" for x in lines).encode()
    for n in (310196, 210789):
        files[f"coco/images/val2014/COCO_val2014_{n:012d}.jpg"] = image_bytes(n % 97)
    return files


MMBENCH_COLUMNS = ("index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
                   "l2-category", "comment", "split")


def mmbench_rows() -> list[dict[str, Any]]:
    """Two questions (three and two options) and their circular copies: ``index + k * 1_000_000``
    with the options rotated left ``k`` times; the copies' ``image`` cell names the original row."""
    image0 = base64.b64encode(image_bytes(3)).decode()
    image1 = base64.b64encode(image_bytes(4)).decode()
    rows = []
    originals = [(0, "What animal is shown?", "nan", ["cat", "dog", "bird"], 0, "animal_recognition", image0),
                 (1, "Which colour dominates?", "The image is a photograph.", ["red", "blue"], 1, "color", image1)]
    for index, question, hint, options, right, category, image in originals:
        for k in range(len(options)):
            rotated = options[k:] + options[:k]
            row = {"index": index + k * 1_000_000, "question": question, "hint": hint, "A": "", "B": "", "C": "",
                   "D": "", "answer": "ABCD"[rotated.index(options[right])], "category": category,
                   "image": image if k == 0 else str(index), "source": "fixture", "l2-category": "perception",
                   "comment": "nan", "split": "dev"}
            row.update(dict(zip("ABCD", rotated)))
            rows.append(row)
    return rows


def mmbench_files() -> dict[str, bytes]:
    rows = mmbench_rows()
    lines = ["\t".join(MMBENCH_COLUMNS)] + ["\t".join(str(r[c]) for c in MMBENCH_COLUMNS) for r in rows]
    return {"mmbench/mmbench_dev_20230712.tsv": ("\n".join(lines) + "\n").encode()}


def scienceqa_files() -> dict[str, bytes]:
    """Five problems: two image questions in test (one with a hint), a text-only one in test (left
    out by ScienceQA-IMG) and two image questions in train."""
    def problem(question: str, choices: list[str], answer: int, hint: str, image: str | None, split: str,
                subject: str) -> dict[str, Any]:
        return {"question": question, "choices": choices, "answer": answer, "hint": hint, "image": image,
                "task": "closed choice", "grade": "grade4", "subject": subject, "topic": "fixture",
                "category": "fixture", "skill": "fixture", "lecture": "", "solution": "", "split": split}

    problems = {
        "5": problem("Which material is this spatula made of?", ["rubber", "cotton"], 0, "", "image.png", "test",
                     "natural science"),
        "8": problem("Which state is highlighted?", ["Ohio", "Utah", "Iowa"], 2, "Look at the map.", "image.png", "test",
                     "social science"),
        "9": problem("Which word is a noun?", ["run", "dog"], 1, "", None, "test", "language science"),
        "12": problem("What is the shape of the sign?", ["circle", "square"], 1, "", "image.png", "train",
                      "natural science"),
        "13": problem("Which colour is the star?", ["red", "blue", "green", "yellow"], 3, "", "image.png", "train",
                      "natural science"),
    }
    splits = {"train": ["12", "13"], "val": [], "test": ["5", "8", "9"], "minival": []}
    files = {"scienceqa/problems.json": json.dumps(problems).encode(),
             "scienceqa/pid_splits.json": json.dumps(splits).encode()}
    # pid 20 is a val question the fixture's problems.json leaves out: the val image archive is not empty
    for pid, split in (("5", "test"), ("8", "test"), ("12", "train"), ("13", "train"), ("20", "val")):
        files[f"scienceqa/images/{split}/{pid}/image.png"] = image_bytes(int(pid), "PNG")
    return files


def textvqa_files() -> dict[str, bytes]:
    data = {"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": [
        {"question": "what is the brand of this camera?", "image_id": "003a8ae2ef43b901", "image_classes": ["Camera"],
         "flickr_original_url": "", "flickr_300k_url": "", "image_width": 24, "image_height": 16,
         "answers": ["dakota", "dakota digital", "dakota", "dakota", "dakota digital", "dakota", "dakota", "dakota",
                     "dakota", "nous les gosses"],
         "question_tokens": ["what", "is", "the", "brand", "of", "this", "camera"], "question_id": 34602,
         "set_name": "val"},
        {"question": "what number is on the jersey?", "image_id": "0054c91397f2fe05", "image_classes": ["Person"],
         "flickr_original_url": "", "flickr_300k_url": "", "image_width": 24, "image_height": 16,
         "answers": ["22"] * 9 + ["23"],
         "question_tokens": ["what", "number", "is", "on", "the", "jersey"], "question_id": 34603, "set_name": "val"},
    ]}
    files = {"textvqa/TextVQA_0.5.1_val.json": json.dumps(data).encode()}
    for n, q in enumerate(data["data"]):
        files[f"textvqa/train_images/{q['image_id']}.jpg"] = image_bytes(n + 20)
    return files


BENCHMARK_LAYOUTS: dict[str, Callable[[], dict[str, bytes]]] = {
    "mme": mme_files, "pope": pope_files, "mmbench": mmbench_files, "scienceqa_img": scienceqa_files,
    "textvqa": textvqa_files,
}


def benchmark_fixture(name: str) -> Callable[[Path], dict]:
    """A ``BUILDER_FIXTURES`` entry: the fixture written under ``tmp_path / "data"`` and the shipped
    ``build_info`` pointed at it."""
    def make(tmp_path: Path) -> dict:
        from omegaconf import OmegaConf

        from lavis.common.registry import registry

        root = write_files(tmp_path / "data", BENCHMARK_LAYOUTS[name]())
        shipped = registry.get_builder_class(name).default_config().datasets[name].build_info
        info = relocate(OmegaConf.to_container(shipped, resolve=True), root)
        for files in info["annotations"].values():
            if files.get("pid_splits"):
                files["pid_splits"] = str(root / files["pid_splits"])
        return {"build_info": info}
    return make


__all__ = ["BENCHMARK_LAYOUTS", "benchmark_fixture", "mmbench_rows"]
