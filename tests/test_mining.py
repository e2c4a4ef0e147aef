"""Negative-label mining: quantile oracle, keep rules, ordering, chunking and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from _unit_rows import unit_rows

from cmakit.core import mining
from cmakit.core.mining import (
    DEFAULT_KEEP,
    NEGLABEL_PROMPTS,
    mine_negative_labels,
    negative_label_affinity,
    resolve_keep,
)

_unit = unit_rows


def test_affinity_is_numpy_quantile_of_cosines():
    cand, ids = _unit(40, 8, 0), _unit(13, 8, 1)
    expected = [np.quantile([c @ t for t in ids], 0.95) for c in cand]
    np.testing.assert_allclose(negative_label_affinity(cand, ids), expected, rtol=1e-12)
    median = [np.median([c @ t for t in ids]) for c in cand]
    np.testing.assert_allclose(negative_label_affinity(cand, ids, percentile=0.5), median)


def test_mining_keeps_least_id_like_first():
    cand, ids = _unit(50, 8, 2), _unit(10, 8, 3)
    aff = negative_label_affinity(cand, ids)
    got = mine_negative_labels(cand, ids, keep=7)
    assert got.dtype == np.int64 and got.shape == (7,)
    np.testing.assert_array_equal(got, np.argsort(aff)[:7])
    assert np.all(np.diff(aff[got]) >= 0) and aff[got].max() <= np.sort(aff)[7]
    assert set(mine_negative_labels(cand, ids, keep=0.15)) <= set(range(50))
    assert len(mine_negative_labels(cand, ids, keep=0.15)) == 7  # floor(7.5)


def test_ties_broken_by_index_and_rotation_invariant():
    ids = np.eye(4)[:2]
    np.testing.assert_array_equal(mine_negative_labels(np.eye(4), ids, keep=2), [2, 3])
    cand, ids = _unit(30, 6, 4), _unit(5, 6, 5)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 6)))
    np.testing.assert_array_equal(
        mine_negative_labels(cand @ q, ids @ q, keep=10), mine_negative_labels(cand, ids, keep=10)
    )


def test_chunking_below_quantile_limit(monkeypatch):
    cand, ids = _unit(100, 8, 6), _unit(9, 8, 7)
    full = negative_label_affinity(cand, ids)
    monkeypatch.setattr(mining, "_QUANTILE_MAX", 40)  # 4 rows per chunk
    np.testing.assert_allclose(negative_label_affinity(cand, ids), full, rtol=1e-12)


def test_resolve_keep_rules_and_neglabel_defaults():
    assert resolve_keep(0.15, 70_000) == 10_500
    assert resolve_keep(0.001, 10) == 1  # at least one
    assert resolve_keep(1.0, 10) == 10 and resolve_keep(10, 10) == 10
    assert DEFAULT_KEEP == 0.15
    assert NEGLABEL_PROMPTS == {"noun": "The nice {}", "adj": "This is a {} photo",
                                "csp": "a nice photo of {}"}  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keep": 0}, "keep must be >= 1 and <= 20; got 0"),
        ({"keep": 21}, "keep must be >= 1 and <= 20; got 21"),
        ({"keep": 1.5}, r"keep must lie in \(0, 1\]; got 1.5"),
        ({"keep": 0.0}, "keep must be a finite number > 0"),
        ({"keep": "10"}, "keep must be an integer"),
        ({"keep": 3, "percentile": 95}, r"percentile must lie in \[0, 1\]; got 95"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mine_negative_labels(_unit(20, 4, 0), _unit(3, 4, 1), **kwargs)


def test_bad_embeddings():
    with pytest.raises(ValueError, match="candidate_emb must be L2-normalised"):
        mine_negative_labels(np.ones((3, 4)), _unit(3, 4, 1), keep=1)
    with pytest.raises(ValueError, match="same embedding dimension"):
        mine_negative_labels(_unit(3, 5, 0), _unit(3, 4, 1), keep=1)
