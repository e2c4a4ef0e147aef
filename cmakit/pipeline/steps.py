"""The stages the notebooks call: base model, fine-tuning, negative labels, embeddings.

Every stage writes into the run folder (``cfg.run_dir``) under the fingerprint of exactly the
inputs that determine its product (:mod:`cmakit.pipeline.products`). A stage whose product
exists loads it instead of recomputing, so an interrupted run resumes where it stopped, each
notebook can be re-run alone, and a changed parameter recomputes what it affects and nothing
else. Models are named by their CMA weight: ``zero_shot`` is the pretrained model, ``flyp``
is λ = 0, ``cma`` is λ = ``cfg.lam``, and an ablation point at the same λ is the same product.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmakit.common.io import read_json, write_json
from cmakit.engine.bundle import EmbeddingBundle, surviving_rows
from cmakit.pipeline import products
from cmakit.pipeline.benchmark import (
    Benchmark,
    embedded_benchmark,
    load_world,
    paper_benchmark,
    record_time,
)
from cmakit.pipeline.config import RunConfig

log = logging.getLogger(__name__)


class _NoRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


_NO_RANDOM_INIT_NOTICE = _NoRandomInitNotice()  # one object: setup() runs once per notebook


def setup(cfg: RunConfig) -> Path:
    """Prepare a notebook's process: logging, torch threads, the run folder. Returns run_dir."""
    logging.basicConfig(level=logging.WARNING, format="[%(name)s] %(message)s", force=True)
    logging.getLogger("cmakit").setLevel(logging.INFO)
    # open_clip warns on the root logger for every model it builds without weights; cmakit
    # builds them on purpose (weights are loaded right after), so that line is noise here.
    logging.getLogger().addFilter(_NO_RANDOM_INIT_NOTICE)  # a no-op when already there
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Path(cfg.run_dir)
    for sub in ("figures", "tables", "metrics", "models", "embeddings"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    return run


def method_lam(cfg: RunConfig, method: str) -> float | None:
    """The CMA weight of a method: None for zero-shot, 0 for FLYP, ``cfg.lam`` for CMA."""
    lams = {"zero_shot": None, "flyp": 0.0, "cma": cfg.lam}
    if method not in lams:
        raise KeyError(f"Unknown method {method!r}; choose one of {list(lams)}.")
    return lams[method]


def _lam(cfg: RunConfig, method: str, lam: float | None) -> float | None:
    return method_lam(cfg, method) if lam is None else float(lam)


# ---------------------------------------------------------------- models
def base_model(cfg: RunConfig) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """The zero-shot model: the tiny CLIP pretrained on the world, or the paper's weights.

    Returns:
        ``(model, tokenizer, info)``; ``info["weights"]`` is the file the weights came from.
    """
    if cfg.embedded:
        from cmakit.data.world import world_config
        from cmakit.engine.pretrain import pretrain_clip, pretrain_config

        pcfg = pretrain_config(cfg.world, model=cfg.model)
        model, tokenizer, info = pretrain_clip(
            world_config(cfg.world), pcfg, cache_dir=cfg.cache_dir or None,
            world=lambda: load_world(cfg),  # split seed 0's cached world, read only to pretrain
        )  # fmt: skip
        record_time(cfg, "pretrain_s", info["train_s"])  # as measured when it was trained
        return model, tokenizer, {**info, "weights": str(Path(info["path"]) / "model.pt")}
    from cmakit.models.factory import load_clip

    model, _, tokenizer = load_clip(cfg.model, pretrained=cfg.pretrained or None, device="cpu")
    return model, tokenizer, {"weights": cfg.pretrained}


def pretrain_history(info: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-step history of the tiny CLIP's pretraining (kept beside the cached weights)."""
    return _read_jsonl(Path(info["path"]) / "history.jsonl")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    import json

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run that writes it has not finished.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def model_dir(cfg: RunConfig, method: str, seed: int, lam: float | None = None) -> Path:
    """Folder of one fine-tuning run: ``models/lam<λ>-seed<s>-<fingerprint>/``.

    ``lam`` given overrides the method's weight (an ablation point).
    """
    weight = _lam(cfg, method, lam)
    if weight is None:
        raise ValueError("The zero-shot model is not fine-tuned; it has no run folder.")
    key = products.model_key(cfg, weight, seed)
    return Path(cfg.run_dir) / "models" / f"lam{weight:g}-seed{seed}-{key}"


def benchmark(cfg: RunConfig, seed: int, preprocess: Any = None) -> Benchmark:
    """The run's data for ``seed`` (embedded world) or the paper's folders."""
    if cfg.embedded:
        return embedded_benchmark(cfg, seed)
    if preprocess is None:
        from cmakit.models.factory import model_image_size
        from cmakit.models.transforms import paper_transform

        preprocess = paper_transform(model_image_size(cfg.model), train=False)
    return paper_benchmark(cfg, preprocess)


def finetune(cfg: RunConfig, method: str, seed: int, *, lam: float | None = None) -> dict[str, Any]:
    """Fine-tune the zero-shot model with FLYP (lam 0) or CMA; skip if already done.

    Args:
        cfg: Run configuration (optimiser, schedule, batch, prompts).
        method: "flyp" or "cma" (``lam`` None), or any label for an ablation point.
        seed: Seeds data order, initialisation of nothing else (weights start from zero-shot),
            and the world's evaluation samples.
        lam: Explicit CMA weight (the lambda ablation); None = the method's.

    Returns:
        Facts of the run: ``model_path``, ``history_path``, ``wall_time_s``, ``pairs_per_s``,
        ``final_step``, ``lam``, ``seed``, ``cached``.
    """
    from cmakit.engine.trainer import train

    weight = _lam(cfg, method, lam)
    out = model_dir(cfg, method, seed, lam)
    done = out / "result.json"
    if done.is_file():
        return {**read_json(done), "cached": True}
    tcfg = train_config(cfg, weight, seed)
    gpus = finetune_processes(cfg)
    if gpus > 1:
        facts = _finetune_torchrun(cfg, tcfg, out, gpus)
    else:
        model, tokenizer, _ = base_model(cfg)
        model = copy.deepcopy(model).train()
        data = benchmark(cfg, seed).train_pairs(tokenizer, cfg.train_prompt)
        result = train(model, data, tcfg, out_dir=out, resume=True, model_name=cfg.model)
        facts = {
            "model_path": str(result.model_path), "history_path": str(result.history_path),
            "final_step": result.final_step, "wall_time_s": result.wall_time_s,
            "pairs_per_s": result.pairs_per_s, "bad_samples": result.bad_samples,
        }  # fmt: skip
    from cmakit.engine.checkpoint import list_checkpoints

    for step_file in list_checkpoints(out / "checkpoints"):  # done: model.pt and history stay
        step_file.unlink(missing_ok=True)
    facts = {"method": method, "lam": weight, "seed": seed,
             "fingerprint": products.model_key(cfg, weight, seed), **facts}  # fmt: skip
    write_json(done, facts)
    return {**facts, "cached": False}


#: Resume checkpoints kept while a fine-tuning runs (two: resume falls back to the older one
#: when the newest cannot be read); a finished run keeps none, only its final weights.
KEEP_CHECKPOINTS = 2


def train_config(cfg: RunConfig, lam: float, seed: int) -> Any:
    """The :class:`~cmakit.engine.trainer.TrainConfig` of one fine-tuning run of ``cfg``."""
    from cmakit.engine.trainer import TrainConfig

    return TrainConfig(
        lam=lam, lr=cfg.finetune_lr, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.finetune_warmup_steps, epochs=cfg.finetune_epochs,
        max_steps=cfg.finetune_max_steps or None, batch_size=cfg.finetune_batch_size,
        micro_batch_size=cfg.finetune_micro_batch_size or None,
        grad_checkpointing=cfg.grad_checkpointing, precision=cfg.precision, seed=seed,
        device=cfg.device, num_workers=cfg.num_workers,
        log_every=max(1, cfg.finetune_max_steps // 10 or 10),
        keep_checkpoints=KEEP_CHECKPOINTS,
    )  # fmt: skip


def finetune_processes(cfg: RunConfig) -> int:
    """Processes that fine-tune: every visible GPU on the paper path (any count), else 1."""
    if cfg.embedded or cfg.device not in ("auto", "cuda"):
        return 1
    return max(1, torch.cuda.device_count())


def torchrun_command(cfg: RunConfig, tcfg: Any, out: Path, nproc: int) -> list[str]:
    """The ``torchrun -m cmakit train`` command line that fine-tunes with ``tcfg`` on ``nproc``
    processes (every TrainConfig field becomes its flag, so both paths train alike)."""
    import sys

    from cmakit.common.config import to_dict

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "cmakit", "train", "--model", cfg.model, "--pretrained", cfg.pretrained,
           "--out", str(out), "--prompt", cfg.train_prompt, "--resume", "--no-progress"]  # fmt: skip
    if cfg.imagenet_root:
        cmd += ["--imagenet", cfg.imagenet_root]
    for key, value in to_dict(tcfg).items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool) and key != "progress":
            cmd += [flag if value else f"--no-{flag[2:]}"]
        elif value is not None and key != "progress":
            cmd += [flag, str(value)]
    return cmd


def _finetune_torchrun(cfg: RunConfig, tcfg: Any, out: Path, gpus: int) -> dict[str, Any]:
    """Fine-tune on every visible GPU (any count) through :func:`torchrun_command`.

    The global batch stays ``tcfg.batch_size``, split into per-GPU shares that differ by at most
    one pair (and into micro-batches of at most ``tcfg.micro_batch_size``); the loss is that of
    the whole global batch, so N processes give the update of one process at the full batch.
    """
    import subprocess

    cmd = torchrun_command(cfg, tcfg, out, gpus)
    log.info("fine-tuning on %d GPUs: %s", gpus, " ".join(cmd))
    subprocess.run(cmd, check=True)
    done = read_json(out / "train_summary.json")
    keys = ("model_path", "final_step", "wall_time_s", "pairs_per_s")
    return {**{k: done[k] for k in keys}, "history_path": str(out / "history.jsonl"),
            "bad_samples": done["bad_images"]}  # fmt: skip


def load_model(cfg: RunConfig, method: str, seed: int, *, lam: float | None = None):
    """``(model, tokenizer)`` of a method: the zero-shot model or a fine-tuned one.

    A fine-tuned model that this configuration has not produced yet is fine-tuned now (its
    fingerprint changed with a parameter, or notebook 02 was skipped).
    """
    from cmakit.models.weights import load_model_weights

    if _lam(cfg, method, lam) is not None:
        finetune(cfg, method, seed, lam=lam)  # loads its result when already done
        path = model_dir(cfg, method, seed, lam) / "model.pt"
    model, tokenizer, _ = base_model(cfg)
    if _lam(cfg, method, lam) is not None:
        model = load_model_weights(copy.deepcopy(model), path)
    return model.eval(), tokenizer


def read_history(cfg: RunConfig, method: str, seed: int) -> list[dict[str, Any]]:
    """Per-step training history of a fine-tuning run (list of row dicts)."""
    return _read_jsonl(model_dir(cfg, method, seed) / "history.jsonl")


# ---------------------------------------------------------------- negative labels
def _mine(cfg: RunConfig, path: Path, candidates: Any, timing: str) -> list[Any]:
    """Mine over ``candidates()`` with the zero-shot text encoder, or load ``path``."""
    from cmakit.engine.negatives import load_negative_labels, mine_negatives, save_negative_labels

    if path.is_file():
        return load_negative_labels(path)
    model, tokenizer, _ = base_model(cfg)
    bench = benchmark(cfg, cfg.seeds[0])
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
    """The negative-label prompts every model of the run encodes: the file
    ``cfg.negative_labels`` verbatim (duplicates and all), else the mined labels' prompts."""
    from cmakit.engine.negatives import negative_prompts as prompts_of
    from cmakit.engine.negatives import read_negative_labels

    if cfg.negative_labels:
        return read_negative_labels(cfg.negative_labels)
    return prompts_of(negative_labels(cfg))


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


def negative_labels_path(cfg: RunConfig) -> Path:
    """Where the run's mined negative labels are (or will be) saved."""
    return Path(cfg.run_dir) / "negatives" / f"{products.negatives_key(cfg)}.tsv"


# ---------------------------------------------------------------- embeddings
def _tag(cfg: RunConfig, method: str, seed: int, lam: float | None) -> str:
    weight = _lam(cfg, method, lam)
    return f"zero_shot-seed{seed}" if weight is None else f"lam{weight:g}-seed{seed}"


def embeddings_path(cfg: RunConfig, method: str, seed: int, lam: float | None = None) -> Path:
    """``embeddings/<model>-seed<s>-<fingerprint>.npz`` of one model."""
    key = products.embeddings_key(cfg, _lam(cfg, method, lam), seed)
    return Path(cfg.run_dir) / "embeddings" / f"{_tag(cfg, method, seed, lam)}-{key}.npz"


def embed(cfg: RunConfig, method: str, seed: int, *, lam: float | None = None) -> EmbeddingBundle:
    """Encode everything the evaluation needs with one model; cached per fingerprint.

    Returns:
        The model's :class:`~cmakit.engine.bundle.EmbeddingBundle` of the seed's benchmark:
        ID test images and labels, ID prompts (test prompt), negative labels (NegLabel's and
        CSP's), OoD sets.
    """
    from cmakit.engine.embed import EmbeddingCache
    from cmakit.engine.negatives import negative_prompts as prompts_of

    path = embeddings_path(cfg, method, seed, lam)
    if path.is_file():
        return EmbeddingBundle.load(path)
    model, tokenizer = load_model(cfg, method, seed, lam=lam)
    bench = benchmark(cfg, seed)
    cache = EmbeddingCache(Path(cfg.run_dir) / "embeddings" / "cache")
    opts = {"device": cfg.device, "progress": True}
    workers = {"num_workers": cfg.num_workers}
    enc = cache.images(model, bench.id_test, preprocessing=bench.preprocessing, **opts, **workers)
    prompts = [cfg.test_prompt.format(c) for c in bench.classnames]
    id_texts = cache.texts(model, tokenizer, prompts, **opts, desc="embedding ID prompts")
    neg_texts = cache.texts(model, tokenizer, negative_prompts(cfg), **opts,
                            desc="embedding negative labels")  # fmt: skip
    csp_texts = cache.texts(model, tokenizer, prompts_of(csp_labels(cfg)), **opts,
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


# ---------------------------------------------------------------- lambda ablation
def ablation_point(cfg: RunConfig, lam: float, seed: int) -> dict[str, Any]:
    """Fine-tune with ``lam``, embed, evaluate; one JSON per point makes it resumable.

    λ = 0 and λ = ``cfg.lam`` are the FLYP and CMA models of the same seed (same fingerprint).

    Returns:
        ``{lam, seed, fingerprint, id_accuracy, modality_gap, <score>_<metric>,
        <score>_<group>_<metric>}`` for the MCM and NegLabel scores (means over all OoD sets
        and per group).
    """
    from cmakit.pipeline.results import evaluate_model

    key = products.metrics_key(cfg, float(lam), seed)
    path = Path(cfg.run_dir) / "metrics" / "ablation" / f"lam{lam:g}-seed{seed}-{key}.json"
    if path.is_file():
        return read_json(path)
    start = time.perf_counter()
    result = evaluate_model(cfg, "cma", seed, lam=float(lam))
    row: dict[str, Any] = {"lam": float(lam), "seed": seed, "fingerprint": key,
                           **ablation_metrics(result)}  # fmt: skip
    row["wall_s"] = time.perf_counter() - start
    write_json(path, row)
    return row


def ablation_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The columns of an ablation row from a per-seed record: ``id_accuracy``,
    ``modality_gap``, ``<score>_<metric>`` (mean over all OoD sets) and
    ``<score>_<group>_<metric>`` for the MCM and NegLabel scores."""
    row = {"id_accuracy": record["id_accuracy"], "modality_gap": record["modality_gap"]}
    for score in ("mcm", "neglabel"):
        per = record["ood"][score]
        sets = [k for k in per if not k.endswith("_mean")]
        for metric in ("fpr95", "auroc"):
            row[f"{score}_{metric}"] = float(np.mean([per[s][metric] for s in sets]))
            for group in (k for k in per if k.endswith("_mean")):
                row[f"{score}_{group.removesuffix('_mean')}_{metric}"] = per[group][metric]
    return row


def ablation_reference(cfg: RunConfig) -> dict[str, float]:
    """The zero-shot model in the ablation's columns, averaged over the ablation's seeds: the
    reference every λ is compared with (no fine-tuning at all)."""
    from cmakit.pipeline.results import evaluate_model

    rows = [ablation_metrics(evaluate_model(cfg, "zero_shot", seed))
            for seed in cfg.seeds[: cfg.ablation_seeds]]  # fmt: skip
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def ablation_rows(cfg: RunConfig) -> list[dict[str, Any]]:
    """The ablation points of this configuration (computed if missing), one per (λ, seed).

    Each point's file keeps its fingerprint; the rows leave it out, as the seeds of one λ are
    folded together (the summary lists the fingerprints apart, under ``fingerprints``).
    """
    rows = [ablation_point(cfg, lam, seed)
            for lam in cfg.ablation_lams for seed in cfg.seeds[: cfg.ablation_seeds]]  # fmt: skip
    return [{k: v for k, v in row.items() if k != "fingerprint"} for row in rows]
