"""CSP's pool: nouns kept, each adjective conjugated with one superclass template."""

from __future__ import annotations

import numpy as np
import pytest

from cmakit.data.csp import CSP_TEMPLATES, conjugate, csp_pool


def test_hand_built_pool():
    candidates = [("cat", "noun"), ("red", "adj"), ("blue", "adj"), ("cat", "noun"),
                  ("dark", "adj"), ("dark", "noun")]  # fmt: skip
    pool = csp_pool(candidates, templates=["{} object", "{} scene"], seed=0)
    picks = np.random.default_rng(0).integers(2, size=2)  # blue, red (sorted)
    blue, red = (["{} object", "{} scene"][int(k)] for k in picks)
    assert pool == sorted([("cat", "noun"), ("dark", "noun"),
                           (blue.format("blue"), "csp"), (red.format("red"), "csp")])  # fmt: skip
    assert ("red", "adj") not in pool and ("dark", "csp") not in pool


def test_conjugate_is_seeded_and_uses_every_template():
    adjs = [f"a{i}" for i in range(500)]
    first = conjugate(adjs, seed=0)
    assert first == conjugate(adjs, seed=0) and first != conjugate(adjs, seed=1)
    assert {p.split(" ", 1)[1] for p in first} == {t.split(" ", 1)[1] for t in CSP_TEMPLATES}
    assert [p.split(" ")[0] for p in first] == adjs
    assert len(CSP_TEMPLATES) == 14 and "{} pattern" in CSP_TEMPLATES


def test_bad_inputs():
    with pytest.raises(ValueError, match="exactly one"):
        conjugate(["red"], templates=["{} {} thing"])
    with pytest.raises(ValueError, match="empty"):
        conjugate(["red"], templates=[])
    with pytest.raises(ValueError, match=r"\['verb'\]"):
        csp_pool([("run", "verb")])


def test_world_lexicon_pool_conjugates_every_adjective():
    from cmakit.data.world.concepts import lexicon

    words = lexicon()
    pool = csp_pool(words)
    adjs = [w for w, p in words if p == "adj"]
    phrases = [w for w, p in pool if p == "csp"]
    assert len(phrases) == len(adjs) and sorted(p.split(" ")[0] for p in phrases) == sorted(adjs)
    assert [w for w, p in pool if p == "noun"] == sorted(w for w, p in words if p == "noun")


def test_csp_score_is_grouped_neglabel_over_its_own_labels():
    from _unit_rows import unit_rows

    from cmakit.core.scores import get_score, neglabel_score, score_inputs

    image, id_t, csp_t = unit_rows(6, 8, 1), unit_rows(3, 8, 2), unit_rows(200, 8, 3)
    assert score_inputs("csp") == ("image_emb", "id_text_emb", "csp_text_emb")
    np.testing.assert_array_equal(
        get_score("csp")(image, id_t, csp_t), neglabel_score(image, id_t, csp_t, groups=100)
    )


def test_evaluator_scores_csp_from_the_bundle_and_skips_it_without_labels(tmp_path):
    from _unit_rows import unit_rows

    from cmakit.core.scores import neglabel_score
    from cmakit.engine.bundle import EmbeddingBundle
    from cmakit.engine.evaluate import ScoreSettings, score_images, shift_bundle

    f32 = lambda x: x.astype(np.float32)  # noqa: E731
    bundle = EmbeddingBundle(
        id_images=f32(unit_rows(10, 8, 4)), id_labels=np.arange(10) % 3,
        id_texts=f32(unit_rows(3, 8, 5)), neg_texts=f32(unit_rows(40, 8, 6)), logit_scale=50.0,
        ood={"far": f32(unit_rows(7, 8, 7))}, csp_texts=f32(unit_rows(12, 8, 8)),
    )  # fmt: skip
    settings = ScoreSettings(neglabel_groups=100, scores=("neglabel_grouped", "csp"))
    got = score_images(bundle.id_images, bundle, settings)
    want = neglabel_score(bundle.id_images, bundle.id_texts, bundle.csp_texts, groups=12)
    np.testing.assert_allclose(got["csp"], want)  # groups capped at CSP's 12 labels, not 40
    assert bundle.sizes()["csp_texts"] == 12
    loaded = EmbeddingBundle.load(bundle.save(tmp_path / "b.npz"))
    np.testing.assert_array_equal(loaded.csp_texts, bundle.csp_texts)
    assert shift_bundle(bundle, 0.5).csp_texts.shape == (12, 8)
    bare = bundle.replace(csp_texts=None)
    assert bare.csp_texts.shape == (0, 8)
    assert set(score_images(bare.id_images, bare, settings)) == {"neglabel_grouped"}
