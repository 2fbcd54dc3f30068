"""The data sets ``python -m lavis.datasets.download`` knows: real public URLs and where each file lands.

Sources of the URLs (also listed per data set in ``sources``):

* annotation files: LAVIS's shipped dataset configs (``lavis/configs/datasets/*/defaults*.yaml`` in
  github.com/salesforce/LAVIS, keys ``url`` and ``storage``) and BLIP / ALBEF, which host the same
  converted files on Google Cloud Storage;
* image and video archives: the data sets' official hosts, as used by LAVIS's
  ``lavis/datasets/download_scripts/*.py``.

Checksums: only the MD5 values LAVIS publishes (COCO 2014 archives, Karpathy split files) are pinned;
everything else is recorded in the download manifest on its first complete download.
Paths follow LAVIS's storage layout under the cache root, so LAVIS-style ``build_info`` entries
(``storage: coco/images/``, ``storage: coco/annotations/coco_karpathy_train.json``) find them.
"""

from __future__ import annotations

from lavis.common.errors import UnknownNameError
from lavis.datasets.download.spec import Archive, DatasetSpec, ListedFiles, Manual, Part, RemoteFile

SFR = "https://storage.googleapis.com/sfr-vision-language-research"
COCO_ZIPS = "http://images.cocodataset.org/zips"
LAVIS_CFG = "LAVIS lavis/configs/datasets/{}"
LAVIS_DL = "LAVIS lavis/datasets/download_scripts/{}"


def _files(*entries: tuple[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(url=url, path=path) for url, path in entries)


# --------------------------------------------------------------------------------------------- COCO images
def _coco_images(split: str, approx: str, md5: str | None = None) -> Part:
    return Part(
        name=f"images/{split}",
        kind="images",
        approx_size=approx,
        steps=(Archive(
            url=f"{COCO_ZIPS}/{split}.zip", filename=f"{split}.zip", into="coco/images",
            expect=(f"coco/images/{split}",), md5=md5, approx_size=approx,
            checksum_source=LAVIS_DL.format("download_coco.py") if md5 else "",
        ),),
    )


# Sizes as cocodataset.org/#download lists them; MD5s as LAVIS's download_coco.py lists them.
COCO_TRAIN2014 = _coco_images("train2014", "13GB", md5="0da8c0bd3d6becc4dcb32757491aca88")
COCO_VAL2014 = _coco_images("val2014", "6GB", md5="a3d79f5ed8d289b7a7554ce06a5782b3")
COCO_TEST2015 = _coco_images("test2015", "12GB")
COCO_TRAIN2017 = _coco_images("train2017", "18GB")
COCO_VAL2017 = _coco_images("val2017", "1GB")
COCO_TEST2017 = _coco_images("test2017", "6GB")

# ----------------------------------------------------------------------------------------- Flickr30k images
FLICKR_FORM = "https://forms.illinois.edu/sec/229675"
FLICKR_IMAGES = Part(
    name="images",
    kind="images",
    steps=(Manual(
        what="Flickr30k images (licence form of the University of Illinois)",
        url=FLICKR_FORM,
        instructions=(
            f"1. Fill in the Flickr30k request form at {FLICKR_FORM} and accept its terms;",
            "   you receive a link to flickr30k-images.tar.gz by e-mail.",
            "2. Save the archive as {downloads}/flickr30k-images.tar.gz",
            "   (or extract it yourself so that the JPEGs lie in {root}/flickr30k/images/flickr30k-images/).",
        ),
        expect=("flickr30k/images/flickr30k-images",),
        archives=(Archive(url=None, filename="flickr30k-images.tar.gz", into="flickr30k/images",
                          expect=("flickr30k/images/flickr30k-images",)),),
    ),),
)


def _lavis_ann(folder: str, *names: str, store_in: str | None = None) -> tuple[RemoteFile, ...]:
    """Files LAVIS hosts at ``SFR/LAVIS/datasets/<folder>/<name>``, stored as ``<store_in>/<name>``
    (default ``<folder>/annotations``), as LAVIS's configs store them."""
    store_in = store_in or f"{folder}/annotations"
    return tuple(RemoteFile(url=f"{SFR}/LAVIS/datasets/{folder}/{n}", path=f"{store_in}/{n}") for n in names)


DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        name="coco",
        title="COCO 2014 images with the Karpathy caption/retrieval splits",
        homepage="https://cocodataset.org/#download",
        licence="COCO terms of use: https://cocodataset.org/#termsofuse (images under their Flickr licences)",
        parts=(
            Part(name="annotations", kind="annotations", steps=(
                RemoteFile(f"{SFR}/datasets/coco_karpathy_train.json", "coco/annotations/coco_karpathy_train.json",
                           md5="aa31ac474cf6250ebb81d18348a07ed8", checksum_source=LAVIS_CFG.format("coco/defaults_cap.yaml")),
                RemoteFile(f"{SFR}/datasets/coco_karpathy_val.json", "coco/annotations/coco_karpathy_val.json",
                           md5="b273847456ef5580e33713b1f7de52a0", checksum_source=LAVIS_CFG.format("coco/defaults_cap.yaml")),
                RemoteFile(f"{SFR}/datasets/coco_karpathy_test.json", "coco/annotations/coco_karpathy_test.json",
                           md5="3ff34b0ef2db02d01c37399f6a2a6cd1", checksum_source=LAVIS_CFG.format("coco/defaults_cap.yaml")),
                # COCO-format ground truth of the Karpathy val/test splits, read by caption evaluation.
                *_files(
                    (f"{SFR}/datasets/coco_karpathy_val_gt.json", "coco_gt/coco_karpathy_val_gt.json"),
                    (f"{SFR}/datasets/coco_karpathy_test_gt.json", "coco_gt/coco_karpathy_test_gt.json"),
                ),
            )),
            COCO_TRAIN2014,
            COCO_VAL2014,
        ),
        layout=(
            ("annotations", "coco/annotations/coco_karpathy_{train,val,test}.json"),
            ("caption ground truth", "coco_gt/coco_karpathy_{val,test}_gt.json"),
            ("images", "coco/images/{train2014,val2014}/COCO_*.jpg"),
        ),
        sources=(LAVIS_CFG.format("coco/defaults_cap.yaml"), "LAVIS lavis/tasks/captioning.py (coco_gt)",
                 LAVIS_DL.format("download_coco.py")),
    ),
    DatasetSpec(
        name="flickr30k",
        title="Flickr30k (Karpathy splits, as used for retrieval and captioning)",
        homepage="https://shannon.cs.illinois.edu/DenotationGraph/",
        licence=f"Flickr30k terms, accepted through the request form {FLICKR_FORM}",
        parts=(
            Part(name="annotations", kind="annotations", steps=_files(
                (f"{SFR}/datasets/flickr30k_train.json", "flickr30k/annotations/train.json"),
                (f"{SFR}/datasets/flickr30k_val.json", "flickr30k/annotations/val.json"),
                (f"{SFR}/datasets/flickr30k_test.json", "flickr30k/annotations/test.json"),
            )),
            FLICKR_IMAGES,
        ),
        layout=(
            ("annotations", "flickr30k/annotations/{train,val,test}.json"),
            ("images", "flickr30k/images/flickr30k-images/*.jpg"),
        ),
        sources=(LAVIS_CFG.format("flickr30k/defaults.yaml"), LAVIS_DL.format("download_flickr.py (manual: Kaggle)")),
    ),
    DatasetSpec(
        name="vqav2",
        title="VQAv2 on COCO images (LAVIS's converted question files)",
        homepage="https://visualqa.org/download.html",
        licence="VQA annotations CC BY 4.0; COCO images under their own terms",
        aliases=("vqa", "coco_vqa"),
        parts=(
            Part(name="annotations", kind="annotations", steps=(
                *_files(
                    (f"{SFR}/datasets/vqa_train.json", "coco/annotations/vqa_train.json"),
                    (f"{SFR}/datasets/vqa_val.json", "coco/annotations/vqa_val.json"),
                    (f"{SFR}/datasets/vqa_test.json", "coco/annotations/vqa_test.json"),
                ),
                *_lavis_ann("vqav2", "vqa_val_eval.json", "answer_list.json", "v2_mscoco_val2014_annotations.json",
                            "v2_OpenEnded_mscoco_val2014_questions.json", store_in="coco/annotations"),
            )),
            COCO_TRAIN2014,
            COCO_VAL2014,
            COCO_TEST2015,
        ),
        layout=(
            ("annotations", ("coco/annotations/vqa_{train,val,test}.json, vqa_val_eval.json, answer_list.json, "
                            "v2_mscoco_val2014_annotations.json, v2_OpenEnded_mscoco_val2014_questions.json")),
            ("images", "coco/images/{train2014,val2014,test2015}/"),
        ),
        sources=(LAVIS_CFG.format("coco/defaults_vqa.yaml"), LAVIS_DL.format("download_coco.py")),
        notes="As in LAVIS, the VQAv2 files live in coco/annotations next to the COCO caption files. LAVIS's "
              "config lists the val questions and annotations in swapped storage order; here each file keeps its name.",
    ),
    DatasetSpec(
        name="okvqa",
        title="OK-VQA on COCO 2014 images",
        homepage="https://okvqa.allenai.org/download.html",
        aliases=("ok_vqa",),
        parts=(
            Part(name="annotations", kind="annotations", steps=(
                RemoteFile(f"{SFR}/LAVIS/datasets/okvqa/okvqa_train.json", "okvqa/annotations/okvqa_train.json"),
                RemoteFile(f"{SFR}/LAVIS/datasets/okvqa/okvqa_val_eval.json", "okvqa/annotations/vqa_val_eval.json"),
                RemoteFile(f"{SFR}/LAVIS/datasets/okvqa/okvqa_answer_list_train.json",
                           "okvqa/annotations/answer_list.json"),
                *_lavis_ann("okvqa", "OpenEnded_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json"),
            )),
            COCO_TRAIN2014,
            COCO_VAL2014,
        ),
        layout=(
            ("annotations", ("okvqa/annotations/{okvqa_train,vqa_val_eval,answer_list}.json, "
                            "OpenEnded_mscoco_val2014_questions.json, mscoco_val2014_annotations.json")),
            ("images", "coco/images/{train2014,val2014}/"),
        ),
        sources=(LAVIS_CFG.format("okvqa/defaults.yaml"),),
    ),
    DatasetSpec(
        name="aokvqa",
        title="A-OKVQA on COCO 2017 images",
        homepage="https://allenai.org/project/a-okvqa/home",
        aliases=("aok_vqa", "a-okvqa"),
        parts=(
            Part(name="annotations", kind="annotations", steps=(
                *_lavis_ann("aokvqa", "aokvqa_v1p0_train.json", "aokvqa_v1p0_val.json", "aokvqa_v1p0_test.json",
                            "large_vocab_train_lavis.json"),
                RemoteFile(f"{SFR}/LAVIS/datasets/aokvqa/specialized_vocab_train.json",
                           "aokvqa/annotations/specialized_vocab_train_lavis.json"),
            )),
            COCO_TRAIN2017,
            COCO_VAL2017,
            COCO_TEST2017,
        ),
        layout=(
            ("annotations", ("aokvqa/annotations/aokvqa_v1p0_{train,val,test}.json, "
                            "specialized_vocab_train_lavis.json, large_vocab_train_lavis.json")),
            ("images", "coco/images/{train2017,val2017,test2017}/"),
        ),
        sources=(LAVIS_CFG.format("aokvqa/defaults.yaml"), LAVIS_CFG.format("gqa/defaults.yaml (large vocab)")),
    ),
    DatasetSpec(
        name="gqa",
        title="GQA balanced questions with the GQA images",
        homepage="https://cs.stanford.edu/people/dorarad/gqa/download.html",
        licence="GQA terms: https://cs.stanford.edu/people/dorarad/gqa/download.html",
        parts=(
            Part(name="annotations", kind="annotations", steps=_lavis_ann(
                "gqa", "train_balanced_questions.json", "val_balanced_questions.json",
                "testdev_balanced_questions.json", "test_balanced_questions.json")),
            Part(name="images", kind="images", steps=(Archive(
                url="https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip", filename="images.zip", into="gqa",
                expect=("gqa/images",)),)),
        ),
        layout=(
            ("annotations", "gqa/annotations/{train,val,testdev,test}_balanced_questions.json"),
            ("images", "gqa/images/*.jpg"),
        ),
        sources=(LAVIS_CFG.format("gqa/balanced_val.yaml"), LAVIS_CFG.format("gqa/balanced_testdev.yaml"),
                 LAVIS_DL.format("download_gqa.py")),
    ),
    DatasetSpec(
        name="nocaps",
        title="NoCaps validation and test (Open Images images, fetched one by one)",
        homepage="https://nocaps.org/download",
        licence="NoCaps annotations CC BY 2.0; images under the Open Images licences",
        parts=(
            Part(name="annotations", kind="annotations", steps=(
                RemoteFile(f"{SFR}/datasets/nocaps_val.json", "nocaps/annotations/nocaps_val.json"),
                RemoteFile(f"{SFR}/datasets/nocaps_test.json", "nocaps/annotations/nocaps_test.json"),
            )),
            Part(name="images/val", kind="images", steps=(
                RemoteFile("https://nocaps.s3.amazonaws.com/nocaps_val_4500_captions.json",
                           "nocaps/annotations/nocaps_val_4500_captions.json"),
                ListedFiles(index="nocaps/annotations/nocaps_val_4500_captions.json", list_key="images",
                            url_field="coco_url", into="nocaps/images/val"),
            )),
            Part(name="images/test", kind="images", steps=(
                RemoteFile("https://s3.amazonaws.com/nocaps/nocaps_test_image_info.json",
                           "nocaps/annotations/nocaps_test_image_info.json"),
                ListedFiles(index="nocaps/annotations/nocaps_test_image_info.json", list_key="images",
                            url_field="coco_url", into="nocaps/images/test"),
            )),
        ),
        layout=(
            ("annotations", "nocaps/annotations/nocaps_{val,test}.json (+ the official image lists)"),
            ("images", "nocaps/images/{val,test}/<open images id>.jpg"),
        ),
        sources=(LAVIS_CFG.format("nocaps/defaults.yaml"), LAVIS_DL.format("download_nocaps.py")),
        notes="LAVIS's config stores the annotations under 'nocap/annotations' (sic) and the images on an "
              "internal path; here both live under nocaps/.",
    ),
    DatasetSpec(
        name="nlvr2",
        title="NLVR2 (pairs of web photographs with a statement)",
        homepage="https://lil.nlp.cornell.edu/nlvr/",
        licence="NLVR2 terms of service, accepted through the image request form",
        aliases=("nlvr",),
        parts=(
            Part(name="annotations", kind="annotations", steps=_files(
                (f"{SFR}/datasets/nlvr_train.json", "nlvr/annotations/train.json"),
                (f"{SFR}/datasets/nlvr_dev.json", "nlvr/annotations/dev.json"),
                (f"{SFR}/datasets/nlvr_test.json", "nlvr/annotations/test.json"),
            )),
            Part(name="images", kind="images", steps=(Manual(
                what="NLVR2 images (request form of the NLVR2 authors)",
                url="https://lil.nlp.cornell.edu/nlvr/",
                instructions=(
                    "1. Open https://lil.nlp.cornell.edu/nlvr/, fill in the Google Form for direct access to the",
                    "   NLVR2 images and accept the terms of service; you receive links to the image archives.",
                    "2. Save train_img.zip, dev_img.zip and test1_img.zip in {downloads}/",
                    "   (or extract them yourself into {root}/nlvr/images/, giving images/train/, dev/ and test1/).",
                    "   Without the form, the NLVR2 repository (github.com/lil-lab/nlvr) lists the original image",
                    "   URLs; many of them no longer resolve.",
                ),
                expect=("nlvr/images/images/train", "nlvr/images/dev", "nlvr/images/test1"),
                archives=(
                    Archive(url=None, filename="train_img.zip", into="nlvr/images", expect=("nlvr/images/images/train",)),
                    Archive(url=None, filename="dev_img.zip", into="nlvr/images", expect=("nlvr/images/dev",)),
                    Archive(url=None, filename="test1_img.zip", into="nlvr/images", expect=("nlvr/images/test1",)),
                ),
            ),)),
        ),
        layout=(
            ("annotations", "nlvr/annotations/{train,dev,test}.json"),
            ("images", "nlvr/images/{images/train,dev,test1}/*.png"),
        ),
        sources=(LAVIS_CFG.format("nlvr/defaults.yaml (storage)"), "BLIP data/nlvr_dataset.py (annotation URLs)"),
    ),
    DatasetSpec(
        name="snli_ve",
        title="SNLI-VE visual entailment on Flickr30k images",
        homepage="https://github.com/necla-ml/SNLI-VE",
        licence="SNLI CC BY-SA 4.0; Flickr30k images through the Flickr30k form",
        aliases=("snli-ve", "snlive"),
        parts=(
            Part(name="annotations", kind="annotations", steps=(Archive(
                url="https://storage.googleapis.com/sfr-pcl-data-research/ALBEF/data.tar.gz", filename="albef_data.tar.gz",
                into="snli/annotations",
                pick=(("ve_train.json", "snli/annotations/ve_train.json"),
                      ("ve_dev.json", "snli/annotations/ve_dev.json"),
                      ("ve_test.json", "snli/annotations/ve_test.json")),
                expect=("snli/annotations/ve_train.json", "snli/annotations/ve_dev.json",
                        "snli/annotations/ve_test.json")),)),
            FLICKR_IMAGES,
        ),
        layout=(
            ("annotations", "snli/annotations/ve_{train,dev,test}.json"),
            ("images", "flickr30k/images/flickr30k-images/*.jpg (shared with flickr30k)"),
        ),
        sources=(LAVIS_CFG.format("snli_ve/defaults.yaml (storage)"),
                 "ALBEF README (data.tar.gz: json files of the downstream tasks)"),
    ),
    DatasetSpec(
        name="msrvtt",
        title="MSR-VTT videos with LAVIS's retrieval, captioning and QA splits",
        homepage="https://github.com/m-bain/frozen-in-time#-finetuning-benchmarks-msr-vtt",
        licence="MSR-VTT research terms; videos redistributed by the Frozen in Time authors",
        parts=(
            Part(name="annotations", kind="annotations", steps=(
                *_lavis_ann("msrvtt", *(f"{t}_{s}.json" for t in ("retrieval", "cap", "qa")
                                        for s in ("train", "val", "test"))),
                RemoteFile(f"{SFR}/LAVIS/datasets/msrvtt/train_ans2label.json", "msrvtt/annotations/qa_ans2label.json"),
            )),
            Part(name="videos", kind="videos", steps=(Archive(
                url="https://www.robots.ox.ac.uk/~maxbain/frozen-in-time/data/MSRVTT.zip", filename="MSRVTT.zip",
                into="msrvtt/videos", select="MSRVTT/videos/all", expect=("msrvtt/videos",)),)),
        ),
        layout=(
            ("annotations", "msrvtt/annotations/{retrieval,cap,qa}_{train,val,test}.json, qa_ans2label.json"),
            ("videos", "msrvtt/videos/video*.mp4"),
        ),
        sources=(LAVIS_CFG.format("msrvtt/defaults_{ret,cap,qa}.yaml"),
                 "Frozen in Time README (MSRVTT.zip); LAVIS download_msrvtt.py points at temporary MediaFire links"),
    ),
    DatasetSpec(
        name="msvd",
        title="MSVD (YouTube clips) with LAVIS's captioning and QA splits",
        homepage="https://www.cs.utexas.edu/users/ml/clamp/videoDescription/",
        parts=(
            Part(name="annotations", kind="annotations", steps=(
                *_lavis_ann("msvd", *(f"{t}_{s}.json" for t in ("cap", "qa") for s in ("train", "val", "test"))),
                RemoteFile(f"{SFR}/LAVIS/datasets/msvd/train_ans2label.json", "msvd/annotations/qa_ans2label.json"),
            )),
            Part(name="videos", kind="videos", steps=(Archive(
                url="https://www.cs.utexas.edu/users/ml/clamp/videoDescription/YouTubeClips.tar",
                filename="YouTubeClips.tar", into="msvd/videos", select="YouTubeClips", expect=("msvd/videos",)),)),
        ),
        layout=(
            ("annotations", "msvd/annotations/{cap,qa}_{train,val,test}.json, qa_ans2label.json"),
            ("videos", "msvd/videos/*.avi"),
        ),
        sources=(LAVIS_CFG.format("msvd/defaults_{cap,qa}.yaml"), LAVIS_DL.format("download_msvd.py")),
    ),
    DatasetSpec(
        name="didemo",
        title="DiDeMo videos with LAVIS's retrieval splits",
        homepage="https://github.com/LisaAnne/LocalizingMoments",
        parts=(
            Part(name="annotations", kind="annotations", steps=_lavis_ann(
                "didemo", "retrieval_train.json", "retrieval_val.json", "retrieval_test.json")),
            Part(name="videos", kind="videos", steps=(Archive(
                url=f"{SFR}/LAVIS/datasets/didemo/didemo_videos.tar.gz", filename="didemo_videos.tar.gz",
                into="didemo/videos", select="videos", expect=("didemo/videos",)),)),
        ),
        layout=(
            ("annotations", "didemo/annotations/retrieval_{train,val,test}.json"),
            ("videos", "didemo/videos/*"),
        ),
        sources=(LAVIS_CFG.format("didemo/defaults_ret.yaml"), LAVIS_DL.format("download_didemo.py")),
    ),
)

from lavis.datasets.download.benchmarks import benchmark_specs
from lavis.datasets.download.webscale import WEB_DATASETS

ALL_DATASETS: tuple[DatasetSpec, ...] = DATASETS + WEB_DATASETS + benchmark_specs(COCO_VAL2014)


def dataset_names() -> list[str]:
    """Every data set name, in table order."""
    return [spec.name for spec in ALL_DATASETS]


def get_spec(name: str) -> DatasetSpec:
    """The spec of ``name`` (or one of its aliases, case-insensitive); unknown names list the valid ones."""
    key = name.strip().lower()
    for spec in ALL_DATASETS:
        if key == spec.name or key in spec.aliases:
            return spec
    raise UnknownNameError("data set", name, dataset_names())
