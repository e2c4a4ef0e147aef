"""The paper's Tables 1-2 beside ours: every paper column sits beside the same data set of ours."""

from __future__ import annotations

import numpy as np
import pytest

from cmakit.data.world import OOD_GROUPS
from cmakit.pipeline.run_data import ID_SET_LABELS, PAPER_GROUPS, PAPER_ID_SUBSETS
from cmakit.report.paper_reference import PAPER_SET_BLOCKS, paper_table
from cmakit.report.summary import OOD_METRICS, build_summary, validate_summary
from cmakit.report.tables import (
    OURS_PAPER_PROFILE_LABEL,
    PAPER_LABEL,
    benchmark_table,
    format_mean_std,
    paper_beside,
    paper_comparison,
    paper_layout_table,
)
from cmakit.report.writers import write_table

SEEDS = [0, 1]
METHODS = ["zero_shot", "flyp", "cma"]
SCORES = ["mcm", "neglabel"]
NINE = [s for group in PAPER_GROUPS.values() for s in group]
# Written out by hand (not read from PAPER_SET_BLOCKS): the paper's column stem -> our sets.
EXPECTED = {
    "table1_mos": {
        "inaturalist": ["mos_inaturalist"],
        "sun": ["mos_sun"],
        "places": ["mos_places"],
        "textures": ["mos_textures"],
        "average": ["mos_inaturalist", "mos_sun", "mos_places", "mos_textures"],
    },
    "table2_openood_v15": {
        "ssb_hard": ["ssb_hard"],
        "ninco": ["ninco"],
        "near": ["ssb_hard", "ninco"],
        "inaturalist": ["inaturalist"],
        "textures": ["textures"],
        "openimage_o": ["openimage_o"],
        "far": ["inaturalist", "textures", "openimage_o"],
    },
}


def _value(method: int, score: int, ood_set: int, metric: int, seed: int) -> float:
    """A distinct fraction for every cell, so a column filled from the wrong set shows."""
    return 0.02 + 0.1 * method + 0.04 * score + 0.003 * ood_set + 0.0002 * metric + 1e-5 * seed


def _summary(sets: list[str], groups: dict, id_sets: dict, profile: str) -> dict:
    records = {
        method: [
            {
                "id_accuracy": 0.5 + 0.1 * m,
                "modality_gap": 0.8,
                "geometry": {},
                "ood": {
                    score: {
                        name: {k: _value(m, si, i, j, seed) for j, k in enumerate(OOD_METRICS)}
                        for i, name in enumerate(sets)
                    }
                    for si, score in enumerate(SCORES)
                },
            }
            for seed in SEEDS
        ]
        for m, method in enumerate(METHODS)
    }
    summary = build_summary(profile, SEEDS, records, [], {}, "id_positive", groups=groups,
                            id_sets=id_sets)  # fmt: skip
    validate_summary(summary, required_scores=SCORES)
    return summary


@pytest.fixture
def paper_summary() -> dict:
    labels = {g: ID_SET_LABELS[PAPER_ID_SUBSETS.get(g)] for g in PAPER_GROUPS}
    return _summary(NINE, PAPER_GROUPS, labels, "paper")


def _expected_cell(summary: dict, method: str, score: str, sets: list[str], metric: str) -> str:
    node = summary["methods"][method]["ood"][score]
    per_seed = np.mean([node[s][f"{metric}_per_seed"] for s in sets], axis=0)
    return format_mean_std(float(per_seed.mean()), float(per_seed.std(ddof=1)))


def test_one_mapping_names_the_paper_profile_sets():
    assert {k: {s: list(v) for s, v in b.items()} for k, b in PAPER_SET_BLOCKS.items()} == EXPECTED
    used = {s for blocks in PAPER_SET_BLOCKS.values() for sets in blocks.values() for s in sets}
    assert used == set(NINE)


@pytest.mark.parametrize("table", ["table1_mos", "table2_openood_v15"])
def test_every_paper_column_sits_beside_the_same_data_set(paper_summary, table):
    both = paper_comparison(paper_summary, table, score_keys=SCORES)
    ours = both[both["source"] == OURS_PAPER_PROFILE_LABEL]
    theirs = both[both["source"] == PAPER_LABEL]
    paper_columns = [c for c in paper_table(table).columns if c != "method"]
    assert list(both.columns) == ["source", "method", *paper_columns]  # one column per paper's
    assert (theirs[paper_columns] != "—").any().all()
    for column in paper_columns:
        stem, metric = column.rsplit("_", 1)
        sets = EXPECTED[table][stem]
        for method in METHODS:
            for score, label in zip(SCORES, ("MCM", "NegLabel"), strict=True):
                tag = {"zero_shot": "ZS", "flyp": "FLYP", "cma": "CMA"}[method]
                got = ours.loc[ours["method"] == f"{tag}_{label}", column].item()
                assert got == _expected_cell(paper_summary, method, score, sets, metric), column
    # the paper's CMA + NegLabel row sits in the same columns (Table 1: MOS iNaturalist 1.65)
    if table == "table1_mos":
        cma = theirs[theirs["method"] == "CMA_NegLabel"].iloc[0]
        assert (cma["inaturalist_fpr95"], cma["inaturalist_auroc"]) == ("1.65", "99.62")
        assert cma["average_fpr95"] == "19.93"


def test_captions_state_each_tables_id_set_and_estimator(paper_summary, tmp_path):
    mos = paper_comparison(paper_summary, "table1_mos")
    openood = paper_comparison(paper_summary, "table2_openood_v15")
    assert "ImageNet-1k val (all images)" in mos.attrs["caption"]
    assert "test_imagenet.txt" not in mos.attrs["caption"]
    assert "test_imagenet.txt" in openood.attrs["caption"]
    paths = write_table(openood, tmp_path / "t2", caption=openood.attrs["caption"])
    md = paths["md"].read_text()
    assert "test_imagenet.txt" in md and "FPR95 estimator interp" in md and "np.interp" in md
    assert paper_summary["fpr95_estimator"] == "interp"


def test_own_layout_of_nine_sets_has_group_means_but_no_mixed_average(paper_summary):
    df = benchmark_table(paper_summary, score_keys=["neglabel"], groups=PAPER_GROUPS)
    assert {"near_fpr95", "far_fpr95", "mos_fpr95"} <= set(df.columns)
    assert "average_fpr95" not in df.columns  # MOS and OpenOOD use different ID test sets


def test_our_own_layout_never_shares_a_column_with_the_paper(paper_summary):
    # today's mistake: the nine-set table matched to Table 1 by name
    ours = benchmark_table(paper_summary, score_keys=["neglabel"], groups=PAPER_GROUPS)
    both = paper_beside(ours, "table1_mos")
    for column in both.columns.drop(["source", "method"]):
        filled = {src for src in both["source"].unique()
                  if (both.loc[both["source"] == src, column] != "—").any()}  # fmt: skip
        assert len(filled) == 1, column


def test_embedded_world_shows_the_paper_as_a_separate_block():
    sets = [s for group in OOD_GROUPS.values() for s in group]
    labels = dict.fromkeys(OOD_GROUPS, "the embedded world's ID test images")
    summary = _summary(sets, OOD_GROUPS, labels, "cpu")
    for table in ("table1_mos", "table2_openood_v15"):
        both = paper_comparison(summary, table)
        ours_cols = [c for c in both.columns if c not in ("source", "method")]
        paper_cols = [c for c in ours_cols if c.startswith("paper_")]
        assert len(paper_cols) == len(paper_table(table).columns) - 1
        assert "near_shapes_fpr95" in both.columns
        for column in ours_cols:  # every column belongs to one block only
            filled = {src for src in both["source"].unique()
                      if (both.loc[both["source"] == src, column] != "—").any()}  # fmt: skip
            assert len(filled) == 1, column
        assert "separate block" in both.attrs["caption"]
        assert "embedded world's ID test images" in both.attrs["caption"]


def test_layout_table_refuses_other_tables_and_missing_sets(paper_summary):
    with pytest.raises(KeyError, match="has no OoD layout"):
        paper_layout_table(paper_summary, "table3_id_accuracy")
    sets = [s for s in NINE if s != "ninco"]
    partial = _summary(sets, {"mos": PAPER_GROUPS["mos"]}, {}, "paper")
    with pytest.raises(KeyError, match="ninco"):
        paper_layout_table(partial, "table2_openood_v15")


def test_command_line_evaluate_reports_group_means_not_one_mean(tmp_path):
    import json
    from types import SimpleNamespace

    from cmakit.pipeline.commands import cli_groups, run_evaluate

    rng = np.random.default_rng(0)

    def unit(n: int, shift: float) -> np.ndarray:
        x = rng.standard_normal((n, 8))
        x[:, 0] += shift
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    sets = ["mos-SUN", "mos-Places", "openood-ninco", "openood-inaturalist"]
    arrays = {"id": {"embeddings": unit(20, 2.0), "labels": np.arange(20) % 4},
              "id_text": {"embeddings": unit(4, 2.0)},
              **{s: {"embeddings": unit(10, 0.5 * i)} for i, s in enumerate(sets)}}  # fmt: skip
    for name, content in arrays.items():
        np.savez(tmp_path / f"{name}.npz", **content)
    manifest = {"id": "id.npz", "id_text": "id_text.npz", "neg_text": None,
                "id_set": "imagenet-val", "ood": {s: f"{s}.npz" for s in sets},
                "bad_images": {}, "bad_paths": {}}  # fmt: skip
    (tmp_path / "embeddings.json").write_text(json.dumps(manifest))
    run = SimpleNamespace(embeddings=str(tmp_path), score="mcm", groups=1,
                          convention="id_positive", estimator="trapezoid",
                          out=str(tmp_path / "metrics.json"))  # fmt: skip
    with pytest.raises(ValueError, match="records no rows of OpenOOD's ID list"):
        run_evaluate(run)  # embeddings of an older embed: OpenOOD's ID rows unknown
    manifest["id_subsets"] = {"openood_imagenet": list(range(20))}  # as `embed` records them
    (tmp_path / "embeddings.json").write_text(json.dumps(manifest))
    result = run_evaluate(run)
    assert cli_groups(sets) == {"near": ["openood-ninco"], "far": ["openood-inaturalist"],
                                "mos": ["mos-SUN", "mos-Places"]}  # fmt: skip
    assert "mean" not in result and set(result["group_means"]) == {"near", "far", "mos"}
    per = result["per_set"]
    mos_auroc = np.mean([per["mos-SUN"]["auroc"], per["mos-Places"]["auroc"]])
    assert result["group_means"]["mos"]["auroc"] == pytest.approx(mos_auroc)
    assert result["group_means"]["far"]["fpr95"] == per["openood-inaturalist"]["fpr95"]
    assert result["fpr95_estimator"] == "interp" and set(per) == set(sets)
