"""Training checkpoints: everything needed to resume a run exactly, written atomically.

A checkpoint is ``{"format": "cmakit-train-checkpoint", "version", "state_dict", "optimizer",
"scheduler", "scaler", "rng", "progress", "config", "model_info"}``; its ``"state_dict"`` also
makes it readable as weights (:func:`cmakit.models.weights.read_weights`).
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmakit.common.io import atomic_path
from cmakit.models.weights import TRAIN_FORMAT, load_torch_file

log = logging.getLogger(__name__)

_STEP_RE = re.compile(r"step_(\d+)\.pt$")


def capture_rng() -> dict[str, Any]:
    """The torch, CUDA, numpy and Python RNG states, in a ``weights_only``-loadable form."""
    # The legacy global numpy RNG is what user code and libraries draw from: save it as is.
    _, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)},
        "numpy_gauss": [int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    keys = state["numpy"]["keys"].numpy().astype(np.uint32)
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state(("MT19937", keys, state["numpy"]["pos"], int(has_gauss), cached))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write a training checkpoint atomically (``payload`` as built by the trainer)."""
    with atomic_path(path) as tmp:
        torch.save({"format": TRAIN_FORMAT, "version": 1, **payload}, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is unreadable (truncated, not a torch file) or is not a cmakit
            training checkpoint; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    obj = load_torch_file(path, what="training checkpoint")
    if not isinstance(obj, dict) or obj.get("format") != TRAIN_FORMAT:
        raise ValueError(f"{path} is not a cmakit training checkpoint; cannot resume from it.")
    return obj


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Training checkpoints ``step_XXXXXXXX.pt`` in ``folder``, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_RE.search(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(folder: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep`` = 0 keeps everything)."""
    if keep > 0:
        for old in list_checkpoints(folder)[:-keep]:
            old.unlink(missing_ok=True)
