"""The whole chain: a builder whose files are missing says which command fetches them; that exact
command, run against a local mirror (``LAVIS_MIRROR`` + a file server on 127.0.0.1) serving
published-format fixtures at the real URLs, lays the files out; the builder then builds from where
the download put them, and a batch comes out. COCO captions, VQAv2, GQA and NoCaps.

Published MD5s (COCO archives and Karpathy files) cannot match fixture bytes, so the specs are used
without their pinned checksums here; everything else (URLs, paths, extraction) is the real spec.
"""

from __future__ import annotations

import dataclasses
import io
import runpy
import shlex
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from lavis.common.registry import registry
from lavis.datasets.builders.real_builder import DatasetFilesMissing
from lavis.datasets.download import get_spec
from lavis.datasets.download.spec import Archive, ListedFiles, Manual, RemoteFile
from tests.helpers.http_server import FileServer
from tests.unit.datasets.real_formats import LAYOUTS

pytest_plugins = ["tests.helpers.fixtures"]  # http_server, lavis_cache

SMALL = {"train": {"name": "blip_image_train", "image_size": 16, "randaugment": True},
         "eval": {"name": "blip_image_eval", "image_size": 16}}


def _unpinned(step):
    if isinstance(step, (RemoteFile, Archive)):
        return dataclasses.replace(step, md5=None, sha256=None, size=None)
    if isinstance(step, Manual):
        return dataclasses.replace(step, archives=tuple(_unpinned(a) for a in step.archives))
    return step


@pytest.fixture
def mirror(http_server: FileServer, lavis_cache: Path, monkeypatch: pytest.MonkeyPatch) -> FileServer:
    """The mirror, and the catalog without published checksums (wherever the catalog module lives)."""
    monkeypatch.setenv("LAVIS_MIRROR", http_server.base_url)
    catalog = sys.modules[get_spec.__module__]
    specs = tuple(dataclasses.replace(s, parts=tuple(dataclasses.replace(p, steps=tuple(_unpinned(x) for x in p.steps))
                                                     for p in s.parts)) for s in catalog.ALL_DATASETS)
    monkeypatch.setattr(catalog, "ALL_DATASETS", specs)
    return http_server


def serve_fixture(server: FileServer, name: str) -> None:
    """Serve the fixture of ``name`` at the real URLs of its download spec: single files as they are,
    archives zipped from the fixture files under the folder they extract to, listed files one by one."""
    files = LAYOUTS[name]()

    def path_of(url: str) -> str:
        return f"/{urlsplit(url).netloc}{urlsplit(url).path}"

    for part in get_spec(name).parts:
        for step in part.steps:
            if isinstance(step, RemoteFile):
                server.add(path_of(step.url), files.get(step.path, b"{}"))
            elif isinstance(step, Archive) and step.url:
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w") as zf:
                    for rel, data in files.items():
                        if any(rel.startswith(e + "/") for e in step.expect):
                            zf.writestr(rel[len(step.into) + 1:], data)
                server.add(path_of(step.url), buf.getvalue())
            elif isinstance(step, ListedFiles):
                for rel, data in files.items():
                    if rel.startswith(step.into + "/"):
                        split = Path(step.into).name
                        server.add(f"/s3.amazonaws.com/nocaps/{split}/{Path(rel).name}", data)


def run_command(command: str) -> int:
    """Run ``python -m lavis.datasets.download ...`` exactly as printed, in this process (so the
    mirror settings apply); returns its exit status."""
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "lavis.datasets.download"], command
    old = sys.argv
    sys.argv = ["lavis.datasets.download", *argv[3:]]
    imported = sys.modules.pop("lavis.datasets.download.__main__", None)  # runpy runs it afresh, as python -m does
    try:
        runpy.run_module("lavis.datasets.download", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        sys.argv = old
        if imported is not None:
            sys.modules["lavis.datasets.download.__main__"] = imported
    return 0


def builder(name: str):
    cls = registry.get_builder_class(name)
    cfg = OmegaConf.merge(cls.default_config().datasets[name], {"vis_processor": SMALL})
    return cls(cfg)


def suggested_command(name: str) -> tuple[str, str]:
    """Build ``name`` expecting it to fail; returns (the message, the command it suggests)."""
    with pytest.raises(DatasetFilesMissing) as err:
        builder(name).build_datasets()
    message = str(err.value)
    return message, message.rsplit("with: ", 1)[1].strip()


def one_batch(dataset) -> dict:
    loader = DataLoader(dataset, batch_size=8, collate_fn=dataset.collater)
    return next(iter(loader))


def test_coco_captions_from_the_download_command_to_a_batch(mirror: FileServer, lavis_cache: Path) -> None:
    serve_fixture(mirror, "coco")
    message, command = suggested_command("coco")
    assert command == "python -m lavis.datasets.download coco"  # nothing there: both kinds
    assert str(lavis_cache / "coco/annotations/coco_karpathy_train.json") in message
    assert run_command(command + " --no-progress") == 0
    splits = builder("coco").build_datasets()
    batch = one_batch(splits["train"])
    assert batch["image"].shape == (4, 3, 16, 16) and batch["text_input"][0].startswith("a picture of a photo number 9")
    val = one_batch(splits["val"])
    assert val["image_id"].tolist() == [42, 73]
    assert splits["val"].gt_path == lavis_cache / "coco_gt/coco_karpathy_val_gt.json"


def test_vqav2_from_the_download_command_to_a_batch(mirror: FileServer, lavis_cache: Path) -> None:
    serve_fixture(mirror, "vqav2")
    _, command = suggested_command("vqav2")
    assert run_command(command + " --no-progress") == 0
    splits = builder("vqav2").build_datasets()
    batch = one_batch(splits["train"])
    assert batch["answer"][:3] == ["net", "netting", "mesh"] and batch["n_answers"].tolist() == [3, 1, 2]
    assert splits["val"].answer_list == ["net", "yes", "no", "2", "3"]
    assert one_batch(splits["test"])["image"].shape == (1, 3, 16, 16)  # test2015 came with the images


def test_gqa_annotations_first_then_the_images_command_the_error_names(mirror: FileServer, lavis_cache: Path) -> None:
    serve_fixture(mirror, "gqa")
    assert run_command("python -m lavis.datasets.download gqa --only annotations --no-progress") == 0
    message, command = suggested_command("gqa")
    assert command == "python -m lavis.datasets.download gqa --only images"
    assert f"images missing: {lavis_cache / 'gqa/images'}" in message and "annotations missing" not in message
    assert run_command(command + " --no-progress") == 0
    splits = builder("gqa").build_datasets()
    assert one_batch(splits["train"])["answer"] == ["yes", "pipe"]
    assert one_batch(splits["testdev"])["answers"] == [["red"]]


def test_nocaps_images_fetched_one_by_one_then_built_with_domains(mirror: FileServer, lavis_cache: Path) -> None:
    serve_fixture(mirror, "nocaps")
    _, command = suggested_command("nocaps")
    assert run_command(command + " --no-progress") == 0
    splits = builder("nocaps").build_datasets()
    batch = one_batch(splits["val"])
    assert batch["domain"] == ["in-domain", "near-domain", "out-domain"] and batch["image"].shape[0] == 3


def test_coco_download_then_the_project_config_trains_validates_and_tests(
    mirror: FileServer, lavis_cache: Path, tmp_path: Path, one_thread
) -> None:
    """From an empty cache: the download command, then ``train.py`` on
    ``projects/blip/caption_coco_ft.yaml`` with tiny-model and short-run overrides, scored with CIDEr."""
    from lavis.cli import train_main

    serve_fixture(mirror, "coco")
    assert run_command("python -m lavis.datasets.download coco --no-progress") == 0
    project = Path(__file__).resolve().parents[3] / "projects" / "blip" / "caption_coco_ft.yaml"
    out = tmp_path / "run"
    result = train_main(["--cfg-path", str(project), "--options",
                         "model.model_type=tiny", "datasets.coco.vis_processor.train.image_size=64",
                         "datasets.coco.vis_processor.eval.image_size=64", "run.device=cpu", "run.num_workers=0",
                         "run.max_epoch=1", "run.batch_size_train=2", "run.batch_size_eval=2", "run.num_beams=1",
                         "run.max_len=8", "run.min_len=2", "run.metrics=[BLEU,CIDEr]", "run.progress_bar=false",
                         "run.tensorboard=false", f"run.output_dir={out}"])
    assert result["train"]["global_step"] == 2  # 4 training captions, batch 2
    assert set(result["valid"]) == {"coco/val"} and "CIDEr" in result["valid"]["coco/val"]
    test = result["test"]["coco/test"]
    assert 0.0 <= test["CIDEr"] and test["agg_metrics"] == test["CIDEr"]
    assert (out / "checkpoint_best.pth").is_file() and (out / "config.yaml").is_file()
