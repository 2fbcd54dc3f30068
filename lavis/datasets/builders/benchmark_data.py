"""Readers of the vision-language benchmarks' published files, and the data set that serves them.

Each reader turns one benchmark's files into *benchmark records*, plain dicts with:

- ``id``: unique within the split; ``kind``: ``yes_no``, ``multiple_choice`` or ``open``;
- ``question`` (the text to ask, without the options), ``options`` (texts, multiple choice only)
  and ``answer`` (``yes``/``no``, the right option's letter, or a list of reference answers);
- ``subtask`` (what the benchmark reports separately), ``group`` (MME: the image, whose two
  questions form a pair; MMBench: the original question of a circular copy) and ``shift``
  (MMBench: which circular copy);
- ``image``: a path relative to the data set's image folder, or ``image_bytes`` (MMBench's
  images are base64 inside its TSV).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import string
import sys
from pathlib import Path
from typing import Any, Sequence

from PIL import Image
from torch.utils.data import Dataset

from lavis.processors.base_processor import BaseProcessor

#: MMBench numbers the circular copies of question ``i`` ``i + k * 1_000_000``
MMBENCH_CIRCULAR_STRIDE = 1_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".PNG")


def choice_letters(n: int) -> list[str]:
    """``["A", "B", ...]`` for ``n`` options."""
    if n > 26:
        raise ValueError(f"{n} options: at most 26 can be lettered A-Z")
    return list(string.ascii_uppercase[:n])


class BenchmarkFormatError(ValueError):
    """A benchmark file that is not in the published format; the message names file and line."""


# -- MME ------------------------------------------------------------------------------------------------
def read_mme(root: Path) -> list[dict[str, Any]]:
    """MME's release folder: one folder per subtask holding, per image, a ``.txt`` of two
    ``question<TAB>answer`` lines (answers ``Yes``/``No``), either next to the image or in
    ``questions_answers_YN/`` with the images in ``images/``."""
    records = []
    subtasks = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subtasks:
        raise BenchmarkFormatError(f"{root}: no subtask folders; is it MME's MME_Benchmark_release_version folder?")
    for folder in subtasks:
        qa_dir, image_dir = folder, folder
        if (folder / "questions_answers_YN").is_dir():
            qa_dir, image_dir = folder / "questions_answers_YN", folder / "images"
        for txt in sorted(qa_dir.glob("*.txt")):
            image = next((image_dir / (txt.stem + s) for s in IMAGE_SUFFIXES if (image_dir / (txt.stem + s)).is_file()), None)
            if image is None:
                raise BenchmarkFormatError(f"{txt}: no image {txt.stem}{{{','.join(IMAGE_SUFFIXES)}}} in {image_dir}")
            lines = [ln for ln in txt.read_text(encoding="utf-8").splitlines() if ln.strip()]
            for n, line in enumerate(lines):
                question, sep, answer = line.rpartition("\t")
                if not sep or answer.strip().lower() not in ("yes", "no"):
                    raise BenchmarkFormatError(f"{txt}:{n + 1}: expected 'question<TAB>Yes|No', got {line!r}")
                records.append({"id": f"{folder.name}/{txt.stem}/{n}", "kind": "yes_no", "question": question.strip(),
                                "answer": answer.strip().lower(), "subtask": folder.name, "group": txt.stem,
                                "image": str(image.relative_to(root))})
    return records


# -- POPE -----------------------------------------------------------------------------------------------
def read_pope(path: Path) -> list[dict[str, Any]]:
    """One POPE question file (``coco_pope_<split>.json``: JSON lines with ``question_id``,
    ``image``, ``text`` and ``label``); the split is the last ``_`` part of the file name."""
    split = path.stem.rsplit("_", 1)[-1]
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
            records.append({"id": f"{split}/{q['question_id']}", "kind": "yes_no", "question": q["text"],
                            "answer": str(q["label"]).lower(), "subtask": split, "image": q["image"]})
        except (json.JSONDecodeError, KeyError) as e:
            raise BenchmarkFormatError(f"{path}:{n + 1}: not a POPE question line (question_id, image, text, "
                                       f"label): {e}") from e
    return records


# -- MMBench --------------------------------------------------------------------------------------------
def read_mmbench(path: Path) -> list[dict[str, Any]]:
    """MMBench's TSV (``index``, ``question``, ``hint``, ``A``..``D``, ``answer``, ``category``,
    ``image`` as base64; circular copies numbered ``index + k * 1_000_000``). An ``image`` cell
    that holds an index names the row whose image it shares. Questions without copies in the file
    get them (:func:`add_circular_copies`), so circular evaluation works on either kind of TSV."""
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    need = {"index", "question", "A", "B", "answer", "image"}
    if not rows or need - set(rows[0]):
        raise BenchmarkFormatError(f"{path}: an MMBench TSV has the columns {sorted(need)} (and C, D, hint, "
                                   f"category); found {sorted(rows[0]) if rows else 'no rows'}")
    images = {r["index"]: r["image"] for r in rows}
    records = []
    for r in rows:
        options = [r[c] for c in "ABCDEFGHI" if r.get(c) not in (None, "", "nan")]
        image = r["image"]
        if len(image) < 64 and image in images:  # a reference to the row holding the image
            image = images[image]
        index = int(r["index"])
        hint = r.get("hint") or ""
        question = r["question"] if hint in ("", "nan") else f"{hint}\n{r['question']}"
        records.append({"id": str(index), "kind": "multiple_choice", "question": question, "options": options,
                        "answer": r["answer"].strip(), "subtask": r.get("category") or "all",
                        "group": str(index % MMBENCH_CIRCULAR_STRIDE), "shift": index // MMBENCH_CIRCULAR_STRIDE,
                        "image_bytes": base64.b64decode(image)})
    return add_circular_copies(records)


def add_circular_copies(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` plus the circular copies of each question that has none in the file: copy ``k``
    rotates the options left ``k`` times (numbered ``index + k * 1_000_000``, as MMBench does)."""
    shifted = {r["group"] for r in records if r["shift"] > 0}
    out = list(records)
    for r in records:
        if r["shift"] != 0 or r["group"] in shifted:
            continue
        options, letters = r["options"], choice_letters(len(r["options"]))
        right = options[letters.index(r["answer"])]
        for k in range(1, len(options)):
            rotated = options[k:] + options[:k]
            out.append({**r, "id": str(int(r["id"]) + k * MMBENCH_CIRCULAR_STRIDE), "options": rotated,
                        "answer": letters[rotated.index(right)], "shift": k})
    return out


# -- ScienceQA ------------------------------------------------------------------------------------------
def read_scienceqa(problems_path: Path, pid_splits_path: Path, split: str) -> list[dict[str, Any]]:
    """ScienceQA-IMG: the questions of ``split`` (``pid_splits.json``) that have an image
    (``problems.json``: ``question``, ``choices``, ``answer`` as an index, ``hint``, ``image``,
    ``subject``, ``split``); images at ``<split>/<pid>/image.png`` under the image folder."""
    problems = json.loads(problems_path.read_text(encoding="utf-8"))
    pid_splits = json.loads(pid_splits_path.read_text(encoding="utf-8"))
    if split not in pid_splits:
        raise BenchmarkFormatError(f"{pid_splits_path}: has no split {split!r}; it has {sorted(pid_splits)}")
    records = []
    for pid in pid_splits[split]:
        p = problems[str(pid)]
        if not p.get("image"):
            continue
        hint = (p.get("hint") or "").strip()
        question = f"Context: {hint}\n{p['question']}" if hint else p["question"]
        records.append({"id": str(pid), "kind": "multiple_choice", "question": question,
                        "options": list(p["choices"]), "answer": choice_letters(len(p["choices"]))[int(p["answer"])],
                        "subtask": p.get("subject", "all"), "image": f"{p.get('split', split)}/{pid}/{p['image']}"})
    return records


# -- TextVQA --------------------------------------------------------------------------------------------
def read_textvqa(path: Path) -> list[dict[str, Any]]:
    """TextVQA's JSON (``{"data": [{question_id, question, image_id, answers}, ...]}``); images
    at ``<image_id>.jpg`` under the image folder."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "data" not in data:
        raise BenchmarkFormatError(f"{path}: a TextVQA file is an object with a 'data' list")
    return [{"id": str(q["question_id"]), "kind": "open", "question": q["question"],
             "answer": list(q.get("answers") or []), "subtask": "all", "image": f"{q['image_id']}.jpg"}
            for q in data["data"]]


class BenchmarkDataset(Dataset):
    """Benchmark records of one split; each item is its record with ``images`` (a list of one
    image, through ``vis_processor``) in place of ``image`` / ``image_bytes``.

    ``benchmark`` names the scorer the benchmark task uses (``mme``, ``pope``, ``mmbench``,
    ``scienceqa_img``, ``textvqa``).
    """

    def __init__(self, records: Sequence[dict[str, Any]], vis_root: str | os.PathLike, benchmark: str,
                 vis_processor: BaseProcessor | None = None):
        self.annotation = list(records)
        self.vis_root = Path(vis_root)
        self.benchmark = benchmark
        self.vis_processor = vis_processor or BaseProcessor()

    def __len__(self) -> int:
        return len(self.annotation)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = {**self.annotation[index], "benchmark": self.benchmark}
        data = record.pop("image_bytes", None)
        path = record.pop("image", None)
        source: Any = io.BytesIO(data) if data is not None else self.vis_root / path
        with Image.open(source) as im:
            record["images"] = [self.vis_processor(im.convert("RGB"))]
        return record

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
        """A dict of lists; the model's processor tokenises the prompts later."""
        keys = list(dict.fromkeys(k for s in samples for k in s))
        return {k: [s.get(k) for s in samples] for k in keys}
