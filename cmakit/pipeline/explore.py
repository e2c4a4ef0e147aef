"""The data of the embedding explorer: positions, scores and neighbours of a run's embeddings.

:func:`explorer_points` turns the :class:`~cmakit.engine.bundle.EmbeddingBundle` of each model
(all of one seed, so their rows are the same images and texts) into the plain groups and
per-model arrays that :mod:`cmakit.report.explorer` draws: a fixed sample of at most
``max_points`` rows per group, their positions in a joint PCA and along the gap direction for
each gap-shift α (:func:`cmakit.engine.evaluate.shift_bundle`), in fixed axes per model, their MCM and NegLabel scores
(:func:`cmakit.engine.evaluate.score_images`, the run's settings) and their nearest ID prompts
and negative labels. :func:`write_run_explorer` does it for a run folder and writes
``figures/explorer.html``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from cmakit.common.constants import METHODS, MODEL_LABELS
from cmakit.core.geometry import gap_axes, pca_axes
from cmakit.engine.bundle import EmbeddingBundle
from cmakit.engine.evaluate import ScoreSettings, score_images, shift_bundle
from cmakit.pipeline import steps
from cmakit.pipeline.config import RunConfig
from cmakit.report.explorer import VIEWS, Group, ModelPoints, write_explorer

log = logging.getLogger(__name__)

#: Nearest ID prompts and negative labels listed for a tapped image.
NEAREST = 3


def _layers(bundle: EmbeddingBundle) -> dict[str, np.ndarray]:
    """The bundle's rows by group key: ``id_images``, ``ood/<set>``, ``id_texts``, ``neg_texts``."""
    ood = {f"ood/{k}": v for k, v in bundle.ood.items()}
    return {"id_images": bundle.id_images, **ood, "id_texts": bundle.id_texts,
            "neg_texts": bundle.neg_texts}  # fmt: skip


def sample_rows(sizes: Mapping[str, int], max_points: int, seed: int) -> dict[str, np.ndarray]:
    """Sorted row indices of each group: all rows, or ``max_points`` drawn without replacement."""
    if max_points < 1:
        raise ValueError(f"max_points={max_points} must be >= 1.")
    rng = np.random.default_rng(seed)
    return {k: np.arange(n) if n <= max_points else np.sort(rng.choice(n, max_points, replace=False))
            for k, n in sizes.items()}  # fmt: skip


def _nearest(x: np.ndarray, texts: np.ndarray, names: Sequence[str]) -> list[str]:
    """``"name (cos), ..."`` of the :data:`NEAREST` texts nearest each row of ``x [n, D]``."""
    if len(texts) == 0:
        return ["(none)"] * len(x)
    cos = x @ texts.T  # (n, M)
    top = np.argsort(-cos, axis=1)[:, :NEAREST]
    return [", ".join(f"{names[j]} ({cos[i, j]:.2f})" for j in row) for i, row in enumerate(top)]


def model_points(name: str, bundle: EmbeddingBundle, rows: Mapping[str, np.ndarray],
                 settings: ScoreSettings, alphas: Sequence[float], *,
                 class_names: Sequence[str], neg_names: Sequence[str]) -> ModelPoints:  # fmt: skip
    """One model's :class:`~cmakit.report.explorer.ModelPoints` on the sampled ``rows``.

    Each view has one set of axes per model, so the slider moves points within fixed axes: the
    joint PCA of the model as trained (all sampled groups, α = 0), onto which every α frame is
    projected; the gap direction of its ID images and prompts as trained, with the top
    orthogonal principal axis of all groups and frames.
    """
    keys = list(rows)
    shifted = [shift_bundle(bundle, float(a)) for a in alphas]
    frames = [_layers(b) for b in shifted]
    flat = [frame[k][rows[k]] for frame in frames for k in keys]
    trained = _layers(bundle)
    mean, axes, _ = pca_axes(*[trained[k][rows[k]] for k in keys], n_components=2)
    fitted = {VIEWS[0]: [(x - mean) @ axes.T for x in flat],
              VIEWS[1]: gap_axes(bundle.id_images, bundle.id_texts, *flat)}  # fmt: skip
    coords = {view: {group_name(k): np.stack([proj[ai * len(keys) + ki] for ai in range(len(alphas))])
                     for ki, k in enumerate(keys)} for view, proj in fitted.items()}  # fmt: skip
    images = [k for k in keys if k == "id_images" or k.startswith("ood/")]
    scores: dict[str, dict[str, np.ndarray]] = {"mcm": {}, "neglabel": {}}
    for k in images:
        per_alpha = []
        for b, frame in zip(shifted, frames, strict=True):
            per_alpha.append(
                score_images(frame[k][rows[k]], b, settings, scores=("mcm", "neglabel"))
            )
        for col in scores:
            nan = np.full(len(rows[k]), np.nan)
            scores[col][group_name(k)] = np.stack([got.get(col, nan) for got in per_alpha])
    layers = _layers(bundle)
    nearest = {group_name(k): list(zip(_nearest(layers[k][rows[k]], bundle.id_texts, class_names),
                           _nearest(layers[k][rows[k]], bundle.neg_texts, neg_names),
                           strict=True)) for k in images}  # fmt: skip
    return ModelPoints(name=name, coords=coords, scores=scores, nearest=nearest)


def explorer_points(bundles: Mapping[str, EmbeddingBundle], settings: ScoreSettings, *,
                    labels: Mapping[str, Sequence[str]],
                    thumbnails: Mapping[str, np.ndarray | Callable[[np.ndarray], np.ndarray]] | None = None,
                    class_names: Sequence[str], neg_names: Sequence[str],
                    alphas: Sequence[float], max_points: int = 300,
                    seed: int = 0) -> tuple[list[Group], list[ModelPoints]]:  # fmt: skip
    """Groups and per-model points of the explorer.

    Args:
        bundles: Display name -> bundle, all of the same benchmark (same rows per layer).
        settings: The run's score settings (``pipeline.steps.score_settings``).
        labels: Group key (``id_images``, ``ood/<set>``, ``id_texts``, ``neg_texts``) -> one
            label per row of the full layer (class, caption or word).
        thumbnails: Image group key -> ``[N, H, W, 3]`` uint8 pixels of the full layer, or a
            function of the sampled row indices that returns their ``[n, H, W, 3]`` pixels
            (image files read on demand); None or a missing key: no thumbnails.
        class_names: ``[K]`` names of the ID prompts, for the nearest-prompt lists.
        neg_names: ``[M]`` words of the negative labels, for the nearest-label lists.
        alphas: Gap-shift fractions of the slider, ascending.
        max_points: Most points drawn per group (a fixed sample, the same for every model).
        seed: Seed of the sample.

    Raises:
        ValueError: bundles of different sizes, or labels that do not match their layer.
    """
    if not bundles:
        raise ValueError("explorer_points needs at least one bundle.")
    sizes = [b.sizes() for b in bundles.values()]
    if any(s != sizes[0] for s in sizes):
        raise ValueError(f"Bundles of different benchmarks (rows per layer): {sizes}.")
    first = next(iter(bundles.values()))
    full = {k: v for k, v in _layers(first).items() if len(v)}
    for k, v in full.items():
        if len(labels.get(k, ())) != len(v):
            raise ValueError(f"labels[{k!r}] has {len(labels.get(k, ()))} entries; the layer "
                             f"has {len(v)} rows.")  # fmt: skip
    rows = sample_rows({k: len(v) for k, v in full.items()}, max_points, seed)
    thumbnails = thumbnails or {}
    groups = []
    for k, idx in rows.items():
        kind = {"id_images": "id", "id_texts": "prompt", "neg_texts": "neg"}.get(k, "ood")
        thumbs = thumbnails.get(k)
        if thumbs is not None:
            thumbs = thumbs(idx) if callable(thumbs) else np.asarray(thumbs)[idx]
        groups.append(Group(name=group_name(k), kind=kind, labels=[str(labels[k][i]) for i in idx],
                            thumbnails=thumbs))  # fmt: skip
    models = [model_points(name, b, rows, settings, alphas, class_names=class_names,
                           neg_names=neg_names) for name, b in bundles.items()]  # fmt: skip
    return groups, models


def group_name(key: str) -> str:
    """Display name of a group key (``"ood/far_textures"`` -> ``"OoD far_textures"``)."""
    names = {"id_images": "ID images", "id_texts": "ID prompts", "neg_texts": "negative labels"}
    return names.get(key, f"OoD {key.removeprefix('ood/')}")


def run_bundles(cfg: RunConfig, seed: int) -> dict[str, EmbeddingBundle]:
    """Zero-shot, FLYP, CMA and every λ-ablation model of ``seed`` whose embeddings exist.

    The three methods are embedded if needed (as notebook 3 does); ablation models are taken
    only when notebook 6 has already embedded them.
    """
    out, seen = {}, set()
    for method in METHODS:
        lam = steps.method_lam(cfg, method)
        name = MODEL_LABELS[method] + (f" (λ = {lam:g})" if method == "cma" else "")
        out[name] = steps.embed(cfg, method, seed)
        seen.add(steps.embeddings_path(cfg, method, seed))
    for lam in cfg.ablation_lams:
        path = steps.embeddings_path(cfg, "cma", seed, float(lam))
        if path not in seen and path.is_file():
            out[f"λ = {lam:g} (ablation)"] = EmbeddingBundle.load(path)
            seen.add(path)
    return out


def _run_labels(cfg: RunConfig, seed: int, bundle: EmbeddingBundle):
    """Labels, thumbnails and class names of the run's data for ``seed``."""
    # a given negative_labels file has prompts and no words: the page shows the prompts
    mined = not cfg.negative_labels
    neg_words = (
        [n.word for n in steps.negative_labels(cfg)] if mined else steps.negative_prompts(cfg)
    )
    labels: dict[str, list[str]] = {"neg_texts": neg_words}
    thumbnails: dict[str, np.ndarray | Callable] = {}
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


def read_thumbnails(paths: Sequence[str], size: int = 48) -> np.ndarray:
    """``[n, size, size, 3]`` uint8 thumbnails of image files: the centre square, resized.

    An unreadable file gives a mid-grey square (the explorer still shows its point).
    """
    from PIL import Image, ImageOps

    out = np.full((len(paths), size, size, 3), 128, dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                out[i] = np.asarray(ImageOps.fit(img.convert("RGB"), (size, size)))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            log.warning("explorer: no thumbnail for %s (%s)", path, err)
    return out


def _file_thumbnails(paths: Sequence[str]) -> Callable[[np.ndarray], np.ndarray]:
    def read(rows: np.ndarray) -> np.ndarray:
        return read_thumbnails([paths[i] for i in rows])

    return read


def _paper_thumbnails(cfg: RunConfig, seed: int, bundle: EmbeddingBundle,
                      labels: dict[str, list[str]]) -> dict[str, Callable]:  # fmt: skip
    """Thumbnails read from the paper path's image files (OoD labels become file names); none
    when the data folders are absent or a set had unreadable images (rows no longer match)."""
    try:
        bench = steps.run_data(cfg, seed)
    except (FileNotFoundError, ValueError) as err:
        log.warning("explorer: no thumbnails, the data folders cannot be read (%s)", err)
        return {}
    sets = {"id_images": (bench.id_test, bundle.id_images),
            **{f"ood/{k}": (bench.ood[k], v) for k, v in bundle.ood.items() if k in bench.ood}}  # fmt: skip
    out = {}
    for key, (data, rows) in sets.items():
        paths = [str(p) for p, _ in getattr(data, "samples", [])]
        if len(paths) != len(rows):
            log.warning("explorer: no thumbnails for %s (%d files, %d embeddings)", key,
                        len(paths), len(rows))  # fmt: skip
            continue
        out[key] = _file_thumbnails(paths)
        if key != "id_images":
            labels[key] = [f"{Path(p).parent.name}/{Path(p).name}" for p in paths]
    return out


def write_run_explorer(cfg: RunConfig, *, alphas: Sequence[float], max_points: int = 300,
                       seed: int | None = None) -> Path:  # fmt: skip
    """Build the explorer of a run folder and write ``<run_dir>/figures/explorer.html``.

    Uses the first seed's models (or ``seed``). Thumbnails come from the embedded world's
    pixels, or on the paper path from the image files (none when the folders are absent).
    """
    seed = cfg.seeds[0] if seed is None else seed
    bundles = run_bundles(cfg, seed)
    labels, thumbnails, classes, neg_words = _run_labels(cfg, seed, next(iter(bundles.values())))
    groups, models = explorer_points(
        bundles, steps.score_settings(cfg), labels=labels, thumbnails=thumbnails or None,
        class_names=classes, neg_names=neg_words, alphas=alphas, max_points=max_points, seed=seed,
    )  # fmt: skip
    path = Path(cfg.run_dir) / "figures" / "explorer.html"
    title = f"cmakit embedding explorer: {cfg.profile} profile, seed {seed}"
    write_explorer(path, groups, models, alphas, title=title)
    log.info("explorer: %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
