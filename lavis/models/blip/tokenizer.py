"""The BLIP text tokenizer: BERT uncased WordPiece plus ``[DEC]`` (begin of caption) and ``[ENC]``.

BLIP reuses ``bert-base-uncased`` and appends two tokens after its vocabulary: ``[DEC]`` as the
bos token that starts every caption the decoder reads or writes (30522 for bert-base-uncased) and
``[ENC]`` for the image-grounded text encoder (30523). Pad is ``[PAD]`` (0) and ``[SEP]`` ends a
caption. The ``tiny`` model types use the small vocabulary in ``lavis/assets/tokenizers/tiny``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lavis.common.errors import ConfigError
from lavis.common.paths import package_path

DEC_TOKEN = "[DEC]"
ENC_TOKEN = "[ENC]"


def resolve_tokenizer_source(name_or_path: str) -> str:
    """A local folder for ``name_or_path`` if there is one, else ``name_or_path`` as a Hub repo id.

    Tried in order: a path relative to the ``lavis`` package (``assets/tokenizers/tiny``), a path
    as given (absolute or relative to the working directory); anything else is a Hub repo id.
    """
    for candidate in (package_path(name_or_path), Path(name_or_path).expanduser()):
        if candidate.is_dir():
            return str(candidate)
    return name_or_path


def load_blip_tokenizer(name_or_path: str) -> Any:
    """A ``transformers.BertTokenizer`` with ``[DEC]`` as bos and ``[ENC]`` added (if not there yet).

    Args:
        name_or_path: a folder holding ``vocab.txt`` (relative to the ``lavis`` package or to the
            working directory, or absolute), or a Hugging Face Hub repo id such as
            ``bert-base-uncased`` (read from the local Hub cache when ``HF_HUB_OFFLINE=1``).

    Returns:
        The tokenizer; ``tokenizer.bos_token_id`` is ``[DEC]``, ``tokenizer.enc_token_id`` is ``[ENC]``.
        ``decode``/``batch_decode`` clean up tokenization spaces by default ("skateboarder's", not
        "skateboarder ' s"), as LAVIS' tokenizer (transformers 4.26) did; transformers 5 defaults
        to no clean-up.
    """
    from transformers import BertTokenizer

    source = resolve_tokenizer_source(name_or_path)
    try:
        tok = BertTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise ConfigError(
            [
                f"model.tokenizer: cannot load a BERT tokenizer from {name_or_path!r} ({e}). Give a folder "
                "with vocab.txt (absolute, or relative to the lavis package such as "
                "'assets/tokenizers/tiny'), or a Hub repo id that is in the local Hugging Face cache "
                "when offline: `python -m lavis.zoo download ARCH MODEL_TYPE` fetches a model type's "
                "tokenizer files with its weights."
            ]
        ) from e
    vocab = tok.get_vocab()
    if set(vocab) <= set(tok.all_special_tokens):
        # transformers falls back to a vocabulary of special tokens alone when it finds no vocab file
        raise ConfigError(
            [
                f"model.tokenizer: no vocabulary found for {name_or_path!r} (looked in {source!r}). Give a folder "
                "with vocab.txt, or a Hub repo id that is in the local Hugging Face cache (or reachable "
                "online; `python -m lavis.zoo download ARCH MODEL_TYPE` fetches it); for a random-init "
                "model without downloads use 'assets/tokenizers/tiny'."
            ]
        )
    if DEC_TOKEN not in vocab or tok.bos_token != DEC_TOKEN:
        tok.add_special_tokens({"bos_token": DEC_TOKEN})
    if ENC_TOKEN not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [ENC_TOKEN]})
    tok.enc_token_id = tok.convert_tokens_to_ids(ENC_TOKEN)
    tok.clean_up_tokenization_spaces = True  # the default of decode(clean_up_tokenization_spaces=None)
    if tok.pad_token_id != 0:
        raise ConfigError(
            [f"model.tokenizer: {name_or_path!r} has pad id {tok.pad_token_id}; BLIP needs [PAD] at id 0"]
        )
    return tok
