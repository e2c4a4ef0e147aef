"""The explorer's inputs from a pipeline run: the embedded models of one seed, their labels and
thumbnails (the world's pixels, or the paper path's image files).

:func:`run_source` reads a run's configuration (``compute=True`` embeds what is missing, as
notebook 8 does); :func:`run_folder_source` reads a run folder's ``config.json`` and only takes
embeddings that exist (the command line's ``explore``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from cmakit.common.constants import METHODS, MODEL_LABELS
from cmakit.common.io import read_json
from cmakit.engine.bundle import EmbeddingBundle
from cmakit.pipeline import steps
from cmakit.pipeline.config import RunConfig
from cmakit.pipeline.explore_sources import ExploreSource, Thumbnails, file_thumbnails

log = logging.getLogger(__name__)


def run_folder_source(folder: str | os.PathLike, *, seed: int | None = None) -> ExploreSource:
    """The :class:`ExploreSource` of a pipeline run folder: the models notebook 3 (and 6) embedded.

    Raises:
        ValueError: ``config.json`` is not a run's configuration, or no model of ``seed`` has
            embeddings yet.
    """
    from cmakit.common.strict_config import from_dict

    folder = Path(folder)
    saved = read_json(folder / "config.json")
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError(f"{folder / 'config.json'} is not a pipeline run's configuration (no "
                         "'config' object); run `python -m cmakit.pipeline.runner --out DIR`.")  # fmt: skip
    cfg = from_dict(RunConfig, {**saved["config"], "run_dir": str(folder.resolve())})
    return run_source(cfg, cfg.seeds[0] if seed is None else seed, compute=False)


def run_bundles(cfg: RunConfig, seed: int, *, compute: bool = True) -> dict[str, EmbeddingBundle]:
    """Zero-shot, FLYP, CMA and every λ-ablation model of ``seed`` whose embeddings exist.

    With ``compute`` the three methods are embedded if needed (as notebook 3 does); ablation
    models are taken only when notebook 6 has already embedded them.

    Raises:
        ValueError: without ``compute``, no model of ``seed`` has embeddings.
    """
    out, seen = {}, set()
    for method in METHODS:
        lam = steps.method_lam(cfg, method)
        name = MODEL_LABELS[method] + (f" (λ = {lam:g})" if method == "cma" else "")
        path = steps.embeddings_path(cfg, method, seed)
        if compute or path.is_file():
            out[name] = steps.embed(cfg, method, seed) if compute else EmbeddingBundle.load(path)
            seen.add(path)
    for lam in cfg.ablation_lams:
        path = steps.embeddings_path(cfg, "cma", seed, float(lam))
        if path not in seen and path.is_file():
            out[f"λ = {lam:g} (ablation)"] = EmbeddingBundle.load(path)
            seen.add(path)
    if not out:
        raise ValueError(f"{cfg.run_dir} has no embeddings of seed {seed} for its configuration; "
                         "run the pipeline through notebook 03 first (--only 03).")  # fmt: skip
    return out


def run_source(cfg: RunConfig, seed: int, *, compute: bool = True) -> ExploreSource:
    """The :class:`ExploreSource` of a run's configuration and ``seed`` (see :func:`run_bundles`)."""
    bundles = run_bundles(cfg, seed, compute=compute)
    labels, thumbnails, classes, neg_words = _run_labels(cfg, seed, next(iter(bundles.values())))
    return ExploreSource(bundles=bundles, labels=labels, class_names=classes, neg_names=neg_words,
                         thumbnails=thumbnails, settings=steps.score_settings(cfg),
                         title=f"cmakit embedding explorer: {cfg.profile} profile, seed {seed}")  # fmt: skip


def _run_labels(cfg: RunConfig, seed: int, bundle: EmbeddingBundle):
    """Labels, thumbnails and class names of the run's data for ``seed``."""
    # a given negative_labels file has prompts and no words: the page shows the prompts
    mined = not cfg.negative_labels
    neg_words = (
        [n.word for n in steps.negative_labels(cfg)] if mined else steps.negative_prompts(cfg)
    )
    labels: dict[str, list[str]] = {"neg_texts": neg_words}
    thumbnails: dict[str, Thumbnails] = {}
    if cfg.embedded:
        from cmakit.data.world.concepts import describe
        from cmakit.pipeline.run_data import load_world

        if mined:
            labels["neg_texts"] = [describe(w) for w in neg_words]  # "kemol (striped circle)"
        world = load_world(cfg, seed)
        classes = list(world.id_classnames)
        test = world.labels("test").numpy()
        if not np.array_equal(test, bundle.id_labels):
            raise ValueError("The embeddings' ID labels differ from the world's test split; "
                             "re-embed with notebook 3 (the run folder may be stale).")  # fmt: skip
        labels["id_images"] = [describe(classes[k]) for k in test]
        thumbnails["id_images"] = world.raw_images["test"].permute(0, 2, 3, 1).numpy()
        for name in bundle.ood:
            labels[f"ood/{name}"] = [describe(c) for c in world.concepts[name]]
            thumbnails[f"ood/{name}"] = world.raw_images[name].permute(0, 2, 3, 1).numpy()
    else:
        from cmakit.data.paper import imagenet_classnames

        classes = imagenet_classnames()
        labels["id_images"] = [classes[k] for k in bundle.id_labels]
        for name, x in bundle.ood.items():
            labels[f"ood/{name}"] = [f"{name} #{i}" for i in range(len(x))]
        thumbnails.update(_paper_thumbnails(cfg, seed, bundle, labels))
    labels["id_texts"] = [cfg.test_prompt.format(c) for c in classes]
    return labels, thumbnails, classes, neg_words


def _paper_thumbnails(cfg: RunConfig, seed: int, bundle: EmbeddingBundle,
                      labels: dict[str, list[str]]) -> dict[str, Thumbnails]:  # fmt: skip
    """Thumbnails read from the paper path's image files (OoD labels become file names); none
    when the data folders are absent or a set had unreadable images (rows no longer match)."""
    try:
        bench = steps.run_data(cfg, seed)
    except (FileNotFoundError, ValueError) as err:
        log.warning("explorer: no thumbnails, the data folders cannot be read (%s)", err)
        return {}
    sets = {"id_images": (bench.id_test, bundle.id_images),
            **{f"ood/{k}": (bench.ood[k], v) for k, v in bundle.ood.items() if k in bench.ood}}  # fmt: skip
    out: dict[str, Thumbnails] = {}
    for key, (data, rows) in sets.items():
        paths = [str(p) for p, _ in getattr(data, "samples", [])]
        if len(paths) != len(rows):
            log.warning("explorer: no thumbnails for %s (%d files, %d embeddings)", key,
                        len(paths), len(rows))  # fmt: skip
            continue
        out[key] = file_thumbnails(paths)
        if key != "id_images":
            labels[key] = [f"{Path(p).parent.name}/{Path(p).name}" for p in paths]
    return out
