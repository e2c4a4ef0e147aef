"""Paper-layout tables from ``summary.json``, with the paper's numbers beside ours.

Tables are pandas DataFrames of display strings: our numbers in percent as ``"mean ± std"``
over seeds, one row per ``METHOD_SCORE`` (``CMA_NegLabel``, as in the paper's CSVs), columns
``<set>_<metric>`` then group means (``near_*``, ``far_*``) and the ``average_*`` over all sets.
:func:`paper_layout_table` fills the paper's Table 1 / 2 columns with the same data sets of ours
(:data:`cmakit.report.paper_reference.PAPER_SET_BLOCKS`); :func:`paper_beside` appends the paper's rows in
a separately labelled ``source`` block, sharing columns with ours only when both hold the same
data sets and quantities (else the paper's columns are prefixed ``paper_``);
:func:`paper_comparison` does both for one of the paper's tables, with a caption.
:func:`cmakit.report.writers.write_table` writes CSV, Markdown and LaTeX that state the metric
convention and the FPR95 and AUPR estimators; they travel in ``DataFrame.attrs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cmakit.common.constants import METHOD_LABELS
from cmakit.core.metrics import fpr95_estimator
from cmakit.core.scores import SCORE_LABELS
from cmakit.report.paper_reference import PAPER_SET_BLOCKS, PAPER_SOURCE, PAPER_TABLES, paper_table
from cmakit.report.summary import OOD_METRICS

OURS_LABEL = "ours (embedded world)"
OURS_PAPER_PROFILE_LABEL = "ours (ImageNet-1k, ViT-B/16)"
PAPER_LABEL = "paper (ImageNet-1k, ViT-B/16)"
GEOMETRY_COLUMNS = (
    "uni_all",
    "uni_i",
    "uni_t",
    "uni_cm",
    "uni_cmm",
    "align_id",
    "align_ood",
    "modality_gap",
)
MISSING = "—"
PAPER_PREFIX = "paper_"
GEOMETRY_NOTE = (
    "uni_* = -log mean exp(-2 ||u - v||^2) over pairs of all embeddings, "
    "images, texts, cross-modal and matched cross-modal pairs: cmakit's documented reading "
    "(cmakit.core.geometry.READING), since the paper's definitions are not public. "
    "align_id = mean ||x - t_y||^2 of each ID test image x and the prompt t_y of its own class; "
    "align_ood = mean ||x - t||^2 of each OoD image and its nearest ID prompt (Wang-Isola "
    "alignment on L2-normalised embeddings, = 2 - 2 cos, lower = closer); "
    "modality_gap = ||mean(image) - mean(text)||_2."
)
PAPER_GEOMETRY_NOTE = (
    "The paper's Table 4 (columns paper_*) is a different quantity, shown as its own block: its "
    "Uni-* and Align-* are not defined in public, and its Align runs 0.023-0.138 with CMA the "
    "highest, while our align_* (mean squared distance, lower = closer) runs about 0.4-1.4 and "
    "falls as fine-tuning pulls matched pairs together; compare directions within a block only."
)


def format_mean_std(
    mean: float, std: float | None = None, digits: int = 2, scale: float = 100.0
) -> str:
    """Format ``mean ± std`` after multiplying both by ``scale`` (fractions -> percent).

    ``std=None`` (a single seed) prints the mean alone; a non-finite mean prints ``"nan"``.

    Example:
        >>> format_mean_std(0.93781, 0.0042)
        '93.78 ± 0.42'
    """
    if not np.isfinite(mean):
        return "nan"
    text = f"{mean * scale:.{digits}f}"
    return text if std is None else f"{text} ± {std * scale:.{digits}f}"


def row_label(method: str, score: str) -> str:
    """``("cma", "neglabel")`` -> ``"CMA_NegLabel"`` (unknown names are used as they are)."""
    return f"{METHOD_LABELS.get(method, method)}_{SCORE_LABELS.get(score, score)}"


def _per_seed(node: Mapping[str, Any], key: str, path: str) -> np.ndarray:
    """Per-seed values of a leaf, shape ``[S]`` (falls back to the mean for a bare value)."""
    if f"{key}_per_seed" in node:
        return np.asarray(node[f"{key}_per_seed"], dtype=float)
    if key in node:
        return np.asarray([node[key]], dtype=float)
    raise KeyError(f"{path} has no {key!r}; it holds {sorted(node)}.")


def _cell(values: np.ndarray, digits: int, scale: float) -> str:
    std = float(values.std(ddof=1)) if len(values) > 1 else None
    return format_mean_std(float(values.mean()), std, digits, scale)


def _layout(ood_sets: Sequence[str], groups: Mapping[str, Sequence[str]], average: bool) -> list:
    """Column blocks ``[(block_name, [ood_set, ...]), ...]`` in paper order."""
    blocks: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for group, sets in groups.items():
        blocks += [(s, [s]) for s in sets] + [(group, list(sets))]
        seen |= set(sets)
    blocks += [(s, [s]) for s in ood_sets if s not in seen]
    if average:
        blocks.append(("average", list(dict.fromkeys([*seen, *ood_sets]))))
    return blocks


def benchmark_table(
    summary: Mapping[str, Any],
    *,
    score_keys: Sequence[str],
    ood_sets: Sequence[str] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    methods: Sequence[str] | None = None,
    metrics: Sequence[str] = OOD_METRICS,
    average: bool | None = None,
    id_accuracy: bool = True,
    digits: int = 2,
) -> pd.DataFrame:
    """The OoD benchmark table in our own layout, values in percent, ``mean ± std``.

    Group means and the average are plain means over the sets, computed per seed and then
    summarised over seeds (the std is the spread of the per-seed means). Columns are named by
    our set keys; to set a table beside the paper's, use :func:`paper_layout_table`.

    Args:
        summary: A summary that passes :func:`cmakit.report.summary.validate_summary`.
        score_keys: Scores to show, e.g. ``["mcm", "neglabel"]``; rows are method-major, and a
            method that lacks a score has no row for it.
        ood_sets: Sets outside any group, in column order (default: every set of the summary
            that no group names, in summary order).
        groups: ``{"near": [...], "far": [...]}``: each group's sets, then its mean columns.
        methods: Methods to show (default: all in the summary, in its order).
        metrics: Metric columns per set (``fpr95``, ``auroc``, ``aupr_in``, ``aupr_out``).
        average: Append ``average_*`` columns over every set shown (default: unless the shown
            groups are measured against different ID test sets, ``summary["id_sets"]``).
        id_accuracy: Append the method's ``id_accuracy`` column.
        digits: Decimals in percent.

    Returns:
        DataFrame with a ``method`` column (``CMA_NegLabel``) then ``<block>_<metric>`` string
        columns; ``attrs`` holds ``convention``, ``fpr95_estimator``, ``aupr_estimator``,
        ``profile`` and ``notes`` (with the ID test set of each group shown).

    Raises:
        KeyError: A score that no method has, or an OoD set / metric a shown score lacks.
    """
    groups = dict(groups or {})
    methods = list(methods if methods is not None else summary["methods"])
    with_score = _methods_with(summary, score_keys, methods)
    if ood_sets is None:
        grouped = {s for sets in groups.values() for s in sets}
        first = summary["methods"][with_score[score_keys[0]][0]]["ood"][score_keys[0]]
        ood_sets = [s for s in first if not s.endswith("_mean") and s not in grouped]
    if average is None:
        labels = {summary.get("id_sets", {}).get(g) for g in groups}
        average = len(labels) <= 1
    blocks = _layout(ood_sets, groups, average)
    rows = _rows(summary, score_keys, methods, with_score, blocks, metrics, id_accuracy, digits)
    df = _with_attrs(pd.DataFrame(rows), summary, "percent")
    df.attrs["notes"] += _id_set_notes(summary, [s for _, members in blocks for s in members])
    return df


def paper_layout_table(
    summary: Mapping[str, Any],
    table_name: str,
    *,
    score_keys: Sequence[str] = ("mcm", "neglabel"),
    methods: Sequence[str] | None = None,
    metrics: Sequence[str] = ("fpr95", "auroc"),
    digits: int = 2,
) -> pd.DataFrame:
    """Our numbers in the columns of the paper's Table 1 (MOS) or Table 2 (OpenOOD v1.5).

    Each paper column is filled by the same data set of ours, through the one mapping
    :data:`cmakit.report.paper_reference.PAPER_SET_BLOCKS` (Table 1's ``inaturalist_*`` holds our
    ``mos_inaturalist``, its ``average_*`` the MOS mean; Table 2's ``near_*`` the mean of
    ``ssb_hard`` and ``ninco``), never by a name that merely matches.

    Args:
        summary: A validated summary of the paper profile (it must hold the table's sets).
        table_name: ``"table1_mos"`` or ``"table2_openood_v15"``.
        score_keys: Scores to show (rows ``ZS_MCM``, ``CMA_NegLabel``, ...).
        methods: Methods to show (default: all in the summary).
        metrics: Metrics per column block, as the paper's (``fpr95``, ``auroc``).
        digits: Decimals in percent.

    Returns:
        DataFrame with the paper's column names; ``attrs["layout"] = table_name``, which
        :func:`paper_beside` requires before it shares columns with the paper's block.

    Raises:
        KeyError: Not one of the two OoD tables, or a set of the table the summary lacks.
    """
    if table_name not in PAPER_SET_BLOCKS:
        raise KeyError(f"{table_name!r} has no OoD layout; choose one of {list(PAPER_SET_BLOCKS)}.")
    blocks = [(stem, list(sets)) for stem, sets in PAPER_SET_BLOCKS[table_name].items()]
    methods = list(methods if methods is not None else summary["methods"])
    with_score = _methods_with(summary, score_keys, methods)
    rows = _rows(summary, score_keys, methods, with_score, blocks, metrics, False, digits)
    df = _with_attrs(pd.DataFrame(rows), summary, "percent")
    pairs = ", ".join(
        f"{stem} = {sets[0] if len(sets) == 1 else 'mean of ' + ' + '.join(sets)}"
        for stem, sets in blocks
    )
    df.attrs["notes"] += [f"Our columns hold our sets as the paper's: {pairs}."]
    df.attrs["notes"] += _id_set_notes(summary, [s for _, sets in blocks for s in sets])
    df.attrs["layout"] = table_name
    return df


def _methods_with(summary: Mapping[str, Any], score_keys: Sequence[str],
                  methods: Sequence[str]) -> dict[str, list[str]]:  # fmt: skip
    """``{score: [methods that have it]}``; raises KeyError for a score no method has."""
    with_score = {k: [m for m in methods if k in summary["methods"][m]["ood"]] for k in score_keys}
    for score, having in with_score.items():
        if not having:
            known = sorted(summary["methods"][methods[0]]["ood"])
            raise KeyError(f"No method has score {score!r}; {methods[0]!r} has {known}.")
    return with_score


def _rows(summary: Mapping[str, Any], score_keys: Sequence[str], methods: Sequence[str],
          with_score: Mapping[str, list[str]], blocks: list, metrics: Sequence[str],
          id_accuracy: bool, digits: int) -> list[dict[str, str]]:  # fmt: skip
    """One row per (method, score): ``method`` label, the block cells, ``id_accuracy``."""
    rows = []
    for method in methods:
        for score in (k for k in score_keys if method in with_score[k]):
            entry = summary["methods"][method]
            row = {"method": row_label(method, score)}
            row |= _metric_cells(entry["ood"][score], blocks, metrics, digits, f"{method}.{score}")
            if id_accuracy:
                row["id_accuracy"] = _cell(_per_seed(entry, "id_accuracy", method), digits, 100.0)
            rows.append(row)
    return rows


def _id_set_notes(summary: Mapping[str, Any], sets: Sequence[str]) -> list[str]:
    """``"ID test set of near, far: ..."`` for the groups (``summary["groups"]``) shown."""
    groups, labels = summary.get("groups", {}), summary.get("id_sets", {})
    by_label: dict[str, list[str]] = {}
    for group, members in groups.items():
        if group in labels and set(members) & set(sets):
            by_label.setdefault(labels[group], []).append(group)
    return [f"ID test set of {', '.join(gs)}: {label}." for label, gs in by_label.items()]


def _metric_cells(
    sets: Mapping[str, Any], blocks: list, metrics: Sequence[str], digits: int, where: str
) -> dict[str, str]:
    """``{<block>_<metric>: "mean ± std"}`` for one method and score (block = per-seed mean)."""
    missing = sorted({s for _, members in blocks for s in members} - set(sets))
    if missing:
        raise KeyError(f"{where} lacks OoD sets {missing}; it has {sorted(sets)}.")
    cells = {}
    for block, members in blocks:
        for metric in metrics:
            per_set = [_per_seed(sets[s], metric, f"{where}.{s}") for s in members]  # [sets, S]
            cells[f"{block}_{metric}"] = _cell(np.mean(per_set, axis=0), digits, 100.0)
    return cells


def _with_attrs(df: pd.DataFrame, summary: Mapping[str, Any], unit: str) -> pd.DataFrame:
    """Attach convention, estimators, profile and a note on units and seeds to ``df.attrs``."""
    n = len(summary.get("seeds", [])) or 1
    spread = f"mean ± std over {n} seeds (sample std)" if n > 1 else "a single seed (no std)"
    convention = summary.get("convention", "id_positive")
    df.attrs.update(
        convention=convention,
        fpr95_estimator=fpr95_estimator(convention, summary.get("fpr95_estimator")),
        aupr_estimator=summary.get("aupr_estimator", "trapezoid"),
        profile=summary.get("profile"),
        model=summary.get("model"),
        notes=[f"Our values: {unit}, {spread}."],
    )
    return df


def id_accuracy_table(summary: Mapping[str, Any], *, digits: int = 2) -> pd.DataFrame:
    """ID accuracy per method in percent (the Table 3 analogue): columns method, id_accuracy."""
    rows = [
        {
            "method": METHOD_LABELS.get(m, m),
            "id_accuracy": _cell(_per_seed(e, "id_accuracy", m), digits, 100.0),
        }
        for m, e in summary["methods"].items()
    ]
    unit = "top-1 accuracy in percent (argmax of cosine to the ID class prompts)"
    return _with_attrs(pd.DataFrame(rows), summary, unit)


def geometry_table(
    summary: Mapping[str, Any], *, paper: bool = True, digits: int = 3
) -> pd.DataFrame:
    """Embedding geometry per method (Table 4 analogue), raw units, ``mean ± std``.

    Columns follow :data:`GEOMETRY_COLUMNS`; a quantity the summary lacks prints ``—``.
    ``modality_gap`` is read from the method (or its ``geometry``).

    Args:
        summary: A validated summary.
        paper: Append the paper's Table 4 in its own ``source`` block with its own columns
            (``paper_uni_all``, ..., ``paper_align_ood``): a different quantity from ours.
        digits: Decimals.
    """
    rows = []
    for method, entry in summary["methods"].items():
        geo = {
            **entry.get("geometry", {}),
            **{k: v for k, v in entry.items() if k.startswith("modality_gap")},
        }
        row = {"method": METHOD_LABELS.get(method, method)}
        for col in GEOMETRY_COLUMNS:
            has = col in geo or f"{col}_per_seed" in geo
            row[col] = _cell(_per_seed(geo, col, method), digits, 1.0) if has else MISSING
        rows.append(row)
    df = _with_attrs(pd.DataFrame(rows), summary, "raw units")
    df.attrs["notes"].append(GEOMETRY_NOTE)
    if not paper:
        return df
    df.attrs["notes"].append(PAPER_GEOMETRY_NOTE)
    return paper_beside(df, "table4_geometry", digits=digits)


def _same_data(ours: pd.DataFrame, table_name: str) -> bool:
    """Whether our block holds the paper's data sets and quantities column for column."""
    if table_name in PAPER_SET_BLOCKS:
        return ours.attrs.get("layout") == table_name
    if table_name == "table3_id_accuracy":
        return ours.attrs.get("profile") == "paper"
    return False  # Table 4: the paper's geometry is not defined in public (PAPER_GEOMETRY_NOTE)


def paper_beside(
    ours: pd.DataFrame, table_name: str, *, ours_label: str | None = None, digits: int = 2
) -> pd.DataFrame:
    """Stack the paper's table under ours, each block labelled in a leading ``source`` column.

    The two blocks share a column only when it holds the same data set and quantity: Tables 1
    and 2 when ``ours`` comes from :func:`paper_layout_table` of that table, Table 3 on the
    paper profile. Otherwise (the embedded world, our own layout, Table 4) the paper's columns
    are prefixed ``paper_``, so its numbers never sit in one of our columns. A cell a block does
    not have prints ``—``; :func:`cmakit.report.writers.write_table` renders each source as its
    own labelled block.

    Args:
        ours: A table from this module (``method`` column plus value columns).
        table_name: ``"table1_mos"``, ``"table2_openood_v15"``, ``"table3_id_accuracy"`` or
            ``"table4_geometry"`` (see :func:`cmakit.report.paper_reference.paper_table`).
        ours_label: Label of our block (default: ``"ours (ImageNet-1k, ViT-B/16)"`` when
            ``ours.attrs["profile"] == "paper"``, else ``"ours (embedded world)"``).
        digits: Decimals of the paper's numbers (as printed in the paper: 2, Table 4: 3).
    """
    theirs = paper_table(table_name).copy()
    for col in theirs.columns.drop("method"):
        theirs[col] = [f"{v:.{digits}f}" if np.isfinite(v) else MISSING for v in theirs[col]]
    notes = []
    if not _same_data(ours, table_name):
        theirs = theirs.rename(columns={c: PAPER_PREFIX + c for c in theirs.columns.drop("method")})
        if table_name != "table4_geometry":
            notes.append(
                f"The paper's block (columns {PAPER_PREFIX}*) holds other data sets than ours, so "
                "it shares no column with ours; compare the direction of each comparison only."
            )
    columns = ["source", *ours.columns, *[c for c in theirs.columns if c not in ours.columns]]
    if ours_label is None:
        paper_run = ours.attrs.get("profile") == "paper"
        model = ours.attrs.get("model")
        ours_label = OURS_PAPER_PROFILE_LABEL if paper_run else OURS_LABEL
        if paper_run and model and model != "ViT-B-16":  # say which model made our numbers
            ours_label = f"ours (ImageNet-1k, {model})"
    blocks = [ours.assign(source=ours_label), theirs.assign(source=PAPER_LABEL)]
    df = pd.concat(blocks, ignore_index=True)[columns].fillna(MISSING)
    reference = f"Reference block: {PAPER_TABLES.get(table_name, table_name)}; {PAPER_SOURCE}."
    df.attrs.update(ours.attrs, paper_table=table_name)
    df.attrs["notes"] = [*ours.attrs.get("notes", []), *notes, reference]
    return df


def _holds_sets(summary: Mapping[str, Any], sets: Sequence[str], score: str) -> bool:
    """Whether every method with ``score`` has every OoD set in ``sets``."""
    entries = [m["ood"][score] for m in summary["methods"].values() if score in m["ood"]]
    return bool(entries) and all(set(sets) <= set(e) for e in entries)


def paper_comparison(
    summary: Mapping[str, Any], table_name: str, *, score_keys: Sequence[str] = ("mcm", "neglabel")
) -> pd.DataFrame:
    """One of the paper's Tables 1-4 beside ours, with a caption in ``attrs["caption"]``.

    Tables 1 and 2: on the paper profile our block is :func:`paper_layout_table` (each paper
    column beside the same data set of ours); on the embedded world, whose OoD sets are not the
    paper's, it is :func:`benchmark_table` in our own columns and the paper's table is a
    separate block (columns ``paper_*``). Table 3: :func:`id_accuracy_table`. Table 4:
    :func:`geometry_table`, whose paper block is always separate.

    Args:
        summary: A validated summary.
        table_name: ``"table1_mos"``, ``"table2_openood_v15"``, ``"table3_id_accuracy"`` or
            ``"table4_geometry"``.
        score_keys: Scores of our rows in Tables 1 and 2.

    Returns:
        The table of :func:`paper_beside`; ``attrs["caption"]`` says what it holds.
    """
    title = PAPER_TABLES.get(table_name, table_name)
    if table_name in PAPER_SET_BLOCKS:
        sets = [s for members in PAPER_SET_BLOCKS[table_name].values() for s in members]
        if _holds_sets(summary, sets, score_keys[0]):
            ours = paper_layout_table(summary, table_name, score_keys=score_keys)
            where = "each paper column beside the same data set of ours"
        else:
            ours = benchmark_table(summary, score_keys=score_keys, groups=summary.get("groups"),
                                   metrics=("fpr95", "auroc"), id_accuracy=False)  # fmt: skip
            where = "ours on other data sets, the paper's as a separate block"
        id_notes = [n for n in ours.attrs["notes"] if n.startswith("ID test set")]
        caption = " ".join([f"{title}: ours and the paper's, {where}.", *id_notes])
        return _captioned(paper_beside(ours, table_name), caption)
    if table_name == "table3_id_accuracy":
        return _captioned(paper_beside(id_accuracy_table(summary), table_name),
                          f"{title}: ours and the paper's")  # fmt: skip
    if table_name == "table4_geometry":
        return _captioned(geometry_table(summary, paper=True),
                          f"{title}: ours (documented reading) and the paper's, separate blocks")  # fmt: skip
    raise KeyError(f"Unknown paper table {table_name!r}; choose one of {list(PAPER_TABLES)}.")


def _captioned(df: pd.DataFrame, caption: str) -> pd.DataFrame:
    df.attrs["caption"] = caption
    return df
