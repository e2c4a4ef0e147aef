"""Stage 6, the λ ablation: one fine-tuning, embedding and evaluation per (λ, seed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from cmakit.common.io import read_json, write_json
from cmakit.pipeline import products
from cmakit.pipeline.config import RunConfig
from cmakit.pipeline.stages.records import evaluate_model


def ablation_point(cfg: RunConfig, lam: float, seed: int) -> dict[str, Any]:
    """Fine-tune with ``lam``, embed, evaluate; one JSON per point makes it resumable.

    λ = 0 and λ = ``cfg.lam`` are the FLYP and CMA models of the same seed (same fingerprint).

    Returns:
        ``{lam, seed, fingerprint, wall_s}`` and the columns of :func:`ablation_metrics` (per
        OoD group, and the mean of the group means).
    """
    key = products.metrics_key(cfg, float(lam), seed)
    path = Path(cfg.run_dir) / "metrics" / "ablation" / f"lam{lam:g}-seed{seed}-{key}.json"
    cached = products.reuse(path, read_json)
    if cached is not None:
        return cached
    start = time.perf_counter()
    result = evaluate_model(cfg, "cma", seed, lam=float(lam))
    row: dict[str, Any] = {"lam": float(lam), "seed": seed, "fingerprint": key,
                           **ablation_metrics(result)}  # fmt: skip
    row["wall_s"] = time.perf_counter() - start
    write_json(path, row)
    return row


def ablation_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The columns of an ablation row from a per-seed record.

    ``id_accuracy``, ``modality_gap`` and, for the MCM and NegLabel scores,
    ``<score>_<group>_<metric>`` (FPR95, AUROC): the mean of each OoD group over its own sets,
    each measured against the group's own ID test set (on the paper path OpenOOD's near and far
    against OpenOOD's ID list, MOS against the full ImageNet val), never one mean over the sets
    of several groups. ``<score>_<metric>`` is the mean of those group means, each group counted
    once whatever its number of sets (notebook 6's one-axis view; read the group columns to see
    where a λ helps).
    """
    row = {"id_accuracy": record["id_accuracy"], "modality_gap": record["modality_gap"]}
    for score in ("mcm", "neglabel"):
        per = record["ood"][score]
        groups = [k.removesuffix("_mean") for k in per if k.endswith("_mean")]
        if not groups:
            raise ValueError(f"The record's {score} metrics have no group means (keys "
                             f"{sorted(per)}); the run's configuration names no OoD groups.")  # fmt: skip
        for metric in ("fpr95", "auroc"):
            for group in groups:
                row[f"{score}_{group}_{metric}"] = per[f"{group}_mean"][metric]
            row[f"{score}_{metric}"] = float(np.mean([per[f"{g}_mean"][metric] for g in groups]))
    return row


def ablation_reference(cfg: RunConfig) -> dict[str, float]:
    """The zero-shot model in the ablation's columns, averaged over the ablation's seeds: the
    reference every λ is compared with (no fine-tuning at all)."""
    rows = [ablation_metrics(evaluate_model(cfg, "zero_shot", seed))
            for seed in cfg.seeds[: cfg.ablation_seeds]]  # fmt: skip
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def ablation_rows(cfg: RunConfig) -> list[dict[str, Any]]:
    """The ablation points of this configuration (computed if missing), one per (λ, seed).

    Each point's file keeps its fingerprint; the rows leave it out, as the seeds of one λ are
    folded together (the summary lists the fingerprints apart, under ``fingerprints``).
    """
    rows = [ablation_point(cfg, lam, seed)
            for lam in cfg.ablation_lams for seed in cfg.seeds[: cfg.ablation_seeds]]  # fmt: skip
    return [{k: v for k, v in row.items() if k != "fingerprint"} for row in rows]
