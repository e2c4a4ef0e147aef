"""Build the world: the pretraining corpus, the ID task and the OoD sets, as tensors.

Every split has its own random stream (seeded by the world seed, the split seed and the split's
name), so changing one split's size never changes another split's samples.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import TensorDataset

from cmakit.common.constants import OPENAI_MEAN, OPENAI_STD, TRAIN_PROMPT
from cmakit.data.world.captions import make_captions
from cmakit.data.world.concepts import concept_words, lexicon
from cmakit.data.world.config import WorldConfig
from cmakit.data.world.render import OBJECTS, TEXTURES, Scenes, render_scenes, sample_scenes

log = logging.getLogger(__name__)

# OpenAI CLIP normalisation (open_clip's default for configs without their own mean/std).
MEAN, STD = OPENAI_MEAN, OPENAI_STD  # the tiny CLIP normalises as OpenAI CLIP does
ID_SPLITS: tuple[str, ...] = ("train", "val", "test")
OOD_SETS: tuple[str, ...] = ("near_shapes", "far_objects", "far_textures")
#: Validation OoD sets: for choosing a recipe only, never part of a test table.
VAL_OOD_SETS: tuple[str, ...] = ("val_near_shapes", "val_far_objects")
_SPLIT_CODE = {
    "pretrain": 0,
    "train": 1,
    "val": 2,
    "test": 3,
    "near_shapes": 4,
    "far_objects": 5,
    "far_textures": 6,
    "val_near_shapes": 7,
    "val_far_objects": 8,
}

Tokenizer = Callable[[Sequence[str]], torch.Tensor]


@dataclasses.dataclass
class World:
    """A generated world. Images are ``uint8`` tensors ``[N, 3, H, W]``.

    Attributes:
        config: The configuration it was built from.
        id_classnames: The K ID class names; ID label ``k`` is ``id_classnames[k]``.
        raw_images: Split name -> ``uint8`` images. Splits: ``pretrain``, ``train``, ``val``,
            ``test``, the test OoD sets ``near_shapes``, ``far_objects``, ``far_textures`` and
            the validation OoD sets ``val_near_shapes``, ``val_far_objects``.
        concepts: Split name -> the concept shown by each image (slot 0 for multi-object).
        captions: Pretraining captions, one per pretraining image.
        id_labels: ``train``/``val``/``test`` -> ``[N]`` long labels in ``[0, K)``.
        scenes: Split name -> the scene parameters (for tests and figures).
        lexicon: Every word of the world as ``(word, pos)``, pos in ``{"noun", "adj"}``.
        timings: Seconds spent generating each split.
    """

    config: WorldConfig
    id_classnames: list[str]
    raw_images: dict[str, torch.Tensor]
    concepts: dict[str, list[str]]
    captions: list[str]
    id_labels: dict[str, torch.Tensor]
    scenes: dict[str, Scenes]
    lexicon: list[tuple[str, str]]
    timings: dict[str, float]

    @property
    def ood(self) -> dict[str, torch.Tensor]:
        """OoD set name -> ``uint8`` images (near: ``near_shapes``; far: ``far_objects``, ``far_textures``)."""
        return {name: self.raw_images[name] for name in OOD_SETS}

    @property
    def val_ood(self) -> dict[str, torch.Tensor]:
        """Validation OoD set name -> ``uint8`` images (``val_near_shapes``,
        ``val_far_objects``): concepts disjoint from ID and from every test OoD set."""
        return {name: self.raw_images[name] for name in VAL_OOD_SETS}

    def ood_classnames(self, name: str) -> list[str]:
        """The concepts of OoD set ``name``, sorted."""
        return sorted(set(self.concepts[name]))

    def images(self, split: str) -> torch.Tensor:
        """Float images ``[N, 3, H, W]`` of ``split``, normalised with CLIP's mean and std.

        Raises:
            KeyError: for an unknown split, listing the valid ones.
        """
        if split not in self.raw_images:
            raise KeyError(f"Unknown split {split!r}; valid splits: {list(self.raw_images)}.")
        x = self.raw_images[split].float().div_(255)
        mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
        return x.sub_(mean).div_(std)

    def labels(self, split: str) -> torch.Tensor:
        """``[N]`` long ID labels of an ID split (``train``, ``val`` or ``test``)."""
        if split not in self.id_labels:
            raise KeyError(f"No labels for split {split!r}; ID splits: {list(self.id_labels)}.")
        return self.id_labels[split]

    def _pixels(self, split: str, uint8: bool) -> torch.Tensor:
        return self.raw_images[split] if uint8 else self.images(split)

    def negative_candidates(
        self, candidates: Sequence[tuple[str, str]] | None = None
    ) -> list[tuple[str, str]]:
        """Negative-label candidates: ``candidates`` (default the lexicon) without any word
        that names an ID class, synonyms included."""
        id_words = {w for c in self.id_classnames for w in concept_words(c)}
        pool = self.lexicon if candidates is None else candidates
        return [(w, p) for w, p in pool if w not in id_words]

    def pretrain_dataset(self, tokenizer: Tokenizer, *, uint8: bool = False) -> TensorDataset:
        """``TensorDataset(images [N, 3, H, W], tokens [N, L] long)`` of image-caption pairs.

        Images are normalised floats, or the raw ``uint8`` pixels with ``uint8=True`` (4x less
        memory; :func:`cmakit.engine.trainer.train` normalises ``uint8`` batches itself).
        """
        return TensorDataset(self._pixels("pretrain", uint8), tokenizer(self.captions).long())

    def id_dataset(
        self,
        split: str,
        tokenizer: Tokenizer,
        template: str = TRAIN_PROMPT,
        *,
        uint8: bool = False,
    ) -> TensorDataset:
        """``TensorDataset(images, tokens)`` of an ID split, text = ``template`` of the class name."""
        names = [self.id_classnames[k] for k in self.labels(split).tolist()]
        tokens = tokenizer([template.format(n) for n in names]).long()
        return TensorDataset(self._pixels(split, uint8), tokens)


def _rng(cfg: WorldConfig, split: str) -> np.random.Generator:
    if split == "pretrain":
        return np.random.default_rng([cfg.seed, _SPLIT_CODE[split]])
    return np.random.default_rng([cfg.seed, _SPLIT_CODE[split], cfg.split_seed + 1])


def _balanced(rng: np.random.Generator, names: Sequence[str], n: int) -> list[str]:
    """``n`` concept names cycling through ``names`` (as even as possible), shuffled."""
    seq = [names[i % len(names)] for i in range(n)]
    return [seq[i] for i in rng.permutation(n)]


def _pretrain_concepts(cfg: WorldConfig, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Concepts (all of the world) and object counts of the pretraining scenes."""
    n = cfg.n_pretrain
    u = rng.random(n)
    is_tex = u < cfg.texture_frac
    multi = (u >= cfg.texture_frac) & (u < cfg.texture_frac + cfg.multi_object_frac)
    n_obj = np.where(multi, 2 + (rng.random(n) < 1 / 3), 1)
    objects = cfg.object_concepts if cfg.markings else list(OBJECTS)
    obj = rng.integers(0, len(objects), n)
    tex = rng.integers(0, len(TEXTURES), n)
    return [
        TEXTURES[t] if m else objects[o] for m, o, t in zip(is_tex, obj, tex, strict=True)
    ], n_obj


def _split(cfg: WorldConfig, split: str) -> tuple[list[str], np.ndarray, np.random.Generator]:
    """Per-image concepts and object counts of ``split``, and its random stream."""
    rng = _rng(cfg, split)
    if split == "pretrain":
        concepts, n_obj = _pretrain_concepts(cfg, rng)
        return concepts, n_obj, rng
    if split in ID_SPLITS:
        k = len(cfg.id_classnames)
        n = k * getattr(cfg, f"n_{split}_per_class")
        return _balanced(rng, cfg.id_classnames, n), np.ones(n, dtype=int), rng
    names = {
        "near_shapes": cfg.near_classes,
        "far_objects": cfg.far_object_classes,
        "far_textures": cfg.far_texture_classes,
        "val_near_shapes": cfg.val_near_classes,
        "val_far_objects": cfg.val_far_object_classes,
    }[split]
    return _balanced(rng, names, cfg.n_ood_per_set), np.ones(cfg.n_ood_per_set, dtype=int), rng


def build_world(cfg: WorldConfig, *, reuse: World | None = None) -> World:
    """Generate every split of the world described by ``cfg`` (deterministic in its seeds).

    Args:
        cfg: The world's configuration.
        reuse: A world with the same pretraining corpus (``pretrain_key``), e.g. another
            ``split_seed``: its pretraining split is taken instead of rendered again (the
            bytes are the same either way).

    Returns:
        The :class:`World`; ``world.timings`` holds the seconds spent per split.

    Raises:
        ValueError: if ``reuse`` has another pretraining corpus.
    """
    raw, concepts, scenes, timings = {}, {}, {}, {}
    captions: list[str] = []
    splits = ("pretrain", *ID_SPLITS, *OOD_SETS, *VAL_OOD_SETS)
    if reuse is not None:
        if reuse.config.pretrain_key() != cfg.pretrain_key():
            raise ValueError("reuse= has another pretraining corpus; pass a world whose "
                             "pretrain_key() equals this config's, or none.")  # fmt: skip
        raw["pretrain"], captions = reuse.raw_images["pretrain"], reuse.captions
        concepts["pretrain"], scenes["pretrain"] = (
            reuse.concepts["pretrain"],
            reuse.scenes["pretrain"],
        )
        timings["pretrain"], splits = 0.0, splits[1:]
    markings = cfg.markings or None  # None: the shape world, fills are nuisance
    for split in splits:
        t0 = time.perf_counter()
        names, n_obj, rng = _split(cfg, split)
        s = sample_scenes(rng, names, n_obj, cfg.pattern_prob, cfg.min_scale, markings)
        raw[split] = render_scenes(
            s, cfg.image_size, cfg.supersample, seed=int(rng.integers(2**31))
        )
        if split == "pretrain":
            captions = make_captions(
                s, rng, cfg.synonym_prob, species=bool(cfg.markings),
                describe_prob=cfg.describe_prob, species_synonyms=cfg.species_synonyms,
            )  # fmt: skip
        concepts[split], scenes[split] = names, s
        timings[split] = time.perf_counter() - t0
        log.info("world split %s: %d images in %.2fs", split, len(names), timings[split])
    index = {c: k for k, c in enumerate(cfg.id_classnames)}
    labels = {s: torch.tensor([index[c] for c in concepts[s]], dtype=torch.long) for s in ID_SPLITS}
    return World(
        cfg,
        cfg.id_classnames,
        raw,
        concepts,
        captions,
        labels,
        scenes,
        lexicon(cfg.markings, cfg.species_synonyms),
        timings,
    )
