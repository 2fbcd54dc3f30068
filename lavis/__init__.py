"""lavis: a registry-driven language-vision research library.

``import lavis`` is light (no torch, no transformers): registered classes are imported the first
time a registry is asked for a name. Entry points:

- ``from lavis.models import load_model_and_preprocess, model_zoo``
- ``python train.py --cfg-path CONFIG`` and ``python evaluate.py --cfg-path CONFIG``
"""

import logging

from lavis.common.registry import registry

# transformers imports torchao when it is installed (the `quant` extra), and torchao registers enums
# with torch's pytree, which logs a deprecation notice twice per process; it concerns torchao, not
# the user's work
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

__version__ = "0.1.0"
__all__ = ["registry", "__version__"]
