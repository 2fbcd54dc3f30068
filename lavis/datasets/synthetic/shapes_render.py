"""Scenes of coloured shapes: sampling (from a numpy ``Generator``) and drawing (with PIL).

A scene is one to three non-overlapping shapes, each with a kind (circle, square, ...), a colour
from a fixed palette, a size class (small / [medium /] large) and an integer centre pixel. Shapes
are drawn with hard edges (no anti-aliasing), so the pixel at a shape's centre has exactly the
palette colour of that shape.

The sampler also makes the spatial words of the captions unambiguous:

- two shapes are related horizontally ("to the left of") when their horizontal distance clearly
  dominates their vertical distance, vertically ("above") in the opposite case; diagonal pairs
  are rejected and re-drawn;
- three shapes have clearly different x positions, so "on the left / in the middle / on the
  right" is well defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from PIL import Image, ImageDraw

#: Every colour the generator can draw: name -> RGB. Names are plain English colour words.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 80, 230),
    "yellow": (245, 225, 30),
    "purple": (140, 50, 190),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "pink": (250, 130, 190),
    "brown": (135, 80, 35),
    "cyan": (40, 215, 225),
    "gray": (135, 135, 135),
}
#: Colours used unless a config picks others (well apart from each other and from the background).
DEFAULT_COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white", "pink")

#: Every shape kind the generator can draw.
KINDS: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "diamond", "cross", "hexagon", "ellipse", "rectangle",
)
DEFAULT_KINDS: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross", "hexagon")

#: Size classes: radius of the shape's bounding circle as a fraction of the image side.
SIZE_SCALES: dict[int, dict[str, float]] = {
    2: {"small": 0.11, "large": 0.2},
    3: {"small": 0.09, "medium": 0.14, "large": 0.2},
}

BACKGROUNDS: tuple[str, ...] = ("texture", "plain")
#: Dark slate background, far from every palette colour; "texture" adds +-TEXTURE_AMPLITUDE noise.
BACKGROUND_RGB: tuple[int, int, int] = (34, 36, 44)
TEXTURE_AMPLITUDE = 6


@dataclass(frozen=True)
class Shape:
    """One drawn shape. ``cx``, ``cy``: centre pixel (x to the right, y down); ``radius``: radius
    in pixels of the circle that bounds the shape."""

    kind: str
    color: str
    size: str
    cx: int
    cy: int
    radius: float

    def to_dict(self) -> dict:
        return {"kind": self.kind, "color": self.color, "size": self.size,
                "center": [self.cx, self.cy], "radius": round(self.radius, 3)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Shape":
        """The shape of a scene file's object (:meth:`to_dict`'s output)."""
        cx, cy = d["center"]
        return cls(d["kind"], d["color"], d["size"], int(cx), int(cy), float(d["radius"]))

    def box(self, image_size: int) -> tuple[int, int, int, int]:
        """Its pixel box in an ``image_size`` image (:func:`shape_box`)."""
        return shape_box(self.kind, self.cx, self.cy, self.radius, image_size)


@dataclass(frozen=True)
class Scene:
    """The shapes of one image, in drawing order, and the image side in pixels."""

    shapes: tuple[Shape, ...]
    image_size: int

    def to_dict(self) -> dict:
        return {"width": self.image_size, "height": self.image_size,
                "objects": [s.to_dict() for s in self.shapes]}


class SceneSampler:
    """Draws random scenes; all randomness comes from the ``rng`` given to :meth:`sample`.

    Args:
        image_size: side of the square image in pixels (at least 32).
        kinds / colors: names from :data:`KINDS` / :data:`PALETTE`; a scene never repeats a kind or
            a colour, so "the circle" and "the red shape" always name one shape.
        num_sizes: 2 (small, large) or 3 (small, medium, large).
        min_shapes / max_shapes: how many shapes a scene has (1 to 3).
    """

    def __init__(self, image_size: int, kinds: tuple[str, ...], colors: tuple[str, ...],
                 num_sizes: int, min_shapes: int, max_shapes: int):
        self.image_size = image_size
        self.kinds = tuple(kinds)
        self.colors = tuple(colors)
        self.sizes = SIZE_SCALES[num_sizes]
        self.size_names = tuple(self.sizes)
        self.min_shapes, self.max_shapes = min_shapes, max_shapes
        self.gap = max(1.0, 0.04 * image_size)  # free pixels between shapes and to the border

    def sample(self, rng: np.random.Generator) -> Scene:
        n = int(rng.integers(self.min_shapes, self.max_shapes + 1))
        kinds = rng.choice(len(self.kinds), size=n, replace=False)
        colors = rng.choice(len(self.colors), size=n, replace=False)
        for _ in range(200):
            sizes = [self.size_names[int(i)] for i in rng.integers(0, len(self.size_names), size=n)]
            radii = [self.sizes[s] * self.image_size for s in sizes]
            for _ in range(20):
                centres = [self._centre(rng, r) for r in radii]
                if self._valid(centres, radii):
                    shapes = tuple(
                        Shape(self.kinds[int(k)], self.colors[int(c)], s, x, y, r)
                        for k, c, s, (x, y), r in zip(kinds, colors, sizes, centres, radii)
                    )
                    return Scene(shapes, self.image_size)
        raise RuntimeError(  # only reachable with a tiny image and many shapes
            f"could not place {n} shapes without overlap in a {self.image_size}px image; "
            "use a larger image_size or a smaller max_shapes"
        )

    def _centre(self, rng: np.random.Generator, r: float) -> tuple[int, int]:
        lo = math.ceil(r + self.gap)
        hi = math.floor(self.image_size - 1 - r - self.gap)
        x, y = rng.integers(lo, hi + 1, size=2)
        return int(x), int(y)

    def _valid(self, centres: list[tuple[int, int]], radii: list[float]) -> bool:
        for i in range(len(centres)):
            for j in range(i + 1, len(centres)):
                dx = centres[i][0] - centres[j][0]
                dy = centres[i][1] - centres[j][1]
                if math.hypot(dx, dy) < radii[i] + radii[j] + self.gap:
                    return False
        min_dx = 0.08 * self.image_size
        if len(centres) == 2:  # one axis must clearly dominate (no diagonal pairs)
            dx, dy = abs(centres[0][0] - centres[1][0]), abs(centres[0][1] - centres[1][1])
            return max(dx, dy) >= 1.5 * min(dx, dy) and max(dx, dy) >= min_dx
        if len(centres) == 3:  # clearly ordered from left to right
            xs = sorted(c[0] for c in centres)
            return xs[1] - xs[0] >= min_dx and xs[2] - xs[1] >= min_dx
        return True


def _regular(cx: float, cy: float, r: float, n: int, start_deg: float) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(math.radians(start_deg + 360.0 * i / n)),
         cy + r * math.sin(math.radians(start_deg + 360.0 * i / n)))
        for i in range(n)
    ]


def shape_polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Vertices of ``kind`` centred at (cx, cy) inside a circle of radius ``r``; ``None`` for the
    kinds PIL draws as ellipses (circle, ellipse). Every polygon contains its centre."""
    if kind == "square":
        h = 0.78 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if kind == "rectangle":
        w, h = 0.95 * r, 0.5 * r
        return [(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy + h), (cx - w, cy + h)]
    if kind == "triangle":  # equilateral, pointing up; centroid at the centre
        return _regular(cx, cy, r, 3, -90.0)
    if kind == "diamond":
        return _regular(cx, cy, r, 4, -90.0)
    if kind == "hexagon":
        return _regular(cx, cy, r, 6, 0.0)
    if kind == "star":  # five points; outer radius r, inner 0.45 r
        outer = _regular(cx, cy, r, 5, -90.0)
        inner = _regular(cx, cy, 0.45 * r, 5, -90.0 + 36.0)
        return [p for pair in zip(outer, inner) for p in pair]
    if kind == "cross":  # a plus sign with arms of half-width w
        w = 0.34 * r
        return [
            (cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w),
            (cx + r, cy + w), (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r),
            (cx - w, cy + w), (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w),
        ]
    if kind in ("circle", "ellipse"):
        return None
    raise ValueError(f"unknown shape kind {kind!r}; choose from {', '.join(KINDS)}")


def shape_box(kind: str, cx: float, cy: float, r: float, image_size: int) -> tuple[int, int, int, int]:
    """The pixel box ``(x1, y1, x2, y2)`` around the shape :func:`render_scene` draws: the extent
    of its polygon (or ellipse), widened to whole pixels and kept inside the image."""
    poly = shape_polygon(kind, cx, cy, r)
    if poly is None:
        half_h = r if kind == "circle" else 0.55 * r
        xs, ys = [cx - r, cx + r], [cy - half_h, cy + half_h]
    else:
        xs, ys = [x for x, _ in poly], [y for _, y in poly]
    last = image_size - 1
    return (max(0, math.floor(min(xs))), max(0, math.floor(min(ys))),
            min(last, math.ceil(max(xs))), min(last, math.ceil(max(ys))))


def render_scene(scene: Scene, background: str, rng: np.random.Generator) -> Image.Image:
    """The RGB image (``image_size`` x ``image_size``) of ``scene``.

    ``background`` is ``"plain"`` (one colour) or ``"texture"`` (the same colour with light
    grayscale noise drawn from ``rng``).
    """
    s = scene.image_size
    if background == "texture":
        noise = rng.integers(-TEXTURE_AMPLITUDE, TEXTURE_AMPLITUDE + 1, size=(s, s, 1), dtype=np.int16)
        arr = (np.asarray(BACKGROUND_RGB, dtype=np.int16) + noise).astype(np.uint8)
        img = Image.fromarray(arr, "RGB")
    elif background == "plain":
        img = Image.new("RGB", (s, s), BACKGROUND_RGB)
    else:
        raise ValueError(f"unknown background {background!r}; choose from {', '.join(BACKGROUNDS)}")
    draw = ImageDraw.Draw(img)
    for shape in scene.shapes:
        fill = PALETTE[shape.color]
        cx, cy, r = shape.cx, shape.cy, shape.radius
        poly = shape_polygon(shape.kind, cx, cy, r)
        if poly is not None:
            draw.polygon(poly, fill=fill)
        elif shape.kind == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:  # ellipse: wide and flat
            draw.ellipse([cx - r, cy - 0.55 * r, cx + r, cy + 0.55 * r], fill=fill)
    return img
