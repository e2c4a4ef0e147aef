"""Render tables as CSV, Markdown and LaTeX files that state how their numbers were made.

The Markdown and LaTeX writers are small and dependency-free (no ``tabulate``, no ``jinja2``).
A ``source`` column (from :func:`cmakit.report.tables.paper_beside`) splits the output into labelled
blocks, so the paper's reference numbers are never mixed into ours.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cmakit.common.io import write_text
from cmakit.core.metrics import fpr95_estimator
from cmakit.report.tables import MISSING, PAPER_LABEL

CONVENTION_NOTES = {
    "id_positive": "Convention id_positive (paper / MOS): ID is the positive class; FPR95 = % of "
    "OoD accepted at 95% TPR of ID.",
    "ood_positive": "Convention ood_positive (OpenOOD v1.5): OoD is the positive class; FPR95 = "
    "% of ID rejected at the first threshold that catches 95% of OoD.",
}
FPR95_NOTES = {
    "interp": "FPR95 estimator interp (the paper's CMA code): np.interp(0.95, TPR, FPR) on "
    "scikit-learn's ROC points; 0 if no threshold reaches 95% TPR, the smallest FPR if all do. "
    "Tied scores give an interpolated FPR; when 95% of ID is an exact count it is the far end of "
    "the flat ROC run at TPR = 0.95.",
    "threshold": "FPR95 estimator threshold: the exact empirical threshold (no interpolation).",
}
AUPR_NOTES = {
    "trapezoid": "AUPR: trapezoidal area under the precision-recall curve (OpenOOD, CMA code).",
    "ap": "AUPR: average precision (MCM, NegLabel).",
}


def _blocks(df: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    """Split on ``source`` (order kept); each block drops the columns it has no value in."""
    if "source" not in df.columns:
        return [(None, df)]
    out = []
    for source in dict.fromkeys(df["source"]):
        block = df[df["source"] == source].drop(columns="source")
        keep = [c for c in block.columns if not (block[c].astype(str) == MISSING).all()]
        out.append((source, block[keep]))
    return out


def _notes(df: pd.DataFrame, convention: str | None, aupr_estimator: str | None) -> list[str]:
    """Notes on how the numbers were made: convention, AUPR estimator, extra notes, sources."""
    notes = []
    columns = " ".join(map(str, df.columns))
    if any(m in columns for m in ("fpr95", "auroc", "aupr")):
        convention = convention or df.attrs.get("convention")
        if convention not in CONVENTION_NOTES:
            raise ValueError(f"convention={convention!r}; choose one of {list(CONVENTION_NOTES)}.")
        notes.append(CONVENTION_NOTES[convention])
    if "fpr95" in columns:
        notes.append(FPR95_NOTES[fpr95_estimator(convention, df.attrs.get("fpr95_estimator"))])
    aupr = aupr_estimator or df.attrs.get("aupr_estimator")
    if "aupr" in columns:
        if aupr not in AUPR_NOTES:
            raise ValueError(f"aupr_estimator={aupr!r}; choose one of {list(AUPR_NOTES)}.")
        notes.append(AUPR_NOTES[aupr])
    notes += list(df.attrs.get("notes", []))
    if "source" in df.columns and PAPER_LABEL in set(df["source"]):
        notes.append(
            f"Rows labelled '{PAPER_LABEL}' are the paper's reported numbers under its own "
            "protocol, shown for reference only; they were not computed here."
        )
    return notes


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table: header, ``---`` separator, one line per row."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    align = ["---" if i == 0 else "---:" for i in range(len(df.columns))]
    return "\n".join(
        [line(df.columns), line(align), *(line(r) for r in df.itertuples(index=False))]
    )


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "²": r"$^2$",
    "—": "--",
}


def latex_escape(text: Any) -> str:
    """Escape LaTeX specials (``_ & % $ # { } ~ ^ \\``) and map ``±``, ``²``, ``—``."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(df: pd.DataFrame) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), first column left-aligned."""

    def line(cells: Sequence[Any]) -> str:
        return " & ".join(latex_escape(c) for c in cells) + r" \\"

    spec = "l" + "r" * (len(df.columns) - 1)
    body = [line(r) for r in df.itertuples(index=False)]
    return "\n".join(
        [
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            line(df.columns),
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
        ]
    )


def write_table(
    df: pd.DataFrame,
    path_stem: str | os.PathLike,
    *,
    caption: str,
    convention: str | None = None,
    aupr_estimator: str | None = None,
) -> dict[str, Path]:
    """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex`` atomically.

    Every file states the caption, the metric convention and (when AUPR columns are shown)
    the AUPR estimator. A ``source`` column splits the Markdown and LaTeX into labelled blocks,
    ours first; the CSV keeps it as a column. Read the CSV with ``pd.read_csv(p, comment="#")``.

    Args:
        df: A table from this module.
        path_stem: Path without suffix, e.g. ``run/tables/table1_mos``.
        caption: One sentence saying what the table shows.
        convention: ``"id_positive"`` or ``"ood_positive"`` (default: ``df.attrs``).
        aupr_estimator: ``"trapezoid"`` or ``"ap"`` (default: ``df.attrs``).

    Returns:
        ``{"csv": path, "md": path, "tex": path}``.
    """
    notes = _notes(df, convention, aupr_estimator)
    stem = Path(path_stem)
    paths = {ext: stem.with_name(f"{stem.name}.{ext}") for ext in ("csv", "md", "tex")}
    csv_head = "".join(f"# {t}\n" for t in [caption, *notes])
    write_text(paths["csv"], csv_head + df.to_csv(index=False))
    md = [f"**{caption}**", "", *(f"- {note}" for note in notes), ""]
    tex = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}"]
    for source, block in _blocks(df):
        heading = f"{source} (reference)" if source == PAPER_LABEL else source
        md += ([f"*{heading}*", ""] if source else []) + [to_markdown(block), ""]
        if source:
            tex.append(rf"\par\smallskip\textit{{{latex_escape(source)}}}\par\smallskip")
        tex += [r"\resizebox{\linewidth}{!}{%", to_latex(block), "}"]
    tex += [rf"\par\footnotesize {latex_escape(' '.join(notes))}", r"\end{table}", ""]
    write_text(paths["md"], "\n".join(md))
    write_text(paths["tex"], "\n".join(tex))
    return paths
