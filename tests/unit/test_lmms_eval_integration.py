"""lmms-eval runs its tasks on a lavis model: a task YAML over a local JSON-lines file (lmms-eval
tasks normally load from the Hub, unreachable here) answered with ``generate_until`` on the tiny
Qwen2-VL, and ``loglikelihood`` requests scored as the model scores replies. Skipped without lmms-eval."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install 'lavis[lmms-eval]')")

UTILS = '''
from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc):
    return doc["question"]


def process_results(doc, results):
    return {"yes_no_accuracy": float(results[0].strip().lower() == doc["answer"])}
'''

YES_NO = """
task: lavis_local_yes_no
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {cache}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 2
  do_sample: false
  until: ["\\n"]
process_results: !function utils.process_results
metric_list:
  - metric: yes_no_accuracy
    aggregation: mean
    higher_is_better: true
"""

@pytest.fixture
def tasks(tmp_path, monkeypatch):
    from tests.unit.datasets.real_formats import image_bytes

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "tasks"
    folder.mkdir()
    images = []
    for n in range(3):
        images.append(tmp_path / f"{n}.jpg")
        images[-1].write_bytes(image_bytes(n))
    yes_no = [{"image": str(p), "question": "is there a red circle ?", "answer": a} for p, a in zip(images, "yyn")]
    yes_no = [{**d, "answer": "yes" if d["answer"] == "y" else "no"} for d in yes_no]
    data = tmp_path / "yes_no.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in yes_no))
    (folder / "yes_no.yaml").write_text(textwrap.dedent(YES_NO).format(data=data, cache=tmp_path / "hf"))
    (folder / "utils.py").write_text(UTILS)
    return folder


@pytest.mark.slow  # importing lmms_eval.evaluator alone takes 16 s on the shared 2-core machine
def test_lmms_eval_runs_a_local_task_on_a_lavis_model(tasks, one_thread, monkeypatch):
    from lmms_eval import evaluator
    from lmms_eval.tasks import TaskManager

    from lavis.integrations.lmms_eval import LavisVLM
    from lavis.models import load_model

    torch.manual_seed(0)
    model = load_model("qwen2_vl", "tiny", is_eval=True)
    lm = LavisVLM(model=model, batch_size=2)
    manager = TaskManager("WARNING", include_path=str(tasks), include_defaults=False)
    # lmms-eval 0.7.3 patches filelock 3.x internals (filelock._api) that filelock 4 no longer has;
    # the patch guards nested dataset loads, which these local JSON files do not make
    monkeypatch.setattr(evaluator._enable_reentrant_filelocks, "_patched", True, raising=False)
    out = evaluator.simple_evaluate(model=lm, tasks=["lavis_local_yes_no"], task_manager=manager, log_samples=True,
                                    verbosity="WARNING")
    samples = out["samples"]["lavis_local_yes_no"]
    replies = [s["resps"][0][0] for s in samples]
    assert len(replies) == 3 and all(isinstance(r, str) and "\n" not in r for r in replies)
    # the replies lmms-eval logged are the model's own, and its accuracy is computed from them
    doc = samples[0]["doc"]
    direct = model.generate({"conversations": [[{"role": "user", "content": f"<image>\n{doc['question']}"}]],
                             "images": [[_image(doc["image"])]]}, max_new_tokens=2)
    assert replies[0] == direct[0]
    expected = sum(r.strip().lower() == s["doc"]["answer"] for r, s in zip(replies, samples)) / 3
    assert out["results"]["lavis_local_yes_no"]["yes_no_accuracy,none"] == pytest.approx(expected)


def test_loglikelihood_requests_score_replies_like_the_model(one_thread, tmp_path):
    """lmms-eval 0.7.3's evaluator turns (logprob, is_greedy) pairs into strings
    (``unwrap_generation_output``), so its multiple-choice tasks cannot run in that version; the
    requests are answered here directly, as the evaluator would send them."""
    from lmms_eval.api.instance import Instance

    from lavis.integrations.lmms_eval import LavisVLM
    from lavis.models import load_model
    from tests.unit.datasets.real_formats import image_bytes

    torch.manual_seed(0)
    model = load_model("qwen2_vl", "tiny", is_eval=True)
    lm = LavisVLM(model=model, batch_size=2)
    (tmp_path / "0.jpg").write_bytes(image_bytes(0))
    lm.task_dict = {"t": {"test": [{"image": str(tmp_path / "0.jpg")}]}}
    visual = lambda doc: [_image(doc["image"])]  # noqa: E731
    options = ["red", "blue", "green"]
    requests = [Instance("loglikelihood", ("what color is the shape ?", o, visual, 0, "t", "test"), idx=k,
                         metadata={"task": "t", "doc_id": 0, "repeats": 1}) for k, o in enumerate(options)]
    answers = lm.loglikelihood(requests)
    conv = [[{"role": "user", "content": "<image>\nwhat color is the shape ?"}]] * 3
    ours, greedy = model.reply_loglikelihoods(conv, [[_image(str(tmp_path / "0.jpg"))]] * 3, options)
    assert [a[0] for a in answers] == pytest.approx(ours.tolist(), abs=1e-5)
    assert [a[1] for a in answers] == greedy.tolist() and all(a[0] < 0 for a in answers)


def _image(path: str):
    from PIL import Image

    return Image.open(path).convert("RGB")


def test_the_lavis_model_needs_an_arch_and_type():
    from lavis.common.errors import LavisError
    from lavis.integrations.lmms_eval import LavisVLM, cut_at

    with pytest.raises(LavisError, match="model_args arch=<registered VLM>,model_type=<type>"):
        LavisVLM()
    assert cut_at("yes\nno", ["\n"]) == "yes" and cut_at("yes", []) == "yes"


def test_lmms_eval_finds_the_lavis_model_through_the_entry_point_setup_py_declares():
    import re

    from lmms_eval.models.registry_v2 import ModelRegistryV2

    from lavis.integrations import lmms_eval as bridge

    setup = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    target = re.search(r'"lmms_eval.models": \["lavis=([\w.]+):(\w+)"\]', setup)
    assert target and (target.group(1), target.group(2)) == (bridge.__name__, "manifest")
    registry = ModelRegistryV2()
    for record in registry._coerce_payload_to_manifests(bridge.manifest):  # what loading the entry point gives
        registry.register_manifest(record)
    cls = registry.get_model_class("lavis")
    assert cls is bridge.LavisVLM
    lm = cls.create_from_arg_string("arch=qwen2_vl,model_type=tiny", {"batch_size": 2})
    assert lm.batch_size == 2 and type(lm.model).__name__ == "Qwen2VL"
