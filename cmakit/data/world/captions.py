"""Captions: varied templates, word orders and synonyms for each scene.

A caption names every object of its scene (shape word, often a colour, sometimes a size and a
fill pattern) or the texture of a texture image, inside one of many templates. Canonical words
are the most frequent, synonyms appear with probability ``synonym_prob``: the text tower must
learn what words mean, and class prompts such as "a photo of a circle" work zero-shot because
"a photo of ..." is one of the templates, as it is on the web.
"""

from __future__ import annotations

import numpy as np

from cmakit.data.world.concepts import (
    BACKGROUND_WORDS,
    COLOURS,
    SHAPE_WORDS,
    SIZE_WORDS,
    SPECIES_SYNONYMS,
    SPECIES_WORDS,
    TEXTURE_WORDS,
    TONE_WORDS,
)
from cmakit.data.world.render import BACKGROUNDS, COLOUR_NAMES, OBJECTS, TEXTURES, TONES, Scenes

SINGLE_TEMPLATES: tuple[str, ...] = (
    "{np}", "a photo of {np}", "a picture of {np}", "an image of {np}", "there is {np}",
    "this is {np}", "a drawing of {np}", "{np} on a {bg} background",
    "a photo of {np} on a {bg} background", "the nice {bare}", "{np} in the picture",
    "a close-up photo of {np}",
)  # fmt: skip
MULTI_TEMPLATES: tuple[str, ...] = (
    "{a} and {b}", "a photo of {a} and {b}", "{a} next to {b}", "there is {a} and {b}",
)  # fmt: skip
TRIPLE_TEMPLATES: tuple[str, ...] = ("{a}, {b} and {c}", "a photo of {a}, {b} and {c}")
TEXTURE_TEMPLATES: tuple[str, ...] = (
    "a {adj} pattern", "a {colour} {adj} texture", "{colour} {noun}", "a photo of {noun}",
    "a close-up of {colour} {noun}", "a {adj} surface", "{noun} on a {bg} background",
    "a texture of {noun}",
)  # fmt: skip


def article(phrase: str) -> str:
    """Prefix ``a`` or ``an``."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


class _Words:
    """Draws canonical words or synonyms; names or describes species."""

    def __init__(
        self,
        rng: np.random.Generator,
        synonym_prob: float,
        species: bool = False,
        describe_prob: float = 0.0,
        species_synonyms: int = 0,
    ) -> None:
        self.rng, self.p = rng, synonym_prob
        self.species, self.describe_prob = species, describe_prob
        self.species_synonyms = species_synonyms

    def species_word(self, shape: str, marking: str) -> str:
        """The species' word, or one of its first ``species_synonyms`` synonyms."""
        key = (shape, marking)
        return self.pick((SPECIES_WORDS[key], *SPECIES_SYNONYMS[key][: self.species_synonyms]))

    def pick(self, words: tuple[str, ...]) -> str:
        if len(words) == 1 or self.rng.random() >= self.p:
            return words[0]
        return words[1 + int(self.rng.integers(len(words) - 1))]

    def choice(self, options: tuple[str, ...]) -> str:
        return options[int(self.rng.integers(len(options)))]


def _object_phrase(s: Scenes, i: int, j: int, w: _Words, full: bool) -> str:
    """Adjectives + noun of object ``j`` of scene ``i`` (no article)."""
    adjs = []
    if full and len(s.concept[i][s.concept[i] >= 0]) == 1 and w.rng.random() < 0.5:
        size = "small" if s.scale[i, j] < 0.65 else "large" if s.scale[i, j] > 0.8 else None
        if size:
            adjs.append(w.pick(SIZE_WORDS[size]))
    if w.rng.random() < (0.75 if full else 0.5):
        adjs.append(w.pick(COLOURS[COLOUR_NAMES[s.colour[i, j]]][1]))
    shape, pattern = OBJECTS[s.concept[i, j]], s.pattern[i, j]
    marking = TEXTURES[pattern] if pattern >= 0 else None
    if w.species and marking is not None and w.rng.random() >= w.describe_prob:
        noun = w.species_word(shape, marking)  # the species' own word (or a synonym)
    else:  # a shape word, described by its marking (always in a species world, else often)
        noun = w.pick(SHAPE_WORDS[shape])
        if marking is not None and (w.species or (full and w.rng.random() < 0.6)):
            adjs.append(w.pick(TEXTURE_WORDS[marking][1]))
    if len(adjs) > 1 and w.rng.random() < 0.2:
        adjs = [adjs[k] for k in w.rng.permutation(len(adjs))]
    return " ".join([*adjs, noun])


def _background_phrase(s: Scenes, i: int, w: _Words) -> str:
    tone = w.pick(TONE_WORDS[TONES[s.tone[i]]])
    kind = w.pick(BACKGROUND_WORDS[BACKGROUNDS[s.background[i]]])
    return w.choice((tone, kind, f"{tone} {kind}"))


def _caption(s: Scenes, i: int, w: _Words) -> str:
    if s.texture[i] >= 0:
        nouns, adjs = TEXTURE_WORDS[TEXTURES[s.texture[i]]]
        colour = w.pick(COLOURS[COLOUR_NAMES[s.texture_colour[i]]][1])
        return w.choice(TEXTURE_TEMPLATES).format(
            adj=w.pick(adjs), noun=w.pick(nouns), colour=colour, bg=_background_phrase(s, i, w)
        )
    k = int((s.concept[i] >= 0).sum())
    if k == 1:
        bare = _object_phrase(s, i, 0, w, full=True)
        return w.choice(SINGLE_TEMPLATES).format(
            np=article(bare), bare=bare, bg=_background_phrase(s, i, w)
        )
    phrases = [article(_object_phrase(s, i, j, w, full=False)) for j in range(k)]
    if k == 2:
        return w.choice(MULTI_TEMPLATES).format(a=phrases[0], b=phrases[1])
    return w.choice(TRIPLE_TEMPLATES).format(a=phrases[0], b=phrases[1], c=phrases[2])


def make_captions(
    s: Scenes,
    rng: np.random.Generator,
    synonym_prob: float,
    *,
    species: bool = False,
    describe_prob: float = 0.0,
    species_synonyms: int = 0,
) -> list[str]:
    """One caption per scene of ``s`` (lower case, words separated by spaces).

    With ``species=True`` a marked object is named by its species word (a synonym, one of the
    first ``species_synonyms``, with probability ``synonym_prob``), or with probability
    ``describe_prob`` described by its marking and shape ("a striped circle").
    """
    w = _Words(rng, synonym_prob, species, describe_prob, species_synonyms)
    return [_caption(s, i, w) for i in range(len(s))]
