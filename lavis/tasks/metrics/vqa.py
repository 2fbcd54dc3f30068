"""VQA answer scoring: the answer normalisation of the official VQA evaluation and its accuracy.

:func:`normalize_answer` applies, in order:

1. newlines and tabs become spaces; leading and trailing space is dropped;
2. punctuation: each mark of :data:`PUNCTUATION` is deleted when the text has it next to a space
   or has a digit-comma-digit group anywhere (``"1,000"``), and otherwise becomes a space
   (``"black/white"`` -> ``"black white"``); then every period not followed by a digit is deleted
   (``"3.5"`` keeps its point, ``"yes."`` loses it);
3. words (split on white space, lower-cased): number words ``none``/``zero`` .. ``ten`` become
   digits, the articles ``a``, ``an``, ``the`` are dropped, and contractions written without
   their apostrophes get them back (``"dont"`` -> ``"don't"``, ``"couldnt've"`` -> ``"couldn't've"``).

:func:`vqa_accuracy` is the VQA score: for each of the ``n`` human answers, leave it out and
score ``min(#matches among the other n - 1 / 3, 1)``; the accuracy is the mean over the ``n``
leave-one-out subsets (for ``n = 10``, the 10-choose-9 subsets).

Unlike the official script, which normalises the reference answers only when the annotators
disagree (VQAv2's reference answers are already normalised), both the prediction and every
reference answer are normalised here, so references from any source compare alike.
"""

from __future__ import annotations

import re
from itertools import combinations
from typing import Sequence

from lavis.tasks.metrics.errors import MetricError

#: marks that are deleted or turned into spaces (periods have their own rule)
PUNCTUATION: tuple[str, ...] = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip

# The contractions the official evaluation restores. A form with one apostrophe is matched
# without it ("dont"); a form with several is matched with any one of them missing
# ("couldnt've", "couldn'tve"), as the official table lists them.
_CONTRACTED = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't "
    "haven't he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've "
    "might've mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've "
    "shouldn't shouldn't've somebody'd've somebody'll somebody's someone'd someone'd've someone'll "
    "someone's something'd something'd've something'll that's there'd there'd've there're there's "
    "they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll what're "
    "what's what've when's where'd where's where've who'd who'd've who'll who's who've why'll why're "
    "why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll "
    "you're you've"
).split()


def _contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for word in _CONTRACTED:
        marks = [i for i, c in enumerate(word) if c == "'"]
        if len(marks) == 1:
            table[word.replace("'", "")] = word
        else:
            for i in marks:
                table[word[:i] + word[i + 1 :]] = word
    return table


CONTRACTIONS: dict[str, str] = _contraction_table()

_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def _strip_punctuation(text: str) -> str:
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        if delete_all or f"{mark} " in text or f" {mark}" in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def _normalize_words(text: str) -> str:
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_answer(answer: str) -> str:
    """``answer`` as the VQA evaluation compares it (the rules are in this module's docstring)."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return _normalize_words(_strip_punctuation(text))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The VQA accuracy of ``prediction`` against the human ``answers`` (10 in VQAv2), in [0, 1].

    Both sides are normalised with :func:`normalize_answer`. For ``n`` answers it is the mean,
    over the ``n`` subsets that leave one answer out, of ``min(matches in the subset / 3, 1)``:
    with 10 answers, 3 or more matches score 1, 2 score 0.6, 1 scores 0.3. A single reference
    answer leaves nothing to compare against once it is left out, so it is scored by exact match.
    """
    if isinstance(answers, str) or len(answers) == 0:
        raise MetricError(
            f"vqa_accuracy needs a list of reference answers, got {answers!r}; pass e.g. the item's 'answers' list"
        )
    pred = normalize_answer(prediction)
    refs = [normalize_answer(a) for a in answers]
    if len(refs) == 1:
        return float(refs[0] == pred)
    scores = [min(sum(r == pred for r in subset) / 3.0, 1.0) for subset in combinations(refs, len(refs) - 1)]
    return sum(scores) / len(scores)


def exact_match(prediction: str, answer: str) -> float:
    """1.0 when ``prediction`` and ``answer`` are equal after :func:`normalize_answer` (GQA), else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(answer))
