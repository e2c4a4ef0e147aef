"""Stage 3, negative labels: NegLabel's and CSP's, mined once with the zero-shot text tower,
or a given file's prompts used verbatim."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cmakit.pipeline import products
from cmakit.pipeline.config import RunConfig
from cmakit.pipeline.run_data import Benchmark, record_time, run_data
from cmakit.pipeline.stages.base_model import base_model


def _mine(
    cfg: RunConfig, path: Path, candidates: Callable[[Benchmark], Any], timing: str
) -> list[Any]:
    """Mine over ``candidates(benchmark)`` with the zero-shot text encoder, or load ``path``."""
    from cmakit.engine.negatives import load_negative_labels, mine_negatives, save_negative_labels

    cached = products.reuse(path, load_negative_labels)
    if cached is not None:
        return cached
    model, tokenizer, _ = base_model(cfg)
    bench = run_data(cfg, cfg.seeds[0])
    start = time.perf_counter()
    labels = mine_negatives(
        model, tokenizer, bench.classnames, candidates=candidates(bench),
        keep=cfg.neg_fraction, id_template=cfg.test_prompt, device=cfg.device,
    )  # fmt: skip
    save_negative_labels(path, labels)
    record_time(cfg, timing, time.perf_counter() - start)
    return labels


def negative_labels(cfg: RunConfig) -> list[Any]:
    """Mine the negative labels once, with the zero-shot (pretrained) text encoder.

    Candidates: the world's lexicon, or on the paper path the WordNet pool ``cfg.neg_pool``.
    Saved to ``<run_dir>/negatives/<fingerprint>.tsv`` (word, pos, affinity); later calls load it.

    Raises:
        ValueError: ``cfg.negative_labels`` names a file: the run uses its prompts verbatim
            (:func:`negative_prompts`), it mines nothing.
    """
    if cfg.negative_labels:
        raise ValueError(
            f"negative_labels={cfg.negative_labels!r}: this run uses that file's prompts verbatim "
            "and mines none; read them with steps.negative_prompts(cfg)."
        )

    def candidates(bench: Benchmark) -> list[tuple[str, str]]:
        from cmakit.data.wordnet import wordnet_candidates

        return (
            bench.candidates if bench.candidates is not None else wordnet_candidates(cfg.neg_pool)
        )

    return _mine(cfg, negative_labels_path(cfg), candidates, "negative_mining_s")


def negative_prompts(cfg: RunConfig) -> list[str]:
    """The negative-label prompts every model of the run encodes, whatever their source: the
    file ``cfg.negative_labels`` verbatim (duplicates and all), else the mined labels' prompts.
    Every caller that encodes or shows NegLabel's negatives goes through this function."""
    from cmakit.engine.negatives import label_prompts, read_negative_labels

    if cfg.negative_labels:
        return read_negative_labels(cfg.negative_labels)
    return label_prompts(negative_labels(cfg))


def csp_labels(cfg: RunConfig) -> list[Any]:
    """CSP's negative labels (Chen et al., NeurIPS 2024), mined like NegLabel's over the
    conjugated pool: the world's lexicon (:func:`cmakit.data.csp.csp_pool`) or WordNet's
    ``"csp"`` pool. Saved to ``<run_dir>/negatives/csp-<fingerprint>.tsv``."""

    def candidates(bench: Benchmark) -> list[tuple[str, str]]:
        from cmakit.data.wordnet import wordnet_candidates

        return (
            bench.csp_candidates if bench.csp_candidates is not None else wordnet_candidates("csp")
        )

    path = Path(cfg.run_dir) / "negatives" / f"csp-{products.csp_negatives_key(cfg)}.tsv"
    return _mine(cfg, path, candidates, "csp_mining_s")


def csp_prompts(cfg: RunConfig) -> list[str]:
    """The CSP negative-label prompts every model of the run encodes."""
    from cmakit.engine.negatives import label_prompts

    return label_prompts(csp_labels(cfg))


def negative_labels_path(cfg: RunConfig) -> Path:
    """Where the run's mined negative labels are (or will be) saved."""
    return Path(cfg.run_dir) / "negatives" / f"{products.negatives_key(cfg)}.tsv"
