"""`compare`: a reproduction agrees with the reference within the seeds' spread, a real change
does not, and the references and the docs are written from real runs."""

from __future__ import annotations

import copy
import json

import pytest

from cmakit import cli
from cmakit.common.io import read_json, write_json
from cmakit.pipeline import compare, references
from cmakit.pipeline.compare import (
    FLOORS,
    ProfileMismatch,
    compare_runs,
    compare_summaries,
    headline_numbers,
    tolerance,
)
from cmakit.pipeline.references import REFERENCE_DIR

SMOKE = REFERENCE_DIR / "smoke.json"

#: The `cpu` profile's headline in the README (3 seeds, percent / gap units: mean, std):
#: ID accuracy, gap, then (score, group, metric) as the README prints them.
CPU_README = {
    "zero_shot": {"acc": (71.3, 1.7), "gap": (0.231, 0.002),
                  ("mcm", "near"): ((96.0, 0.9), (50.9, 1.5)), ("mcm", "far"): ((94.5, 0.7), (38.0, 0.4)),
                  ("neglabel", "near"): ((54.1, 1.4), (78.6, 0.9)),
                  ("neglabel", "far"): ((4.9, 0.8), (98.7, 0.1))},
    "flyp": {"acc": (84.7, 1.5), "gap": (0.202, 0.009),
             ("mcm", "near"): ((84.5, 2.2), (67.1, 1.7)), ("mcm", "far"): ((89.9, 1.7), (68.4, 2.7)),
             ("neglabel", "near"): ((79.5, 0.9), (65.5, 1.3)),
             ("neglabel", "far"): ((40.0, 1.2), (83.1, 0.3))},
    "cma": {"acc": (85.1, 1.3), "gap": (0.041, 0.006),
            ("mcm", "near"): ((79.9, 2.5), (68.6, 1.1)), ("mcm", "far"): ((86.6, 2.9), (72.4, 2.0)),
            ("neglabel", "near"): ((79.3, 0.3), (64.8, 1.4)),
            ("neglabel", "far"): ((40.5, 3.4), (83.7, 1.3))},
}  # fmt: skip


def _summary(table: dict, profile: str = "cpu", seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """A summary holding the headline numbers of ``table`` (percent in, fractions out)."""
    methods = {}
    for method, row in table.items():
        ood: dict = {}
        for key, value in row.items():
            if isinstance(key, tuple):
                (fpr, fpr_std), (auc, auc_std) = value
                ood.setdefault(key[0], {})[f"{key[1]}_mean"] = {
                    "fpr95": fpr / 100, "fpr95_std": fpr_std / 100,
                    "auroc": auc / 100, "auroc_std": auc_std / 100,
                }  # fmt: skip
        methods[method] = {"id_accuracy": row["acc"][0] / 100, "id_accuracy_std": row["acc"][1] / 100,
                           "modality_gap": row["gap"][0], "modality_gap_std": row["gap"][1],
                           "ood": ood}  # fmt: skip
    return {"profile": profile, "seeds": list(seeds), "convention": "id_positive",
            "groups": {"near": ["a"], "far": ["b"]}, "methods": methods}  # fmt: skip


def test_tolerance_is_k_stds_of_the_reference_or_the_floor():
    assert tolerance(0.017, "fraction") == pytest.approx(0.051)  # 3 x 1.7 points
    assert tolerance(0.001, "fraction") == FLOORS["fraction"] == 0.01
    assert tolerance(0.002, "gap") == FLOORS["gap"]
    assert tolerance(0.006, "gap", k=2) == pytest.approx(0.012)


def test_a_cross_cpu_difference_of_the_issues_size_agrees():
    """zero-shot ID accuracy 71.7 vs 71.3, FLYP 85.4 vs 84.7, gap 0.226 vs 0.231, NegLabel far
    AUROC zero-shot 99.2 vs 98.7: all within the seeds' spread (or the floor)."""
    other_cpu = copy.deepcopy(CPU_README)
    other_cpu["zero_shot"]["acc"] = (71.7, 1.5)
    other_cpu["flyp"]["acc"] = (85.4, 1.2)
    other_cpu["zero_shot"]["gap"] = (0.226, 0.003)
    other_cpu["zero_shot"][("neglabel", "far")] = ((4.5, 0.7), (99.2, 0.1))
    result = compare_summaries(_summary(other_cpu), _summary(CPU_README))
    assert result.agrees and result.exit_code == 0, result.text()
    assert len(result.rows) == 3 * (2 + 2 * 2 * 2)  # method x (acc, gap, score x group x metric)
    assert "AGREES" in result.text() and "3 x std over the reference's 3 seeds" in result.text()
    # the reference's spread sets the band: the run's own smaller std does not narrow it
    gap = next(r for r in result.rows if r.label == "zero-shot gap")
    assert gap.tolerance == FLOORS["gap"] and gap.diff == pytest.approx(-0.005)


def test_another_lambda_disagrees_and_is_named():
    """CMA at λ = 0.01 instead of 0.1, as measured on the cpu world (docs/world_study.md,
    factor lam, 3 seeds): accuracy and NegLabel barely move, the gap does (0.094 vs 0.041)."""
    lam_001 = copy.deepcopy(CPU_README)
    lam_001["cma"] = {"acc": (84.8, 1.2), "gap": (0.094, 0.002),
                      ("mcm", "near"): ((79.9, 2.5), (67.7, 1.3)),
                      ("mcm", "far"): ((86.6, 2.9), (68.5, 2.8)),
                      ("neglabel", "near"): ((79.5, 0.5), (64.7, 1.4)),
                      ("neglabel", "far"): ((38.4, 1.1), (83.6, 0.6))}  # fmt: skip
    result = compare_summaries(_summary(lam_001), _summary(CPU_README))
    assert not result.agrees and result.exit_code == 1
    assert [r.label for r in result.disagreements] == ["CMA gap"]
    assert (
        "DISAGREES on 1 of 30 numbers: CMA gap 0.094 vs 0.041 (tolerance 0.0180)" in result.text()
    )


def test_the_shipped_smoke_reference_agrees_with_itself(capsys):
    result = compare_runs(SMOKE, SMOKE)
    assert result.agrees and all(r.diff == 0 for r in result.rows)
    assert {"CMA NegLabel far AUROC", "FLYP CSP near FPR95", "zero-shot gap"} <= {
        r.label for r in result.rows
    }
    assert cli.main(["compare", str(SMOKE), str(SMOKE)]) == 0
    out = capsys.readouterr().out
    assert "the reference has 1 seed, so the floors alone apply" in out
    assert "made by: " in out and "torch " in out and "AGREES" in out


def _smoke_run(tmp_path, change=None):
    """A run folder whose summary is the smoke reference's, changed by ``change``."""
    doc = read_json(SMOKE)
    summary = doc["summary"]
    if change:
        change(summary)
    write_json(tmp_path / "run" / "summary.json", summary)
    write_json(tmp_path / "run" / "config.json", {"config": doc["config"]})
    return tmp_path / "run"


def test_one_auroc_moved_beyond_its_tolerance_disagrees(tmp_path, capsys):
    def move(summary):
        node = summary["methods"]["cma"]["ood"]["neglabel"]["far_mean"]
        node["auroc"] -= 0.015  # the floor is 1 point; one seed, so no spread

    run = _smoke_run(tmp_path, move)
    assert cli.main(["compare", str(run)]) == 1  # default reference: docs/reference/smoke.json
    out = capsys.readouterr().out
    assert out.count("DIFFERS") == 1
    assert "verdict: DISAGREES on 1 of" in out and "CMA NegLabel far AUROC" in out.splitlines()[-1]
    # the same summary moved by less than the floor agrees
    run = _smoke_run(tmp_path, lambda s: s["methods"]["cma"]["ood"]["neglabel"]["far_mean"].update(
        auroc=s["methods"]["cma"]["ood"]["neglabel"]["far_mean"]["auroc"] - 0.005))  # fmt: skip
    assert compare_runs(run).agrees


def test_a_changed_configuration_is_noted_beside_the_numbers(tmp_path):
    run = _smoke_run(tmp_path)
    config = read_json(run / "config.json")
    config["config"]["lam"] = 0.5
    write_json(run / "config.json", config)
    result = compare_runs(run)
    assert result.agrees  # the numbers decide; the note says what else differs
    assert any("lam: 0.5 vs 0.1" in note for note in result.notes)


def test_a_run_of_another_profile_is_a_one_line_error(tmp_path, capsys):
    run = _smoke_run(tmp_path, lambda s: s.update(profile="cpu"))
    with pytest.raises(ProfileMismatch, match="'cpu' run but .* is a 'smoke' reference"):
        compare_runs(run, SMOKE)
    assert cli.main(["compare", str(run), str(SMOKE)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cmakit compare: error:")


def test_no_shipped_reference_and_a_bad_file_say_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(references, "REFERENCE_DIR", tmp_path / "none")
    run = _smoke_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="ships no reference for the 'smoke' profile"):
        compare_runs(run)
    (tmp_path / "x.json").write_text(json.dumps({"a": 1}))
    assert cli.main(["compare", str(run), str(tmp_path / "x.json")]) == 2  # 1 is "disagrees"
    assert "neither a run's summary.json nor a cmakit reference" in capsys.readouterr().err


def test_a_paper_run_is_shown_beside_the_papers_tables_without_a_verdict(tmp_path, capsys):
    paper = copy.deepcopy(CPU_README)
    paper["cma"][("neglabel", "mos")] = ((30.0, 0.0), (92.0, 0.0))
    summary = _summary(paper, profile="paper", seeds=(0,))
    summary["groups"]["mos"] = ["mos_sun"]
    write_json(tmp_path / "paper" / "summary.json", summary)
    assert cli.main(["compare", str(tmp_path / "paper")]) == 0
    out = capsys.readouterr().out
    assert "no verdict" in out and "DIFFERS" not in out and "convention" not in out
    row = next(line for line in out.splitlines() if line.startswith("CMA NegLabel near AUROC"))
    assert "[table2 CMA_NegLabel]" in row and "84.5" in row  # the paper's 84.46
    mos = next(line for line in out.splitlines() if line.startswith("CMA NegLabel mos AUROC"))
    assert "[table1 CMA_NegLabel]" in mos and "92.0" in mos
    acc = next(line for line in out.splitlines() if line.startswith("zero-shot ID accuracy"))
    assert "66.6" in acc  # Table 3's zero-shot row
    assert not [line for line in out.splitlines() if line.startswith(("CMA gap", "zero-shot gap"))]
    summary["convention"] = "ood_positive"  # OpenOOD's: the paper's FPR95 is another rate
    assert "convention is 'ood_positive'" in compare.compare_with_paper(summary).text()


def test_headline_numbers_need_a_summary():
    with pytest.raises(ValueError, match="no methods or no OoD groups"):
        headline_numbers({"profile": "smoke"})
    assert "cma/neglabel/far/auroc" in headline_numbers(read_json(SMOKE)["summary"])


def test_publish_makes_the_reference_and_the_docs_from_one_run(tmp_path):
    from cmakit.pipeline import publish

    run = _smoke_run(tmp_path)
    (run / "tables").mkdir()
    (run / "tables" / "ablation.md").write_text("| lam |\n|---|\n| 0.1 |\n")
    with pytest.raises(ValueError, match="records no machine"):
        publish.write_reference(run, tmp_path / "docs")
    made_by = read_json(SMOKE)["made_by"]
    write_json(run / "config.json", {**read_json(run / "config.json"), **made_by})
    path = publish.write_reference(run, tmp_path / "docs")
    assert path == tmp_path / "docs" / "reference" / "smoke.json"
    assert not (tmp_path / "docs" / "assets").exists()  # a smoke reference keeps the figures
    assert compare_runs(run, path).agrees
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\n{publish.README_MARKERS[0]}\nold table\n{publish.README_MARKERS[1]}\nend\n"
    )
    page = publish.publish(path, tmp_path / "docs", readme=readme).read_text()
    assert "| cma |" in page and "## ablation" in page and made_by["machine"]["cpu"] in page
    text = readme.read_text()
    assert "old table" not in text and text.endswith(f"{publish.README_MARKERS[1]}\nend\n")
    assert "| CMA, λ = 0.1 |" in text and made_by["machine"]["cpu"] in text
    assert publish.main(["--to", str(tmp_path / "docs"), "--profile", "smoke"]) == 0
    with pytest.raises(SystemExit):  # no cpu reference in this docs folder: one line, exit 2
        publish.main(["--to", str(tmp_path / "docs")])
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="lacks the results markers"):
        publish.publish(path, tmp_path / "docs", readme=readme)
