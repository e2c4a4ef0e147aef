"""Tests of the reporting layer: seed aggregation, summary schema, paper-layout tables, writers."""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from cmakit.report.paper_reference import paper_table
from cmakit.report.summary import (
    OOD_METRICS,
    add_group_means,
    aggregate_ablation,
    aggregate_seeds,
    build_summary,
    validate_summary,
)
from cmakit.report.tables import (
    OURS_LABEL,
    PAPER_LABEL,
    benchmark_table,
    format_mean_std,
    geometry_table,
    id_accuracy_table,
    paper_beside,
)
from cmakit.report.writers import latex_escape, to_latex, to_markdown, write_table

MOS_SETS = ["inaturalist", "sun", "places", "textures"]
GROUPS = {"near": ["ssb_hard", "ninco"], "far": ["inaturalist", "textures", "openimage_o"]}
SCORES = ["mcm", "neglabel", "neglabel_grouped"]
METHODS = ["zero_shot", "flyp", "cma"]
SEEDS = [0, 1, 2]


def _value(method: int, score: int, ood_set: int, metric: int, seed: int) -> float:
    """A distinct fraction in (0, 1) for every cell, so any mix-up shows."""
    return 0.05 + 0.01 * (7 * method + 3 * score + ood_set) + 0.002 * metric + 0.001 * seed


def _per_seed_results(sets: list[str]) -> dict[str, list[dict]]:
    out = {}
    for m, method in enumerate(METHODS):
        out[method] = [
            {
                "id_accuracy": 0.6 + 0.1 * m + 0.01 * seed,
                "modality_gap": 0.8 - 0.1 * m + 0.01 * seed,
                "geometry": {"uni_all": 1.5 + m + 0.1 * seed, "align_id": 0.02 * (m + 1)},
                "ood": {
                    score: {
                        name: {k: _value(m, s, i, j, seed) for j, k in enumerate(OOD_METRICS)}
                        for i, name in enumerate(sets)
                    }
                    for s, score in enumerate(SCORES)
                },
            }
            for seed in SEEDS
        ]
    return out


def _ablation_rows() -> list[dict]:
    return [
        {
            "lam": lam,
            "seed": seed,
            "id_accuracy": 0.8 + lam,
            "fpr95": 0.3 - lam,
            "modality_gap": 0.5,
        }
        for lam in (0.01, 0.0, 0.001)
        for seed in SEEDS
    ]


@pytest.fixture
def openood_summary() -> dict:
    sets = GROUPS["near"] + GROUPS["far"]
    return build_summary(
        "quick", SEEDS, _per_seed_results(sets), _ablation_rows(), {"train_s": 1.5},
        "ood_positive", groups=GROUPS,
    )  # fmt: skip


@pytest.fixture
def mos_summary() -> dict:
    return build_summary(
        "quick", SEEDS, _per_seed_results(MOS_SETS), _ablation_rows(), {"train_s": 1.5},
        "id_positive",
    )  # fmt: skip


# ------------------------------------------------------------------------------ aggregation


def test_aggregate_seeds_matches_numpy():
    rng = np.random.default_rng(0)
    vals = rng.uniform(size=(4, 3))
    curves = rng.uniform(size=(4, 5))
    per_seed = [
        {
            "a": vals[s, 0],
            "nest": {"b": vals[s, 1], "c": int(s)},
            "curve": list(curves[s]),
            "tag": "x",
        }
        for s in range(4)
    ]
    out = aggregate_seeds(per_seed)
    assert out["a"] == pytest.approx(vals[:, 0].mean())
    assert out["a_std"] == pytest.approx(vals[:, 0].std(ddof=1))
    assert out["a_per_seed"] == pytest.approx(list(vals[:, 0]))
    assert out["nest"]["b_std"] == pytest.approx(vals[:, 1].std(ddof=1))
    assert out["nest"]["c"] == pytest.approx(1.5)
    assert out["curve"] == pytest.approx(curves.mean(0))
    assert out["curve_std"] == pytest.approx(curves.std(0, ddof=1))
    assert np.shape(out["curve_per_seed"]) == (4, 5)
    assert out["tag"] == "x" and "tag_std" not in out
    assert aggregate_seeds(per_seed, ddof=0)["a_std"] == pytest.approx(vals[:, 0].std())


def test_aggregate_single_seed_has_zero_std():
    out = aggregate_seeds([{"a": 0.25}])
    assert out == {"a": 0.25, "a_std": 0.0, "a_per_seed": [0.25]}


@pytest.mark.parametrize(
    ("per_seed", "where"),
    [
        ([{"m": {"name": "x"}}, {"m": {"name": "y"}}], r"\$\.m\.name"),
        ([{"m": {"a": 1.0}}, {"m": {"b": 1.0}}], r"\$\.m: seed 1 has keys"),
        ([{"c": [1.0, 2.0]}, {"c": [1.0]}], r"\$\.c: curves of different lengths"),
        ([], "empty"),
    ],
)
def test_aggregate_seeds_rejects_mismatch(per_seed, where):
    with pytest.raises(ValueError, match=where):
        aggregate_seeds(per_seed)


def test_add_group_means_plain_mean_over_sets():
    ood = {
        "a": {"auroc": 0.9, "fpr95": 0.2, "auroc_ci": [0.8, 1.0]},
        "b": {"auroc": 0.7, "fpr95": 0.4, "auroc_ci": [0.6, 0.8]},
        "c": {"auroc": 0.5, "fpr95": 0.6, "auroc_ci": [0.4, 0.6]},
    }
    out = add_group_means(ood, {"near": ["a"], "far": ["b", "c"]})
    assert out["near_mean"] == {"auroc": 0.9, "fpr95": 0.2}
    assert out["far_mean"] == pytest.approx({"auroc": 0.6, "fpr95": 0.5})
    assert "near_mean" not in ood  # input untouched
    with pytest.raises(KeyError, match="'zz'"):
        add_group_means(ood, {"near": ["zz"]})
    with pytest.raises(ValueError, match="no OoD sets"):
        add_group_means(ood, {"near": []})


def test_aggregate_ablation_folds_seeds_per_lambda():
    rows = aggregate_ablation(_ablation_rows())
    assert [r["lam"] for r in rows] == [0.0, 0.001, 0.01]
    assert rows[1]["seeds"] == SEEDS
    assert rows[1]["id_accuracy"] == pytest.approx(0.801)
    assert rows[1]["fpr95_per_seed"] == pytest.approx([0.299] * 3)


# ------------------------------------------------------------------------------- summary


def test_build_summary_is_valid_json_with_group_means(openood_summary):
    validate_summary(openood_summary)
    json.dumps(openood_summary, allow_nan=False)
    node = openood_summary["methods"]["cma"]["ood"]["neglabel"]
    per_set = np.array([node[s]["auroc_per_seed"] for s in GROUPS["far"]])  # [sets, seeds]
    assert node["far_mean"]["auroc"] == pytest.approx(per_set.mean())
    assert node["far_mean"]["auroc_std"] == pytest.approx(per_set.mean(0).std(ddof=1))
    assert openood_summary["convention"] == "ood_positive"
    assert openood_summary["aupr_estimator"] == "trapezoid"


def _break(summary: dict, path: list, value) -> dict:
    broken = copy.deepcopy(summary)
    node = broken
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["methods", "cma", "ood", "mcm", "ninco", "auroc"], math.nan, r"\$\.methods\.cma\.ood\.mcm\.ninco\.auroc: .*not finite"),
        (["methods", "flyp", "ood", "neglabel", "ssb_hard", "fpr95"], KeyError, r"\$\.methods\.flyp\.ood\.neglabel\.ssb_hard\.fpr95: required key"),
        (["methods", "zero_shot", "id_accuracy"], 1.2, r"\$\.methods\.zero_shot\.id_accuracy: .*\[0, 1\]"),
        (["methods", "cma", "ood", "mcm", "ninco", "auroc_per_seed"], [0.5, 1.5, 0.5], r"auroc_per_seed\[1\]: .*\[0, 1\]"),
        (["methods", "cma", "ood", "mcm", "ninco", "auroc_per_seed"], [0.5, 0.5], r"auroc_per_seed: has 2 values for 3 seeds"),
        (["methods", "cma", "ood", "neglabel_grouped"], KeyError, r"\$\.methods\.cma\.ood\.neglabel_grouped: required"),
        (["methods", "cma", "modality_gap"], -0.1, r"\$\.methods\.cma\.modality_gap: .*>= 0"),
        (["convention"], "ood", r"\$\.convention: 'ood' is not one of"),
        (["seeds"], [], r"\$\.seeds"),
        (["timings", "train_s"], -1.0, r"\$\.timings\.train_s: .*>= 0"),
        (["ablation", 0, "lam"], -1.0, r"\$\.ablation\[0\]\.lam"),
        (["methods", "flyp", "geometry", "uni_all"], math.inf, r"\$\.methods\.flyp\.geometry\.uni_all: .*not finite"),
    ],
)  # fmt: skip
def test_validate_summary_names_the_json_path(openood_summary, path, value, message):
    with pytest.raises(ValueError, match=message):
        validate_summary(_break(openood_summary, path, value))


# -------------------------------------------------------------------------------- tables


def test_format_mean_std():
    assert format_mean_std(0.93781, 0.0042) == "93.78 ± 0.42"
    assert format_mean_std(1.5, None, digits=3, scale=1) == "1.500"
    assert format_mean_std(math.nan, 0.1) == "nan"


def test_benchmark_table_mos_layout(mos_summary):
    df = benchmark_table(mos_summary, score_keys=["mcm", "neglabel"], metrics=["fpr95", "auroc"])
    paper_cols = list(paper_table("table1_mos").columns)
    assert list(df.columns) == paper_cols + ["id_accuracy"]
    assert list(df["method"]) == [
        "ZS_MCM", "ZS_NegLabel", "FLYP_MCM", "FLYP_NegLabel", "CMA_MCM", "CMA_NegLabel",
    ]  # fmt: skip
    # CMA (m=2), neglabel (s=1), sun (i=1), auroc (j=1): 0.05+0.01*(14+3+1)+0.002 + 0.001*seed
    seeds = np.array([0.232, 0.233, 0.234])
    assert df.loc[5, "sun_auroc"] == f"{seeds.mean() * 100:.2f} ± {seeds.std(ddof=1) * 100:.2f}"
    assert df.loc[5, "sun_auroc"] == "23.30 ± 0.10"
    assert df.loc[0, "id_accuracy"] == "61.00 ± 1.00"
    assert df.attrs["convention"] == "id_positive"
    assert all(re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d", v) for v in df.iloc[:, 1:].to_numpy().ravel())


def test_benchmark_table_openood_layout_and_group_means(openood_summary):
    df = benchmark_table(
        openood_summary, score_keys=["neglabel"], groups=GROUPS, average=False,
        metrics=["fpr95", "auroc"], id_accuracy=False, methods=["cma"],
    )  # fmt: skip
    assert list(df.columns) == list(paper_table("table2_openood_v15").columns)
    node = openood_summary["methods"]["cma"]["ood"]["neglabel"]["near_mean"]
    assert df.loc[0, "near_fpr95"] == format_mean_std(node["fpr95"], node["fpr95_std"])


def test_paper_beside_keeps_blocks_apart(mos_summary):
    ours = benchmark_table(mos_summary, score_keys=["neglabel"], metrics=["fpr95", "auroc"])
    both = paper_beside(ours, "table1_mos")
    paper = paper_table("table1_mos")
    assert list(both["source"]) == [OURS_LABEL] * 3 + [PAPER_LABEL] * len(paper)
    assert list(both.columns[:2]) == ["source", "method"]
    cma = both[(both["source"] == PAPER_LABEL) & (both["method"] == "CMA_NegLabel")].iloc[0]
    # our own layout is not the paper's: its numbers stay in their own paper_* columns
    assert cma["paper_average_fpr95"] == "19.93" and cma["average_fpr95"] == "—"
    assert (both.loc[both["source"] == OURS_LABEL, "paper_average_fpr95"] == "—").all()
    assert both.attrs["convention"] == "id_positive"


def test_geometry_and_id_accuracy_tables(mos_summary):
    geo = geometry_table(mos_summary)
    ours = geo[geo["source"] == OURS_LABEL]
    assert list(ours["method"]) == ["ZS", "FLYP", "CMA"]
    assert ours.iloc[2]["uni_all"] == "3.600 ± 0.100"
    assert ours.iloc[0]["uni_cm"] == "—"  # not in this summary's geometry
    assert ours.iloc[0]["modality_gap"] == "0.810 ± 0.010"
    assert (geo["source"] == PAPER_LABEL).sum() == len(paper_table("table4_geometry"))
    assert "paper_align_id" in geo.columns and "paper_uni_all" in geo.columns
    assert (geo.loc[geo["source"] == PAPER_LABEL, "align_id"] == "—").all()
    assert any("align_id = mean ||x - t_y||^2" in note for note in geo.attrs["notes"])
    assert any("different quantity" in note for note in geo.attrs["notes"])
    acc = paper_beside(id_accuracy_table(mos_summary), "table3_id_accuracy")  # not ImageNet
    assert acc.loc[acc["method"] == "CMA", "paper_id_accuracy"].tolist() == ["—", "82.64"]
    paper_run = paper_beside(id_accuracy_table({**mos_summary, "profile": "paper"}),
                             "table3_id_accuracy")  # fmt: skip
    assert paper_run.loc[paper_run["method"] == "CMA", "id_accuracy"].tolist() == [
        "81.00 ± 1.00", "82.64",
    ]  # fmt: skip


# ------------------------------------------------------------------------------- writers


def _md_tables(text: str) -> list[list[str]]:
    blocks, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    return blocks


def test_write_table_markdown_latex_csv(tmp_path, openood_summary):
    ours = benchmark_table(openood_summary, score_keys=SCORES, groups=GROUPS, average=False)
    df = paper_beside(ours, "table2_openood_v15")
    paths = write_table(df, tmp_path / "t2", caption="OpenOOD v1.5 layout (ours vs paper)")
    assert sorted(p.suffix for p in paths.values()) == [".csv", ".md", ".tex"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left

    md = paths["md"].read_text()
    assert "ood_positive" in md and "trapezoid" in md and f"*{PAPER_LABEL} (reference)*" in md
    assert "FPR95 estimator threshold" in md
    ours_md, paper_md = _md_tables(md)
    assert len(ours_md) == 2 + len(ours) and len(paper_md) == 2 + len(
        paper_table("table2_openood_v15")
    )
    assert re.fullmatch(r"\| --- (\| ---: )+\|", ours_md[1])
    assert {line.count("|") for line in ours_md} == {len(ours.columns) + 1}
    assert "aupr_in" not in paper_md[0]  # the paper block shows only the columns it has

    tex = paths["tex"].read_text()
    assert tex.count(r"\begin{tabular}") == 2 == tex.count(r"\bottomrule") == tex.count(r"\toprule")
    rows = [ln for ln in tex.splitlines() if ln.endswith(r"\\")]
    assert len(rows) == 2 + len(df)  # two header rows plus every data row
    assert rows[0].count("&") == len(ours.columns) - 1
    assert r"$\pm$" in tex and "OpenOOD v1.5" in tex

    back = pd.read_csv(paths["csv"], comment="#")
    assert back.shape == df.shape and list(back.columns) == list(df.columns)
    assert paths["csv"].read_text().startswith("# OpenOOD v1.5 layout")


def test_markdown_and_latex_escaping():
    df = pd.DataFrame({"method": ["m²-mix|x"], "a_b": ["1.00 ± 0.10"]})
    assert to_markdown(df).splitlines()[2] == r"| m²-mix\|x | 1.00 ± 0.10 |"
    assert latex_escape("50% of a_b & $x#{}") == r"50\% of a\_b \& \$x\#\{\}"
    assert r"m$^2$-mix" in to_latex(df)


def test_write_table_requires_a_known_convention(tmp_path):
    df = pd.DataFrame({"method": ["x"], "a_auroc": ["90.00"]})
    with pytest.raises(ValueError, match="convention=None"):
        write_table(df, tmp_path / "t", caption="c")
    write_table(df, tmp_path / "t", caption="c", convention="ood_positive")
    assert "OpenOOD v1.5" in (tmp_path / "t.md").read_text()


def test_benchmark_table_skips_absent_scores_and_rejects_unknown(mos_summary):
    summary = copy.deepcopy(mos_summary)
    del summary["methods"]["zero_shot"]["ood"]["neglabel"]
    df = benchmark_table(summary, score_keys=["neglabel"])
    assert list(df["method"]) == ["FLYP_NegLabel", "CMA_NegLabel"]
    with pytest.raises(KeyError, match="'energy'"):
        benchmark_table(summary, score_keys=["energy"])


def test_paper_profile_labels_our_block_by_its_data(mos_summary):
    summary = {**mos_summary, "profile": "paper"}
    both = paper_beside(id_accuracy_table(summary), "table3_id_accuracy")
    assert both["source"].iloc[0] == "ours (ImageNet-1k, ViT-B/16)"
    assert any("Table 3" in note and "CVPR 2025" in note for note in both.attrs["notes"])


def test_pca_panels_fit_their_axes_on_the_id_images_and_the_texts():
    """The figure's axes come from ID images, ID prompts and negative labels; OoD images are
    projected onto them, so a large OoD set spread along another direction cannot hide the gap."""
    from cmakit.core.geometry import pca_axes
    from cmakit.engine.bundle import EmbeddingBundle
    from cmakit.pipeline.results import PCA_FIT_LAYERS, pca_layers, pca_projections

    rng = np.random.default_rng(0)
    d = 16

    def unit(n, shift, scale=0.3):
        x = scale * rng.normal(size=(n, d)) + shift
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    gap, spread = np.eye(d)[0], np.eye(d)[1]
    base = np.eye(d)[2] * 2.0
    ood = unit(900, base, 0.05) + 3.0 * rng.normal(size=(900, 1)).astype(np.float32) * spread
    emb = EmbeddingBundle(
        id_images=unit(300, base + 0.6 * gap), id_labels=rng.integers(0, 4, 300),
        id_texts=unit(4, base - 0.6 * gap), neg_texts=unit(200, base - 0.6 * gap),
        logit_scale=100.0, ood={"far": ood},
    )  # fmt: skip
    proj, explained = pca_projections({"m": emb}, seed=0)
    layers = pca_layers(emb, seed=0)
    mean, axes, ratio = pca_axes(*[np.asarray(layers[k], np.float64) for k in PCA_FIT_LAYERS])
    assert abs(axes[0] @ gap) > 0.9  # the first axis is the modality gap ...
    # ... and the OoD images are projected onto it
    np.testing.assert_allclose(proj["m"]["ood:far"], (layers["ood:far"] - mean) @ axes.T, atol=1e-6)
    assert explained["m"] == pytest.approx(list(ratio))
    assert proj["m"]["id_images"][:, 0].mean() * proj["m"]["neg_texts"][:, 0].mean() < 0
