"""Tiny open_clip architecture and synthetic pairs shared by the trainer/model tests."""

from __future__ import annotations

import json
import os
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
        # One fixed folder per user, rewritten atomically when a config changes: open_clip
        # re-reads it on every later registration, so it must outlive the process's tests, and
        # a folder per process would pile up in the temp directory.
        folder = Path(tempfile.gettempdir()) / f"cmakit-test-configs-{os.getuid()}"
        folder.mkdir(exist_ok=True)
        for name, config in ((TINY_NAME, TINY_CONFIG), (TOK_NAME, TOK_CONFIG)):
            path, text = folder / f"{name}.json", json.dumps(config)
            if not path.is_file() or path.read_text() != text:
                tmp = folder / f".{name}.{os.getpid()}.tmp"
                tmp.write_text(text)
                tmp.replace(path)
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


class AugmentedPairs(torch.utils.data.Dataset):
    """Map-style pairs whose images get a random resized crop and flip (torch's global RNG),
    as the paper's train transform does: [3, 24, 24] -> [3, 16, 16]."""

    def __init__(self, n: int = 64, seed: int = 0) -> None:
        import torchvision.transforms as T

        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, 24, 24, generator=g)
        self.tokens = torch.randint(1, 60, (n, 8), generator=g)
        self.tokens[:, -1] = 63
        self.crop = T.RandomResizedCrop(16, scale=(0.5, 1.0), antialias=True)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = self.crop(self.images[i])
        return (image.flip(-1) if torch.rand(()) < 0.5 else image), self.tokens[i]


def first_step_gradients(data, params: dict) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Loss terms and ``dL/dθ`` (all ranks reduced) of the trainer's first optimizer step on
    ``tiny_model()``, in this process's world (one process, or a torchrun worker)."""
    from cmakit.engine import trainer
    from cmakit.engine.batching import iter_micro_batches
    from cmakit.engine.distributed import init_distributed

    cfg = trainer.TrainConfig(**params)
    info = init_distributed("cpu")
    plan = trainer._plan(data, cfg, info)
    model = tiny_model()
    net = torch.nn.parallel.DistributedDataParallel(model) if info.world_size > 1 else model
    stepper = trainer._Stepper(net, model, cfg, "cpu", 1, plan.grad_accum_steps)
    it = iter_micro_batches(data, plan, 0)
    batches = [next(it)[:2] for _ in range(plan.grad_accum_steps)]
    terms = stepper.backward(batches)
    return terms, {name: p.grad.clone() for name, p in model.named_parameters()}


def weight_diff(name: str, a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b| between two trained weights, leaving out attention key biases.

    Softmax ignores a shift shared by all keys, so the key bias has an identically zero
    gradient; Adam divides its round-off noise by sqrt(v) + eps and turns it into ±lr steps
    that differ between any two summation orders. Query and value biases are compared.
    """
    if name.endswith("in_proj_bias"):
        w = a.shape[0] // 3
        a, b = torch.cat([a[:w], a[2 * w :]]), torch.cat([b[:w], b[2 * w :]])
    return (a - b).abs().max().item()
