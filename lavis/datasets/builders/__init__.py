"""Registered dataset builders."""

from lavis.datasets.builders.base_builder import BaseDatasetBuilder

__all__ = ["BaseDatasetBuilder", "load_dataset"]


def load_dataset(name: str, cfg_path: str | None = None, type: str = "default"):
    """Build every split of the registered data set ``name`` from its shipped (or a given) config."""
    from omegaconf import OmegaConf

    from lavis.common.registry import registry

    builder_cls = registry.get_builder_class(name)
    cfg = OmegaConf.load(cfg_path) if cfg_path else builder_cls.default_config(type)
    return builder_cls(cfg.datasets[name]).build_datasets()
