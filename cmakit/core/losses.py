"""Training objectives: FLYP's symmetric InfoNCE and the Cross-Modal Alignment (CMA) loss.

With ``L = s * I @ T.T`` the ``[B, B]`` logit matrix of a batch of matched (image, text)
pairs (row k = image k), the CMA loss is

    L_cma = 1/2 [CE(L)  + lam * mean_k(-logsumexp_j L_kj)]
          + 1/2 [CE(L.T) + lam * mean_k(-logsumexp_j L_jk)],

i.e. per row ``-L_kk + (1 - lam) * logsumexp_j L_kj``: InfoNCE whose partition term is scaled
by ``1 - lam``. ``lam = 0`` is FLYP (CLIP's loss) exactly. The regulariser reuses the row and
column log-sum-exps that cross-entropy needs anyway, so it costs two means over ``B`` numbers.

The loss takes the *global* batch: in data-parallel training gather the features of all
devices first (as open_clip's ``ClipLoss`` does); the value then does not depend on the split.
"""

from __future__ import annotations

import torch
from torch import nn

from cmakit.core.checks import (
    check_embeddings,
    check_fraction,
    check_same_dim,
    check_same_rows,
)

__all__ = ["CMALoss", "cma_loss", "cma_loss_terms"]


def cma_loss_terms(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    lam: float = 0.001,
) -> dict[str, torch.Tensor]:
    """Named terms of the CMA loss, without input validation (the training fast path).

    Args:
        image_features: ``[B, D]`` L2-normalised image embeddings.
        text_features: ``[B, D]`` L2-normalised text embeddings; row k matches image k.
        logit_scale: The multiplier ``s`` (already exponentiated), a float or 0-d tensor.
        lam: Weight of the CMA regulariser (0 gives FLYP).

    Returns:
        ``{"contrastive_loss": FLYP loss, "cma_loss": regulariser}``, two scalar tensors whose
        sum is the CMA loss.

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
        >>> sorted(cma_loss_terms(x, x, 100.0))
        ['cma_loss', 'contrastive_loss']
    """
    logits = logit_scale * image_features @ text_features.T  # (B, B), row = image
    lse_rows = torch.logsumexp(logits, dim=1)  # (B,) image -> all texts
    lse_cols = torch.logsumexp(logits, dim=0)  # (B,) text -> all images
    diag = logits.diagonal()
    ce_image = (lse_rows - diag).mean()
    ce_text = (lse_cols - diag).mean()
    contrastive = 0.5 * (ce_image + ce_text)
    regulariser = -0.5 * lam * (lse_rows.mean() + lse_cols.mean())
    return {"contrastive_loss": contrastive, "cma_loss": regulariser}


def _check_lam(lam: float) -> float:
    return check_fraction(lam, "lam", low_open=False)


def cma_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    logit_scale: torch.Tensor | float,
    lam: float = 0.001,
) -> torch.Tensor:
    """CMA loss of a batch of matched pairs (PAPER.md §1), with full input checks.

    Args:
        image_emb: ``[B, D]`` L2-normalised image embeddings (torch tensor or numpy array).
        text_emb: ``[B, D]`` L2-normalised text embeddings; row k is the text of image k.
        logit_scale: The inverse temperature ``s = exp(logit_scale_param)`` (≈100 for CLIP),
            a positive float or a 0-d tensor (gradients flow through it).
        lam: Regulariser weight in ``[0, 1]``; 0 gives FLYP, the paper uses 0.001.

    Returns:
        Scalar tensor, differentiable in the embeddings and ``logit_scale``.

    Raises:
        ValueError: Embeddings not ``[B, D]``, not normalised, non-finite, unequal ``B`` or
            ``D``; ``logit_scale`` not a positive finite scalar; ``lam`` outside ``[0, 1]``.

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
        >>> float(cma_loss(x, x, 10.0, lam=0.0)) < float(cma_loss(x, x.roll(1, 0), 10.0, lam=0.0))
        True
    """
    image = check_embeddings(image_emb, "image_emb")
    text = check_embeddings(text_emb, "text_emb")
    check_same_dim(image, text, "image_emb", "text_emb")
    check_same_rows(image, text, "image_emb", "text_emb")
    _check_logit_scale(logit_scale)
    terms = cma_loss_terms(image, text, logit_scale, _check_lam(lam))
    return terms["contrastive_loss"] + terms["cma_loss"]


def _check_logit_scale(logit_scale: torch.Tensor | float) -> None:
    if isinstance(logit_scale, torch.Tensor):
        if logit_scale.numel() != 1:
            raise ValueError(
                f"logit_scale must be a scalar; got a tensor of shape {tuple(logit_scale.shape)}."
            )
        value = float(logit_scale.detach())
    elif isinstance(logit_scale, (int, float)) and not isinstance(logit_scale, bool):
        value = float(logit_scale)
    else:
        raise ValueError(f"logit_scale must be a float or 0-d tensor; got {logit_scale!r}.")
    if not (value > 0 and value < float("inf")):
        raise ValueError(
            f"logit_scale must be a positive finite multiplier (already exponentiated); "
            f"got {value}."
        )


class CMALoss(nn.Module):
    """CMA loss as an open_clip-style module (``lam=0`` is FLYP / ``ClipLoss``).

    Call it on the global batch (features already gathered across devices). ``forward``
    checks shapes only, so it adds no device synchronisation to a training step; use
    :func:`cma_loss` for fully validated one-off evaluations.

    Args:
        lam: Regulariser weight in ``[0, 1]``.

    Example:
        >>> loss_fn = CMALoss(lam=0.001)
        >>> x = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
        >>> terms = loss_fn(x, x, 100.0, output_dict=True)
        >>> total = sum(terms.values())  # what the training loop back-propagates
    """

    def __init__(self, lam: float = 0.001) -> None:
        super().__init__()
        self.lam = _check_lam(lam)

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | float,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Return the total loss, or with ``output_dict=True`` the named terms.

        Args:
            image_features: ``[B, D]`` L2-normalised image embeddings.
            text_features: ``[B, D]`` L2-normalised matching text embeddings.
            logit_scale: Exponentiated inverse temperature ``s``.
            output_dict: Return ``{"contrastive_loss", "cma_loss"}`` instead of their sum.

        Returns:
            Scalar tensor, or a dict of two scalar tensors summing to it.

        Raises:
            ValueError: Features not 2-D or of unequal shapes.
        """
        if image_features.ndim != 2 or image_features.shape != text_features.shape:
            raise ValueError(
                "image_features and text_features must both be [B, D] with equal shapes; "
                f"got {tuple(image_features.shape)} and {tuple(text_features.shape)}."
            )
        terms = cma_loss_terms(image_features, text_features, logit_scale, self.lam)
        if output_dict:
            return terms
        return terms["contrastive_loss"] + terms["cma_loss"]

    def extra_repr(self) -> str:
        return f"lam={self.lam}"
