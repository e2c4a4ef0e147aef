"""Prepare a notebook's process for a run: logging, torch threads, the run folder."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from cmakit.pipeline.config import RunConfig


class _NoRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


_NO_RANDOM_INIT_NOTICE = _NoRandomInitNotice()  # one object: setup() runs once per notebook

#: The sub-folders of a run folder.
RUN_FOLDERS = ("figures", "tables", "metrics", "models", "embeddings")


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
    for sub in RUN_FOLDERS:
        (run / sub).mkdir(parents=True, exist_ok=True)
    return run
