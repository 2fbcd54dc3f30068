"""Captions and question/answer pairs that describe a :class:`~lavis.datasets.synthetic.shapes_render.Scene`.

Every caption is built from one canonical description ``D`` of the scene:

- one shape: ``"a large red circle"``
- two shapes: ``"a large red circle to the left of a small blue square"`` (or ``"... above ..."``
  when the vertical distance dominates); the left (or upper) shape comes first
- three shapes: ``"a large red circle on the left a small blue square in the middle and a small
  green star on the right"``

and the five reference captions of an image are, in this order: ``D``, ``"there is D"``,
``"an image with D"``, ``D`` said the other way round (``"to the right of a large red circle is
a small blue square"``; ``"the large red circle"`` for one shape) and ``"two shapes D"`` (the count
first). The first one is what a captioner should learn to say. Each phrasing starts with its own
word, so after the first word the rest of a caption is fixed by the image (no ties half-way through
a sentence for a model to trip over). Captions never contain "a picture of" (the model's
prompt) and use only :data:`CAPTION_WORDS`.
"""

from __future__ import annotations

import numpy as np

from lavis.datasets.synthetic.shapes_render import Scene, Shape

#: The only words captions may use (a tiny tokenizer's vocabulary is built from them).
CAPTION_WORDS: frozenset[str] = frozenset(
    "red green blue yellow purple orange pink brown gray white black cyan "
    "circle square triangle star diamond cross ellipse rectangle hexagon "
    "small medium large big tiny "
    "a an the of and with to on in at is are there picture image photo one two three left right "
    "above below next near top bottom middle center side shape shapes object objects".split()
)
#: Words questions and answers add to :data:`CAPTION_WORDS` (the "?" is a separate character).
QA_EXTRA_WORDS: frozenset[str] = frozenset("what color how many yes no".split())

NUMBER_WORDS = ("zero", "one", "two", "three")
MAX_CAPTIONS = 5
QUESTION_TYPES = ("count", "color", "shape", "exists")
#: Grounding questions ("where is the red shape?" -> "[x1, y1, x2, y2]"); made by the post-training
#: builders from a folder's scene files, not part of the generated VQA files.
GROUNDING_TYPES = ("locate",)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def describe(shape: Shape) -> str:
    """``"a large red circle"``."""
    return f"{article(shape.size)} {shape.size} {shape.color} {shape.kind}"


def _ordered(scene: Scene) -> tuple[list[Shape], str]:
    """The shapes in reading order and the relation between them.

    Relation: ``"single"``, ``"horizontal"`` (sorted left to right), ``"vertical"`` (sorted top
    to bottom) or ``"row"`` (three shapes, sorted left to right).
    """
    shapes = list(scene.shapes)
    if len(shapes) == 1:
        return shapes, "single"
    if len(shapes) == 2:
        a, b = shapes
        if abs(a.cx - b.cx) >= abs(a.cy - b.cy):
            return sorted(shapes, key=lambda s: s.cx), "horizontal"
        return sorted(shapes, key=lambda s: s.cy), "vertical"
    return sorted(shapes, key=lambda s: s.cx), "row"


def canonical_description(scene: Scene) -> str:
    """The description ``D`` that every caption of ``scene`` is built from."""
    shapes, rel = _ordered(scene)
    d = [describe(s) for s in shapes]
    if rel == "single":
        return d[0]
    if rel == "horizontal":
        return f"{d[0]} to the left of {d[1]}"
    if rel == "vertical":
        return f"{d[0]} above {d[1]}"
    return f"{d[0]} on the left {d[1]} in the middle and {d[2]} on the right"


def reversed_description(scene: Scene) -> str:
    """``D`` said the other way round. With ``A``, ``B``, ``C`` the shapes in the order of ``D``:
    ``"to the right of A is B"``, ``"below A is B"``, ``"on the right is C in the middle is B and on
    the left is A"``, or ``"the large red circle"`` for one shape."""
    shapes, rel = _ordered(scene)
    d = [describe(s) for s in shapes]
    if rel == "single":
        s = shapes[0]
        return f"the {s.size} {s.color} {s.kind}"
    if rel == "horizontal":
        return f"to the right of {d[0]} is {d[1]}"
    if rel == "vertical":
        return f"below {d[0]} is {d[1]}"
    return f"on the right is {d[2]} in the middle is {d[1]} and on the left is {d[0]}"


def counted_description(scene: Scene) -> str:
    """``D`` after the number of shapes: ``"two shapes D"``, ``"one shape D"``."""
    n = len(scene.shapes)
    return f"{NUMBER_WORDS[n]} {'shape' if n == 1 else 'shapes'} {canonical_description(scene)}"


def scene_captions(scene: Scene, num: int = MAX_CAPTIONS) -> list[str]:
    """The first ``num`` (1 to 5) reference captions of ``scene``, canonical one first."""
    if not 1 <= num <= MAX_CAPTIONS:
        raise ValueError(f"captions_per_image must be between 1 and {MAX_CAPTIONS}, got {num}")
    d = canonical_description(scene)
    caps = [d, f"there is {d}", f"an image with {d}", reversed_description(scene), counted_description(scene)]
    return caps[:num]


def scene_questions(scene: Scene, rng: np.random.Generator, kinds: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """Four ``(question_type, question, answer)`` triples about ``scene``, one per :data:`QUESTION_TYPES`.

    - count: "how many shapes are there?" -> "one" / "two" / "three"
    - color: "what color is the circle?" -> a colour (kinds are unique within a scene)
    - shape: "what is the red shape?" -> a kind (colours are unique within a scene)
    - exists: "is there a square?" -> "yes" / "no" (each with probability 1/2 when possible)

    ``kinds`` are the kinds the data set can draw (the pool for "no" answers).
    """
    shapes = list(scene.shapes)
    out = [("count", "how many shapes are there?", NUMBER_WORDS[len(shapes)])]
    s = shapes[int(rng.integers(len(shapes)))]
    out.append(("color", f"what color is the {s.kind}?", s.color))
    s = shapes[int(rng.integers(len(shapes)))]
    out.append(("shape", f"what is the {s.color} shape?", s.kind))
    present = [x.kind for x in shapes]
    absent = [k for k in kinds if k not in present]
    if absent and rng.random() < 0.5:
        kind, answer = absent[int(rng.integers(len(absent)))], "no"
    else:
        kind, answer = present[int(rng.integers(len(present)))], "yes"
    out.append(("exists", f"is there {article(kind)} {kind}?", answer))
    return out


def format_box(box: tuple[int, int, int, int] | list[int]) -> str:
    """``"[x1, y1, x2, y2]"``: how grounding answers write a pixel box."""
    return "[" + ", ".join(str(int(v)) for v in box) + "]"


def locate_question(shape: Shape, image_size: int) -> tuple[str, str, str]:
    """The grounding triple of one shape: ``("locate", "where is the red shape?", "[x1, y1, x2, y2]")``
    with the pixel box of the drawn shape (colours are unique within a scene)."""
    return "locate", f"where is the {shape.color} shape?", format_box(shape.box(image_size))
