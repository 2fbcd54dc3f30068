"""Dataset builders: read ``build_info``, fetch or make the files, and build splits with processors."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from lavis.common.errors import UnknownNameError
from lavis.common.paths import package_path
from lavis.common.schema import check_mapping
from lavis.processors.base_processor import BaseProcessor, build_processor


class BaseDatasetBuilder:
    """Base of every registered dataset builder.

    ``DATASET_CONFIG_DICT`` maps a ``type`` (``default``, ...) to a shipped YAML under
    ``lavis/configs``; registering the class fills it from ``lavis/configs/datasets/<name>/*.yaml``
    (the file name is the type) unless the class sets it itself. Each YAML holds ``datasets: {<name>: {...}}``. A dataset's config block has
    ``build_info`` (where annotations and media live), ``vis_processor`` / ``text_processor``
    (each with ``train`` and ``eval`` entries) and anything the builder adds.

    Subclasses set ``train_dataset_cls`` / ``eval_dataset_cls`` and implement
    :meth:`build_split`; they may override :meth:`prepare` to download or generate files.
    """

    DATASET_CONFIG_DICT: ClassVar[dict[str, str]] = {}
    #: a dataclass describing ``build_info`` (nested dataclasses for nested blocks); config
    #: validation checks keys and types against it before anything is built or downloaded
    build_info_schema: ClassVar[type | None] = None
    #: keys of the data set block besides ``type``, ``build_info`` and the processors
    extra_config_keys: ClassVar[tuple[str, ...]] = ()
    train_dataset_cls: ClassVar[type[Dataset] | None] = None
    eval_dataset_cls: ClassVar[type[Dataset] | None] = None

    def __init__(self, cfg: DictConfig | dict[str, Any]):
        self.config = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
        self.vis_processors: dict[str, BaseProcessor] = {}
        self.text_processors: dict[str, BaseProcessor] = {}

    @classmethod
    def default_config_path(cls, type: str = "default") -> str:
        if type not in cls.DATASET_CONFIG_DICT:
            raise UnknownNameError(f"dataset type of {cls.__name__}", type, list(cls.DATASET_CONFIG_DICT))
        return str(package_path(cls.DATASET_CONFIG_DICT[type]))

    @classmethod
    def default_config(cls, type: str = "default") -> DictConfig:
        """The shipped YAML of ``type``: ``{"datasets": {name: {...}}}``."""
        cfg = OmegaConf.load(cls.default_config_path(type))
        assert isinstance(cfg, DictConfig), cls.default_config_path(type)
        return cfg

    @classmethod
    def validate_config(cls, cfg: Mapping[str, Any], dotted: str) -> list[str]:
        """Problems of this data set's merged config block (``dotted`` is ``datasets.<name>``):
        ``build_info`` against :attr:`build_info_schema`, then :meth:`check_build_info`."""
        if cls.build_info_schema is None:
            return []
        info = cfg.get("build_info")
        if not isinstance(info, Mapping):
            return [f"{dotted}.build_info: missing or not a mapping; {cls.__name__} reads it "
                    f"(see its shipped YAML under lavis/configs/datasets/)"]
        problems = check_mapping(info, cls.build_info_schema, f"{dotted}.build_info")
        return problems or cls.check_build_info(info, f"{dotted}.build_info")

    @classmethod
    def check_build_info(cls, build_info: Mapping[str, Any], dotted: str) -> list[str]:
        """Value checks of a well-typed ``build_info`` beyond its schema; none by default."""
        return []

    def build_processors(self) -> None:
        """Build ``vis_processors`` and ``text_processors`` for ``train`` and ``eval`` from the config."""
        for attr, key in (("vis_processors", "vis_processor"), ("text_processors", "text_processor")):
            section = self.config.get(key) or {}
            getattr(self, attr).update({mode: build_processor(section.get(mode)) for mode in ("train", "eval")})

    def prepare(self) -> None:
        """Make sure the files named in ``build_info`` exist (download or generate); no-op by default."""

    def splits(self) -> list[str]:
        """Split names this builder can build, from ``build_info.annotations``."""
        return list(self.config.build_info.get("annotations", {}).keys())

    def build_split(self, split: str) -> Dataset:  # pragma: no cover - abstract
        raise NotImplementedError

    def build_datasets(self) -> dict[str, Dataset]:
        """Prepare the files, build the processors and return ``{split: dataset}``."""
        self.prepare()
        self.build_processors()
        return {split: self.build_split(split) for split in self.splits()}
