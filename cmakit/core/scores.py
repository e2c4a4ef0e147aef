"""Post-hoc OoD scores (higher = more in-distribution) and a registry of them.

Two families, by input:

* zero-shot scores on L2-normalised embeddings: ``mcm`` (image, ID text), ``neglabel`` /
  ``neglabel_grouped`` (image, ID text, negative-label text) and ``csp`` (image, ID text, CSP's
  negative-label text: NegLabel's grouped score over the Conjugated Semantic Pool);
* classifier scores on logits ``[N, C]``: ``msp``, ``max_logit``, ``energy``.

:func:`score_inputs` tells which positional inputs a registered score takes. Embedding scores
are computed in chunks of image rows in float32 (float64 input stays float64), so the full
ImageNet setting (50,000 images x 11,000 labels x 512) runs in bounded memory on a CPU.
Every score returns a float64 numpy array ``[N]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch

from cmakit.core.checks import (
    check_embeddings,
    check_int,
    check_logits,
    check_positive,
    check_same_dim,
)

__all__ = [
    "csp_score",
    "energy_score",
    "get_score",
    "list_scores",
    "SCORE_LABELS",
    "max_logit_score",
    "mcm_score",
    "neglabel_score",
    "register_score",
    "score_label",
    "score_inputs",
]

#: Image rows processed at once by the embedding scores.
CHUNK_ROWS = 2048

_REGISTRY: dict[str, Callable[..., np.ndarray]] = {}
#: Registered name -> label of tables, figures and the explorer, in registration order (the
#: order of every table). The one home of score names and labels.
SCORE_LABELS: dict[str, str] = {}


def register_score(
    name: str, label: str | None = None
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator adding a score function to the registry under ``name``.

    Args:
        name: Key of the score in records, ``summary.json`` and on the command line.
        label: How tables and figures name it (default: ``name``).

    Raises:
        ValueError: If ``name`` is already registered.
    """

    def add(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if name in _REGISTRY:
            raise ValueError(f"Score {name!r} is already registered ({_REGISTRY[name].__name__}).")
        _REGISTRY[name] = fn
        SCORE_LABELS[name] = label or name
        return fn

    return add


def score_label(name: str) -> str:
    """The display label of a score (``"neglabel"`` -> ``"NegLabel"``); unknown names as given."""
    return SCORE_LABELS.get(name, name)


def get_score(name: str) -> Callable[..., np.ndarray]:
    """Return the score function registered as ``name``.

    Raises:
        KeyError: Unknown name; the message lists the registered names.

    Example:
        >>> get_score("mcm") is mcm_score
        True
    """
    if name not in _REGISTRY:
        raise KeyError(f"Unknown score {name!r}; choose one of {list_scores()}.")
    return _REGISTRY[name]


def list_scores() -> list[str]:
    """Sorted names of all registered scores."""
    return sorted(_REGISTRY)


def score_inputs(name: str) -> tuple[str, ...]:
    """Names of the positional (data) inputs of the registered score ``name``.

    Example:
        >>> score_inputs("neglabel")
        ('image_emb', 'id_text_emb', 'neg_text_emb')
    """
    params = inspect.signature(get_score(name)).parameters.values()
    return tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _chunks(n: int, size: int = CHUNK_ROWS):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@register_score("mcm", "MCM")
def mcm_score(image_emb, id_text_emb, *, temperature: float = 1.0) -> np.ndarray:
    """Maximum Concept Matching: ``max_c softmax_c(cos(i, t_c) / T)``.

    Args:
        image_emb: ``[N, D]`` L2-normalised image embeddings.
        id_text_emb: ``[C, D]`` L2-normalised ID class-prompt embeddings.
        temperature: Softmax temperature ``T`` > 0 (1 on raw cosines in the paper's code).

    Returns:
        ``[N]`` float64 scores in ``[1/C, 1]``.

    Raises:
        ValueError: Bad embeddings (see ``check_embeddings``) or ``temperature`` <= 0.

    Example:
        >>> x = np.eye(3, dtype=np.float32)
        >>> mcm_score(x, x).round(3)
        array([0.576, 0.576, 0.576])
    """
    image = check_embeddings(image_emb, "image_emb")
    text = check_embeddings(id_text_emb, "id_text_emb")
    check_same_dim(image, text, "image_emb", "id_text_emb")
    t = check_positive(temperature, "temperature")
    dtype = _compute_dtype(image, text)
    text = text.to(dtype)
    out = torch.empty(image.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for rows in _chunks(image.shape[0]):
            logits = image[rows].to(dtype) @ text.T / t  # (n, C)
            lse = torch.logsumexp(logits, dim=1)
            out[rows] = torch.exp(logits.max(dim=1).values - lse).cpu().double()
    return out.numpy()


def _neglabel_chunk(
    image: torch.Tensor, text_id: torch.Tensor, text_neg: torch.Tensor, tau: float, groups: int
) -> torch.Tensor:
    """NegLabel score of one chunk of images; ``text_neg`` is ``[G * m, D]``, group-major."""
    lse_id = torch.logsumexp(image @ text_id.T / tau, dim=1)  # (n,)
    neg = image @ text_neg.T / tau  # (n, G*m)
    lse_neg = torch.logsumexp(neg.view(image.shape[0], groups, -1), dim=2)  # (n, G)
    lse_id = lse_id[:, None]
    # softmax mass on the ID labels in each group: exp(lse_id - logaddexp(lse_id, lse_neg))
    return torch.exp(lse_id - torch.logaddexp(lse_id, lse_neg)).mean(dim=1)  # (n,)


@register_score("neglabel", "NegLabel")
def neglabel_score(
    image_emb,
    id_text_emb,
    neg_text_emb,
    *,
    temperature: float = 0.01,
    groups: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """NegLabel: softmax mass on the ID labels over ``[ID ; negative]`` logits / τ.

    ``score(i) = sum_{c in ID} softmax([cos(i, t_ID) ; cos(i, t_neg)] / τ)_c``.

    With ``groups=1`` (the CMA code) all negatives form one group. With ``groups=G > 1``
    (NegLabel's grouping) the trailing ``M mod G`` negatives are dropped, the remaining ones
    are shuffled with ``torch.Generator().manual_seed(seed)`` and split into ``G`` equal
    groups; the score is computed per group against all ID labels and averaged.

    Args:
        image_emb: ``[N, D]`` L2-normalised image embeddings.
        id_text_emb: ``[C, D]`` L2-normalised ID prompt embeddings.
        neg_text_emb: ``[M, D]`` L2-normalised negative-label prompt embeddings.
        temperature: τ > 0 (0.01, i.e. CLIP's scale 100).
        groups: Number of groups ``G`` in ``[1, M]``.
        seed: Seed of the negative shuffle (used only when ``groups > 1``).

    Returns:
        ``[N]`` float64 scores in ``(0, 1]``.

    Raises:
        ValueError: Bad embeddings, ``temperature`` <= 0, or ``groups`` outside ``[1, M]``.

    Example:
        >>> x = np.eye(4, dtype=np.float32)
        >>> neglabel_score(x[:2], x[:2], x[2:]).round(3)
        array([1., 1.])
    """
    image = check_embeddings(image_emb, "image_emb")
    text_id = check_embeddings(id_text_emb, "id_text_emb")
    text_neg = check_embeddings(neg_text_emb, "neg_text_emb")
    check_same_dim(image, text_id, "image_emb", "id_text_emb")
    check_same_dim(image, text_neg, "image_emb", "neg_text_emb")
    tau = check_positive(temperature, "temperature")
    n_neg = text_neg.shape[0]
    groups = check_int(groups, "groups", minimum=1, maximum=n_neg)
    dtype = _compute_dtype(image, text_id, text_neg)
    text_id, text_neg = text_id.to(dtype), text_neg.to(dtype)
    if groups > 1:
        kept = n_neg - n_neg % groups
        perm = torch.randperm(kept, generator=torch.Generator().manual_seed(int(seed)))
        text_neg = text_neg[:kept][perm.to(text_neg.device)]
    out = torch.empty(image.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for rows in _chunks(image.shape[0]):
            chunk = image[rows].to(dtype)
            out[rows] = _neglabel_chunk(chunk, text_id, text_neg, tau, groups).cpu().double()
    return out.numpy()


@register_score("neglabel_grouped", "NegLabel-grouped")
def neglabel_grouped_score(
    image_emb,
    id_text_emb,
    neg_text_emb,
    *,
    temperature: float = 0.01,
    groups: int = 100,
    seed: int = 0,
) -> np.ndarray:
    """NegLabel with NegLabel's default grouping (``groups=100``); see :func:`neglabel_score`."""
    return neglabel_score(
        image_emb, id_text_emb, neg_text_emb, temperature=temperature, groups=groups, seed=seed
    )


@register_score("csp", "CSP")
def csp_score(
    image_emb,
    id_text_emb,
    csp_text_emb,
    *,
    temperature: float = 0.01,
    groups: int = 100,
    seed: int = 0,
) -> np.ndarray:
    """CSP (Chen et al., NeurIPS 2024): NegLabel's grouped score with the negative labels mined
    from the Conjugated Semantic Pool (its published configuration: 100 groups, 15% kept).

    The formula is :func:`neglabel_score`'s; only the negative labels differ, so the score reads
    them from its own input, ``csp_text_emb`` ``[M', D]`` (L2-normalised); see
    :func:`neglabel_score` for the other arguments.
    """
    return neglabel_score(
        image_emb, id_text_emb, csp_text_emb, temperature=temperature, groups=groups, seed=seed
    )


@register_score("msp", "MSP")
def msp_score(logits) -> np.ndarray:
    """Maximum softmax probability ``max_c softmax(logits)_c``.

    Args:
        logits: ``[N, C]`` classifier logits (numpy or torch).

    Returns:
        ``[N]`` float64 scores in ``[1/C, 1]``.

    Raises:
        ValueError: ``logits`` not a finite non-empty 2-D float array.
    """
    x = check_logits(logits).detach().double()
    return torch.exp(x.max(dim=1).values - torch.logsumexp(x, dim=1)).cpu().numpy()


@register_score("energy", "Energy")
def energy_score(logits, *, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy ``T * logsumexp_c(logits_c / T)``.

    Args:
        logits: ``[N, C]`` classifier logits.
        temperature: ``T`` > 0.

    Returns:
        ``[N]`` float64 scores.

    Raises:
        ValueError: Bad ``logits`` or ``temperature`` <= 0.
    """
    x = check_logits(logits).detach().double()
    t = check_positive(temperature, "temperature")
    return (t * torch.logsumexp(x / t, dim=1)).cpu().numpy()


@register_score("max_logit", "MaxLogit")
def max_logit_score(logits) -> np.ndarray:
    """MaxLogit ``max_c logits_c``.

    Args:
        logits: ``[N, C]`` classifier logits.

    Returns:
        ``[N]`` float64 scores.

    Raises:
        ValueError: ``logits`` not a finite non-empty 2-D float array.
    """
    return check_logits(logits).detach().double().max(dim=1).values.cpu().numpy()
