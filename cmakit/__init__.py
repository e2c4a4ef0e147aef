"""cmakit: Cross-Modal Alignment (CMA) out-of-distribution detection with CLIP.

A reproducibility kit for Kim & Hwang, *Enhanced OoD Detection through Cross-Modal Alignment of
Multi-Modal Representations* (CVPR 2025). The public API below is re-exported lazily, so that
``import cmakit`` is instant and torch is imported only when a function that needs it is used.

Conventions used everywhere: embeddings are L2-normalised ``[N, D]`` arrays; OoD scores are
"higher = more in-distribution"; metrics are Python floats.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it. The one curated list of what cmakit exports.
_EXPORTS: dict[str, str] = {
    # training objective
    "cma_loss": "cmakit.losses",
    "CMALoss": "cmakit.losses",
    # OoD scores
    "mcm_score": "cmakit.scores",
    "neglabel_score": "cmakit.scores",
    "msp_score": "cmakit.scores",
    "max_logit_score": "cmakit.scores",
    "energy_score": "cmakit.scores",
    "get_score": "cmakit.scores",
    "list_scores": "cmakit.scores",
    # negative labels
    "wordnet_candidates": "cmakit.wordnet",
    "mine_negative_labels": "cmakit.mining",
    # metrics
    "fpr_at_95_tpr": "cmakit.metrics",
    "auroc": "cmakit.metrics",
    "aupr_in": "cmakit.metrics",
    "aupr_out": "cmakit.metrics",
    "ood_metrics": "cmakit.metrics",
    # geometry
    "modality_gap": "cmakit.geometry",
    "alignment": "cmakit.geometry",
    "uniformity": "cmakit.geometry",
    "uniformity_family": "cmakit.geometry",
    "joint_pca": "cmakit.geometry",
    "gap_shift": "cmakit.geometry",
    # paper reference data
    "paper_table": "cmakit.paper",
    # models, training, data, embeddings
    "load_clip": "cmakit.models",
    "TrainConfig": "cmakit.trainer",
    "train": "cmakit.trainer",
    "encode_images": "cmakit.embed",
    "encode_texts": "cmakit.embed",
    # the embedded world
    "build_world": "cmakit.world",
    "world_config": "cmakit.world",
    "pretrain_clip": "cmakit.pretrain",
    # configuration
    "from_dict": "cmakit.config",
    "ConfigError": "cmakit.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cmakit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
