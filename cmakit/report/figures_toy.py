"""Figures of the primer's toy: points on the 3-D sphere, loss terms over steps, score histograms.

Same conventions as :mod:`cmakit.report.figures` (fresh figures, Okabe–Ito colours, no pyplot).
The spheres are duck-typed: anything with ``images`` and ``texts`` ``[N, 3]`` arrays and a
``kinds`` ``[N]`` array of ``"id"`` / ``"neg"`` / ``"ood"`` (e.g. :class:`cmakit.engine.toy.ToySphere`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cmakit.core.geometry import modality_gap
from cmakit.report.figures import OKABE_ITO, figure_style

#: (kind, modality) -> (legend label, colour, marker, size) of the sphere figure.
SPHERE_LAYERS = {
    ("id", "images"): ("ID images", OKABE_ITO["sky_blue"], "o", 30),
    ("id", "texts"): ("ID prompts", OKABE_ITO["blue"], "^", 40),
    ("neg", "images"): ("images of other concepts", "#BBBBBB", "o", 14),
    ("neg", "texts"): ("negative labels", OKABE_ITO["reddish_purple"], "v", 40),
    ("ood", "images"): ("OoD images", OKABE_ITO["orange"], "X", 40),
    ("ood", "texts"): ("captions of OoD concepts", "#BBBBBB", "^", 14),
}


def plot_sphere(
    spheres: Mapping[str, Any], *, title: str = "Embeddings on the sphere", pairs: bool = True
) -> Figure:
    """One 3-D panel per sphere: the unit sphere, both modalities, their centroids and the gap.

    Args:
        spheres: ``{panel title: sphere}`` (see the module docstring).
        title: Figure title.
        pairs: Draw a thin line from each ID image to its own prompt.

    Returns:
        The figure; each panel's title ends with its centroid gap ``‖mean(i) − mean(t)‖``, and
        the two centroids (inside the ball) are joined by a black segment: the gap vector.
    """
    u, v = np.mgrid[0 : 2 * np.pi : 24j, 0 : np.pi : 12j]
    ball = (np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v))
    with figure_style():
        fig = Figure(figsize=(3.6 * len(spheres), 4.0), layout="constrained")
        for n, (name, sphere) in enumerate(spheres.items()):
            ax = fig.add_subplot(1, len(spheres), n + 1, projection="3d")
            ax.plot_wireframe(*ball, color="0.85", lw=0.4)
            kinds = np.asarray(sphere.kinds)
            for (kind, modality), (label, color, marker, size) in SPHERE_LAYERS.items():
                xyz = np.asarray(getattr(sphere, modality))[kinds == kind]
                ax.scatter(*xyz.T, s=size, c=color, marker=marker, label=label, depthshade=False,
                           edgecolors="black", linewidths=0.3)  # fmt: skip
            if pairs:
                for i, t in zip(
                    sphere.images[kinds == "id"], sphere.texts[kinds == "id"], strict=True
                ):
                    ax.plot(*np.stack([i, t]).T, color="0.5", lw=0.6)
            ci, ct = np.mean(sphere.images, 0), np.mean(sphere.texts, 0)
            ax.plot(*np.stack([ci, ct]).T, color="black", lw=2.0)
            ax.scatter(*np.stack([ci, ct]).T, c=["black"], s=25, marker="o")
            gap = modality_gap(sphere.images, sphere.texts)
            ax.set_title(f"{name}\ngap {gap:.2f}")
            ax.set_box_aspect((1, 1, 1))
            ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), xticklabels=[], yticklabels=[],
                   zticklabels=[])  # fmt: skip
            ax.view_init(elev=20, azim=40)
        handles, labels = fig.axes[0].get_legend_handles_labels()
        handles.append(Line2D([], [], color="black", lw=2.0))
        labels.append("centroid gap (image mean → text mean)")
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, 2 * len(spheres)),
                   frameon=False)  # fmt: skip
        fig.suptitle(title)
    return fig


def plot_toy_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    *,
    title: str = "Training the toy",
    keys: Sequence[tuple[str, str]] = (
        ("contrastive_loss", "contrastive term"),
        ("cma_loss", "CMA term (λ · −logsumexp)"),
        ("modality_gap", "modality gap"),
        ("matched_cos", "cosine of matched pairs"),
    ),
    log_keys: Sequence[str] = ("contrastive_loss",),
) -> Figure:
    """One panel per history column, one line per run (viridis in the order given).

    Args:
        histories: ``{run label: rows}`` as returned by :func:`cmakit.engine.toy.train_toy`.
        title: Figure title.
        keys: ``(column, panel title)`` pairs.
        log_keys: Columns drawn on a log axis (the contrastive term falls by orders of magnitude).

    Returns:
        The figure.
    """
    colors = mpl.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(histories), 2)))
    with figure_style():
        fig = Figure(figsize=(3.2 * len(keys), 3.2), layout="constrained")
        axes = fig.subplots(1, len(keys), squeeze=False)[0]
        for ax, (key, name) in zip(axes, keys, strict=True):
            for color, (label, rows) in zip(colors, histories.items(), strict=False):
                ax.plot([r["step"] for r in rows], [r[key] for r in rows], color=color, label=label)
            if key in log_keys:
                ax.set_yscale("log")
            ax.set_title(name)
            ax.set_xlabel("Adam step")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6),
                   frameon=False)  # fmt: skip
        fig.suptitle(title)
    return fig


def plot_score_histograms(
    panels: Mapping[str, Mapping[str, np.ndarray]],
    *,
    xlabel: str = "score (higher = more ID)",
    title: str = "ID and OoD scores",
    bins: int = 20,
) -> Figure:
    """One panel per model: overlaid histograms of the ID and OoD scores.

    Args:
        panels: ``{panel title: {"ID": [n] scores, "OoD": [m] scores}}``.
        xlabel: Label of the score axis.
        title: Figure title.
        bins: Bins over the common range of all scores.

    Returns:
        The figure (ID in sky blue, OoD in orange).
    """
    everything = np.concatenate([np.asarray(s, float) for p in panels.values() for s in p.values()])
    edges = np.linspace(everything.min(), everything.max() + 1e-12, bins + 1)
    colors = {"ID": OKABE_ITO["sky_blue"], "OoD": OKABE_ITO["orange"]}
    with figure_style():
        fig = Figure(figsize=(3.4 * len(panels), 3.0), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
        for ax, (name, groups) in zip(axes, panels.items(), strict=True):
            for group, scores in groups.items():
                ax.hist(scores, bins=edges, alpha=0.6, color=colors.get(group), label=group)
            ax.set_title(name)
            ax.set_xlabel(xlabel)
        axes[0].set_ylabel("count")
        axes[0].legend()
        fig.suptitle(title)
    return fig
