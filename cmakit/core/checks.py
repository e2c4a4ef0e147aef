"""Input validation shared by every cmakit function.

Each check either returns its input in one canonical form (a torch tensor for embeddings and
logits, a 1-D float64 numpy array for scores) or raises ``ValueError`` with a message that names
the argument, echoes the bad value and says what is allowed. Nothing is silently coerced: an
integer array is refused rather than cast, a NaN is refused rather than dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

#: Largest allowed deviation of an embedding's L2 norm from 1.
NORM_ATOL = 1e-3


def _describe(x: Any) -> str:
    shape = tuple(getattr(x, "shape", ()))
    dtype = getattr(x, "dtype", type(x).__name__)
    return f"shape {shape}, dtype {dtype}"


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` (numpy array or torch tensor of floats) as a torch tensor without copying.

    Args:
        x: A floating-point numpy array or torch tensor.
        name: Argument name used in error messages.

    Returns:
        A tensor sharing memory with ``x`` where possible.

    Raises:
        ValueError: If ``x`` is not an array/tensor or is not floating point.
    """
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{name} must be a floating-point array; got {_describe(x)}.")
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        raise ValueError(f"{name} must be a numpy array or torch tensor; got {type(x).__name__}.")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be floating point; got {_describe(t)}.")
    return t


def _check_finite_tensor(t: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf), "
            f"first at index {idx}: {t[idx].item()}; all values must be finite."
        )


def check_embeddings(
    x: Any,
    name: str,
    *,
    dim: int | None = None,
    normalized: bool = True,
    atol: float = NORM_ATOL,
) -> torch.Tensor:
    """Validate a ``[N, D]`` embedding matrix.

    Args:
        x: Floating-point numpy array or torch tensor, shape ``[N, D]``.
        name: Argument name used in error messages.
        dim: Required embedding dimension ``D`` (``None``: any).
        normalized: Require every row to have unit L2 norm (within ``atol``).
        atol: Tolerance on ``| ||x_i|| - 1 |``.

    Returns:
        ``x`` as a torch tensor (no copy for torch input).

    Raises:
        ValueError: Wrong type or dtype, not 2-D, empty, wrong ``D``, non-finite values, or
            (when ``normalized``) a row whose norm is not 1.

    Example:
        >>> check_embeddings(np.eye(3, dtype=np.float32), "image_emb").shape
        torch.Size([3, 3])
    """
    t = as_tensor(x, name)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D]; got {_describe(t)}.")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty [N, D] with N, D >= 1; got {_describe(t)}.")
    if dim is not None and t.shape[1] != dim:
        raise ValueError(
            f"{name} has dimension D={t.shape[1]}, but D={dim} is required "
            "(all embeddings must share one dimension)."
        )
    _check_finite_tensor(t, name)
    if normalized:
        norms = torch.linalg.vector_norm(t.detach(), dim=1)
        worst = int((norms - 1.0).abs().argmax())
        norm = float(norms[worst])
        if abs(norm - 1.0) > atol:
            raise ValueError(
                f"{name} must be L2-normalised (row norms 1 +- {atol}); row {worst} has norm "
                f"{norm:.6g}. Normalise with x / x.norm(dim=-1, keepdim=True)."
            )
    return t


def check_same_dim(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same last dimension."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same embedding dimension; "
            f"got {a.shape[-1]} and {b.shape[-1]}."
        )


def check_same_rows(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same number of rows (pairs)."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must be matched pairs with the same number of rows; "
            f"got {a.shape[0]} and {b.shape[0]}."
        )


def check_logits(x: Any, name: str = "logits") -> torch.Tensor:
    """Validate a non-empty, finite ``[N, C]`` logit matrix and return it as a tensor.

    Raises:
        ValueError: Wrong type, not 2-D, empty or non-finite.
    """
    t = as_tensor(x, name)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D [N, C] array; got {_describe(t)}.")
    _check_finite_tensor(t, name)
    return t


def check_scores(x: Any, name: str) -> np.ndarray:
    """Validate a non-empty, finite 1-D score array.

    Args:
        x: Sequence, numpy array or torch tensor of real numbers, shape ``[N]``.
        name: Argument name used in error messages.

    Returns:
        A float64 numpy array of shape ``[N]``.

    Raises:
        ValueError: Not 1-D, empty, not real-valued, or containing NaN/inf.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"{name} must hold real numbers; got {_describe(arr)}.")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D [N]; got {_describe(arr)}.")
    if arr.size == 0:
        raise ValueError(f"{name} must be non-empty; got an empty array.")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf), first at "
            f"index {first}: {arr[first]}; all scores must be finite."
        )
    return arr


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {choices}.")


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is a finite number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number; got {value!r}.")
    v = float(value)
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
    return v


def check_int(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int in ``[minimum, maximum]``; else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}.")
    hi = "" if maximum is None else f" and <= {maximum}"
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be >= {minimum}{hi}; got {value!r}.")
    return int(value)


def check_fraction(value: Any, name: str, *, low_open: bool = True) -> float:
    """Return ``value`` if it is a float in ``(0, 1]`` (``[0, 1]`` when not ``low_open``)."""
    v = check_positive(value, name, allow_zero=not low_open)
    if v > 1:
        lo = "(0" if low_open else "[0"
        raise ValueError(f"{name} must lie in {lo}, 1]; got {value!r}.")
    return v
