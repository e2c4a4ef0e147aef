"""Building open_clip models from architecture names, weight files and cmakit checkpoints.

:func:`load_clip` is the one entry point. Weights files are read by
:func:`cmakit.models.weights.read_weights` and loaded strictly (never partially). OpenAI's
releases were trained with QuickGELU; open_clip silently builds GELU models when given an
OpenAI file path, so the format is detected here and QuickGELU is switched on for it.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import open_clip
import torch

from cmakit.common.io import resolve_device
from cmakit.models.transforms import paper_transform
from cmakit.models.weights import (
    Weights,
    load_state_dict_strict,
    read_weights,
    state_dict_mismatch,
)

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
_REGISTERED: set[str] = set()


def register_model_configs(folder: str | os.PathLike = CONFIG_DIR) -> list[str]:
    """Make the architecture JSON files in ``folder`` known to open_clip (idempotent).

    Args:
        folder: A folder of open_clip model configs (``<name>.json``); default: cmakit's own
            tiny architectures in ``cmakit/models/configs/``.

    Returns:
        The architecture names found there.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        return []
    if str(folder) not in _REGISTERED:
        open_clip.add_model_config(folder)
        _REGISTERED.add(str(folder))
    return sorted(p.stem for p in folder.glob("*.json"))


def _check_name(name: str) -> None:
    if ":" in name or name in open_clip.list_models():
        return
    close = difflib.get_close_matches(name, open_clip.list_models(), n=5, cutoff=0.5)
    raise ValueError(
        f"Unknown open_clip architecture {name!r}. Close matches: {close or 'none'}; "
        f"cmakit's own: {register_model_configs()}. All names: open_clip.list_models()."
    )


def model_image_size(name: str) -> int:
    """Input side S of an open_clip architecture (``vision_cfg.image_size``), read from its
    JSON config without building the model (224 for ViT-B-16).

    Raises:
        ValueError: an unknown architecture (with close matches).
    """
    register_model_configs()
    _check_name(name)
    size = open_clip.get_model_config(name)["vision_cfg"]["image_size"]
    return size if isinstance(size, int) else int(size[0])


def _read_pretrained(name: str, pretrained: str | None) -> tuple[str | None, Weights | None]:
    """Split ``pretrained`` into an open_clip tag or a local weights file."""
    if pretrained is None:
        return None, None
    if os.path.isfile(pretrained):
        return None, read_weights(pretrained)
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained in tags:
        return pretrained, None
    raise FileNotFoundError(
        f"pretrained={pretrained!r} is neither a file nor an open_clip tag of {name!r} "
        f"(tags: {tags or 'none'})."
    )


def _decide_quick_gelu(name, explicit, tag, pre: Weights | None, ckpt: Weights | None):
    """QuickGELU on/off: explicit argument > checkpoint > weights file > tag > config."""
    if explicit is not None:
        return explicit
    for weights in (ckpt, pre):
        if weights is not None and weights.quick_gelu is not None:
            return weights.quick_gelu
    if tag is not None:
        return bool((open_clip.get_pretrained_cfg(name, tag) or {}).get("quick_gelu", False))
    return None  # the architecture config decides


def load_clip(
    name: str,
    *,
    pretrained: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "auto",
    quick_gelu: bool | None = None,
) -> tuple[torch.nn.Module, Callable, Callable]:
    """Build an open_clip model, load weights, and return it with its transforms and tokenizer.

    Args:
        name: open_clip architecture, e.g. "ViT-B-16", or one of cmakit's tiny configs.
        pretrained: Initial weights: an open_clip tag (e.g. "openai"; downloads) or a local file
            (OpenAI JIT archive or state dict, open_clip ``{"state_dict"}``, ``.safetensors``).
        checkpoint: Fine-tuned weights loaded on top: a cmakit checkpoint or ``model.pt``, or an
            official CMA release ``{epoch, model_state_dict, optimizer_state_dict}``.
        device: "auto", "cpu", "cuda", ...
        quick_gelu: Force the activation; None = infer it from the weights' format (OpenAI and
            official CMA weights -> QuickGELU; cmakit files store it).

    Returns:
        ``(model, preprocess, tokenizer)``: the model in eval mode on ``device``, the paper's
        test transform (PIL -> ``[3, S, S]``) at the model's image size, open_clip's tokenizer.

    Raises:
        ValueError: unknown architecture, or weights that do not fit it (keys are listed).
        FileNotFoundError: a weights file that does not exist.
    """
    register_model_configs()
    _check_name(name)
    tag, pre = _read_pretrained(name, pretrained)
    ckpt = read_weights(checkpoint) if checkpoint is not None else None
    quick = _decide_quick_gelu(name, quick_gelu, tag, pre, ckpt)
    kwargs = {"force_quick_gelu": True} if quick else {}
    if quick is False:
        kwargs["quick_gelu"] = False
    model = open_clip.create_model(name, pretrained=tag, device="cpu", **kwargs)
    for weights, source in ((pre, pretrained), (ckpt, checkpoint)):
        if weights is not None:
            load_state_dict_strict(model, weights.state_dict, source)
            log.info("loaded %s weights (%s) from %s", name, weights.source, source)
    model.cmakit_name = name
    model = model.to(resolve_device(device)).eval()
    preprocess = paper_transform(model.visual.image_size, train=False)
    return model, preprocess, open_clip.get_tokenizer(name)


def uses_quick_gelu(model: torch.nn.Module) -> bool:
    """True when the model's MLPs use OpenAI's QuickGELU activation."""
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in model.modules())


def check_weights_fit(name: str, path: str | os.PathLike) -> None:
    """Read a weights file and compare its keys and shapes with the architecture ``name``.

    The architecture is built without weights on the CPU (seconds for ViT-B-16), so a dry run
    catches a wrong or corrupt file before any notebook starts.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown architecture, an unreadable file (what it is instead), or weights
            of another architecture (a few missing / unexpected / reshaped keys are listed).
    """
    register_model_configs()
    _check_name(name)
    weights = read_weights(path)
    quiet = logging.getLogger()  # open_clip notes "No pretrained weights loaded" on the root
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(name, pretrained=None, device="cpu")
    finally:
        quiet.setLevel(level)
    problem = state_dict_mismatch(model.state_dict(), weights.state_dict)
    if problem:
        raise ValueError(
            f"pretrained={str(path)!r} ({weights.source} weights) does not fit model={name!r}: "
            f"{problem}. Give the weights of {name}, or set model to the file's architecture."
        )
