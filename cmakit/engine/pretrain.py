"""Pretrain the tiny CLIP on the embedded world, once, and cache it.

The model is open_clip's own ``CLIP`` class built from a JSON config in
``cmakit/models/configs/`` (the code path of ViT-B/16, scaled down), trained from random
initialisation by :func:`cmakit.engine.trainer.train` with ``lam=0`` on (image, caption) pairs: the
symmetric contrastive loss with a learnable temperature. The weights are cached under a
fingerprint of everything that changes them, in a folder shared by all runs, so notebooks and
later runs load the model instead of pretraining it again.

Command line: ``python -m cmakit.engine.pretrain --profile cpu [--out DIR]`` pretrains (or loads),
then writes ``world_samples.png``, ``zero_shot.json`` and ``zero_shot.png`` to ``DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cmakit.common.io import (
    atomic_path,
    cache_root,
    fingerprint,
    read_json,
    resolve_device,
    write_json,
)
from cmakit.common.strict_config import ConfigError, from_dict, to_dict
from cmakit.data.world import World, WorldConfig, build_world, world_config
from cmakit.data.world.figure import plot_world_samples
from cmakit.engine.zero_shot import zero_shot_report
from cmakit.models.factory import CONFIG_DIR

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = CONFIG_DIR  # the tiny CLIPs live with the other model configs

__all__ = [
    "PRETRAIN_PRESETS",
    "PretrainConfig",
    "cache_root",
    "pretrain_clip",
    "pretrain_config",
    "register_world_models",
    "zero_shot_report",
]


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Hyper-parameters of contrastive pretraining from scratch.

    Attributes:
        model: open_clip model name (a JSON config in ``cmakit/models/configs/``).
        steps: Optimizer steps (the cosine schedule spans them).
        batch_size: Pairs per step.
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay (all parameters, as in :mod:`cmakit.engine.trainer`).
        warmup_steps: Linear warm-up steps.
        max_logit_scale: Cap on ``exp(logit_scale)`` (open_clip's 100 for training from scratch).
        init_logit_scale: Initial ``exp(logit_scale)`` (learned from there); ``None``: the
            model's own (open_clip's 1/0.07 = 14.3). AdamW moves ``logit_scale`` by at most
            ~lr per step, so a short pretraining ends near where it starts.
        warm_steps: Two-phase temperature schedule: the first ``warm_steps`` steps learn from
            the model's own (warm) initial temperature, which learns fast; then the logit scale
            is set to ``init_logit_scale`` and the other ``steps - warm_steps`` run with their
            own warm-up and cosine (data order seeded ``seed + 1000``). 0: one phase.
        hold_logit_scale: Keep ``exp(logit_scale)`` fixed at ``init_logit_scale`` (not learned)
            from where the schedule sets it: the cold phase, or the whole run without
            ``warm_steps``. CLIP's learned scale ends at its cap of 100; learned here, AdamW's
            weight decay (on every parameter, as in :mod:`cmakit.engine.trainer`) pulls a short
            cold phase's scale from 100 down to ~70. Fine-tuning learns it again.
        seed: Seed of initialisation and data order.
        threads: ``torch.set_num_threads`` during pretraining; 0 leaves torch's default.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: Show a progress bar.
    """

    model: str = "cmakit-tiny"
    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    max_logit_scale: float = 100.0
    init_logit_scale: float | None = None
    warm_steps: int = 0
    hold_logit_scale: bool = False
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be at least 1.")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 2 (contrastive loss).")
        if self.lr <= 0 or self.weight_decay < 0 or self.max_logit_scale <= 0:
            raise ConfigError("lr and max_logit_scale must be > 0, weight_decay >= 0.")
        if self.warmup_steps < 0 or self.threads < 0:
            raise ConfigError("warmup_steps and threads must be >= 0.")
        if self.init_logit_scale is not None and not (
            0 < self.init_logit_scale <= self.max_logit_scale
        ):
            raise ConfigError(
                f"init_logit_scale={self.init_logit_scale!r} must be in (0, max_logit_scale="
                f"{self.max_logit_scale}]."
            )

        if self.warm_steps and (self.init_logit_scale is None or self.warm_steps >= self.steps):
            raise ConfigError(
                f"warm_steps={self.warm_steps} needs init_logit_scale (the scale of the second "
                f"phase) and must be < steps={self.steps}."
            )
        if self.warm_steps < 0:
            raise ConfigError(f"warm_steps={self.warm_steps} must be >= 0.")
        if self.hold_logit_scale and self.init_logit_scale is None:
            raise ConfigError("hold_logit_scale needs init_logit_scale (the scale to hold).")

    def cache_key(self) -> dict[str, Any]:
        """The fields that change the weights (not threads, device or the progress bar).

        ``init_logit_scale=None``, ``warm_steps=0`` and ``hold_logit_scale=False`` are left out,
        so recipes older than these fields keep their key.
        """
        skip = {"threads", "device", "progress"}
        if not self.hold_logit_scale:
            skip.add("hold_logit_scale")
        if self.init_logit_scale is None:
            skip.add("init_logit_scale")
        if not self.warm_steps:
            skip.add("warm_steps")
        return {k: v for k, v in to_dict(self).items() if k not in skip}


PRETRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "model": "cmakit-micro",
        "steps": 30,
        "batch_size": 64,
        "lr": 2e-3,
        "warmup_steps": 5,
    },
    # 2000 steps of 128 pairs of the tiny ResNet (the pairs of 1000 x 256) in two phases,
    # chosen on validation data by benchmarks/world_geometry.py (docs/world_design.md,
    # "Geometry targets", second round): 1400 steps at open_clip's warm initial temperature
    # learn the world, then 600 at logit scale 100, held there (not learned), make the cones.
    # Validation, seed 0: gap 0.56, every text on the text side, zero-shot ID accuracy 62.2%,
    # FLYP 84.8%: every target met.
    "cpu": {
        "model": "cmakit-tiny-rn",
        "steps": 2000,
        "batch_size": 128,
        "warmup_steps": 50,
        "init_logit_scale": 100.0,
        "warm_steps": 1400,
        "hold_logit_scale": True,
    },
    "shapes": {"steps": 1000, "warmup_steps": 50},  # the shape world (study: vocabulary)
}
PRETRAIN_PRESETS["cpu_plain"] = PRETRAIN_PRESETS["cpu"]  # cpu's corpus and recipe: the same model
PRETRAIN_PRESETS["cpu_broad"] = PRETRAIN_PRESETS["cpu"]  # likewise (40 ID classes)
# The recipe before issue 18: one phase at open_clip's warm initial temperature (logit scale
# ends near 20; gap 0.23): the study's temperature factor (world preset ``cpu_warm``).
PRETRAIN_PRESETS["cpu_warm"] = {"model": "cmakit-tiny-rn", "steps": 1000, "warmup_steps": 50}


def pretrain_config(profile: str = "cpu", **overrides: Any) -> PretrainConfig:
    """The :class:`PretrainConfig` of a named profile, with optional overrides.

    Raises:
        KeyError: for an unknown profile, listing the valid ones.
    """
    if profile not in PRETRAIN_PRESETS:
        raise KeyError(f"Unknown pretrain profile {profile!r}; valid: {sorted(PRETRAIN_PRESETS)}.")
    return from_dict(PretrainConfig, PRETRAIN_PRESETS[profile], **overrides)


def register_world_models() -> None:
    """Make the JSON configs in ``cmakit/models/configs/`` known to open_clip."""
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)


def _model_config(name: str) -> dict[str, Any]:
    path = MODEL_CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        valid = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
        raise KeyError(f"Unknown world model {name!r}; valid: {valid}.")
    return json.loads(path.read_text())


def _check_compatible(world_cfg: WorldConfig, model_cfg: dict[str, Any], name: str) -> None:
    size = model_cfg["vision_cfg"]["image_size"]
    if size != world_cfg.image_size:
        raise ConfigError(
            f"Model {name!r} takes {size}px images but the world has image_size="
            f"{world_cfg.image_size}; make them equal."
        )


def _new_model(cfg: PretrainConfig) -> tuple[torch.nn.Module, Any]:
    import open_clip

    register_world_models()
    torch.manual_seed(cfg.seed)
    model = open_clip.create_model(cfg.model, pretrained=None)
    if cfg.init_logit_scale is not None and not cfg.warm_steps:
        _set_logit_scale(model, cfg.init_logit_scale)
    model.cmakit_name = cfg.model
    return model, open_clip.get_tokenizer(cfg.model)


def _set_logit_scale(model: torch.nn.Module, scale: float) -> None:
    with torch.no_grad():
        model.logit_scale.fill_(math.log(scale))


def _phases(cfg: PretrainConfig) -> list[tuple[int, float | None, bool]]:
    """``(steps, logit scale set before them or None, scale held)`` of each phase."""
    if not cfg.warm_steps:
        return [(cfg.steps, None, cfg.hold_logit_scale)]
    return [(cfg.warm_steps, None, False),
            (cfg.steps - cfg.warm_steps, cfg.init_logit_scale, cfg.hold_logit_scale)]  # fmt: skip


def _train(model, world: World, tokenizer, cfg: PretrainConfig, work: Path) -> dict[str, Any]:
    """Run :func:`cmakit.engine.trainer.train` (lam=0) on the captions, one call per phase of
    the temperature schedule; returns loss and timing facts."""
    from cmakit.engine.trainer import TrainConfig, train

    t0 = time.perf_counter()
    data = world.pretrain_dataset(tokenizer, uint8=True)
    t_tok = time.perf_counter() - t0
    wall, steps, history = 0.0, 0, []
    for k, (n, scale, held) in enumerate(_phases(cfg)):
        if scale is not None:
            _set_logit_scale(model, scale)  # a resumed phase restores its own weights
        model.logit_scale.requires_grad_(not held)  # a held scale is no parameter of AdamW
        warmup = min(cfg.warmup_steps, n - 1)
        tcfg = TrainConfig(
            lam=0.0, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=warmup,
            epochs=10_000, max_steps=n, batch_size=cfg.batch_size, seed=cfg.seed + 1000 * k,
            max_logit_scale=cfg.max_logit_scale, num_workers=0, log_every=max(1, n // 20),
            progress=cfg.progress, device=resolve_device(cfg.device),
            checkpoint_every_steps=max(1, n // 10), keep_checkpoints=2,
        )  # fmt: skip
        out = work if k == 0 else work / f"phase{k}"
        try:
            result = train(model, data, tcfg, out_dir=out, resume=True, model_name=cfg.model)
        finally:
            model.logit_scale.requires_grad_(True)  # fine-tuning learns the scale
        wall, steps = wall + result.wall_time_s, steps + result.final_step
        history += Path(result.history_path).read_text().splitlines()
    history_path = work / "history-all.jsonl"
    history_path.write_text("\n".join(history) + "\n")
    losses = [json.loads(line)["loss"] for line in history]
    k = max(1, len(losses) // 20)
    return {
        "tokenize_s": t_tok,
        "train_s": wall,
        "s_per_step": wall / max(1, steps),
        "steps": steps,
        "loss_first": sum(losses[:k]) / k,
        "loss_last": sum(losses[-k:]) / k,
        "model_path": str(result.model_path),
        "history_path": str(history_path),
    }


def _load_cached(model: torch.nn.Module, tokenizer, weights: Path, info_path: Path):
    """``(model, tokenizer, info)`` of a finished pretraining, read from the cache."""
    from cmakit.models.weights import load_model_weights

    load_model_weights(model, weights)
    log.info("loaded pretrained weights from %s", weights)
    return model.eval(), tokenizer, {**read_json(info_path), "cached": True}


def pretrain_key(world_cfg: WorldConfig, pretrain_cfg: PretrainConfig) -> str:
    """Fingerprint of everything that changes the pretrained weights: the world's pretraining
    corpus (generator version included), the model's JSON config and the pretraining recipe."""
    return fingerprint(
        world_cfg.pretrain_key(), _model_config(pretrain_cfg.model), pretrain_cfg.cache_key()
    )


def _check_world(world: Any, world_cfg: WorldConfig) -> None:
    """Refuse a world (not a loader) whose pretraining corpus is not ``world_cfg``'s."""
    if isinstance(world, World) and world.config.pretrain_key() != world_cfg.pretrain_key():
        raise ConfigError("The world passed was built from another configuration than world_cfg.")


def pretrain_clip(
    world_cfg: WorldConfig,
    pretrain_cfg: PretrainConfig,
    *,
    cache_dir: str | os.PathLike | None = None,
    world: World | Callable[[], World] | None = None,
) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Pretrain the tiny CLIP on the world, or load it from the cache.

    The cache key is a fingerprint of the world fields that change the pretraining corpus
    (:meth:`WorldConfig.pretrain_key`), the model's JSON config and the pretraining config
    (seed included; threads and device excluded).

    Args:
        world_cfg: The world (only its pretraining corpus matters here).
        pretrain_cfg: Model and optimisation settings.
        cache_dir: Cache folder; default :func:`cache_root`.
        world: The already built world for ``world_cfg``, or a function that returns it,
            called only when pretraining has to run (saves regenerating it; a cached model
            needs no world).

    Returns:
        ``(model, tokenizer, info)``: the model in eval mode on the CPU, the open_clip tokenizer
        and a dict with ``cached`` (bool), ``key``, ``path``, timings and the loss curve ends.

    Raises:
        ConfigError: if the model's image size differs from the world's, or ``world`` was
            built from another configuration.
        KeyError: for an unknown model name.
    """
    model_cfg = _model_config(pretrain_cfg.model)
    _check_compatible(world_cfg, model_cfg, pretrain_cfg.model)
    _check_world(world, world_cfg)
    key = pretrain_key(world_cfg, pretrain_cfg)
    folder = cache_root(cache_dir) / "pretrain" / f"{pretrain_cfg.model}-{key}"
    weights, info_path = folder / "model.pt", folder / "info.json"
    model, tokenizer = _new_model(pretrain_cfg)
    work = folder.parent / f".work-{folder.name}"  # one per cache key: a rerun resumes it
    if weights.is_file() and info_path.is_file():
        return _load_cached(model, tokenizer, weights, info_path)
    with _work_lock(work) as lock:  # a concurrent run of the same key waits, then loads
        if weights.is_file() and info_path.is_file():
            return _load_cached(model, tokenizer, weights, info_path)
        threads = torch.get_num_threads()
        if pretrain_cfg.threads:
            torch.set_num_threads(pretrain_cfg.threads)
        try:
            t0 = time.perf_counter()
            world = world() if callable(world) else world
            _check_world(world, world_cfg)
            built_here = world is None
            world = build_world(world_cfg) if world is None else world
            t_world = time.perf_counter() - t0 if built_here else None
            facts = _train(model, world, tokenizer, pretrain_cfg, work)
            with atomic_path(folder / "history.jsonl") as tmp:
                shutil.copyfile(facts.pop("history_path"), tmp)
            with atomic_path(weights) as tmp:
                shutil.copyfile(facts.pop("model_path"), tmp)
        finally:
            torch.set_num_threads(threads)
        info = {
            "key": key, "path": str(folder), "model": pretrain_cfg.model,
            "model_config": model_cfg, "world": world_cfg.pretrain_key(),
            "pretrain": to_dict(pretrain_cfg), "world_s": t_world,
            "threads": pretrain_cfg.threads or threads, **facts,
        }  # fmt: skip
        write_json(info_path, info)
        shutil.rmtree(work, ignore_errors=True)
        lock.unlink(missing_ok=True)  # done: later runs load without locking
    return model.cpu().eval(), tokenizer, {**info, "cached": False}


@contextlib.contextmanager
def _work_lock(work: Path):
    """Hold an exclusive lock on ``<work>.lock`` (POSIX ``flock``; no lock elsewhere); yields
    the lock file's path. A run that fails leaves the file (and its work folder) in place."""
    path = work.parent / f"{work.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield path
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    """``python -m cmakit.engine.pretrain --profile cpu --out runs/pretrain``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(PRETRAIN_PRESETS))
    parser.add_argument(
        "--out", default=None, help="report folder (default runs/pretrain-<profile>)"
    )
    parser.add_argument("--cache-dir", default=None, help="pretrained-model cache folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    wcfg = world_config(args.profile)
    world = build_world(wcfg)
    t_world = time.perf_counter() - t0
    model, tokenizer, info = pretrain_clip(
        wcfg, pretrain_config(args.profile), cache_dir=args.cache_dir, world=world
    )
    out = Path(args.out or f"runs/pretrain-{args.profile}")
    plot_world_samples(world, out / "world_samples.png")
    timings = {
        "world_s": t_world,
        "pretrain_s": info["train_s"],  # of the run that filled the cache
        "pretrain_loaded_from_cache": info["cached"],
        "load_s": time.perf_counter() - t0 - t_world,
    }
    summary = zero_shot_report(
        model, tokenizer, world, out_dir=out, pretrain_info=info, timings=timings
    )
    log.info("zero-shot report: %s", json.dumps(summary["headline"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
