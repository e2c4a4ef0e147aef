"""Negative labels for NegLabel scoring: mined once, saved as TSV, re-encoded per model.

Mining (NegLabel's NegMining, PAPER.md §3) uses the *pretrained* text encoder: candidates
(WordNet nouns and adjectives by default, or any ``(word, pos)`` list) are prompted by part of
speech (:data:`cmakit.core.mining.NEGLABEL_PROMPTS`), and within each part of speech the fraction
``keep`` least similar to the ID prompts is kept (:func:`cmakit.core.mining.mine_negative_labels`).
Every evaluated model then re-encodes the same fixed list (:func:`encode_negative_labels`).

A fixed list of prompts can also be read as it is (:func:`read_negative_labels`): the CMA
authors' ``Neglabel/neg_label_10000.npy``, a text file of prompts, or cmakit's own TSV.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from cmakit.common.constants import TEST_PROMPT
from cmakit.common.io import write_text
from cmakit.core.mining import (
    DEFAULT_KEEP,
    NEGLABEL_PROMPTS,
    mine_negative_labels,
    negative_label_affinity,
)
from cmakit.engine.embed import encode_texts

log = logging.getLogger(__name__)
HEADER = "word\tpos\taffinity"


@dataclasses.dataclass(frozen=True)
class NegativeLabel:
    """A mined label: its word, part of speech ("noun" | "adj") and ID affinity (a cosine)."""

    word: str
    pos: str
    affinity: float


def _prompts(labels: Sequence[tuple[str, str]]) -> list[str]:
    bad = sorted({pos for _, pos in labels} - set(NEGLABEL_PROMPTS))
    if bad:
        raise ValueError(f"Unknown part(s) of speech {bad}; valid: {sorted(NEGLABEL_PROMPTS)}.")
    return [NEGLABEL_PROMPTS[pos].format(word) for word, pos in labels]


def mine_negatives(
    model: torch.nn.Module,
    tokenizer: Callable,
    id_classnames: Sequence[str],
    *,
    candidates: Sequence[tuple[str, str]] | None = None,
    keep: int | float = DEFAULT_KEEP,
    percentile: float = 0.95,
    id_template: str = TEST_PROMPT,
    batch_size: int = 1024,
    device: str = "auto",
    progress: bool = True,
) -> list[NegativeLabel]:
    """Mine negative labels with a (pretrained) CLIP text encoder.

    Args:
        model: The pretrained model whose text encoder ranks the candidates.
        tokenizer: Its tokenizer.
        id_classnames: ID class names; prompted with ``id_template``.
        candidates: ``(word, pos)`` pairs; default WordNet's nouns and adjectives.
        keep: Per part of speech, a fraction in (0, 1] or a count.
        percentile: Quantile of the cosines to the ID prompts that defines affinity.
        id_template: ID prompt ("The nice {}", the paper's test prompt).
        batch_size, device, progress: Passed to :func:`cmakit.engine.embed.encode_texts`.

    Returns:
        Nouns first, then adjectives, each least ID-like first.
    """
    if candidates is None:
        from cmakit.data.wordnet import wordnet_candidates

        candidates = wordnet_candidates()
    _prompts(candidates)
    id_emb = encode_texts(model, tokenizer, [id_template.format(c) for c in id_classnames],
                          batch_size=batch_size, device=device, progress=progress,
                          desc="mining negative labels (ID prompts)")  # fmt: skip
    mined: list[NegativeLabel] = []
    for pos in NEGLABEL_PROMPTS:
        words = [w for w, p in candidates if p == pos]
        if not words:
            continue
        emb = encode_texts(model, tokenizer, _prompts([(w, pos) for w in words]),
                           batch_size=batch_size, device=device, progress=progress,
                           desc=f"mining negative labels ({pos})")  # fmt: skip
        order = mine_negative_labels(emb, id_emb, keep=keep, percentile=percentile)
        affinity = negative_label_affinity(emb[order], id_emb, percentile=percentile)
        mined += [
            NegativeLabel(words[i], pos, float(a)) for i, a in zip(order, affinity, strict=True)
        ]
        log.info("kept %d of %d %s candidates", len(order), len(words), pos)
    return mined


def save_negative_labels(path: str | os.PathLike, labels: Sequence[NegativeLabel]) -> Path:
    """Write ``word<TAB>pos<TAB>affinity`` lines under a header, atomically."""
    for lab in labels:
        if "\t" in lab.word or "\n" in lab.word:
            raise ValueError(f"Label {lab.word!r} contains a tab or newline.")
    rows = [f"{lab.word}\t{lab.pos}\t{lab.affinity:.6f}" for lab in labels]
    return write_text(path, "\n".join([HEADER, *rows]) + "\n")


def load_negative_labels(path: str | os.PathLike) -> list[NegativeLabel]:
    """Read a file written by :func:`save_negative_labels`.

    Raises:
        FileNotFoundError: missing file.
        ValueError: wrong header or a malformed line (line number shown).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Negative-label file not found: {path}")
    lines = path.read_text().splitlines()
    if not lines or lines[0] != HEADER:
        raise ValueError(f"{path}: first line must be {HEADER!r}.")
    out = []
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != 3 or parts[1] not in NEGLABEL_PROMPTS:
            raise ValueError(
                f"{path}:{n}: expected 'word<TAB>{'|'.join(NEGLABEL_PROMPTS)}<TAB>affinity', got {line!r}."
            )
        out.append(NegativeLabel(parts[0], parts[1], float(parts[2])))
    return out


def read_negative_labels(path: str | os.PathLike) -> list[str]:
    """The negative-label prompts of a file, in file order, exactly as the file has them.

    Formats, by suffix:

    * ``.npy``: a 1-D NumPy array of strings, as the CMA authors' ``neg_label_10000.npy``
      (10,000 prompts: 1,500 "This is a {adj} photo", then 8,500 "The nice {noun}"; 9,766
      unique; 12 carry a stray "["). Duplicates and quirks are kept: the paper's numbers
      were computed with them.
    * ``.txt``: one prompt per line (a final newline, and the carriage returns of CRLF line
      ends, are not part of a prompt).
    * ``.tsv``: cmakit's negative-label file (:func:`save_negative_labels`), prompted by kind.

    Args:
        path: The file.

    Returns:
        The prompts as a list of ``str``.

    Raises:
        FileNotFoundError: missing file.
        ValueError: an unknown suffix, an array that is not 1-D strings (object arrays are
            refused: loading them would unpickle), an empty prompt line, or no prompts.

    Example:
        >>> read_negative_labels("neg_label_10000.npy")[:2]  # doctest: +SKIP
        ['This is a [thermal photo', 'This is a circumscribed photo']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Negative-label file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        prompts = _read_npy(path)
    elif suffix == ".txt":
        text = path.read_text(encoding="utf-8")
        prompts = [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]
        empty = [n for n, p in enumerate(prompts, start=1) if not p.strip()]
        if text and empty:
            raise ValueError(f"{path}: line(s) {empty[:5]} hold no prompt; remove them.")
        prompts = prompts if text else []
    elif suffix == ".tsv":
        prompts = label_prompts(load_negative_labels(path))
    else:
        raise ValueError(f"{path}: unknown format {suffix!r}; give a .npy, .txt or .tsv file.")
    if not prompts:
        raise ValueError(f"{path} holds no prompts.")
    return prompts


def _read_npy(path: Path) -> list[str]:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:  # an object array needs pickle
        raise ValueError(
            f"{path}: {err}. Save the prompts as a string array: "
            "np.save(path, np.asarray(prompts, dtype=str))."
        ) from None
    if array.ndim != 1 or array.dtype.kind != "U":
        raise ValueError(
            f"{path}: expected a 1-D array of strings, got shape {array.shape} dtype {array.dtype}."
        )
    return [str(p) for p in array.tolist()]


def encode_negative_labels(
    model: torch.nn.Module,
    tokenizer: Callable,
    labels: Sequence[NegativeLabel] | Sequence[tuple[str, str]],
    *,
    batch_size: int = 1024,
    device: str = "auto",
    progress: bool = True,
) -> np.ndarray:
    """``[M, D]`` float32 embeddings of the labels, each with its part-of-speech prompt."""
    pairs = [
        (lab.word, lab.pos) if isinstance(lab, NegativeLabel) else tuple(lab) for lab in labels
    ]
    return encode_texts(model, tokenizer, _prompts(pairs), batch_size=batch_size, device=device,
                        progress=progress)  # fmt: skip


def label_prompts(labels: Sequence[NegativeLabel]) -> list[str]:
    """The prompt strings of ``labels`` (part of the embedding-cache key)."""
    return _prompts([(lab.word, lab.pos) for lab in labels])
