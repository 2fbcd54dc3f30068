"""Image features reused inside an evaluation step: the vision encoder runs once per image, and
the results are those of encoding each call's images afresh."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lavis.common.config import run_schema_for
from lavis.models import load_model
from lavis.tasks.feature_cache import reuse_image_features, row_range
from lavis.tasks.vqa import VQATask, _one

pytestmark = pytest.mark.usefixtures("one_thread")


class Counting(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def encode_image(self, image: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        self.seen.append(tuple(image.shape))
        return image.flatten(1) * scale


def test_row_range_recognises_row_slices_only() -> None:
    base = torch.arange(24.0).view(4, 2, 3)
    assert row_range(base, base) == (0, 4)
    assert row_range(base[1:3], base) == (1, 3) and row_range(base[3:4], base) == (3, 4)
    assert row_range(base[:, :1], base) is None  # not whole rows
    assert row_range(base.clone()[1:2], base) is None  # other memory, whatever the values
    assert row_range(base.view(2, 4, 3), base) is None
    assert row_range(base[::2], base) is None  # a stride of two rows


def test_slices_of_the_last_batch_reuse_its_features() -> None:
    net = Counting()
    image = torch.randn(3, 2, 2)
    with reuse_image_features(net):
        full = net.encode_image(image)
        parts = [net.encode_image(image[i : i + 1]) for i in range(3)]
        assert net.seen == [(3, 2, 2)]  # one encoder call for the batch and its three rows
        assert all(torch.equal(p, full[i : i + 1]) for i, p in enumerate(parts))
        net.encode_image(image[:1], scale=2.0)  # other arguments: encoded again
        net.encode_image(image.clone()[:1])  # another tensor with the same values: encoded again
        image[0] += 1  # changed in place: encoded again
        assert torch.equal(net.encode_image(image[:1]), image[:1].flatten(1))
        assert len(net.seen) == 4
    assert "encode_image" not in vars(net)  # the model's own method again
    net.encode_image(image), net.encode_image(image)
    assert len(net.seen) == 6
    with reuse_image_features(torch.nn.Linear(2, 2)):  # no encode_image: nothing to do
        pass


def test_vqa_multiple_choice_runs_the_vision_encoder_once_per_image(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = load_model("blip_vqa", "tiny", is_eval=True)
    calls: list[int] = []
    net.vision_model.register_forward_hook(lambda mod, args, kwargs, out: calls.append(1), with_kwargs=True)
    choices = [["red", "blue", "two", "circle"], ["a square", "three", "green", "no"]]
    samples = {"image": torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)),
               "text_input": ["what colour is the circle?", "how many shapes are there?"],
               "question_id": [1, 2], "choices": choices, "correct_choice_idx": [0, 1]}
    task = VQATask(run_schema_for("vqa")(output_dir=str(tmp_path), inference_method="generate", num_beams=1, max_len=5))
    rows = task.valid_step(net, samples)
    assert len(calls) == 1  # without reuse: 1 for the batch + 1 per question's choices
    # the same answers as encoding each call's images afresh
    fresh_mc = [net.predict_answers(_one(samples, i), answer_list=choices[i], inference_method="rank",
                                    num_ans_candidates=4)[0] for i in range(2)]
    fresh = net.predict_answers(samples, inference_method="generate", num_beams=1, max_len=5)
    assert len(calls) == 4
    assert [r["mc_answer"] for r in rows] == fresh_mc and [r["answer"] for r in rows] == fresh
