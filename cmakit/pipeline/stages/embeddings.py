"""Stage 4, embeddings: everything the evaluation needs, encoded once per model."""

from __future__ import annotations

import logging
from pathlib import Path

from cmakit.engine.bundle import EmbeddingBundle, surviving_rows
from cmakit.pipeline import products
from cmakit.pipeline.config import RunConfig, model_lam, model_tag
from cmakit.pipeline.run_data import run_data
from cmakit.pipeline.stages.finetune import load_model
from cmakit.pipeline.stages.negative_labels import csp_prompts, negative_prompts

log = logging.getLogger(__name__)


def embeddings_path(cfg: RunConfig, method: str, seed: int, lam: float | None = None) -> Path:
    """``embeddings/<model>-seed<s>-<fingerprint>.npz`` of one model."""
    weight = model_lam(cfg, method, lam)
    key = products.embeddings_key(cfg, weight, seed)
    return Path(cfg.run_dir) / "embeddings" / f"{model_tag(weight, seed)}-{key}.npz"


def embed(cfg: RunConfig, method: str, seed: int, *, lam: float | None = None) -> EmbeddingBundle:
    """Encode everything the evaluation needs with one model; cached per fingerprint.

    Returns:
        The model's :class:`~cmakit.engine.bundle.EmbeddingBundle` of the seed's benchmark:
        ID test images and labels, ID prompts (test prompt), negative labels (NegLabel's and
        CSP's), OoD sets.
    """
    from cmakit.engine.embed import EmbeddingCache

    path = embeddings_path(cfg, method, seed, lam)
    cached = products.reuse(path, EmbeddingBundle.load)
    if cached is not None:
        return cached
    model, tokenizer = load_model(cfg, method, seed, lam=lam)
    bench = run_data(cfg, seed)
    cache = EmbeddingCache(Path(cfg.run_dir) / "embeddings" / "cache")
    opts = {"device": cfg.device, "progress": True}
    workers = {"num_workers": cfg.num_workers}
    enc = cache.images(model, bench.id_test, preprocessing=bench.preprocessing, **opts, **workers)
    prompts = [cfg.test_prompt.format(c) for c in bench.classnames]
    id_texts = cache.texts(model, tokenizer, prompts, **opts, desc="embedding ID prompts")
    neg_texts = cache.texts(model, tokenizer, negative_prompts(cfg), **opts,
                            desc="embedding negative labels")  # fmt: skip
    csp_texts = cache.texts(model, tokenizer, csp_prompts(cfg), **opts,
                            desc="embedding CSP labels")  # fmt: skip
    bad, ood = {"id_test": len(enc.bad_paths)}, {}
    for name, data in bench.ood.items():
        got = cache.images(model, data, preprocessing=bench.preprocessing, **opts, **workers)
        ood[name], bad[name] = got.embeddings, len(got.bad_paths)
    if any(bad.values()):
        log.warning("unreadable images skipped while embedding: %s", bad)
    paths = [path for path, _ in getattr(bench.id_test, "samples", [])]
    subsets = {name: surviving_rows(rows, paths, enc.bad_paths)
               for name, rows in bench.id_subsets.items()}  # fmt: skip
    bundle = EmbeddingBundle(
        id_images=enc.embeddings, id_labels=enc.labels, id_texts=id_texts, neg_texts=neg_texts,
        logit_scale=float(model.logit_scale.detach().exp()), ood=ood,
        bad_images=sum(bad.values()), csp_texts=csp_texts, id_subsets=subsets,
    )  # fmt: skip
    bundle.save(path)
    return bundle
