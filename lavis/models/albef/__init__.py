"""ALBEF family: a timm ViT and a BERT split into text-only and fusion layers (``encoders.py``),
the shared base (``base.py``), contrastive/ITM heads (``contrastive.py``), the registered models
and the converter from LAVIS' checkpoint layout (``convert.py``)."""
