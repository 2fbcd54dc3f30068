"""The registry: lookups, errors, registration rules, lazy built-ins, and a light ``import lavis``."""

import subprocess
import sys
import textwrap

import pytest

from lavis.common.errors import RegistrationError, UnknownNameError
from lavis.common.registry import Registry, registry


class Base:
    pass


class Other:
    pass


def make_registry(**kw) -> Registry:
    return Registry("widget", base=f"{__name__}:Base", **kw)


def test_register_and_get():
    reg = make_registry()

    @reg.register("alpha")
    class Alpha(Base):
        pass

    assert reg.get("alpha") is Alpha
    assert "alpha" in reg and "beta" not in reg
    assert reg.names() == ["alpha"]


def test_unknown_name_lists_close_matches_and_all_names():
    reg = make_registry()
    for name in ("blip_caption", "blip_retrieval", "clip_feature"):
        reg.add(name, type(name, (Base,), {}))
    with pytest.raises(UnknownNameError) as info:
        reg.get("blip_captoin")
    msg = str(info.value)
    assert "unknown widget 'blip_captoin'" in msg
    assert "did you mean 'blip_caption'" in msg
    assert "blip_caption, blip_retrieval, clip_feature" in msg
    assert isinstance(info.value, KeyError)  # code that catches KeyError keeps working


def test_taken_name_and_wrong_base_raise():
    reg = make_registry()
    reg.add("alpha", type("A", (Base,), {}))
    with pytest.raises(RegistrationError, match="already taken"):
        reg.add("alpha", type("B", (Base,), {}))
    with pytest.raises(RegistrationError, match=f"must derive from {__name__}.Base"):
        reg.add("other", Other)
    with pytest.raises(RegistrationError, match="non-empty string"):
        reg.register("")


def test_reregistering_the_same_class_is_harmless():
    reg = make_registry()
    cls = type("A", (Base,), {})
    reg.add("alpha", cls)
    reg.add("alpha", cls)  # a module imported twice (e.g. by a test runner) must not break
    assert reg.names() == ["alpha"]


def _write_plugin(root, name: str, body: str) -> None:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "widgets.py").write_text(textwrap.dedent(body))


def test_locations_are_scanned_without_import_and_a_lookup_imports_one_module(tmp_path, monkeypatch):
    _write_plugin(
        tmp_path,
        "lazy_widgets",
        f"""
        \"\"\"Docstrings and comments do not register: @LAZY.register_widget("in_docstring")\"\"\"
        from {__name__} import Base, LAZY
        # LAZY.register_widget("in_comment")

        @LAZY.register_widget("lazy_one")
        class LazyOne(Base):
            pass

        LAZY.register_widget("lazy_two")(type("LazyTwo", (Base,), {{}}))
        """,
    )
    (tmp_path / "lazy_widgets" / "other.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    global LAZY
    LAZY = make_registry(decorator="register_widget", locations=("lazy_widgets",))
    LAZY.register_widget = LAZY.register  # the facade method the scan looks for
    assert LAZY.names() == ["lazy_one", "lazy_two"]
    assert "lazy_one" in LAZY and "in_docstring" not in LAZY and "in_comment" not in LAZY
    assert "lazy_widgets.widgets" not in sys.modules  # listing imported nothing
    assert LAZY.get("lazy_two").__name__ == "LazyTwo"
    assert "lazy_widgets.widgets" in sys.modules and "lazy_widgets.other" not in sys.modules


def test_a_scanned_name_that_its_module_does_not_register_is_reported(tmp_path, monkeypatch):
    _write_plugin(tmp_path, "liar_widgets", """
        def register_widget(name):
            return lambda cls: cls

        @register_widget("ghost")
        class Ghost:
            pass
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = make_registry(decorator="register_widget", locations=("liar_widgets",))
    with pytest.raises(RegistrationError, match="liar_widgets.widgets was expected to register widget 'ghost'"):
        reg.get("ghost")


def test_add_location_extends_a_kind(tmp_path, monkeypatch):
    _write_plugin(tmp_path, "more_widgets", f"""
        from {__name__} import Base, LATER

        @LATER.register_widget("later_one")
        class LaterOne(Base):
            pass
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    global LATER
    LATER = make_registry(decorator="register_widget")
    LATER.register_widget = LATER.register
    assert LATER.names() == []
    LATER.add_location("more_widgets")
    assert LATER.names() == ["later_one"] and LATER.get("later_one").__name__ == "LaterOne"


@pytest.mark.parametrize("kind", sorted(registry.kinds))
def test_source_index_agrees_with_what_the_modules_register(kind):
    reg = registry.kinds[kind]
    index = reg.index()
    if not index and kind == "rewards":
        pytest.skip("no reward registered yet")
    assert index, f"no {kind} found by the source scan"
    reg.import_all()
    assert set(index) <= set(reg._entries), set(index) - set(reg._entries)
    for name, module in index.items():
        assert reg.get(name).__module__ == module


def test_model_and_dataset_types_come_from_the_shipped_yaml_files():
    from lavis.common.paths import package_path

    folder = package_path("configs/models/blip_caption")
    expected = sorted(p.stem for p in folder.glob("*.yaml"))
    assert registry.model_types("blip_caption") == expected
    cls = registry.get_model_class("blip_caption")
    assert sorted(cls.PRETRAINED_MODEL_CONFIG_DICT) == expected and cls.model_types() == expected
    assert {"tiny", "base_coco", "large_coco"} <= set(expected)
    builder = registry.get_builder_class("shapes_caption")
    assert builder.DATASET_CONFIG_DICT == {"default": "configs/datasets/shapes_caption/default.yaml"}
    with pytest.raises(UnknownNameError, match="did you mean 'blip_caption'"):
        registry.model_types("blip_captoin")


def test_listing_names_imports_no_heavy_module():
    code = (
        "import sys, lavis; from lavis.common.registry import registry; "
        "names = [registry.kinds[k].names() for k in registry.kinds]; "
        "types = registry.model_types('blip_caption'); "
        "heavy = [m for m in ('torch', 'transformers', 'omegaconf', 'lavis.models.blip') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"listing registry names imported: {out.stdout}"


def test_facade_keeps_familiar_names():
    assert registry.get_model_class("blip_caption").__name__ == "BlipCaption"
    assert "blip_caption" in registry.list_models()
    assert "captioning" in registry.list_tasks()
    assert "shapes_caption" in registry.list_datasets()
    assert {"runner_epoch", "runner_iter"} <= set(registry.list_runners())
    assert {"blip_image_train", "blip_image_eval", "blip_caption"} <= set(registry.list_processors())
    assert "linear_warmup_cosine_lr" in registry.list_lr_schedulers()
    with pytest.raises(UnknownNameError, match="Registered tasks: "):
        registry.get_task_class("captionning")


def test_import_lavis_is_light():
    code = (
        "import sys, lavis; "
        "heavy = [m for m in ('torch', 'transformers', 'torchvision', 'timm', 'open_clip', 'decord') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import lavis pulled in heavy modules: {out.stdout}"
