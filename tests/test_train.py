"""Trainer: config validation, schedule, history, NaN stop, general data path."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _cmakit_tiny import tiny_model, tiny_pairs

from cmakit.common.strict_config import ConfigError, from_dict
from cmakit.engine.batching import BadSample, BatchPlan, accumulation_steps, split_sizes
from cmakit.engine.trainer import TrainConfig, lr_factor, train
from cmakit.models.weights import load_model_weights, save_model

torch.set_num_threads(1)
FAST = {"lr": 1e-3, "warmup_steps": 2, "batch_size": 16, "num_workers": 0, "progress": False}


def test_defaults_are_the_paper_recipe():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.weight_decay, cfg.warmup_steps, cfg.epochs) == (1e-5, 0.1, 500, 10)
    assert (cfg.batch_size, cfg.seed, cfg.precision, cfg.lam) == (512, 0, "fp32", 0.001)
    assert cfg.grad_clip_norm is None


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("lam", -0.1, "lam"),
        ("lr", 0.0, "lr"),
        ("batch_size", 1, "batch_size"),
        ("grad_accum_steps", 600, "exceeds batch_size"),
        ("micro_batch_size", 0, "micro_batch_size"),
        ("grad_clip_norm", 0.0, "grad_clip_norm"),
        ("log_every", 0, "log_every"),
    ],
)
def test_config_rejects_bad_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{field: value})


def test_config_from_dict_is_strict():
    with pytest.raises(ConfigError, match="Did you mean 'lam'"):
        from_dict(TrainConfig, {"lamb": 0.1})
    with pytest.raises(ConfigError, match="precision"):
        from_dict(TrainConfig, {"precision": "fp8"})


def test_lr_schedule_warmup_then_cosine_to_zero():
    factors = [lr_factor(s, 4, 12) for s in range(13)]
    assert factors[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(factors[4:], factors[5:], strict=False))
    assert factors[12] == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(8, 4, 12) == pytest.approx(0.5)


@pytest.mark.parametrize(("world", "accum"), [(1, 1), (1, 3), (2, 2), (3, 2), (5, 1), (7, 2)])
def test_batch_plan_covers_the_global_batch_in_order_for_any_split(world, accum):
    plans = [BatchPlan(40, 14, accum, world, r, seed=3) for r in range(world)]
    order = plans[0].epoch_order(1)
    per_rank = [list(p.local_slices(1)) for p in plans]
    for step in range(plans[0].steps_per_epoch):  # rank-order concat = the global batch
        got = torch.cat([s for rank in per_rank for s in rank[step * accum : (step + 1) * accum]])
        assert torch.equal(got, order[step * 14 : (step + 1) * 14])
    sizes = [len(s) for rank in per_rank for s in rank[:accum]]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_batch_plan_rejects_empty_micro_batches_and_picks_accumulation():
    with pytest.raises(ValueError, match="too small for 3 process"):
        BatchPlan(40, 8, 3, 3, 0, seed=0)
    assert accumulation_steps(512, 3, 64) == 3  # shares 171, 171, 170 -> micro-batches <= 57
    assert accumulation_steps(512, 8, 64) == 1 and accumulation_steps(512, 1, 100) == 6
    assert split_sizes(512, 3) == [171, 171, 170]


def test_train_writes_history_checkpoints_and_model(tmp_path):
    model = tiny_model()
    cfg = TrainConfig(**FAST, epochs=2, checkpoint_every_steps=3, keep_checkpoints=2)
    res = train(model, tiny_pairs(64), cfg, out_dir=tmp_path)
    assert res.final_step == 8 and res.model_path.exists() and res.pairs_per_s > 0
    rows = [json.loads(line) for line in res.history_path.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    keys = {"epoch", "contrastive_loss", "cma_loss", "loss", "lr", "logit_scale", "pairs_per_s"}
    assert keys <= set(rows[0])
    assert rows[0]["lr"] == 0.0 and rows[2]["lr"] == pytest.approx(1e-3)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert len(list((tmp_path / "checkpoints").glob("step_*.pt"))) == 2
    fresh = load_model_weights(tiny_model(seed=1), res.model_path)
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters(), strict=True)
    )


def test_lam_zero_is_flyp_and_max_steps_caps(tmp_path):
    cfg = TrainConfig(**FAST, lam=0.0, epochs=5, max_steps=3)
    res = train(tiny_model(), tiny_pairs(64), cfg, out_dir=tmp_path)
    assert res.final_step == 3 and res.last_terms["cma_loss"] == 0.0


def test_fresh_start_refuses_folder_with_checkpoints(tmp_path):
    cfg = TrainConfig(**FAST, epochs=1)
    train(tiny_model(), tiny_pairs(32), cfg, out_dir=tmp_path)
    with pytest.raises(ValueError, match="resume=True"):
        train(tiny_model(), tiny_pairs(32), cfg, out_dir=tmp_path)


def test_too_small_dataset_and_bad_split(tmp_path):
    with pytest.raises(ValueError, match="fewer than batch_size"):
        train(tiny_model(), tiny_pairs(8), TrainConfig(**FAST), out_dir=tmp_path)


def test_nan_loss_stops_naming_step_and_last_checkpoint(tmp_path):
    data = tiny_pairs(64)
    bad_index = int(BatchPlan(64, 16, 1, 1, 0, seed=0).epoch_order(0)[2 * 16 + 5])
    data.tensors[0][bad_index] = float("nan")  # poisons optimizer step 3
    cfg = TrainConfig(**FAST, epochs=1, checkpoint_every_steps=1)
    with pytest.raises(FloatingPointError, match=r"step 3 .*step_00000002\.pt"):
        train(tiny_model(), data, cfg, out_dir=tmp_path)
    assert not (tmp_path / "model.pt").exists()
    assert not list(tmp_path.rglob("*.tmp"))


class _Augmented(torch.utils.data.Dataset):
    """Map-style pairs with a random horizontal flip and one unreadable item."""

    def __init__(self, pairs, bad: int):
        self.pairs, self.bad = pairs, bad

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        if i == self.bad:
            return BadSample(f"img_{i}.png", "truncated file")
        img, tok = self.pairs[i]
        return (img.flip(-1) if torch.rand(()) < 0.5 else img), tok


def test_general_path_skips_and_counts_bad_samples(tmp_path):
    data = _Augmented(tiny_pairs(48), bad=7)
    res = train(tiny_model(), data, TrainConfig(**FAST, epochs=1), out_dir=tmp_path)
    assert res.final_step == 3 and res.bad_samples == 1 and res.bad_paths == ("img_7.png",)
    assert math.isfinite(res.last_terms["loss"])


@pytest.mark.slow
def test_general_path_independent_of_worker_count(tmp_path):
    finals = []
    for workers in (0, 2):
        model = tiny_model()
        cfg = TrainConfig(**{**FAST, "num_workers": workers}, epochs=1)
        train(model, _Augmented(tiny_pairs(48), bad=-1), cfg, out_dir=tmp_path / str(workers))
        finals.append(model.state_dict())
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_bf16_autocast_runs_on_cpu(tmp_path):
    cfg = TrainConfig(**FAST, epochs=1, precision="bf16", grad_clip_norm=1.0)
    res = train(tiny_model(), tiny_pairs(32), cfg, out_dir=tmp_path)
    assert math.isfinite(res.last_terms["loss"])
    with pytest.raises(ValueError, match="fp16"):
        train(
            tiny_model(),
            tiny_pairs(32),
            TrainConfig(**FAST, precision="fp16"),
            out_dir=tmp_path / "x",
        )


def test_save_model_round_trip(tmp_path):
    model = tiny_model(seed=4)
    path = save_model(model, tmp_path / "m.pt", name="cmakit-test-tiny")
    other = load_model_weights(tiny_model(seed=5), path)
    assert torch.equal(other.logit_scale, model.logit_scale)
    assert torch.load(path, weights_only=True)["model_info"]["name"] == "cmakit-test-tiny"


def test_uint8_images_are_normalised_like_float_input(tmp_path):
    pairs = tiny_pairs(32)
    raw = (torch.rand(32, 3, 16, 16) * 255).to(torch.uint8)
    model_a, model_b = tiny_model(), tiny_model()
    mean = torch.tensor(model_a.visual.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model_a.visual.image_std).view(1, 3, 1, 1)
    floats = (raw.float() / 255 - mean) / std
    cfg = TrainConfig(**FAST, epochs=1)
    tokens = pairs.tensors[1]
    train(model_a, torch.utils.data.TensorDataset(raw, tokens), cfg, out_dir=tmp_path / "a")
    train(model_b, torch.utils.data.TensorDataset(floats, tokens), cfg, out_dir=tmp_path / "b")
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_package_level_train_is_the_function_after_submodule_import(tmp_path):
    import cmakit
    import cmakit.engine.trainer  # noqa: F401  (binds the submodule on the package)

    assert cmakit.TrainConfig is TrainConfig and cmakit.train is train
    res = cmakit.train(
        tiny_model(), tiny_pairs(16), TrainConfig(**FAST, epochs=1), out_dir=tmp_path
    )
    assert res.final_step == 1


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_on_cpu(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "gpu_bench.py"
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(script), "--tiny", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert len(result["variants"]) == 4 and result["train_gflops_per_pair"] > 0
    assert {"images_per_s_bf16", "texts_per_s_fp32"} <= set(result["embedding"])


@pytest.mark.parametrize("towers", ["image", "text"])
def test_one_tower_fine_tuning_leaves_the_other_untouched(tmp_path, towers):
    """The study's tower factor: only the chosen tower (and the logit scale) moves."""
    from cmakit.engine.trainer import tower_of

    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(lam=0.1, lr=1e-2, warmup_steps=0, epochs=1, batch_size=16, num_workers=0,
                      progress=False, device="cpu", towers=towers, weight_decay=0.1)  # fmt: skip
    train(model, tiny_pairs(32), cfg, out_dir=tmp_path)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    kept = {n for n in before if tower_of(n) == ("text" if towers == "image" else "image")}
    assert kept and not (moved & kept)  # the frozen tower: no step, no weight decay
    assert {tower_of(n) for n in moved} == {towers, "shared"}  # its own tower and the scale


def test_towers_must_be_one_of_three():
    with pytest.raises(
        ValueError, match=r"towers='vision'; choose one of \['both', 'image', 'text'\]"
    ):
        TrainConfig(towers="vision")
