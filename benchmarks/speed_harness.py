"""What the speed benchmarks share: sizes, inputs, timing, memory and the matrix-product roofline.

Imported by ``benchmarks/speed.py`` (the driver) and by the two workers, ``speed_ours.py`` (this
library) and ``speed_lavis.py`` (LAVIS 1.0.2, in its own environment), so it needs nothing but
the standard library, torch and PIL, and it must not import ``lavis``.

A worker runs one benchmark and prints one line ``RESULT {json}``: the seconds of each timed
repeat (after one untimed warm-up), by the wall clock and by the process's CPU time, the peak
resident memory of its process and what it counted (``first_s``: the wall-clock seconds of the
warm-up call, compilation included; ``benchmarks/compile.py`` reads it).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import time
from pathlib import Path
from typing import Any, Callable

import torch

BENCHES = ("train", "generate_greedy", "generate_beam3", "image_features", "text_features", "data", "retrieval_tiny",
           "retrieval_base", "dpo", "grpo")

#: model and batch shapes; both libraries build exactly these (hidden 768, 12 heads, MLP 3072,
#: patch 16, vocabulary 30524: BLIP-base widths). ``full`` is BLIP-base; ``quick`` keeps the
#: widths and cuts depth and resolution so that a run takes minutes on 2 CPU cores.
SIZES: dict[str, dict[str, int]] = {
    "full": {"image_size": 384, "vision_layers": 12, "text_layers": 12, "batch": 4, "gen_batch": 4,
             "feat_image_size": 224, "feat_batch": 16, "text_batch": 16, "text_tokens": 30,
             "caption_tokens": 20, "data_image_size": 384},
    "quick": {"image_size": 224, "vision_layers": 4, "text_layers": 4, "batch": 2, "gen_batch": 2,
              "feat_image_size": 224, "feat_batch": 4, "text_batch": 16, "text_tokens": 30,
              "caption_tokens": 20, "data_image_size": 384},
}
WIDTH, HEADS, MLP, PATCH, VOCAB = 768, 12, 3072, 16, 30524
PROMPT = "a picture of "
# long enough that every caption is cut to ``caption_tokens`` word pieces ([DEC] ... [SEP] included)
CAPTION = ("a picture of a man riding a wave on top of a surfboard in the sea near the beach while two "
           "dogs play with a red ball on the sand under a blue sky")
IMAGE_SEED, TEXT_WORDS = 1234, CAPTION.split()


def worker_args(description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--bench", required=True, choices=BENCHES + ("flops",))
    ap.add_argument("--size", default="quick", choices=sorted(SIZES))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", required=True, help="folder with bert-base-uncased's vocab.txt")
    ap.add_argument("--images", default=None, help="folder of JPEG files (the data benchmark)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (ours only)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return args


def images(n: int, size: int) -> torch.Tensor:
    """``n`` seeded normalized-looking images [n, 3, size, size]."""
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(IMAGE_SEED))


def captions(n: int) -> list[str]:
    """``n`` different long captions starting with the prompt (the words of CAPTION rotated)."""
    body = TEXT_WORDS[3:]
    return [PROMPT + " ".join(body[i % len(body):] + body[: i % len(body)]) for i in range(n)]


def timings(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Seconds of each of ``repeats`` calls of ``fn``, after one warm-up call, by two clocks:
    ``times`` wall-clock, ``cpu_times`` this process's CPU time (user + system, all its threads);
    and ``first_s``, the wall-clock seconds of the warm-up call (compilation included). With one
    thread, CPU time is the wall-clock time the call would take on an idle core: waiting for a
    core that other jobs hold is not counted."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"times": wall, "cpu_times": cpu, "first_s": first}


def seed_all(seed: int) -> None:
    """Seed Python's, torch's and (where installed) NumPy's global generators."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed)


def time_items(fn: Callable[[int], Any], n: int, repeats: int) -> dict[str, list[float]]:
    """Seconds for the ``n`` calls ``fn(0)`` .. ``fn(n - 1)``: each call's smallest of ``repeats``
    timed passes (after one untimed pass), summed, by two clocks as :func:`timings` gives them
    (``times`` wall-clock, ``cpu_times`` this process's CPU time, which leaves out the time the
    process waited for a core while other jobs of a shared machine ran). Every generator is seeded
    with the item's number before each call (:func:`seed_all`), so each pass does the same work."""
    wall, cpu = [math.inf] * n, [math.inf] * n
    for rep in range(repeats + 1):
        for k in range(n):
            seed_all(k)
            w0, c0 = time.perf_counter(), time.process_time()
            fn(k)
            if rep:
                cpu[k] = min(cpu[k], time.process_time() - c0)
                wall[k] = min(wall[k], time.perf_counter() - w0)
    return {"times": [sum(wall)], "cpu_times": [sum(cpu)]}


def data_items(folder: Path, copies: int = 4) -> list[Path]:
    """The data benchmark's items: every JPEG of ``folder``, ``copies`` times (item ``k`` is seeded
    with ``k``, so each copy draws other crops and augmentations)."""
    paths = sorted(folder.glob("*.jpg"))
    return [p for _ in range(copies) for p in paths]



def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5, clock: str = "times") -> float:
    """Best GFLOP/s of an ``n x n`` by ``n x n`` matrix product in ``dtype`` with the current threads,
    by the ``clock`` of :func:`timings` (``"times"``: wall-clock, ``"cpu_times"``: CPU time)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    best = min(timings(lambda: torch.mm(a, b), repeats)[clock])
    return 2 * n**3 / best / 1e9


def make_jpegs(folder: Path, n: int = 24, size: tuple[int, int] = (640, 480)) -> list[Path]:
    """``n`` seeded JPEG photos-like images (smooth gradients and shapes, quality 90) in ``folder``."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        w, h = size
        row = torch.linspace(0, 1, w).repeat(h, 1)
        col = torch.linspace(0, 1, h).unsqueeze(1).repeat(1, w)
        c = [rng.random() for _ in range(6)]
        rgb = torch.stack([c[0] * row + c[1] * col, c[2] * row + c[3] * (1 - col), c[4] * (1 - row) + c[5] * col])
        img = Image.fromarray((rgb.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy())
        draw = ImageDraw.Draw(img)
        for _ in range(12):
            x, y, r = rng.randrange(w), rng.randrange(h), rng.randrange(10, 120)
            fill = tuple(rng.randrange(256) for _ in range(3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=fill)
        img.save(path, quality=90)
    return paths


def emit(times: list[float], **extra: Any) -> None:
    """Print the worker's result line (``extra``: ``cpu_times`` from :func:`timings`, counts)."""
    print("RESULT " + json.dumps({"times": times, "peak_rss_gb": peak_rss_gb(), **extra}), flush=True)
