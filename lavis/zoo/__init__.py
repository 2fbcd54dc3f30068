"""The model zoo: every registered model type, where its weights come from, and getting them.

>>> from lavis.zoo import entries, download
>>> [e.name for e in entries()]                      # every arch and model type
>>> download("blip_caption", "base_coco")            # weights (+ tokenizer files) into the caches

Command line: ``python -m lavis.zoo list | download ARCH TYPE [--force] | download-url URL [--force]
| verify [--print] | path ARCH TYPE | table --markdown`` (see ``python -m lavis.zoo --help``).

The package is the one home of model weights:

- :mod:`lavis.zoo.entries`: zoo entries and their weight sources, derived from the model-type YAMLs;
- :mod:`lavis.zoo.resolve`: which local file holds the weights asked for (the only resolution step;
  ``BaseModel.from_config`` and ``BaseModel.load_checkpoint`` call it once, then load the file);
- :mod:`lavis.zoo.fetch`: getting weight files onto this machine (Hub repos with
  ``huggingface_hub``, URLs with :mod:`lavis.common.download`), checking and repairing them;
- :mod:`lavis.zoo.verify`: re-hashing the cache; :mod:`lavis.zoo.report`: listing and the table;
- :mod:`lavis.zoo.model_zoo`: the ``model_zoo`` object (re-exported by :mod:`lavis.models`).

``import lavis.zoo`` is light: torch, transformers and huggingface_hub are imported when a file is
fetched.
"""

from __future__ import annotations

from lavis.zoo.entries import (
    HF_WEIGHT_FILES,
    PIN_KEYS,
    WeightSource,
    ZooEntry,
    default_sources,
    download_command,
    entries,
    entry_for_location,
    get_entry,
    is_url,
)
from lavis.zoo.model_zoo import ModelZoo, model_zoo
from lavis.zoo.resolve import (
    cached_path,
    download,
    resolve_config_weights,
    resolve_location,
    url_command,
    weights_path,
)

__all__ = [
    "HF_WEIGHT_FILES",
    "PIN_KEYS",
    "ModelZoo",
    "WeightSource",
    "ZooEntry",
    "cached_path",
    "default_sources",
    "download",
    "download_command",
    "entries",
    "entry_for_location",
    "get_entry",
    "is_url",
    "model_zoo",
    "resolve_config_weights",
    "resolve_location",
    "url_command",
    "weights_path",
]
