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
