"""Zoo entries derived from the shipped YAMLs, the listing, the generated table and the docs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lavis.common.registry import registry
from lavis.models import model_zoo
from lavis.zoo import default_sources, entries, get_entry
from lavis.zoo.cli import main
from lavis.zoo.report import markdown_table, parameter_count
from tests.unit.zoo.zoo_helpers import REAL_BASE_URL, tiny

DOCS = Path(__file__).resolve().parents[3] / "docs" / "model_zoo.md"
GCS = "https://storage.googleapis.com/sfr-vision-language-research"


def test_every_registered_model_type_has_an_entry():
    names = {(e.arch, e.model_type) for e in entries()}
    expected = {(a, t) for a in registry.list_models() for t in registry.get_model_class(a).model_types()}
    assert names == expected


def test_shipped_sources():
    base = get_entry("blip_caption", "base_coco")
    assert [(s.kind, s.location, s.role) for s in base.sources] == [
        ("hf", "Salesforce/blip-image-captioning-base", "finetuned"),
        ("url", REAL_BASE_URL, "finetuned"),
    ]
    assert base.pretrained.location == f"{GCS}/BLIP/models/model_base_capfilt_large.pth"
    large = get_entry("blip_caption", "large_coco")
    assert [s.location for s in large.sources] == [
        "Salesforce/blip-image-captioning-large", f"{GCS}/BLIP/models/model_large_caption.pth"]
    assert large.pretrained.location == f"{GCS}/BLIP/models/model_large.pth"
    assert get_entry("blip_caption", "tiny").random_init
    assert {e.task for e in entries() if e.arch == "blip_caption"} == {"captioning"}


def test_pins_are_well_formed_where_given():
    # a pin is only ever a value computed from the real file; at least it must look like one
    for e in entries():
        for s in list(e.sources) + ([e.pretrained] if e.pretrained else []):
            assert s.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", s.sha256), e.name
            assert s.revision is None or re.fullmatch(r"[0-9a-f]{40}", s.revision), e.name
            assert s.size is None or s.size > 0, e.name


def test_source_preference_rules():
    hub, url = "org/repo", "https://example.org/w.pth"
    both = {"load_finetuned": True, "finetuned": url, "hf_repo": hub}
    assert [s.kind for s in default_sources(both)] == ["hf", "url"]
    # a local file the user gives wins over everything
    assert [s.kind for s in default_sources({**both, "finetuned": "/data/mine.pth"})] == ["file"]
    # the Hub copy stands for the finetuned weights, not for the pre-trained ones
    pre = {"load_finetuned": False, "load_pretrained": True, "pretrained": url, "finetuned": url + "2",
           "hf_repo": hub}
    assert [(s.kind, s.role) for s in default_sources(pre)] == [("url", "pretrained")]
    assert default_sources({"load_finetuned": False, "load_pretrained": False, "hf_repo": hub}) == []
    hub_only = default_sources({"load_finetuned": True, "hf_repo": hub, "hf_revision": "a" * 40})
    assert [(s.kind, s.revision) for s in hub_only] == [("hf", "a" * 40)]


def test_pin_keys_are_valid_model_config_keys():
    from lavis.common.config import validate

    model = {"arch": "blip_caption", "model_type": "tiny", "hf_revision": "a" * 40, "hf_sha256": "b" * 64,
             "hf_size": 10, "hf_filename": "model.safetensors", "finetuned_sha256": "c" * 64, "finetuned_size": 3}
    problems = validate({"model": model, "run": {"task": "captioning"}})
    assert not [p for p in problems if p.startswith("model")], problems


def test_list_shows_every_entry_source_and_cache_state(caches, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for text in ("blip_caption base_coco", "blip_caption large_coco", "blip_caption tiny", "random init",
                 "hf:Salesforce/blip-image-captioning-base (model.safetensors or pytorch_model.bin)  not cached",
                 f"{REAL_BASE_URL}  not cached", "fetch: python -m lavis.zoo download blip_caption base_coco"):
        assert text in out
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {(r["arch"], r["model_type"]): r for r in rows}
    assert by_name[("blip_caption", "tiny")]["random_init"] is True
    base = by_name[("blip_caption", "base_coco")]
    assert [s["kind"] for s in base["sources"]] == ["hf", "url"] and not base["cached"]

    (caches["lavis"] / "models").mkdir()
    (caches["lavis"] / "models" / "blip_coco_caption_base.pth").write_bytes(b"x")
    assert main(["list"]) == 0
    assert f"cached: {caches['lavis'] / 'models' / 'blip_coco_caption_base.pth'}" in capsys.readouterr().out
    text = str(model_zoo)
    assert "hf:Salesforce/blip-image-captioning-base" in text and "cached (finetuned:" in text


def test_verify_with_nothing_cached_succeeds(caches, capsys):
    assert main(["verify", "--print"]) == 0
    assert "no cached files" in capsys.readouterr().out


def test_parameter_counts_on_the_meta_device():
    assert parameter_count(get_entry("blip_caption", "tiny")) == tiny(0).num_parameters()
    assert 220e6 < parameter_count(get_entry("blip_caption", "base_coco")) < 230e6


def test_docs_model_zoo_is_the_generated_table(capsys):
    generated = markdown_table(entries())
    assert DOCS.read_text() == generated, "regenerate: python -m lavis.zoo table --markdown > docs/model_zoo.md"
    assert main(["table", "--markdown"]) == 0
    assert capsys.readouterr().out == generated
    for e in entries():
        assert f"| {e.arch} | {e.model_type} |" in generated


@pytest.mark.parametrize("argv", [["download", "blip_caption", "base_cocoo"], ["path", "nope", "tiny"]])
def test_unknown_names_list_choices(argv, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "base_coco" in err or "blip_caption" in err
