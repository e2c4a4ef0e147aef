"""Weight files: cmakit's final-weights format, and every foreign format cmakit reads.

Formats written by cmakit (``torch.save`` dicts, always written atomically):

- training checkpoint, ``{"format": "cmakit-train-checkpoint", "state_dict", "optimizer",
  "scheduler", "scaler", "rng", "progress", "config", "model_info"}`` — enough to resume exactly;
- final weights, ``{"format": "cmakit-model", "state_dict", "model_info", "config"}``.

Both keep the model under ``"state_dict"``, so open_clip's own ``pretrained=<file>`` reads them too.

Formats read by :func:`read_weights`: the two above; open_clip checkpoints ``{"state_dict": ...}``;
the official CMA release ``{"epoch", "model_state_dict", "optimizer_state_dict"}`` (DataParallel's
``module.`` prefix, OpenAI key names); OpenAI JIT archives and plain OpenAI state dicts;
``.safetensors`` files.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from cmakit.common.io import atomic_path

log = logging.getLogger(__name__)

TRAIN_FORMAT = "cmakit-train-checkpoint"
MODEL_FORMAT = "cmakit-model"
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


@dataclasses.dataclass
class Weights:
    """A state dict read from a file, plus what is known about where it came from.

    Attributes:
        state_dict: Parameter name -> tensor, ``module.`` prefix removed.
        source: One of ``"cmakit-train-checkpoint"``, ``"cmakit-model"``, ``"cma-official"``,
            ``"openai-jit"``, ``"openai"``, ``"open_clip"``, ``"safetensors"``, ``"state_dict"``.
        quick_gelu: True when the format implies OpenAI's QuickGELU activation, False when it
            implies GELU, None when the file does not say.
        model_info: Architecture facts stored by cmakit (``{"name", "quick_gelu"}``) or ``{}``.
    """

    state_dict: dict[str, torch.Tensor]
    source: str
    quick_gelu: bool | None
    model_info: dict[str, Any]


def _strip_module(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def _is_jit_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("constants.pkl") for name in zf.namelist())


def _looks_openai(sd: dict[str, torch.Tensor]) -> bool:
    """OpenAI releases keep OpenAI's extra keys or store the weights in float16."""
    if any(k in sd for k in _OPENAI_EXTRA_KEYS):
        return True
    probe = sd.get("visual.conv1.weight", sd.get("visual.proj"))
    return probe is not None and probe.dtype == torch.float16


def read_weights(path: str | os.PathLike) -> Weights:
    """Read a model state dict from any supported checkpoint format (see module docstring).

    Args:
        path: A weights file.

    Returns:
        :class:`Weights`; OpenAI's non-parameter keys (``input_resolution`` ...) are dropped.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file holds no recognisable state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path), device="cpu")
        return Weights(_strip_module(sd), "safetensors", True if _looks_openai(sd) else None, {})
    if _is_jit_archive(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            sd = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        for key in (*_OPENAI_EXTRA_KEYS, "attn_mask"):  # TorchScript keeps these as entries
            sd.pop(key, None)
        return Weights(_strip_module(sd), "openai-jit", True, {})
    return _unwrap(load_torch_file(path, what="weights file"), path)


def _describe_unreadable(path: Path) -> str:
    """What a file that ``torch.load`` refuses looks like: truncated archive, text, or other."""
    with open(path, "rb") as f:
        head = f.read(512)
    size = path.stat().st_size
    if not head:
        return "it is empty (0 bytes)"
    if head.startswith(b"PK"):
        return f"it is a zip archive of {size:,} bytes that cannot be read: truncated or corrupt"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c.isspace() for c in text):
        return f"it is a text file (starts with {text[:40]!r})"
    if head.startswith(b"\x80"):
        return "it is a pickle that cannot be read: truncated or corrupt"
    return f"it is a {size:,}-byte file in no format torch reads"


def load_torch_file(path: str | os.PathLike, *, what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that name the file.

    Args:
        path: A file written by ``torch.save``.
        what: What the caller expected, for the message ("weights file", "training checkpoint").

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if torch cannot read it; says what the file is instead (empty, text,
            truncated archive, other bytes) and what it is not.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what[0].upper() + what[1:]} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, IndexError...
        advice = (
            "It is a cached file that cmakit wrote: delete it and run again, and cmakit "
            "recomputes it." if _in_cache(path)
            else "Copy the file again or point to another one."
        )  # fmt: skip
        raise ValueError(
            f"{path} is not a readable PyTorch {what}: {_describe_unreadable(path)} "
            f"(torch.load raised {type(err).__name__}). {advice}"
        ) from err


def _in_cache(path: Path) -> bool:
    """Whether ``path`` lies in a folder cmakit writes and can recompute: the cache folder
    (``$CMAKIT_CACHE`` or the default one), or a folder that a cmakit cache tags as its own."""
    from cmakit.common.io import CACHE_TAG, cache_root

    path = path.resolve()
    if path.is_relative_to(cache_root().resolve()):
        return True
    return any((parent / CACHE_TAG).is_file() for parent in path.parents)


def _unwrap(obj: Any, path: Path) -> Weights:
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{path} does not hold a state dict (found {type(obj).__name__}).")
    fmt = obj.get("format")
    if fmt in (TRAIN_FORMAT, MODEL_FORMAT):
        info = dict(obj.get("model_info") or {})
        return Weights(_strip_module(obj["state_dict"]), fmt, info.get("quick_gelu"), info)
    if "model_state_dict" in obj:  # official CMA release: fine-tuned OpenAI ViT-B/16
        return Weights(_strip_module(obj["model_state_dict"]), "cma-official", True, {})
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return Weights(_strip_module(obj["state_dict"]), "open_clip", None, {})
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = ", ".join(list(map(str, obj))[:8])
        raise ValueError(
            f"{path} is a dict but not a state dict (keys: {keys}); expected tensors, or one of "
            "the keys 'state_dict' / 'model_state_dict'."
        )
    sd = _strip_module(obj)
    if _looks_openai(sd):
        for key in _OPENAI_EXTRA_KEYS:
            sd.pop(key, None)
        return Weights(sd, "openai", True, {})
    return Weights(sd, "state_dict", None, {})


def model_info(model: torch.nn.Module, name: str | None = None) -> dict[str, Any]:
    """Architecture facts worth storing next to weights: open_clip name and QuickGELU use."""
    from open_clip.transformer import QuickGELU

    quick = any(isinstance(m, QuickGELU) for m in model.modules())
    return {"name": name or getattr(model, "cmakit_name", None), "quick_gelu": quick}


def save_model(
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write final weights only (no optimizer state), atomically.

    Args:
        model: The model (a DDP wrapper is unwrapped).
        path: Destination file, conventionally ``model.pt``.
        name: open_clip architecture name, stored for :func:`cmakit.models.factory.load_clip`.
        config: The training config as a flat dict, stored for provenance.
    """
    model = getattr(model, "module", model)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": MODEL_FORMAT, "version": 1, "state_dict": sd}
    payload.update(model_info=model_info(model, name), config=config or {})
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load weights from any format :func:`read_weights` knows into ``model``, strictly.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: on missing, unexpected or wrongly shaped parameters (a few are listed).
    """
    load_state_dict_strict(getattr(model, "module", model), read_weights(path).state_dict, path)
    return model


def _few(keys: list[str], n: int = 5) -> str:
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_state_dict_strict(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: object = "state dict"
) -> None:
    """Copy ``state_dict`` into ``model``; every key must match in name and shape.

    A scalar/1-element ``logit_scale`` is reshaped to the model's shape (open_clip versions
    differ there); nothing else is adapted.

    Raises:
        ValueError: listing a few missing, unexpected and wrongly shaped keys, with advice.
    """
    sd = dict(state_dict)
    own = model.state_dict()
    if "logit_scale" in sd and "logit_scale" in own and sd["logit_scale"].numel() == 1:
        sd["logit_scale"] = sd["logit_scale"].reshape(own["logit_scale"].shape)
    problem = state_dict_mismatch(own, sd)
    if problem:
        raise ValueError(
            f"Weights from {source} do not fit this {type(model).__name__}: {problem}. "
            "Check the architecture name (e.g. 'ViT-B-16' for the paper's weights) and that "
            "the file is a CLIP checkpoint; weights are never loaded partially."
        )
    model.load_state_dict(sd, strict=True)


def state_dict_mismatch(expected: dict[str, Any], given: dict[str, Any]) -> str:
    """How ``given`` differs from ``expected`` in keys and shapes ("" when it fits).

    Args:
        expected: The model's own state dict (or any name -> object with ``.shape``).
        given: The state dict read from a file.

    Returns:
        A few missing, unexpected and wrongly shaped keys, with counts; a one-element
        ``logit_scale`` fits any one-element shape (open_clip versions differ there).
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))

    def fits(k: str) -> bool:
        a, b = tuple(given[k].shape), tuple(expected[k].shape)
        return a == b or (k == "logit_scale" and math.prod(a) == math.prod(b) == 1)

    shapes = sorted(
        f"{k} {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(given)
        if not fits(k)
    )
    parts = [f"{len(missing)} missing: {_few(missing)}" if missing else ""]
    parts.append(f"{len(unexpected)} unexpected: {_few(unexpected)}" if unexpected else "")
    parts.append(f"{len(shapes)} of another shape: {_few(shapes, 3)}" if shapes else "")
    return "; ".join(p for p in parts if p)
