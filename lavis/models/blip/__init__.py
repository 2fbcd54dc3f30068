"""BLIP family: the captioner (``blip_caption.py``) and its tokenizer (``tokenizer.py``)."""
