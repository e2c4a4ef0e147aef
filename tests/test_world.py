"""Tests of the embedded world: determinism, splits, captions, near/far sanity, bad input."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch

from cmakit.common.strict_config import ConfigError, from_dict, to_dict
from cmakit.data.world import (
    OOD_GROUPS,
    OOD_SETS,
    VAL_OOD_GROUPS,
    VAL_OOD_SETS,
    WorldConfig,
    build_world,
    lexicon,
    world_config,
)
from cmakit.data.world.concepts import (
    COLOURS,
    FAMILIES,
    MARKINGS,
    MAX_SPECIES_SYNONYMS,
    SHAPE_WORDS,
    SPECIES,
    SPECIES_SYNONYMS,
    SPECIES_WORDS,
    TEXTURE_WORDS,
    _species_words,
    anatomy,
    concept_family,
    concept_words,
    species,
)
from cmakit.data.world.render import COLOUR_NAMES, OBJECTS
from cmakit.data.world.sanity import in_disguise, max_iou

SMOKE = world_config("smoke")
#: Every world preset of the profiles and the study.
EVERY_WORLD = [world_config(p) for p in ("cpu", "cpu_plain", "cpu_broad", "cpu_warm", "shapes")] + [
    SMOKE
]
SPLITS = ("pretrain", "train", "val", "test", *OOD_SETS, *VAL_OOD_SETS)


@pytest.fixture(scope="module")
def world():
    return build_world(SMOKE)


def _digest(w) -> str:
    h = hashlib.sha256()
    for split in SPLITS:
        h.update(w.raw_images[split].numpy().tobytes())
    h.update("\n".join(w.captions).encode())
    return h.hexdigest()


def test_same_seed_gives_same_bytes(world):
    assert _digest(build_world(SMOKE)) == _digest(world)


def test_other_seed_gives_other_world(world):
    assert _digest(build_world(world_config("smoke", seed=1))) != _digest(world)


def test_split_seed_changes_evaluation_samples_only(world):
    other = build_world(world_config("smoke", split_seed=1))
    assert torch.equal(other.raw_images["pretrain"], world.raw_images["pretrain"])
    assert other.captions == world.captions
    for split in ("train", "test", *OOD_SETS, *VAL_OOD_SETS):
        assert not torch.equal(other.raw_images[split], world.raw_images[split])
    assert other.config.pretrain_key() == world.config.pretrain_key()


def test_reusing_the_pretraining_split_changes_no_byte(world):
    cfg = world_config("smoke", split_seed=1)
    reused = build_world(cfg, reuse=world)
    assert reused.timings["pretrain"] == 0.0
    assert _digest(reused) == _digest(build_world(cfg))
    with pytest.raises(ValueError, match="another pretraining corpus"):
        build_world(world_config("smoke", seed=1), reuse=world)


def test_shapes_dtypes_and_sizes(world):
    k, size = SMOKE.num_id_classes, SMOKE.image_size
    assert world.raw_images["pretrain"].shape == (SMOKE.n_pretrain, 3, size, size)
    assert world.raw_images["pretrain"].dtype == torch.uint8
    assert len(world.captions) == SMOKE.n_pretrain
    assert world.labels("test").shape == (k * SMOKE.n_test_per_class,)
    assert (
        torch.bincount(world.labels("train"), minlength=k).tolist() == [SMOKE.n_train_per_class] * k
    )
    for name in OOD_SETS:
        assert world.ood[name].shape[0] == SMOKE.n_ood_per_set
    for name in VAL_OOD_SETS:
        assert world.val_ood[name].shape[0] == SMOKE.n_ood_per_set
    x = world.images("val")
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 1.5


def test_concepts_of_splits_are_disjoint(world):
    id_set = set(world.id_classnames)
    assert {c for s in ("train", "val", "test") for c in world.concepts[s]} == id_set
    seen = [set(world.concepts[name]) for name in OOD_SETS + VAL_OOD_SETS]
    for a in range(len(seen)):
        assert not seen[a] & id_set
        for b in range(a + 1, len(seen)):
            assert not seen[a] & seen[b]
    # every OoD concept also occurs in pretraining, as ImageNet's OoD sets occur in CLIP's data
    assert set(world.concepts["pretrain"]) >= set().union(*seen) | id_set


@pytest.mark.parametrize("cfg", EVERY_WORLD)
def test_validation_ood_is_disjoint_from_test_ood_and_id(cfg):
    test_ood = set(cfg.near_classes) | set(cfg.far_object_classes) | set(cfg.far_texture_classes)
    val_near, val_far = set(cfg.val_near_classes), set(cfg.val_far_object_classes)
    assert val_near and val_far and not val_near & val_far
    assert not (val_near | val_far) & (test_ood | set(cfg.id_classnames))
    assert VAL_OOD_GROUPS == {"near": ["val_near_shapes"], "far": ["val_far_objects"]}
    assert not set(VAL_OOD_SETS) & set(OOD_SETS)
    id_family = {concept_family(c) for c in cfg.id_classnames}
    assert {concept_family(c) for c in val_near} <= id_family
    assert not {concept_family(c) for c in val_far} & (id_family | {"texture"})
    # a validation OoD concept is no ID concept rotated, rescaled or recoloured
    for ood in sorted(val_near | val_far):
        for idc in cfg.id_classnames:
            assert not in_disguise(idc, ood), (ood, idc)


def test_validation_ood_sets_show_their_concepts(world):
    assert set(world.concepts["val_near_shapes"]) == set(SMOKE.val_near_classes)
    assert set(world.concepts["val_far_objects"]) == set(SMOKE.val_far_object_classes)
    assert set(world.val_ood) == set(VAL_OOD_SETS) and not set(world.ood) & set(VAL_OOD_SETS)


def test_no_image_is_shared_between_splits(world):
    owner = {}
    for split in SPLITS:
        for row in world.raw_images[split]:
            key = hashlib.sha1(row.numpy().tobytes()).hexdigest()
            assert owner.setdefault(key, split) == split, (
                f"image shared by {owner[key]} and {split}"
            )


def test_labels_match_concepts(world):
    for split in ("train", "val", "test"):
        names = [world.id_classnames[k] for k in world.labels(split).tolist()]
        assert names == world.concepts[split]


def test_captions_name_the_concept_and_its_colour(world):
    s = world.scenes["pretrain"]
    colour_of = {w: c for c, (_, words) in COLOURS.items() for w in words}
    for i, caption in enumerate(world.captions):
        words = set(re.findall(r"[a-z\-]+", caption))
        concept = world.concepts["pretrain"][i]
        if concept in TEXTURE_WORDS:
            assert words & set(TEXTURE_WORDS[concept][0] + TEXTURE_WORDS[concept][1]), caption
            assert (s.concept[i] < 0).all()
            continue
        assert OBJECTS[s.concept[i, 0]] == concept
        assert words & set(SHAPE_WORDS[concept]), caption
        present = {
            COLOUR_NAMES[c] for c, o in zip(s.colour[i], s.concept[i], strict=True) if o >= 0
        }
        named = {colour_of[w] for w in words if w in colour_of}
        assert named <= present, caption


def test_every_word_names_one_thing():
    owners: dict[str, str] = {}
    tables = [SHAPE_WORDS, {k: v[0] + v[1] for k, v in TEXTURE_WORDS.items()}]
    tables.append({k: v[1] for k, v in COLOURS.items()})
    for table in tables:
        for concept, words in table.items():
            for w in words:
                assert owners.setdefault(w, concept) == concept, (
                    f"{w!r} names {owners[w]} and {concept}"
                )


def test_lexicon_covers_the_world():
    lex = lexicon()
    words = [w for w, _ in lex]
    assert len(words) == len(set(words))
    assert {p for _, p in lex} == {"noun", "adj"}
    assert set(OBJECTS) <= set(words)
    non_id = set(words) - {w for c in SMOKE.id_classnames for w in SHAPE_WORDS[c]}
    assert len(non_id) > 50


@pytest.mark.parametrize("cfg", EVERY_WORLD)
def test_near_and_far_sets_are_what_they_claim(cfg):
    id_family = {concept_family(c) for c in cfg.id_classnames}
    assert {concept_family(c) for c in cfg.near_classes} <= id_family
    assert not {concept_family(c) for c in cfg.far_object_classes} & (id_family | {"texture"})
    assert {concept_family(c) for c in cfg.far_texture_classes} == {"texture"}
    assert OOD_GROUPS == {"near": ["near_shapes"], "far": ["far_objects", "far_textures"]}
    # no OoD object is an ID object rotated, rescaled or recoloured (colour is not in the mask)
    for ood in cfg.near_classes + cfg.far_object_classes:
        for idc in cfg.id_classnames:
            assert not in_disguise(idc, ood), (ood, idc)
    assert in_disguise("circle", "circle")  # the check does detect a disguised ID class
    assert in_disguise(species("circle", "dots"), species("circle", "dots"))
    assert not in_disguise(species("circle", "dots"), "circle")  # a marking makes a species
    assert max_iou(species("circle", "dots"), "circle") > 0.99


def test_texture_images_have_no_object(world):
    s = world.scenes["far_textures"]
    assert (s.concept < 0).all() and (s.texture >= 0).all()
    for name in ("near_shapes", "far_objects", "test"):
        s = world.scenes[name]
        assert (s.concept[:, 0] >= 0).all() and (s.concept[:, 1:] < 0).all()


def test_datasets(world):
    def tok(texts):
        return torch.tensor([[len(t), 1, 2] for t in texts])

    images, tokens = world.pretrain_dataset(tok).tensors
    assert images.dtype == torch.float32 and tokens.shape == (SMOKE.n_pretrain, 3)
    assert world.pretrain_dataset(tok, uint8=True).tensors[0].dtype == torch.uint8
    images, tokens = world.id_dataset("train", tok, "a photo of a {}").tensors
    expect = [len(f"a photo of a {world.id_classnames[k]}") for k in world.labels("train").tolist()]
    assert tokens[:, 0].tolist() == expect
    with pytest.raises(KeyError, match="valid splits"):
        world.images("imagenet")
    with pytest.raises(KeyError, match="ID splits"):
        world.labels("near_shapes")


def test_figure(world, tmp_path):
    from cmakit.data.world.figure import plot_world_samples

    paths = plot_world_samples(world, tmp_path / "samples.png", n_per_split=4)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(
        p.stat().st_size > 0 for p in paths
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_pretrain": 100, "image_szie": 32}, "Unknown parameter 'image_szie'.*image_size"),
        (
            {"id_classes": ["circle", "square"], "num_id_classes": 2, "near_classes": ["circle"]},
            r"\['circle'\] are listed both as ID and as OoD",
        ),
        ({"id_classes": ["oval", "square"], "num_id_classes": 2}, "both as ID and as OoD"),
        ({"num_id_classes": 11}, "num_id_classes=11 exceeds the 10 ID shapes"),
        ({"id_classes": ["circle"], "num_id_classes": 3}, "make them agree"),
        ({"n_test_per_class": 0}, "n_test_per_class=0 must be at least 1"),
        ({"n_pretrain": 0}, "n_pretrain=0 must be at least 1"),
        ({"n_ood_per_set": -5}, "must be at least 1"),
        ({"near_classes": []}, "near_classes is empty"),
        ({"near_classes": ["ovall"]}, "unknown concept 'ovall'"),
        ({"far_object_classes": ["pentagon"]}, "family other than the ID family"),
        ({"far_texture_classes": ["key"]}, "'key', which is not a texture"),
        ({"far_texture_classes": ["stripes", "house"]}, "listed in two OoD sets|not a texture"),
        ({"near_classes": ["key"]}, "near-OoD must share the ID family"),
        ({"val_near_classes": ["oval"]}, "listed in two OoD sets"),
        ({"val_far_object_classes": ["house"]}, "listed in two OoD sets"),
        ({"id_classes": ["circle", "spark"], "num_id_classes": 2}, "both as ID and as OoD"),
        ({"val_far_object_classes": []}, "val_far_object_classes is empty"),
        ({"val_near_classes": ["key"]}, "near-OoD must share the ID family"),
        ({"texture_frac": 0.7, "multi_object_frac": 0.5}, "must not exceed 1"),
        ({"image_size": 4}, "image_size=4"),
        ({"min_scale": 0.05}, "min_scale=0.05"),
        ({"pattern_prob": 1.5}, "pattern_prob=1.5 must be in"),
        ({"n_pretrain": "many"}, "must be an integer"),
        ({"species_synonyms": 3}, r"species_synonyms=3 must be in \[0, 2\]"),
    ],
)
def test_bad_input_fails_before_generation(params, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(WorldConfig, params)


def test_unknown_profile():
    with pytest.raises(KeyError, match="valid"):
        world_config("gpu-huge")


def test_families_are_disjoint():
    members = [set(m) for m in FAMILIES.values()]
    assert sum(len(m) for m in members) == len(set().union(*members))
    assert np.all([concept_family(c) == "geometric" for c in world_config("cpu").id_classnames])


# ---------------------------------------------------------------- the species world
SPECIES_SMALL = world_config(
    "cpu", image_size=16, n_pretrain=600, n_train_per_class=4, n_val_per_class=2,
    n_test_per_class=3, n_ood_per_set=30, supersample=1,
)  # fmt: skip


@pytest.fixture(scope="module")
def species_world():
    return build_world(SPECIES_SMALL)


def test_species_words_are_fixed_distinct_and_new():
    # the table does not depend on the run, nor the canonical words on the synonyms drawn
    assert {k: v[0] for k, v in _species_words().items()} == SPECIES_WORDS
    table = _species_words(MAX_SPECIES_SYNONYMS)
    assert {k: v[1:] for k, v in table.items()} == SPECIES_SYNONYMS
    assert {k: v[0] for k, v in table.items()} == SPECIES_WORDS
    every = [w for ws in table.values() for w in ws]
    assert len(every) == len(set(every)) == len(OBJECTS) * len(MARKINGS) * 3
    assert not set(every) & {w for ws in SHAPE_WORDS.values() for w in ws}
    words = list(SPECIES_WORDS.values())
    assert len(words) == len(set(words)) == len(OBJECTS) * len(MARKINGS)
    assert all(re.fullmatch(r"[a-z][aeiou][a-z][aeiou][a-z]", w) for w in words)
    old = {w for ws in SHAPE_WORDS.values() for w in ws} | {w for w, _ in lexicon()}
    assert not set(words) & old
    for (shape, marking), word in SPECIES_WORDS.items():
        assert anatomy(word) == (shape, marking) and SPECIES[word] == (shape, marking)
        assert concept_family(word) == concept_family(shape)
    assert species("circle") == "circle" and anatomy("circle") == ("circle", None)


def test_species_lexicon_names_every_species_of_its_markings():
    words = {w for w, pos in lexicon(("dots", "stripes")) if pos == "noun"}
    assert {species(s, m) for s in OBJECTS for m in ("dots", "stripes")} <= words
    assert not {species(s, "grid") for s in OBJECTS} & words
    assert len(lexicon(MARKINGS)) == len(lexicon()) + len(OBJECTS) * len(MARKINGS)


def test_species_world_splits_and_markings(species_world):
    w, cfg = species_world, SPECIES_SMALL
    assert cfg.markings and w.id_classnames == list(cfg.id_classes)
    for split in ("train", "test", *OOD_SETS, *VAL_OOD_SETS):
        s = w.scenes[split]
        for i, name in enumerate(w.concepts[split]):
            if name in TEXTURE_WORDS:
                continue
            shape, marking = anatomy(name)
            assert OBJECTS[s.concept[i, 0]] == shape
            assert s.pattern[i, 0] == (
                -1 if marking is None else list(TEXTURE_WORDS).index(marking)
            )
    # a near-OoD species shares its body or its marking with an ID species, never both
    id_bodies = {anatomy(c)[0] for c in cfg.id_classnames}
    id_marks = {anatomy(c)[1] for c in cfg.id_classnames}
    for name in cfg.near_classes + cfg.val_near_classes:
        body, mark = anatomy(name)
        assert (body in id_bodies) != (mark in id_marks), name
    assert not set(cfg.near_classes) & set(cfg.id_classnames)
    assert {w for w, _ in w.lexicon} >= set(cfg.near_classes) | set(cfg.far_object_classes)
    # negative candidates exclude the ID species' words but keep their siblings' words
    cands = {word for word, _ in w.negative_candidates()}
    assert not cands & set(cfg.id_classnames) and set(cfg.near_classes) <= cands


def test_species_captions_name_or_describe(species_world):
    s = species_world.scenes["pretrain"]
    named = described = 0
    for i, caption in enumerate(species_world.captions):
        concept = species_world.concepts["pretrain"][i]
        if concept in TEXTURE_WORDS:
            continue
        words = set(re.findall(r"[a-z]+", caption))
        shape, marking = anatomy(concept)
        assert OBJECTS[s.concept[i, 0]] == shape
        if marking is None:
            assert words & set(SHAPE_WORDS[shape]), caption
        elif words & set(concept_words(concept)):  # its word or a synonym
            named += 1
        else:
            assert words & set(SHAPE_WORDS[shape]), caption
            assert words & set(TEXTURE_WORDS[marking][1]), caption
            described += 1
    assert named > described > 0  # describe_prob = 0.25: species are mostly named


def test_species_synonyms_in_lexicon_captions_and_negative_candidates():
    lex = {w for w, _ in lexicon(MARKINGS, 2)}
    assert len(lex) == len(lexicon(MARKINGS)) + 2 * len(OBJECTS) * len(MARKINGS)
    assert {w for ws in SPECIES_SYNONYMS.values() for w in ws} <= lex
    assert len(lexicon(MARKINGS, 1)) == len(lexicon(MARKINGS)) + len(OBJECTS) * len(MARKINGS)
    synonyms = {w for ws in SPECIES_SYNONYMS.values() for w in ws}
    plain = build_world(from_dict(WorldConfig, {**to_dict(SPECIES_SMALL), "species_synonyms": 0}))
    rich = build_world(from_dict(WorldConfig, {**to_dict(SPECIES_SMALL), "species_synonyms": 2}))
    used = {w for c in rich.captions for w in c.split()} & synonyms
    assert used and not {w for c in plain.captions for w in c.split()} & synonyms
    # every word of an ID species, synonyms included, leaves the negative candidates
    id_words = {w for c in rich.id_classnames for w in concept_words(c)}
    assert len(id_words) == 3 * len(rich.id_classnames)
    cands = {w for w, _ in rich.negative_candidates()}
    assert not cands & id_words and len(cands) == len(rich.lexicon) - len(id_words)


def test_species_world_is_deterministic(species_world):
    assert _digest(build_world(SPECIES_SMALL)) == _digest(species_world)


def test_species_of_a_missing_marking_is_refused():
    with pytest.raises(ConfigError, match="add it there"):
        world_config("cpu", markings=("stripes",))


def test_the_broad_id_task_keeps_the_model_and_the_ood_sets_and_adds_30_classes():
    """The study's breadth factor: 40 ID classes, cpu's 10 among them, on the same pretrained
    model and against the same test and validation OoD sets, none of which is an ID class."""
    from cmakit.pipeline.products import pretrained_key

    cpu, broad = world_config("cpu"), world_config("cpu_broad")
    assert len(set(broad.id_classes)) == broad.num_id_classes == 40
    assert set(cpu.id_classes) < set(broad.id_classes)
    assert pretrained_key("cpu", "cmakit-tiny-rn") == pretrained_key("cpu_broad", "cmakit-tiny-rn")
    for field in ("near_classes", "val_near_classes", "far_object_classes",
                  "val_far_object_classes", "far_texture_classes"):  # fmt: skip
        assert getattr(broad, field) == getattr(cpu, field), field
        assert not set(getattr(broad, field)) & set(broad.id_classes), field
