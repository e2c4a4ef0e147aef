"""Checks that OoD sets are what they claim: no OoD concept is an ID concept in disguise.

Colour and background are nuisance factors the renderer draws independently of the concept, so
an OoD class is "an ID class recoloured" only if its silhouette matches and, in a species world,
its marking too (a striped circle and a plain circle are two species with one silhouette). This
module measures the best silhouette overlap (IoU) of two concepts over rotations and scales.
"""

from __future__ import annotations

import math

import torch

from cmakit.data.world.concepts import anatomy
from cmakit.data.world.shapes import shape_mask


def silhouette(
    name: str, size: int = 64, angles: torch.Tensor | None = None, scale: float = 1.0
) -> torch.Tensor:
    """Masks ``[A, size, size]`` of object concept ``name`` (a shape or a species: its body)
    rotated by each of ``angles`` (radians)."""
    angles = torch.zeros(1) if angles is None else angles
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2.4 - 1.2
    y, x = torch.meshgrid(-t, t, indexing="ij")
    a = angles[:, None, None]
    u = (x * torch.cos(a) + y * torch.sin(a)) / scale
    v = (-x * torch.sin(a) + y * torch.cos(a)) / scale
    return shape_mask(anatomy(name)[0], u, v)


def max_iou(
    a: str, b: str, *, size: int = 64, n_angles: int = 72, scales=(0.8, 0.9, 1.0, 1.1, 1.25)
) -> float:
    """Best IoU of concept ``a`` (upright) and concept ``b`` over rotations and scales of ``b``.

    Args:
        a: Reference concept (drawn once, upright, scale 1).
        b: Concept transformed over ``n_angles`` rotations in ``[0, 2*pi)`` and ``scales``.
        size: Raster side.

    Returns:
        The maximum IoU in ``[0, 1]``; 1 means ``b`` is ``a`` rotated and rescaled.
    """
    ref = silhouette(a, size)[0]
    angles = torch.arange(n_angles, dtype=torch.float32) * (2 * math.pi / n_angles)
    best = 0.0
    for s in scales:
        masks = silhouette(b, size, angles, s)
        inter = (masks & ref).flatten(1).sum(1).float()
        union = (masks | ref).flatten(1).sum(1).float()
        best = max(best, float((inter / union).max()))
    return best


def in_disguise(a: str, b: str, threshold: float = 0.85) -> bool:
    """Whether object concepts ``a`` and ``b`` look alike up to colour, pose and scale: the same
    marking (or both plain) and a best silhouette IoU of at least ``threshold``."""
    return anatomy(a)[1] == anatomy(b)[1] and max_iou(a, b) >= threshold
