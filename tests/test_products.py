"""Products keyed by their inputs: a changed parameter recomputes exactly what it affects.

Each test starts from one finished smoke-profile run folder, changes one parameter of one class
(fine-tuning, scoring, metric convention, negative labels), rebuilds the summary and checks which
products were written anew and that the summary's numbers follow the new configuration.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cmakit.pipeline import products, results
from cmakit.pipeline.config import resolve

pytestmark = pytest.mark.slow

PRODUCT_DIRS = ("models", "embeddings", "metrics", "negatives")


def _products(run: Path) -> dict[str, int]:
    """Every product file (not caches or histories) -> its modification time."""
    out = {}
    for sub in PRODUCT_DIRS:
        for p in (run / sub).rglob("*"):
            if (
                p.is_file()
                and "cache" not in p.parts
                and p.suffix in (".json", ".npz", ".tsv", ".pt")
            ):
                if p.name.startswith("step_") or p.name == "timings.json":
                    continue
                out[str(p.relative_to(run))] = p.stat().st_mtime_ns
    return out


def _changed(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {k for k, t in after.items() if before.get(k) != t}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished smoke run (summary built) and its configuration."""
    root = tmp_path_factory.mktemp("products")
    cfg = resolve({"profile": "smoke", "run_dir": str(root / "base"),
                   "cache_dir": str(root / "cache")})  # fmt: skip
    summary = results.build_run_summary(cfg)
    return cfg, summary


@pytest.fixture()
def run(base_run, tmp_path):
    """A private copy of the finished run folder, and its configuration there."""
    cfg, summary = base_run
    folder = tmp_path / "run"
    shutil.copytree(cfg.run_dir, folder)
    return resolve({**vars(cfg), "run_dir": str(folder)}), summary


def _rebuild(cfg, **changes):
    new = resolve({**vars(cfg), **changes})
    before = _products(Path(cfg.run_dir))
    summary = results.build_run_summary(new)
    return new, summary, _changed(before, _products(Path(cfg.run_dir)))


def test_unchanged_rerun_recomputes_nothing(run):
    cfg, summary = run
    new, again, changed = _rebuild(cfg)
    assert changed == set()
    assert (
        again["methods"] == summary["methods"] and again["fingerprints"] == summary["fingerprints"]
    )


def test_changed_lambda_retrains_only_the_cma_model(run):
    cfg, summary = run
    new, after, changed = _rebuild(cfg, lam=0.5)
    assert any(p.startswith("models/lam0.5-seed0-") for p in changed)
    assert not any("lam0-" in p or "zero_shot" in p for p in changed), changed
    assert {p.split("/")[0] for p in changed} == {"models", "embeddings", "metrics"}
    assert after["methods"]["flyp"] == summary["methods"]["flyp"]
    assert after["methods"]["zero_shot"] == summary["methods"]["zero_shot"]
    assert after["methods"]["cma"]["modality_gap"] != summary["methods"]["cma"]["modality_gap"]
    # the λ = 0.5 model is a new product; the λ = 0.1 one is still there, untouched
    assert len(list((Path(cfg.run_dir) / "models").glob("lam0.1-seed0-*"))) == 1


def test_changed_convention_rescores_without_reembedding(run):
    cfg, summary = run
    new, after, changed = _rebuild(cfg, convention="ood_positive")
    assert changed and all(p.startswith("metrics/") for p in changed), changed
    old = summary["methods"]["zero_shot"]["ood"]["neglabel"]["far_mean"]
    now = after["methods"]["zero_shot"]["ood"]["neglabel"]["far_mean"]
    assert after["convention"] == "ood_positive"
    assert now["auroc"] == pytest.approx(old["auroc"])  # AUROC does not depend on it
    assert now["fpr95"] != old["fpr95"]


def test_changed_score_temperature_rescores_only(run):
    cfg, summary = run
    new, after, changed = _rebuild(cfg, mcm_temperature=0.01)
    assert changed and all(p.startswith("metrics/") for p in changed), changed
    # MCM re-scored: its metrics move (FPR95 alone can coincide on a small smoke set)
    before, now = (s["methods"]["flyp"]["ood"]["mcm"]["far_mean"] for s in (summary, after))
    assert now != before and now["auroc"] != before["auroc"], (before, now)


def test_changed_negative_fraction_remines_and_reembeds_but_keeps_models(run):
    cfg, summary = run
    new, after, changed = _rebuild(cfg, neg_fraction=0.3)
    assert {p.split("/")[0] for p in changed} == {"negatives", "embeddings", "metrics"}
    old_tsv = Path(cfg.run_dir) / "negatives" / f"{products.negatives_key(cfg)}.tsv"
    new_tsv = Path(cfg.run_dir) / "negatives" / f"{products.negatives_key(new)}.tsv"
    assert len(new_tsv.read_text().splitlines()) < len(old_tsv.read_text().splitlines())
    assert (after["methods"]["zero_shot"]["ood"]["neglabel"]["far_mean"]
            != summary["methods"]["zero_shot"]["ood"]["neglabel"]["far_mean"])  # fmt: skip


def test_ablation_rows_of_several_seeds_fold_into_the_summary(base_run, tmp_path):
    """Each ablation point's file carries its own fingerprint; folding seeds must not trip on it."""
    cfg, _ = base_run
    folder = tmp_path / "two-seeds"
    shutil.copytree(cfg.run_dir, folder)
    two = resolve({**vars(cfg), "run_dir": str(folder), "seeds": [0, 1], "ablation_seeds": 2})
    summary = results.build_run_summary(two)
    assert [row["lam"] for row in summary["ablation"]] == [0.0, 0.1]
    assert len(summary["ablation"][0]["modality_gap_per_seed"]) == 2
    assert len(summary["fingerprints"]["ablation"]) == 4


def test_fingerprints_follow_exactly_their_stage_fields():
    cfg = resolve({"profile": "smoke", "run_dir": "/tmp/x"})
    base = {
        k: getattr(products, k)(cfg, 0.1, 0) for k in ("model_key", "embeddings_key", "metrics_key")
    }
    for field, value, moved in [
        ("finetune_lr", 5e-4, {"model_key", "embeddings_key", "metrics_key"}),
        ("test_prompt", "a {}", {"embeddings_key", "metrics_key"}),
        ("neg_pool", "neglabel", {"embeddings_key", "metrics_key"}),
        ("neglabel_groups", 2, {"metrics_key"}),
        ("convention", "ood_positive", {"metrics_key"}),
        ("threads", 1, set()),
        ("device", "cpu", set()),
        ("num_workers", 3, set()),  # the loss stays the global batch's, whatever the split
        ("finetune_micro_batch_size", 4, set()),
        ("grad_checkpointing", True, set()),
    ]:
        new = resolve({**vars(cfg), field: value})
        now = {k: getattr(products, k)(new, 0.1, 0) for k in base}
        assert {k for k in base if base[k] != now[k]} == moved, field
