"""The data of a run, in one shape for both faces of the kit.

A :class:`Benchmark` bundles what fine-tuning and evaluation need: the ID class names, the
fine-tuning pairs, the ID test images with labels, the OoD sets with their near/far groups, and
the negative-label candidates. :func:`embedded_benchmark` builds it from the generated world
(one world per fine-tuning seed: the seed also draws the evaluation samples);
:func:`paper_benchmark` from ImageNet-1k, MOS and OpenOOD v1.5 folders.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from cmakit.common.constants import MOS_SET_NAMES, PAPER_OOD_GROUPS
from cmakit.common.io import (
    atomic_path,
    cache_root,
    fingerprint,
    read_json,
    tag_cache,
    write_json,
)
from cmakit.data.csp import csp_pool
from cmakit.models.transforms import paper_transform_key
from cmakit.pipeline.config import RunConfig

log = logging.getLogger(__name__)

#: OpenOOD v1.5's ImageNet groups and the MOS sets (PAPER.md §7), as lists.
PAPER_GROUPS: dict[str, list[str]] = {k: list(v) for k, v in PAPER_OOD_GROUPS.items()}
#: The ID subset each paper group is measured against: OpenOOD v1.5's near/far against its own
#: ID list (``test_imagenet.txt``), as its evaluator does; MOS against the full ImageNet-1k val.
PAPER_ID_SUBSETS: dict[str, str] = {"near": "openood_imagenet", "far": "openood_imagenet"}
#: What each ID test set is, for captions and ``summary.json`` (None = every ID test image).
ID_SET_LABELS: dict[str | None, str] = {
    None: "ImageNet-1k val (all images)",
    "openood_imagenet": "OpenOOD v1.5's ID list benchmark_imglist/imagenet/test_imagenet.txt "
    "(ImageNet-1k val images)",
}
WORLD_ID_SET_LABEL = "the embedded world's ID test images"


@dataclasses.dataclass
class Benchmark:
    """ID task, OoD sets and negative-label candidates of one run (and one seed).

    Attributes:
        name: Identity of the data (part of embedding-cache keys).
        classnames: The K ID class names in label order.
        train_pairs: ``tokenizer, template -> Dataset`` of ``(image, tokens)`` fine-tuning pairs.
        id_test: ``(image, label)`` data set of the ID test images.
        ood: OoD set name -> ``(image, label)`` data set (labels unused).
        groups: ``{"near": [...], "far": [...], ...}`` names of ``ood``.
        candidates: ``(word, pos)`` negative-label candidates, or None for WordNet's
            ``cfg.neg_pool``.
        csp_candidates: CSP's conjugated candidates, or None for WordNet's ``"csp"`` pool.
        preprocessing: Description of the image transform (part of cache keys).
        id_subsets: Name -> indices into ``id_test`` of another ID test set (paper path:
            ``"openood_imagenet"``, OpenOOD v1.5's ID list); see :func:`id_subsets`.
        id_val: ``(image, label)`` data set of the ID validation images (None: none).
        val_ood: Validation OoD set name -> data set: concepts disjoint from ID and from every
            test OoD set; for choosing a recipe, never for a reported result.
        val_groups: ``{"near": [...], "far": [...]}`` names of ``val_ood``.
    """

    name: str
    classnames: list[str]
    train_pairs: Callable[[Callable, str], Dataset]
    id_test: Dataset
    ood: dict[str, Dataset]
    groups: dict[str, list[str]]
    candidates: list[tuple[str, str]] | None
    preprocessing: str
    csp_candidates: list[tuple[str, str]] | None = None
    id_subsets: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    id_val: Dataset | None = None
    val_ood: dict[str, Dataset] = dataclasses.field(default_factory=dict)
    val_groups: dict[str, list[str]] = dataclasses.field(default_factory=dict)


def ood_groups(cfg: RunConfig) -> dict[str, list[str]]:
    """The near/far (and, on the paper path, MOS) groups of the run's OoD sets, without
    building any data set."""
    from cmakit.data.world import OOD_GROUPS

    groups = OOD_GROUPS if cfg.embedded else PAPER_GROUPS
    return {k: list(v) for k, v in groups.items()}


def id_subsets(cfg: RunConfig) -> dict[str, str]:
    """Group -> the ID subset its OoD sets are measured against (the embedded world: none)."""
    return {} if cfg.embedded else dict(PAPER_ID_SUBSETS)


def id_set_labels(cfg: RunConfig) -> dict[str, str]:
    """Group -> what its ID test set is, in words (for ``summary.json`` and captions)."""
    if cfg.embedded:
        return {group: WORLD_ID_SET_LABEL for group in ood_groups(cfg)}
    subsets = id_subsets(cfg)
    return {group: ID_SET_LABELS[subsets.get(group)] for group in ood_groups(cfg)}


def record_time(cfg: RunConfig, name: str, seconds: float) -> None:
    """Add ``name: seconds`` to ``<run_dir>/metrics/timings.json``."""
    path = Path(cfg.run_dir) / "metrics" / "timings.json"
    timings = read_json(path) if path.is_file() else {}
    timings[name] = round(float(seconds), 3)
    write_json(path, timings)


def _named(ds: TensorDataset, name: str) -> TensorDataset:
    ds.name = name  # the embedding cache keys data sets by name and size
    return ds


def load_world(cfg: RunConfig, seed: int | None = None, *, cache_dir: Path | None = None) -> Any:
    """The embedded world of ``cfg`` whose evaluation samples are drawn with ``seed``.

    Worlds are cached (``<cache>/worlds/<fingerprint>.pt``), so every notebook and every later
    run loads the same bytes instead of generating them again.
    """
    from cmakit.pipeline.products import world_key

    folder = tag_cache(cache_root(cache_dir or (cfg.cache_dir or None))) / "worlds"
    key = world_key(cfg.world, 0 if seed is None else seed)
    path = folder / f"{fingerprint(key)}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    from cmakit.data.world import build_world, world_config

    wcfg = world_config(cfg.world, **({} if seed is None else {"split_seed": seed}))
    # another split seed of the same corpus: reuse its pretraining split (same bytes)
    sibling = folder / f"{fingerprint(wcfg.cache_key() | {'split_seed': 0})}.pt"
    reuse = torch.load(sibling, weights_only=False) if sibling.is_file() else None
    world = build_world(wcfg, reuse=reuse)
    with atomic_path(path) as tmp:
        torch.save(world, tmp)
    record_time(cfg, f"world_split_seed{wcfg.split_seed}_s", sum(world.timings.values()))
    log.info(
        "world %s (split_seed=%s) built in %.1f s", cfg.world, seed, sum(world.timings.values())
    )
    return world


def first_per_class(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the first ``n`` samples of every class in ``labels [N]``, in their order.

    Raises:
        ValueError: if a class has fewer than ``n`` samples.
    """
    counts = torch.bincount(labels)
    if int(counts.min()) < n:
        raise ValueError(
            f"train_per_class={n} but a class has only {int(counts.min())} training images; "
            "lower train_per_class or raise the world's n_train_per_class."
        )
    rank = torch.zeros_like(labels)
    for k in range(len(counts)):
        idx = (labels == k).nonzero().squeeze(1)
        rank[idx] = torch.arange(len(idx))
    return (rank < n).nonzero().squeeze(1)


def run_data(cfg: RunConfig, seed: int, preprocess: Callable | None = None) -> Benchmark:
    """The run's :class:`Benchmark` for ``seed``: the embedded world's samples drawn with it,
    or the paper's folders (read with ``preprocess``; default: the paper's test transform)."""
    if cfg.embedded:
        return embedded_benchmark(cfg, seed)
    if preprocess is None:
        from cmakit.models.factory import model_image_size
        from cmakit.models.transforms import paper_transform

        preprocess = paper_transform(model_image_size(cfg.model), train=False)
    return paper_benchmark(cfg, preprocess)


def train_pairs(cfg: RunConfig, seed: int, tokenizer: Callable, template: str) -> Dataset:
    """The fine-tuning pairs ``(image, tokens)`` of ``seed``, without building the rest of the
    benchmark on the embedded world (its OoD sets, candidates and evaluation splits)."""
    if cfg.embedded:
        return world_train_pairs(cfg, load_world(cfg, seed), tokenizer, template)
    return run_data(cfg, seed).train_pairs(tokenizer, template)


def world_train_pairs(cfg: RunConfig, world: Any, tokenizer: Callable, template: str) -> Dataset:
    """The world's ID training pairs, the first ``cfg.train_per_class`` of each class if set."""
    data = world.id_dataset("train", tokenizer, template)
    if not cfg.train_per_class:
        return data
    keep = first_per_class(world.labels("train"), cfg.train_per_class)
    return TensorDataset(*(t[keep] for t in data.tensors))


def embedded_benchmark(cfg: RunConfig, seed: int) -> Benchmark:
    """The embedded world's benchmark; ``seed`` draws the ID train/test and OoD samples."""
    world = load_world(cfg, seed)
    tag = f"world-{cfg.world}-{fingerprint(world.config.__repr__())}"

    from cmakit.data.world import VAL_OOD_GROUPS

    def train_pairs(tokenizer: Callable, template: str) -> Dataset:
        return world_train_pairs(cfg, world, tokenizer, template)

    def labelled(split: str) -> TensorDataset:
        return _named(TensorDataset(world.images(split), world.labels(split)), f"{tag}-{split}")

    def unlabelled(sets: dict[str, torch.Tensor]) -> dict[str, TensorDataset]:
        return {name: _named(TensorDataset(world.images(name), torch.full((len(x),), -1)),
                             f"{tag}-{name}") for name, x in sets.items()}  # fmt: skip

    return Benchmark(
        name=tag,
        classnames=list(world.id_classnames),
        train_pairs=train_pairs,
        id_test=labelled("test"),
        ood=unlabelled(world.ood),
        groups=ood_groups(cfg),
        candidates=world.negative_candidates(),
        preprocessing=f"world-{world.config.image_size}px-clip-norm",
        csp_candidates=csp_pool(world.negative_candidates()),
        id_val=labelled("val"),
        val_ood=unlabelled(world.val_ood),
        val_groups={k: list(v) for k, v in VAL_OOD_GROUPS.items()},
    )


def paper_benchmark(cfg: RunConfig, preprocess: Callable) -> Benchmark:
    """ImageNet-1k (ID), OpenOOD v1.5 near/far and MOS sets from the configured roots.

    The ID test set is the full ImageNet-1k val (MOS, Table 1); OpenOOD v1.5's own ID list
    is its subset ``"openood_imagenet"`` (Table 2; :func:`cmakit.data.paper.openood_id_subset`).
    Training images get the paper's train transform at the model's input size
    (:func:`cmakit.models.factory.model_image_size`); every other set gets ``preprocess``.

    Raises:
        FileNotFoundError: a missing root, folder or list (the expected layout is shown).
    """
    from cmakit.data import paper as data
    from cmakit.models.factory import model_image_size
    from cmakit.models.transforms import paper_transform

    size = model_image_size(cfg.model)
    classnames = data.imagenet_classnames()
    roots = {"imagenet": cfg.imagenet_root or None, "mos": cfg.mos_root or None,
             "openood": cfg.openood_root or None}  # fmt: skip

    def train_pairs(tokenizer: Callable, template: str) -> Dataset:
        train_tf = paper_transform(size, train=True)
        images = data.imagenet_split("train", roots["imagenet"], transform=train_tf)
        return data.PromptPairs(images, tokenizer, classnames, template)

    id_test = data.imagenet_split("val", roots["imagenet"], transform=preprocess)
    openood_ids = data.openood_id_subset(id_test, roots["openood"])
    ood: dict[str, Dataset] = {}
    for name in PAPER_GROUPS["near"] + PAPER_GROUPS["far"]:
        ood[name] = data.openood_dataset(name, roots["openood"], transform=preprocess)
    for name in PAPER_GROUPS["mos"]:
        ood[name] = data.mos_dataset(MOS_SET_NAMES[name], roots["mos"], transform=preprocess)
    return Benchmark(
        name="imagenet1k",
        classnames=list(classnames),
        train_pairs=train_pairs,
        id_test=id_test,
        ood=ood,
        groups=ood_groups(cfg),
        candidates=None,
        preprocessing=paper_transform_key(size),
        id_subsets={data.OPENOOD_ID_SUBSET: openood_ids},
    )
