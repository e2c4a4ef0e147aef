"""Stage 2, fine-tuning: FLYP (λ = 0) and CMA models from the zero-shot model, on one process
or on every visible GPU through ``torchrun``."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from cmakit.common.io import read_json, read_jsonl, write_json
from cmakit.engine.trainer import TrainConfig
from cmakit.pipeline import products
from cmakit.pipeline.config import RunConfig, model_lam
from cmakit.pipeline.run_data import train_pairs
from cmakit.pipeline.stages.base_model import base_model

log = logging.getLogger(__name__)

#: Resume checkpoints kept while a fine-tuning runs (two: resume falls back to the older one
#: when the newest cannot be read); a finished run keeps none, only its final weights.
KEEP_CHECKPOINTS = 2


def model_dir(cfg: RunConfig, method: str, seed: int, lam: float | None = None) -> Path:
    """Folder of one fine-tuning run: ``models/lam<λ>-seed<s>-<fingerprint>/``.

    ``lam`` given overrides the method's weight (an ablation point).
    """
    weight = model_lam(cfg, method, lam)
    if weight is None:
        raise ValueError("The zero-shot model is not fine-tuned; it has no run folder.")
    key = products.model_key(cfg, weight, seed)
    return Path(cfg.run_dir) / "models" / f"lam{weight:g}-seed{seed}-{key}"


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
    from cmakit.engine.checkpoint import list_checkpoints
    from cmakit.engine.trainer import train

    weight = model_lam(cfg, method, lam)
    out = model_dir(cfg, method, seed, lam)
    done = out / "result.json"
    facts = products.reuse(done, read_json)
    if facts is not None:
        return {**facts, "cached": True}
    tcfg = train_config(cfg, weight, seed)
    gpus = finetune_processes(cfg)
    if gpus > 1:
        facts = _finetune_torchrun(cfg, tcfg, out, gpus)
    else:
        model, tokenizer, _ = base_model(cfg)
        model = copy.deepcopy(model).train()
        data = train_pairs(cfg, seed, tokenizer, cfg.train_prompt)
        result = train(model, data, tcfg, out_dir=out, resume=True, model_name=cfg.model)
        facts = {
            "model_path": str(result.model_path), "history_path": str(result.history_path),
            "final_step": result.final_step, "wall_time_s": result.wall_time_s,
            "pairs_per_s": result.pairs_per_s, "bad_samples": result.bad_samples,
        }  # fmt: skip
    for step_file in list_checkpoints(out / "checkpoints"):  # done: model.pt and history stay
        step_file.unlink(missing_ok=True)
    facts = {"method": method, "lam": weight, "seed": seed,
             "fingerprint": products.model_key(cfg, weight, seed), **facts}  # fmt: skip
    write_json(done, facts)
    return {**facts, "cached": False}


def train_config(cfg: RunConfig, lam: float, seed: int) -> TrainConfig:
    """The :class:`~cmakit.engine.trainer.TrainConfig` of one fine-tuning run of ``cfg``."""
    return TrainConfig(
        lam=lam, lr=cfg.finetune_lr, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.finetune_warmup_steps, epochs=cfg.finetune_epochs,
        max_steps=cfg.finetune_max_steps or None, batch_size=cfg.finetune_batch_size,
        micro_batch_size=cfg.finetune_micro_batch_size or None,
        grad_checkpointing=cfg.grad_checkpointing, precision=cfg.precision, seed=seed,
        device=cfg.device, num_workers=cfg.num_workers,
        log_every=max(1, cfg.finetune_max_steps // 10 or 10),
        keep_checkpoints=KEEP_CHECKPOINTS, towers=cfg.finetune_towers,
    )  # fmt: skip


def finetune_processes(cfg: RunConfig) -> int:
    """Processes that fine-tune: every visible GPU on the paper path (any count), else 1."""
    if cfg.embedded or cfg.device not in ("auto", "cuda"):
        return 1
    return max(1, torch.cuda.device_count())


def torchrun_command(cfg: RunConfig, tcfg: TrainConfig, out: Path, nproc: int) -> list[str]:
    """The ``torchrun -m cmakit train`` command line that fine-tunes with ``tcfg`` on ``nproc``
    processes (every TrainConfig field becomes its flag, so both paths train alike)."""
    import sys

    from cmakit.common.strict_config import to_dict

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


def _finetune_torchrun(cfg: RunConfig, tcfg: TrainConfig, out: Path, gpus: int) -> dict[str, Any]:
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


def load_model(
    cfg: RunConfig, method: str, seed: int, *, lam: float | None = None
) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` of a method: the zero-shot model or a fine-tuned one, in eval mode.

    A fine-tuned model that this configuration has not produced yet is fine-tuned now (its
    fingerprint changed with a parameter, or notebook 02 was skipped).
    """
    from cmakit.models.weights import load_model_weights

    tuned = model_lam(cfg, method, lam) is not None
    if tuned:
        finetune(cfg, method, seed, lam=lam)  # loads its result when already done
    model, tokenizer, _ = base_model(cfg)
    if tuned:
        path = model_dir(cfg, method, seed, lam) / "model.pt"
        tuned_model = products.reuse(path, lambda p: load_model_weights(copy.deepcopy(model), p))
        if tuned_model is None:  # damaged (or gone): fine-tune it again
            (path.parent / "result.json").unlink(missing_ok=True)
            finetune(cfg, method, seed, lam=lam)
            tuned_model = load_model_weights(copy.deepcopy(model), path)
        model = tuned_model
    return model.eval(), tokenizer


def read_history(cfg: RunConfig, method: str, seed: int) -> list[dict[str, Any]]:
    """Per-step training history of a fine-tuning run (list of row dicts)."""
    return read_jsonl(model_dir(cfg, method, seed) / "history.jsonl")
