"""Figures of sweeps: the gap-shift experiment and the λ ablation.

Same conventions as :mod:`cmakit.report.figures`: fresh figures, fractions in, percent on the axes,
one colour per model, and the metric convention in the title.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cmakit.report.figures import (
    CONVENTION_TITLES,
    REFERENCE_STYLE,
    figure_style,
    model_color,
    model_label,
    new_figure,
)


def _arr(node: Mapping[str, Any], key: str, scale: float = 1.0) -> np.ndarray:
    if key not in node:
        raise KeyError(f"Missing {key!r}; present: {sorted(node)}.")
    return np.asarray(node[key], dtype=float) * scale


def _std(node: Mapping[str, Any], key: str, n: int, scale: float = 1.0) -> np.ndarray:
    """``<key>_std`` when present, else zeros (a single seed)."""
    return _arr(node, f"{key}_std", scale) if f"{key}_std" in node else np.zeros(n)


def plot_gap_shift(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    x_key: str = "shift",
    score_label: str = "NegLabel",
    ood_label: str = "far-OoD mean",
    convention: str = "id_positive",
) -> Figure:
    """ID accuracy, OoD AUROC and (when given) the remaining gap as the modalities are shifted.

    Args:
        curves: ``{model: {"shift": [K], "id_accuracy": [K], "auroc": [K]}}`` (fractions),
            optionally with ``modality_gap`` ``[K]`` (a third panel: the centroid gap after
            re-normalising) and ``id_accuracy_std`` / ``auroc_std`` ``[K]`` (drawn as bands).
        x_key: Key of the shift amounts (the ``alpha`` of :func:`cmakit.core.geometry.gap_shift`).
        score_label: Name of the OoD score behind ``auroc``.
        ood_label: Which OoD sets ``auroc`` averages.
        convention: Metric convention of the run (AUROC is the same in both; stated anyway).

    Returns:
        The figure (ID accuracy, AUROC, gap; dotted line at α = 0, the model as trained).
    """
    panels = [("id_accuracy", "ID accuracy", "%", 100.0),
              ("auroc", f"{score_label} AUROC, {ood_label}", "%", 100.0)]  # fmt: skip
    if all("modality_gap" in node for node in curves.values()):
        panels.append(("modality_gap", "gap left after re-normalising", "‖mean(i) − mean(t)‖", 1.0))
    with figure_style():
        fig, axes = new_figure(1, len(panels), panel=(4.0, 3.4))
        for ax, (key, name, unit, scale) in zip(axes[0], panels, strict=True):
            for k, (model, node) in enumerate(curves.items()):
                x, y = _arr(node, x_key), _arr(node, key, scale)
                color = model_color(model, k)
                ax.plot(x, y, "o-", ms=3, color=color, label=model_label(model))
                std = _std(node, key, len(x), scale)
                ax.fill_between(x, y - std, y + std, color=color, alpha=0.2, lw=0)
            ax.axvline(0.0, color="black", lw=0.8, ls=":")
            ax.set_xlabel("α, share of the gap closed")
            ax.set_title(name)
            ax.set_ylabel(unit)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
        fig.suptitle(
            f"Gap shift (α = 0: as trained, α = 1: centroids meet before re-normalising); "
            f"{CONVENTION_TITLES.get(convention, convention)}"
        )
    return fig


def _pareto_mask(fpr: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """True where no other point has lower-or-equal FPR and higher-or-equal accuracy."""
    n = len(fpr)
    dominated = [
        any(
            fpr[j] <= fpr[i] and acc[j] >= acc[i] and (fpr[j], acc[j]) != (fpr[i], acc[i])
            for j in range(n)
        )
        for i in range(n)
    ]
    return ~np.asarray(dominated, dtype=bool)


#: One marker per λ (with its colour), so that points that nearly coincide stay apart.
_LAM_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">")


def _lam_text(lam: float) -> str:
    return "λ = 0 (FLYP)" if lam == 0 else f"λ = {lam:g}"


def plot_ablation(
    rows: Sequence[Mapping[str, Any]],
    *,
    fpr_key: str = "fpr95",
    acc_key: str = "id_accuracy",
    gap_key: str = "modality_gap",
    score_label: str = "NegLabel",
    convention: str = "id_positive",
    reference: Mapping[str, float] | None = None,
) -> Figure:
    """The λ ablation: ID accuracy vs FPR95 (Pareto view) and modality gap vs λ.

    Args:
        rows: ``summary["ablation"]``: one row per λ with ``lam``, the three keys and
            optionally their ``_std`` (error bars over seeds). Fractions for accuracy and FPR.
        fpr_key: Key of the FPR95 of ``score_label``.
        acc_key: Key of the ID accuracy.
        gap_key: Key of the modality gap.
        score_label: Name of the OoD score behind ``fpr_key``.
        convention: Metric convention of the FPR95.
        reference: The zero-shot model's values under the same keys, drawn as dashed grey
            reference lines (its accuracy, FPR95 and gap); ``None``: no reference.

    Returns:
        The figure. One colour per λ, named in the legend below the panels (no labels on the
        points, so close points cannot overlap). Left: filled markers are Pareto-optimal (no
        other λ has both lower FPR and higher accuracy), hollow ones are dominated. Right:
        symlog λ axis, linear below the smallest positive λ, so λ = 0 has its own tick.
    """
    rows = sorted(rows, key=lambda r: float(r["lam"]))
    lam = np.array([float(r["lam"]) for r in rows])
    fpr = np.array([r[fpr_key] for r in rows], dtype=float) * 100
    acc = np.array([r[acc_key] for r in rows], dtype=float) * 100
    gap = np.array([r[gap_key] for r in rows], dtype=float)
    err = {k: np.array([r.get(f"{k}_std", 0.0) for r in rows]) for k in (fpr_key, acc_key, gap_key)}
    colors = mpl.colormaps["viridis"](np.linspace(0.0, 0.9, len(rows)))
    front = _pareto_mask(fpr, acc)
    with figure_style():
        fig, axes = new_figure(1, 2, panel=(4.6, 3.8))
        ax = axes[0][0]
        ax.plot(fpr, acc, color="0.7", lw=0.8, zorder=1)
        handles = []
        for i in range(len(rows)):
            handles.append(ax.errorbar(
                fpr[i], acc[i], xerr=err[fpr_key][i] * 100, yerr=err[acc_key][i] * 100,
                fmt=_LAM_MARKERS[i % len(_LAM_MARKERS)], ms=7, color=colors[i],
                mfc=colors[i] if front[i] else "white",
                mew=1.5, capsize=2, zorder=2, label=_lam_text(lam[i]),
            ))  # fmt: skip
        if reference:
            ax.axhline(reference[acc_key] * 100, **REFERENCE_STYLE)
            ax.axvline(reference[fpr_key] * 100, **REFERENCE_STYLE)
        ax.set_xlabel(f"{score_label} FPR95 (%, lower is better)")
        ax.set_ylabel("ID accuracy (%)")
        ax.set_title("Accuracy vs FPR95")
        _plot_gap_vs_lam(axes[0][1], lam, gap, err[gap_key], colors)
        if reference:
            axes[0][1].axhline(reference[gap_key], **REFERENCE_STYLE)
        extra = [Line2D([], [], ls="", marker="o", color="0.3", label="filled: Pareto-optimal"),
                 Line2D([], [], ls="", marker="o", color="0.3", mfc="white", mew=1.5,
                        label="hollow: dominated")]  # fmt: skip
        if reference:
            extra.append(Line2D([], [], **REFERENCE_STYLE, label="zero-shot"))
        handles += extra
        fig.legend(handles=handles, loc="outside lower center", frameon=False,
                   ncols=min(len(handles), 5))  # fmt: skip
        fig.suptitle(f"λ ablation, {_seeds_text(rows)}; "
                     f"{CONVENTION_TITLES.get(convention, convention)}")  # fmt: skip
    return fig


def _seeds_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """What each point of an ablation averages: ``"one seed per λ"`` or ``"mean ± std over 3
    seeds"`` (rows without ``seeds`` are counted as one seed)."""
    counts = {len(r.get("seeds") or [0]) for r in rows}
    if counts == {1}:
        return "one seed per λ"
    if len(counts) == 1:
        return f"mean ± std over {counts.pop()} seeds"
    return f"mean ± std over {min(counts)}–{max(counts)} seeds"


def _plot_gap_vs_lam(ax: Any, lam: np.ndarray, gap: np.ndarray, std: np.ndarray, colors) -> None:
    positive = lam[lam > 0]
    linthresh = float(positive.min()) if positive.size else 1.0
    ax.plot(lam, gap, color="0.7", lw=0.8, zorder=1)
    ax.errorbar(lam, gap, yerr=std, fmt="none", ecolor="0.4", capsize=2, zorder=2)
    for k in range(len(lam)):
        ax.scatter(lam[k], gap[k], color=colors[k], s=40, zorder=3,
                   marker=_LAM_MARKERS[k % len(_LAM_MARKERS)])  # fmt: skip
    ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
    decades = 10.0 ** np.arange(
        np.floor(np.log10(linthresh)), np.ceil(np.log10(lam.max() or 1)) + 1
    )
    ticks = ([0.0] if (lam == 0).any() else []) + [float(d) for d in decades]
    ax.set_xticks(ticks, ["0" if t == 0 else f"{t:g}" for t in ticks])
    ax.set_xlabel("λ (symlog axis; λ = 0 at its own tick)")
    ax.set_ylabel("modality gap ‖mean(i) − mean(t)‖₂")
    ax.set_title("Modality gap vs λ")
