"""Shared input checks: canonical outputs and error messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmakit.core.checks import (
    check_choice,
    check_embeddings,
    check_fraction,
    check_int,
    check_logits,
    check_positive,
    check_scores,
)


def test_check_embeddings_returns_tensor_without_copy():
    x = np.eye(3, dtype=np.float32)
    t = check_embeddings(x, "x")
    assert isinstance(t, torch.Tensor) and t.data_ptr() == x.ctypes.data
    y = torch.eye(3)
    assert check_embeddings(y, "y") is y
    assert check_embeddings(np.ones((2, 3)), "z", normalized=False).shape == (2, 3)
    check_embeddings(np.eye(3) * (1 + 9e-4), "tol")  # within the 1e-3 tolerance


@pytest.mark.parametrize(
    ("x", "match"),
    [
        ([[1.0, 0.0]], "x must be a numpy array or torch tensor; got list"),
        (np.eye(2, dtype=int), "x must be a floating-point array"),
        (torch.eye(2, dtype=torch.int64), "x must be floating point"),
        (np.ones(3), r"x must be 2-D \[N, D\]; got shape \(3,\)"),
        (np.ones((2, 0)), "x must be non-empty"),
        (np.eye(2) * 1.002, r"row 0 has norm 1.002"),
        (np.array([[np.nan, 0.0]]), r"x contains 1 non-finite value\(s\) .* index \(0, 0\)"),
    ],
)
def test_check_embeddings_errors(x, match):
    with pytest.raises(ValueError, match=match):
        check_embeddings(x, "x")


def test_dimension_check_names_the_argument():
    with pytest.raises(ValueError, match="text has dimension D=2, but D=3 is required"):
        check_embeddings(np.eye(2), "text", dim=3)


def test_scalar_and_score_checks():
    np.testing.assert_array_equal(check_scores([1, 2], "s"), [1.0, 2.0])
    assert check_scores(torch.tensor([0.5]), "s").dtype == np.float64
    with pytest.raises(ValueError, match="s must hold real numbers"):
        check_scores(np.array([True]), "s")
    assert check_logits(np.zeros((1, 2))).shape == (1, 2)
    with pytest.raises(ValueError, match="logits must be a non-empty 2-D"):
        check_logits(np.zeros(2))
    with pytest.raises(ValueError, match=r"Unknown mode 'c'; choose one of \['a', 'b'\]"):
        check_choice("c", "mode", ["a", "b"])
    assert check_positive(2, "t") == 2.0 and check_positive(0, "t", allow_zero=True) == 0.0
    for bad in (0, -1, float("inf"), float("nan"), True, "1"):
        with pytest.raises(ValueError, match="t must be a"):
            check_positive(bad, "t")
    assert check_int(np.int64(3), "k") == 3
    with pytest.raises(ValueError, match="k must be an integer; got 3.0"):
        check_int(3.0, "k")
    assert check_fraction(1, "f") == 1.0
    with pytest.raises(ValueError, match=r"f must lie in \(0, 1\]; got 2"):
        check_fraction(2, "f")
