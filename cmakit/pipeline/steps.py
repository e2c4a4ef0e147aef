"""The notebooks' index of the run's stages: one import gives every stage function.

Each name lives in its stage module (:mod:`cmakit.pipeline.stages`); this module defines nothing.
"""

from __future__ import annotations

from cmakit.pipeline.config import method_lam
from cmakit.pipeline.run_data import ood_groups, run_data
from cmakit.pipeline.session import setup
from cmakit.pipeline.stages.ablation import (
    ablation_metrics,
    ablation_point,
    ablation_reference,
    ablation_rows,
)
from cmakit.pipeline.stages.base_model import base_model, pretrain_history
from cmakit.pipeline.stages.embeddings import embed, embeddings_path
from cmakit.pipeline.stages.finetune import (
    KEEP_CHECKPOINTS,
    finetune,
    finetune_processes,
    load_model,
    model_dir,
    read_history,
    torchrun_command,
    train_config,
)
from cmakit.pipeline.stages.negative_labels import (
    csp_labels,
    csp_prompts,
    negative_labels,
    negative_labels_path,
    negative_prompts,
)
from cmakit.pipeline.stages.records import all_records, evaluate_model, score_settings, seed_record

__all__ = [
    "KEEP_CHECKPOINTS", "ablation_metrics", "ablation_point", "ablation_reference",
    "ablation_rows", "all_records", "base_model", "csp_labels", "csp_prompts", "embed",
    "embeddings_path", "evaluate_model", "finetune", "finetune_processes", "load_model",
    "method_lam", "model_dir", "negative_labels", "negative_labels_path", "negative_prompts",
    "ood_groups", "pretrain_history", "read_history", "run_data", "score_settings",
    "seed_record", "setup", "torchrun_command", "train_config",
]  # fmt: skip
