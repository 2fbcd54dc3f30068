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


def test_builtin_modules_are_imported_on_first_lookup(tmp_path, monkeypatch):
    pkg = tmp_path / "lazy_widgets.py"
    pkg.write_text(
        textwrap.dedent(
            f"""
            from {__name__} import Base, LAZY
            @LAZY.register("lazy_one")
            class LazyOne(Base):
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    global LAZY
    LAZY = make_registry(builtin_modules=("lazy_widgets",))
    assert "lazy_widgets" not in sys.modules
    assert LAZY.names() == ["lazy_one"]
    assert "lazy_widgets" in sys.modules


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
