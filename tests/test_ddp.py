"""N CPU processes (gloo, torchrun) make the same update as one process on the same global batch,
with or without accumulation, with shares that need not be equal, and with random crops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _cmakit_tiny import AugmentedPairs, first_step_gradients, tiny_model, tiny_pairs, weight_diff

from cmakit.engine.distributed import gather_with_grad, get_world_size, init_distributed
from cmakit.engine.embed import EmbeddingCache
from cmakit.engine.trainer import TrainConfig, train
from cmakit.models.weights import read_weights

torch.set_num_threads(1)
HERE = Path(__file__).parent
PARAMS = {
    "lr": 1e-3, "warmup_steps": 2, "batch_size": 16, "epochs": 2, "lam": 0.05,
    "num_workers": 0, "progress": False, "device": "cpu",
}  # fmt: skip


def _torchrun(out_dir: Path, params: dict, mode: str = "train", nproc: int = 2) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
    ]
    cmd += [str(HERE / "_ddp_worker.py"), str(out_dir), json.dumps(params), mode]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "terminate called" not in done.stderr, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("accum", [1, 2])
def test_two_processes_equal_one_process(tmp_path, accum):
    params = {**PARAMS, "grad_accum_steps": accum}
    single = tiny_model()
    train(single, tiny_pairs(64), TrainConfig(**params), out_dir=tmp_path / "one")
    _torchrun(tmp_path / "two", params)
    two = read_weights(tmp_path / "two" / "model.pt").state_dict
    assert two.keys() == single.state_dict().keys()
    worst = max(weight_diff(k, two[k], v) for k, v in single.state_dict().items())
    start = tiny_model().state_dict()
    moved = max((start[k] - v).abs().max().item() for k, v in single.state_dict().items())
    assert moved > 1e-3  # the weights did change
    assert worst < 1e-5, f"largest difference {worst}"
    history = (tmp_path / "two" / "history.jsonl").read_text().splitlines()
    assert len(history) == 8  # only rank 0 writes


@pytest.mark.slow
@pytest.mark.parametrize(("nproc", "accum"), [(2, 2), (3, 1), (3, 2)])
def test_gradients_of_any_split_equal_one_large_batch(tmp_path, nproc, accum):
    """B = 16 on 3 processes: shares 6, 5, 5, micro-batches of 3 and 2; the loss is global."""
    whole_terms, whole = first_step_gradients(tiny_pairs(64), PARAMS)
    _torchrun(tmp_path, {**PARAMS, "grad_accum_steps": accum}, mode="grads", nproc=nproc)
    got = torch.load(tmp_path / "grads.pt", weights_only=True)
    loss = max(abs(whole_terms[k] - got["terms"][k]) for k in whole_terms)
    grad = max(
        ((whole[k] - got["grads"][k]).abs().max() / whole[k].abs().max().clamp(min=1)).item()
        for k in whole
    )
    assert loss < 1e-6 and grad < 1e-6, f"max |loss diff| {loss:.2e}, relative grad {grad:.2e}"


@pytest.mark.slow
def test_random_crops_do_not_depend_on_the_number_of_processes(tmp_path):
    """Each item's crop is seeded by (seed, epoch, index): 1 and 2 processes train alike."""
    single = tiny_model()
    train(single, AugmentedPairs(64), TrainConfig(**PARAMS), out_dir=tmp_path / "one")
    _torchrun(tmp_path / "two", {**PARAMS, "grad_accum_steps": 2, "augmented": True})
    rows = [
        [json.loads(line) for line in (tmp_path / run / "history.jsonl").open()]
        for run in ("one", "two")
    ]
    assert abs(rows[0][0]["loss"] - rows[1][0]["loss"]) < 2e-6  # history rounds to 1e-6
    two = read_weights(tmp_path / "two" / "model.pt").state_dict
    worst = max(weight_diff(k, two[k], v) for k, v in single.state_dict().items())
    assert worst < 1e-5, f"largest difference {worst}"


@pytest.mark.slow
def test_embedding_cache_shards_over_ranks(tmp_path):
    opts = {"batch_size": 8, "device": "cpu", "num_workers": 0, "progress": False}
    _torchrun(tmp_path / "two", opts, mode="embed")
    (written,) = (tmp_path / "two").glob("images-*.npz")
    images = tiny_pairs(37).tensors[0]
    data = torch.utils.data.TensorDataset(images, torch.arange(37))
    one = EmbeddingCache(tmp_path / "one").images(tiny_model(), data, preprocessing="none", **opts)
    assert (tmp_path / "one" / written.name).exists()  # same key in both runs
    with np.load(written) as merged:
        np.testing.assert_array_equal(merged["labels"], np.arange(37))
        np.testing.assert_allclose(merged["embeddings"], one.embeddings, atol=1e-6)


@pytest.mark.slow
def test_every_rank_tears_its_process_group_down_before_exit(tmp_path):
    """A worker that never calls cleanup() itself (the grads worker) still exits cleanly: the
    process group is destroyed at exit, after a barrier, so no rank aborts ("terminate called
    without an active exception") while its communication threads are still running."""
    for attempt in range(4):
        (out := tmp_path / str(attempt)).mkdir()
        _torchrun(out, {**PARAMS, "grad_accum_steps": 2}, mode="grads")
        assert (out / "grads.pt").is_file()


def test_single_process_helpers_are_identity():
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, get_world_size()) == (0, 1, True, 1)
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x


def test_world_size_without_rank_is_an_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        init_distributed("cpu")
