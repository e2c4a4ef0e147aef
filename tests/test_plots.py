"""Every figure builds from small synthetic inputs and saves as non-empty PNG and PDF."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from cmakit.report.figures import (
    MODEL_COLORS,
    OKABE_ITO,
    model_color,
    plot_auroc_bars,
    plot_pca_panels,
    plot_training_curves,
    save_figure,
)
from cmakit.report.figures_sweeps import _pareto_mask, plot_ablation, plot_gap_shift
from cmakit.report.figures_toy import plot_score_histograms, plot_sphere, plot_toy_curves
from cmakit.report.summary import OOD_METRICS, build_summary

MODELS = ["zero_shot", "flyp", "cma"]
SETS = ["ssb_hard", "ninco", "inaturalist"]


def _check_saved(fig: Figure, tmp_path, name: str) -> None:
    assert isinstance(fig, Figure)
    png, pdf = save_figure(fig, tmp_path / "figs" / name)
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000
    assert sorted(p.name for p in png.parent.iterdir() if p.stem == name) == [
        f"{name}.pdf",
        f"{name}.png",
    ]  # no temporary files left behind


@pytest.fixture
def summary() -> dict:
    rng = np.random.default_rng(0)

    def result() -> dict:
        ood = {s: {m: float(rng.uniform(0.1, 0.9)) for m in OOD_METRICS} for s in SETS}
        return {"id_accuracy": 0.7, "modality_gap": 0.5, "geometry": {}, "ood": {"neglabel": ood}}

    per_seed = {m: [result(), result()] for m in MODELS}
    groups = {"near": SETS[:2], "far": SETS[2:]}
    return build_summary("quick", [0, 1], per_seed, [], {}, "id_positive", groups=groups)


def test_model_colours_are_fixed():
    assert model_color("zero_shot") == MODEL_COLORS["zero_shot"]
    assert model_color("cma") != model_color("flyp")
    assert model_color("unknown", 0) not in MODEL_COLORS.values()
    # colour-blind safe: FLYP and CMA are Okabe-Ito colours, zero-shot a neutral grey
    assert {model_color("flyp"), model_color("cma")} <= set(OKABE_ITO.values())
    r, g, b = (int(MODEL_COLORS["zero_shot"][k : k + 2], 16) for k in (1, 3, 5))
    assert r == g == b


def _legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for leg in [*fig.legends, *(a.get_legend() for a in fig.axes)] if leg
            for t in leg.get_texts()]  # fmt: skip


def test_pca_panels(tmp_path):
    rng = np.random.default_rng(0)
    layers = {
        "id_images": (40, 0),
        "id_texts": (5, 2),
        "neg_texts": (30, -2),
        "ood_images": (20, 1),
    }
    proj = {m: {k: rng.normal(c, 1, (n, 2)) for k, (n, c) in layers.items()} for m in MODELS}
    fig = plot_pca_panels(proj, explained=[0.4, 0.2])
    assert len(fig.axes) == 3 and fig.axes[0].get_xlim() == fig.axes[2].get_xlim()
    assert fig.axes[1].get_xlabel() == "PC1 (40%)"
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1  # off the data
    _check_saved(fig, tmp_path, "pca")
    per_set = {m: {"id_images": rng.normal(0, 1, (9, 2)), "ood:near": rng.normal(1, 1, (5, 2)),
                   "ood:far": rng.normal(2, 1, (5, 2))} for m in MODELS}  # fmt: skip
    fig = plot_pca_panels(per_set)
    assert {"OoD: near", "OoD: far"} <= set(_legend_texts(fig))
    colours = {tuple(c.get_facecolor()[0]) for c in fig.axes[0].collections}
    assert len(colours) == 3  # every OoD set its own colour
    with pytest.raises(KeyError, match="Unknown PCA layers"):
        plot_pca_panels({"cma": {"images": np.zeros((2, 2))}})


def test_auroc_bars(tmp_path, summary):
    fig = plot_auroc_bars(summary, score="neglabel", ood_sets=[*SETS, "near_mean", "far_mean"])
    ax = fig.axes[0]
    assert len(ax.patches) == 3 * 5
    assert "chance (50)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "ID positive" in ax.get_title() and "AUROC" in ax.get_title()
    _check_saved(fig, tmp_path, "auroc")


def test_training_curves(tmp_path):
    hist = {
        "flyp": [{"step": s, "loss": 2 / (s + 1), "contrastive_loss": 2 / (s + 1), "cma_loss": None,
                  "lr": 1e-5, "logit_scale": 100.0} for s in range(20)],
        "cma": [{"step": s, "loss": 1.9 / (s + 1), "contrastive_loss": 2 / (s + 1),
                 "cma_loss": -0.1, "lr": 1e-5, "logit_scale": 99.0} for s in range(20)],
    }  # fmt: skip
    fig = plot_training_curves(hist)
    assert len(fig.axes) == 4
    assert len(fig.axes[1].lines) == 3  # two contrastive curves, one CMA term (FLYP has none)
    _check_saved(fig, tmp_path, "training")
    fig = plot_training_curves(hist, reference={"logit_scale": 100.0})
    assert len(fig.axes[2].lines) == 3 and "zero-shot" in _legend_texts(fig)


def test_gap_shift(tmp_path):
    x = np.linspace(-1, 1, 9)
    curves = {
        m: {"shift": x, "id_accuracy": 0.8 - 0.1 * x**2, "auroc": 0.9 - 0.05 * k * x,
            "auroc_std": np.full(9, 0.01)}
        for k, m in enumerate(MODELS)
    }  # fmt: skip
    fig = plot_gap_shift(curves)
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "NegLabel AUROC, far-OoD mean"
    _check_saved(fig, tmp_path, "gap_shift")
    for node in curves.values():
        node["modality_gap"] = 0.5 * (1 - x)
    assert len(plot_gap_shift(curves).axes) == 3  # the gap left after re-normalising


def test_ablation(tmp_path):
    rows = [
        {"lam": lam, "id_accuracy": acc, "id_accuracy_std": 0.01, "fpr95": fpr, "fpr95_std": 0.02,
         "modality_gap": gap, "modality_gap_std": 0.01}
        for lam, acc, fpr, gap in [(0.0, 0.80, 0.30, 0.8), (1e-3, 0.81, 0.25, 0.6),
                                   (1e-2, 0.78, 0.26, 0.4), (1e-1, 0.70, 0.40, 0.2)]
    ]  # fmt: skip
    fig = plot_ablation(rows)
    gap_ax = fig.axes[1]
    assert gap_ax.get_xscale() == "symlog"
    assert [t.get_text() for t in gap_ax.get_xticklabels()][:2] == ["0", "0.001"]
    assert not fig.axes[0].texts  # λ values are named in the legend, not printed on the points
    legend = _legend_texts(fig)
    assert {"λ = 0 (FLYP)", "λ = 0.001", "λ = 0.1", "filled: Pareto-optimal"} <= set(legend)
    assert "zero-shot" not in legend
    _check_saved(fig, tmp_path, "ablation")
    zero_shot = {"id_accuracy": 0.6, "fpr95": 0.2, "modality_gap": 0.7}
    fig = plot_ablation(rows, reference=zero_shot)
    assert "zero-shot" in _legend_texts(fig)
    assert [ln.get_ydata()[0] for ln in fig.axes[1].lines if ln.get_linestyle() == "--"] == [0.7]
    # the title says what a point averages: one seed is not "± std over seeds"
    assert "one seed per λ" in fig.get_suptitle() and "std" not in fig.get_suptitle()
    for row in rows:
        row["seeds"] = [0, 1, 2]
    assert "mean ± std over 3 seeds" in plot_ablation(rows).get_suptitle()


def test_pareto_mask():
    fpr = np.array([30.0, 25.0, 26.0, 40.0, 25.0])
    acc = np.array([80.0, 81.0, 78.0, 70.0, 81.0])
    assert _pareto_mask(fpr, acc).tolist() == [False, True, False, False, True]


def test_toy_figures(tmp_path):
    from cmakit.core.geometry import modality_gap
    from cmakit.engine.toy import toy_sphere, train_toy

    start = toy_sphere(2, 2, 1, seed=0)
    trained, history = train_toy(start, lam=0.1, steps=4, record_every=2)
    fig = plot_sphere({"start": start, "trained": trained})
    gap = modality_gap(start.images, start.texts)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == f"start\ngap {gap:.2f}"
    _check_saved(fig, tmp_path, "sphere")
    fig = plot_toy_curves({"a": history, "b": history})
    assert len(fig.axes) == 4 and fig.axes[0].get_yscale() == "log"
    _check_saved(fig, tmp_path, "toy_curves")
    rng = np.random.default_rng(0)
    fig = plot_score_histograms({m: {"ID": rng.random(30), "OoD": rng.random(20)} for m in "ab"})
    assert len(fig.axes) == 2
    _check_saved(fig, tmp_path, "hist")


def test_image_grid(tmp_path):
    from cmakit.report.figures_scores import plot_image_grid

    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (5, 3, 8, 8))  # normalised like the models' inputs
    fig = plot_image_grid(images, [f"image {k}" for k in range(5)], ncols=3)
    assert len(fig.axes) == 6 and fig.axes[4].get_title() == "image 4"
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (8, 8, 3) and 0.0 <= shown.min() and shown.max() <= 1.0
    _check_saved(fig, tmp_path, "images")
    with pytest.raises(ValueError, match="titles"):
        plot_image_grid(images, ["one"])
    with pytest.raises(ValueError, match="images must be"):
        plot_image_grid(images[:, :2], ["a"] * 5)
