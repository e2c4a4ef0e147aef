"""Exact large-batch loss with accumulation, and augmentations that do not depend on the split.

k micro-batches of b pairs must give the loss and the gradients of one batch of k*b pairs
(feature cache: every image sees all k*b texts as negatives), and every item must get the same
random crop whatever the number of processes or micro-batches.
"""

from __future__ import annotations

import pytest
import torch
from _cmakit_tiny import AugmentedPairs, first_step_gradients, tiny_model, tiny_pairs, weight_diff

from cmakit.engine.batching import BatchPlan, iter_micro_batches, sample_seed
from cmakit.engine.trainer import TrainConfig, train

torch.set_num_threads(1)
BASE = {"lr": 1e-3, "warmup_steps": 2, "batch_size": 16, "lam": 0.05, "num_workers": 0,
        "progress": False, "device": "cpu"}  # fmt: skip


def _max_diffs(one, other) -> tuple[float, float]:
    """Largest |loss-term difference| and largest gradient difference relative to the
    parameter's largest gradient (float32 sums of up to 16 micro-batches, gradients up to ~13)."""
    (terms_a, grads_a), (terms_b, grads_b) = one, other
    loss = max(abs(terms_a[k] - terms_b[k]) for k in terms_a)
    grad = max(
        ((grads_a[k] - grads_b[k]).abs().max() / grads_a[k].abs().max().clamp(min=1)).item()
        for k in grads_a
    )
    return loss, grad


@pytest.mark.parametrize(("batch", "accum"), [(16, 2), (16, 4), (15, 4), (16, 16)])
def test_accumulation_equals_one_large_batch(batch, accum):
    data = tiny_pairs(64)
    params = {**BASE, "batch_size": batch}
    whole = first_step_gradients(data, params)
    split = first_step_gradients(data, {**params, "grad_accum_steps": accum})
    loss, grad = _max_diffs(whole, split)
    assert loss < 1e-6 and grad < 1e-6, (
        f"max |loss diff| {loss:.2e}, max relative |grad diff| {grad:.2e}"
    )
    assert whole[1]["logit_scale"].abs().item() > 1e-3  # the scale's gradient is compared too
    assert max(g.abs().max().item() for g in whole[1].values()) > 1e-2


def test_per_micro_batch_loss_would_differ():
    """The oracle above can fail: averaging per-micro-batch losses is another objective."""
    from cmakit.core.losses import cma_loss_terms

    model = tiny_model().eval()
    images, tokens = tiny_pairs(16).tensors
    with torch.no_grad():
        img, txt, s = model(images, tokens)
    whole = sum(cma_loss_terms(img, txt, s, 0.05).values())
    halves = [sum(cma_loss_terms(img[h], txt[h], s, 0.05).values())
              for h in (slice(0, 8), slice(8, 16))]  # fmt: skip
    assert abs(float(whole) - float(sum(halves)) / 2) > 1e-2


def test_grad_checkpointing_and_micro_batch_size_keep_the_gradients():
    data = tiny_pairs(64)
    whole = first_step_gradients(data, BASE)
    saved = first_step_gradients(data, {**BASE, "micro_batch_size": 5, "grad_checkpointing": True})
    loss, grad = _max_diffs(whole, saved)
    assert loss < 1e-6 and grad < 1e-6


def test_training_with_accumulation_makes_the_same_updates(tmp_path):
    runs = {}
    for accum in (1, 4):
        model = tiny_model()
        cfg = TrainConfig(**BASE, epochs=2, grad_accum_steps=accum)
        train(model, AugmentedPairs(64), cfg, out_dir=tmp_path / str(accum))
        runs[accum] = model.state_dict()
    worst = max(weight_diff(k, runs[1][k], runs[4][k]) for k in runs[1])
    assert worst < 1e-5, f"largest weight difference {worst}"


@pytest.mark.parametrize("world", [2, 3, 4])
def test_each_item_gets_the_same_crop_for_any_split(world):
    data = AugmentedPairs(40)
    one = list(iter_micro_batches(data, BatchPlan(40, 12, 1, 1, 0, seed=5), epoch=1))
    ranks = [list(iter_micro_batches(data, BatchPlan(40, 12, 2, world, r, seed=5), epoch=1))
             for r in range(world)]  # fmt: skip
    for step, (images, _, _) in enumerate(one):
        parts = [b[0] for rank in ranks for b in rank[2 * step : 2 * step + 2]]
        assert torch.equal(images, torch.cat(parts))


def test_crops_change_with_epoch_and_seed_not_with_the_caller_rng():
    data = AugmentedPairs(8)
    plan = BatchPlan(8, 8, 1, 1, 0, seed=0)
    first = next(iter_micro_batches(data, plan, epoch=0))[0]
    torch.manual_seed(123)
    assert torch.equal(first, next(iter_micro_batches(data, plan, epoch=0))[0])
    assert not torch.equal(first, next(iter_micro_batches(data, plan, epoch=1))[0])
    assert len({sample_seed(0, 0, 1), sample_seed(0, 1, 0), sample_seed(1, 0, 0)}) == 3


def test_resume_may_change_the_micro_batches(tmp_path):
    """Accumulation changes no number, so a run may resume on smaller devices."""
    ref = tiny_model()
    train(ref, AugmentedPairs(64), TrainConfig(**BASE, epochs=2), out_dir=tmp_path / "ref")
    first = TrainConfig(**BASE, epochs=2, checkpoint_every_steps=2)
    run = tmp_path / "run"
    train(tiny_model(), AugmentedPairs(64), first, out_dir=run)
    for ckpt in sorted((run / "checkpoints").glob("step_*.pt"))[1:]:
        ckpt.unlink()  # keep step 2 only: the run stopped mid-epoch
    resumed = tiny_model(seed=9)
    smaller = TrainConfig(**BASE, epochs=2, checkpoint_every_steps=2, micro_batch_size=3)
    res = train(resumed, AugmentedPairs(64), smaller, out_dir=run, resume=True)
    assert res.final_step == 8
    worst = max(weight_diff(k, v, resumed.state_dict()[k]) for k, v in ref.state_dict().items())
    assert worst < 1e-5, f"largest weight difference {worst}"
