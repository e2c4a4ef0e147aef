"""The notebooks' computed sentences: the words follow the numbers, on any run."""

from __future__ import annotations

import pytest

from cmakit.report import narrative, prose


def test_the_verb_of_a_comparison_flips_with_the_sign():
    assert prose.compare(0.8311, 0.8501) == "below" and prose.compare(0.8501, 0.8311) == "above"
    assert prose.change(0.834, 0.843, scale=100) == "rises from 83.40 to 84.30"
    assert prose.change(0.843, 0.834, scale=100) == "falls from 84.30 to 83.40"


def test_numpy_scalars_from_tables_compare_as_floats():
    import numpy as np

    assert prose.compare(np.float64(0.8311), np.float64(0.8501)) == "below"
    assert prose.change(np.float32(1.5), np.float64(0.5)) == "falls from 1.50 to 0.50"


def test_values_that_print_the_same_are_level():
    """A sentence never contradicts the table: 85.201 and 85.204 both print as 85.20."""
    assert prose.compare(85.201, 85.204) == "level with"
    assert prose.change(0.85201, 0.85204, scale=100) == "stays at 85.20"
    assert prose.compare(85.201, 85.204, digits=3) == "below"


def test_a_trend_is_called_monotonic_only_when_it_is():
    assert prose.trend([0.0513, 0.0490, 0.0465]) == "stays at 0.05"  # as two digits print it
    assert (
        prose.trend([0.0513, 0.0490, 0.0465], digits=4)
        == "falls monotonically from 0.0513 to 0.0465"
    )
    assert prose.trend([0.1, 0.2, 0.2], digits=1) == "rises monotonically from 0.1 to 0.2"
    rising_at_the_end = prose.trend([0.0700, 0.0465, 0.0513], digits=4)
    assert rising_at_the_end.startswith("does not move monotonically")
    assert "lowest at 0.0465 and highest at 0.0700" in rising_at_the_end
    assert prose.trend([1.0, 1.0]) == "stays at 1.00"
    assert prose.trend([0.9, 0.1]) == "falls from 0.90 to 0.10"  # two values: no "monotonically"
    with pytest.raises(ValueError, match="at least two"):
        prose.trend([1.0])


def test_numbers_print_with_a_true_minus_and_parameters_as_typed():
    assert prose.number(-0.31114, 4) == "−0.3111" and prose.number(-0.00001, 2) == "0.00"
    assert prose.percent(0.83114) == "83.11"
    assert [prose.plain(x) for x in (0.1, 1.0, 0.001)] == ["0.1", "1", "0.001"]
    assert prose.count(1, "seed") == "one seed" and prose.count(3, "seed") == "three seeds"
    assert prose.join(["a"]) == "a" and prose.join(["a", "b", "c"]) == "a, b and c"
    assert prose.span([0.99, 1.0, 0.995], digits=2) == "0.99–1.00"


def test_declared_constants_hold_the_paper_tables_and_the_recipe():
    constants = prose.declared_constants()
    assert {66.60, 82.58, 82.64, 19.93, 26.39, 27.97} <= constants  # Tables 1 and 3
    assert {0.001, 100.0, 0.01, 95.0, 50.0} <= constants
    assert 68.0 not in constants and 20.28 not in constants


def _curves(zs, flyp, cma):
    return {m: {"shift": [0.0, 0.5, 1.0], "auroc": list(a)}
            for m, a in (("zero_shot", zs), ("flyp", flyp), ("cma", cma))}  # fmt: skip


def test_the_gap_shift_conclusion_says_which_way_cma_went():
    """The issue's case: CMA 83.11 against FLYP 85.01 must read "below", never "lifts"."""
    below = narrative.gap_shift_conclusion(_curves([0.99] * 3, [0.8501] * 3, [0.8311] * 3))
    assert "leaves it below FLYP's at α = 0 (83.11 against 85.01)" in below
    above = narrative.gap_shift_conclusion(_curves([0.99] * 3, [0.834, 0.84, 0.843], [0.852] * 3))
    assert "leaves it above FLYP's" in above and "FLYP rises from 83.40 to 84.30" in above
    assert "CMA stays at 85.20" in above and "training moved it more" in above
    flat = narrative.gap_shift_conclusion(_curves([0.5] * 3, [0.49, 0.5, 0.53], [0.5] * 3))
    assert (
        "near chance" in flat and "hand-made shift of FLYP's embeddings moved it at least" in flat
    )


def _summary(acc, far, near, mcm, seeds=(0, 1, 2)):
    methods = {}
    for k, m in enumerate(("zero_shot", "flyp", "cma")):
        methods[m] = {
            "id_accuracy": acc[k],
            "ood": {
                "neglabel": {"far_mean": {"auroc": far[k]}, "near_mean": {"auroc": near[k]}},
                "mcm": {"far_mean": {"auroc": mcm[k]}},
            },
        }
    return {"seeds": list(seeds), "methods": methods}


def test_the_headline_quotes_the_tables_and_its_verbs_follow_them():
    text = narrative.headline(
        _summary([0.7173, 0.8537, 0.8533], [0.9924, 0.8190, 0.8188], [0.786, 0.655, 0.648],
                 [0.70, 0.6745, 0.6988]),
        0.1,
    )  # fmt: skip
    assert "three seeds" in text and "λ = 0.1, not the paper's 0.001" in text
    assert "FLYP 85.37 (above zero-shot), CMA 85.33 (above zero-shot); CMA is below FLYP" in text
    assert "MCM, far-OoD AUROC: CMA 69.88 is above FLYP 67.45" in text
    assert "zero-shot 99.24; FLYP 81.90 (below zero-shot), CMA 81.88 (below zero-shot)" in text
    paper = narrative.headline(_summary([0.5] * 3, [0.5] * 3, [0.5] * 3, [0.5] * 3, (0,)), 0.001)
    assert "one seed" in paper and "the paper's λ" in paper and "near chance" in paper


def test_the_paper_headline_quotes_the_papers_tables():
    text = narrative.paper_headline()
    assert "from 66.60 (zero-shot) to 82.58 (FLYP) and 82.64 (CMA)" in text
    assert "CMA + NegLabel 19.93, FLYP + NegLabel 26.39, zero-shot NegLabel 27.97" in text


def test_the_scored_handful_says_whether_ood_scores_drop():
    """The issue's case: every OoD example scoring 0.99-1.00 must not read "the score drops"."""
    none = narrative.scored_handful([0.99, 1.0, 0.995, 0.999, 1.0], ["ID"] * 3 + ["a", "b"])
    assert "OoD images 0.999–1.000" in none and "none of the OoD images shown scores below" in none
    assert "scores below every ID image" not in none
    all_ = narrative.scored_handful([0.98, 0.97, 0.2, 0.1], ["ID", "ID", "a", "b"])
    assert "every OoD image shown scores below every ID image" in all_
    some = narrative.scored_handful([0.98, 0.97, 0.2, 0.99], ["ID", "ID", "a", "b"])
    assert "some of the OoD images shown score below every ID image, the others do not" in some


def test_the_ablation_notice_calls_a_rising_gap_rising():
    """The issue's case: a gap rising from 0.0465 to 0.0513 at λ = 1 is not "monotonic"."""
    rows = [
        {"lam": 0.0, "modality_gap": 0.9, "id_accuracy": 0.85, "neglabel_fpr95": 0.7},
        {"lam": 0.1, "modality_gap": 0.0465, "id_accuracy": 0.85, "neglabel_fpr95": 0.6},
        {"lam": 1.0, "modality_gap": 0.0513, "id_accuracy": 0.1, "neglabel_fpr95": 0.9},
    ]
    text = narrative.ablation_notice(rows, {"neglabel_fpr95": 0.5}, lam=0.1, n_seeds=1)
    assert "the gap does not move monotonically" in text and "one seed" in text
    assert "At λ = 1, where" in text and "ID accuracy is 0.1000, below FLYP's 0.8500" in text
    assert "no λ of the grid gets a lower NegLabel FPR95 than the zero-shot model (0.5000)" in text
    text = narrative.ablation_notice(rows[:2], {"neglabel_fpr95": 0.65}, lam=0.1, n_seeds=3)
    assert "the gap falls from 0.9000 to 0.0465" in text
    assert "one λ of the grid gets a lower" in text and "three seeds" in text
    assert "The grid stops before λ = 1" in text


def test_the_geometry_notice_places_this_runs_alignment_against_the_papers():
    """The issue's case: CMA's align_id of 0.093 is not "of order 1 or more"."""

    def summary(*aligns):
        return {"methods": {m: {"geometry": {"align_id": a, "align_ood": a}}
                            for m, a in zip(("zero_shot", "flyp", "cma"), aligns, strict=True)}}  # fmt: skip

    mixed = narrative.geometry_scale(summary(1.9, 1.7, 0.093))
    assert "this run's span 0.093–1.900, partly inside the paper's range" in mixed
    assert "of order 1" not in mixed
    assert "all outside" in narrative.geometry_scale(summary(1.9, 1.7, 1.2))


def test_the_batch_notice_reads_the_contrastive_term_against_log_b():
    import pandas as pd

    from cmakit.report import narrative_training

    def terms(contrastive):
        cols = ["flyp (λ = 0)", "cma (λ = 0.1)", "paper (λ = 0.001)"]
        return pd.DataFrame({c: {"contrastive_loss": contrastive, "cma_loss": -x,
                                 "log B (contrastive term at chance)": 3.4657}
                             for c, x in zip(cols, (0.0, 0.3111, 0.0031), strict=True)})  # fmt: skip

    at_chance = narrative_training.batch_terms_notice(terms(3.4682), scale=13.96, lam=0.1)
    assert "3.4682, above `log B` = 3.4657" in at_chance and "does not yet match" in at_chance
    assert "λ = 0.001 it is −0.0031" in at_chance and "λ = 0.1 it is −0.3111" in at_chance
    trained = narrative_training.batch_terms_notice(terms(2.1), scale=20.28, lam=0.1)
    assert "below `log B`" in trained and "already matches" in trained and "20.28" in trained


def test_the_logit_scale_notice_follows_each_run():
    from cmakit.report import narrative_training

    history = {"flyp": [{"logit_scale": 14.0}, {"logit_scale": 13.0}],
               "cma": [{"logit_scale": 14.0}, {"logit_scale": 16.0}]}  # fmt: skip
    ends = narrative_training.endpoints(history, ["logit_scale"])
    text = narrative_training.logit_scale_notice(ends)
    assert "FLYP's logit scale falls from 14.0000 to 13.0000 and CMA's rises" in text
    history["cma"][1]["logit_scale"] = 12.0
    assert "CMA's falls from" in narrative_training.logit_scale_notice(
        narrative_training.endpoints(history, ["logit_scale"])
    )


def test_the_toy_ood_notice_says_where_neglabel_beats_mcm():
    import pandas as pd

    from cmakit.report import narrative_toy

    rows = [{"λ": lam, "draw": d, "NegLabel AUROC": neg + 0.01 * d, "NegLabel FPR95": 0.7,
             "MCM AUROC": mcm} for lam, neg, mcm in ((0.0, 0.67, 0.6), (0.05, 0.76, 0.6))
            for d in (0, 1)]  # fmt: skip
    text = narrative_toy.toy_ood_notice(pd.DataFrame(rows), lam=0.05)
    assert "mean AUROC rises from 0.675 to 0.765" in text and "at every λ" in text
    assert "the same λ gives the best NegLabel AUROC in every draw" in text
    for row in rows:
        row["MCM AUROC"] = 0.9
    assert "at no λ" in narrative_toy.toy_ood_notice(pd.DataFrame(rows), lam=0.05)


def test_the_geometry_notice_names_what_is_missed_as_the_table_shows_it():
    from cmakit.core.geometry import geometry_targets
    from cmakit.report.narrative_training import geometry_notice, geometry_table

    rows = geometry_targets({"logit_scale": 82.64, "modality_gap": 0.43, "id_accuracy": 0.542})
    table = geometry_table(rows)
    assert (
        table.loc["modality_gap", "measured"] == "0.43" and table.loc["logit_scale", "met"] == "yes"
    )
    text = geometry_notice(rows)
    assert "`modality_gap` measures 0.43" in text and "`id_accuracy` measures 0.542" in text
    assert "logit_scale" not in text  # met: not named
    met = geometry_targets({"logit_scale": 82.64, "modality_gap": 0.6})
    assert "meets every target measured here:" in geometry_notice(met)
