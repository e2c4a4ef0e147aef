"""Turn per-seed results into the run's ``summary.json``.

A run evaluates every method (``zero_shot``, ``flyp``, ``cma``) once per seed. Each seed yields a
nested dict of floats; :func:`aggregate_seeds` folds the seeds into means with the per-seed values
and their spread beside them (``auroc``, ``auroc_per_seed``, ``auroc_std``), and
:func:`build_summary` assembles the document that :func:`validate_summary` checks. Tables and
figures read only the summary, so one schema serves them all.

Schema (``*`` = any name; every number leaf ``x`` of a method or ablation row carries
``x_per_seed`` (one value per seed) and ``x_std`` beside it)::

    profile: str
    seeds: [int, ...]                      # non-empty
    convention: "id_positive" | "ood_positive"
    fpr95_estimator: "interp" | "threshold"  # the paper's np.interp on the ROC curve, or the rule
    aupr_estimator: "trapezoid" | "ap"
    groups: {*: [str, ...]}                # near/far/mos: their OoD sets (optional)
    id_sets: {*: str}                      # group -> its ID test set, in words (optional)
    methods:
      *:                                   # zero_shot, flyp, cma
        id_accuracy: fraction
        modality_gap: float >= 0
        geometry: {*: float}
        ood:
          *:                               # score: mcm, neglabel, neglabel_grouped, ...
            *: {fpr95, auroc, aupr_in, aupr_out: fraction}   # OoD set, near_mean, far_mean
    ablation: [{lam: float >= 0, seeds: [int, ...], *: float}, ...]
    timings: {*: seconds >= 0}             # nested dicts allowed
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cmakit.common.constants import CONVENTIONS
from cmakit.core.metrics import FPR95_ESTIMATORS, add_group_means, fpr95_estimator

AUPR_ESTIMATORS = ("trapezoid", "ap")  # as cmakit.core.metrics.ESTIMATORS
OOD_METRICS = ("fpr95", "auroc", "aupr_in", "aupr_out")
# Leaves that are fractions in [0, 1] wherever they appear (and their per-seed values).
FRACTION_KEYS = frozenset({"id_accuracy", *OOD_METRICS})
DEFAULT_REQUIRED_SCORES = ("mcm", "neglabel", "neglabel_grouped")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _is_number_list(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(_is_number(v) for v in x)


def _mean_std(values: np.ndarray, ddof: int) -> tuple[Any, Any]:
    """Mean and std over axis 0; std is 0 when there is a single seed."""
    mean = values.mean(axis=0)
    std = values.std(axis=0, ddof=ddof) if len(values) > ddof else np.zeros_like(mean)
    return mean.tolist(), std.tolist()


def aggregate_seeds(per_seed: Sequence[Mapping[str, Any]], *, ddof: int = 1) -> dict[str, Any]:
    """Fold same-shaped nested dicts, one per seed, into means with spread beside them.

    Every number leaf ``k`` becomes ``k`` (mean over seeds), ``k_per_seed`` (the values, in seed
    order) and ``k_std`` (standard deviation with ``ddof``; 0.0 for a single seed). Equal-length
    lists of numbers (curves) are folded element-wise the same way. Any other leaf (str, bool,
    None, mixed list) must be identical across seeds and is copied once.

    Args:
        per_seed: One nested dict per seed, all with the same keys at every level.
        ddof: Delta degrees of freedom of the std (1: sample std, the usual "± std over seeds").

    Returns:
        A new nested dict with the same keys plus the ``_per_seed`` and ``_std`` companions.

    Raises:
        ValueError: ``per_seed`` is empty, or the dicts differ in keys, shapes or non-number
            leaves; the message names the dotted key path.
    """
    if len(per_seed) == 0:
        raise ValueError("aggregate_seeds needs at least one per-seed dict; got an empty list.")
    return _aggregate(list(per_seed), "$", ddof)


def _aggregate(dicts: list[Mapping[str, Any]], path: str, ddof: int) -> dict[str, Any]:
    keys = list(dicts[0])
    for i, d in enumerate(dicts[1:], start=1):
        if not isinstance(d, Mapping) or set(d) != set(keys):
            got = sorted(d) if isinstance(d, Mapping) else type(d).__name__
            raise ValueError(f"{path}: seed {i} has keys {got}, seed 0 has {sorted(keys)}.")
    out: dict[str, Any] = {}
    for key in keys:
        values = [d[key] for d in dicts]
        where = f"{path}.{key}"
        if all(isinstance(v, Mapping) for v in values):
            out[key] = _aggregate(values, where, ddof)
        elif all(_is_number(v) for v in values) or all(_is_number_list(v) for v in values):
            try:
                arr = np.asarray(values, dtype=float)
            except ValueError as err:
                raise ValueError(f"{where}: curves of different lengths across seeds.") from err
            out[key], out[f"{key}_std"] = _mean_std(arr, ddof)
            out[f"{key}_per_seed"] = arr.tolist()
        elif all(v == values[0] for v in values):
            out[key] = values[0]
        else:
            raise ValueError(f"{where}: non-numeric values differ across seeds: {values!r}.")
    return out


def aggregate_ablation(rows: Sequence[Mapping[str, Any]], *, ddof: int = 1) -> list[dict]:
    """Fold ablation rows, one per (λ, seed), into one row per λ (ascending).

    Args:
        rows: Dicts with a ``lam`` key, an optional ``seed`` key and number leaves
            (``id_accuracy``, ``fpr95``, ``modality_gap``, ...).
        ddof: See :func:`aggregate_seeds`.

    Returns:
        ``[{"lam", "seeds", <metric>, <metric>_per_seed, <metric>_std, ...}, ...]``.
    """
    by_lam: dict[float, list[Mapping[str, Any]]] = {}
    for row in rows:
        if "lam" not in row:
            raise ValueError(f"Ablation row {dict(row)!r} has no 'lam' key.")
        by_lam.setdefault(float(row["lam"]), []).append(row)
    out = []
    for lam in sorted(by_lam):
        group = by_lam[lam]
        seeds = [int(r["seed"]) for r in group if "seed" in r]
        body = [{k: v for k, v in r.items() if k not in ("lam", "seed")} for r in group]
        out.append({"lam": lam, "seeds": seeds, **aggregate_seeds(body, ddof=ddof)})
    return out


def build_summary(
    profile: str,
    seeds: Sequence[int],
    methods_per_seed: Mapping[str, Sequence[Mapping[str, Any]]],
    ablation: Sequence[Mapping[str, Any]],
    timings: Mapping[str, Any],
    convention: str,
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    aupr_estimator: str = "trapezoid",
    fpr_estimator: str | None = None,
    id_sets: Mapping[str, str] | None = None,
    ddof: int = 1,
) -> dict[str, Any]:
    """Assemble ``summary.json`` from per-seed results (see the module docstring for the schema).

    Args:
        profile: Name of the run profile.
        seeds: The seeds, in the order of every per-seed list.
        methods_per_seed: ``{method: [per_seed_result, ...]}``; each result holds
            ``id_accuracy``, ``modality_gap``, ``geometry`` and ``ood`` =
            ``{score: {ood_set: {fpr95, auroc, aupr_in, aupr_out}}}`` (fractions).
        ablation: Rows per (λ, seed), folded by :func:`aggregate_ablation`.
        timings: Wall-clock seconds per stage (copied as is).
        convention: ``"id_positive"`` (paper / MOS) or ``"ood_positive"`` (OpenOOD v1.5).
        groups: ``{"near": [...], "far": [...]}``; group means are added per seed before
            folding, so their std is the spread of the per-seed means.
        aupr_estimator: ``"trapezoid"`` or ``"ap"`` (average precision), as used by
            :func:`cmakit.core.metrics.ood_metrics`.
        fpr_estimator: FPR@95 estimator the records were computed with (``None``: the
            convention's own, :func:`cmakit.core.metrics.fpr95_estimator`).
        id_sets: ``{group: its ID test set in words}`` (the paper path measures OpenOOD's
            near/far against OpenOOD's ID list, MOS against the full ImageNet-1k val).
        ddof: See :func:`aggregate_seeds`.

    Returns:
        The summary dict; it passes :func:`validate_summary`.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r}; choose one of {list(CONVENTIONS)}.")
    if aupr_estimator not in AUPR_ESTIMATORS:
        raise ValueError(f"aupr_estimator={aupr_estimator!r}; choose one of {AUPR_ESTIMATORS}.")
    fpr_estimator = fpr95_estimator(convention, fpr_estimator)
    methods = {}
    for name, results in methods_per_seed.items():
        if len(results) != len(seeds):
            raise ValueError(f"Method {name!r} has {len(results)} results for {len(seeds)} seeds.")
        if groups:
            results = [_with_group_means(r, groups) for r in results]
        methods[name] = aggregate_seeds(results, ddof=ddof)
    return {
        "profile": profile,
        "seeds": [int(s) for s in seeds],
        "convention": convention,
        "fpr95_estimator": fpr_estimator,
        "aupr_estimator": aupr_estimator,
        "groups": {g: list(sets) for g, sets in (groups or {}).items()},
        "id_sets": dict(id_sets or {}),
        "methods": methods,
        "ablation": aggregate_ablation(ablation, ddof=ddof),
        "timings": dict(timings),
    }


def _with_group_means(result: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> dict:
    ood = {score: add_group_means(sets, groups) for score, sets in result["ood"].items()}
    return {**result, "ood": ood}


# ---------------------------------------------------------------------------------- validation


def _fail(path: str, problem: str) -> None:
    raise ValueError(f"summary.json invalid at {path}: {problem}")


def _require(obj: Any, key: str, path: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        _fail(f"{path}.{key}", "required key is missing.")
    if not isinstance(obj[key], kind):
        _fail(f"{path}.{key}", f"expected {kind}, got {type(obj[key]).__name__}.")
    return obj[key]


def _check_numbers(obj: Any, path: str, key: str = "") -> None:
    """Every number finite; fractions (and their per-seed values / std) within [0, 1]."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_numbers(v, f"{path}.{k}", str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_numbers(v, f"{path}[{i}]", key)
    elif _is_number(obj):
        if not math.isfinite(obj):
            _fail(path, f"value {obj!r} is not finite.")
        base = key.removesuffix("_per_seed").removesuffix("_std")
        if base in FRACTION_KEYS and not 0.0 <= obj <= 1.0:
            _fail(path, f"{base} is a fraction and must lie in [0, 1]; got {obj!r}.")
        if key.endswith("_std") and obj < 0:
            _fail(path, f"a standard deviation must be >= 0; got {obj!r}.")


def _check_per_seed_lengths(obj: Any, path: str, n_seeds: int) -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if str(k).endswith("_per_seed") and len(v) != n_seeds:
                _fail(f"{path}.{k}", f"has {len(v)} values for {n_seeds} seeds.")
            _check_per_seed_lengths(v, f"{path}.{k}", n_seeds)


def _check_method(method: Any, path: str, n_seeds: int, required_scores: Sequence[str]) -> None:
    _require(method, "id_accuracy", path, (int, float))
    gap = _require(method, "modality_gap", path, (int, float))
    if gap < 0:
        _fail(f"{path}.modality_gap", f"a norm must be >= 0; got {gap!r}.")
    _require(method, "geometry", path, Mapping)
    ood = _require(method, "ood", path, Mapping)
    for score in required_scores:
        _require(ood, score, f"{path}.ood", Mapping)
    for score, sets in ood.items():
        if not isinstance(sets, Mapping) or not sets:
            _fail(f"{path}.ood.{score}", "expected a non-empty {ood_set: metrics} mapping.")
        for name, metrics in sets.items():
            for metric in OOD_METRICS:
                _require(metrics, metric, f"{path}.ood.{score}.{name}", (int, float))
    _check_per_seed_lengths(method, path, n_seeds)


def validate_summary(
    summary: Mapping[str, Any], *, required_scores: Sequence[str] = DEFAULT_REQUIRED_SCORES
) -> None:
    """Check a summary against the schema in the module docstring.

    Args:
        summary: The parsed ``summary.json``.
        required_scores: Score keys every method's ``ood`` must hold.

    Raises:
        ValueError: On the first problem, naming its JSON path (``$.methods.cma.ood.mcm...``):
            a missing key, a wrong type, a non-finite number, a fraction outside [0, 1], a
            negative std or gap, or a per-seed list whose length is not the number of seeds.
    """
    _require(summary, "profile", "$", str)
    seeds = _require(summary, "seeds", "$", list)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        _fail("$.seeds", f"expected a non-empty list of integers; got {seeds!r}.")
    for key, choices in (("convention", CONVENTIONS), ("aupr_estimator", AUPR_ESTIMATORS)):
        value = _require(summary, key, "$", str)
        if value not in choices:
            _fail(f"$.{key}", f"{value!r} is not one of {list(choices)}.")
    if "fpr95_estimator" in summary:  # absent in summaries written before it was recorded
        value = _require(summary, "fpr95_estimator", "$", str)
        if value not in FPR95_ESTIMATORS:
            _fail("$.fpr95_estimator", f"{value!r} is not one of {list(FPR95_ESTIMATORS)}.")
    for key in ("groups", "id_sets"):  # absent in summaries written before they were recorded
        if key in summary and not isinstance(summary[key], Mapping):
            _fail(f"$.{key}", f"expected a mapping, got {type(summary[key]).__name__}.")
    methods = _require(summary, "methods", "$", Mapping)
    if not methods:
        _fail("$.methods", "no methods.")
    for name, method in methods.items():
        _check_method(method, f"$.methods.{name}", len(seeds), required_scores)
    for i, row in enumerate(_require(summary, "ablation", "$", list)):
        lam = _require(row, "lam", f"$.ablation[{i}]", (int, float))
        if lam < 0:
            _fail(f"$.ablation[{i}].lam", f"lambda must be >= 0; got {lam!r}.")
    timings = _require(summary, "timings", "$", Mapping)
    _check_numbers(summary, "$")
    _check_nonnegative(timings, "$.timings")


def _check_nonnegative(obj: Any, path: str) -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_nonnegative(v, f"{path}.{k}")
    elif _is_number(obj) and obj < 0:
        _fail(path, f"a duration must be >= 0 seconds; got {obj!r}.")
