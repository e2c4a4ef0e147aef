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

from cmakit.common.constants import MODEL_LABELS, OKABE_ITO
from cmakit.common.io import atomic_path

#: One colour per model in every figure: zero-shot a neutral grey (the reference), FLYP blue,
#: CMA vermillion; other models (λ values of a sweep) take the fallbacks in order.
MODEL_COLORS = {"zero_shot": "#808080", "flyp": OKABE_ITO["blue"], "cma": OKABE_ITO["vermillion"]}
_FALLBACK = tuple(
    OKABE_ITO[k] for k in ("bluish_green", "reddish_purple", "sky_blue", "orange", "black")
)
#: Style of a zero-shot reference line (a model that is not a curve of the plot).
REFERENCE_STYLE = {"color": MODEL_COLORS["zero_shot"], "ls": "--", "lw": 1.2, "zorder": 0}
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
# PCA panel layers: key -> (legend label, colour, marker, size, alpha), drawn in this order
# (the big image clouds first, the few texts on top so that they stay visible).
PCA_LAYERS = {
    "id_images": ("ID images", OKABE_ITO["sky_blue"], "o", 12, 0.5),
    "ood_images": ("OoD images", OKABE_ITO["orange"], "x", 12, 0.5),
    "neg_texts": ("negative labels (texts)", OKABE_ITO["reddish_purple"], "v", 16, 0.8),
    "id_texts": ("ID prompts (texts)", OKABE_ITO["black"], "*", 90, 1.0),
}
#: Layers ``ood:<set>`` (one per OoD set): colour and marker by the set's order.
OOD_STYLES = (
    (OKABE_ITO["orange"], "x"), (OKABE_ITO["vermillion"], "+"), (OKABE_ITO["bluish_green"], "1"),
    (OKABE_ITO["yellow"], "d"), (OKABE_ITO["blue"], "2"), ("#8C510A", "3"),
)  # fmt: skip


def model_color(model: str, order: int = 0) -> str:
    """The fixed colour of ``model`` (zero_shot grey, flyp blue, cma vermillion), else a fallback."""
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


def _layer_styles(keys: Sequence[str]) -> dict[str, tuple]:
    """Style of each layer key: :data:`PCA_LAYERS`, or ``ood:<set>`` styled by set order."""
    unknown = [k for k in keys if k not in PCA_LAYERS and not k.startswith("ood:")]
    if unknown:
        raise KeyError(
            f"Unknown PCA layers {sorted(unknown)}; use {list(PCA_LAYERS)} or 'ood:<set>'."
        )
    sets = [k for k in keys if k.startswith("ood:")]
    styles = {}
    for key, style in PCA_LAYERS.items():
        if key == "ood_images":  # per-set OoD layers take the place of the pooled one
            for n, k in enumerate(sets):
                color, marker = OOD_STYLES[n % len(OOD_STYLES)]
                styles[k] = (f"OoD: {k.removeprefix('ood:')}", color, marker, 14, 0.5)
        if key in keys:
            styles[key] = style
    return styles


def plot_pca_panels(
    projections: Mapping[str, Mapping[str, np.ndarray]],
    *,
    explained: Sequence[float] | None = None,
    title: str = "Joint PCA of image and text embeddings",
    axis_labels: Sequence[str] = ("PC1", "PC2"),
    panel: float = 4.0,
) -> Figure:
    """One scatter panel per model of 2-D projected embeddings (the paper's Figure 4 analogue).

    Args:
        projections: ``{model: {layer: [N, 2] array}}`` with layers among ``id_images``,
            ``id_texts``, ``neg_texts``, ``ood_images`` (see :data:`PCA_LAYERS`) or one
            ``ood:<set>`` layer per OoD set (told apart by colour and marker), e.g. from
            :func:`cmakit.core.geometry.joint_pca`. Panels share axis limits; the legend sits
            below the panels, off the data.
        explained: Variance fractions of the two axes, printed in the axis labels.
        title: Figure title.
        axis_labels: Names of the two axes (e.g. the gap direction and a residual PC).
        panel: Width of one panel, inches (its height follows the data's aspect).

    Returns:
        The figure.
    """
    keys = list(dict.fromkeys(k for layers in projections.values() for k in layers))
    styles = _layer_styles(keys)
    with figure_style():
        fig, axes = new_figure(1, len(projections), panel=(panel, panel))
        fig.get_layout_engine().set(h_pad=0.12)  # room between the title and the panel titles
        for ax, (model, layers) in zip(axes[0], projections.items(), strict=True):
            for key, (label, color, marker, size, alpha) in styles.items():
                if key in layers:
                    xy = np.asarray(layers[key], dtype=float).reshape(-1, 2)
                    edge = "white" if marker in "ov*d" else None
                    ax.scatter(*xy.T, s=size, c=color, marker=marker, alpha=alpha, label=label,
                               edgecolors=edge, linewidths=0.3 if edge else None)  # fmt: skip
            ax.set_title(model_label(model), color=model_color(model))
            ax.set_aspect("equal", adjustable="box")
            pcs = [axis_labels[k] + (f" ({explained[k]:.0%})" if explained else "") for k in (0, 1)]
            ax.set_xlabel(pcs[0])
            ax.set_ylabel(pcs[1])
        _share_limits(axes[0])
        # Equal aspect: fit the figure's height to the data, so flat clouds leave no blank band.
        (x0, x1), (y0, y1) = axes[0][0].get_xlim(), axes[0][0].get_ylim()
        height = float(np.clip(0.85 * panel * (y1 - y0) / max(x1 - x0, 1e-12), 1.0, panel))
        fig.set_size_inches(panel * len(projections), height + 1.5)
        handles, labels = axes[0][0].get_legend_handles_labels()
        legend = fig.legend(handles, labels, loc="outside lower center",
                            ncols=min(len(labels), 4), markerscale=1.6, frameon=False)  # fmt: skip
        for handle in legend.legend_handles:
            handle.set_alpha(1.0)  # the legend shows each layer's colour at full strength
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
        if metric == "auroc":
            ax.axhline(50, color="black", lw=1.0, ls=":", zorder=3, label="chance (50)")
        ax.legend(ncols=len(methods) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.22))
        convention = CONVENTION_TITLES.get(summary.get("convention", ""), "")
        ax.set_title(f"{metric.upper()} per OoD set, score {score}; {convention}")
    return fig


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    *,
    title: str = "Training curves: FLYP (λ = 0) vs CMA",
    reference: Mapping[str, float] | None = None,
) -> Figure:
    """Loss terms, learning rate and logit scale over optimiser steps, one colour per model.

    Args:
        histories: ``{model: [row, ...]}``; each row has ``step`` and any of ``loss``,
            ``contrastive_loss``, ``cma_loss``, ``lr``, ``logit_scale`` (missing keys and
            ``None`` values are skipped).
        title: Figure title.
        reference: Zero-shot values drawn as dashed grey lines, e.g. ``{"logit_scale": 26.1}``
            (the value every fine-tuning starts from).

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
            for key, _ in keys:
                if reference and key in reference:
                    ax.axhline(reference[key], **REFERENCE_STYLE)
            ax.set_title(name)
            ax.set_xlabel("step")
        proxies = [Line2D([], [], color=model_color(m, k)) for k, m in enumerate(histories)]
        labels = [model_label(m) for m in histories]
        if reference:
            proxies.append(Line2D([], [], **REFERENCE_STYLE))
            labels.append("zero-shot")
        axes[0][0].legend(proxies, labels)
        fig.suptitle(title)
    return fig
