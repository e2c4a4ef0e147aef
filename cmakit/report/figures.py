"""Figures of a run: embedding PCA panels, AUROC per OoD set, training curves.

Every function takes plain arrays or the summary dict, draws on a fresh
:class:`matplotlib.figure.Figure` (no pyplot state, rendered with Agg, shown inline by Jupyter)
and returns it; :func:`save_figure` writes PNG and PDF atomically. Each model keeps one colour
everywhere (:data:`MODEL_COLORS`). The sweep figures (gap shift, λ ablation) are in
:mod:`cmakit.report.figures_sweeps`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cmakit.common.constants import MODEL_LABELS
from cmakit.common.io import atomic_path

MODEL_COLORS = {"zero_shot": "#7f7f7f", "flyp": "#1f77b4", "cma": "#ff7f0e"}
_FALLBACK = ("#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
CONVENTION_TITLES = {
    "id_positive": "ID positive (paper / MOS)",
    "ood_positive": "OoD positive (OpenOOD v1.5)",
}
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.bbox": "tight",
}
# PCA panel layers: key -> (legend label, colour, marker, size, alpha), drawn in this order.
PCA_LAYERS = {
    "neg_texts": ("negative-label texts", "#9467bd", ".", 6, 0.35),
    "ood_images": ("OoD images", "#d62728", "x", 10, 0.5),
    "id_images": ("ID images", "#1f77b4", "o", 8, 0.5),
    "id_texts": ("ID texts", "#2ca02c", "*", 60, 0.95),
}


def model_color(model: str, order: int = 0) -> str:
    """The fixed colour of ``model`` (zero_shot grey, flyp blue, cma orange), else a fallback."""
    return MODEL_COLORS.get(model, _FALLBACK[order % len(_FALLBACK)])


def model_label(model: str) -> str:
    """Display name of a model key (``"zero_shot"`` -> ``"zero-shot"``)."""
    return MODEL_LABELS.get(model, model)


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply :data:`STYLE` while artists are created (fonts are fixed at creation)."""
    with mpl.rc_context(STYLE):
        yield


def new_figure(nrows: int, ncols: int, *, panel: tuple[float, float] = (4.0, 3.4)) -> tuple:
    """A figure with an ``[nrows, ncols]`` array of axes, each ``panel`` inches."""
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig: Figure, path_stem: str | os.PathLike, *, dpi: int = 150) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` atomically.

    Args:
        fig: The figure.
        path_stem: Path without suffix; parent folders are created.
        dpi: PNG resolution.

    Returns:
        ``[png_path, pdf_path]``.
    """
    stem = Path(path_stem)
    paths = []
    for fmt in ("png", "pdf"):
        path = stem.with_name(f"{stem.name}.{fmt}")
        with figure_style(), atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
        paths.append(path)
    return paths


def plot_pca_panels(
    projections: Mapping[str, Mapping[str, np.ndarray]],
    *,
    explained: Sequence[float] | None = None,
    title: str = "Joint PCA of image and text embeddings",
    axis_labels: Sequence[str] = ("PC1", "PC2"),
) -> Figure:
    """One scatter panel per model of 2-D projected embeddings (the paper's Figure 4 analogue).

    Args:
        projections: ``{model: {layer: [N, 2] array}}`` with layers among ``id_images``,
            ``id_texts``, ``neg_texts``, ``ood_images`` (see :data:`PCA_LAYERS`), e.g. from
            :func:`cmakit.core.geometry.joint_pca`. Panels share axis limits.
        explained: Variance fractions of the two axes, printed in the axis labels.
        title: Figure title.
        axis_labels: Names of the two axes (e.g. the gap direction and a residual PC).

    Returns:
        The figure.
    """
    with figure_style():
        fig, axes = new_figure(1, len(projections), panel=(4.0, 4.0))
        for ax, (model, layers) in zip(axes[0], projections.items(), strict=True):
            unknown = set(layers) - set(PCA_LAYERS)
            if unknown:
                raise KeyError(f"Unknown PCA layers {sorted(unknown)}; use {list(PCA_LAYERS)}.")
            for key, (label, color, marker, size, alpha) in PCA_LAYERS.items():
                if key in layers:
                    xy = np.asarray(layers[key], dtype=float).reshape(-1, 2)
                    ax.scatter(*xy.T, s=size, c=color, marker=marker, alpha=alpha, label=label)
            ax.set_title(model_label(model), color=model_color(model))
            ax.set_aspect("equal", adjustable="box")
            pcs = [axis_labels[k] + (f" ({explained[k]:.0%})" if explained else "") for k in (0, 1)]
            ax.set_xlabel(pcs[0])
            ax.set_ylabel(pcs[1])
        _share_limits(axes[0])
        axes[0][0].legend(loc="best", markerscale=1.5, framealpha=0.8)
        fig.suptitle(title)
    return fig


def _share_limits(axes: Sequence[Any]) -> None:
    xs = [ax.get_xlim() for ax in axes]
    ys = [ax.get_ylim() for ax in axes]
    for ax in axes:
        ax.set_xlim(min(x[0] for x in xs), max(x[1] for x in xs))
        ax.set_ylim(min(y[0] for y in ys), max(y[1] for y in ys))


def plot_auroc_bars(
    summary: Mapping[str, Any],
    *,
    score: str,
    ood_sets: Sequence[str] | None = None,
    metric: str = "auroc",
    methods: Sequence[str] | None = None,
) -> Figure:
    """Grouped bars of one metric per OoD set, one bar per model, error bars = std over seeds.

    Args:
        summary: A validated summary (see :mod:`cmakit.report.summary`).
        score: Score key, e.g. ``"neglabel"``.
        ood_sets: Sets (or group means such as ``"near_mean"``) in bar order (default: all).
        metric: ``"auroc"``, ``"fpr95"``, ``"aupr_in"`` or ``"aupr_out"``; shown in percent.
        methods: Models to show (default: all in the summary).

    Returns:
        The figure.
    """
    methods = list(methods if methods is not None else summary["methods"])
    first = summary["methods"][methods[0]]["ood"][score]
    sets = list(ood_sets if ood_sets is not None else first)
    width = 0.8 / len(methods)
    with figure_style():
        fig, axes = new_figure(1, 1, panel=(max(5.0, 1.1 * len(sets) + 1.5), 3.6))
        ax = axes[0][0]
        x = np.arange(len(sets))
        for k, method in enumerate(methods):
            node = summary["methods"][method]["ood"][score]
            mean = np.array([node[s][metric] for s in sets]) * 100
            std = np.array([node[s].get(f"{metric}_std", 0.0) for s in sets]) * 100
            offset = (k - (len(methods) - 1) / 2) * width
            ax.bar(
                x + offset,
                mean,
                width,
                yerr=std,
                capsize=2,
                label=model_label(method),
                color=model_color(method, k),
            )
        ax.set_xticks(
            x,
            [s.removesuffix("_mean") + (" (mean)" if s.endswith("_mean") else "") for s in sets],
            rotation=20,
            ha="right",
        )
        ax.set_ylabel(f"{metric.upper()} (%)")
        ax.set_ylim(0, 100)
        ax.legend(ncols=len(methods), loc="upper center", bbox_to_anchor=(0.5, -0.22))
        convention = CONVENTION_TITLES.get(summary.get("convention", ""), "")
        ax.set_title(f"{metric.upper()} per OoD set, score {score}; {convention}")
    return fig


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    *,
    title: str = "Training curves: FLYP (λ = 0) vs CMA",
) -> Figure:
    """Loss terms, learning rate and logit scale over optimiser steps, one colour per model.

    Args:
        histories: ``{model: [row, ...]}``; each row has ``step`` and any of ``loss``,
            ``contrastive_loss``, ``cma_loss``, ``lr``, ``logit_scale`` (missing keys and
            ``None`` values are skipped).
        title: Figure title.

    Returns:
        The figure (panels: total loss; contrastive and CMA terms; logit scale; learning rate).
    """
    panels = [
        ("Total loss", [("loss", "-")]),
        (
            "Loss terms (solid: contrastive, dashed: CMA)",
            [("contrastive_loss", "-"), ("cma_loss", "--")],
        ),
        ("Logit scale", [("logit_scale", "-")]),
        ("Learning rate", [("lr", "-")]),
    ]
    with figure_style():
        fig, axes = new_figure(1, len(panels), panel=(3.6, 3.0))
        for ax, (name, keys) in zip(axes[0], panels, strict=True):
            for k, (model, rows) in enumerate(histories.items()):
                for key, style in keys:
                    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
                    if pts:
                        xy = np.asarray(pts, dtype=float).T
                        ax.plot(*xy, style, lw=1.3, color=model_color(model, k))
            ax.set_title(name)
            ax.set_xlabel("step")
        proxies = [Line2D([], [], color=model_color(m, k)) for k, m in enumerate(histories)]
        axes[0][0].legend(proxies, [model_label(m) for m in histories])
        fig.suptitle(title)
    return fig
