"""The data of the embedding explorer: positions, scores and neighbours of the models' embeddings.

:func:`explorer_points` turns the :class:`~cmakit.engine.bundle.EmbeddingBundle` of each model
(all of the same rows: the same images and texts) into the plain groups and per-model arrays
that :mod:`cmakit.report.explorer` draws: a fixed sample of at most ``max_points`` rows per
group; their positions in a joint PCA and along the gap direction for each gap-shift α
(:func:`cmakit.engine.evaluate.shift_bundle`), in fixed axes per model, and, with several
models, in one PCA shared by all of them (where one image's path across models can be drawn);
every registered score of each image (:func:`cmakit.engine.evaluate.score_images`); its nearest
ID prompts and negative labels; and the row of each ID image's class prompt (its pair).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from cmakit.core.geometry import gap_axes, pca_axes
from cmakit.engine.bundle import EmbeddingBundle
from cmakit.engine.evaluate import ScoreSettings, score_images, shift_bundle
from cmakit.report.explorer import SHARED_VIEW, VIEWS, Group, ModelPoints, Nearest

#: Nearest ID prompts and negative labels listed for a tapped image.
NEAREST = 3


def _layers(bundle: EmbeddingBundle) -> dict[str, np.ndarray]:
    """The bundle's rows by group key: ``id_images``, ``ood/<set>``, ``id_texts``, ``neg_texts``."""
    ood = {f"ood/{k}": v for k, v in bundle.ood.items()}
    return {"id_images": bundle.id_images, **ood, "id_texts": bundle.id_texts,
            "neg_texts": bundle.neg_texts}  # fmt: skip


def _is_image(key: str) -> bool:
    return key == "id_images" or key.startswith("ood/")


def sample_rows(sizes: Mapping[str, int], max_points: int, seed: int) -> dict[str, np.ndarray]:
    """Sorted row indices of each group: all rows, or ``max_points`` drawn without replacement."""
    if max_points < 1:
        raise ValueError(f"max_points={max_points} must be >= 1.")
    rng = np.random.default_rng(seed)
    return {k: np.arange(n) if n <= max_points else np.sort(rng.choice(n, max_points, replace=False))
            for k, n in sizes.items()}  # fmt: skip


def _nearest(x: np.ndarray, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[n, k]`` (int32) and cosines ``[n, k]`` (float32) of the ``k`` =
    :data:`NEAREST` texts nearest each row of ``x [n, D]``, nearest first (``k`` = 0: no texts)."""
    k = min(NEAREST, len(texts))
    cos = x @ texts.T  # (n, M)
    top = np.argsort(-cos, axis=1)[:, :k]
    return top.astype(np.int32), np.take_along_axis(cos, top, axis=1).astype(np.float32)


def _frames(bundle: EmbeddingBundle, rows: Mapping[str, np.ndarray], alphas: Sequence[float]):
    """The gap-shifted bundles, one per α, and their sampled rows by group key."""
    shifted = [shift_bundle(bundle, float(a)) for a in alphas]
    return shifted, [{k: _layers(b)[k][idx] for k, idx in rows.items()} for b in shifted]


def _stack(proj: Sequence[Mapping[str, np.ndarray]], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-α projections -> group display name -> ``[A, n, 2]``."""
    return {group_name(k): np.stack([p[k] for p in proj]).astype(np.float32) for k in keys}


def model_points(name: str, bundle: EmbeddingBundle, rows: Mapping[str, np.ndarray],
                 settings: ScoreSettings, alphas: Sequence[float], *,
                 scores: Sequence[str]) -> ModelPoints:  # fmt: skip
    """One model's :class:`~cmakit.report.explorer.ModelPoints` on the sampled ``rows``.

    Each view has one set of axes per model, so the slider moves points within fixed axes: the
    joint PCA of the model as trained (all sampled groups, α = 0), onto which every α frame is
    projected; the gap direction of its ID images and prompts as trained, with the top
    orthogonal principal axis of all groups and frames. ``scores`` are registered score names.
    """
    keys = list(rows)
    shifted, frames = _frames(bundle, rows, alphas)
    mean, axes, _ = pca_axes(*[_layers(bundle)[k][rows[k]] for k in keys], n_components=2)
    pca = [{k: (f[k] - mean) @ axes.T for k in keys} for f in frames]
    flat = [f[k] for f in frames for k in keys]
    gap = gap_axes(bundle.id_images, bundle.id_texts, *flat)
    gap_frames = [{k: gap[ai * len(keys) + ki] for ki, k in enumerate(keys)}
                  for ai in range(len(alphas))]  # fmt: skip
    coords = {VIEWS[0]: _stack(pca, keys), VIEWS[1]: _stack(gap_frames, keys)}
    images = [k for k in keys if _is_image(k)]
    out_scores: dict[str, dict[str, np.ndarray]] = {s: {} for s in scores}
    for k in images:
        per_alpha = [score_images(f[k], b, settings, scores=scores)
                     for b, f in zip(shifted, frames, strict=True)]  # fmt: skip
        for col in scores:
            out_scores[col][group_name(k)] = np.stack(
                [got[col] for got in per_alpha]).astype(np.float32)  # fmt: skip
    layers = _layers(bundle)
    nearest = {group_name(k): Nearest(*_nearest(layers[k][rows[k]], bundle.id_texts),
                                      *_nearest(layers[k][rows[k]], bundle.neg_texts))
               for k in images}  # fmt: skip
    return ModelPoints(name=name, coords=coords, scores=out_scores, nearest=nearest)


def shared_coords(bundles: Sequence[EmbeddingBundle], rows: Mapping[str, np.ndarray],
                  alphas: Sequence[float]) -> list[dict[str, np.ndarray]]:  # fmt: skip
    """Every model's ``[A, n, 2]`` positions per group in one joint PCA of all models as trained.

    The axes are fitted on the sampled rows of every group of every model at α = 0, so one
    image's positions under two models are comparable: the segment between them is its path.
    """
    keys = list(rows)
    frames = [_frames(b, rows, alphas)[1] for b in bundles]
    trained = [{k: _layers(b)[k][rows[k]] for k in keys} for b in bundles]
    mean, axes, _ = pca_axes(*[t[k] for t in trained for k in keys], n_components=2)
    return [_stack([{k: (f[k] - mean) @ axes.T for k in keys} for f in fr], keys) for fr in frames]


def computable_scores(bundles: Sequence[EmbeddingBundle], settings: ScoreSettings,
                      scores: Sequence[str] | None) -> list[str]:  # fmt: skip
    """The scores (registered names, ``scores`` or the settings') that every model can compute:
    a score that reads negative labels a model lacks is left out."""
    want = list(settings.scores if scores is None else scores)
    for b in bundles:
        got = score_images(b.id_images[:1], b, settings, scores=want)
        want = [s for s in want if s in got]
    return want


def explorer_points(bundles: Mapping[str, EmbeddingBundle], settings: ScoreSettings, *,
                    labels: Mapping[str, Sequence[str]],
                    thumbnails: Mapping[str, np.ndarray | Callable[[np.ndarray], np.ndarray]] | None = None,
                    alphas: Sequence[float], max_points: int = 300, seed: int = 0,
                    scores: Sequence[str] | None = None) -> tuple[list[Group], list[ModelPoints]]:  # fmt: skip
    """Groups and per-model points of the explorer.

    Args:
        bundles: Display name -> bundle, all of the same rows per layer, in path order
            (zero-shot, FLYP, CMA, the λ values).
        settings: The score settings (``pipeline.steps.score_settings`` for a run).
        labels: Group key (``id_images``, ``ood/<set>``, ``id_texts``, ``neg_texts``) -> one
            label per row of the full layer (class, caption or word).
        thumbnails: Image group key -> ``[N, H, W, 3]`` uint8 pixels of the full layer, or a
            function of the sampled row indices that returns their ``[n, H, W, 3]`` pixels
            (image files read on demand); None or a missing key: no thumbnails.
        alphas: Gap-shift fractions of the slider, ascending.
        max_points: Most points drawn per group (a fixed sample, the same for every model).
        seed: Seed of the sample.
        scores: Registered scores to colour by (default: the settings'); those a model cannot
            compute (no negative labels) are left out.

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
    prompt_row = {int(c): i for i, c in enumerate(rows.get("id_texts", []))}
    groups = []
    for k, idx in rows.items():
        kind = {"id_images": "id", "id_texts": "prompt", "neg_texts": "neg"}.get(k, "ood")
        thumbs = thumbnails.get(k)
        if thumbs is not None:
            thumbs = thumbs(idx) if callable(thumbs) else np.asarray(thumbs)[idx]
        pair = (np.array([prompt_row.get(int(c), -1) for c in first.id_labels[idx]], np.int32)
                if k == "id_images" else None)  # fmt: skip
        groups.append(Group(name=group_name(k), kind=kind, labels=[str(labels[k][i]) for i in idx],
                            thumbnails=thumbs, pair=pair))  # fmt: skip
    names = computable_scores(list(bundles.values()), settings, scores)
    models = [model_points(name, b, rows, settings, alphas, scores=names)
              for name, b in bundles.items()]  # fmt: skip
    if len(models) > 1:
        for m, xy in zip(models, shared_coords(list(bundles.values()), rows, alphas), strict=True):
            m.coords[SHARED_VIEW] = xy
    return groups, models


def group_name(key: str) -> str:
    """Display name of a group key (``"ood/far_textures"`` -> ``"OoD far_textures"``)."""
    names = {"id_images": "ID images", "id_texts": "ID prompts", "neg_texts": "negative labels"}
    return names.get(key, f"OoD {key.removeprefix('ood/')}")
