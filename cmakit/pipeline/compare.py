"""Whether a reproduction agrees with a reference: every headline number beside the reference's.

The headline numbers of a run are, per method (zero-shot, FLYP, CMA), its ID accuracy, its
modality gap and the FPR95 and AUROC of MCM, NegLabel and CSP per OoD group (near, far; MOS too
on the paper path). A run number agrees with the reference's when

    |run - reference| <= tolerance = max(K_STD * std over the reference's seeds, floor)

with ``K_STD = 3`` and the floors of :data:`FLOORS` (1 percentage point for the fractions,
0.01 for the gap). Why:

* A run on another CPU rounds differently, and the rounding differences grow through training
  like a change of seed does, so the seeds' spread is the yardstick. Two means over ``n`` seeds
  differ by ``sigma * sqrt(2 / n)`` (0.8 sigma for the `cpu` profile's 3 seeds); the spread of
  3 seeds is itself uncertain (it falls below half the true one about one time in five), so
  3 reference stds keep a run whose seeds behave like the reference's inside the band at least
  about nine times in ten, while a change of λ moves the CMA gap by many stds.
* The seeds share the pretrained model and the world, and vary only fine-tuning and the
  evaluation samples, so a CPU change that alters pretraining moves every seed together: the
  zero-shot model's seed spread is near zero (NegLabel far AUROC ± 0.1 on `cpu`) while its
  cross-CPU difference was 0.5 points (98.7 vs 99.2), and its gap 0.005 (0.231 vs 0.226, std
  0.002). The floors cover that with a factor of two.
* With a one-seed reference (`smoke`) the floors are the whole tolerance. Smoke's micro model
  sits near chance, its numbers move by several points from one seed to the next and its test
  sets are small (one of its 48 near-OoD images is 2.1 points of FPR95), so a smoke run on
  another CPU can move a number past the floors: smoke checks a setup on the machine that made
  its reference; the `cpu` profile's seeds are the check across machines.
* The tolerance comes from the reference only: the run under test cannot widen its own band.

The comparison functions work on summary dicts (``summary.json``, :mod:`cmakit.report.summary`);
:func:`compare_runs` reads the files. A reference document (``docs/reference/<profile>.json``,
written by ``python -m cmakit.pipeline.publish --reference RUN``) holds a run's summary and
tables with the machine and package versions that made it (:mod:`cmakit.pipeline.references`).
A ``paper`` run is compared with the
paper's Tables 1-3 instead, for information only: no verdict.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cmakit.common.constants import METHODS, MODEL_LABELS
from cmakit.pipeline import references
from cmakit.pipeline.comparison import Comparison, Row, Unit
from cmakit.pipeline.references import describe_machine, read_reference

#: Tolerance = max(K_STD * the reference's std over seeds, FLOORS[unit]).
K_STD = 3.0
#: Smallest tolerance per unit: fractions (accuracy, FPR95, AUROC; 0.01 = 1 point) and the gap.
FLOORS: dict[str, float] = {"fraction": 0.01, "gap": 0.01}
#: Scores and metrics of the headline, in display order.
HEADLINE_SCORES: dict[str, str] = {"mcm": "MCM", "neglabel": "NegLabel", "csp": "CSP"}
HEADLINE_METRICS: dict[str, str] = {"fpr95": "FPR95", "auroc": "AUROC"}
#: Configuration fields that change no number (not reported as differences).
_NEUTRAL_FIELDS = frozenset({"run_dir", "device", "threads", "num_workers", "cache_dir"})


class ProfileMismatch(ValueError):
    """The run and the reference are of different profiles (no number can be compared)."""


@dataclasses.dataclass(frozen=True)
class Headline:
    """One headline number of a summary.

    Attributes:
        label: What it is, in words ("CMA NegLabel far AUROC").
        value: Mean over seeds (a fraction in [0, 1], or the gap's norm).
        std: Standard deviation over seeds (0.0 for one seed).
        unit: "fraction" (shown in percent) or "gap".
    """

    label: str
    value: float
    std: float
    unit: Unit


def tolerance(std: float, unit: Unit, *, k: float = K_STD) -> float:
    """``max(k * std, FLOORS[unit])``: the largest run - reference difference that agrees."""
    return max(k * float(std), FLOORS[unit])


def headline_numbers(summary: Mapping[str, Any]) -> dict[str, Headline]:
    """Every headline number of a summary, keyed ``method/quantity`` (``cma/neglabel/far/auroc``).

    Per method: ``id_accuracy``, ``modality_gap`` and, for each score of
    :data:`HEADLINE_SCORES` the method has, FPR95 and AUROC of each group's mean.

    Raises:
        ValueError: the summary has no methods or no groups (not a ``summary.json``).
    """
    methods = summary.get("methods") or {}
    groups = list(summary.get("groups") or {})
    if not methods or not groups:
        raise ValueError("The summary has no methods or no OoD groups: is it a run's "
                         "summary.json (cmakit.report.summary)?")  # fmt: skip
    out: dict[str, Headline] = {}
    for method in [m for m in METHODS if m in methods] + [m for m in methods if m not in METHODS]:
        entry, name = methods[method], MODEL_LABELS.get(method, method)
        out[f"{method}/id_accuracy"] = _headline(entry, "id_accuracy", f"{name} ID accuracy")
        out[f"{method}/modality_gap"] = _headline(entry, "modality_gap", f"{name} gap", "gap")
        for score, score_label in HEADLINE_SCORES.items():
            for group in groups:
                node = entry.get("ood", {}).get(score, {}).get(f"{group}_mean")
                if node is None:
                    continue
                for metric, metric_label in HEADLINE_METRICS.items():
                    label = f"{name} {score_label} {group} {metric_label}"
                    out[f"{method}/{score}/{group}/{metric}"] = _headline(node, metric, label)
    return out


def _headline(node: Mapping[str, Any], key: str, label: str, unit: Unit = "fraction") -> Headline:
    return Headline(label, float(node[key]), float(node.get(f"{key}_std", 0.0)), unit)


def compare_summaries(
    run: Mapping[str, Any],
    reference: Mapping[str, Any],
    *,
    k: float = K_STD,
    run_name: str = "run",
    reference_name: str = "reference",
    made_by: Mapping[str, Any] | None = None,
) -> Comparison:
    """Compare a run's summary with a reference summary, number by number.

    Args:
        run: The run's ``summary.json``.
        reference: The reference's summary (its seeds' spread sets the tolerances).
        k: Multiple of the reference's std over seeds (:data:`K_STD`).
        run_name, reference_name: How the output names them.
        made_by: The machine and versions that made the reference (shown in the header).

    Returns:
        A :class:`Comparison` with one row per headline number of the reference.

    Raises:
        ProfileMismatch: the run and the reference are of different profiles.
    """
    if run.get("profile") != reference.get("profile"):
        raise ProfileMismatch(
            f"{run_name} is a {run.get('profile')!r} run but {reference_name} is a "
            f"{reference.get('profile')!r} reference: compare it with "
            f"{references.REFERENCE_DIR / str(run.get('profile'))}.json or a reference of its "
            "profile."
        )
    ours, theirs = headline_numbers(run), headline_numbers(reference)
    rows = tuple(Row(h.label, h.unit, ours[key].value if key in ours else None, h.value,
                     tolerance(h.std, h.unit, k=k)) for key, h in theirs.items())  # fmt: skip
    seeds = list(reference.get("seeds", []))
    header = [f"made by: {describe_machine(made_by)}"] if made_by else []
    header.append(tolerance_text(k, len(seeds)))
    notes = []
    if list(run.get("seeds", [])) != seeds:
        notes.append(f"note: the run's seeds {run.get('seeds')} are not the reference's {seeds}: "
                     "the means cover different seeds.")  # fmt: skip
    for key in ("convention", "fpr95_estimator", "aupr_estimator"):
        if run.get(key) != reference.get(key):
            notes.append(f"note: {key} {run.get(key)!r} vs the reference's {reference.get(key)!r}.")
    extra = sorted(h.label for key, h in ours.items() if key not in theirs)
    if extra:
        notes.append(f"note: the reference lacks {len(extra)} of the run's numbers: {extra}.")
    return Comparison(run_name, reference_name, str(reference["profile"]), rows,
                      header=tuple(header), notes=tuple(notes))  # fmt: skip


def tolerance_text(k: float, n_seeds: int) -> str:
    """The tolerance rule in one line, as the output states it."""
    floors = (f"{FLOORS['fraction'] * 100:g} percentage point for accuracy, FPR95 and AUROC, "
              f"{FLOORS['gap']:g} for the gap")  # fmt: skip
    spread = (
        f"std over the reference's {n_seeds} seeds"
        if n_seeds > 1
        else "std over seeds; the reference has 1 seed, so the floors alone apply and across "
        "CPUs this is a coarse check"
    )
    return (
        f"tolerance: |run - reference| <= max({k:g} x {spread}; floor {floors}), "
        "as on another CPU the training diverges like a change of seed."
    )


def config_differences(run: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """``"lam: 0.5 vs 0.1"`` for every configuration field that differs and changes numbers."""
    keys = sorted((set(run) | set(reference)) - _NEUTRAL_FIELDS)
    return [f"{k}: {run.get(k)!r} vs {reference.get(k)!r}" for k in keys
            if run.get(k) != reference.get(k)]  # fmt: skip


# ------------------------------------------------------------------------------ the paper's tables


def compare_with_paper(run: Mapping[str, Any], *, run_name: str = "run") -> Comparison:
    """A ``paper`` run's headline numbers beside the paper's Tables 1-3 (information, no verdict).

    ID accuracy against Table 3, OpenOOD near/far against Table 2, the MOS mean against Table 1,
    for MCM and NegLabel (the paper reports neither CSP nor a gap).
    """
    from cmakit.report.paper_reference import PAPER_ROWS, paper_table

    tables = {name: paper_table(name).set_index("method") for name in
              ("table1_mos", "table2_openood_v15", "table3_id_accuracy")}  # fmt: skip
    ours = headline_numbers(run)
    rows = []
    for key, h in ours.items():
        method, *rest = key.split("/")
        column, table = _paper_cell(rest)
        row_name = PAPER_ROWS.get((method, rest[0] if len(rest) > 1 else None, table))
        if column is None or row_name is None or row_name not in tables[table].index:
            continue
        value = float(tables[table].loc[row_name, column]) / 100.0
        if math.isfinite(value):
            rows.append(Row(f"{h.label} [{table.split('_')[0]} {row_name}]", h.unit, h.value,
                            value, None))  # fmt: skip
    header = ("source: the numbers reported in Kim & Hwang, CVPR 2025 (Tables 1-3; FPR95 with ID "
              "as the positive class); other hardware, data copies and code: no tolerance "
              "applies.",)  # fmt: skip
    notes = () if run.get("convention") == "id_positive" else (
        f"note: the run's convention is {run.get('convention')!r}, the paper's id_positive: its "
        "FPR95 measures another rate.",)  # fmt: skip
    return Comparison(run_name, "the paper's Tables 1-3", str(run.get("profile")), tuple(rows),
                      verdict=False, header=header, notes=notes)  # fmt: skip


def _paper_cell(rest: list[str]) -> tuple[str | None, str]:
    """``["id_accuracy"]`` / ``["neglabel", "far", "auroc"]`` -> (paper column, table)."""
    if rest == ["id_accuracy"]:
        return "id_accuracy", "table3_id_accuracy"
    if len(rest) == 3 and rest[1] in ("near", "far"):
        return f"{rest[1]}_{rest[2]}", "table2_openood_v15"
    if len(rest) == 3 and rest[1] == "mos":
        return f"average_{rest[2]}", "table1_mos"
    return None, "table3_id_accuracy"


# ------------------------------------------------------------------------------------- the files


def compare_runs(
    run: str | Path, reference: str | Path | None = None, *, k: float = K_STD
) -> Comparison:
    """Compare a run with a reference: the kit's shipped one of its profile by default.

    Args:
        run: A run folder or its ``summary.json``.
        reference: A reference document, another run folder or ``summary.json``; default
            ``docs/reference/<profile>.json``, or the paper's tables for a ``paper`` run.
        k: Multiple of the reference's std over seeds (:data:`K_STD`).

    Returns:
        The :class:`Comparison`; ``.text()`` is what ``python -m cmakit compare`` prints and
        ``.exit_code`` its exit status (0 agrees, 1 disagrees).

    Raises:
        FileNotFoundError: no run summary, or no shipped reference for the run's profile.
        ProfileMismatch: the reference is of another profile.

    Example:
        >>> compare_runs("runs/smoke").agrees  # doctest: +SKIP
        True
    """
    ours = read_reference(run)
    summary = ours["summary"]
    if reference is None and summary["profile"] == "paper":
        return compare_with_paper(summary, run_name=str(run))
    if reference is None:
        reference = references.REFERENCE_DIR / f"{summary['profile']}.json"
        if not Path(reference).is_file():
            raise FileNotFoundError(
                f"cmakit ships no reference for the {summary['profile']!r} profile ({reference} "
                "is missing): name a REFERENCE (a run folder or reference document)."
            )
    theirs = read_reference(reference)
    result = compare_summaries(summary, theirs["summary"], k=k, run_name=str(run),
                               reference_name=str(reference), made_by=theirs.get("made_by"))  # fmt: skip
    if ours.get("config") and theirs.get("config"):
        changed = config_differences(ours["config"], theirs["config"])
        if changed:
            note = "note: configuration differs from the reference's: " + "; ".join(changed)
            result = dataclasses.replace(result, notes=(*result.notes, note))
    return result
