"""From one model's embeddings to its numbers: ID accuracy, gap, geometry, OoD metrics.

Pure functions of an embeddings bundle (see :func:`cmakit.pipeline.steps.embed`); the
notebooks and the λ ablation share them, so every table is computed the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cmakit.geometry import alignment, gap_shift, modality_gap, uniformity_family
from cmakit.metrics import ood_metrics
from cmakit.pipeline.config import RunConfig
from cmakit.report import add_group_means
from cmakit.scores import energy_score, max_logit_score, mcm_score, msp_score, neglabel_score

#: Score keys of summary.json, in table order.
SCORES: tuple[str, ...] = ("mcm", "neglabel", "neglabel_grouped", "msp", "energy", "max_logit")


def id_accuracy(id_images: np.ndarray, id_labels: np.ndarray, id_texts: np.ndarray) -> float:
    """Zero-shot-style accuracy: argmax of cosine to the ID prompts (fraction in [0, 1])."""
    return float(np.mean((id_images @ id_texts.T).argmax(1) == id_labels))


def score_images(images: np.ndarray, emb: Mapping[str, np.ndarray], cfg: RunConfig, *,
                 seed: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """Every OoD score of ``images [N, D]`` (higher = more ID), keyed as :data:`SCORES`.

    MSP, Energy and MaxLogit read the model's own logits ``s * cos`` (``s`` its logit scale):
    the view of the fine-tuned model as a K-way classifier.
    """
    id_texts, neg = emb["id_texts"], emb["neg_texts"]
    logits = float(emb["logit_scale"]) * images @ id_texts.T
    groups = min(cfg.neglabel_groups, len(neg))
    return {
        "mcm": mcm_score(images, id_texts, temperature=cfg.mcm_temperature),
        "neglabel": neglabel_score(images, id_texts, neg, temperature=cfg.neglabel_temperature),
        "neglabel_grouped": neglabel_score(
            images, id_texts, neg, temperature=cfg.neglabel_temperature, groups=groups, seed=seed
        ),  # fmt: skip
        "msp": msp_score(logits),
        "energy": energy_score(logits),
        "max_logit": max_logit_score(logits),
    }


def ood_results(emb: Mapping[str, np.ndarray], cfg: RunConfig, groups: Mapping[str, Sequence[str]],
                *, seed: int = 0, scores: Sequence[str] = SCORES) -> dict[str, Any]:  # fmt: skip
    """``{score: {ood_set: {fpr95, auroc, aupr_in, aupr_out}, <group>_mean: {...}}}``."""
    sets = {k.split("/", 1)[1]: v for k, v in emb.items() if k.startswith("ood/")}
    id_scores = score_images(emb["id_images"], emb, cfg, seed=seed)
    ood_scores = {name: score_images(x, emb, cfg, seed=seed) for name, x in sets.items()}
    out: dict[str, Any] = {}
    for score in scores:
        per_set = {
            name: ood_metrics(
                id_scores[score],
                s[score],
                convention=cfg.convention,
                bootstrap=cfg.bootstrap,
                seed=seed,
            )  # fmt: skip
            for name, s in ood_scores.items()
        }
        out[score] = add_group_means(per_set, groups)
    return out


def geometry(emb: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Table 4 analogue: Uni-* (cmakit.geometry.READING), alignment, mean cosines.

    ``align_id`` is the Wang–Isola alignment of each ID test image with the prompt of its own
    class; ``align_ood`` of each OoD image with its nearest ID prompt (OoD images have no class
    of their own; this reading is ours, the paper does not define its Align columns).
    """
    images, labels, texts = emb["id_images"], emb["id_labels"], emb["id_texts"]
    fam = uniformity_family(images, texts, labels_image=labels, labels_text=np.arange(len(texts)))
    ood = np.concatenate([v for k, v in emb.items() if k.startswith("ood/")])
    nearest = texts[(ood @ texts.T).argmax(1)]
    return {
        **fam,
        "align_id": alignment(images, texts[labels]),
        "align_ood": alignment(ood, nearest),
    }


def evaluate(emb: Mapping[str, np.ndarray], cfg: RunConfig, groups: Mapping[str, Sequence[str]],
             *, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """One model, one seed: the per-seed record that :func:`cmakit.report.build_summary` folds."""
    return {
        "id_accuracy": id_accuracy(emb["id_images"], emb["id_labels"], emb["id_texts"]),
        "modality_gap": modality_gap(emb["id_images"], emb["id_texts"]),
        "geometry": geometry(emb),
        "ood": ood_results(emb, cfg, groups, seed=seed),
    }


def shift_bundle(emb: Mapping[str, np.ndarray], alpha: float) -> dict[str, np.ndarray]:
    """Close ``alpha`` of the ID image–text gap post hoc, moving every set along the same vector.

    The gap vector is the one between ID test images and ID prompts; OoD images move with the
    images, negative labels with the texts (:func:`cmakit.geometry.gap_shift`).
    """
    gap = emb["id_images"].mean(0) - emb["id_texts"].mean(0)
    out = dict(emb)
    images = [k for k in emb if k == "id_images" or k.startswith("ood/")]
    for key in images:
        out[key], _ = gap_shift(emb[key], emb["id_texts"], alpha, gap=gap)
    for key in ("id_texts", "neg_texts"):
        _, out[key] = gap_shift(emb["id_images"], emb[key], alpha, gap=gap)
    return out


def gap_shift_curve(
    emb: Mapping[str, np.ndarray],
    cfg: RunConfig,
    groups: Mapping[str, Sequence[str]],
    alphas: Sequence[float],
    *,
    seed: int = 0,
) -> dict[str, list[float]]:
    """ID accuracy, centroid gap and far-OoD NegLabel/MCM metrics as the gap is closed post hoc.

    Returns:
        Columns ``shift, id_accuracy, modality_gap, auroc, fpr95`` (NegLabel, mean over the far
        sets) and ``mcm_auroc``, one entry per ``alpha``.
    """
    cols: dict[str, list[float]] = {k: [] for k in
                                    ("shift", "id_accuracy", "modality_gap", "auroc", "fpr95", "mcm_auroc")}  # fmt: skip
    for alpha in alphas:
        shifted = shift_bundle(emb, float(alpha))
        ood = ood_results(shifted, cfg, groups, seed=seed, scores=("mcm", "neglabel"))
        cols["shift"].append(float(alpha))
        cols["id_accuracy"].append(
            id_accuracy(shifted["id_images"], shifted["id_labels"], shifted["id_texts"])
        )
        cols["modality_gap"].append(modality_gap(shifted["id_images"], shifted["id_texts"]))
        cols["auroc"].append(ood["neglabel"]["far_mean"]["auroc"])
        cols["fpr95"].append(ood["neglabel"]["far_mean"]["fpr95"])
        cols["mcm_auroc"].append(ood["mcm"]["far_mean"]["auroc"])
    return cols
