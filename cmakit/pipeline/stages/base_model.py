"""Stage 1, the zero-shot model: the tiny CLIP pretrained on the world, or the paper's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cmakit.common.io import read_jsonl
from cmakit.pipeline.config import RunConfig
from cmakit.pipeline.products import pretrained_key
from cmakit.pipeline.run_data import load_world, record_time

#: The process's pretrained tiny CLIPs: (cache key, cache folder) -> (model, tokenizer, info,
#: weights file's mtime). Every stage of a run asks for the same zero-shot model; it is read
#: from the cache once per process, and again only if its weights file changed. Callers copy
#: it before training (fine-tuning deep-copies it) and never change its weights in place.
_PRETRAINED: dict[tuple[str, str], tuple[Any, Any, dict[str, Any], int]] = {}


def base_model(cfg: RunConfig) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """The zero-shot model: the tiny CLIP pretrained on the world (cached), or the paper's weights.

    Returns:
        ``(model, tokenizer, info)``; ``info["weights"]`` is the file the weights came from.
    """
    if cfg.embedded:
        memo = (pretrained_key(cfg.world, cfg.model), str(cfg.cache_dir))
        if memo in _PRETRAINED:
            model, tokenizer, info, mtime = _PRETRAINED[memo]
            weights = Path(info["weights"])
            if weights.is_file() and weights.stat().st_mtime_ns == mtime:
                record_time(cfg, "pretrain_s", info["train_s"])  # this run's folder, too
                return model, tokenizer, info
        from cmakit.data.world import world_config
        from cmakit.engine.pretrain import pretrain_clip, pretrain_config

        pcfg = pretrain_config(cfg.world, model=cfg.model)
        model, tokenizer, info = pretrain_clip(
            world_config(cfg.world), pcfg, cache_dir=cfg.cache_dir or None,
            world=lambda: load_world(cfg),  # split seed 0's cached world, read only to pretrain
        )  # fmt: skip
        record_time(cfg, "pretrain_s", info["train_s"])  # as measured when it was trained
        info = {**info, "weights": str(Path(info["path"]) / "model.pt")}
        _PRETRAINED[memo] = (model, tokenizer, info, Path(info["weights"]).stat().st_mtime_ns)
        return model, tokenizer, info
    from cmakit.models.factory import load_clip

    model, _, tokenizer = load_clip(cfg.model, pretrained=cfg.pretrained or None, device="cpu")
    return model, tokenizer, {"weights": cfg.pretrained}


def pretrain_history(info: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-step history of the tiny CLIP's pretraining (kept beside the cached weights)."""
    return read_jsonl(Path(info["path"]) / "history.jsonl")
