"""WordNet 3.0 nouns and adjectives: the candidate pools of negative labels.

Three pools (:data:`POOLS`), as ``(word, pos)`` pairs:

* ``"all"``: every noun and adjective lemma (136,139 words);
* ``"neglabel"``: NegLabel's pool, one word per synset of its lexicographer files
  (:data:`NEGLABEL_FILES`: the 24 noun files other than ``noun.animal`` and ``noun.food``, plus
  ``adj.all``, ``adj.pert``, ``adj.ppl``); each synset gives its first lemma;
* ``"csp"``: the Conjugated Semantic Pool (Chen et al., NeurIPS 2024): NegLabel's files minus
  :data:`CSP_EXCLUDED_FILES`, nouns as they are and each adjective conjugated with a superclass
  name (:func:`cmakit.data.csp.csp_pool`).

The lemmas are read with nltk's ``WordNetCorpusReader`` from, in order:

1. nltk's own WordNet data (``nltk.data.find("corpora/wordnet")``), if installed;
2. Debian's ``wordnet-base`` package (``/usr/share/wordnet``). Its files lack the
   ``lexnames`` file that nltk needs, and nltk only reads files under its data roots, so the
   files are copied once into ``<cache>/nltk_data/corpora/wordnet`` together with a generated
   ``lexnames`` (written atomically), and ``<cache>/nltk_data`` is appended to
   ``nltk.data.path``.

``<cache>`` is :func:`cmakit.common.io.cache_root`. The candidate list is cached
there as JSON too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from cmakit.common.io import atomic_path, cache_root, fingerprint

__all__ = [
    "CSP_EXCLUDED_FILES",
    "NEGLABEL_FILES",
    "POOLS",
    "POS_PRIORITY",
    "WORDNET_INSTALL_HINT",
    "cache_dir",
    "lexicographer_words",
    "wordnet_candidates",
    "wordnet_source",
]

log = logging.getLogger(__name__)

#: Where Debian's ``wordnet-base`` installs the WordNet 3.0 database.
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

#: A word that is both a noun and an adjective is listed once, with the first POS here.
POS_PRIORITY = ("noun", "adj")

WORDNET_INSTALL_HINT = (
    "WordNet 3.0 was not found. Install it with `apt-get install wordnet-base` (Debian/Ubuntu; "
    "files in /usr/share/wordnet) or `python -m nltk.downloader wordnet` (nltk's data)."
)

# The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)): number, name, syntactic category.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_LEX_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_NLTK_POS = {"noun": "n", "adj": "a"}

#: The candidate pools :func:`wordnet_candidates` knows.
POOLS = ("all", "neglabel", "csp")
#: NegLabel's lexicographer files (its ``txtfiles``): 24 noun files and 3 adjective files.
NEGLABEL_FILES: tuple[str, ...] = tuple(
    name
    for name in _LEXNAMES
    if name.startswith("noun.") and name not in ("noun.animal", "noun.food")
) + ("adj.all", "adj.pert", "adj.ppl")
#: Files CSP's published ImageNet configuration leaves out of NegLabel's (``txt_exclude``).
CSP_EXCLUDED_FILES: tuple[str, ...] = ("noun.person", "noun.quantity", "noun.group", "adj.pert")


def cache_dir() -> Path:
    """cmakit's cache folder (:func:`cmakit.common.io.cache_root`)."""
    return cache_root()


def _lexnames_text() -> str:
    return "".join(
        f"{i:02d}\t{name}\t{_LEX_CATEGORY[name.split('.')[0]]}\n"
        for i, name in enumerate(_LEXNAMES)
    )


def _nltk_wordnet_root() -> Path | None:
    import nltk

    try:
        return Path(str(nltk.data.find("corpora/wordnet")))
    except LookupError:
        return None


def _debian_copy(source: Path, cache: Path) -> Path:
    """Copy Debian's WordNet files plus a generated ``lexnames`` into an nltk data root."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    target = cache / "nltk_data" / "corpora" / "wordnet"
    if (target / "lexnames").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet.", dir=target.parent))
    try:
        for name in WordNetCorpusReader._FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, tmp / name)
        (tmp / "lexnames").write_text(_lexnames_text())
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # atomic: a complete folder or none
    except OSError:
        if not (target / "lexnames").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("Prepared WordNet from %s in %s", source, target)
    return target


def _wordnet_root() -> tuple[Path, str]:
    """Return ``(reader root, source description)`` or raise ``LookupError`` with a hint."""
    root = _nltk_wordnet_root()
    if root is not None and root.is_dir():
        return root, f"nltk data {root}"
    if (DEBIAN_WORDNET_DIR / "index.noun").is_file():
        return _debian_copy(DEBIAN_WORDNET_DIR, cache_dir()), f"wordnet-base {DEBIAN_WORDNET_DIR}"
    raise LookupError(WORDNET_INSTALL_HINT)


def wordnet_source() -> str:
    """Where WordNet will be read from (nltk data or Debian's wordnet-base).

    Raises:
        LookupError: WordNet is not installed; the message says how to install it.
    """
    return _wordnet_root()[1]


def _open_reader(root: Path):
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _EnglishOnlyReader(WordNetCorpusReader):
        # The OMW version map needs index.sense, which wordnet-base lacks; lemmas do not.
        def map_wn(self, version="wordnet"):
            return None

    data_root = str(root.parent.parent)  # .../nltk_data for .../nltk_data/corpora/wordnet
    if data_root not in nltk.data.path:
        nltk.data.path.append(data_root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        return _EnglishOnlyReader(str(root), None)


def _read_candidates(root: Path) -> list[tuple[str, str]]:
    reader = _open_reader(root)
    seen: dict[str, str] = {}
    for pos in POS_PRIORITY:
        for lemma in sorted(reader.all_lemma_names(pos=_NLTK_POS[pos])):
            seen.setdefault(lemma.replace("_", " "), pos)
    return sorted(seen.items())


def _read_lexicographer_words(root: Path) -> dict[str, list[str]]:
    """Every noun and adjective lexicographer file -> its words (one per synset), sorted."""
    reader = _open_reader(root)
    files: dict[str, set[str]] = {}
    for pos in POS_PRIORITY:
        for synset in reader.all_synsets(pos=_NLTK_POS[pos]):  # satellites come with "a"
            word = synset.lemmas()[0].name().replace("_", " ").lower()
            files.setdefault(synset.lexname(), set()).add(word)
    return {name: sorted(words) for name, words in sorted(files.items())}


def _cached(kind: str, read, use_cache: bool):
    """``read(root)``, cached as JSON under :func:`cache_dir` by WordNet's files and ``kind``."""
    root, source = _wordnet_root()
    stamp = [(p.name, p.stat().st_size) for p in sorted(root.glob("index.*"))]
    name = "wordnet_candidates" if kind == "all" else f"wordnet_{kind}"
    path = cache_dir() / f"{name}_{fingerprint(str(root), stamp)}.json"
    if use_cache and path.is_file():
        return json.loads(path.read_text())
    value = read(root)
    log.info("Read WordNet %s from %s", kind, source)
    if use_cache:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(value))
    return value


def lexicographer_words(*, use_cache: bool = True) -> dict[str, list[str]]:
    """The words of each noun and adjective lexicographer file of WordNet 3.0, as NegLabel
    lists them: one word per synset (its first lemma), lower case, underscores as spaces.

    A word is listed once per file (two synsets of one file may share their first lemma) but
    may appear in several files. ``adj.all`` holds head and satellite adjectives.

    Args:
        use_cache: Read/write the lists as JSON under :func:`cache_dir`.

    Returns:
        ``{lexicographer file name: sorted words}``, e.g. ``{"noun.Tops": [...], ...}``; 26
        noun files and 3 adjective files.

    Raises:
        LookupError: WordNet is not installed; the message says how to install it.
    """
    return _cached("lexnames", _read_lexicographer_words, use_cache)


def _pool_of_files(files: dict[str, list[str]], names) -> list[tuple[str, str]]:
    """``(word, pos)`` of the union of ``names``; a word that is a noun in any file is a noun."""
    nouns = {w for name in names if name.startswith("noun.") for w in files.get(name, ())}
    adjs = {w for name in names if name.startswith("adj.") for w in files.get(name, ())}
    return sorted([(w, "noun") for w in nouns] + [(w, "adj") for w in adjs - nouns])


def wordnet_candidates(pool: str = "all", *, use_cache: bool = True) -> list[tuple[str, str]]:
    """A pool of negative-label candidates from WordNet 3.0, as ``(word, pos)`` pairs.

    * ``"all"`` (default): every noun and adjective lemma. Underscores become spaces
      (``"ice_cream"`` -> ``"ice cream"``); words keep WordNet's case. With WordNet 3.0: 117,798
      nouns and 18,341 adjectives (136,139 words).
    * ``"neglabel"``: NegLabel's pool: the words of :data:`NEGLABEL_FILES`
      (:func:`lexicographer_words`: one word per synset, lower case). With WordNet 3.0: 58,514
      nouns and 12,280 adjectives (70,794 words).
    * ``"csp"``: the Conjugated Semantic Pool: the words of :data:`NEGLABEL_FILES` but
      :data:`CSP_EXCLUDED_FILES`; nouns as they are, each adjective conjugated with one
      superclass name as a ``"csp"`` phrase (:func:`cmakit.data.csp.csp_pool`, seed 0). With
      WordNet 3.0: 47,287 nouns and 10,205 phrases (57,492 candidates).

    A word that is both a noun and an adjective is listed once, as ``"noun"``
    (:data:`POS_PRIORITY`). The list is sorted by word, so it is deterministic.

    Args:
        pool: One of :data:`POOLS`.
        use_cache: Read/write WordNet's lists as JSON under :func:`cache_dir`.

    Returns:
        Sorted list of ``(word, pos)`` with ``pos`` in ``{"noun", "adj"}`` (``"csp"``: ``{"noun",
        "csp"}``).

    Raises:
        ValueError: An unknown ``pool``.
        LookupError: WordNet is not installed; the message says how to install it.

    Example:
        >>> ("dog", "noun") in wordnet_candidates()
        True
    """
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r} is not known; choose one of {list(POOLS)}.")
    if pool == "all":
        return [tuple(item) for item in _cached("all", _read_candidates, use_cache)]
    files = lexicographer_words(use_cache=use_cache)
    if pool == "neglabel":
        return _pool_of_files(files, NEGLABEL_FILES)
    from cmakit.data.csp import csp_pool

    kept = [name for name in NEGLABEL_FILES if name not in CSP_EXCLUDED_FILES]
    return csp_pool(_pool_of_files(files, kept))
