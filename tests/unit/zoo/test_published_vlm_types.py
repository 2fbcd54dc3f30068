"""The published vision-language model types: each names its Hub repo, the zoo counts its
parameters offline (a skeleton of the repo's config, checked against the published size), and
loading one goes type -> Hub -> Hugging Face cache -> model (a tiny checkpoint served under the
published repo's name by a fake Hub on 127.0.0.1), offline afterwards; a gated repo's refusal says
how to get access."""

from __future__ import annotations

import pytest
import torch

from lavis.common.download import lookup
from lavis.common.registry import registry
from lavis.models import load_model
from lavis.models.vlm.archs import load_vlm
from lavis.models.vlm.base import HFVisionLanguageModel
from lavis.zoo import entries, get_entry
from lavis.zoo.cli import main
from lavis.zoo.fetch import WeightsAccessError, WeightsIntegrityError, WeightsOfflineError
from lavis.zoo.report import parameter_count
from tests.unit.zoo.zoo_helpers import COMMIT, serve_repo, zoo_commands

VLM_ARCHS = sorted(a for a in registry.list_models() if issubclass(registry.get_model_class(a), HFVisionLanguageModel))
PUBLISHED = [e for e in entries() if e.arch in VLM_ARCHS and e.model_type != "tiny"]
CONVERSATION = [[{"role": "user", "content": "<image>\nwhat color is the circle"},
                 {"role": "assistant", "content": "red"}]]


def test_every_vlm_arch_has_a_published_type_that_names_its_hub_repo():
    assert {e.arch for e in PUBLISHED} == set(VLM_ARCHS)
    for e in PUBLISHED:
        cls = registry.get_model_class(e.arch)
        model = cls.default_config(e.model_type).model
        assert cls.validate_config(model) == [], e.name
        assert model.checkpoint == model.processor and "/" in model.checkpoint, e.name
        [source] = e.sources
        assert (source.kind, source.folder, source.location) == ("hf", True, model.checkpoint), e.name
        assert e.published_parameters, f"{e.name}: zoo.published_parameters is missing"


@pytest.mark.parametrize("entry", PUBLISHED, ids=lambda e: e.name)
def test_offline_parameter_count_matches_the_published_size(entry, caches, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the skeleton must not need the Hub
    count = parameter_count(entry)
    assert abs(count / entry.published_parameters - 1) < 0.01, (count, entry.published_parameters)


def _tiny_hub_files(arch: str, tmp_path, seed: int = 0, **save) -> tuple[HFVisionLanguageModel, dict[str, bytes]]:
    """The tiny type of ``arch`` (seeded) and its files in the Hub layout: transformers' config,
    safetensors weights (``save`` e.g. ``max_shard_size`` for shards and their index) and processor."""
    torch.manual_seed(seed)
    model = load_model(arch, "tiny", is_eval=True)
    folder = tmp_path / f"{arch}_hub"
    model.hf_model.save_pretrained(folder, **save)
    model.processor.save_pretrained(folder)
    return model, {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _loss(model: HFVisionLanguageModel) -> torch.Tensor:
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model({"conversations": CONVERSATION, "images": [[image]]}).loss


def test_published_type_loads_through_the_zoo_and_then_offline(fake_hub, caches, tmp_path, monkeypatch, capsys):
    repo = get_entry("qwen2_vl", "2b_instruct").sources[0].location
    reference, files = _tiny_hub_files("qwen2_vl", tmp_path, max_shard_size="100KB")
    assert "model.safetensors.index.json" in files and sum(n.endswith(".safetensors") for n in files) > 1

    monkeypatch.setenv("LAVIS_OFFLINE", "1")  # nothing cached yet: the error names the command that fetches it
    with pytest.raises(WeightsOfflineError) as err:
        load_model("qwen2_vl", "2b_instruct")
    assert repo in str(err.value) and fake_hub.count() == 0
    [argv] = zoo_commands(str(err.value))
    assert argv == ["download", "qwen2_vl", "2b_instruct"]

    monkeypatch.delenv("LAVIS_OFFLINE")
    serve_repo(fake_hub, repo, files)
    assert main(argv) == 0  # the advised command, online
    folder = caches["hf"] / f"models--{repo.replace('/', '--')}" / "snapshots" / COMMIT
    assert capsys.readouterr().out.strip() == str(folder)
    shards = sorted(n for n in files if n.endswith(".safetensors"))
    for name in shards:  # every weight file recorded at first sight, with the commit
        assert (folder / name).read_bytes() == files[name]
        rec = lookup(folder / name)
        assert rec["revision"] == COMMIT and rec["size"] == len(files[name])
    assert main(["path", "qwen2_vl", "2b_instruct"]) == 0 and capsys.readouterr().out.strip() == str(folder)
    assert main(["verify", "--print"]) == 0  # every shard re-hashed; the folder is pinned by its commit
    out = capsys.readouterr().out
    assert f"{len(shards)} file(s) checked, 0 mismatch(es)" in out and out.count(f"  hf_revision: {COMMIT}") == 1
    assert "2b_instruct.yaml" in out and "hf_sha256" not in out

    damaged = folder / shards[0]
    damaged.write_bytes(files[shards[0]] + b"x")  # the cached shard changed after download
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    with pytest.raises(WeightsIntegrityError) as err:  # never used; the message names the fix
        load_model("qwen2_vl", "2b_instruct")
    [argv] = zoo_commands(str(err.value))
    assert argv == ["download", "qwen2_vl", "2b_instruct", "--force"] and str(damaged) in str(err.value)
    monkeypatch.delenv("LAVIS_OFFLINE")
    assert main(argv) == 0 and damaged.read_bytes() == files[shards[0]]
    capsys.readouterr()
    damaged.write_bytes(files[shards[0]] + b"x")
    load_model("qwen2_vl", "2b_instruct")  # online, a damaged shard is downloaded again first
    assert damaged.read_bytes() == files[shards[0]]

    fake_hub.stop()
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    model = load_model("qwen2_vl", "2b_instruct", is_eval=True)  # from the cache alone
    assert model.processor_source == repo and model.hf_model.config.text_config.hidden_size == 64
    assert torch.equal(_loss(model), _loss(reference))
    assert type(load_vlm(repo)).__name__ == "Qwen2VL"  # the repo id alone, also from the cache


def test_gated_repo_says_how_to_get_access(fake_hub, caches, tmp_path, capsys):
    repo = get_entry("paligemma", "3b_pt_224").sources[0].location
    gated = {"status": 403, "headers": {"X-Error-Code": "GatedRepo", "X-Error-Message": f"Access to {repo} is restricted"}}
    fake_hub.add(f"/api/models/{repo}/revision/main", **gated)
    with pytest.raises(WeightsAccessError) as err:
        load_model("paligemma", "3b_pt_224")
    with pytest.raises(WeightsAccessError):  # the repo id alone takes the same path
        load_vlm(repo)
    msg = str(err.value)
    assert "HTTP 403" in msg and f"https://huggingface.co/{repo}" in msg and "accept its terms" in msg
    assert "HF_TOKEN" in msg
    [argv] = zoo_commands(msg)
    assert argv == ["download", "paligemma", "3b_pt_224"]

    _, files = _tiny_hub_files("paligemma", tmp_path)  # access granted: the advised command works
    serve_repo(fake_hub, repo, files)
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().endswith(f"snapshots/{COMMIT}")
