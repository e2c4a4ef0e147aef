"""A toy of the modality gap: free embeddings on the 3-D sphere trained with the CMA loss.

The primer notebook (``notebooks/00_primer.ipynb``) uses it to show, in seconds on a CPU, what
the real pipeline does with a CLIP: two modalities that start in separate cones (as randomly
initialised encoders put them, Liang et al. 2022), a contrastive loss with a temperature that
aligns the pairs yet keeps the cones apart, and the CMA term that pulls them together.

There is no encoder: each image and each text is a free vector, re-normalised at every step,
and the loss is :class:`cmakit.core.losses.CMALoss` on the full batch of pairs, the same
module the trainer uses. Concepts come in three kinds: ``id`` (the ID classes), ``neg`` (their
texts act as negative labels) and ``ood`` (their images are the OoD inputs).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from cmakit.core.geometry import modality_gap
from cmakit.core.losses import CMALoss

__all__ = ["IMAGE_AXIS", "TEXT_AXIS", "ToySphere", "noisy_copies", "toy_sphere", "train_toy"]

#: Centres of the two cones the modalities start in (unit vectors, 100° apart).
IMAGE_AXIS = (0.94, -0.17, 0.30)
TEXT_AXIS = (-0.17, 0.94, 0.30)
#: Concept kinds, in the order their rows appear.
KINDS = ("id", "neg", "ood")


@dataclasses.dataclass(frozen=True)
class ToySphere:
    """Paired points on the unit sphere: row k of ``images`` is matched with row k of ``texts``.

    Attributes:
        images: ``[N, 3]`` L2-normalised image embeddings.
        texts: ``[N, 3]`` L2-normalised text embeddings.
        kinds: ``[N]`` concept kind of each pair: ``"id"``, ``"neg"`` or ``"ood"``.
    """

    images: np.ndarray
    texts: np.ndarray
    kinds: np.ndarray

    def part(self, kind: str, modality: str) -> np.ndarray:
        """Rows of one kind (``"id"``, ``"neg"``, ``"ood"``) of one modality (``"images"``,
        ``"texts"``), ``[n, 3]``."""
        if kind not in KINDS or modality not in ("images", "texts"):
            raise KeyError(f"part({kind!r}, {modality!r}): kind in {KINDS}, modality images|texts.")
        return getattr(self, modality)[self.kinds == kind]

    def replace(self, **changes) -> ToySphere:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _cone(n: int, axis: tuple[float, ...], spread: float, gen: torch.Generator) -> torch.Tensor:
    centre = F.normalize(torch.tensor(axis, dtype=torch.float64), dim=0)
    return F.normalize(
        centre + spread * torch.randn(n, 3, generator=gen, dtype=torch.float64), dim=1
    )


def toy_sphere(
    n_id: int = 8, n_neg: int = 8, n_ood: int = 4, *, spread: float = 0.35, seed: int = 0
) -> ToySphere:
    """Random initial embeddings: images in a cone around :data:`IMAGE_AXIS`, texts around
    :data:`TEXT_AXIS`, the pairing random (nothing is aligned yet).

    Args:
        n_id: Number of ID concepts.
        n_neg: Number of concepts whose texts serve as negative labels.
        n_ood: Number of concepts whose images serve as OoD inputs.
        spread: Standard deviation of the Gaussian offset before normalising (cone width).
        seed: Seed of the draw.

    Returns:
        A :class:`ToySphere` with ``N = n_id + n_neg + n_ood`` pairs.

    Raises:
        ValueError: A count below 1 or a non-positive ``spread``.
    """
    counts = {"n_id": n_id, "n_neg": n_neg, "n_ood": n_ood}
    bad = {
        k: v for k, v in counts.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1
    }
    if bad:
        raise ValueError(f"toy_sphere needs at least one concept of each kind; got {bad}.")
    if not spread > 0:
        raise ValueError(f"spread must be positive; got {spread!r}.")
    gen = torch.Generator().manual_seed(int(seed))
    n = n_id + n_neg + n_ood
    images = _cone(n, IMAGE_AXIS, spread, gen)
    texts = _cone(n, TEXT_AXIS, spread, gen)
    kinds = np.array(["id"] * n_id + ["neg"] * n_neg + ["ood"] * n_ood)
    return ToySphere(images.numpy(), texts.numpy(), kinds)


def train_toy(
    sphere: ToySphere,
    *,
    lam: float,
    logit_scale: float = 100.0,
    steps: int = 300,
    lr: float = 0.02,
    record_every: int = 10,
) -> tuple[ToySphere, list[dict[str, float]]]:
    """Adam on the free vectors of ``sphere`` under :class:`~cmakit.core.losses.CMALoss`.

    Every step re-normalises the vectors, evaluates the named loss terms on the full batch of
    ``N`` pairs with a fixed ``logit_scale`` (the inverse temperature ``1/τ``), and steps on
    their sum. Deterministic: no randomness after the initial points.

    Args:
        sphere: Initial points (e.g. from :func:`toy_sphere`).
        lam: CMA weight in ``[0, 1]`` (0: the plain contrastive loss, FLYP / CLIP).
        logit_scale: Fixed multiplier ``s = 1/τ`` of the cosines (CLIP ends near 100).
        steps: Optimiser steps.
        lr: Adam's learning rate.
        record_every: Steps between history rows (step 0 and the last step are always kept).

    Returns:
        ``(trained sphere, history)``; each history row has ``step``, ``contrastive_loss``,
        ``cma_loss``, ``loss`` (their sum), ``modality_gap`` and ``matched_cos`` (mean cosine
        of matched pairs), all evaluated before that step's update (the last row after it).

    Raises:
        ValueError: ``lam`` outside ``[0, 1]``, a non-positive ``logit_scale``, ``steps`` < 1.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}.")
    if not logit_scale > 0:
        raise ValueError(f"logit_scale must be positive (it is 1/τ); got {logit_scale!r}.")
    loss_fn = CMALoss(lam)  # validates lam
    raw = [
        torch.tensor(x, dtype=torch.float64, requires_grad=True)
        for x in (sphere.images, sphere.texts)
    ]
    # Adam's moments, written out: torch.optim's first use imports torch._dynamo (seconds).
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in raw]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    history: list[dict[str, float]] = []
    for step in range(steps + 1):
        image, text = (F.normalize(p, dim=1) for p in raw)  # (N, 3) each
        terms = loss_fn(image, text, logit_scale, output_dict=True)
        loss = terms["contrastive_loss"] + terms["cma_loss"]
        if step % record_every == 0 or step == steps:
            i, t = image.detach().numpy(), text.detach().numpy()
            history.append({
                "step": step, "loss": float(loss.detach()),
                **{k: float(v.detach()) for k, v in terms.items()},
                "modality_gap": modality_gap(i, t), "matched_cos": float((i * t).sum(1).mean()),
            })  # fmt: skip
        if step == steps:
            break
        grads = torch.autograd.grad(loss, raw)
        with torch.no_grad():
            for p, g, (m, v) in zip(raw, grads, moments, strict=True):
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                m_hat, v_hat = m / (1 - beta1 ** (step + 1)), v / (1 - beta2 ** (step + 1))
                p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
    return sphere.replace(images=i, texts=t), history


def noisy_copies(points: np.ndarray, per_point: int = 20, *, noise: float = 0.15, seed: int = 0):
    """Test inputs around trained points: Gaussian offsets, re-normalised.

    Args:
        points: ``[n, 3]`` L2-normalised embeddings (e.g. the ID or OoD images of a sphere).
        per_point: Copies of each point.
        noise: Standard deviation of the offset (in units of the sphere's radius).
        seed: Seed of the offsets.

    Returns:
        ``[n * per_point, 3]`` L2-normalised array (point-major: the copies of row 0 first).
    """
    gen = torch.Generator().manual_seed(int(seed))
    base = torch.as_tensor(np.asarray(points), dtype=torch.float64).repeat_interleave(per_point, 0)
    offsets = noise * torch.randn(base.shape, generator=gen, dtype=torch.float64)
    return F.normalize(base + offsets, dim=1).numpy()
