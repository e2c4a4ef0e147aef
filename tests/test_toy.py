"""The primer's toy: free 3-D embeddings trained with the CMA loss keep or close the gap."""

from __future__ import annotations

import numpy as np
import pytest

from cmakit.core.geometry import modality_gap
from cmakit.engine.toy import noisy_copies, toy_sphere, train_toy


def test_sphere_starts_in_two_cones():
    sphere = toy_sphere(3, 2, 1, seed=0)
    assert sphere.images.shape == sphere.texts.shape == (6, 3)
    np.testing.assert_allclose(np.linalg.norm(sphere.images, axis=1), 1.0)
    assert list(sphere.kinds) == ["id"] * 3 + ["neg"] * 2 + ["ood"]
    assert sphere.part("neg", "texts").shape == (2, 3)
    assert modality_gap(sphere.images, sphere.texts) > 1.0  # the cones are 100 degrees apart
    np.testing.assert_array_equal(toy_sphere(3, 2, 1, seed=0).images, sphere.images)
    assert not np.array_equal(toy_sphere(3, 2, 1, seed=1).images, sphere.images)


def test_low_temperature_keeps_the_gap_and_cma_closes_it():
    start = toy_sphere(seed=0)
    _, flyp = train_toy(start, lam=0.0, logit_scale=100.0, steps=100)
    _, cma = train_toy(start, lam=0.2, logit_scale=100.0, steps=100)
    _, warm = train_toy(start, lam=0.0, logit_scale=1.0, steps=100)
    assert flyp[-1]["modality_gap"] > 0.5  # contrastive alone: pairs align, the gap stays
    assert flyp[-1]["matched_cos"] > flyp[0]["matched_cos"]
    assert cma[-1]["modality_gap"] < 0.1 < flyp[-1]["modality_gap"]
    assert warm[-1]["modality_gap"] < 0.1  # a high temperature closes it without CMA


def test_history_terms_add_up():
    trained, history = train_toy(toy_sphere(seed=0), lam=0.1, steps=20, record_every=5)
    assert [row["step"] for row in history] == [0, 5, 10, 15, 20]
    for row in history:
        assert row["loss"] == pytest.approx(row["contrastive_loss"] + row["cma_loss"])
        assert row["cma_loss"] < 0
    assert history[-1]["modality_gap"] == pytest.approx(modality_gap(trained.images, trained.texts))
    _, plain = train_toy(toy_sphere(seed=0), lam=0.0, steps=3)
    assert all(row["cma_loss"] == 0.0 for row in plain)


def test_noisy_copies_are_normalised_and_near():
    points = toy_sphere(seed=0).images[:2]
    copies = noisy_copies(points, 5, noise=0.01, seed=0)
    assert copies.shape == (10, 3)
    np.testing.assert_allclose(np.linalg.norm(copies, axis=1), 1.0)
    assert (copies[:5] @ points[0] > 0.99).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"lam": 1.5}, "lam"), ({"lam": 0.0, "steps": 0}, "steps"),
     ({"lam": 0.0, "logit_scale": 0.0}, "logit_scale")],
)  # fmt: skip
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_toy(toy_sphere(seed=0), **kwargs)


def test_bad_sphere():
    with pytest.raises(ValueError, match="at least one"):
        toy_sphere(0, 1, 1)
    with pytest.raises(KeyError, match="kind"):
        toy_sphere().part("train", "images")
