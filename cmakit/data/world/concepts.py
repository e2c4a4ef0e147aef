"""The vocabulary of the world: concepts, attributes, their synonyms, and the lexicon.

Every word a caption can contain is listed here, with the concept or attribute it names. The
lexicon (the world's analogue of WordNet) is the set of these words tagged ``noun`` or ``adj``;
negative-label mining draws its candidates from it.

**Species.** A world with *markings* (``WorldConfig.markings``) names every combination of a body
shape and a marking with its own word, as English names a striped horse "zebra": a striped
circle is a ``kemol``, a dotted house a ``tubaz``. A plain body keeps its shape's name. Captions
use the species word or, less often, describe it ("a striped circle"), so the text tower learns
what the words mean from pictures and from their descriptions. Species multiply the vocabulary
(32 shapes x 6 markings = 192 nouns) without new primitives: what makes NegLabel's pool of
hundreds to thousands of negative labels meaningful to the text tower. A species may also have
up to :data:`MAX_SPECIES_SYNONYMS` synonyms (``WorldConfig.species_synonyms``), invented words
drawn after every canonical one, used in captions as the shapes' synonyms are.
"""

from __future__ import annotations

import itertools

import numpy as np

from cmakit.data.world.shapes import GEOMETRIC, PICTOGRAMS

# Concept -> words that name it. The first word is the canonical class name; captions use it
# most of the time and a synonym otherwise, so the text tower has to learn that the words mean
# the same picture.
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "disk"),
    "square": ("square", "block"),
    "triangle": ("triangle", "wedge"),
    "star": ("star", "pentagram"),
    "cross": ("cross", "plus"),
    "heart": ("heart",),
    "ring": ("ring", "donut", "hoop"),
    "hexagon": ("hexagon",),
    "arrow": ("arrow", "pointer"),
    "crescent": ("crescent", "moon"),
    "oval": ("oval", "ellipse", "egg"),
    "rectangle": ("rectangle", "slab"),
    "trapezoid": ("trapezoid", "trapezium"),
    "semicircle": ("semicircle", "dome"),
    "kite": ("kite",),
    "chevron": ("chevron",),
    "diamond": ("diamond", "rhombus"),
    "pentagon": ("pentagon",),
    "spark": ("spark", "twinkle"),
    "bar": ("bar", "stick", "plank"),
    "house": ("house", "home", "cottage"),
    "tree": ("tree",),
    "mushroom": ("mushroom", "toadstool"),
    "fish": ("fish",),
    "flower": ("flower", "blossom", "daisy"),
    "sailboat": ("sailboat", "boat", "yacht"),
    "key": ("key",),
    "umbrella": ("umbrella", "parasol"),
    "cup": ("cup", "mug"),
    "hourglass": ("hourglass",),
    "bell": ("bell",),
    "lollipop": ("lollipop", "candy"),
}

# Texture concept -> (nouns, adjectives). Adjectives also describe object fills ("a striped star").
TEXTURE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "stripes": (("stripes", "lines"), ("striped", "stripy")),
    "checkerboard": (("checkerboard", "checks"), ("checkered", "chequered")),
    "dots": (("dots", "spots"), ("dotted", "spotted")),
    "waves": (("waves", "ripples"), ("wavy",)),
    "grid": (("grid", "mesh"), ("gridded",)),
    "speckles": (("speckles", "noise"), ("speckled",)),
}

# Colour -> (RGB in [0, 1], words). The first word is the canonical one.
COLOURS: dict[str, tuple[tuple[float, float, float], tuple[str, ...]]] = {
    "red": ((0.85, 0.1, 0.1), ("red", "crimson", "scarlet")),
    "green": ((0.1, 0.7, 0.15), ("green", "emerald")),
    "blue": ((0.12, 0.25, 0.9), ("blue", "azure")),
    "yellow": ((0.95, 0.88, 0.1), ("yellow", "golden")),
    "orange": ((0.98, 0.55, 0.05), ("orange", "amber")),
    "purple": ((0.55, 0.15, 0.75), ("purple", "violet")),
    "pink": ((0.98, 0.5, 0.75), ("pink", "rosy")),
    "cyan": ((0.1, 0.85, 0.9), ("cyan", "turquoise")),
    "brown": ((0.5, 0.3, 0.12), ("brown", "chocolate")),
    "white": ((0.96, 0.96, 0.96), ("white", "snowy")),
    "black": ((0.06, 0.06, 0.06), ("black", "ebony")),
    "gray": ((0.5, 0.5, 0.5), ("gray", "grey")),
}

SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny", "little"),
    "large": ("large", "big", "huge"),
}

# Background kind -> adjectives used in "on a ... background".
BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "plain": ("plain", "blank"),
    "gradient": ("gradient", "shaded"),
    "noisy": ("noisy", "grainy"),
}

# Light or dark background tone -> adjective.
TONE_WORDS: dict[str, tuple[str, ...]] = {"light": ("light", "pale"), "dark": ("dark", "dim")}

# Generic nouns and adjectives of captions that name no concept.
FILLER_NOUNS: tuple[str, ...] = (
    "photo",
    "picture",
    "image",
    "drawing",
    "shape",
    "object",
    "background",
    "pattern",
    "texture",
)
FILLER_ADJS: tuple[str, ...] = ("nice",)

FAMILIES: dict[str, tuple[str, ...]] = {
    "geometric": tuple(GEOMETRIC),
    "pictogram": tuple(PICTOGRAMS),
    "texture": tuple(TEXTURE_WORDS),
}


#: Markings a species can carry: the fill patterns (a plain body has none).
MARKINGS: tuple[str, ...] = tuple(TEXTURE_WORDS)
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")


#: Synonyms a species word can have (:data:`SPECIES_SYNONYMS`).
MAX_SPECIES_SYNONYMS = 2


def _species_words(synonyms: int = 0) -> dict[tuple[str, str], tuple[str, ...]]:
    """(shape, marking) -> its invented words: consonant-vowel-consonant-vowel-consonant, drawn
    without replacement by a fixed seed in a fixed order (the table never changes between runs).

    Round 0 draws every species' canonical word; round k its k-th synonym, so adding synonyms
    changes no canonical word. Returns the canonical word alone when ``synonyms == 0``."""
    taken = {w for words in SHAPE_WORDS.values() for w in words}
    taken |= {w for ns, adjs in TEXTURE_WORDS.values() for w in ns + adjs}
    syllables = [a + b for a in _ONSETS for b in _VOWELS]
    words = [a + b + c for a, b, c in itertools.product(syllables, syllables, _ONSETS)]
    order = np.random.default_rng(20250324).permutation(len(words))
    pool = (words[i] for i in order)
    table: dict[tuple[str, str], tuple[str, ...]] = {}
    for _ in range(1 + synonyms):
        for shape in (*GEOMETRIC, *PICTOGRAMS):
            for marking in MARKINGS:
                word = next(pool)
                while word in taken:
                    word = next(pool)
                taken.add(word)
                table[(shape, marking)] = (*table.get((shape, marking), ()), word)
    return table


_SPECIES_TABLE = _species_words(MAX_SPECIES_SYNONYMS)
#: (shape, marking) -> species word; ``SPECIES[word]`` gives the pair back.
SPECIES_WORDS: dict[tuple[str, str], str] = {k: v[0] for k, v in _SPECIES_TABLE.items()}
#: (shape, marking) -> the species' synonyms (``MAX_SPECIES_SYNONYMS`` invented words).
SPECIES_SYNONYMS: dict[tuple[str, str], tuple[str, ...]] = {
    k: v[1:] for k, v in _SPECIES_TABLE.items()
}
SPECIES: dict[str, tuple[str, str]] = {w: k for k, w in SPECIES_WORDS.items()}


def species(shape: str, marking: str | None = None) -> str:
    """The word of a species: ``shape`` with ``marking`` (``None`` = plain, the shape's name)."""
    if marking is None:
        return shape
    return SPECIES_WORDS[(shape, marking)]


def anatomy(name: str) -> tuple[str, str | None]:
    """``(shape, marking)`` of an object concept: a species word or a plain shape name."""
    if name in SPECIES:
        return SPECIES[name]
    if name in SHAPE_WORDS:
        return name, None
    raise KeyError(f"{name!r} is not an object concept (a shape name or a species word).")


def describe(name: str) -> str:
    """A concept in plain words: ``"kemol (striped circle)"`` for a species, else the name."""
    if name not in SPECIES:
        return name
    shape, marking = SPECIES[name]
    return f"{name} ({TEXTURE_WORDS[marking][1][0]} {shape})"


def concept_family(name: str) -> str:
    """Family of a concept (``geometric``, ``pictogram`` or ``texture``); a species word has the
    family of its body shape.

    Raises:
        KeyError: for an unknown concept, listing the families' members.
    """
    name = SPECIES.get(name, (name,))[0]
    for family, members in FAMILIES.items():
        if name in members:
            return family
    raise KeyError(
        f"Unknown concept {name!r}; valid concepts: {FAMILIES}, or a species word "
        f"(cmakit.data.world.concepts.species(shape, marking))."
    )


def concept_words(name: str) -> tuple[str, ...]:
    """All words naming concept ``name`` (nouns; textures include their adjectives; a species
    has its word and every synonym it can have)."""
    if name in SPECIES:
        return (name, *SPECIES_SYNONYMS[SPECIES[name]])
    if name in SHAPE_WORDS:
        return SHAPE_WORDS[name]
    nouns, adjs = TEXTURE_WORDS[name]
    return nouns + adjs


def lexicon(markings: tuple[str, ...] = (), species_synonyms: int = 0) -> list[tuple[str, str]]:
    """Every word of the world as ``(word, pos)`` with ``pos`` in ``{"noun", "adj"}``, sorted.

    Nouns: shape and pictogram names with synonyms, the species words of ``markings`` (every
    shape with each of them) with their first ``species_synonyms`` synonyms, texture nouns,
    filler nouns. Adjectives: colours, sizes, texture
    adjectives, background kinds and tones, filler adjectives. A word that could be both
    (``dark``) is listed once, as an adjective.
    """
    nouns = {w for words in SHAPE_WORDS.values() for w in words}
    nouns |= {w for (_, m), w in SPECIES_WORDS.items() if m in markings}
    nouns |= {w for (_, m), ws in SPECIES_SYNONYMS.items() if m in markings
              for w in ws[:species_synonyms]}  # fmt: skip
    nouns |= {w for ns, _ in TEXTURE_WORDS.values() for w in ns} | set(FILLER_NOUNS)
    adjs = {w for _, words in COLOURS.values() for w in words}
    for table in (SIZE_WORDS, BACKGROUND_WORDS, TONE_WORDS):
        adjs |= {w for words in table.values() for w in words}
    adjs |= {w for _, a in TEXTURE_WORDS.values() for w in a} | set(FILLER_ADJS)
    nouns -= adjs
    return sorted([(w, "noun") for w in nouns] + [(w, "adj") for w in adjs])
