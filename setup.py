"""Install lavis: ``pip install -e .`` (add ``.[dev]`` for the test tools)."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


setup(
    name="lavis",
    version="0.1.0",
    description="A registry-driven language-vision research library: train, evaluate, align and quantize "
    "vision-language models behind one model contract.",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lavis", "lavis.*"]),
    include_package_data=True,
    package_data={"lavis": ["configs/**/*.yaml", "assets/**/*"]},
    install_requires=read_requirements("requirements.txt"),
    extras_require={
        "dev": read_requirements("requirements-dev.txt"),
        "quant": ["torchao>=0.18"],  # quantize.py: torchao's quantized tensors (docs/quantization.md)
        # the lmms-eval bridge (lavis/integrations/lmms_eval.py); its tests skip without it
        "lmms-eval": ["lmms-eval>=0.7.3"],
    },
    entry_points={
        "console_scripts": ["lavis-train=lavis.cli:console_train", "lavis-evaluate=lavis.cli:console_evaluate",
                            "lavis-quantize=lavis.quantization.cli:console_quantize"],
        # lmms-eval finds its model "lavis" here (python -m lmms_eval --model lavis ...)
        "lmms_eval.models": ["lavis=lavis.integrations.lmms_eval:manifest"],
    },
)
