"""The embedding explorer's entry points: a page of any embeddings, and of a pipeline run.

:func:`explore` (``cmakit.explore``, ``python -m cmakit explore PATH --out PAGE``) draws a
folder of embeddings of any kind (a pipeline run, an ``embed`` folder, plain ``.npy`` arrays;
:mod:`cmakit.pipeline.explore_sources`), several such folders as the models of one data set, or
arrays given directly. :func:`write_run_explorer` draws a run's configuration (notebook 8), and
embeds what is missing. Both sample the rows, compute positions and scores
(:mod:`cmakit.pipeline.explore_points`) and write the page (:mod:`cmakit.report.explorer`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cmakit.engine.bundle import EmbeddingBundle
from cmakit.pipeline.config import RunConfig
from cmakit.pipeline.explore_points import explorer_points, sample_rows  # noqa: F401 (re-export)
from cmakit.pipeline.explore_run import run_source
from cmakit.pipeline.explore_sources import (
    ExploreSource,
    arrays_source,
    embed_source,
    folder_kind,
    from_arrays,
    read_thumbnails,  # noqa: F401 (re-export)
)
from cmakit.report.explorer import write_explorer

log = logging.getLogger(__name__)

#: Gap-shift fractions of the slider of :func:`explore`.
ALPHAS: tuple[float, ...] = (0.0, 0.5, 1.0)


def load_source(paths: Sequence[str | os.PathLike], *, seed: int | None = None) -> ExploreSource:
    """The :class:`ExploreSource` of one folder of any kind, or of several ``embed`` / array
    folders of the same data (one model each, in the order given: their paths are drawn).

    Raises:
        FileNotFoundError, ValueError: one line naming the folder or file at fault.
    """
    from cmakit.pipeline.explore_run import run_folder_source

    if not paths:
        raise ValueError("Give at least one folder of embeddings.")
    kinds = [folder_kind(p) for p in paths]
    if "run" in kinds:
        if len(paths) > 1:
            raise ValueError(f"{paths[kinds.index('run')]} is a pipeline run folder: give it "
                             "alone (it already holds every model of the run).")  # fmt: skip
        return run_folder_source(paths[0], seed=seed)
    sources = [(embed_source if k == "embed" else arrays_source)(p)
               for p, k in zip(paths, kinds, strict=True)]  # fmt: skip
    want = next(iter(sources[0].bundles.values())).sizes()
    bundles: dict[str, EmbeddingBundle] = {}
    for path, src in zip(paths, sources, strict=True):
        ((name, bundle),) = src.bundles.items()
        if bundle.sizes() != want:
            raise ValueError(f"{path} holds other rows than {paths[0]} ({bundle.sizes()} vs "
                             f"{want}): give folders of the same images and texts, one per model.")  # fmt: skip
        bundles[name if name not in bundles else f"{name} ({len(bundles) + 1})"] = bundle
    title = (
        sources[0].title if len(paths) == 1 else "cmakit embedding explorer: " + " → ".join(bundles)
    )
    return ExploreSource(bundles=bundles, labels=sources[0].labels, class_names=sources[0].class_names,
                         neg_names=sources[0].neg_names, thumbnails=sources[0].thumbnails,
                         settings=sources[0].settings, title=title)  # fmt: skip


def write_source(source: ExploreSource, out: str | os.PathLike, *, alphas: Sequence[float] = ALPHAS,
                 max_points: int = 5000, seed: int = 0,
                 scores: Sequence[str] | None = None) -> Path:  # fmt: skip
    """Sample, place and score ``source`` and write its explorer page to ``out``.

    Raises:
        ValueError: ``alphas`` empty or not strictly ascending.
    """
    if not len(alphas) or np.any(np.diff(alphas) <= 0):
        raise ValueError(f"alphas={list(alphas)} must be one or more gap-shift fractions in "
                         "ascending order, e.g. 0 0.5 1.")  # fmt: skip
    groups, models = explorer_points(
        source.bundles, source.settings, labels=source.labels, thumbnails=source.thumbnails or None,
        alphas=alphas, max_points=max_points, seed=seed, scores=scores,
    )  # fmt: skip
    path = write_explorer(out, groups, models, alphas, title=source.title,
                          text_names=(source.class_names, source.neg_names))  # fmt: skip
    log.info("explorer: %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def explore(data: str | os.PathLike | Sequence[str | os.PathLike] | np.ndarray
            | Mapping[str, EmbeddingBundle], id_texts: np.ndarray | None = None, *,
            out: str | os.PathLike, id_labels: np.ndarray | None = None,
            class_names: Sequence[str] | None = None, neg_texts: np.ndarray | None = None,
            neg_names: Sequence[str] | None = None, ood: Mapping[str, np.ndarray] | None = None,
            image_paths: Mapping[str, Sequence[str]] | None = None, alphas: Sequence[float] = ALPHAS,
            max_points: int = 5000, scores: Sequence[str] | None = None,
            seed: int | None = None) -> Path:  # fmt: skip
    """Write the explorer page of any embeddings to ``out``; returns its path.

    Args:
        data: A folder (pipeline run, ``embed`` folder, or plain arrays), a list of ``embed`` /
            array folders of the same data (one model each, drawn in that order with their
            paths), ``[N, D]`` ID image embeddings (with the keyword arrays below), or a mapping
            of model name -> :class:`~cmakit.engine.bundle.EmbeddingBundle` of the same rows.
        id_texts: ``[C, D]`` one ID prompt per class (arrays only).
        out: The page to write (``.html``).
        id_labels, class_names, neg_texts, neg_names, ood, image_paths: The other arrays
            (:func:`cmakit.pipeline.explore_sources.from_arrays`); embeddings are normalised.
        alphas: Gap-shift fractions of the slider, ascending.
        max_points: Most points drawn per group (a fixed sample, the same for every model).
        scores: Registered scores to colour by (default: every one the embeddings allow).
        seed: Seed of the sample; for a run folder also the seed whose models are drawn
            (default: the run's first).

    Raises:
        FileNotFoundError, ValueError: one line naming the input at fault and what to do.

    Example:
        >>> cmakit.explore("runs/embed", out="explorer.html")  # doctest: +SKIP
    """
    if isinstance(data, np.ndarray):
        if id_texts is None:
            raise ValueError("explore(id_images, id_texts, ...): give the [C, D] ID prompts too.")
        source = from_arrays(data, id_texts, id_labels=id_labels, class_names=class_names,
                             neg_texts=neg_texts, neg_names=neg_names, ood=ood,
                             image_paths=image_paths)  # fmt: skip
    elif isinstance(data, Mapping):
        first = next(iter(data.values()))
        source = from_arrays(first.id_images, first.id_texts, id_labels=first.id_labels,
                             class_names=class_names, neg_texts=first.neg_texts,
                             neg_names=neg_names, ood=first.ood, image_paths=image_paths)  # fmt: skip
        source = dataclasses.replace(source, bundles=dict(data))
    else:
        paths = [data] if isinstance(data, str | os.PathLike) else list(data)
        source = load_source(paths, seed=seed)
    return write_source(source, out, alphas=alphas, max_points=max_points,
                        seed=0 if seed is None else seed, scores=scores)  # fmt: skip


def write_run_explorer(cfg: RunConfig, *, alphas: Sequence[float], max_points: int = 300,
                       seed: int | None = None) -> Path:  # fmt: skip
    """Build the explorer of a run and write ``<run_dir>/figures/explorer.html``.

    Uses the first seed's models (or ``seed``), embedding the three methods if needed.
    Thumbnails come from the embedded world's pixels, or on the paper path from the image files
    (none when the folders are absent).
    """
    seed = cfg.seeds[0] if seed is None else seed
    path = Path(cfg.run_dir) / "figures" / "explorer.html"
    return write_source(
        run_source(cfg, seed), path, alphas=alphas, max_points=max_points, seed=seed
    )
