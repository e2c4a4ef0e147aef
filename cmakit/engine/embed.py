"""Image and text embeddings, and a cache keyed by exactly what changes them.

:func:`encode_images` and :func:`encode_texts` return L2-normalised ``float32`` numpy arrays.
:class:`EmbeddingCache` stores them as ``.npz`` files named by a fingerprint of the model
weights, the data set identity, the preprocessing and the prompt set; a second call only loads.
Under ``torchrun`` each rank encodes a contiguous shard and rank 0 writes the merged array.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from cmakit.common.io import atomic_path, fingerprint, resolve_device
from cmakit.common.progress import Meter, bar
from cmakit.engine import distributed as dist_util
from cmakit.engine.batching import collate_pairs

log = logging.getLogger(__name__)


class Encoded(tuple):
    """``(embeddings [N, D] float32, labels [N] int64)``; ``.bad_paths`` lists skipped images."""

    def __new__(cls, embeddings: np.ndarray, labels: np.ndarray, bad_paths: Sequence[str] = ()):
        obj = super().__new__(cls, (embeddings, labels))
        obj.bad_paths = list(bad_paths)
        return obj

    @property
    def embeddings(self) -> np.ndarray:
        return self[0]

    @property
    def labels(self) -> np.ndarray:
        return self[1]


def _batches(data, batch_size: int, num_workers: int, device: str) -> Iterable:
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, TensorDataset):
        x, y = data.tensors[:2]
        return (
            (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)
        )
    return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_pairs, pin_memory=device.startswith("cuda"))  # fmt: skip


def _progress(iterable, total: int | None, desc: str, enabled: bool):
    """``iterable`` behind rank 0's bar (:func:`cmakit.common.progress.bar`), or as it is."""
    shown = bar(iterable, total=total, desc=desc, unit="batch",
                enabled=enabled and dist_util.get_rank() == 0)  # fmt: skip
    return iterable if shown is None else shown


def _meter(desc: str, total: int, unit: str) -> Meter | None:
    """The relayed one-line progress of rank 0 (:mod:`cmakit.common.progress`)."""
    return Meter(desc, total, unit) if dist_util.get_rank() == 0 else None


@torch.no_grad()
def encode_images(
    model: torch.nn.Module,
    data: Dataset | DataLoader,
    *,
    batch_size: int = 256,
    device: str = "auto",
    num_workers: int = 4,
    progress: bool = True,
    desc: str = "images",
) -> Encoded:
    """Encode every image of ``data`` with ``model.encode_image(normalize=True)``.

    Args:
        model: open_clip model (moved to ``device``, put in eval mode).
        data: Data set of ``(image [3, H, W], label)`` items (or :class:`BadSample`), a
            ``TensorDataset(images, labels)``, or a DataLoader yielding such batches.
        batch_size: Images per forward pass.
        device: "auto", "cpu", "cuda", ...
        num_workers: DataLoader workers (when ``data`` is a data set).
        progress: Show a tqdm bar.
        desc: What the relayed progress line calls this pass (images/s, ETA).

    Returns:
        :class:`Encoded` ``(emb [N, D] float32, labels [N] int64)`` in data order, unreadable
        images left out; their paths are in ``.bad_paths`` and logged as a warning.
    """
    device = resolve_device(device)
    model = model.to(device).eval()
    total = len(data) if isinstance(data, DataLoader) else -(-len(data) // batch_size)
    embs, labels, bad = [], [], []
    n_items = len(data.dataset) if isinstance(data, DataLoader) else len(data)
    meter = _meter(desc, n_items, "images")
    for batch in _progress(
        _batches(data, batch_size, num_workers, device), total, "images", progress
    ):
        images, ys = batch[0], batch[1]
        skipped = batch[2] if len(batch) > 2 else []
        bad += [b.path for b in skipped]
        if images.shape[0]:
            emb = model.encode_image(images.to(device, non_blocking=True), normalize=True)
            embs.append(emb.float().cpu())
            labels.append(torch.as_tensor(ys).long())
        if meter:
            meter.update(images.shape[0] + len(skipped))
    if meter:
        meter.close()
    if bad:
        log.warning("Skipped %d unreadable images, e.g. %s", len(bad), bad[:5])
    if not embs:
        name = getattr(data, "name", None) or getattr(getattr(data, "dataset", None), "name", "")
        where = f" in image set {name!r}" if name else ""
        detail = (f"all {len(bad)} images are unreadable, e.g. {bad[:3]}" if bad
                  else "it holds no images")  # fmt: skip
        raise ValueError(f"No readable image to encode{where}: {detail}.")
    return Encoded(torch.cat(embs).numpy(), torch.cat(labels).numpy(), bad)


@torch.no_grad()
def encode_texts(
    model: torch.nn.Module,
    tokenizer: Callable,
    texts: Sequence[str],
    *,
    batch_size: int = 1024,
    device: str = "auto",
    progress: bool = True,
    desc: str = "texts",
) -> np.ndarray:
    """Encode ``texts`` with ``model.encode_text(normalize=True)``.

    ``desc`` names this pass in the relayed progress line (prompts/s, ETA).

    Returns:
        ``[M, D]`` float32, row m = ``texts[m]``, L2-normalised.
    """
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError("texts must be a non-empty list of strings.")
    device = resolve_device(device)
    model = model.to(device).eval()
    starts = range(0, len(texts), batch_size)
    out, meter = [], _meter(desc, len(texts), "prompts")
    for i in _progress(starts, len(starts), "texts", progress and len(starts) > 1):
        tokens = tokenizer(list(texts[i : i + batch_size])).to(device)
        out.append(model.encode_text(tokens, normalize=True).float().cpu())
        if meter:
            meter.update(len(tokens))
    if meter:
        meter.close()
    return torch.cat(out).numpy()


def model_digest(model: torch.nn.Module) -> str:
    """A fingerprint of the model's weights (architecture names, shapes and values)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in getattr(model, "module", model).state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class EmbeddingCache:
    """Embeddings stored as ``<root>/<kind>-<fingerprint>.npz``, written atomically.

    The fingerprint covers exactly what changes the array: ``model_digest(model)``, the data
    set identity (name and size, or the prompt list), the preprocessing, and ``extra``.

    Args:
        root: Cache folder (created on first write).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.last_path: Path | None = None  # file of the latest images()/texts() call

    def path(self, kind: str, key: dict[str, Any]) -> Path:
        return self.root / f"{kind}-{fingerprint(key)}.npz"

    def _load_or(self, path: Path, compute: Callable[[], dict[str, np.ndarray]], key: dict) -> dict:
        self.last_path = path
        if path.is_file():
            log.info("cache hit %s", path.name)
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files if k != "key"}
        arrays = compute()
        if dist_util.get_rank() == 0:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, key=np.asarray(repr(key)), **arrays)
        dist_util.barrier()
        return arrays

    def images(self, model, data: Dataset, *, preprocessing: str, batch_size: int = 256,
               device: str = "auto", num_workers: int = 4, progress: bool = True) -> Encoded:  # fmt: skip
        """Cached :func:`encode_images`; under torchrun each rank encodes one shard.

        Args:
            preprocessing: Description of the image transform (part of the cache key).
        """
        name = getattr(data, "name", type(data).__name__)
        key = {"model": model_digest(model), "data": name, "n": len(data), "pre": preprocessing}
        if hasattr(data, "samples"):  # file lists: the exact paths and labels
            key["samples"] = fingerprint([list(map(str, s)) for s in data.samples])

        def compute() -> dict[str, np.ndarray]:
            world, rank = dist_util.get_world_size(), dist_util.get_rank()
            bounds = np.linspace(0, len(data), world + 1).astype(int)
            shard = data if world == 1 else Subset(data, range(bounds[rank], bounds[rank + 1]))
            enc = encode_images(model, shard, batch_size=batch_size, device=device,
                                num_workers=num_workers, progress=progress,
                                desc=f"embedding {name}")  # fmt: skip
            parts = _all_gather_objects((enc.embeddings, enc.labels, enc.bad_paths))
            return {
                "embeddings": np.concatenate([p[0] for p in parts]),
                "labels": np.concatenate([p[1] for p in parts]),
                "bad_paths": np.asarray(sum((p[2] for p in parts), []), dtype=str),
            }

        out = self._load_or(self.path("images", key), compute, key)
        return Encoded(out["embeddings"], out["labels"], out["bad_paths"].tolist())

    def texts(self, model, tokenizer, texts: Sequence[str], *, batch_size: int = 1024,
              device: str = "auto", progress: bool = True, desc: str = "texts") -> np.ndarray:  # fmt: skip
        """Cached :func:`encode_texts`; the key holds the full prompt list (not ``desc``)."""
        key = {"model": model_digest(model), "texts": fingerprint(list(texts)), "n": len(texts)}

        def compute() -> dict[str, np.ndarray]:
            emb = encode_texts(model, tokenizer, texts, batch_size=batch_size, device=device,
                               progress=progress, desc=desc)  # fmt: skip
            return {"embeddings": emb}

        return self._load_or(self.path("texts", key), compute, key)["embeddings"]


def _all_gather_objects(obj: Any) -> list[Any]:
    if not dist_util.is_distributed():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
