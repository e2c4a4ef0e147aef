"""WordNet candidates: the real WordNet 3.0 count, determinism, sources and the install hint."""

from __future__ import annotations

import collections

import pytest

from cmakit.data import wordnet
from cmakit.data.wordnet import WORDNET_INSTALL_HINT, wordnet_candidates


def _installed() -> bool:
    return (
        wordnet._nltk_wordnet_root() is not None
        or (wordnet.DEBIAN_WORDNET_DIR / "index.noun").is_file()
    )


needs_wordnet = pytest.mark.skipif(
    not _installed(), reason="WordNet not installed (apt-get install wordnet-base)"
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CMAKIT_CACHE", str(tmp_path))
    return tmp_path


@needs_wordnet
def test_real_wordnet_counts_and_format(cache):
    cands = wordnet_candidates()
    counts = collections.Counter(pos for _, pos in cands)
    assert counts == {"noun": 117_798, "adj": 18_341}  # WordNet 3.0 lemmas, noun wins ties
    words = [w for w, _ in cands]
    assert words == sorted(words) and len(set(words)) == len(words)
    assert all("_" not in w for w in words)
    got = dict(cands)
    assert got["ice cream"] == "noun" and got["red"] == "noun" and got["fibrous"] == "adj"
    assert got["abnormal"] == "adj"  # satellite/head adjectives are included
    assert list(cache.glob("wordnet_candidates_*.json"))
    assert wordnet_candidates() == cands  # from the cache
    assert wordnet_candidates(use_cache=False) == cands


@pytest.mark.skipif(
    not (wordnet.DEBIAN_WORDNET_DIR / "index.noun").is_file(), reason="wordnet-base not installed"
)
def test_debian_files_are_made_readable(cache, monkeypatch):
    monkeypatch.setattr(wordnet, "_nltk_wordnet_root", lambda: None)
    cands = wordnet_candidates(use_cache=False)
    assert len(cands) == 136_139
    lexnames = (cache / "nltk_data" / "corpora" / "wordnet" / "lexnames").read_text().splitlines()
    assert len(lexnames) == 45 and lexnames[3] == "03\tnoun.Tops\t1"
    assert lexnames[44] == "44\tadj.ppl\t3"


def test_missing_wordnet_says_how_to_install(cache, monkeypatch, tmp_path):
    monkeypatch.setattr(wordnet, "_nltk_wordnet_root", lambda: None)
    monkeypatch.setattr(wordnet, "DEBIAN_WORDNET_DIR", tmp_path / "nowhere")
    with pytest.raises(LookupError, match="apt-get install wordnet-base") as err:
        wordnet_candidates()
    assert "python -m nltk.downloader wordnet" in str(err.value)
    assert str(err.value) == WORDNET_INSTALL_HINT


# The pool tests read WordNet once into cmakit's usual cache (not a temporary one): a cold
# read of every synset through nltk takes a minute on a slow machine.


@needs_wordnet
def test_neglabel_pool_reproduces_neglabel_files():
    files = wordnet.lexicographer_words()
    assert len(wordnet.NEGLABEL_FILES) == 27
    assert "noun.animal" not in wordnet.NEGLABEL_FILES and "noun.food" not in wordnet.NEGLABEL_FILES
    # one word per synset (its first lemma): counts per file of WordNet 3.0
    counts = {name: len(files[name]) for name in wordnet.NEGLABEL_FILES}
    assert counts["noun.Tops"] == 50 and counts["noun.motive"] == 41
    assert counts["adj.ppl"] == 60 and counts["adj.all"] == 10_994
    assert sum(v for k, v in counts.items() if k.startswith("noun.")) == 65_941
    pool = wordnet_candidates("neglabel")
    assert collections.Counter(pos for _, pos in pool) == {"noun": 58_514, "adj": 12_280}
    got = dict(pool)
    assert got["car"] == "noun" and "automobile" not in got  # first lemma of car.n.01 only
    assert "aardvark" not in got and "pizza" not in got  # noun.animal, noun.food left out
    assert got["living thing"] == "noun" and got["uric"] == "adj"
    assert got["red"] == "noun"  # noun.attribute beats adj.all
    words = [w for w, _ in pool]
    assert words == sorted(words) and len(set(words)) == len(words)
    assert all(w == w.lower() and "_" not in w for w in words)
    assert wordnet_candidates() == wordnet_candidates("all")  # the default is unchanged


@needs_wordnet
def test_csp_pool_leaves_out_its_files_and_conjugates_adjectives():
    pool = dict(wordnet_candidates("csp"))
    assert collections.Counter(pool.values()) == {"noun": 47_287, "csp": 10_205}
    assert pool["car"] == "noun"
    assert "astronaut" not in pool  # noun.person is excluded by CSP
    assert "uric" not in pool  # adj.pert too
    assert not any(w.startswith("uric ") and p == "csp" for w, p in pool.items())
    assert "abandoned" not in pool  # adjectives appear only conjugated
    assert pool["abandoned space"] == "csp"


def test_unknown_pool_lists_the_choices(cache):
    with pytest.raises(ValueError, match=r"pool='wordnet'.*'all', 'neglabel', 'csp'"):
        wordnet_candidates("wordnet")
