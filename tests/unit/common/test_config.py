"""Config merging (precedence), validation (all problems at once), saving."""

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from lavis.common.config import Config, parse_options, validate
from lavis.common.errors import ConfigError

DEMO = Path(__file__).resolve().parents[3] / "configs" / "demo" / "caption_shapes.yaml"


def write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def demo_dict() -> dict:
    return OmegaConf.to_container(OmegaConf.load(DEMO))


def test_demo_config_is_valid_and_typed():
    cfg = Config.from_file(DEMO)
    assert cfg.model.arch == "blip_caption"
    assert cfg.run.task == "captioning"
    assert isinstance(cfg.run.init_lr, float) and cfg.run.init_lr == pytest.approx(1e-3)
    # defaults of the schema are filled in
    assert cfg.run.accum_grad_iters == 1
    # task keys are typed too
    assert cfg.run.num_beams == 3


def test_precedence_model_defaults_dataset_defaults_file_options(tmp_path):
    from lavis.common.registry import registry

    shipped_model = registry.get_model_class("blip_caption").default_config("tiny").model
    shipped_data = registry.get_builder_class("shapes_caption").default_config("default").datasets.shapes_caption
    d = demo_dict()
    cfg = Config.from_file(write(tmp_path, d))
    # shipped model-type defaults fill keys the file does not set
    assert cfg.model.tokenizer == shipped_model.tokenizer
    assert cfg.model.vision_config == shipped_model.vision_config
    # shipped dataset defaults fill build_info
    assert cfg.datasets.shapes_caption.build_info == shipped_data.build_info
    # the experiment file beats the shipped defaults
    d["model"]["max_txt_len"] = 17
    cfg = Config.from_file(write(tmp_path, d))
    assert cfg.model.max_txt_len == 17
    # --options beat the file
    cfg = Config.from_file(write(tmp_path, d), ["model.max_txt_len=21", "run.max_epoch=3"])
    assert cfg.model.max_txt_len == 21 and cfg.run.max_epoch == 3


def test_every_bad_key_is_reported_at_once(tmp_path):
    d = demo_dict()
    d["model"]["arch"] = "blip_captoin"
    d["run"]["task"] = "captionning"
    d["run"]["max_epochs"] = 3  # unknown key (max_epoch is right)
    d["run"]["batch_size_train"] = "big"  # wrong type
    d["run"]["amp"] = "fp8"  # bad choice
    d["datasets"]["shapes_caption"]["vis_processor"]["train"]["name"] = "blip_image_trian"
    d["datasets"]["shapes_captoin"] = {"type": "default"}
    with pytest.raises(ConfigError) as info:
        Config.from_file(write(tmp_path, d))
    problems = info.value.problems
    text = str(info.value)
    assert "model.arch: unknown model 'blip_captoin'; did you mean 'blip_caption'" in text
    assert "run.task: unknown task 'captionning'; did you mean 'captioning'" in text
    assert "run.max_epochs: unknown key 'max_epochs'; did you mean 'max_epoch'" in text
    assert "run.batch_size_train: expected int, got str 'big'" in text
    assert "run.amp: 'fp8' is not one of none, auto, bf16, fp16" in text
    assert "datasets.shapes_caption.vis_processor.train.name: unknown processor 'blip_image_trian'" in text
    assert "datasets.shapes_captoin: unknown dataset builder 'shapes_captoin'; did you mean 'shapes_caption'" in text
    assert len(problems) == 7, problems


def test_unknown_model_type_model_key_and_processor_key(tmp_path):
    d = demo_dict()
    d["model"]["model_type"] = "tinny"
    d["datasets"]["shapes_caption"]["vis_processor"]["eval"]["imagesize"] = 64
    with pytest.raises(ConfigError) as info:
        Config.from_file(write(tmp_path, d))
    text = str(info.value)
    assert "model.model_type: unknown model type of blip_caption 'tinny'; did you mean 'tiny'" in text
    assert "vis_processor.eval.imagesize: unknown key 'imagesize'; did you mean 'image_size'" in text
    d = demo_dict()
    d["model"]["promt"] = "a photo of "
    with pytest.raises(ConfigError, match="model.promt: unknown key 'promt'; did you mean 'prompt'"):
        Config.from_file(write(tmp_path, d))


def test_missing_task_and_run_section():
    assert any(p.startswith("run: missing") for p in validate({"model": {"arch": "blip_caption"}}))
    assert any(p.startswith("run.task: missing") for p in validate({"run": {"max_epoch": 1}}))


def test_bad_options_and_files(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_options(["run.max_epoch"])
    with pytest.raises(ConfigError, match="does not exist"):
        Config.from_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse YAML"):
        Config.from_file(bad)


def test_save_writes_resolved_config(tmp_path):
    cfg = Config.from_file(DEMO, ["run.max_epoch=5"])
    path = cfg.save(tmp_path)
    saved = OmegaConf.load(path)
    assert saved.run.max_epoch == 5
    assert saved.model.arch == "blip_caption"
    # the saved file is itself a valid config that gives the same result
    assert Config.from_file(path).to_dict() == cfg.to_dict()


def test_cli_rejects_bad_config_before_building_anything(tmp_path, monkeypatch):
    from lavis import cli
    from lavis.models.base_model import BaseModel

    built = []
    monkeypatch.setattr(BaseModel, "from_config", classmethod(lambda cls, c: built.append(c)))
    d = demo_dict()
    d["run"]["output_dir"] = str(tmp_path / "out")
    d["run"]["lr_schedule"] = "cosine"
    with pytest.raises(ConfigError, match="run.lr_schedule: unknown key"):
        cli.train_main(["--cfg-path", str(write(tmp_path, d))])
    assert built == [] and not (tmp_path / "out").exists()
