"""CLIP family: the model (``clip_model.py``, registered as ``clip`` and ``clip_feature_extractor``), zero-shot
classification (``zero_shot.py``) and the LAVIS / open_clip checkpoint layout (``convert.py``)."""
