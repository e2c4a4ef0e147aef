"""Tiny open_clip architecture and synthetic pairs shared by the trainer/model tests."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import open_clip
import torch

TINY_NAME = "cmakit-test-tiny"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}
TOK_NAME = "cmakit-test-tok"  # open_clip's real tokenizer (49,408 ids, 16 tokens)
TOK_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
_registered = False


def register_tiny() -> str:
    """Register the tiny config with open_clip once per process; return its name."""
    global _registered
    if not _registered:
        folder = Path(tempfile.mkdtemp(prefix="cmakit-tiny-"))
        (folder / f"{TINY_NAME}.json").write_text(json.dumps(TINY_CONFIG))
        (folder / f"{TOK_NAME}.json").write_text(json.dumps(TOK_CONFIG))
        open_clip.add_model_config(folder)
        _registered = True
    return TINY_NAME


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """A random-init tiny CLIP (deterministic in ``seed``)."""
    register_tiny()
    torch.manual_seed(seed)
    return open_clip.create_model(TINY_NAME)


def tiny_pairs(n: int = 64, seed: int = 0) -> torch.utils.data.TensorDataset:
    """``n`` random (image [3,16,16], tokens [8]) pairs with an EOT token at the end."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 16, 16, generator=g)
    tokens = torch.randint(1, 60, (n, 8), generator=g)
    tokens[:, -1] = 63  # argmax pooling picks the highest id as end-of-text
    return torch.utils.data.TensorDataset(images, tokens)
