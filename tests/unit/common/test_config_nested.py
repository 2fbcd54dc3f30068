"""Mistakes inside nested blocks (transformers config blocks of a model, a builder's build_info and
the model's constructor arguments) are found by the first config check, all in one error."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from lavis.common.config import Config
from lavis.common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "configs" / "demo" / "caption_shapes.yaml"

BAD_OPTIONS = [
    'model.text_config.num_hidden_layers="three"',
    "model.vision_config.hiden_size=64",
    "model.max_txt_len=forty",
    "datasets.shapes_caption.build_info.generator.sed=1",
    "datasets.shapes_caption.build_info.annotations.val.gtt=captions/val_gt.json",
    "datasets.shapes_caption.build_info.storage=[1,2]",
]


def test_nested_mistakes_are_reported_together():
    with pytest.raises(ConfigError) as info:
        Config.from_file(DEMO, BAD_OPTIONS)
    problems = info.value.problems
    expected = [
        "model.text_config.num_hidden_layers: expected int, got str 'three'",
        "model.vision_config.hiden_size: unknown key 'hiden_size'; did you mean 'hidden_size'",
        "model.max_txt_len: expected int, got str 'forty'",
        "datasets.shapes_caption.build_info.generator.sed: unknown key 'sed'; did you mean 'seed'",
        "datasets.shapes_caption.build_info.annotations.val.gtt: unknown key 'gtt'; did you mean 'gt'",
        "datasets.shapes_caption.build_info.storage: expected str, got list",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)
    assert len(problems) == len(expected), problems


def test_value_checks_of_build_info_run_before_building():
    with pytest.raises(ConfigError) as info:
        Config.from_file(DEMO, ["datasets.shapes_caption.build_info.generator.image_size=8",
                                "datasets.shapes_caption.build_info.annotations.val.gt=null"])
    text = str(info.value)
    assert "datasets.shapes_caption.build_info.generator.image_size: must be at least 32 pixels" in text
    assert "datasets.shapes_caption.build_info.annotations.val.gt: missing" in text


def test_the_shipped_configs_pass_the_nested_checks():
    cfg = Config.from_file(DEMO)
    assert cfg.model.text_config.num_hidden_layers == 3
    assert OmegaConf.select(cfg.config, "datasets.shapes_caption.build_info.generator.seed") == 0


def test_cli_exits_2_before_generating_data_or_building_the_model(tmp_path):
    cfg = OmegaConf.to_container(OmegaConf.load(DEMO))
    cfg["run"]["output_dir"] = str(tmp_path / "out")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**__import__("os").environ, "LAVIS_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--cfg-path", str(path), "--options", BAD_OPTIONS[0]],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "model.text_config.num_hidden_layers: expected int, got str 'three'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
