"""Vectorised shape masks: every concept of the world as a function of object-frame coordinates.

A shape is a function ``f(u, v) -> bool tensor`` where ``u, v`` are ``[n, S, S]`` float tensors of
coordinates in the object's own frame (object centred at 0, nominal radius 1, ``v`` pointing up).
Shapes are built from a few primitives (discs, ellipses, boxes, polygons) with boolean algebra,
so a whole batch of objects of one concept is rasterised in a handful of tensor operations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

Tensor = torch.Tensor
ShapeFn = Callable[[Tensor, Tensor], Tensor]


def disc(u: Tensor, v: Tensor, r: float = 1.0, cx: float = 0.0, cy: float = 0.0) -> Tensor:
    """Points within distance ``r`` of ``(cx, cy)``."""
    return (u - cx) ** 2 + (v - cy) ** 2 <= r * r


def ellipse(u: Tensor, v: Tensor, a: float, b: float, cx: float = 0.0, cy: float = 0.0) -> Tensor:
    """Axis-aligned ellipse with half-axes ``a`` (horizontal) and ``b`` (vertical)."""
    return ((u - cx) / a) ** 2 + ((v - cy) / b) ** 2 <= 1.0


def box(u: Tensor, v: Tensor, hw: float, hh: float, cx: float = 0.0, cy: float = 0.0) -> Tensor:
    """Axis-aligned rectangle with half-width ``hw`` and half-height ``hh``."""
    return ((u - cx).abs() <= hw) & ((v - cy).abs() <= hh)


def polygon(u: Tensor, v: Tensor, points: Sequence[tuple[float, float]]) -> Tensor:
    """Even-odd point-in-polygon test (works for non-convex polygons).

    Args:
        u: ``[n, S, S]`` x coordinates.
        v: ``[n, S, S]`` y coordinates.
        points: Vertices ``(x, y)`` in order; the polygon is closed automatically.
    """
    inside = torch.zeros_like(u, dtype=torch.bool)
    for (x1, y1), (x2, y2) in zip(points, list(points[1:]) + [points[0]], strict=True):
        if y1 == y2:
            continue
        crosses = (v < y1) != (v < y2)
        x_at = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (u < x_at)
    return inside


def regular(n: int, r: float = 1.0, phase: float = 0.0) -> list[tuple[float, float]]:
    """Vertices of a regular ``n``-gon of circumradius ``r`` with a vertex pointing up."""
    angles = [math.pi / 2 + phase + 2 * math.pi * k / n for k in range(n)]
    return [(r * math.cos(a), r * math.sin(a)) for a in angles]


def star_points(n: int, r_out: float, r_in: float) -> list[tuple[float, float]]:
    """Vertices of an ``n``-pointed star alternating between radii ``r_out`` and ``r_in``."""
    pts = []
    for k in range(2 * n):
        a = math.pi / 2 + math.pi * k / n
        r = r_out if k % 2 == 0 else r_in
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


def _heart(u: Tensor, v: Tensor) -> Tensor:
    lobes = disc(u, v, 0.5, -0.45, 0.35) | disc(u, v, 0.5, 0.45, 0.35)
    return lobes | polygon(u, v, [(-0.93, 0.2), (0.93, 0.2), (0.0, -0.95)])


# Shapes of the geometric family: the ID classes, their near-OoD look-alikes and a few shapes
# seen only in pretraining (which is which is set in cmakit.data.world.config).
GEOMETRIC: dict[str, ShapeFn] = {
    "circle": lambda u, v: disc(u, v, 0.95),
    "square": lambda u, v: box(u, v, 0.8, 0.8),
    "triangle": lambda u, v: polygon(u, v, regular(3, 1.0, 0.0)) & (v >= -0.55),
    "star": lambda u, v: polygon(u, v, star_points(5, 1.0, 0.42)),
    "cross": lambda u, v: box(u, v, 0.9, 0.3) | box(u, v, 0.3, 0.9),
    "heart": _heart,
    "ring": lambda u, v: disc(u, v, 0.95) & ~disc(u, v, 0.55),
    "hexagon": lambda u, v: polygon(u, v, regular(6, 0.97, math.pi / 6)),
    "arrow": lambda u, v: polygon(
        u,
        v,
        [
            (-0.9, -0.25),
            (0.2, -0.25),
            (0.2, -0.7),
            (0.95, 0.0),
            (0.2, 0.7),
            (0.2, 0.25),
            (-0.9, 0.25),
        ],
    ),
    "crescent": lambda u, v: disc(u, v, 0.95) & ~disc(u, v, 0.8, 0.45, 0.2),
    "oval": lambda u, v: ellipse(u, v, 0.95, 0.55),
    "rectangle": lambda u, v: box(u, v, 0.95, 0.45),
    "trapezoid": lambda u, v: polygon(
        u, v, [(-0.95, -0.6), (0.95, -0.6), (0.45, 0.6), (-0.45, 0.6)]
    ),
    "semicircle": lambda u, v: disc(u, v, 0.95, 0.0, -0.35) & (v >= -0.35),
    "kite": lambda u, v: polygon(u, v, [(0.0, 0.95), (0.6, 0.35), (0.0, -0.95), (-0.6, 0.35)]),
    "chevron": lambda u, v: polygon(
        u, v, [(-0.9, 0.6), (0.0, -0.2), (0.9, 0.6), (0.9, 0.0), (0.0, -0.8), (-0.9, 0.0)]
    ),
    "diamond": lambda u, v: polygon(u, v, [(0.0, 0.95), (0.55, 0.0), (0.0, -0.95), (-0.55, 0.0)]),
    "pentagon": lambda u, v: polygon(u, v, regular(5, 0.97)),
    "spark": lambda u, v: polygon(u, v, star_points(4, 1.0, 0.3)),
    "bar": lambda u, v: box(u, v, 0.95, 0.18),
}

# A different concept family: multi-part pictograms of things (the far-OoD "objects").
PICTOGRAMS: dict[str, ShapeFn] = {
    "house": lambda u, v: (
        box(u, v, 0.6, 0.45, 0.0, -0.45) | polygon(u, v, [(-0.85, 0.0), (0.85, 0.0), (0.0, 0.9)])
    ),
    "tree": lambda u, v: disc(u, v, 0.6, 0.0, 0.3) | box(u, v, 0.14, 0.45, 0.0, -0.5),
    "mushroom": lambda u, v: (
        (ellipse(u, v, 0.95, 0.6, 0.0, 0.0) & (v >= 0.0)) | box(u, v, 0.22, 0.45, 0.0, -0.45)
    ),
    "fish": lambda u, v: (
        ellipse(u, v, 0.6, 0.38, -0.25, 0.0)
        | polygon(u, v, [(0.25, 0.0), (0.95, 0.5), (0.95, -0.5)])
    ),
    "flower": lambda u, v: (
        disc(u, v, 0.25) | torch.stack([disc(u, v, 0.3, x, y) for x, y in regular(5, 0.62)]).any(0)
    ),
    "sailboat": lambda u, v: (
        polygon(u, v, [(-0.9, -0.45), (0.9, -0.45), (0.6, -0.9), (-0.6, -0.9)])
        | polygon(u, v, [(0.05, -0.35), (0.05, 0.95), (0.75, -0.35)])
    ),
    "key": lambda u, v: (
        (disc(u, v, 0.4, -0.55, 0.0) & ~disc(u, v, 0.18, -0.55, 0.0))
        | box(u, v, 0.5, 0.1, 0.35, 0.0)
        | box(u, v, 0.07, 0.2, 0.75, -0.2)
        | box(u, v, 0.07, 0.15, 0.5, -0.15)
    ),
    "umbrella": lambda u, v: (
        (disc(u, v, 0.9, 0.0, 0.0) & (v >= 0.0))
        | box(u, v, 0.07, 0.45, 0.0, -0.45)
        | (disc(u, v, 0.22, -0.17, -0.85) & ~disc(u, v, 0.1, -0.17, -0.85) & (v <= -0.85))
    ),
    "cup": lambda u, v: (
        box(u, v, 0.45, 0.6, -0.2, -0.1)
        | (disc(u, v, 0.4, 0.25, -0.1) & ~disc(u, v, 0.22, 0.25, -0.1) & (u >= 0.25))
    ),
    "hourglass": lambda u, v: polygon(
        u, v, [(-0.7, 0.9), (0.7, 0.9), (0.08, 0.0), (0.7, -0.9), (-0.7, -0.9), (-0.08, 0.0)]
    ),
    "bell": lambda u, v: (
        (ellipse(u, v, 0.55, 0.8, 0.0, 0.0) & (v >= -0.4))
        | box(u, v, 0.8, 0.15, 0.0, -0.5)
        | disc(u, v, 0.15, 0.0, -0.75)
    ),
    "lollipop": lambda u, v: disc(u, v, 0.5, 0.0, 0.4) | box(u, v, 0.07, 0.5, 0.0, -0.45),
}

SHAPES: dict[str, ShapeFn] = {**GEOMETRIC, **PICTOGRAMS}

# Pictograms are two-tone, like things (a tree has a trunk): this part gets a second colour.
# Geometric shapes are one colour. Each part lies inside its pictogram's mask.
PARTS: dict[str, ShapeFn] = {
    "house": lambda u, v: polygon(u, v, [(-0.85, 0.0), (0.85, 0.0), (0.0, 0.9)]),
    "tree": lambda u, v: box(u, v, 0.14, 0.45, 0.0, -0.5) & (v < -0.25),
    "mushroom": lambda u, v: box(u, v, 0.22, 0.45, 0.0, -0.45) & (v < 0.0),
    "fish": lambda u, v: polygon(u, v, [(0.25, 0.0), (0.95, 0.5), (0.95, -0.5)]) & (u > 0.33),
    "flower": lambda u, v: disc(u, v, 0.25),
    "sailboat": lambda u, v: polygon(
        u, v, [(-0.9, -0.45), (0.9, -0.45), (0.6, -0.9), (-0.6, -0.9)]
    ),
    "key": lambda u, v: box(u, v, 0.5, 0.1, 0.35, 0.0) | box(u, v, 0.07, 0.2, 0.75, -0.2),
    "umbrella": lambda u, v: box(u, v, 0.07, 0.45, 0.0, -0.45) & (v < 0.0),
    "cup": lambda u, v: disc(u, v, 0.4, 0.25, -0.1) & ~disc(u, v, 0.22, 0.25, -0.1) & (u >= 0.25),
    "hourglass": lambda u, v: v < 0.0,
    "bell": lambda u, v: disc(u, v, 0.15, 0.0, -0.75),
    "lollipop": lambda u, v: box(u, v, 0.07, 0.5, 0.0, -0.45) & (v < -0.1),
}


def shape_mask(name: str, u: Tensor, v: Tensor) -> Tensor:
    """Boolean mask ``[n, S, S]`` of concept ``name`` at object-frame coordinates ``u, v``.

    Raises:
        KeyError: if ``name`` is not a shape, listing the valid names.
    """
    if name not in SHAPES:
        raise KeyError(f"Unknown shape {name!r}; valid shapes: {sorted(SHAPES)}.")
    return SHAPES[name](u, v)


def part_mask(name: str, u: Tensor, v: Tensor) -> Tensor | None:
    """Mask of the second-colour part of concept ``name`` (``None`` for one-colour shapes)."""
    if name not in PARTS:
        return None
    return PARTS[name](u, v) & SHAPES[name](u, v)
