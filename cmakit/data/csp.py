"""The Conjugated Semantic Pool (CSP; Chen, Gao & Xu, NeurIPS 2024) of negative-label candidates.

NegLabel's pool holds unmodified class names (nouns) and bare adjectives. CSP "conjugates" it:
each adjective modifies a *superclass* name ("striped pattern", "red object", "dark scene"),
so that a candidate is the centre of a cluster of images that share a property across many
categories, rather than one more rare word. The official code (``CLIPScalableClassifier``,
``csp_templates``) keeps the nouns, replaces every adjective by one conjugated phrase whose
superclass template it draws at random (seed 0), mines nouns and phrases separately with
NegLabel's NegMining (15% of each) and scores with NegLabel's grouped score (100 groups).

This module builds the pool from any ``(word, pos)`` list (WordNet's files or the embedded
world's lexicon). The phrases carry their own kind, ``"csp"``, prompted as
``NEGLABEL_PROMPTS["csp"]`` and mined apart from the nouns. The template of each adjective is
drawn with ``numpy.random.default_rng(seed)`` over the adjectives in sorted order, so it is
deterministic but not the official draw (Python's ``random`` over files in directory order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CSP_KIND", "CSP_TEMPLATES", "conjugate", "csp_pool"]

#: Superclass templates of CSP's code (``csp_templates``), in its order.
CSP_TEMPLATES: tuple[str, ...] = (
    "{} environment",
    "{} space",
    "{} object",
    "{} scene",
    "{} place",
    "{} item",
    "{} area",
    "{} view",
    "{} thing",
    "{} pattern",
    "{} structure",
    "{} landscape",
    "{} vista",
    "{} creature",
)
#: The ``pos`` of a conjugated phrase in a candidate list.
CSP_KIND = "csp"


def conjugate(
    adjectives: Sequence[str], *, templates: Sequence[str] = CSP_TEMPLATES, seed: int = 0
) -> list[str]:
    """Place each adjective into one superclass template drawn at random.

    Args:
        adjectives: The adjectives, in the order that the draws follow.
        templates: Superclass templates, each with one ``{}``.
        seed: Seed of ``numpy.random.default_rng`` that draws one template per adjective.

    Returns:
        One phrase per adjective, in the adjectives' order.

    Raises:
        ValueError: No templates, or a template without exactly one ``{}``.

    Example:
        >>> conjugate(["red"], templates=["{} object"])
        ['red object']
    """
    if not templates:
        raise ValueError("templates is empty; give at least one superclass template.")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise ValueError(f"Templates {bad} must hold exactly one '{{}}' each.")
    picks = np.random.default_rng(seed).integers(len(templates), size=len(adjectives))
    return [templates[int(k)].format(a) for a, k in zip(adjectives, picks, strict=True)]


def csp_pool(
    candidates: Sequence[tuple[str, str]],
    *,
    templates: Sequence[str] = CSP_TEMPLATES,
    seed: int = 0,
) -> list[tuple[str, str]]:
    """CSP's pool from NegLabel-style candidates: nouns kept, adjectives conjugated.

    Args:
        candidates: ``(word, pos)`` pairs with ``pos`` in ``{"noun", "adj"}`` (duplicates are
            dropped; a word that is also a noun is not conjugated).
        templates: Superclass templates (:data:`CSP_TEMPLATES`).
        seed: Seed of the template draw (:func:`conjugate`).

    Returns:
        Sorted ``(word, "noun")`` and ``(phrase, "csp")`` pairs; a phrase that equals a noun
        is dropped.

    Raises:
        ValueError: A ``pos`` other than ``"noun"`` or ``"adj"``, or bad templates.

    Example:
        >>> csp_pool([("cat", "noun"), ("red", "adj")], templates=["{} thing"])
        [('cat', 'noun'), ('red thing', 'csp')]
    """
    bad = sorted({pos for _, pos in candidates} - {"noun", "adj"})
    if bad:
        raise ValueError(f"Candidates of kind {bad}; CSP conjugates 'adj' and keeps 'noun'.")
    nouns = {w for w, pos in candidates if pos == "noun"}
    adjectives = sorted({w for w, pos in candidates if pos == "adj"} - nouns)
    phrases = set(conjugate(adjectives, templates=templates, seed=seed)) - nouns
    return sorted([(w, "noun") for w in nouns] + [(p, CSP_KIND) for p in phrases])
