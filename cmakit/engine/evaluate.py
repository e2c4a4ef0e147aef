"""The one evaluator: from one model's embeddings to its per-seed record.

:func:`evaluate` turns an :class:`~cmakit.engine.bundle.EmbeddingBundle` and the
:class:`ScoreSettings` of a run into ID accuracy, modality gap, geometry and every OoD metric,
computing each score through the registry of :mod:`cmakit.core.scores`. The notebook
pipeline, the λ ablation, the world's zero-shot report and the command line all call it, so
every number the kit prints is made the same way, with settings from the configuration only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cmakit.common.constants import CONVENTIONS
from cmakit.core.geometry import alignment, gap_shift, modality_gap, uniformity_family
from cmakit.core.metrics import ESTIMATORS, add_group_means, fpr95_estimator, ood_metrics
from cmakit.core.scores import SCORE_LABELS, get_score, score_inputs
from cmakit.engine.bundle import EmbeddingBundle

#: Score keys of the per-seed record and of summary.json, in table order: every registered score.
SCORES: tuple[str, ...] = tuple(SCORE_LABELS)
#: NegLabel shuffles its negatives with this seed before grouping (as NegLabel's code), so
#: the grouped scores of two runs differ only by their models.
GROUP_SHUFFLE_SEED = 0
#: Score inputs that hold negative labels (a score is skipped when its set is empty).
_NEGATIVE_INPUTS = ("neg_text_emb", "csp_text_emb")


@dataclasses.dataclass(frozen=True)
class ScoreSettings:
    """How scores and metrics are computed; every field comes from the run's configuration.

    Attributes:
        mcm_temperature: MCM's softmax temperature T on cosines (paper: 1).
        neglabel_temperature: NegLabel's τ (paper: 0.01).
        neglabel_groups: Groups of the grouped NegLabel score and of CSP (NegLabel's default and
            CSP's: 100); capped at the number of negative labels.
        convention: FPR@95 convention, ``"id_positive"`` (paper, MOS) or ``"ood_positive"``.
        aupr_estimator: ``"trapezoid"`` (OpenOOD, CMA code) or ``"ap"``.
        fpr_estimator: FPR@95 estimator, ``"interp"`` (the paper's, id_positive) or
            ``"threshold"``; ``None`` = the convention's own
            (:func:`cmakit.core.metrics.fpr95_estimator`).
        bootstrap: Bootstrap resamples for confidence intervals (0 = none).
        groups: ``{"near": [...], "far": [...]}`` OoD set names whose means are added.
        id_subsets: Group -> name of the bundle's ID subset its OoD sets are measured against
            (paper path: OpenOOD v1.5's near/far against its own ID list); a group not named
            here, and a set in no group, is measured against every ID test image.
        scores: The registered scores to compute.
    """

    mcm_temperature: float = 1.0
    neglabel_temperature: float = 0.01
    neglabel_groups: int = 100
    convention: str = "id_positive"
    aupr_estimator: str = "trapezoid"
    fpr_estimator: str | None = None
    bootstrap: int = 0
    groups: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    id_subsets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    scores: tuple[str, ...] = SCORES

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ValueError(f"convention={self.convention!r}; choose one of {list(CONVENTIONS)}.")
        if self.aupr_estimator not in ESTIMATORS:
            raise ValueError(
                f"aupr_estimator={self.aupr_estimator!r}; choose one of {list(ESTIMATORS)}."
            )
        fpr95_estimator(self.convention, self.fpr_estimator)  # ValueError on a bad pair
        unknown = sorted(set(self.id_subsets) - set(self.groups))
        if unknown:
            raise ValueError(
                f"id_subsets names groups {unknown} that are not in {list(self.groups)}."
            )
        for name in self.scores:
            get_score(name)  # KeyError listing the registered scores

    def id_subset_of(self, ood_set: str) -> str | None:
        """The ID subset ``ood_set`` is measured against (``None``: every ID test image)."""
        for group, sets in self.groups.items():
            if ood_set in sets and group in self.id_subsets:
                return self.id_subsets[group]
        return None

    @property
    def fpr95_estimator(self) -> str:
        """The FPR@95 estimator these settings use (``"interp"`` or ``"threshold"``)."""
        return fpr95_estimator(self.convention, self.fpr_estimator)

    def score_options(self, name: str, n_negatives: int) -> dict[str, Any]:
        """Keyword options of score ``name`` under these settings; ``n_negatives`` is the number
        of negative labels the score reads (NegLabel's, or CSP's for ``"csp"``)."""
        if name == "mcm":
            return {"temperature": self.mcm_temperature}
        if name == "neglabel":
            return {"temperature": self.neglabel_temperature}
        if name in ("neglabel_grouped", "csp"):
            return {"temperature": self.neglabel_temperature, "seed": GROUP_SHUFFLE_SEED,
                    "groups": max(1, min(self.neglabel_groups, n_negatives))}  # fmt: skip
        return {}


def id_accuracy(id_images: np.ndarray, id_labels: np.ndarray, id_texts: np.ndarray) -> float:
    """Zero-shot-style accuracy: argmax of cosine to the ID prompts (fraction in [0, 1])."""
    return float(np.mean((id_images @ id_texts.T).argmax(1) == id_labels))


def score_images(images: np.ndarray, bundle: EmbeddingBundle, settings: ScoreSettings,
                 scores: Sequence[str] | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Every score of ``images [N, D]`` (higher = more ID), through the score registry.

    Embedding scores read ``(images, id_texts[, neg_texts | csp_texts])``; classifier scores
    (MSP, Energy, MaxLogit) read the model's own logits ``s * cos(images, id_texts)``, ``s`` its
    logit scale. A score whose negative labels the bundle lacks is skipped.
    """
    inputs = {"image_emb": images, "id_text_emb": bundle.id_texts,
              "neg_text_emb": bundle.neg_texts, "csp_text_emb": bundle.csp_texts,
              "logits": bundle.logit_scale * images @ bundle.id_texts.T}  # fmt: skip
    out = {}
    for name in settings.scores if scores is None else scores:
        needs = score_inputs(name)
        negatives = [len(inputs[k]) for k in needs if k in _NEGATIVE_INPUTS]
        if 0 in negatives:
            continue
        fn = get_score(name)
        options = settings.score_options(name, negatives[0] if negatives else 0)
        out[name] = fn(*(inputs[k] for k in needs), **options)
    return out


def ood_results(bundle: EmbeddingBundle, settings: ScoreSettings, *, seed: int = 0,
                scores: Sequence[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """``{score: {ood_set: {fpr95, auroc, aupr_in, aupr_out}, <group>_mean: {...}}}``.

    Each OoD set is measured against the ID test images of its group's ID subset
    (``settings.id_subsets``; default: all of them). ``seed`` seeds the bootstrap only.
    """
    id_scores = score_images(bundle.id_images, bundle, settings, scores)
    ood_scores = {name: score_images(x, bundle, settings, scores) for name, x in bundle.ood.items()}
    id_rows = {name: bundle.id_rows(settings.id_subset_of(name)) for name in bundle.ood}
    out: dict[str, Any] = {}
    for score in id_scores:
        per_set = {
            name: ood_metrics(
                id_scores[score][id_rows[name]],
                s[score],
                convention=settings.convention,
                estimator=settings.aupr_estimator,
                fpr_estimator=settings.fpr95_estimator,
                bootstrap=settings.bootstrap,
                seed=seed,
            )  # fmt: skip
            for name, s in ood_scores.items()
        }
        out[score] = add_group_means(per_set, settings.groups) if settings.groups else per_set
    return out


def geometry(bundle: EmbeddingBundle) -> dict[str, float]:
    """Table 4 analogue: Uni-* (cmakit.core.geometry.READING), alignment, mean cosines.

    ``align_id`` is the Wang–Isola alignment of each ID test image with the prompt of its own
    class; ``align_ood`` of each OoD image with its nearest ID prompt (OoD images have no class
    of their own; this reading is ours, the paper does not define its Align columns).
    """
    images, labels, texts = bundle.id_images, bundle.id_labels, bundle.id_texts
    fam = uniformity_family(images, texts, labels_image=labels, labels_text=np.arange(len(texts)))
    ood = bundle.ood_pooled()
    out = {**fam, "align_id": alignment(images, texts[labels])}
    if len(ood):
        out["align_ood"] = alignment(ood, texts[(ood @ texts.T).argmax(1)])
    return out


def evaluate(bundle: EmbeddingBundle, settings: ScoreSettings, *, seed: int = 0) -> dict[str, Any]:
    """One model, one seed: the per-seed record that :func:`cmakit.report.summary.build_summary`
    folds.

    Returns:
        ``{"id_accuracy", "modality_gap", "geometry": {...}, "ood": {score: {set: metrics}}}``,
        all fractions or plain numbers.
    """
    return {
        "id_accuracy": id_accuracy(bundle.id_images, bundle.id_labels, bundle.id_texts),
        "modality_gap": modality_gap(bundle.id_images, bundle.id_texts),
        "geometry": geometry(bundle),
        "ood": ood_results(bundle, settings, seed=seed),
    }


def shift_bundle(bundle: EmbeddingBundle, alpha: float) -> EmbeddingBundle:
    """Close ``alpha`` of the ID image–text gap post hoc, moving every set along the same vector.

    The gap vector is the one between ID test images and ID prompts; OoD images move with the
    images, negative labels with the texts (:func:`cmakit.core.geometry.gap_shift`).
    """
    gap = bundle.id_images.mean(0) - bundle.id_texts.mean(0)

    def images(x: np.ndarray) -> np.ndarray:
        return gap_shift(x, bundle.id_texts, alpha, gap=gap)[0]

    def texts(t: np.ndarray) -> np.ndarray:
        return gap_shift(bundle.id_images, t, alpha, gap=gap)[1] if len(t) else t

    return bundle.replace(id_images=images(bundle.id_images), id_texts=texts(bundle.id_texts),
                          neg_texts=texts(bundle.neg_texts), csp_texts=texts(bundle.csp_texts),
                          ood={k: images(v) for k, v in bundle.ood.items()})  # fmt: skip


def gap_shift_curve(bundle: EmbeddingBundle, settings: ScoreSettings, alphas: Sequence[float],
                    *, seed: int = 0) -> dict[str, list[float]]:  # fmt: skip
    """ID accuracy, centroid gap and far-OoD NegLabel/MCM metrics as the gap is closed post hoc.

    Returns:
        Columns ``shift, id_accuracy, modality_gap, auroc, fpr95`` (NegLabel, mean over the far
        sets) and ``mcm_auroc``, one entry per ``alpha``.
    """
    names = ("shift", "id_accuracy", "modality_gap", "auroc", "fpr95", "mcm_auroc")
    cols: dict[str, list[float]] = {k: [] for k in names}
    for alpha in alphas:
        shifted = shift_bundle(bundle, float(alpha))
        ood = ood_results(shifted, settings, seed=seed, scores=("mcm", "neglabel"))
        cols["shift"].append(float(alpha))
        cols["id_accuracy"].append(
            id_accuracy(shifted.id_images, shifted.id_labels, shifted.id_texts)
        )
        cols["modality_gap"].append(modality_gap(shifted.id_images, shifted.id_texts))
        cols["auroc"].append(ood["neglabel"]["far_mean"]["auroc"])
        cols["fpr95"].append(ood["neglabel"]["far_mean"]["fpr95"])
        cols["mcm_auroc"].append(ood["mcm"]["far_mean"]["auroc"])
    return cols
