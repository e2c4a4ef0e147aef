"""cmakit: Cross-Modal Alignment (CMA) out-of-distribution detection with CLIP.

A reproducibility kit for Kim & Hwang, *Enhanced OoD Detection through Cross-Modal Alignment of
Multi-Modal Representations* (CVPR 2025). The public API below is re-exported lazily, so that
``import cmakit`` is instant and torch is imported only when a function that needs it is used.

Conventions used everywhere: embeddings are L2-normalised ``[N, D]`` arrays; OoD scores are
"higher = more in-distribution"; metrics are Python floats.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

__version__ = "0.1.0"

# open_clip imports huggingface_hub, which imports tqdm.auto: in a Jupyter kernel without
# ipywidgets, that import warns "IProgress not found" (and tqdm falls back to its text bar).
# cmakit's own bars never use tqdm.auto without ipywidgets (cmakit.common.progress.bar), so the
# notice only says what cmakit already knows. Installed here, before any cmakit module imports
# open_clip, so that it holds whichever module a notebook imports first.
warnings.filterwarnings("ignore", message="IProgress not found")

# Public name -> module that defines it. The one curated list of what cmakit exports.
_EXPORTS: dict[str, str] = {
    # training objective
    "cma_loss": "cmakit.core.losses",
    "CMALoss": "cmakit.core.losses",
    # OoD scores
    "mcm_score": "cmakit.core.scores",
    "neglabel_score": "cmakit.core.scores",
    "msp_score": "cmakit.core.scores",
    "max_logit_score": "cmakit.core.scores",
    "energy_score": "cmakit.core.scores",
    "get_score": "cmakit.core.scores",
    "list_scores": "cmakit.core.scores",
    # negative labels
    "wordnet_candidates": "cmakit.data.wordnet",
    "csp_pool": "cmakit.data.csp",
    "read_negative_labels": "cmakit.engine.negatives",
    "mine_negative_labels": "cmakit.core.mining",
    # metrics
    "fpr_at_95_tpr": "cmakit.core.metrics",
    "auroc": "cmakit.core.metrics",
    "aupr_in": "cmakit.core.metrics",
    "aupr_out": "cmakit.core.metrics",
    "ood_metrics": "cmakit.core.metrics",
    # geometry
    "modality_gap": "cmakit.core.geometry",
    "alignment": "cmakit.core.geometry",
    "uniformity": "cmakit.core.geometry",
    "uniformity_family": "cmakit.core.geometry",
    "joint_pca": "cmakit.core.geometry",
    "gap_shift": "cmakit.core.geometry",
    "text_side_fraction": "cmakit.core.geometry",
    "geometry_measures": "cmakit.core.geometry",
    "geometry_targets": "cmakit.core.geometry",
    # paper reference data
    "paper_table": "cmakit.report.paper_reference",
    # models, training, data, embeddings
    "load_clip": "cmakit.models.factory",
    "TrainConfig": "cmakit.engine.trainer",
    "train": "cmakit.engine.trainer",
    "encode_images": "cmakit.engine.embed",
    "encode_texts": "cmakit.engine.embed",
    # the embedded world
    "build_world": "cmakit.data.world",
    "world_config": "cmakit.data.world",
    "pretrain_clip": "cmakit.engine.pretrain",
    # the embedding explorer
    "explore": "cmakit.pipeline.explore",
    # does a reproduction agree with the reference?
    "compare_runs": "cmakit.pipeline.compare",
    # configuration
    "from_dict": "cmakit.common.strict_config",
    "ConfigError": "cmakit.common.strict_config",
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
