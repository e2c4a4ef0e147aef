"""Configuration of the embedded world: what is generated, how much, and which split is which.

Two seeds: ``seed`` fixes the pretraining corpus, ``split_seed`` fixes the samples of the ID
train/val/test splits and of the OoD sets. Changing ``split_seed`` (one per fine-tuning seed)
draws fresh evaluation samples while the pretrained model, which only depends on
:meth:`WorldConfig.pretrain_key`, is reused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cmakit.common.strict_config import ConfigError, from_dict, to_dict
from cmakit.data.world.concepts import (
    FAMILIES,
    MARKINGS,
    MAX_SPECIES_SYNONYMS,
    SPECIES,
    anatomy,
    concept_family,
    species,
)

# Default concept assignment. ID: geometric shapes. Near-OoD: other geometric shapes that look
# like ID ones (the SSB-hard / NINCO analogue). Far-OoD: a different family of things
# (pictograms, the iNaturalist analogue) and object-free texture images (the Textures analogue).
# Validation OoD (for choosing a recipe, never reported as a result): other look-alike shapes
# (near) and other pictograms (far), disjoint from ID and from every test OoD set, as OpenOOD
# v1.5 has validation OoD splits. Hexagon and pentagon occur only in pretraining: their
# silhouettes are too close to the circle's (IoU 0.93 / 0.89) to be OoD.
ID_ORDER: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross",
    "heart", "ring", "diamond", "arrow", "crescent",
)  # fmt: skip
NEAR_DEFAULT: tuple[str, ...] = ("oval", "rectangle", "trapezoid", "semicircle", "kite", "chevron")
FAR_OBJECTS_DEFAULT: tuple[str, ...] = ("house", "tree", "mushroom", "fish", "flower", "sailboat")
FAR_TEXTURES_DEFAULT: tuple[str, ...] = tuple(FAMILIES["texture"])
VAL_NEAR_DEFAULT: tuple[str, ...] = ("spark", "bar")
VAL_FAR_DEFAULT: tuple[str, ...] = ("key", "umbrella", "cup", "hourglass", "bell", "lollipop")

# Which OoD sets are near and which far (names of :attr:`World.ood`).
OOD_GROUPS: dict[str, list[str]] = {"near": ["near_shapes"], "far": ["far_objects", "far_textures"]}
# The validation OoD sets and their groups (names of :attr:`World.val_ood`); no test table
# reads them.
VAL_OOD_GROUPS: dict[str, list[str]] = {"near": ["val_near_shapes"], "far": ["val_far_objects"]}

# Bumped whenever the generator's code changes what a config renders (cache keys include it).
GENERATOR_VERSION = 3

# Fields that change the pretraining corpus; the pretrained-model cache key uses only these.
PRETRAIN_FIELDS: tuple[str, ...] = (
    "image_size", "seed", "n_pretrain", "multi_object_frac", "texture_frac", "synonym_prob",
    "pattern_prob", "min_scale", "supersample", "markings", "describe_prob", "species_synonyms",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Parameters of the generated image-caption world (flat, JSON-typed).

    Attributes:
        image_size: Side of the square RGB images in pixels.
        seed: Seed of the pretraining corpus.
        split_seed: Seed of the ID splits and OoD sets (vary it per fine-tuning seed).
        n_pretrain: Number of pretraining image-caption pairs (all concepts).
        num_id_classes: K, the number of ID classes.
        id_classes: Explicit ID class names; empty means the first K of ``ID_ORDER``.
        near_classes: Near-OoD concepts (same family as ID, look-alike shapes).
        far_object_classes: Far-OoD concepts of another family (pictograms).
        far_texture_classes: Far-OoD textures (images without any object).
        val_near_classes: Near-OoD concepts of the validation OoD set (for model selection).
        val_far_object_classes: Far-OoD concepts of the validation OoD set.
        n_train_per_class: ID training images per class.
        n_val_per_class: ID validation images per class.
        n_test_per_class: ID test images per class.
        n_ood_per_set: Images in each OoD set.
        multi_object_frac: Fraction of pretraining images with two or three objects.
        texture_frac: Fraction of pretraining images that are object-free textures.
        synonym_prob: Probability that a caption names a concept by a synonym.
        pattern_prob: Probability that an object is filled with a texture pattern.
        min_scale: Smallest object radius of single-object scenes (fraction of the half-width;
            the largest is 0.9).
        supersample: Anti-aliasing factor of the rasteriser (1 = none).
        markings: Markings that make species (``concepts.MARKINGS``): every shape with each of
            them is a concept with its own word, and an object's fill is its marking (plain
            bodies keep the shape's name). Empty: the fill is a nuisance drawn with
            ``pattern_prob``, and concepts are shapes.
        describe_prob: Species worlds: probability that a caption describes a species ("a
            striped circle") instead of naming it.
        species_synonyms: Species worlds: synonyms per species word (0 to
            ``concepts.MAX_SPECIES_SYNONYMS``), in the lexicon and, with ``synonym_prob``, in
            captions; they enlarge the negative-label pool.
    """

    image_size: int = 32
    seed: int = 0
    split_seed: int = 0
    n_pretrain: int = 40000
    num_id_classes: int = 10
    id_classes: tuple[str, ...] = ()
    near_classes: tuple[str, ...] = NEAR_DEFAULT
    far_object_classes: tuple[str, ...] = FAR_OBJECTS_DEFAULT
    far_texture_classes: tuple[str, ...] = FAR_TEXTURES_DEFAULT
    val_near_classes: tuple[str, ...] = VAL_NEAR_DEFAULT
    val_far_object_classes: tuple[str, ...] = VAL_FAR_DEFAULT
    n_train_per_class: int = 200
    n_val_per_class: int = 50
    n_test_per_class: int = 100
    n_ood_per_set: int = 1000
    multi_object_frac: float = 0.1
    texture_frac: float = 0.1
    synonym_prob: float = 0.3
    pattern_prob: float = 0.2
    min_scale: float = 0.55
    supersample: int = 2
    markings: tuple[str, ...] = ()
    describe_prob: float = 0.25
    species_synonyms: int = 0

    def __post_init__(self) -> None:
        for name in ("n_pretrain", "num_id_classes", "n_train_per_class", "n_val_per_class",
                     "n_test_per_class", "n_ood_per_set", "supersample"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be at least 1.")
        if not 8 <= self.image_size <= 256:
            raise ConfigError(f"image_size={self.image_size!r} must be between 8 and 256.")
        for name in ("multi_object_frac", "texture_frac", "synonym_prob", "pattern_prob",
                     "describe_prob"):  # fmt: skip
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be in [0, 1].")
        if not 0.1 <= self.min_scale <= 0.9:
            raise ConfigError(f"min_scale={self.min_scale!r} must be in [0.1, 0.9].")
        if self.multi_object_frac + self.texture_frac > 1.0:
            raise ConfigError("multi_object_frac + texture_frac must not exceed 1.")
        if not 0 <= self.species_synonyms <= MAX_SPECIES_SYNONYMS:
            raise ConfigError(
                f"species_synonyms={self.species_synonyms!r} must be in "
                f"[0, {MAX_SPECIES_SYNONYMS}]."
            )
        bad = sorted(set(self.markings) - set(MARKINGS))
        if bad or len(set(self.markings)) != len(self.markings):
            raise ConfigError(
                f"markings={list(self.markings)} must list distinct markings of {list(MARKINGS)}."
            )
        _check_concepts(self)

    @property
    def object_concepts(self) -> list[str]:
        """Every object concept of the world: the shapes, or in a species world every shape
        plain and with each marking (species words)."""
        shapes = (*FAMILIES["geometric"], *FAMILIES["pictogram"])
        return list(_species(shapes, (None, *self.markings)))

    @property
    def id_classnames(self) -> list[str]:
        """The K ID class names, in label order."""
        if self.id_classes:
            return list(self.id_classes)
        taken = set(self.near_classes) | set(self.far_object_classes)
        taken |= set(self.val_near_classes) | set(self.val_far_object_classes)
        return [c for c in ID_ORDER if c not in taken][: self.num_id_classes]

    def cache_key(self) -> dict[str, Any]:
        """Every field plus the generator version: what a generated world depends on."""
        return {**to_dict(self), "generator_version": GENERATOR_VERSION}

    def pretrain_key(self) -> dict[str, Any]:
        """The fields that change the pretraining corpus, and the generator version (for cache
        fingerprints)."""
        key = {k: v for k, v in to_dict(self).items() if k in PRETRAIN_FIELDS}
        return {**key, "generator_version": GENERATOR_VERSION}


def _check_concepts(cfg: WorldConfig) -> None:
    """Refuse unknown names, overlapping splits, wrong families and impossible K."""
    groups = {
        "id_classes": cfg.id_classes,
        "near_classes": cfg.near_classes,
        "far_object_classes": cfg.far_object_classes,
        "far_texture_classes": cfg.far_texture_classes,
        "val_near_classes": cfg.val_near_classes,
        "val_far_object_classes": cfg.val_far_object_classes,
    }
    for field, names in groups.items():
        for name in names:
            try:
                concept_family(name)
            except KeyError:
                raise ConfigError(
                    f"{field} has unknown concept {name!r}; valid concepts: {FAMILIES}, or a "
                    f"species word of the world's markings {list(cfg.markings)}."
                ) from None
            if name in SPECIES and anatomy(name)[1] not in cfg.markings:
                raise ConfigError(
                    f"{field} has species {name!r} ({' with '.join(map(str, anatomy(name)))}), "
                    f"but its marking is not in markings={list(cfg.markings)}; add it there."
                )
        if len(set(names)) != len(names):
            raise ConfigError(f"{field}={list(names)} lists a concept twice.")
        if field != "id_classes" and not names:
            raise ConfigError(f"{field} is empty; every OoD set needs at least one concept.")
    if cfg.id_classes and len(cfg.id_classes) != cfg.num_id_classes:
        raise ConfigError(
            f"num_id_classes={cfg.num_id_classes} but id_classes has {len(cfg.id_classes)} "
            f"names; make them agree (or leave id_classes empty)."
        )
    ood_lists = [cfg.near_classes, cfg.far_object_classes, cfg.far_texture_classes,
                 cfg.val_near_classes, cfg.val_far_object_classes]  # fmt: skip
    ood = set().union(*ood_lists)
    if not cfg.id_classes:
        available = [c for c in ID_ORDER if c not in ood]
        if cfg.num_id_classes > len(available):
            raise ConfigError(
                f"num_id_classes={cfg.num_id_classes} exceeds the {len(available)} ID shapes "
                f"available ({available}); lower it or pass id_classes."
            )
    _check_families(cfg)
    clash = sorted(set(cfg.id_classnames) & ood)
    if clash:
        raise ConfigError(f"Concepts {clash} are listed both as ID and as OoD.")
    if len(ood) != sum(len(names) for names in ood_lists):
        raise ConfigError(
            "A concept is listed in two OoD sets; OoD sets (test and validation) must be disjoint."
        )


def _check_families(cfg: WorldConfig) -> None:
    """Near-OoD shares the ID family; far objects do not; far textures are textures."""
    id_families = {concept_family(c) for c in cfg.id_classnames}
    if "texture" in id_families:
        raise ConfigError("ID classes must be objects (geometric or pictogram), not textures.")
    for name in cfg.near_classes + cfg.val_near_classes:
        if concept_family(name) not in id_families:
            raise ConfigError(
                f"near_classes has {name!r} of family {concept_family(name)!r}; near-OoD must "
                f"share the ID family {sorted(id_families)}."
            )
    for name in cfg.far_object_classes + cfg.val_far_object_classes:
        if concept_family(name) in id_families or concept_family(name) == "texture":
            raise ConfigError(
                f"far_object_classes has {name!r} of family {concept_family(name)!r}; far-OoD "
                f"objects must come from a family other than the ID family {sorted(id_families)}."
            )
    for name in cfg.far_texture_classes:
        if concept_family(name) != "texture":
            raise ConfigError(f"far_texture_classes has {name!r}, which is not a texture.")


def _species(shapes: tuple[str, ...], markings: tuple[str | None, ...]) -> tuple[str, ...]:
    """Every species of ``shapes`` with each of ``markings`` (``None`` = plain), shape-major."""
    return tuple(species(s, m) for s in shapes for m in markings)


# The species world (the default since generator version 3): ID classes are species of five
# bodies with two markings, so telling them apart needs body *and* marking, as ImageNet's
# fine-grained classes need more than a coarse name. Near-OoD (SSB-hard / NINCO: siblings of ID
# classes, each named by a word of its own): an ID body with another marking, or an ID marking on
# another body of the ID family. Far-OoD: pictogram species and textures. Validation OoD: the
# same two kinds of siblings (near) and other pictograms (far), disjoint from ID and from every
# test set.
SPECIES_BODIES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart")
SPECIES_ID_MARKINGS: tuple[str, ...] = ("stripes", "dots")
SPECIES_WORLD: dict[str, Any] = {
    "markings": MARKINGS,
    "id_classes": _species(SPECIES_BODIES, SPECIES_ID_MARKINGS),
    "num_id_classes": len(SPECIES_BODIES) * len(SPECIES_ID_MARKINGS),
    "near_classes": _species(SPECIES_BODIES, ("checkerboard",))
    + _species(("cross", "ring", "diamond"), SPECIES_ID_MARKINGS),
    "val_near_classes": _species(SPECIES_BODIES, (None,))
    + _species(("arrow", "crescent"), SPECIES_ID_MARKINGS),
    "far_object_classes": _species(FAR_OBJECTS_DEFAULT, (None, *MARKINGS)),
    "val_far_object_classes": _species(VAL_FAR_DEFAULT, (None, *MARKINGS)),
    # two synonyms per species: 709 words, 339 negative labels at the cpu run's 50% (issue 18)
    "species_synonyms": 2,
}

# The study's intervention on the species world (factor ``id_task``): the same bodies, test OoD
# sets and pretraining corpus, but the ID classes are each body plain and striped, so that no
# marking is shared by every ID class. The plain ID bodies leave the validation near set, which
# takes the dotted ID bodies instead.
SPECIES_PLAIN_ID_MARKINGS: tuple[str | None, ...] = (None, "stripes")
SPECIES_PLAIN_WORLD: dict[str, Any] = {
    **SPECIES_WORLD,
    "id_classes": _species(SPECIES_BODIES, SPECIES_PLAIN_ID_MARKINGS),
    "val_near_classes": _species(SPECIES_BODIES, ("dots",))
    + _species(("arrow", "crescent"), SPECIES_ID_MARKINGS),
}

# The study's ID-breadth factor (``breadth``): 40 ID classes instead of 10, on the same
# pretraining corpus (the same pretrained model) and against the same test and validation OoD
# sets. The 10 ID species of ``cpu`` are among them; the other 30 are the ID bodies with three
# more markings, cross, ring and diamond with waves and grid, and oval, rectangle and trapezoid
# with stripes, dots and waves: none is a test or validation OoD class (their near-OoD siblings
# stay siblings: an ID body with an unseen marking, an ID marking on a body seen with others).
SPECIES_BROAD_ID: tuple[str, ...] = (
    _species(SPECIES_BODIES, SPECIES_ID_MARKINGS)
    + _species(SPECIES_BODIES, ("waves", "grid", "speckles"))
    + _species(("cross", "ring", "diamond"), ("waves", "grid"))
    + _species(("oval", "rectangle", "trapezoid"), ("stripes", "dots", "waves"))
)
SPECIES_BROAD_WORLD: dict[str, Any] = {
    **SPECIES_WORLD,
    "id_classes": SPECIES_BROAD_ID,
    "num_id_classes": len(SPECIES_BROAD_ID),
}

WORLD_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "image_size": 16,
        "n_pretrain": 2048,
        "num_id_classes": 4,
        "n_train_per_class": 128,  # 16 per class only memorised: test accuracy stayed at chance
        "n_val_per_class": 8,
        "n_test_per_class": 32,
        "n_ood_per_set": 48,
        "supersample": 1,
    },
    "cpu": {**SPECIES_WORLD},
    # The shape world of generator version 2 (133 words; fills are nuisance): the study's
    # "vocabulary" factor compares it with the species world.
    "shapes": {},
    "cpu_plain": {**SPECIES_PLAIN_WORLD},  # the study's id_task factor (see above)
    "cpu_broad": {**SPECIES_BROAD_WORLD},  # the study's breadth factor: 40 ID classes
    # The species world as it was before the CLIP-shaped recipe (no synonyms: 157 negative
    # labels), pretrained warm: the study's temperature factor compares it with ``cpu``.
    "cpu_warm": {**SPECIES_WORLD, "species_synonyms": 0},
}


def world_config(profile: str = "cpu", **overrides: Any) -> WorldConfig:
    """The :class:`WorldConfig` of a named profile, with optional field overrides.

    Raises:
        KeyError: for an unknown profile, listing the valid ones.
        ConfigError: for an unknown or invalid override.
    """
    if profile not in WORLD_PRESETS:
        raise KeyError(f"Unknown world profile {profile!r}; valid: {sorted(WORLD_PRESETS)}.")
    return from_dict(WorldConfig, WORLD_PRESETS[profile], **overrides)
