"""OoD detection metrics on score arrays (higher score = more in-distribution).

All metrics return Python floats that are fractions in ``[0, 1]`` (tables multiply by 100).

Two FPR@95 conventions exist (PAPER.md §4) and both are implemented:

* ``"id_positive"`` (the paper, MOS, MCM, NegLabel): ID is the positive class; FPR95 is the
  fraction of OoD accepted at 95% TPR of ID. Its default estimator is the paper's,
  ``"interp"``: the CMA code's ``np.interp(0.95, tpr, fpr)`` on scikit-learn's ROC points,
  re-implemented here from that definition (:func:`roc_points`), with its two edge branches.
  Under tied scores it interpolates (a fractional FPR); when 95% of ID is an exact count it
  returns the far end of the flat ROC run at TPR = 0.95. ``estimator="threshold"`` keeps the
  exact empirical threshold rule (the largest threshold keeping >= 95% of ID).
* ``"ood_positive"`` (OpenOOD v1.5): threshold catching >= 95% of OoD, report the fraction
  of ID rejected (estimator ``"threshold"`` only, as OpenOOD's ``compute_all_metrics``). No ROC
  points are dropped: OpenOOD calls ``sklearn.metrics.roc_curve`` with its default
  ``drop_intermediate=True``, which can skip the crossing point on an evenly stepped diagonal
  stretch of the curve (tied scores) and then report a slightly larger FPR.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from cmakit.common.constants import CONVENTIONS
from cmakit.core.checks import check_choice, check_fraction, check_int, check_scores

__all__ = [
    "CONVENTIONS",
    "ESTIMATORS",
    "FPR95_ESTIMATORS",
    "add_group_means",
    "aupr_in",
    "aupr_out",
    "auroc",
    "fpr95_estimator",
    "fpr_at_95_tpr",
    "ood_metrics",
    "roc_points",
]

ESTIMATORS = ("trapezoid", "ap")
#: FPR@95 estimators: the paper's interpolation on the ROC curve, and the exact threshold rule.
FPR95_ESTIMATORS = ("interp", "threshold")


def _kth_smallest(x: np.ndarray, k: int) -> float:
    return float(np.partition(x, k - 1)[k - 1])


def fpr95_estimator(convention: str, estimator: str | None = None) -> str:
    """The FPR@95 estimator used under ``convention``: ``estimator``, or the convention's own.

    ``"id_positive"`` defaults to the paper's ``"interp"``; ``"ood_positive"`` has OpenOOD's
    ``"threshold"`` only.

    Raises:
        ValueError: Unknown convention or estimator, or ``"interp"`` with ``"ood_positive"``.
    """
    check_choice(convention, "convention", CONVENTIONS)
    if estimator is None:
        return "interp" if convention == "id_positive" else "threshold"
    check_choice(estimator, "estimator", FPR95_ESTIMATORS)
    if convention == "ood_positive" and estimator != "threshold":
        raise ValueError(
            f"estimator={estimator!r} is the paper's id_positive estimator; ood_positive "
            "(OpenOOD v1.5) uses estimator='threshold'."
        )
    return estimator


def roc_points(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr)`` of ``pos`` (positives) vs ``neg``, as scikit-learn builds them.

    One point per distinct score, thresholds descending, cumulative counts at the last index
    of each tie; points in the middle of an evenly stepped straight run are dropped (where the
    second differences of both counts are zero, ``roc_curve``'s ``drop_intermediate=True``);
    then ``(0, 0)`` is prepended.

    Args:
        pos: ``[P]`` finite scores of the positive class (higher = more positive).
        neg: ``[Q]`` finite scores of the negative class.

    Returns:
        ``fpr [R]`` and ``tpr [R]``, both non-decreasing fractions starting at 0 and ending at 1.
    """
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(labels)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    if fps.size > 2:
        bends = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        tps, fps = tps[bends], fps[bends]
    return np.r_[0.0, fps] / neg.size, np.r_[0.0, tps] / pos.size


def _fpr_interp(pos: np.ndarray, neg: np.ndarray, tpr: float) -> float:
    """The paper's estimator: ``np.interp(tpr, TPR, FPR)`` with its two edge branches."""
    fpr_curve, tpr_curve = roc_points(pos, neg)
    if np.all(tpr_curve < tpr):  # no threshold reaches the target rate
        return 0.0
    if np.all(tpr_curve >= tpr):  # every threshold does: the smallest FPR among them
        return float(fpr_curve.min())
    return float(np.interp(tpr, tpr_curve, fpr_curve))


def fpr_at_95_tpr(
    id_scores,
    ood_scores,
    *,
    convention: str = "id_positive",
    tpr: float = 0.95,
    estimator: str | None = None,
) -> float:
    """False-positive rate at a true-positive rate of ``tpr`` (95%).

    ``"id_positive"`` (ID positive, the paper): with ``estimator="interp"`` (its default, the
    paper's CMA code) ``np.interp(tpr, TPR, FPR)`` along the ROC points of :func:`roc_points`;
    0 when no point reaches ``tpr``, the smallest FPR of the points when all do. With
    ``estimator="threshold"``: ``t`` = the largest threshold with at least ``tpr`` of ID
    scores >= t; returns the fraction of OoD scores >= t. ``"ood_positive"`` (OpenOOD v1.5,
    threshold rule only): ``t`` = the smallest threshold with at least ``tpr`` of OoD
    scores <= t; returns the fraction of ID scores <= t.

    Args:
        id_scores: ``[N_id]`` scores of in-distribution samples.
        ood_scores: ``[N_ood]`` scores of OoD samples.
        convention: ``"id_positive"`` (paper) or ``"ood_positive"`` (OpenOOD v1.5).
        tpr: Target true-positive rate in ``(0, 1]``.
        estimator: ``"interp"`` or ``"threshold"``; ``None`` = the convention's own
            (:func:`fpr95_estimator`).

    Returns:
        FPR as a fraction in ``[0, 1]``.

    Raises:
        ValueError: Empty or non-finite scores, unknown ``convention`` or ``estimator``,
            ``estimator="interp"`` with ``"ood_positive"``, ``tpr`` outside (0, 1].

    Example:
        >>> ood = np.array([-1.0, 4.5, 50.0])  # 95 ID scores >= 5; 4.5 lies on the flat run
        >>> fpr_at_95_tpr(np.arange(100.0), ood, estimator="threshold")
        0.3333333333333333
        >>> fpr_at_95_tpr(np.arange(100.0), ood)  # the paper's: the far end of that run
        0.6666666666666666
    """
    id_s = check_scores(id_scores, "id_scores")
    ood_s = check_scores(ood_scores, "ood_scores")
    estimator = fpr95_estimator(convention, estimator)
    tpr = check_fraction(tpr, "tpr")
    if estimator == "interp":
        return _fpr_interp(id_s, ood_s, tpr)
    pos, neg = (id_s, ood_s) if convention == "id_positive" else (-ood_s, -id_s)
    # k = smallest count of positives reaching the target rate (rounded against float noise)
    k = max(1, math.ceil(round(tpr * pos.size, 9)))
    threshold = -_kth_smallest(-pos, k)  # k-th largest positive score
    return float(np.mean(neg >= threshold))


def auroc(id_scores, ood_scores) -> float:
    """Area under the ROC curve with ID as the positive class (ties count one half).

    Computed as the Mann–Whitney statistic ``P(s_id > s_ood) + 0.5 P(s_id = s_ood)`` from
    average ranks; symmetric in the two conventions.

    Args:
        id_scores: ``[N_id]`` ID scores.
        ood_scores: ``[N_ood]`` OoD scores.

    Returns:
        AUROC in ``[0, 1]``.

    Raises:
        ValueError: Empty or non-finite scores.

    Example:
        >>> auroc([1.0, 2.0], [0.0, 2.0])  # 2 wins, 1 tie, 1 loss
        0.625
    """
    id_s = check_scores(id_scores, "id_scores")
    ood_s = check_scores(ood_scores, "ood_scores")
    ranks = rankdata(np.concatenate([id_s, ood_s]))
    n_id, n_ood = id_s.size, ood_s.size
    u = ranks[:n_id].sum() - n_id * (n_id + 1) / 2.0
    return float(u / (n_id * n_ood))


def _pr_area(pos: np.ndarray, neg: np.ndarray, estimator: str) -> float:
    """Area under the precision-recall curve of ``pos`` (positives) vs ``neg``."""
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # distinct thresholds
    tp = np.cumsum(labels)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / pos.size
    if estimator == "ap":  # sum_n (R_n - R_{n-1}) P_n, as sklearn's average_precision_score
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    # trapezoid through (recall 0, precision 1), as sklearn's auc(precision_recall_curve)
    return float(np.trapezoid(np.r_[1.0, precision], np.r_[0.0, recall]))


def aupr_in(id_scores, ood_scores, *, estimator: str = "trapezoid") -> float:
    """Area under the precision-recall curve with ID as the positive class.

    Args:
        id_scores: ``[N_id]`` ID scores.
        ood_scores: ``[N_ood]`` OoD scores.
        estimator: ``"trapezoid"`` (default; trapezoid rule on the PR curve starting at
            recall 0, precision 1 — OpenOOD and the CMA code) or ``"ap"`` (average precision,
            step rule — scikit-learn, MCM, NegLabel).

    Returns:
        AUPR-In in ``[0, 1]``.

    Raises:
        ValueError: Empty or non-finite scores, or unknown ``estimator``.

    Example:
        >>> aupr_in([2.0, 3.0], [0.0, 1.0])
        1.0
    """
    check_choice(estimator, "estimator", ESTIMATORS)
    id_s = check_scores(id_scores, "id_scores")
    ood_s = check_scores(ood_scores, "ood_scores")
    return _pr_area(id_s, ood_s, estimator)


def aupr_out(id_scores, ood_scores, *, estimator: str = "trapezoid") -> float:
    """Area under the precision-recall curve with OoD as the positive class (scores negated).

    Args:
        id_scores: ``[N_id]`` ID scores.
        ood_scores: ``[N_ood]`` OoD scores.
        estimator: ``"trapezoid"`` (default) or ``"ap"``; see :func:`aupr_in`.

    Returns:
        AUPR-Out in ``[0, 1]``.

    Raises:
        ValueError: Empty or non-finite scores, or unknown ``estimator``.
    """
    check_choice(estimator, "estimator", ESTIMATORS)
    id_s = check_scores(id_scores, "id_scores")
    ood_s = check_scores(ood_scores, "ood_scores")
    return _pr_area(-ood_s, -id_s, estimator)


def _all_metrics(id_s: np.ndarray, ood_s: np.ndarray, convention: str, estimator: str,
                 fpr_estimator: str) -> dict:  # fmt: skip
    return {
        "fpr95": fpr_at_95_tpr(id_s, ood_s, convention=convention, estimator=fpr_estimator),
        "auroc": auroc(id_s, ood_s),
        "aupr_in": aupr_in(id_s, ood_s, estimator=estimator),
        "aupr_out": aupr_out(id_s, ood_s, estimator=estimator),
    }


def ood_metrics(
    id_scores,
    ood_scores,
    *,
    convention: str = "id_positive",
    estimator: str = "trapezoid",
    fpr_estimator: str | None = None,
    bootstrap: int = 0,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, float | list[float]]:
    """FPR@95, AUROC, AUPR-In and AUPR-Out, optionally with bootstrap confidence intervals.

    Args:
        id_scores: ``[N_id]`` ID scores.
        ood_scores: ``[N_ood]`` OoD scores.
        convention: FPR@95 convention, ``"id_positive"`` or ``"ood_positive"``.
        estimator: AUPR estimator, ``"trapezoid"`` or ``"ap"``.
        fpr_estimator: FPR@95 estimator, ``"interp"`` or ``"threshold"`` (default: the
            convention's own, :func:`fpr95_estimator`).
        bootstrap: Number of bootstrap resamples (0: none). ID and OoD scores are resampled
            independently with replacement (``numpy.random.default_rng(seed)``).
        ci: Central coverage of the percentile intervals, in ``(0, 1)``.
        seed: Bootstrap seed.

    Returns:
        ``{"fpr95", "auroc", "aupr_in", "aupr_out"}`` as fractions in ``[0, 1]``; with
        ``bootstrap > 0`` also ``"<metric>_ci": [lo, hi]`` for each.

    Raises:
        ValueError: Bad scores, unknown ``convention``/``estimator``/``fpr_estimator``,
            ``"interp"`` with ``"ood_positive"``, ``bootstrap`` < 0, or ``ci`` outside ``(0, 1)``.

    Example:
        >>> ood_metrics([2.0, 3.0], [0.0, 1.0])["auroc"]
        1.0
    """
    id_s = check_scores(id_scores, "id_scores")
    ood_s = check_scores(ood_scores, "ood_scores")
    check_choice(convention, "convention", CONVENTIONS)
    check_choice(estimator, "estimator", ESTIMATORS)
    fpr_estimator = fpr95_estimator(convention, fpr_estimator)
    bootstrap = check_int(bootstrap, "bootstrap", minimum=0)
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1); got {ci!r}.")
    out: dict[str, float | list[float]] = dict(
        _all_metrics(id_s, ood_s, convention, estimator, fpr_estimator)
    )
    if bootstrap:
        rng = np.random.default_rng(seed)
        draws = {key: [] for key in list(out)}
        for _ in range(bootstrap):
            bi = id_s[rng.integers(0, id_s.size, id_s.size)]
            bo = ood_s[rng.integers(0, ood_s.size, ood_s.size)]
            for key, value in _all_metrics(bi, bo, convention, estimator, fpr_estimator).items():
                draws[key].append(value)
        lo, hi = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
        for key, values in draws.items():
            out[f"{key}_ci"] = [float(v) for v in np.percentile(values, [lo, hi])]
    return out


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def add_group_means(
    ood: Mapping[str, Mapping[str, float]], groups: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, float]]:
    """Add ``<group>_mean`` entries: plain means over the OoD sets of each group (as OpenOOD).

    Args:
        ood: ``{ood_set: {metric: value}}`` for one model and one score.
        groups: ``{group: [ood_set, ...]}``, e.g. ``{"near": [...], "far": [...]}``.

    Returns:
        A copy of ``ood`` with ``near_mean``, ``far_mean``, ... added; each holds every number
        metric that all the group's sets share (lists such as ``auroc_ci`` are skipped).

    Raises:
        KeyError: A group names an OoD set that ``ood`` lacks (the message lists those present).
        ValueError: A group is empty.
    """
    out = {name: dict(metrics) for name, metrics in ood.items()}
    for group, sets in groups.items():
        if len(sets) == 0:
            raise ValueError(f"Group {group!r} has no OoD sets.")
        missing = [s for s in sets if s not in ood]
        if missing:
            raise KeyError(f"Group {group!r} names OoD sets {missing} not in {sorted(ood)}.")
        shared = [m for m in ood[sets[0]] if all(_is_number(ood[s].get(m)) for s in sets)]
        out[f"{group}_mean"] = {m: float(np.mean([ood[s][m] for s in sets])) for m in shared}
    return out
