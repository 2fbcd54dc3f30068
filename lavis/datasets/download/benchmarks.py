"""Download recipes of the vision-language benchmarks (MME, POPE, MMBench, ScienceQA, TextVQA).

Every file lands where the shipped ``lavis/configs/datasets/<name>/default.yaml`` looks for it.
URLs are the benchmarks' own (their GitHub repositories, OpenMMLab's and Meta's file hosts); no
checksums are published, so each file is recorded in the download manifest on first download.
"""

from __future__ import annotations

from lavis.datasets.download.spec import Archive, DatasetSpec, Manual, Part, RemoteFile

MME_HOME = "https://github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation"
POPE_RAW = "https://raw.githubusercontent.com/AoiDragon/POPE/main/output/coco"
SCIENCEQA_RAW = "https://raw.githubusercontent.com/lupantech/ScienceQA/main/data/scienceqa"
SCIENCEQA_IMAGES = "https://scienceqa.s3.us-west-1.amazonaws.com/images"
TEXTVQA = "https://dl.fbaipublicfiles.com/textvqa"


def benchmark_specs(coco_val2014: Part) -> tuple[DatasetSpec, ...]:
    """The benchmark data sets; POPE asks about COCO val2014 images (``coco_val2014``, the COCO part)."""
    return (
        DatasetSpec(
            name="mme",
            title="MME: perception and cognition yes/no benchmark (14 subtasks)",
            homepage=MME_HOME,
            licence="for research use, as the MME authors grant it on request",
            parts=(Part(name="release", kind="annotations", steps=(Manual(
                what="MME release folder (the authors share it on request)",
                url=MME_HOME,
                instructions=(
                    f"1. Request MME_Benchmark_release_version.zip from the MME authors as {MME_HOME} describes;",
                    "2. Save the archive as {downloads}/MME_Benchmark_release_version.zip",
                    "   (or unpack it yourself so that {root}/mme/MME_Benchmark_release_version/<subtask>/ exist).",
                ),
                expect=("mme/MME_Benchmark_release_version",),
                archives=(Archive(url=None, filename="MME_Benchmark_release_version.zip", into="mme",
                                  expect=("mme/MME_Benchmark_release_version",)),),
            ),)),),
            layout=(("questions and images", "mme/MME_Benchmark_release_version/<subtask>/..."),),
            sources=(MME_HOME,),
        ),
        DatasetSpec(
            name="pope",
            title="POPE: object-hallucination yes/no questions on COCO val2014 (random, popular, adversarial)",
            homepage="https://github.com/AoiDragon/POPE",
            licence="POPE: MIT; COCO images under their own terms",
            parts=(
                Part(name="annotations", kind="annotations", steps=tuple(
                    RemoteFile(f"{POPE_RAW}/coco_pope_{s}.json", f"pope/coco/coco_pope_{s}.json")
                    for s in ("random", "popular", "adversarial"))),
                coco_val2014,
            ),
            layout=(("annotations", "pope/coco/coco_pope_{random,popular,adversarial}.json"),
                    ("images", "coco/images/val2014/")),
            sources=("https://github.com/AoiDragon/POPE (output/coco)",),
        ),
        DatasetSpec(
            name="mmbench",
            title="MMBench English dev set (TSV with base64 images and circular copies)",
            homepage="https://github.com/open-compass/MMBench",
            licence="MMBench terms: https://github.com/open-compass/MMBench",
            parts=(Part(name="annotations", kind="annotations", steps=(RemoteFile(
                "https://download.openmmlab.com/mmclassification/datasets/mmbench/mmbench_dev_20230712.tsv",
                "mmbench/mmbench_dev_20230712.tsv"),)),),
            layout=(("questions with images", "mmbench/mmbench_dev_20230712.tsv"),),
            sources=("https://github.com/open-compass/MMBench (download links)",),
        ),
        DatasetSpec(
            name="scienceqa",
            title="ScienceQA (problems, splits and images; the builder scienceqa_img keeps image questions)",
            homepage="https://scienceqa.github.io",
            licence="CC BY-NC-SA 4.0",
            aliases=("scienceqa_img",),
            parts=(
                Part(name="annotations", kind="annotations", steps=(
                    RemoteFile(f"{SCIENCEQA_RAW}/problems.json", "scienceqa/problems.json"),
                    RemoteFile(f"{SCIENCEQA_RAW}/pid_splits.json", "scienceqa/pid_splits.json"),
                )),
                *(Part(name=f"images/{s}", kind="images", steps=(Archive(
                    url=f"{SCIENCEQA_IMAGES}/{s}.zip", filename=f"{s}.zip", into="scienceqa/images",
                    expect=(f"scienceqa/images/{s}",)),)) for s in ("train", "val", "test")),
            ),
            layout=(("annotations", "scienceqa/{problems,pid_splits}.json"),
                    ("images", "scienceqa/images/{train,val,test}/<pid>/image.png")),
            sources=("https://github.com/lupantech/ScienceQA (data/scienceqa, tools/download.sh)",),
        ),
        DatasetSpec(
            name="textvqa",
            title="TextVQA 0.5.1 validation questions with the train/val images",
            homepage="https://textvqa.org/dataset",
            licence="TextVQA annotations CC BY 4.0; images under the Open Images licences",
            parts=(
                Part(name="annotations", kind="annotations", steps=(RemoteFile(
                    f"{TEXTVQA}/data/TextVQA_0.5.1_val.json", "textvqa/TextVQA_0.5.1_val.json"),)),
                Part(name="images", kind="images", steps=(Archive(
                    url=f"{TEXTVQA}/images/train_val_images.zip", filename="train_val_images.zip", into="textvqa",
                    expect=("textvqa/train_images",)),)),
            ),
            layout=(("annotations", "textvqa/TextVQA_0.5.1_val.json"), ("images", "textvqa/train_images/*.jpg")),
            sources=("https://textvqa.org/dataset",),
        ),
    )
