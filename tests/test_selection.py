"""Recipe selection on validation data: the pure choices, and that no test set is ever read."""

from __future__ import annotations

import pytest
import torch

from cmakit.pipeline import selection, steps
from cmakit.pipeline.config import resolve
from cmakit.pipeline.run_data import first_per_class

TEST_PARTS = ("id_test", "ood", "groups")


class _ValidationOnly:
    """A benchmark whose test parts (ID test split, test OoD sets and their groups) raise."""

    def __init__(self, bench) -> None:
        self._bench = bench

    def __getattr__(self, name: str):
        if name in TEST_PARTS:
            raise AssertionError(f"a test part of the benchmark was read: {name}")
        return getattr(self._bench, name)


@pytest.fixture(scope="module")
def smoke_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("selection")
    return resolve(profile="smoke", run_dir=str(root / "run"), cache_dir=str(root / "cache"),
                   threads=1)  # fmt: skip


@pytest.fixture
def guarded(monkeypatch):
    """Every stage's data pass through ``run_data.embedded_benchmark``: guard it at the source."""
    from cmakit.pipeline import run_data

    real = run_data.embedded_benchmark
    monkeypatch.setattr(run_data, "embedded_benchmark",
                        lambda cfg, seed: _ValidationOnly(real(cfg, seed)))  # fmt: skip


def test_smallest_within_prefers_the_gentler_value_inside_the_tolerance():
    assert selection.smallest_within([1e-4, 3e-4, 1e-3], [60.0, 70.6, 71.0], 0.5) == 3e-4
    assert selection.smallest_within([1e-4, 3e-4, 1e-3], [60.0, 70.4, 71.0], 0.5) == 1e-3
    assert selection.smallest_within([30, 3, 10], [71.0, 71.0, 50.0], 0.0) == 3  # order-free
    with pytest.raises(ValueError, match="equal length"):
        selection.smallest_within([1, 2], [1.0], 0.5)


def test_choose_lam_keeps_accuracy_then_maximises_validation_auroc():
    lams, accs, aurocs = [1e-3, 1e-2, 1e-1, 1.0], [70.0, 69.5, 68.0, 60.0], [80, 82, 90, 95]
    lam, ok = selection.choose_lam(lams, accs, aurocs, flyp_accuracy=70.0, max_drop=1.0)
    assert lam == 1e-2 and ok == [True, True, False, False]  # 1e-1 and 1 lose accuracy
    lam, ok = selection.choose_lam(lams, [10.0] * 4, aurocs, flyp_accuracy=70.0, max_drop=1.0)
    assert lam == 1e-3 and not any(ok)  # none eligible: the smallest


def test_first_per_class_takes_the_first_n_of_every_class():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1])
    assert first_per_class(labels, 2).tolist() == [0, 1, 2, 3, 4, 6]
    with pytest.raises(ValueError, match="train_per_class=4"):
        first_per_class(labels, 4)


def test_the_guard_catches_a_read_of_the_test_sets(smoke_cfg, guarded):
    with pytest.raises(AssertionError, match="test part of the benchmark was read"):
        steps.embed(smoke_cfg, "zero_shot", 0)


def test_selection_never_reads_a_test_set(smoke_cfg, guarded):
    rule = selection.SelectionRule(lrs=(1e-4, 1e-3), lr_epochs=1, epochs=(1, 2), max_epochs=1,
                                   lams=(0.01, 1.0))  # fmt: skip
    result = selection.select_recipe(smoke_cfg, rule)
    chosen = result["chosen"]
    assert chosen["finetune_lr"] in rule.lrs and chosen["finetune_epochs"] == 1  # the budget
    assert [r["within_budget"] for r in result["stages"]["epochs"]] == [True, False]
    assert chosen["lam"] in rule.lams
    assert [r["finetune_lr"] for r in result["stages"]["lr"]] == list(rule.lrs)
    for row in result["stages"]["lam"]:
        assert 0 <= row["id_val_accuracy"] <= 100 and 0 <= row["neglabel_val_auroc"] <= 100
    assert "Chosen: lr" in selection.selection_markdown(result)
    rec = selection.validation_record(smoke_cfg, "flyp", 0)
    assert set(rec["ood"]["neglabel"]) == {"val_near_shapes", "val_far_objects", "near_mean",
                                           "far_mean"}  # fmt: skip


def test_smoke_fine_tuning_raises_id_accuracy(smoke_cfg):
    from cmakit.pipeline.stages.records import evaluate_model

    zero = evaluate_model(smoke_cfg, "zero_shot", 0)["id_accuracy"]
    flyp = evaluate_model(smoke_cfg, "flyp", 0)["id_accuracy"]
    assert flyp > zero + 0.05, (zero, flyp)  # measured: 0.25 -> 0.38


def test_cpu_profile_uses_the_recipe_chosen_on_validation_data():
    import json
    from pathlib import Path

    from cmakit.pipeline.config import PROFILES

    doc = Path(__file__).resolve().parents[1] / "docs" / "world_selection.json"
    chosen = json.loads(doc.read_text())["chosen"]
    for key, value in chosen.items():
        assert PROFILES["cpu"][key] == value, (key, PROFILES["cpu"][key], value)
