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
