"""Exact resume: interrupted-then-resumed training equals uninterrupted training, bit for bit."""

from __future__ import annotations

import pytest
import torch
from _cmakit_tiny import tiny_model, tiny_pairs

from cmakit.engine.checkpoint import list_checkpoints
from cmakit.engine.trainer import TrainConfig, train

torch.set_num_threads(1)
BASE = {"lr": 1e-3, "warmup_steps": 3, "batch_size": 16, "num_workers": 0, "progress": False}


def _interrupt_after(out_dir, step: int) -> None:
    """Leave ``out_dir`` as a run killed right after the checkpoint of ``step``."""
    for ckpt in list_checkpoints(out_dir / "checkpoints"):
        if int(ckpt.stem.split("_")[1]) > step:
            ckpt.unlink()
    (out_dir / "model.pt").unlink()


@pytest.mark.parametrize("stop_at", [4, 5])  # mid-epoch and at an epoch boundary (4 steps/epoch)
def test_resume_is_exact(tmp_path, stop_at):
    cfg = TrainConfig(**BASE, epochs=3, lam=0.01)
    ref = tiny_model()
    train(ref, tiny_pairs(64), cfg, out_dir=tmp_path / "ref")

    run = tmp_path / "run"
    cut = TrainConfig(**{**BASE, "log_every": 2}, epochs=3, lam=0.01, checkpoint_every_steps=1)
    train(tiny_model(), tiny_pairs(64), cut, out_dir=run)
    _interrupt_after(run, stop_at)
    resumed = tiny_model(seed=123)  # weights come from the checkpoint, not from here
    res = train(resumed, tiny_pairs(64), cut, out_dir=run, resume=True)

    assert res.final_step == 12
    for (name, a), b in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    steps = [int(line.split(",")[0].split(":")[1]) for line in res.history_path.open()]
    assert steps == list(range(1, 13))


def test_resume_refuses_changed_settings(tmp_path):
    cfg = TrainConfig(**BASE, epochs=1)
    train(tiny_model(), tiny_pairs(32), cfg, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"settings changed \(lam: 0.001 -> 0.5\)"):
        train(
            tiny_model(),
            tiny_pairs(32),
            TrainConfig(**BASE, epochs=1, lam=0.5),
            out_dir=tmp_path,
            resume=True,
        )


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    res = train(
        tiny_model(), tiny_pairs(32), TrainConfig(**BASE, epochs=1), out_dir=tmp_path, resume=True
    )
    assert res.final_step == 2
