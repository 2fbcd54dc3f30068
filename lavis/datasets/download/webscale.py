"""Web-scale image-text sets (CC3M, CC12M, LAION-400M) as webdataset shards.

These sets are published as URL lists, not images: the images are fetched from their original web
hosts by `img2dataset <https://github.com/rom1504/img2dataset>`_, which writes webdataset shards::

    <root>/<name>/shards/00000.tar        samples: <key>.jpg, <key>.txt (caption), <key>.json (metadata)
    <root>/<name>/shards/00000.parquet    per-sample status table written by img2dataset
    <root>/<name>/shards/00000_stats.json per-shard counts (successes, failures) written by img2dataset

Fetching the URL list is a normal download step (or a manual one where the host asks for a click
through its terms); running img2dataset is left to the user, since it takes hours to days and many
network connections: the download command prints the exact command line. Once the shards exist,
the command opens every shard with webdataset, counts the samples that have both an image and a
caption, and records the result (``<name>/.lavis_state/shards.verified.json``); a builder can then
read ``<name>/shards/{00000..NNNNN}.tar``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lavis.datasets.download.spec import DatasetSpec, Manual, Part, RemoteFile, Shards

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
TEXT_EXTENSIONS = ("txt", "caption")

_IMG2DATASET_COMMON = ("--output_format webdataset --output_folder {into} --processes_count 16 --thread_count 64 "
                       "--image_size 256 --resize_mode keep_ratio --enable_wandb False")

WEB_DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        name="cc3m",
        title="Conceptual Captions 3M (image URLs + captions) as webdataset shards",
        homepage="https://ai.google.com/research/ConceptualCaptions/download",
        licence="Conceptual Captions terms (Google); images belong to their web hosts",
        aliases=("conceptual_caption_3m",),
        parts=(
            Part(name="url list", kind="urls", steps=(Manual(
                what="CC3M training split TSV (download page asks to accept Google's terms)",
                url="https://ai.google.com/research/ConceptualCaptions/download",
                instructions=(
                    "1. Open https://ai.google.com/research/ConceptualCaptions/download, accept the terms and",
                    "   download the 'Training split' file Train_GCC-training.tsv (caption <TAB> url, no header).",
                    "2. Save it as {root}/cc3m/Train_GCC-training.tsv",
                ),
                expect=("cc3m/Train_GCC-training.tsv",),
            ),)),
            Part(name="shards", kind="shards", steps=(Shards(
                into="cc3m/shards",
                url_list="cc3m/Train_GCC-training.tsv",
                command=(
                    "pip install img2dataset",
                    "sed '1s/^/caption\\turl\\n/' {url_list} > {root}/cc3m/cc3m_with_header.tsv",
                    "img2dataset --url_list {root}/cc3m/cc3m_with_header.tsv --input_format tsv "
                    "--url_col url --caption_col caption " + _IMG2DATASET_COMMON,
                ),
            ),)),
        ),
        layout=(("url list", "cc3m/Train_GCC-training.tsv"), ("shards", "cc3m/shards/{00000..NNNNN}.tar")),
        sources=("Conceptual Captions download page", "img2dataset dataset_examples/cc3m.md (command line)",
                 "LAVIS download_scripts/DownloadConceptualCaptions/README.md"),
    ),
    DatasetSpec(
        name="cc12m",
        title="Conceptual 12M (image URLs + captions) as webdataset shards",
        homepage="https://github.com/google-research-datasets/conceptual-12m",
        licence="Conceptual 12M terms (Google); images belong to their web hosts",
        aliases=("conceptual_caption_12m",),
        parts=(
            Part(name="url list", kind="urls", steps=(
                RemoteFile("https://storage.googleapis.com/conceptual_12m/cc12m.tsv", "cc12m/cc12m.tsv"),)),
            Part(name="shards", kind="shards", steps=(Shards(
                into="cc12m/shards",
                url_list="cc12m/cc12m.tsv",
                command=(
                    "pip install img2dataset",
                    "sed '1s/^/url\\tcaption\\n/' {url_list} > {root}/cc12m/cc12m_with_header.tsv",
                    "img2dataset --url_list {root}/cc12m/cc12m_with_header.tsv --input_format tsv "
                    "--url_col url --caption_col caption " + _IMG2DATASET_COMMON,
                ),
            ),)),
        ),
        layout=(("url list", "cc12m/cc12m.tsv"), ("shards", "cc12m/shards/{00000..NNNNN}.tar")),
        sources=("google-research-datasets/conceptual-12m README (cc12m.tsv)",
                 "img2dataset dataset_examples/cc12m.md (command line)"),
    ),
    DatasetSpec(
        name="laion400m",
        title="LAION-400M style parquet URL lists as webdataset shards",
        homepage="https://laion.ai/blog/laion-400-open-dataset/",
        licence="LAION metadata CC BY 4.0; images belong to their web hosts. Check the release's current status",
        aliases=("laion",),
        parts=(
            Part(name="url list", kind="urls", steps=(Manual(
                what="LAION parquet metadata (no longer served from one stable public URL)",
                url="https://laion.ai/blog/laion-400-open-dataset/",
                instructions=(
                    "1. Obtain the metadata parquet files of the LAION release you are allowed to use (LAION-400M",
                    "   was published at https://the-eye.eu/public/AI/cah/laion400m-met-release/laion400m-meta/;",
                    "   LAION withdrew its data sets for review in December 2023 and later released re-filtered",
                    "   versions (Re-LAION) on the Hugging Face Hub; check laion.ai for the current terms).",
                    "2. Put the .parquet files in {root}/laion400m/metadata/",
                    "   (columns URL and TEXT as in LAION-400M; other releases: adjust --url_col/--caption_col).",
                ),
                expect=("laion400m/metadata",),
            ),)),
            Part(name="shards", kind="shards", steps=(Shards(
                into="laion400m/shards",
                url_list="laion400m/metadata",
                command=(
                    "pip install img2dataset",
                    "img2dataset --url_list {url_list} --input_format parquet --url_col URL --caption_col TEXT "
                    "--save_additional_columns '[\"NSFW\",\"similarity\",\"LICENSE\"]' " + _IMG2DATASET_COMMON,
                ),
            ),)),
        ),
        layout=(("url list", "laion400m/metadata/*.parquet"), ("shards", "laion400m/shards/{00000..NNNNN}.tar")),
        sources=("img2dataset dataset_examples/laion400m.md (command line)", "LAION-400M announcement"),
    ),
)


@dataclass
class ShardCheck:
    """What verifying one shard found: ``samples`` complete image+caption pairs, ``incomplete`` samples
    missing one of them, ``error`` the reason the shard could not be read (``None`` when it could)."""

    name: str
    size: int
    samples: int = 0
    incomplete: int = 0
    error: str | None = None
    expected: int | None = None  # img2dataset's own success count, when its _stats.json is there

    @property
    def ok(self) -> bool:
        return self.error is None and self.samples > 0 and (self.expected is None or self.expected == self.samples)


def shard_files(folder: Path) -> list[Path]:
    """The ``*.tar`` shards of ``folder``, in name order."""
    return sorted(p for p in folder.glob("*.tar") if p.is_file()) if folder.is_dir() else []


def brace_pattern(shards: list[Path]) -> str:
    """A webdataset brace pattern for consecutive numbered shards (``{00000..00042}.tar``), else a list."""
    stems = [p.stem for p in shards]
    if stems and all(s.isdigit() and len(s) == len(stems[0]) for s in stems):
        numbers = [int(s) for s in stems]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            return f"{{{stems[0]}..{stems[-1]}}}.tar"
    return ",".join(p.name for p in shards)


def verify_shard(path: Path) -> ShardCheck:
    """Open ``path`` with webdataset and count samples that have both an image and a caption."""
    import webdataset as wds  # imported here: only this step needs it

    check = ShardCheck(name=path.name, size=path.stat().st_size)
    stats = path.with_name(f"{path.stem}_stats.json")
    if stats.is_file():
        try:
            check.expected = int(json.loads(stats.read_text())["successes"])
        except (ValueError, KeyError, TypeError):
            check.expected = None
    try:
        for sample in wds.WebDataset(str(path), shardshuffle=False, empty_check=False):
            has_image = any(ext in sample for ext in IMAGE_EXTENSIONS)
            has_text = any(ext in sample for ext in TEXT_EXTENSIONS)
            if has_image and has_text:
                check.samples += 1
            else:
                check.incomplete += 1
    except Exception as exc:  # noqa: BLE001  (a corrupt tar fails in many ways: report it, check the others)
        check.error = f"{type(exc).__name__}: {exc}"
    return check
