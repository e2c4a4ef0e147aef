"""The one evaluator against hand-computed values, and table cells against the summary."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmakit.engine.bundle import EmbeddingBundle
from cmakit.engine.evaluate import ScoreSettings, evaluate, ood_results, shift_bundle


def _unit(*rows):
    x = np.asarray(rows, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture()
def bundle():
    """Two ID classes on the x and y axes, one negative label on z, two small OoD sets."""
    id_texts = _unit([1, 0, 0], [0, 1, 0])
    neg = _unit([0, 0, 1])
    id_images = _unit([1, 0.1, 0], [0.9, 0.3, 0.1], [0.1, 1, 0], [0.2, 0.8, 0.4])
    return EmbeddingBundle(
        id_images=id_images, id_labels=np.array([0, 0, 1, 0]), id_texts=id_texts, neg_texts=neg,
        logit_scale=10.0,
        ood={"near": _unit([0.6, 0.6, 0.5], [0.5, 0.2, 0.8]), "far": _unit([0.1, 0.1, 1.0])},
    )  # fmt: skip


def _mcm(x, t, temp):
    logits = (x.astype(np.float64) @ t.T.astype(np.float64)) / temp
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).max(1)


def _neglabel(x, t, n, tau):
    logits = x.astype(np.float64) @ np.concatenate([t, n]).T.astype(np.float64) / tau
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p[:, : len(t)].sum(1)


def _auroc(id_s, ood_s):
    """Probability that an ID score beats an OoD score (ties count half), by brute force."""
    wins = sum((a > b) + 0.5 * (a == b) for a in id_s for b in ood_s)
    return wins / (len(id_s) * len(ood_s))


def test_record_against_hand_computed_values(bundle):
    settings = ScoreSettings(mcm_temperature=0.5, neglabel_temperature=0.1, neglabel_groups=1,
                             groups={"all": ["near", "far"]}, scores=("mcm", "neglabel", "msp"))  # fmt: skip
    rec = evaluate(bundle, settings)
    # ID accuracy: image 3 ([0.2, 0.8, 0.4]) is labelled 0 but nearest to class 1
    assert rec["id_accuracy"] == pytest.approx(0.75)
    gap = np.linalg.norm(bundle.id_images.mean(0) - bundle.id_texts.mean(0))
    assert rec["modality_gap"] == pytest.approx(gap, rel=1e-5)
    for name, x in bundle.ood.items():
        mcm = _auroc(_mcm(bundle.id_images, bundle.id_texts, 0.5), _mcm(x, bundle.id_texts, 0.5))
        neg = _auroc(_neglabel(bundle.id_images, bundle.id_texts, bundle.neg_texts, 0.1),
                     _neglabel(x, bundle.id_texts, bundle.neg_texts, 0.1))  # fmt: skip
        assert rec["ood"]["mcm"][name]["auroc"] == pytest.approx(mcm)
        assert rec["ood"]["neglabel"][name]["auroc"] == pytest.approx(neg)
    both = rec["ood"]["neglabel"]
    assert both["all_mean"]["auroc"] == pytest.approx(
        (both["near"]["auroc"] + both["far"]["auroc"]) / 2
    )
    # MSP reads the model's own logits s * cos: at s = 10 it differs from MCM at T = 0.5
    assert rec["ood"]["msp"]["near"]["auroc"] == pytest.approx(
        _auroc(
            _mcm(bundle.id_images, bundle.id_texts, 0.1),
            _mcm(bundle.ood["near"], bundle.id_texts, 0.1),
        )
    )


def test_settings_reach_the_scores(bundle):
    """A temperature in the settings changes the numbers (no hidden default wins)."""
    hot = ood_results(bundle, ScoreSettings(mcm_temperature=100.0, scores=("mcm",)))
    cold = ood_results(bundle, ScoreSettings(mcm_temperature=0.01, scores=("mcm",)))
    ref_hot = _auroc(
        _mcm(bundle.id_images, bundle.id_texts, 100.0),
        _mcm(bundle.ood["near"], bundle.id_texts, 100.0),
    )
    assert hot["mcm"]["near"]["auroc"] == pytest.approx(ref_hot)
    assert hot["mcm"]["near"] != cold["mcm"]["near"]


def test_convention_changes_fpr_not_auroc(bundle):
    a = ood_results(bundle, ScoreSettings(convention="id_positive", scores=("neglabel",)))
    b = ood_results(bundle, ScoreSettings(convention="ood_positive", scores=("neglabel",)))
    assert a["neglabel"]["near"]["auroc"] == pytest.approx(b["neglabel"]["near"]["auroc"])


def test_unknown_score_and_convention_are_refused():
    with pytest.raises(KeyError, match="neglabel"):
        ScoreSettings(scores=("neglable",))
    with pytest.raises(ValueError, match="ood_positive"):
        ScoreSettings(convention="ood")


def test_scores_needing_negatives_are_skipped_without_them(bundle):
    empty = bundle.replace(neg_texts=np.zeros((0, 3), np.float32))
    assert set(ood_results(empty, ScoreSettings())) == {"mcm", "msp", "energy", "max_logit"}


def test_bundle_round_trip(bundle, tmp_path):
    path = bundle.save(tmp_path / "b.npz")
    back = EmbeddingBundle.load(path)
    assert back.sizes() == bundle.sizes() and list(back.ood) == ["near", "far"]
    np.testing.assert_array_equal(back.ood["far"], bundle.ood["far"])
    assert back.logit_scale == pytest.approx(10.0)


def test_gap_shift_closes_the_centroid_gap_before_renormalising(bundle):
    shifted = shift_bundle(bundle, 1.0)
    before = np.linalg.norm(bundle.id_images.mean(0) - bundle.id_texts.mean(0))
    after = np.linalg.norm(shifted.id_images.mean(0) - shifted.id_texts.mean(0))
    assert after < before
    assert np.allclose(np.linalg.norm(shifted.ood["near"], axis=1), 1.0, atol=1e-5)


def test_every_table_cell_equals_its_summary_value():
    from cmakit.report.summary import build_summary
    from cmakit.report.tables import benchmark_table

    rng = np.random.default_rng(0)
    sets = ["near_a", "far_a", "far_b"]

    def record():
        per = {s: {m: float(rng.uniform()) for m in ("fpr95", "auroc", "aupr_in", "aupr_out")}
               for s in sets}  # fmt: skip
        return {"id_accuracy": float(rng.uniform()), "modality_gap": 0.3, "geometry": {},
                "ood": {"neglabel": per}}  # fmt: skip

    groups = {"near": ["near_a"], "far": ["far_a", "far_b"]}
    summary = build_summary("smoke", [0, 1], {"flyp": [record(), record()]}, [], {},
                            "id_positive", groups=groups)  # fmt: skip
    table = benchmark_table(summary, score_keys=["neglabel"], groups=groups, metrics=("auroc",))
    node = summary["methods"]["flyp"]["ood"]["neglabel"]
    row = table.iloc[0]
    checked = 0
    for column, cell in row.items():
        if column == "method" or not isinstance(cell, str) or "±" not in cell:
            continue
        block, metric = column.rsplit("_", 1)
        key = {"near": "near_mean", "far": "far_mean"}.get(block, block)
        if key == "average":
            values = np.mean([node[s][f"{metric}_per_seed"] for s in sets], axis=0)
        elif key == "id":
            values = np.asarray(summary["methods"]["flyp"]["id_accuracy_per_seed"])
        else:
            values = np.asarray(node[key][f"{metric}_per_seed"])
        mean, std = (float(x) for x in cell.split("±"))
        assert mean == pytest.approx(100 * values.mean(), abs=0.006), column
        assert std == pytest.approx(100 * values.std(ddof=1), abs=0.006), column
        checked += 1
    assert checked == len(row) - 1 and not math.isnan(checked)
