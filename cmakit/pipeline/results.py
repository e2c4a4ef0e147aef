"""Collect a run's results: the summary, its fingerprints and timings, and the PCA layers.

The notebooks call these to turn the per-seed records of every (method, seed)
(:mod:`cmakit.pipeline.stages.records`, one JSON each under ``metrics/``, so that every number
in a table can be traced to a file) and the λ ablation into the documents of the run folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmakit.common.constants import METHODS
from cmakit.common.io import read_json, write_json
from cmakit.engine.bundle import EmbeddingBundle
from cmakit.pipeline import products
from cmakit.pipeline.config import RunConfig, method_lam
from cmakit.pipeline.run_data import id_set_labels, ood_groups
from cmakit.pipeline.stages.ablation import ablation_rows
from cmakit.pipeline.stages.finetune import model_dir
from cmakit.pipeline.stages.records import AUPR_ESTIMATOR, all_records, score_settings


def fingerprints(cfg: RunConfig) -> dict[str, Any]:
    """The fingerprints of every product a summary of ``cfg`` is built from."""
    out: dict[str, Any] = {"base_model": products.base_model_key(cfg),
                           "negatives": products.negatives_key(cfg), "metrics": {}}  # fmt: skip
    for method in METHODS:
        for seed in cfg.seeds:
            out["metrics"][f"{method}-seed{seed}"] = products.metrics_key(
                cfg, method_lam(cfg, method), seed
            )
    out["ablation"] = {f"lam{lam:g}-seed{s}": products.metrics_key(cfg, float(lam), s)
                       for lam in cfg.ablation_lams for s in cfg.seeds[: cfg.ablation_seeds]}  # fmt: skip
    return out


#: The layers whose PCA gives the axes of notebook 4's panels: the ID images and the texts
#: (ID prompts and negative labels). OoD images are projected onto those axes, not fitted: the
#: paper's figure is a PCA of ID image and text embeddings, and three OoD sets would otherwise
#: outweigh the ID images and steer the axes.
PCA_FIT_LAYERS = ("id_images", "id_texts", "neg_texts")


def pca_projections(
    embs: dict[str, EmbeddingBundle], *, max_points: int = 400, seed: int = 0,
    fit: Sequence[str] = PCA_FIT_LAYERS,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, list[float]]]:  # fmt: skip
    """Per model, every layer of :func:`pca_layers` projected onto two principal axes fitted on
    the layers named in ``fit`` (those the model has).

    Returns:
        ``({model: {layer: [n, 2]}}, {model: [explained variance of axis 1, axis 2]})``; the
        variance fractions are those of the fitted layers.
    """
    from cmakit.core.geometry import pca_axes

    projections, explained = {}, {}
    for model, emb in embs.items():
        layers = pca_layers(emb, max_points=max_points, seed=seed)
        fitted = [layers[k] for k in fit if k in layers and len(layers[k])]
        if not fitted:
            raise ValueError(f"None of the layers {list(fit)} to fit the PCA on; "
                             f"{model!r} has {list(layers)}.")  # fmt: skip
        mean, axes, ratio = pca_axes(*fitted, n_components=2)
        projections[model] = {k: (v - mean) @ axes.T for k, v in layers.items()}
        explained[model] = [float(r) for r in ratio]
    return projections, explained


def gap_projections(
    embs: dict[str, EmbeddingBundle], *, max_points: int = 400, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """Per model, the four layers on the gap direction and the top orthogonal PC.

    The gap is the one between the model's ID test images and ID prompts
    (:func:`cmakit.core.geometry.gap_axes`); plain PCA can hide it when the spread inside each
    modality is larger than the distance between them.
    """
    from cmakit.core.geometry import gap_axes

    out = {}
    for model, emb in embs.items():
        layers = pca_layers(emb, max_points=max_points, seed=seed)
        proj = gap_axes(emb.id_images, emb.id_texts, *layers.values())
        out[model] = dict(zip(layers, proj, strict=True))
    return out


def pca_layers(
    emb: EmbeddingBundle, *, max_points: int = 400, seed: int = 0
) -> dict[str, np.ndarray]:
    """The four layers of the PCA figure, each subsampled to ``max_points`` rows (fixed seed).

    Layers: ``id_images``, ``id_texts`` (one prompt per class), ``neg_texts`` and one
    ``ood:<set>`` layer per OoD set (so that the figures tell the sets apart).
    """
    rng = np.random.default_rng(seed)
    layers = {"id_images": emb.id_images, "id_texts": emb.id_texts, "neg_texts": emb.neg_texts,
              **{f"ood:{name}": x for name, x in emb.ood.items()}}  # fmt: skip
    return {
        k: v if len(v) <= max_points else v[np.sort(rng.choice(len(v), max_points, replace=False))]
        for k, v in layers.items()
    }


def timings(cfg: RunConfig) -> dict[str, Any]:
    """Seconds per stage recorded so far (``metrics/timings.json``) and per fine-tuning run."""
    out: dict[str, Any] = {}
    path = Path(cfg.run_dir) / "metrics" / "timings.json"
    if path.is_file():
        out.update(read_json(path))
    runs = {}
    for method in ("flyp", "cma"):
        for seed in cfg.seeds:
            done = model_dir(cfg, method, seed) / "result.json"
            if done.is_file():
                runs[f"{method}-seed{seed}"] = read_json(done)["wall_time_s"]
    if runs:
        out["finetune_s"] = runs
    return out


def build_run_summary(cfg: RunConfig, *, write: bool = True) -> dict[str, Any]:
    """Assemble and validate the run's summary; with ``write``, save ``<run_dir>/summary.json``."""
    from cmakit.report.summary import build_summary, validate_summary

    summary = build_summary(
        cfg.profile, cfg.seeds, all_records(cfg), ablation_rows(cfg), timings(cfg),
        cfg.convention, groups=ood_groups(cfg), aupr_estimator=AUPR_ESTIMATOR,
        fpr_estimator=score_settings(cfg).fpr95_estimator, id_sets=id_set_labels(cfg),
    )  # fmt: skip
    validate_summary(summary)
    summary["model"] = cfg.model
    summary["fingerprints"] = fingerprints(cfg)
    if write:
        write_json(Path(cfg.run_dir) / "summary.json", summary)
    return summary
