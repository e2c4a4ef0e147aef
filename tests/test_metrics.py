"""OoD metrics against scikit-learn, hand-built cases with ties, invariances and bad input."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from cmakit.core.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    fpr95_estimator,
    fpr_at_95_tpr,
    ood_metrics,
    roc_points,
)


def _scores(seed: int, *, ties: bool = False):
    rng = np.random.default_rng(seed)
    id_s, ood_s = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 200)
    if ties:
        id_s, ood_s = np.round(id_s, 1), np.round(ood_s, 1)
    return id_s, ood_s


def _labels(id_s, ood_s):
    return np.r_[np.ones(id_s.size), np.zeros(ood_s.size)], np.r_[id_s, ood_s]


def _paper_fpr95(id_s, ood_s, level=0.95):
    """The CMA code's estimator, computed independently: sklearn's ROC curve (its defaults)."""
    y, s = _labels(np.asarray(id_s, float), np.asarray(ood_s, float))
    fpr, tpr, _ = roc_curve(y, s)
    if np.all(tpr < level):
        return 0.0
    if np.all(tpr >= level):
        return float(np.min(fpr[tpr >= level]))
    return float(np.interp(level, tpr, fpr))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_against_sklearn(seed, ties):
    id_s, ood_s = _scores(seed, ties=ties)
    y, s = _labels(id_s, ood_s)
    assert auroc(id_s, ood_s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    ap_in, ap_out = average_precision_score(y, s), average_precision_score(1 - y, -s)
    assert aupr_in(id_s, ood_s, estimator="ap") == pytest.approx(ap_in, abs=1e-12)
    assert aupr_out(id_s, ood_s, estimator="ap") == pytest.approx(ap_out, abs=1e-12)
    p, r, _ = precision_recall_curve(y, s)
    assert aupr_in(id_s, ood_s) == pytest.approx(auc(r, p), abs=1e-12)
    p, r, _ = precision_recall_curve(1 - y, -s)
    assert aupr_out(id_s, ood_s) == pytest.approx(auc(r, p), abs=1e-12)
    # ID positive: the paper's interpolation by default; the threshold rule = first ROC point
    # with TPR >= 0.95; OoD positive (OpenOOD): the threshold rule on -s
    assert fpr_at_95_tpr(id_s, ood_s) == pytest.approx(_paper_fpr95(id_s, ood_s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    got = fpr_at_95_tpr(id_s, ood_s, estimator="threshold")
    assert got == pytest.approx(fpr[np.argmax(tpr >= 0.95)])
    # exact threshold; OpenOOD's call keeps roc_curve's default drop_intermediate=True, which
    # can skip the crossing point on an evenly stepped diagonal stretch (only with ties)
    fpr, tpr, _ = roc_curve(1 - y, -s, drop_intermediate=False)
    got = fpr_at_95_tpr(id_s, ood_s, convention="ood_positive")
    assert got == pytest.approx(fpr[np.argmax(tpr >= 0.95)])


def test_fpr_hand_built_with_ties():
    id_s = np.arange(1.0, 21.0)  # 20 ID scores; 95% = 19 of them are >= 2
    ood_s = np.array([0.0, 1.9, 2.0, 2.0, 30.0])
    fpr = functools.partial(fpr_at_95_tpr, estimator="threshold")
    assert fpr(id_s, ood_s) == pytest.approx(3 / 5)  # 2.0, 2.0, 30.0 accepted
    assert fpr(id_s, ood_s, tpr=1.0) == pytest.approx(4 / 5)  # t = 1 accepts 1.9
    assert fpr(id_s, ood_s, tpr=0.5) == pytest.approx(1 / 5)  # t = 11
    # the paper's interpolation: TPR = 0.95 is an exact count (19 of 20), so np.interp returns
    # the far end of the flat run at TPR 0.95, which also accepts 1.9
    assert fpr_at_95_tpr(id_s, ood_s) == pytest.approx(4 / 5) == _paper_fpr95(id_s, ood_s)
    # OoD positive: 5 OoD scores, 95% -> all 5 must be <= t, so t = 30 and every ID is rejected
    assert fpr_at_95_tpr(id_s, ood_s, convention="ood_positive") == 1.0
    assert fpr_at_95_tpr(id_s, ood_s, convention="ood_positive", tpr=0.8) == pytest.approx(2 / 20)
    tied = np.full(10, 0.5)  # one ROC segment from (0, 0) to (1, 1): interpolated, not 1
    assert fpr(tied, tied) == 1.0 and auroc(tied, tied) == 0.5
    assert fpr_at_95_tpr(tied, tied) == pytest.approx(0.95) == _paper_fpr95(tied, tied)


def test_fpr_exact_count_returns_the_far_end_of_the_flat_run():
    # 40 ID / 40 OoD; 95% of ID = 38 scores >= 10, 31 OoD scores >= 10, then 4 OoD scores
    # before the 39th ID score: the threshold rule says 31/40, the paper's np.interp 35/40
    id_s = np.r_[np.arange(10.0, 48.0), 0.1, 0.2]
    ood_s = np.r_[np.arange(31) + 10.5, [5.0, 6.0, 7.0, 8.0], -np.arange(1.0, 6.0)]
    assert fpr_at_95_tpr(id_s, ood_s, estimator="threshold") == pytest.approx(0.775)
    assert fpr_at_95_tpr(id_s, ood_s) == pytest.approx(0.875)
    assert _paper_fpr95(id_s, ood_s) == pytest.approx(0.875)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fpr_interpolates_scores_tied_at_one_decimal(seed):
    # scores rounded to 0.1, as saturated NegLabel scores are: the paper's estimator interpolates
    # along each tie's diagonal ROC segment, so it never exceeds the threshold rule
    rng = np.random.default_rng(seed)
    id_s = np.round(rng.beta(5, 2, 5436), 1)
    ood_s = np.round(rng.beta(2, 2, 5115), 1)
    paper = fpr_at_95_tpr(id_s, ood_s)
    assert paper == pytest.approx(_paper_fpr95(id_s, ood_s), abs=1e-12)
    threshold = fpr_at_95_tpr(id_s, ood_s, estimator="threshold")
    assert paper < threshold
    assert paper * ood_s.size != pytest.approx(round(paper * ood_s.size))  # fractional count


def test_fpr_edge_branches_and_roc_points_match_sklearn():
    id_s, ood_s = _scores(7, ties=True)
    fpr, tpr = roc_points(id_s, ood_s)
    ref_fpr, ref_tpr, _ = roc_curve(*_labels(id_s, ood_s))
    np.testing.assert_array_equal(fpr, ref_fpr)
    np.testing.assert_array_equal(tpr, ref_tpr)
    # TPR = 1 is first reached near the end of the curve
    assert fpr_at_95_tpr(id_s, ood_s, tpr=1.0) == pytest.approx(_paper_fpr95(id_s, ood_s, 1.0))
    assert fpr_at_95_tpr([1.0], [0.0]) == 0.0  # perfect separation


def test_known_values_perfect_and_reversed():
    id_s, ood_s = np.array([2.0, 3.0, 4.0]), np.array([0.0, 1.0])
    m = ood_metrics(id_s, ood_s)
    assert m == {"fpr95": 0.0, "auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0}
    assert fpr_at_95_tpr(id_s, ood_s, convention="ood_positive") == 0.0
    assert auroc(ood_s, id_s) == 0.0 and fpr_at_95_tpr(ood_s, id_s) == 1.0
    assert auroc([1.0, 2.0], [0.0, 2.0]) == pytest.approx(0.625)  # the tie counts half


_METRICS = {
    "fpr95_id": lambda a, b: fpr_at_95_tpr(a, b),
    "fpr95_id_threshold": lambda a, b: fpr_at_95_tpr(a, b, estimator="threshold"),
    "fpr95_ood": lambda a, b: fpr_at_95_tpr(a, b, convention="ood_positive"),
    "auroc": auroc,
    "aupr_in": aupr_in,
    "aupr_out": aupr_out,
    "aupr_in_ap": lambda a, b: aupr_in(a, b, estimator="ap"),
    "aupr_out_ap": lambda a, b: aupr_out(a, b, estimator="ap"),
}


@pytest.mark.parametrize("name", sorted(_METRICS))
def test_every_metric_invariances(name):
    fn = _METRICS[name]
    id_s, ood_s = _scores(3, ties=True)
    base = fn(id_s, ood_s)
    assert isinstance(base, float) and 0.0 <= base <= 1.0
    rng = np.random.default_rng(0)
    assert fn(rng.permutation(id_s), rng.permutation(ood_s)) == pytest.approx(base, abs=1e-12)
    assert fn(3 * id_s - 7, 3 * ood_s - 7) == pytest.approx(base, abs=1e-12)  # monotone map
    assert fn(np.exp(id_s), np.exp(ood_s)) == pytest.approx(base, abs=1e-12)
    assert fn(list(id_s), torch.from_numpy(ood_s)) == pytest.approx(base, abs=1e-12)


def test_auroc_swap_symmetry_and_conventions_agree_on_symmetric_data():
    id_s, ood_s = _scores(4)
    assert auroc(id_s, ood_s) == pytest.approx(1 - auroc(ood_s, id_s))
    assert aupr_out(id_s, ood_s) == pytest.approx(aupr_in(-ood_s, -id_s))
    # mirrored populations: both FPR95 conventions' threshold rules coincide
    x = np.random.default_rng(5).normal(size=400)
    a, b = 1.0 + x, -1.0 - x
    got = fpr_at_95_tpr(a, b, estimator="threshold")
    assert got == pytest.approx(fpr_at_95_tpr(a, b, convention="ood_positive"))


def test_fpr_estimator_defaults_per_convention_and_reach_ood_metrics():
    assert fpr95_estimator("id_positive") == "interp"
    assert fpr95_estimator("ood_positive") == "threshold"
    id_s, ood_s = _scores(8, ties=True)
    assert ood_metrics(id_s, ood_s)["fpr95"] == fpr_at_95_tpr(id_s, ood_s)
    got = ood_metrics(id_s, ood_s, fpr_estimator="threshold")["fpr95"]
    assert got == fpr_at_95_tpr(id_s, ood_s, estimator="threshold")


def test_bootstrap_intervals():
    id_s, ood_s = _scores(6)
    m = ood_metrics(id_s, ood_s, bootstrap=50, seed=1)
    for key in ("fpr95", "auroc", "aupr_in", "aupr_out"):
        lo, hi = m[f"{key}_ci"]
        assert 0 <= lo <= m[key] <= hi <= 1 and lo < hi
    assert m == ood_metrics(id_s, ood_s, bootstrap=50, seed=1)
    assert m["auroc_ci"] != ood_metrics(id_s, ood_s, bootstrap=50, seed=2)["auroc_ci"]
    assert "auroc_ci" not in ood_metrics(id_s, ood_s)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: auroc([], [1.0]), "id_scores must be non-empty"),
        (lambda: auroc([1.0, np.nan], [1.0]), r"id_scores contains 1 non-finite .* index 1"),
        (lambda: aupr_in([1.0], [np.inf]), "ood_scores contains 1 non-finite"),
        (lambda: auroc(np.ones((2, 2)), [1.0]), r"id_scores must be 1-D"),
        (lambda: auroc(["a"], [1.0]), "id_scores must hold real numbers"),
        (
            lambda: fpr_at_95_tpr([1.0], [0.0], convention="openood"),
            r"Unknown convention 'openood'; choose one of \['id_positive', 'ood_positive'\]",
        ),
        (lambda: fpr_at_95_tpr([1.0], [0.0], tpr=95), r"tpr must lie in \(0, 1\]; got 95"),
        (lambda: aupr_out([1.0], [0.0], estimator="auc"), "Unknown estimator 'auc'"),
        (lambda: fpr_at_95_tpr([1.0], [0.0], estimator="roc"), "Unknown estimator 'roc'"),
        (
            lambda: fpr_at_95_tpr([1.0], [0.0], convention="ood_positive", estimator="interp"),
            "ood_positive .* uses estimator='threshold'",
        ),
        (lambda: ood_metrics([1.0], [0.0], bootstrap=-1), "bootstrap must be >= 0"),
        (lambda: ood_metrics([1.0], [0.0], ci=95), r"ci must lie in \(0, 1\)"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
