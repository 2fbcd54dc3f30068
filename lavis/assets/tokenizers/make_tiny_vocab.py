"""Write the WordPiece vocabulary of the ``tiny`` tokenizer (``lavis/assets/tokenizers/tiny``).

The tiny tokenizer lets every ``tiny`` model type build and train with no download. It is a BERT
(uncased WordPiece) vocabulary of under a thousand entries:

- the BERT special tokens, ``[PAD]`` first so that the pad id is 0;
- every lowercase letter, digit and common punctuation mark, plus the ``##`` continuation form of
  each letter and digit, so that any lowercase ASCII word can be spelled out (nothing maps to
  ``[UNK]`` except characters outside that set);
- a few common suffixes and a few hundred common English words, including every word of the
  synthetic "shapes" captions, so that those captions are a handful of whole-word tokens each.

``[DEC]`` (begin-of-caption) and ``[ENC]`` are not in ``vocab.txt``: the model adds them after the
vocabulary when it loads the tokenizer, as BLIP does for ``bert-base-uncased``.

Run ``python lavis/assets/tokenizers/make_tiny_vocab.py`` after editing the lists below; the output
is deterministic and committed.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

PUNCTUATION = list(".,!?;:'\"()[]{}-_/\\&%$#@*+=<>~`^|")

SUFFIXES = ["##s", "##es", "##ed", "##ing", "##er", "##ers", "##est", "##ly", "##y", "##ish", "##ness"]

# Every word of the synthetic shapes captions (colours, shapes, sizes, relations, fillers).
SHAPES_WORDS = """
red green blue yellow purple orange pink brown gray grey white black cyan
circle square triangle star diamond cross ellipse rectangle hexagon
circles squares triangles stars diamonds crosses ellipses rectangles hexagons
small medium large big tiny
a an the of and with to on in at is are there
picture image photo one two three four five
left right above below next near top bottom middle center centre side corner
shape shapes object objects background colored coloured
""".split()

# A few hundred common English words (and common caption vocabulary).
COMMON_WORDS = """
i you he she it we they me him her us them my your his its our their this that these those
who what which where when why how all any both each few more most other some such no nor not
only own same so than too very can will just do does did doing be been being have has had having
was were am would should could may might must shall as if or because until while by for from
about against between into through during before after up down out off over under again further
then once here also back still even well way new old first last long little great high low good
bad best better many much same next few another every several half full empty open closed
man men woman women person people boy girl child children baby player players group team crowd
dog dogs cat cats horse horses bird birds cow cows sheep elephant elephants giraffe giraffes zebra
zebras bear bears animal animals fish
car cars truck trucks bus buses train trains plane airplane boat boats bike bicycle motorcycle
street road city building buildings house room kitchen bathroom bedroom table tables chair chairs
bed couch sofa desk window door wall floor ground field grass tree trees water beach ocean sea
sky snow mountain hill park sign clock light lights pole fence
food pizza sandwich cake plate bowl cup glass bottle banana apple fruit vegetables
phone computer laptop screen keyboard book books bag umbrella kite frisbee ball racket
skateboard surfboard skis hat shirt
sitting standing walking running riding holding playing looking eating flying driving parked
lying laying carrying wearing using watching waiting jumping covered filled made
inside outside around behind front across along beside toward towards together away
day night sunny cloudy dark bright clear colorful empty busy
view close closeup shot scene
six seven eight nine ten hundred thousand first second third
go goes went come comes came get gets got make makes take takes took see sees saw look looks
give gives put puts stand stands sit sits walk walks ride rides hold holds play plays eat eats
fly flies drive drives show shows shown seen set sets turn turns
time year years day days week home work world life hand hands head face eye eyes hair arm arms
leg legs foot feet body side sides part parts place line lines edge row area space point
number kind sort type color colour size form pattern outline
round flat straight curved thin thick wide narrow short tall light heavy soft hard hot cold
warm cool wet dry clean dirty pretty beautiful nice happy young
really quite almost nearly about just only around
something nothing everything someone anything
yes okay
""".split()


def build_vocab() -> list[str]:
    """The vocabulary in id order (id = line number); no duplicates."""
    letters = list(string.ascii_lowercase)
    digits = list(string.digits)
    ordered = (
        SPECIAL
        + PUNCTUATION
        + digits
        + letters
        + [f"##{c}" for c in letters + digits]
        + SUFFIXES
        + SHAPES_WORDS
        + COMMON_WORDS
    )
    vocab: list[str] = []
    seen: set[str] = set()
    for tok in ordered:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)
    return vocab


TOKENIZER_CONFIG = {
    "tokenizer_class": "BertTokenizer",
    "do_lower_case": True,
    "strip_accents": None,
    "tokenize_chinese_chars": True,
    "model_max_length": 512,
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def write(folder: Path) -> int:
    """Write ``vocab.txt`` and ``tokenizer_config.json`` into ``folder``; returns the vocab size."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n", encoding="utf-8")
    return len(vocab)


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "tiny"
    n = write(out)
    print(f"wrote {n} tokens to {out / 'vocab.txt'}")
