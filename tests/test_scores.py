"""OoD scores: naive-loop oracles, invariances, chunking, the registry and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _unit_rows import unit_rows

from cmakit.core import scores
from cmakit.core.scores import (
    energy_score,
    get_score,
    list_scores,
    max_logit_score,
    mcm_score,
    neglabel_score,
    register_score,
    score_inputs,
)

_unit = unit_rows


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def _naive_neglabel(image, id_text, neg_text, tau):
    out = []
    for i in image:
        logits = np.array([i @ t for t in id_text] + [i @ t for t in neg_text]) / tau
        out.append(_softmax(logits)[: len(id_text)].sum())
    return np.array(out)


def test_mcm_matches_naive_loop():
    image, text = _unit(20, 8, 0), _unit(5, 8, 1)
    expected = [max(_softmax(np.array([i @ t for t in text]) / 0.5)) for i in image]
    np.testing.assert_allclose(mcm_score(image, text, temperature=0.5), expected, rtol=1e-12)


def test_neglabel_ungrouped_matches_naive_loop_float32_and_float64():
    image, id_t, neg_t = _unit(30, 16, 2), _unit(6, 16, 3), _unit(25, 16, 4)
    expected = _naive_neglabel(image, id_t, neg_t, 0.05)
    got64 = neglabel_score(image, id_t, neg_t, temperature=0.05)
    np.testing.assert_allclose(got64, expected, rtol=1e-10)
    f32 = [a.astype(np.float32) for a in (image, id_t, neg_t)]
    got32 = neglabel_score(*f32, temperature=0.05)
    assert got32.dtype == np.float64
    np.testing.assert_allclose(got32, expected, rtol=1e-4)


def test_neglabel_grouped_matches_naive_loop():
    image, id_t, neg_t = _unit(12, 8, 5), _unit(4, 8, 6), _unit(23, 8, 7)
    groups, seed = 5, 3
    kept = neg_t[: 23 - 23 % groups]  # NegLabel drops the trailing remainder, then shuffles
    perm = torch.randperm(len(kept), generator=torch.Generator().manual_seed(seed)).numpy()
    shuffled = kept[perm]
    size = len(kept) // groups
    per_group = [
        _naive_neglabel(image, id_t, shuffled[g * size : (g + 1) * size], 0.1)
        for g in range(groups)
    ]
    expected = np.mean(per_group, axis=0)
    got = neglabel_score(image, id_t, neg_t, temperature=0.1, groups=groups, seed=seed)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    other_seed = neglabel_score(image, id_t, neg_t, temperature=0.1, groups=groups, seed=4)
    assert not np.allclose(other_seed, got)


def test_neglabel_extremely_sharp_temperature_is_stable():
    image, id_t, neg_t = _unit(10, 8, 8), _unit(3, 8, 9), _unit(7, 8, 10)
    got = neglabel_score(image, id_t, neg_t, temperature=1e-4)
    assert np.all(np.isfinite(got)) and np.all((got >= 0) & (got <= 1))


def test_chunking_does_not_change_scores(monkeypatch):
    image, id_t, neg_t = _unit(50, 8, 11), _unit(4, 8, 12), _unit(20, 8, 13)
    full = neglabel_score(image, id_t, neg_t, groups=4)
    full_mcm = mcm_score(image, id_t)
    monkeypatch.setattr(scores, "CHUNK_ROWS", 7)
    np.testing.assert_allclose(neglabel_score(image, id_t, neg_t, groups=4), full, rtol=1e-12)
    np.testing.assert_allclose(mcm_score(image, id_t), full_mcm, rtol=1e-12)


@pytest.mark.parametrize("name", ["mcm", "neglabel", "neglabel_grouped"])
def test_embedding_scores_invariant_to_rotation_and_label_order(name):
    fn = get_score(name)
    image, id_t, neg_t = _unit(15, 12, 14), _unit(5, 12, 15), _unit(200, 12, 16)
    args = (image, id_t) if name == "mcm" else (image, id_t, neg_t)
    base = fn(*args)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((12, 12)))
    np.testing.assert_allclose(fn(*(a @ q for a in args)), base, rtol=1e-10)
    perm = np.random.default_rng(1).permutation(15)
    np.testing.assert_allclose(fn(image[perm], *args[1:]), base[perm], rtol=1e-12)
    shuffled_id = (image, id_t[::-1]) + args[2:]
    np.testing.assert_allclose(fn(*shuffled_id), base, rtol=1e-10)
    if name != "neglabel_grouped":  # grouping depends on the order of negatives by design
        np.testing.assert_allclose(fn(*args[:2], *(a[::-1] for a in args[2:])), base, rtol=1e-10)


def test_torch_input_gives_numpy_output():
    image, text = _unit(4, 8, 17), _unit(3, 8, 18)
    got = mcm_score(torch.from_numpy(image).float(), torch.from_numpy(text).float())
    assert isinstance(got, np.ndarray) and got.shape == (4,)
    np.testing.assert_allclose(got, mcm_score(image, text), rtol=1e-5)


def test_logit_scores_match_direct_formulas():
    logits = np.random.default_rng(19).standard_normal((9, 4)) * 3
    e = np.exp(logits)
    np.testing.assert_allclose(get_score("msp")(logits), (e / e.sum(1, keepdims=True)).max(1))
    np.testing.assert_allclose(max_logit_score(logits), logits.max(1))
    np.testing.assert_allclose(energy_score(logits), np.log(e.sum(1)))
    t2 = 2 * np.log(np.exp(logits / 2).sum(1))
    np.testing.assert_allclose(energy_score(logits, temperature=2.0), t2)
    big = np.array([[1000.0, 0.0]])
    assert get_score("msp")(big)[0] == pytest.approx(1.0) and energy_score(big)[0] == 1000.0


def test_registry_names_inputs_and_defaults():
    assert list_scores() == [
        "csp", "energy", "max_logit", "mcm", "msp", "neglabel", "neglabel_grouped"
    ]  # fmt: skip
    assert score_inputs("mcm") == ("image_emb", "id_text_emb")
    assert score_inputs("energy") == ("logits",)
    image, id_t, neg_t = _unit(5, 8, 20), _unit(3, 8, 21), _unit(250, 8, 22)
    np.testing.assert_array_equal(
        get_score("neglabel_grouped")(image, id_t, neg_t),
        neglabel_score(image, id_t, neg_t, groups=100),
    )


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="'mcm' is already registered"):
        register_score("mcm")(lambda logits: logits)
    with pytest.raises(KeyError, match=r"Unknown score 'mls'; choose one of \['csp', 'energy'"):
        get_score("mls")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda i, t, n: neglabel_score(i, t, n, groups=11), r"groups must be >= 1 and <= 10"),
        (lambda i, t, n: neglabel_score(i, t, n, groups=0), "groups must be >= 1"),
        (lambda i, t, n: neglabel_score(i, t, n, temperature=0), "temperature must be a finite"),
        (lambda i, t, n: mcm_score(i * 2, t), "image_emb must be L2-normalised"),
        (lambda i, t, n: mcm_score(i, t[:, :4]), "id_text_emb must be L2-normalised"),
        (lambda i, t, n: neglabel_score(i, t, n[:, :7] * 0 + 0.378), "same embedding dimension"),
        (lambda i, t, n: mcm_score(i.astype(int), t), "must be a floating-point array"),
        (lambda i, t, n: mcm_score(i[0], t), r"image_emb must be 2-D \[N, D\]"),
        (lambda i, t, n: msp_nan(), "logits contains 1 non-finite"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(_unit(3, 8, 0), _unit(2, 8, 1), _unit(10, 8, 2))


def msp_nan():
    return get_score("msp")(np.array([[0.0, np.nan]]))
