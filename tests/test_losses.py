"""CMA loss: oracle formulas, FLYP equivalence, invariances, gradients and bad input."""

from __future__ import annotations

import pytest
import torch
from open_clip.loss import ClipLoss

from cmakit.core.losses import CMALoss, cma_loss, cma_loss_terms


def _unit(n: int, d: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)


def _naive(image, text, s, lam):
    """Per-row form of PAPER.md §1: mean over rows of -L_kk + (1 - lam) logsumexp_j L_kj."""
    logits = s * image @ text.T
    rows = [-logits[k, k] + (1 - lam) * torch.logsumexp(logits[k], 0) for k in range(len(image))]
    cols = [-logits[k, k] + (1 - lam) * torch.logsumexp(logits[:, k], 0) for k in range(len(text))]
    return 0.5 * (torch.stack(rows).mean() + torch.stack(cols).mean())


@pytest.mark.parametrize("lam", [0.0, 0.001, 0.3, 1.0])
def test_matches_per_row_formula(lam):
    image, text = _unit(12, 16, 0, torch.float64), _unit(12, 16, 1, torch.float64)
    got = cma_loss(image, text, 30.0, lam=lam)
    torch.testing.assert_close(got, _naive(image, text, 30.0, lam))


def test_lam_zero_is_open_clip_clip_loss():
    image, text = _unit(16, 32, 2), _unit(16, 32, 3)
    scale = torch.tensor(100.0)
    expected = ClipLoss()(image, text, scale)
    torch.testing.assert_close(cma_loss(image, text, scale, lam=0.0), expected)
    torch.testing.assert_close(CMALoss(0.0)(image, text, scale), expected)


def test_module_terms_sum_to_functional_and_are_named():
    image, text = _unit(8, 16, 4), _unit(8, 16, 5)
    terms = CMALoss(0.001)(image, text, 50.0, output_dict=True)
    assert set(terms) == {"contrastive_loss", "cma_loss"}
    torch.testing.assert_close(sum(terms.values()), cma_loss(image, text, 50.0, lam=0.001))
    torch.testing.assert_close(terms["contrastive_loss"], ClipLoss()(image, text, 50.0))
    assert float(terms["cma_loss"]) < 0  # the regulariser rewards a large partition


def test_regulariser_is_minus_half_lam_mean_logsumexps():
    image, text = _unit(6, 8, 6, torch.float64), _unit(6, 8, 7, torch.float64)
    logits = 20.0 * image @ text.T
    expected = -0.5 * 0.01 * (logits.logsumexp(1).mean() + logits.logsumexp(0).mean())
    torch.testing.assert_close(cma_loss_terms(image, text, 20.0, 0.01)["cma_loss"], expected)


def test_permuting_pairs_and_rotating_space_leave_loss_unchanged():
    image, text = _unit(10, 16, 8, torch.float64), _unit(10, 16, 9, torch.float64)
    base = cma_loss(image, text, 40.0)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(cma_loss(image[perm], text[perm], 40.0), base)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)).double())
    torch.testing.assert_close(cma_loss(image @ q, text @ q, 40.0), base)


def test_loss_of_global_batch_does_not_depend_on_device_split():
    # the trainer gathers shards before the loss; gathering in any order gives the same value
    image, text = _unit(12, 8, 10, torch.float64), _unit(12, 8, 11, torch.float64)
    shards = [(image[i : i + 4], text[i : i + 4]) for i in (8, 0, 4)]
    gathered = (torch.cat([s[0] for s in shards]), torch.cat([s[1] for s in shards]))
    torch.testing.assert_close(cma_loss(*gathered, 10.0), cma_loss(image, text, 10.0))


def test_gradcheck_float64():
    image = _unit(5, 6, 12, torch.float64).requires_grad_()
    text = _unit(5, 6, 13, torch.float64).requires_grad_()
    scale = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda i, t, s: (
            cma_loss_terms(i, t, s, 0.1)["cma_loss"]
            + cma_loss_terms(i, t, s, 0.1)["contrastive_loss"]
        ),
        (image, text, scale),
    )
    loss = CMALoss(0.5)(image, text, scale)
    loss.backward()
    assert scale.grad is not None and torch.isfinite(scale.grad)


def test_numpy_input_is_accepted():
    image, text = _unit(4, 8, 14), _unit(4, 8, 15)
    got = cma_loss(image.numpy(), text.numpy(), 10.0)
    torch.testing.assert_close(got, cma_loss(image, text, 10.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_emb": torch.ones(4, 8)}, "image_emb must be L2-normalised"),
        ({"text_emb": _unit(4, 7, 0)}, "same embedding dimension"),
        ({"text_emb": _unit(5, 8, 0)}, "same number of rows"),
        ({"image_emb": torch.full((4, 8), float("nan"))}, "image_emb contains 32 non-finite"),
        ({"image_emb": torch.empty(0, 8)}, "image_emb must be non-empty"),
        ({"logit_scale": -1.0}, "logit_scale must be a positive finite"),
        ({"logit_scale": torch.ones(2)}, "logit_scale must be a scalar"),
        ({"lam": 1.5}, r"lam must lie in \[0, 1\]; got 1.5"),
        ({"lam": -0.1}, "lam must be a finite number >= 0"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"image_emb": _unit(4, 8, 1), "text_emb": _unit(4, 8, 2), "logit_scale": 10.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cma_loss(**args)


def test_module_rejects_bad_lam_and_shapes():
    with pytest.raises(ValueError, match="lam"):
        CMALoss(2.0)
    with pytest.raises(ValueError, match="equal shapes"):
        CMALoss()(_unit(4, 8, 0), _unit(3, 8, 0), 10.0)
