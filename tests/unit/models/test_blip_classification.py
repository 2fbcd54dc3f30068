"""blip_classification: the momentum-distilled loss by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lavis.common.errors import ConfigError
from lavis.models.blip.blip_classification import BlipClassification

pytestmark = pytest.mark.usefixtures("one_thread")


def test_distilled_loss_by_hand():
    torch.manual_seed(0)
    model = BlipClassification.from_pretrained("tiny", alpha=0.25).eval()
    samples = {"image": torch.randn(2, 3, 64, 64), "text_input": ["a red circle", "two blue squares"],
               "label": torch.tensor([2, 0])}
    with torch.no_grad():
        logits = model.predict_class(samples)
        loss = model(samples).loss  # at init the momentum copies equal the model
    soft = F.softmax(logits, 1)
    expected = 0.75 * F.cross_entropy(logits, samples["label"]) - 0.25 * (F.log_softmax(logits, 1) * soft).sum(1).mean()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-4)
    plain = BlipClassification.from_pretrained("tiny", use_distill=False).eval()
    assert not hasattr(plain, "cls_head_m")
    with pytest.raises(ConfigError, match="num_classes: 1"):
        BlipClassification.from_pretrained("tiny", num_classes=1)
