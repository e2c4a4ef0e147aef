"""Random L2-normalised rows shared by the tests of the science core."""

from __future__ import annotations

import numpy as np


def unit_rows(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """``[n, d]`` float64 unit rows; ``shift`` moves them into a cone around e_0 (a modality)."""
    x = np.random.default_rng(seed).standard_normal((n, d))
    x[:, 0] += shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)
