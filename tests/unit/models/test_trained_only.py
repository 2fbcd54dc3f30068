"""Trained-only weights of any BaseModel: what is kept, what is recorded, and the checks on load."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lavis.common.checkpoint import RecordedStateDict, atomic_save
from lavis.common.errors import CheckpointError
from lavis.models import trained_only
from lavis.models.base_model import BaseModel


class Frozen(BaseModel):
    """A frozen encoder with batch norm (its running statistics change in training) and a head."""

    def __init__(self, head: int = 3):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
        self.head = nn.Linear(8, head)
        self.encoder.requires_grad_(False)


def _cfg(base_file) -> dict:
    return {"arch": "frozen", "model_type": "tiny", "finetuned": str(base_file), "load_finetuned": True}


def _trained(seed: int, base_file) -> tuple[Frozen, dict, dict]:
    torch.manual_seed(seed)
    model = Frozen()
    model.load_checkpoint(base_file)
    model.train()
    model.encoder(torch.randn(16, 4))  # running statistics move
    with torch.no_grad():
        model.head.weight.add_(1.0)
    weights, record = trained_only.select(model, model.state_dict(), _cfg(base_file), "auto")
    assert record is not None
    return model, weights, record


@pytest.fixture
def base_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "base.pth"
    torch.save(Frozen().state_dict(), path)
    return path


def test_select_keeps_trained_parameters_and_every_buffer(base_file):
    model, weights, record = _trained(1, base_file)
    assert set(weights) == {"head.weight", "head.bias", "encoder.1.running_mean", "encoder.1.running_var",
                            "encoder.1.num_batches_tracked"}
    assert record["keys"] == sorted(weights)
    assert record["base_keys"] == ["encoder.0.bias", "encoder.0.weight", "encoder.1.bias", "encoder.1.weight"]
    assert record["base"] == {**_cfg(base_file), "finetuned": str(base_file.resolve())}
    assert torch.equal(weights["encoder.1.running_mean"], model.encoder[1].running_mean)


def test_save_modes(base_file):
    model = Frozen()
    state = model.state_dict()
    assert trained_only.select(model, state, _cfg(base_file), "all") == (state, None)
    random_init = {"arch": "frozen", "model_type": "tiny"}  # no base file to rebuild the rest from
    assert trained_only.select(model, state, random_init, "auto")[1] is None
    assert trained_only.select(model, state, random_init, "trained")[1] is not None
    model.requires_grad_(True)  # a full fine-tune saves everything
    assert trained_only.select(model, state, _cfg(base_file), "trained")[1] is None
    with pytest.raises(ValueError, match="save mode must be one of"):
        trained_only.select(model, state, _cfg(base_file), "some")


def test_finetuned_loads_the_base_then_the_trained_entries(base_file, tmp_path):
    model, weights, record = _trained(1, base_file)
    atomic_save({"model": weights, "model_record": record}, tmp_path / "ckpt.pth")
    torch.manual_seed(5)  # another random init: the base file must be loaded first
    again = Frozen()
    again.load_checkpoint(tmp_path / "ckpt.pth")
    want, got = model.state_dict(), again.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_a_different_base_or_missing_keys_fail_with_what_to_do(base_file, tmp_path):
    _, weights, record = _trained(1, base_file)
    atomic_save({"model": weights, "model_record": record}, tmp_path / "ckpt.pth")
    other = Frozen()
    with pytest.raises(CheckpointError) as err:  # the base is not loaded by the runner's exact load
        trained_only.load(other, RecordedStateDict(weights, record), "ckpt.pth")
    msg = str(err.value)
    assert "holds only the trained parameters (5 tensors) of a run on frozen tiny" in msg
    assert "the base weights of this model differ" in msg and "model.finetuned" in msg
    assert "run.save_weights: all" in msg
    with pytest.raises(CheckpointError, match="2 of its tensors have other shapes in this model"):
        Frozen(head=5).load_checkpoint(tmp_path / "ckpt.pth")
    torch.manual_seed(0)
    shrunk = Frozen()
    del shrunk.head
    with pytest.raises(CheckpointError, match="this model lacks 2 of its keys"):
        shrunk.load_checkpoint(tmp_path / "ckpt.pth")
    torch.save(Frozen().state_dict(), base_file)  # the base file changed since the run
    with pytest.raises(CheckpointError, match="the base weights of this model differ"):
        Frozen().load_checkpoint(tmp_path / "ckpt.pth")
    base_file.unlink()
    with pytest.raises(CheckpointError, match=r"ckpt.pth holds only the trained parameters of a run on frozen tiny, "
                                              r".*and its base does not load: .*base.pth does not exist"):
        Frozen().load_checkpoint(tmp_path / "ckpt.pth")


def test_fingerprint_sees_a_changed_value_and_ignores_bf16_storage():
    state = {"w": torch.randn(64, 64), "b": torch.randn(3)}
    fp = trained_only.fingerprint(state, state)
    assert trained_only.fingerprint({k: v.to(torch.bfloat16) for k, v in state.items()}, state) == fp
    changed = {**state, "w": state["w"] + 1e-2}
    assert trained_only.fingerprint(changed, state) != fp


def test_frozen_parameters_that_change_anyway_are_kept(base_file, tmp_path):
    """A momentum copy has requires_grad off but moves with the model: it is saved, not left to the base."""
    torch.manual_seed(1)
    model = Frozen()
    model.load_checkpoint(base_file)
    watch = trained_only.FrozenWatch(model)
    assert watch.changed() == set()
    with torch.no_grad():
        model.encoder[0].weight.mul_(0.9).add_(0.1)  # an in-place moving-average update
    changed = watch.changed()
    assert changed == {"encoder.0.weight"}
    weights, record = trained_only.select(model, model.state_dict(), _cfg(base_file), "auto", changed)
    assert record is not None and "encoder.0.weight" in weights and "encoder.0.weight" not in record["base_keys"]
    atomic_save({"model": weights, "model_record": record}, tmp_path / "ckpt.pth")
    again = Frozen()
    again.load_checkpoint(tmp_path / "ckpt.pth")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
