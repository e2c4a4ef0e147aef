"""Stage 5, records: the per-seed record of each model, through the one evaluator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmakit.common.constants import METHODS
from cmakit.common.io import read_json, write_json
from cmakit.engine.evaluate import ScoreSettings, evaluate
from cmakit.pipeline import products
from cmakit.pipeline.config import RunConfig, model_lam, model_tag
from cmakit.pipeline.run_data import id_subsets, ood_groups
from cmakit.pipeline.stages.embeddings import embed, embeddings_path

#: AUPR estimator of every run (OpenOOD's and the CMA code's trapezoid rule).
AUPR_ESTIMATOR = "trapezoid"


def score_settings(cfg: RunConfig) -> ScoreSettings:
    """The run's scoring settings, from its configuration only (the evaluator reads no other)."""
    return ScoreSettings(
        mcm_temperature=cfg.mcm_temperature, neglabel_temperature=cfg.neglabel_temperature,
        neglabel_groups=cfg.neglabel_groups, convention=cfg.convention,
        aupr_estimator=AUPR_ESTIMATOR, bootstrap=cfg.bootstrap, groups=ood_groups(cfg),
        id_subsets=id_subsets(cfg),
    )  # fmt: skip


def metrics_path(cfg: RunConfig, method: str, seed: int, lam: float | None = None) -> Path:
    """``metrics/<model>-seed<s>-<fingerprint>.json`` of one model's per-seed record."""
    weight = model_lam(cfg, method, lam)
    key = products.metrics_key(cfg, weight, seed)
    return Path(cfg.run_dir) / "metrics" / f"{model_tag(weight, seed)}-{key}.json"


def evaluate_model(cfg: RunConfig, method: str, seed: int, *,
                   lam: float | None = None) -> dict[str, Any]:  # fmt: skip
    """The per-seed record of one model (``lam`` overrides the method's λ); cached as JSON
    under ``metrics/<model>-seed<s>-<fingerprint>.json``."""
    weight = model_lam(cfg, method, lam)
    path = metrics_path(cfg, method, seed, lam)
    cached = products.reuse(path, lambda p: read_json(p)["record"])
    if cached is not None:
        return cached
    record = evaluate(embed(cfg, method, seed, lam=lam), score_settings(cfg), seed=seed)
    write_json(path, {"method": method, "lam": weight, "seed": seed,
                      "fingerprint": products.metrics_key(cfg, weight, seed),
                      "embeddings": embeddings_path(cfg, method, seed, lam).name,
                      "record": record})  # fmt: skip
    return record


def seed_record(cfg: RunConfig, method: str, seed: int) -> dict[str, Any]:
    """The evaluation of one (method, seed): :func:`evaluate_model` of its model."""
    return evaluate_model(cfg, method, seed)


def all_records(cfg: RunConfig) -> dict[str, list[dict[str, Any]]]:
    """``{method: [record per seed]}`` for zero-shot, FLYP and CMA."""
    return {m: [seed_record(cfg, m, s) for s in cfg.seeds] for m in METHODS}
