"""NegMining (NegLabel, ICLR 2024): pick the candidate labels least similar to the ID labels.

Callers mine nouns and adjectives *separately*, each prompted with its own template from
:data:`NEGLABEL_PROMPTS` and encoded with the pretrained text encoder, keeping 15% of each
(NegLabel's default, :data:`DEFAULT_KEEP`), then concatenate nouns and adjectives::

    nouns = [w for w, pos in wordnet_candidates() if pos == "noun"]
    emb = encode_texts([NEGLABEL_PROMPTS["noun"].format(w) for w in nouns])
    keep_nouns = mine_negative_labels(emb, id_text_emb, keep=DEFAULT_KEEP)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cmakit.common.constants import NEGLABEL_PROMPTS
from cmakit.core.checks import check_embeddings, check_fraction, check_int, check_same_dim

__all__ = [
    "DEFAULT_KEEP",
    "NEGLABEL_PROMPTS",
    "mine_negative_labels",
    "negative_label_affinity",
    "resolve_keep",
]

#: Prompt templates of NegLabel's candidate labels, by part of speech.

#: Fraction of each part of speech kept by NegLabel.
DEFAULT_KEEP = 0.15

#: Candidate rows scored at once.
_CHUNK = 4096
#: torch.quantile refuses inputs with more elements than this.
_QUANTILE_MAX = 1 << 24


def negative_label_affinity(candidate_emb, id_text_emb, *, percentile: float = 0.95) -> np.ndarray:
    """Affinity of each candidate to the ID labels: a quantile of its cosines to all ID texts.

    Affinity of candidate j = the ``percentile`` quantile (linear interpolation, as
    ``torch.quantile``/``numpy.quantile`` by default) of ``{cos(c_j, t_c) : c in ID}``.

    Args:
        candidate_emb: ``[M, D]`` L2-normalised candidate-label prompt embeddings.
        id_text_emb: ``[C, D]`` L2-normalised ID prompt embeddings.
        percentile: Quantile level in ``[0, 1]`` (0.95 in NegLabel), a fraction, not percent.

    Returns:
        ``[M]`` float64 affinities (cosines in ``[-1, 1]``).

    Raises:
        ValueError: Bad embeddings, unequal ``D``, or ``percentile`` outside ``[0, 1]``.
    """
    cand = check_embeddings(candidate_emb, "candidate_emb")
    text = check_embeddings(id_text_emb, "id_text_emb")
    check_same_dim(cand, text, "candidate_emb", "id_text_emb")
    q = check_fraction(percentile, "percentile", low_open=False)
    dtype = torch.float64 if torch.float64 in (cand.dtype, text.dtype) else torch.float32
    text = text.to(dtype)
    out = torch.empty(cand.shape[0], dtype=torch.float64)
    with torch.no_grad():
        rows = max(1, min(_CHUNK, _QUANTILE_MAX // text.shape[0]))
        for start in range(0, cand.shape[0], rows):
            cos = cand[start : start + rows].to(dtype) @ text.T  # (m, C)
            out[start : start + cos.shape[0]] = torch.quantile(cos, q, dim=1).cpu().double()
    return out.numpy()


def resolve_keep(keep: int | float, n: int) -> int:
    """Number of candidates to keep out of ``n``.

    An ``int`` is a count in ``[1, n]``. A ``float`` is a fraction in ``(0, 1]``, rounded down
    (``floor(keep * n)``), but at least 1.

    Raises:
        ValueError: ``keep`` of another type or out of range.

    Example:
        >>> resolve_keep(0.15, 70_000), resolve_keep(5, 10)
        (10500, 5)
    """
    if isinstance(keep, float):
        frac = check_fraction(keep, "keep")
        return max(1, math.floor(round(frac * n, 9)))
    return check_int(keep, "keep", minimum=1, maximum=n)


def mine_negative_labels(
    candidate_emb, id_text_emb, *, keep: int | float, percentile: float = 0.95
) -> np.ndarray:
    """Indices of the ``keep`` candidates least similar to the ID labels, least ID-like first.

    Ties in affinity are broken by candidate index (stable sort), so the result is
    deterministic.

    Args:
        candidate_emb: ``[M, D]`` L2-normalised candidate embeddings (one part of speech).
        id_text_emb: ``[C, D]`` L2-normalised ID prompt embeddings.
        keep: Count in ``[1, M]`` (int) or fraction in ``(0, 1]`` (float, rounded down, at
            least 1); see :func:`resolve_keep`.
        percentile: Quantile level of the affinity, in ``[0, 1]``.

    Returns:
        ``[keep]`` int64 indices into the candidates, sorted by increasing affinity.

    Raises:
        ValueError: Bad embeddings, ``keep`` or ``percentile`` out of range.

    Example:
        >>> ids = np.eye(4)[:2]
        >>> mine_negative_labels(np.eye(4), ids, keep=2)
        array([2, 3])
    """
    affinity = negative_label_affinity(candidate_emb, id_text_emb, percentile=percentile)
    n_keep = resolve_keep(keep, affinity.size)
    return np.argsort(affinity, kind="stable")[:n_keep].astype(np.int64)
