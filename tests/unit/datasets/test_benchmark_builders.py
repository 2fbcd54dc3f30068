"""The benchmark builders read the published files as they are: MME's two folder layouts, POPE's
JSON lines per split, MMBench's TSV with circular copies and shared images, ScienceQA's problems
and pid splits (image questions only), TextVQA's JSON; bad files fail naming file and line; the
download command their missing-files error suggests fetches what they read."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lavis.common.registry import registry
from lavis.datasets.builders.benchmark_data import BenchmarkFormatError, read_mme
from tests.helpers.http_server import FileServer
from tests.unit.datasets.benchmark_formats import BENCHMARK_LAYOUTS, MME, benchmark_fixture, mme_files
from tests.unit.datasets.real_formats import LAYOUTS, write_files
from tests.unit.datasets.test_download_to_builder import mirror, run_command, serve_fixture, suggested_command

pytest_plugins = ["tests.helpers.fixtures"]
__all__ = ["mirror"]  # the fixture, used by name below


def build(name: str, tmp_path: Path) -> dict:
    cls = registry.get_builder_class(name)
    cfg = OmegaConf.merge(cls.default_config().datasets[name], benchmark_fixture(name)(tmp_path))
    return cls(cfg).build_datasets()


def items(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def test_mme_reads_both_layouts_and_pairs_the_questions_of_each_image(tmp_path):
    test = build("mme", tmp_path)["test"]
    rows = items(test)
    assert len(rows) == 8 and {r["subtask"] for r in rows} == {"existence", "artwork", "code_reasoning"}
    art = [r for r in rows if r["subtask"] == "artwork"]
    assert [(r["group"], r["answer"]) for r in art] == [("10002", "yes"), ("10002", "no")]
    assert art[0]["question"] == "Is this artwork created by Leonardo? Please answer yes or no."
    assert all(r["kind"] == "yes_no" and r["benchmark"] == "mme" and r["images"][0].size == (24, 16) for r in rows)
    assert len({r["id"] for r in rows}) == 8


def test_mme_line_without_an_answer_names_the_file_and_line(tmp_path):
    files = mme_files()
    files[f"{MME}/existence/000000006040.txt"] = b"Is there a train?\tYes\nIs there a bed?\n"
    root = write_files(tmp_path, files)
    with pytest.raises(BenchmarkFormatError, match=r"000000006040.txt:2: expected 'question<TAB>Yes\|No'"):
        read_mme(root / MME)


def test_pope_takes_the_split_from_each_file_name(tmp_path):
    rows = items(build("pope", tmp_path)["test"])
    assert [r["subtask"] for r in rows] == ["random", "random", "popular", "popular", "adversarial", "adversarial"]
    assert [r["answer"] for r in rows[:2]] == ["yes", "no"] and rows[0]["id"] == "random/1"
    assert rows[3]["question"] == "Is there a popular car in the image?"


def test_mmbench_groups_circular_copies_and_resolves_shared_images(tmp_path):
    rows = items(build("mmbench", tmp_path)["dev"])
    assert len(rows) == 5  # 3 + 2 circular copies
    first = [r for r in rows if r["group"] == "0"]
    assert [r["shift"] for r in first] == [0, 1, 2]
    assert [r["options"] for r in first] == [["cat", "dog", "bird"], ["dog", "bird", "cat"], ["bird", "cat", "dog"]]
    assert [r["answer"] for r in first] == ["A", "C", "B"]  # "cat" wherever the rotation put it
    assert first[1]["images"][0].tobytes() == first[0]["images"][0].tobytes()  # the copy shares row 0's image
    colour = next(r for r in rows if r["id"] == "1")
    assert colour["question"] == "The image is a photograph.\nWhich colour dominates?" and colour["options"] == ["red", "blue"]
    assert first[0]["question"] == "What animal is shown?"  # hint "nan" left out


def test_mmbench_without_copies_in_the_file_gets_the_same_circular_copies(tmp_path):
    from lavis.datasets.builders.benchmark_data import read_mmbench
    from tests.unit.datasets.benchmark_formats import MMBENCH_COLUMNS, mmbench_rows

    rows = mmbench_rows()
    originals = [r for r in rows if int(r["index"]) < 1_000_000]
    path = tmp_path / "originals.tsv"
    path.write_text("\n".join(["\t".join(MMBENCH_COLUMNS)] + ["\t".join(str(r[c]) for c in MMBENCH_COLUMNS)
                                                              for r in originals]) + "\n")
    made = read_mmbench(path)
    published = read_mmbench(write_files(tmp_path / "full", BENCHMARK_LAYOUTS["mmbench"]()) / "mmbench" /
                             "mmbench_dev_20230712.tsv")
    key = lambda r: (r["id"], r["group"], r["shift"], tuple(r["options"]), r["answer"], r["image_bytes"])  # noqa: E731
    assert sorted(map(key, made)) == sorted(map(key, published)) and len(made) == 5


def test_scienceqa_img_keeps_the_image_questions_of_each_split(tmp_path):
    splits = build("scienceqa_img", tmp_path)
    test = items(splits["test"])
    assert [r["id"] for r in test] == ["5", "8"]  # pid 9 has no image
    assert test[1]["answer"] == "C" and test[1]["question"] == "Context: Look at the map.\nWhich state is highlighted?"
    assert test[0]["subtask"] == "natural science"
    assert [r["id"] for r in items(splits["train"])] == ["12", "13"]


def test_textvqa_keeps_the_ten_answers(tmp_path):
    rows = items(build("textvqa", tmp_path)["val"])
    assert rows[1]["answer"] == ["22"] * 9 + ["23"] and rows[0]["kind"] == "open"


@pytest.mark.parametrize("name, download, command, size", [
    ("pope", "pope", "python -m lavis.datasets.download pope", 6),  # questions and COCO images both missing
    ("mmbench", "mmbench", "python -m lavis.datasets.download mmbench --only annotations", 5),  # images in the TSV
    ("scienceqa_img", "scienceqa", "python -m lavis.datasets.download scienceqa", 2),
    ("textvqa", "textvqa", "python -m lavis.datasets.download textvqa", 2),
])
def test_the_suggested_download_command_fetches_what_the_builder_reads(name, download, command, size,
                                                                      mirror: FileServer, lavis_cache, monkeypatch):
    monkeypatch.setitem(LAYOUTS, download, BENCHMARK_LAYOUTS[name])
    serve_fixture(mirror, download)
    assert suggested_command(name)[1] == command
    assert run_command(command + " --no-progress") == 0
    cls = registry.get_builder_class(name)
    splits = cls(cls.default_config().datasets[name]).build_datasets()
    data = next(iter(splits.values()))
    assert len(data) == size and data[0]["images"][0].size == (24, 16)


def test_mme_download_command_unpacks_the_zip_the_user_drops(lavis_cache, capsys):
    import io
    import zipfile

    command = suggested_command("mme")[1]
    assert command == "python -m lavis.datasets.download mme --only annotations"
    assert run_command(command + " --no-progress") != 0  # nothing dropped yet: it says what to do
    said = capsys.readouterr()
    assert "MME_Benchmark_release_version.zip" in said.out + said.err
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel, data in mme_files().items():
            zf.writestr(rel[len("mme/"):], data)
    (lavis_cache / "mme" / "downloads").mkdir(parents=True, exist_ok=True)
    (lavis_cache / "mme" / "downloads" / "MME_Benchmark_release_version.zip").write_bytes(buf.getvalue())
    assert run_command(command + " --no-progress") == 0
    cls = registry.get_builder_class("mme")
    assert len(cls(cls.default_config().datasets["mme"]).build_datasets()["test"]) == 8
