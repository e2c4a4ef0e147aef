"""Geometry: naive oracles, known values, rotation/permutation invariance and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from _unit_rows import unit_rows
from sklearn.decomposition import PCA

from cmakit.core.geometry import (
    GEOMETRY_TARGETS,
    READING,
    alignment,
    gap_shift,
    geometry_measures,
    geometry_targets,
    joint_pca,
    mean_cosines,
    modality_gap,
    pca_axes,
    text_side_fraction,
    uniformity,
    uniformity_family,
)

_unit = unit_rows


def _rotation(d: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def _naive_log_mean_exp(pairs, t=2.0):
    vals = [math.exp(-t * float(np.sum((u - v) ** 2))) for u, v in pairs]
    return math.log(sum(vals) / len(vals))


def test_modality_gap_known_values():
    x = _unit(10, 4, 0)
    assert modality_gap(x, x) == pytest.approx(0.0, abs=1e-12)
    e = np.eye(3)
    assert modality_gap(e[[0, 0]], e[[1, 1, 1]]) == pytest.approx(math.sqrt(2))
    image, text = _unit(40, 6, 1, shift=3), _unit(30, 6, 2, shift=-3)
    expected = np.linalg.norm(image.mean(0) - text.mean(0))
    assert modality_gap(image, text) == pytest.approx(expected, rel=1e-12)


def test_alignment_and_uniformity_match_naive():
    x, y = _unit(12, 5, 3), _unit(12, 5, 4)
    naive_align = np.mean([np.sum((a - b) ** 2) for a, b in zip(x, y, strict=True)])
    assert alignment(x, y) == pytest.approx(naive_align, rel=1e-12)
    naive_align1 = np.mean([np.linalg.norm(a - b) for a, b in zip(x, y, strict=True)])
    assert alignment(x, y, alpha=1) == pytest.approx(naive_align1, rel=1e-12)
    naive = _naive_log_mean_exp(itertools.combinations(x, 2))
    assert uniformity(x) == pytest.approx(naive, rel=1e-12)
    naive_t = _naive_log_mean_exp(itertools.combinations(x, 2), t=0.5)
    assert uniformity(x, 0.5) == pytest.approx(naive_t, rel=1e-12)
    antipodal = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert uniformity(antipodal) == pytest.approx(-8.0) and alignment(x, x) == 0.0


def test_uniformity_subsamples_deterministically():
    x = _unit(300, 4, 5)
    sub = uniformity(x, max_points=100, seed=1)
    assert sub == uniformity(x, max_points=100, seed=1)
    assert sub != uniformity(x, max_points=100, seed=2)
    assert sub == pytest.approx(uniformity(x, max_points=None), abs=0.1)


def test_uniformity_family_matches_naive_with_labels():
    image, text = _unit(9, 5, 6, shift=2), _unit(4, 5, 7, shift=-2)
    labels_image, labels_text = np.array([0, 1, 2, 3, 0, 1, 2, 3, 9]), np.arange(4)
    fam = uniformity_family(image, text, labels_image=labels_image, labels_text=labels_text)
    both = np.concatenate([image, text])
    cross = list(itertools.product(image, text))
    matched = [(image[i], text[c]) for i, c in enumerate(labels_image) if c < 4]
    assert fam["uni_all"] == pytest.approx(-_naive_log_mean_exp(itertools.combinations(both, 2)))
    assert fam["uni_i"] == pytest.approx(-_naive_log_mean_exp(itertools.combinations(image, 2)))
    assert fam["uni_t"] == pytest.approx(-_naive_log_mean_exp(itertools.combinations(text, 2)))
    assert fam["uni_cm"] == pytest.approx(-_naive_log_mean_exp(cross))
    assert fam["uni_cmm"] == pytest.approx(-_naive_log_mean_exp(matched))
    assert fam["uni_i"] == pytest.approx(-uniformity(image))
    assert fam["cos_cm"] == pytest.approx(np.mean(image @ text.T))
    assert fam["cos_cmm"] == pytest.approx(np.mean([u @ v for u, v in matched]))
    assert fam["cos_i"] == pytest.approx(
        np.mean([u @ v for u, v in itertools.combinations(image, 2)])
    )
    assert all(fam[k] > 0 for k in fam if k.startswith("uni_"))
    assert "cmm = matched" in READING


def test_uniformity_family_pairs_rows_without_labels():
    image, text = _unit(6, 4, 8), _unit(6, 4, 9)
    fam = uniformity_family(image, text)
    assert fam["uni_cmm"] == pytest.approx(-_naive_log_mean_exp(zip(image, text, strict=True)))
    cos = mean_cosines(image, text)
    assert set(cos) == {"cos_i", "cos_t", "cos_cm", "cos_cmm"}
    assert cos["cos_cmm"] == pytest.approx(np.mean(np.sum(image * text, 1)))


def test_rotation_and_permutation_invariance():
    image, text = _unit(20, 8, 10, shift=2), _unit(20, 8, 11, shift=-2)
    q, perm = _rotation(8), np.random.default_rng(3).permutation(20)
    base = uniformity_family(image, text)
    for img, txt in ((image @ q, text @ q), (image[perm], text[perm])):
        for key, value in uniformity_family(img, txt).items():
            assert value == pytest.approx(base[key], rel=1e-9), key
        assert modality_gap(img, txt) == pytest.approx(modality_gap(image, text), rel=1e-9)
        assert alignment(img, txt) == pytest.approx(alignment(image, text), rel=1e-9)
        assert uniformity(img) == pytest.approx(uniformity(image), rel=1e-9)


def test_joint_pca_matches_sklearn_and_fixes_signs():
    a, b = _unit(30, 6, 12, shift=2), _unit(20, 6, 13, shift=-2)
    (pa, pb), ratio = joint_pca(a, b, n_components=3)
    ref = PCA(n_components=3).fit(np.concatenate([a, b]))
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-10)
    ref_proj = ref.transform(np.concatenate([a, b]))
    np.testing.assert_allclose(np.abs(np.concatenate([pa, pb])), np.abs(ref_proj), atol=1e-10)
    (qa, qb), _ = joint_pca(-a, -b, n_components=3)  # same axes, so projections flip sign
    np.testing.assert_allclose(qa, -pa, atol=1e-10)
    (ra,), _ = joint_pca(torch.from_numpy(a), n_components=1)
    assert ra.shape == (30, 1) and isinstance(ra, np.ndarray)


def test_pca_axes_are_the_axes_joint_pca_projects_on():
    a, b = _unit(30, 6, 12, shift=2), _unit(20, 6, 13, shift=-2)
    mean, axes, ratio = pca_axes(a, b, n_components=2)
    (pa, pb), ratio_ref = joint_pca(a, b, n_components=2)
    np.testing.assert_allclose((a - mean) @ axes.T, pa, atol=1e-12)
    np.testing.assert_allclose(ratio, ratio_ref, rtol=1e-12)
    np.testing.assert_allclose(axes @ axes.T, np.eye(2), atol=1e-12)
    with pytest.raises(ValueError, match="n_components must be in"):
        pca_axes(a, n_components=7)


def test_gap_shift_identity_closure_and_type():
    image, text = _unit(25, 5, 14, shift=3), _unit(15, 5, 15, shift=-3)
    i0, t0 = gap_shift(image, text, 0.0)
    np.testing.assert_allclose(i0, image, atol=1e-12)
    np.testing.assert_allclose(t0, text, atol=1e-12)
    i1, t1 = gap_shift(image, text, 1.0)
    g = image.mean(0) - text.mean(0)
    expected = (image - g / 2) / np.linalg.norm(image - g / 2, axis=1, keepdims=True)
    np.testing.assert_allclose(i1, expected, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(t1, axis=1), 1.0)
    assert modality_gap(i1, t1) < 0.3 * modality_gap(image, text)
    assert modality_gap(*gap_shift(image, text, -0.5)) > modality_gap(image, text)
    ti, tt = gap_shift(torch.from_numpy(image), torch.from_numpy(text), 0.5)
    assert isinstance(ti, torch.Tensor) and isinstance(tt, torch.Tensor)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: modality_gap(x, x[:, :3]), "text_emb has dimension D=3, but D=4"),
        (lambda x: modality_gap(x * 1.01, x), r"image_emb must be L2-normalised .* norm 1.01"),
        (lambda x: alignment(x, x[:2]), "same number of rows"),
        (lambda x: uniformity(x[:1]), "No pairs"),
        (lambda x: uniformity(x, t=0), "t must be a finite number > 0"),
        (lambda x: uniformity(np.full((3, 4), np.inf)), "x contains 12 non-finite"),
        (lambda x: uniformity_family(x, x, labels_image=[0] * 5), "both labels_image"),
        (lambda x: uniformity_family(x, x[:3]), "same number of rows"),
        (lambda x: joint_pca(x, n_components=9), r"n_components must be in \[1, 4\]"),
        (lambda x: joint_pca(), "at least one"),
        (lambda x: gap_shift(x, x, float("nan")), "alpha must be a finite number"),
        (lambda x: modality_gap(np.empty((0, 4)), x), "image_emb must be non-empty"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(_unit(5, 4, 0))


def test_gap_axes_separate_modalities_by_the_centroid_gap():
    from cmakit.core.geometry import gap_axes

    rng = np.random.default_rng(3)
    img = rng.normal(size=(50, 8)) + 2.0 * np.eye(8)[0]
    txt = rng.normal(size=(40, 8)) - 2.0 * np.eye(8)[0]
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    pi, pt = gap_axes(img, txt, img, txt)
    assert pi.shape == (50, 2) and pt.shape == (40, 2)
    # along axis 1 the centroids differ by exactly the gap; axis 2 is orthogonal to it
    assert np.isclose(pi[:, 0].mean() - pt[:, 0].mean(), modality_gap(img, txt))
    with pytest.raises(ValueError, match="non-zero gap"):
        gap_axes(img, img, img)


def test_gap_shift_with_an_explicit_gap_moves_extra_sets_like_the_id_sets():
    rng = np.random.default_rng(4)
    img, txt = (rng.normal(size=(n, 6)) for n in (20, 10))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    gap = img.mean(0) - txt.mean(0)
    a_img, a_txt = gap_shift(img, txt, 0.7)
    b_img, b_txt = gap_shift(img, txt, 0.7, gap=gap)
    np.testing.assert_allclose(a_img, b_img, atol=1e-12)
    np.testing.assert_allclose(a_txt, b_txt, atol=1e-12)
    extra, _ = gap_shift(img[:5], txt, 0.7, gap=gap)  # a subset moves by the same vector
    np.testing.assert_allclose(extra, a_img[:5], atol=1e-12)
    with pytest.raises(ValueError, match="gap must be a finite"):
        gap_shift(img, txt, 0.5, gap=np.ones(3))


def _naive_text_side(image, text, query):
    ci, ct = image.mean(0), text.mean(0)
    near = [math.dist(q, ct) < math.dist(q, ci) for q in query]
    return sum(near) / len(near)


def test_text_side_fraction_matches_naive():
    image, text = _unit(30, 6, 0, shift=4.0), _unit(20, 6, 1, shift=-4.0)  # two narrow cones
    query = np.concatenate([_unit(25, 6, 2), text[:5], image[:5]])
    got = text_side_fraction(image, text, query)
    assert got == pytest.approx(_naive_text_side(image, text, query), abs=1e-12)
    assert 0 < got < 1
    assert text_side_fraction(image, text, text) == 1.0
    assert text_side_fraction(image, text, image) == 0.0
    # the two sides swap with the roles
    assert text_side_fraction(text, image, query) == pytest.approx(1 - got, abs=1e-12)


def test_text_side_fraction_counts_a_tie_as_not_text_side():
    e = np.eye(3)
    assert text_side_fraction(e[:1], e[1:2], e[2:]) == 0.0  # equidistant from both centroids


def test_text_side_fraction_is_rotation_invariant():
    image, text, query = _unit(12, 5, 3, 1.0), _unit(9, 5, 4, -1.0), _unit(40, 5, 5)
    r = _rotation(5)
    assert text_side_fraction(image @ r, text @ r, query @ r) == text_side_fraction(
        image, text, query
    )


def test_geometry_measures_match_their_definitions():
    images, labels = _unit(40, 6, 0, 1.2), np.arange(40) % 4
    prompts, negatives, ood = _unit(4, 6, 1, -1.2), _unit(11, 6, 2, -0.3), _unit(15, 6, 3, 0.2)
    got = geometry_measures(images, labels, prompts, negatives, ood_image_emb=ood)
    every_image, every_text = np.concatenate([images, ood]), np.concatenate([prompts, negatives])
    fam = uniformity_family(images, prompts, labels_image=labels, labels_text=np.arange(4))
    assert got["modality_gap"] == pytest.approx(np.linalg.norm(images.mean(0) - prompts.mean(0)))
    assert got["text_side_id_prompts"] == _naive_text_side(every_image, every_text, prompts)
    assert got["text_side_negative_labels"] == pytest.approx(
        _naive_text_side(every_image, every_text, negatives)
    )
    assert {k: got[k] for k in ("uni_i", "uni_t", "uni_cm")} == pytest.approx(
        {k: fam[k] for k in ("uni_i", "uni_t", "uni_cm")}
    )
    assert got["negative_labels"] == 11
    # OoD images only move the image centroid of the text-side fractions
    plain = geometry_measures(images, labels, prompts, negatives)
    assert plain["modality_gap"] == got["modality_gap"] and plain["uni_cm"] == got["uni_cm"]
    assert plain["text_side_negative_labels"] == pytest.approx(
        _naive_text_side(images, every_text, negatives)
    )


_MEETS = {
    "logit_scale": 64.0, "modality_gap": 0.6, "text_side_id_prompts": 1.0,
    "text_side_negative_labels": 0.95, "uni_i": 1.0, "uni_t": 0.3, "uni_cm": 1.5,
    "id_accuracy": 0.70, "flyp_id_accuracy": 0.80, "negative_labels": 300,
}  # fmt: skip


def test_geometry_targets_met_at_their_bounds():
    rows = geometry_targets(_MEETS)
    assert [r["name"] for r in rows] == [t.name for t in GEOMETRY_TARGETS]
    assert all(r["met"] is True for r in rows), rows
    assert [r["target"] for r in rows][:2] == [">= 50", ">= 0.5"]
    assert rows[4]["target"] == "< uni_cm" and rows[7]["target"] == ">= id_accuracy + 0.1"


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({"logit_scale": 49.9}, "logit_scale"),
        ({"modality_gap": 0.499}, "modality_gap"),
        ({"text_side_id_prompts": 0.9}, "text_side_id_prompts"),
        ({"text_side_negative_labels": 0.949}, "text_side_negative_labels"),
        ({"uni_i": 1.5}, "uni_i"),  # equal is not tighter
        ({"uni_cm": 0.9}, "uni_i"),
        ({"uni_t": 2.0}, "uni_t"),
        ({"id_accuracy": 0.59, "flyp_id_accuracy": 0.69}, "id_accuracy"),
        ({"id_accuracy": 0.751, "flyp_id_accuracy": 0.90}, "id_accuracy"),
        ({"flyp_id_accuracy": 0.7999}, "flyp_id_accuracy"),
        ({"negative_labels": 299}, "negative_labels"),
    ],
)
def test_geometry_targets_fail_just_past_their_bounds(changes, failing):
    rows = geometry_targets({**_MEETS, **changes})
    assert {r["name"] for r in rows if not r["met"]} == {failing}


def test_geometry_targets_without_a_value_say_none():
    rows = {r["name"]: r for r in geometry_targets({"logit_scale": 20.3, "uni_i": 1.0})}
    assert rows["logit_scale"]["met"] is False and rows["logit_scale"]["measured"] == 20.3
    assert rows["uni_i"]["met"] is None  # uni_cm missing
    assert rows["flyp_id_accuracy"]["measured"] is None and rows["flyp_id_accuracy"]["met"] is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: text_side_fraction(x, x, x[:, :3]), "query_emb has dimension D=3"),
        (lambda x: text_side_fraction(x, x * 2, x), "text_emb must be L2-normalised"),
        (lambda x: geometry_measures(x, [0] * 5, x[:2], x[:0]), "neg_text_emb must be non-empty"),
        (lambda x: geometry_measures(x, [0, 1], x[:2], x), r"labels_image must have shape \(5,\)"),
    ],
)
def test_geometry_target_functions_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(_unit(5, 4, 0))
