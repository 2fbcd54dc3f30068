"""The synthetic "shapes" data set: images of coloured shapes with captions, questions and
retrieval pairs, generated deterministically from a seed.

Generate from the command line (regenerates only when the folder's manifest does not match)::

    python -m lavis.datasets.synthetic.shapes --out DIR --seed 0 --num-train 2000

or from Python with :func:`ensure_generated`. The same parameters always give byte-identical
files: each image draws from its own ``numpy`` generator seeded with ``(seed, split, index)``, so
changing ``num_train`` does not change the val or test images.

Layout of a generated folder (``{split}`` is ``train``, ``val`` and ``test``)::

    MANIFEST.json                 generator name, format version, parameters and counts (written last)
    images/{split}/000001.png     RGB PNG, image_size x image_size
    captions/train.json           [{"image", "caption": str, "image_id": str}]   one entry per caption
    captions/{val,test}.json      [{"image", "caption": [str, ...], "image_id": str}]  one per image
    captions/{val,test}_gt.json   COCO caption ground truth; integer ids = trailing digits of image_id
    vqa/{split}.json              [{"question_id", "image", "image_id", "question", "question_type",
                                    "answer": [10 x str]}]   (VQAv2 style: ten identical answers)
    vqa/{split}_questions.json    official VQAv2 question file   {"questions": [...]}
    vqa/{split}_annotations.json  official VQAv2 annotation file {"annotations": [...]}
    retrieval/{split}.json        [{"image", "caption": [str, ...], "image_id": str}]
    scenes/{split}.json           [{"image", "image_id", "width", "height", "objects": [{"kind",
                                    "color", "size", "center": [x, y], "radius"}]}]

A folder is generated in a temporary sibling folder and renamed into place, under an exclusive
``fcntl`` lock on ``.<name>.lock`` next to it, so readers never see half a data set and parallel
processes generate it once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from lavis.common.errors import ConfigError
from lavis.datasets.synthetic.shapes_render import (
    BACKGROUNDS, DEFAULT_COLORS, DEFAULT_KINDS, KINDS, PALETTE, SIZE_SCALES, SceneSampler, render_scene,
)
from lavis.datasets.synthetic.shapes_text import MAX_CAPTIONS, scene_captions, scene_questions

logger = logging.getLogger(__name__)

GENERATOR_NAME = "lavis.datasets.synthetic.shapes"
FORMAT_VERSION = 1
MANIFEST_NAME = "MANIFEST.json"
SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
_VQA_ANSWERS = 10


@dataclass(frozen=True)
class ShapesConfig:
    """Parameters of a generated shapes data set (all of them are recorded in the manifest).

    Attributes:
        seed: the seed every image and text is drawn from.
        image_size: side of the square images in pixels.
        num_train / num_val / num_test: images per split.
        min_shapes / max_shapes: shapes per image (1 to 3).
        num_sizes: 2 (small, large) or 3 (small, medium, large).
        kinds / colors: shape kinds and colour names to draw from.
        background: ``"texture"`` (light noise) or ``"plain"``.
        captions_per_image: reference captions per image (1 to 5).
    """

    seed: int = 0
    image_size: int = 64
    num_train: int = 2000
    num_val: int = 200
    num_test: int = 200
    min_shapes: int = 1
    max_shapes: int = 3
    num_sizes: int = 2
    kinds: tuple[str, ...] = DEFAULT_KINDS
    colors: tuple[str, ...] = DEFAULT_COLORS
    background: str = "texture"
    captions_per_image: int = MAX_CAPTIONS

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "colors", tuple(self.colors))
        problems = []
        if not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"seed: must be an integer >= 0, got {self.seed!r}")
        if self.image_size < 32:
            problems.append(f"image_size: must be at least 32 pixels, got {self.image_size}")
        for split in SPLITS:
            n = getattr(self, f"num_{split}")
            if not isinstance(n, int) or n < 0 or n > 999_999:
                problems.append(f"num_{split}: must be an integer in [0, 999999], got {n!r}")
        if not 1 <= self.min_shapes <= self.max_shapes <= 3:
            problems.append(f"min_shapes/max_shapes: need 1 <= min <= max <= 3, got {self.min_shapes}/{self.max_shapes}")
        if self.num_sizes not in SIZE_SCALES:
            problems.append(f"num_sizes: must be one of {sorted(SIZE_SCALES)}, got {self.num_sizes!r}")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or len(set(self.kinds)) < 3:
            problems.append(f"kinds: need at least 3 distinct names from {', '.join(KINDS)}; got {list(self.kinds)}")
        bad = [c for c in self.colors if c not in PALETTE]
        if bad or len(set(self.colors)) < 3:
            problems.append(f"colors: need at least 3 distinct names from {', '.join(PALETTE)}; got {list(self.colors)}")
        if self.background not in BACKGROUNDS:
            problems.append(f"background: must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        if not 1 <= self.captions_per_image <= MAX_CAPTIONS:
            problems.append(f"captions_per_image: must be in [1, {MAX_CAPTIONS}], got {self.captions_per_image!r}")
        if problems:
            raise ConfigError(problems, source="shapes generator parameters")

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any] | None, where: str = "generator") -> "ShapesConfig":
        """Build from a config section; unknown keys raise :class:`ConfigError` naming ``where.key``."""
        params = dict(params or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in params if k not in names]
        if unknown:
            raise ConfigError(
                [f"{where}.{k}: unknown shapes generator parameter; valid ones: {', '.join(names)}" for k in unknown]
            )
        for key in ("kinds", "colors"):
            if key in params and params[key] is not None:
                params[key] = tuple(params[key])
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["kinds"], d["colors"] = list(self.kinds), list(self.colors)
        return d

    def num_images(self, split: str) -> int:
        return getattr(self, f"num_{split}")


def generator_problems(params: Mapping[str, Any] | None, dotted: str) -> list[str]:
    """Config problems of the generator parameters ``params`` (``dotted`` names their block, e.g.
    ``datasets.shapes_caption.build_info.generator``); empty when they make a valid data set."""
    try:
        ShapesConfig.from_mapping(params, where=dotted)
    except ConfigError as e:
        return [p if p.startswith(dotted) else f"{dotted}.{p}" for p in e.problems]
    return []


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` (1-based) of ``split``."""
    return np.random.default_rng([seed, _SPLIT_CODE[split], index])


def question_id(split: str, index: int, k: int) -> int:
    """Id of question ``k`` (0-9) of image ``index`` of ``split``: unique across the three splits."""
    return _SPLIT_CODE[split] * 10**8 + index * 10 + k


def coco_image_id(image_id: str) -> int:
    """The integer COCO id of a string image id: its trailing digits (``"val_000042"`` -> 42)."""
    m = re.search(r"(\d+)$", image_id)
    if m is None:
        raise ValueError(f"image id {image_id!r} does not end in digits, so it has no integer COCO id")
    return int(m.group(1))


def _dump(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":")), encoding="utf-8")


def _write_split(root: Path, cfg: ShapesConfig, split: str, sampler: SceneSampler) -> dict[str, int]:
    img_dir = root / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    captions: list[dict] = []
    gt_images: list[dict] = []
    gt_anns: list[dict] = []
    vqa: list[dict] = []
    vqa_questions: list[dict] = []
    vqa_anns: list[dict] = []
    retrieval: list[dict] = []
    scenes: list[dict] = []
    for i in range(1, cfg.num_images(split) + 1):
        rng = image_rng(cfg.seed, split, i)
        scene = sampler.sample(rng)
        img = render_scene(scene, cfg.background, rng)
        rel = f"images/{split}/{i:06d}.png"
        img.save(root / rel, format="PNG", compress_level=1)
        image_id = f"{split}_{i:06d}"
        caps = scene_captions(scene, cfg.captions_per_image)
        if split == "train":
            captions.extend({"image": rel, "caption": c, "image_id": image_id} for c in caps)
        else:
            captions.append({"image": rel, "caption": caps, "image_id": image_id})
            gt_images.append({"id": i, "file_name": rel})
            gt_anns.extend(
                {"image_id": i, "id": i * 10 + k, "caption": c} for k, c in enumerate(caps)
            )
        retrieval.append({"image": rel, "caption": caps, "image_id": image_id})
        scenes.append({"image": rel, "image_id": image_id, **scene.to_dict()})
        for k, (qtype, question, answer) in enumerate(scene_questions(scene, rng, cfg.kinds)):
            qid = question_id(split, i, k)
            vqa.append({"question_id": qid, "image": rel, "image_id": image_id, "question": question,
                        "question_type": qtype, "answer": [answer] * _VQA_ANSWERS})
            vqa_questions.append({"image_id": i, "question": question, "question_id": qid})
            vqa_anns.append({
                "question_id": qid, "image_id": i, "question_type": qtype,
                "answer_type": "yes/no" if answer in ("yes", "no") else "other",
                "multiple_choice_answer": answer,
                "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": j + 1}
                            for j in range(_VQA_ANSWERS)],
            })
    _dump(captions, root / "captions" / f"{split}.json")
    if split != "train":
        _dump({"images": gt_images, "annotations": gt_anns, "info": {"description": f"shapes {split}"},
               "licenses": [], "type": "captions"}, root / "captions" / f"{split}_gt.json")
    _dump(vqa, root / "vqa" / f"{split}.json")
    info = {"description": f"shapes {split}", "version": FORMAT_VERSION}
    _dump({"info": info, "data_subtype": split, "questions": vqa_questions}, root / "vqa" / f"{split}_questions.json")
    _dump({"info": info, "data_subtype": split, "annotations": vqa_anns}, root / "vqa" / f"{split}_annotations.json")
    _dump(retrieval, root / "retrieval" / f"{split}.json")
    _dump(scenes, root / "scenes" / f"{split}.json")
    return {"images": cfg.num_images(split), "captions": len(captions) if split == "train" else len(gt_anns),
            "questions": len(vqa)}


def _write_manifest(manifest: dict[str, Any], path: Path) -> None:
    from lavis.common.io import atomic_write_text

    atomic_write_text(json.dumps(manifest, indent=2) + "\n", path)
    os.chmod(path, 0o644)  # the temporary file was private


def manifest_for(cfg: ShapesConfig) -> dict[str, Any]:
    """The part of a manifest that must match for a folder to be reused."""
    return {"generator": GENERATOR_NAME, "format_version": FORMAT_VERSION, "params": cfg.to_dict()}


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a generated folder, or ``None`` when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def manifest_mismatch(folder: str | os.PathLike, cfg: ShapesConfig) -> list[str]:
    """Why ``folder`` cannot be reused for ``cfg`` (empty when it can): one line per difference."""
    found = read_manifest(folder)
    if not isinstance(found, dict):
        return [f"{Path(folder) / MANIFEST_NAME} is missing or unreadable"]
    want = manifest_for(cfg)
    out = [f"{k}: found {found.get(k)!r}, want {want[k]!r}" for k in ("generator", "format_version")
           if found.get(k) != want[k]]
    params = found.get("params")
    params = params if isinstance(params, dict) else {}
    out += [f"params.{k}: found {params.get(k)!r}, want {v!r}" for k, v in want["params"].items() if params.get(k) != v]
    out += [f"params.{k}: not a parameter any more" for k in params if k not in want["params"]]
    return out


def generate(out_dir: str | os.PathLike, cfg: ShapesConfig) -> dict[str, Any]:
    """Generate the data set of ``cfg`` into ``out_dir``, replacing what is there; return the manifest.

    Files are written into a temporary sibling folder, the manifest last, and the folder is then
    renamed to ``out_dir``. Callers that may run in parallel should hold :func:`storage_lock`
    (:func:`ensure_generated` does).
    """
    out = Path(out_dir).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not (out / MANIFEST_NAME).is_file() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} exists, is not empty and has no {MANIFEST_NAME}, so it was not made by the shapes "
            "generator; remove it or choose another folder (build_info.storage / --out)"
        )
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        sampler = SceneSampler(cfg.image_size, cfg.kinds, cfg.colors, cfg.num_sizes, cfg.min_shapes, cfg.max_shapes)
        counts = {split: _write_split(tmp, cfg, split, sampler) for split in SPLITS}
        manifest = {**manifest_for(cfg), "counts": counts}
        _write_manifest(manifest, tmp / MANIFEST_NAME)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "data")
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("generated shapes data set in %s (%.1f s): %s", out, time.perf_counter() - start, counts)
    return manifest


def lock_path(out_dir: str | os.PathLike) -> Path:
    """The lock file next to ``out_dir``: ``<parent>/.<name>.lock``."""
    out = Path(out_dir).absolute()
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def storage_lock(out_dir: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on :func:`lock_path` of ``out_dir`` (blocks until free)."""
    path = lock_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _remove_leftovers(out: Path) -> None:
    """Temporary folders of interrupted runs (safe: called with the lock held)."""
    for pattern in (f".{out.name}.tmp-*", f".{out.name}.old-*"):
        for p in out.parent.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


def ensure_generated(out_dir: str | os.PathLike, cfg: ShapesConfig, force: bool = False) -> bool:
    """Make sure ``out_dir`` holds the data set of ``cfg``; return whether it was (re)generated.

    A folder whose manifest matches ``cfg`` is reused; a missing (or empty) folder is generated; a
    folder whose manifest differs or is unreadable is regenerated (with a warning saying what
    differed). ``force`` regenerates in any case. A non-empty folder without a manifest was not
    made by the generator and is never replaced: that raises ``FileExistsError``.
    """
    out = Path(out_dir).absolute()
    with storage_lock(out):
        _remove_leftovers(out)
        problems = manifest_mismatch(out, cfg)
        if not problems and not force:
            return False
        if out.exists() and not force:
            logger.warning("regenerating shapes data set in %s: %s", out, "; ".join(problems))
        generate(out, cfg)
        return True


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = ShapesConfig()
    p = argparse.ArgumentParser(prog="python -m lavis.datasets.synthetic.shapes",
                                description="Generate the synthetic shapes data set (deterministic from --seed).")
    p.add_argument("--out", required=True, help="folder to write (made or replaced atomically)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--num-train", type=int, default=d.num_train)
    p.add_argument("--num-val", type=int, default=d.num_val)
    p.add_argument("--num-test", type=int, default=d.num_test)
    p.add_argument("--min-shapes", type=int, default=d.min_shapes)
    p.add_argument("--max-shapes", type=int, default=d.max_shapes)
    p.add_argument("--num-sizes", type=int, default=d.num_sizes, choices=sorted(SIZE_SCALES))
    p.add_argument("--kinds", default=",".join(d.kinds), help=f"comma-separated, from: {','.join(KINDS)}")
    p.add_argument("--colors", default=",".join(d.colors), help=f"comma-separated, from: {','.join(PALETTE)}")
    p.add_argument("--background", default=d.background, choices=BACKGROUNDS)
    p.add_argument("--captions-per-image", type=int, default=d.captions_per_image)
    p.add_argument("--force", action="store_true", help="regenerate even when the manifest matches")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the folder and whether it was generated or reused."""
    args = _parse_args(argv)
    cfg = ShapesConfig(
        seed=args.seed, image_size=args.image_size, num_train=args.num_train, num_val=args.num_val,
        num_test=args.num_test, min_shapes=args.min_shapes, max_shapes=args.max_shapes,
        num_sizes=args.num_sizes, kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
        colors=tuple(c.strip() for c in args.colors.split(",") if c.strip()),
        background=args.background, captions_per_image=args.captions_per_image,
    )
    start = time.perf_counter()
    made = ensure_generated(args.out, cfg, force=args.force)
    verb = "generated" if made else "up to date, reused"
    print(f"{Path(args.out).absolute()}: {verb} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
