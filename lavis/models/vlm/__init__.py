"""Vision-language models from transformers behind one seam (:class:`~lavis.models.vlm.base.HFVisionLanguageModel`).

Each family is a thin registered subclass (``llava``, ``qwen2_vl``) with a ``tiny`` type built from
files in ``lavis/assets/vlm/``. :func:`~lavis.models.vlm.archs.load_vlm` picks the family of a
transformers checkpoint from its ``config.json``. Importing this package imports no transformers.
"""
