"""What each stage product of a run depends on, and the fingerprint it is stored under.

Every product of a run folder (negative labels, each fine-tuned model, each embeddings bundle,
each per-seed metrics record, each ablation point) is stored under a fingerprint of exactly the
configuration fields and upstream products that determine it (:data:`STAGE_FIELDS`). Changing
a parameter therefore changes the fingerprints of the products it affects, and only those: they
are recomputed, everything else is reused. A run folder can hold the products of several
configurations side by side; ``config.json``, ``summary.json``, the tables and the figures
always describe the configuration of the latest run, and the summary lists the fingerprints it
was built from.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cmakit.common.io import file_digest, fingerprint
from cmakit.pipeline.config import RunConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

#: RunConfig fields read by each stage (besides its upstream products).
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    # where ID/OoD data come from; the seed is added per product
    "data": ("profile", "world", "imagenet_root", "mos_root", "openood_root"),
    "base_model": ("world", "model", "pretrained"),
    "negatives": ("test_prompt", "neg_fraction", "neg_pool", "negative_labels"),
    "csp_negatives": ("test_prompt", "neg_fraction"),
    "finetune": (
        "finetune_epochs",
        "finetune_max_steps",
        "finetune_batch_size",
        "finetune_lr",
        "finetune_warmup_steps",
        "finetune_towers",
        "train_per_class",
        "weight_decay",
        "precision",
        "train_prompt",
    ),  # fmt: skip
    "embed": ("test_prompt",),
    "metrics": (
        "mcm_temperature",
        "neglabel_temperature",
        "neglabel_groups",
        "convention",
        "bootstrap",
    ),  # fmt: skip
}


#: RunConfig fields that choose which products a run uses, rather than change one.
SELECTING_FIELDS: dict[str, str] = {
    "lam": "the CMA model (fine-tuned at this λ)",
    "seeds": "the seeds fine-tuned and evaluated",
    "ablation_lams": "the ablation points",
    "ablation_seeds": "the ablation points",
}
#: Fields that change no number (where and how fast a run computes). Micro-batches keep the
#: loss of the whole global batch (feature cache), and checkpointing recomputes the same values.
NEUTRAL_FIELDS: tuple[str, ...] = (
    "device", "threads", "cache_dir", "run_dir", "num_workers", "finetune_micro_batch_size",
    "grad_checkpointing",
)  # fmt: skip


def affected_by(field: str) -> str:
    """What changing ``field`` recomputes or selects, in words (for the runner's log)."""
    stages = [s for s, fields in STAGE_FIELDS.items() if field in fields]
    if stages:
        return "recomputes " + ", ".join(stages) + " and everything downstream"
    if field in SELECTING_FIELDS:
        return "selects " + SELECTING_FIELDS[field]
    return "changes no product"


def _fields(cfg: RunConfig, stage: str) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in STAGE_FIELDS[stage]}


def _weights_identity(path: str) -> Any:
    """A weights file by path, size and modification time (a tag stays a tag)."""
    if path and os.path.isfile(path):
        st = os.stat(path)
        return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return path


@functools.cache
def pretrained_key(world: str, model: str) -> str:
    """The cache key of the tiny CLIP pretrained on world preset ``world`` (memoised: presets
    are constants of the code, so a stage asks for the key instead of rebuilding both configs)."""
    from cmakit.data.world import world_config
    from cmakit.engine.pretrain import pretrain_config, pretrain_key

    return pretrain_key(world_config(world), pretrain_config(world, model=model))


@functools.cache
def world_key(world: str, split_seed: int) -> dict[str, Any]:
    """The cache key of world preset ``world`` with its samples drawn by ``split_seed``
    (memoised, as :func:`pretrained_key`; callers only read it)."""
    from cmakit.data.world import world_config

    return world_config(world, split_seed=split_seed).cache_key()


def base_model_key(cfg: RunConfig) -> str:
    """The zero-shot model: the pretrained tiny CLIP's cache key, or the paper's weights file."""
    if cfg.embedded:
        return pretrained_key(cfg.world, cfg.model)
    return fingerprint("base", cfg.model, _weights_identity(cfg.pretrained))


def data_key(cfg: RunConfig, seed: int) -> str:
    """The benchmark of ``seed`` (the world's samples are drawn with it; paper data are fixed)."""
    fields = _fields(cfg, "data")
    if cfg.embedded:
        return fingerprint("data", fields, world_key(cfg.world, seed))
    return fingerprint("data", fields)


def negatives_key(cfg: RunConfig) -> str:
    """Negative labels: mined once with the zero-shot text tower over the run's candidates, or
    the prompts of the file ``cfg.negative_labels`` (keyed by its content, not its path)."""
    if cfg.negative_labels:
        if not os.path.isfile(cfg.negative_labels):
            raise FileNotFoundError(
                f"negative_labels={cfg.negative_labels!r} is not a file; give the authors' "
                "neg_label_10000.npy (or a .txt/.tsv of prompts), or '' to mine them."
            )
        return fingerprint("negatives-file", file_digest(cfg.negative_labels))
    return fingerprint("negatives", base_model_key(cfg), data_key(cfg, cfg.seeds[0]),
                       _fields(cfg, "negatives"))  # fmt: skip


def csp_negatives_key(cfg: RunConfig) -> str:
    """CSP's negative labels: mined like NegLabel's, over the conjugated pool."""
    return fingerprint("csp_negatives", base_model_key(cfg), data_key(cfg, cfg.seeds[0]),
                       _fields(cfg, "csp_negatives"))  # fmt: skip


def model_key(cfg: RunConfig, lam: float | None, seed: int) -> str:
    """A model: zero-shot (``lam`` None) or fine-tuned from it with CMA weight ``lam``."""
    if lam is None:
        return base_model_key(cfg)
    return fingerprint("finetune", base_model_key(cfg), data_key(cfg, seed),
                       _fields(cfg, "finetune"), float(lam), seed)  # fmt: skip


def embeddings_key(cfg: RunConfig, lam: float | None, seed: int) -> str:
    """A model's embeddings of the seed's benchmark, its ID prompts and the negative labels."""
    return fingerprint("embed", model_key(cfg, lam, seed), data_key(cfg, seed), negatives_key(cfg),
                       csp_negatives_key(cfg), _fields(cfg, "embed"))  # fmt: skip


def metrics_key(cfg: RunConfig, lam: float | None, seed: int) -> str:
    """The per-seed record of a model: its embeddings scored with the run's settings."""
    return fingerprint("metrics", embeddings_key(cfg, lam, seed), _fields(cfg, "metrics"))


# ---------------------------------------------------------------- reuse, with a load check
#: The product files of a run folder, by suffix, and how each is checked before it is reused.
PRODUCT_SUFFIXES = (".npz", ".pt", ".json", ".tsv")
#: Sub-folders of a run folder that hold products (the tables and figures are documents).
PRODUCT_FOLDERS = ("models", "embeddings", "metrics", "negatives")


def reuse(path: str | os.PathLike, load: Callable[[Path], T]) -> T | None:
    """The product at ``path`` as ``load`` reads it; None when there is none, or when it is
    damaged (truncated, corrupt): then it is removed, with a warning naming it, so that the
    caller recomputes it. A product that cannot be read for lack of permission is an error."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return load(path)
    except PermissionError:
        raise
    except (OSError, EOFError, KeyError, ValueError, RuntimeError, zipfile.BadZipFile) as err:
        discard(path, f"{type(err).__name__}: {str(err)[:200]}")
        return None


def discard(path: Path, why: str) -> None:
    """Remove a damaged product with a warning that names it and says it will be recomputed."""
    log.warning("damaged product %s (%s): removed; it is recomputed", path, why)
    path.unlink(missing_ok=True)


def damage(path: Path) -> str | None:
    """Why the product file ``path`` cannot be reused, or None when it reads.

    A fast load check that needs no record of the file: ``.npz`` and ``.pt`` files are zip
    archives whose every member's CRC is verified; ``.json`` files must parse; ``.tsv`` files
    must be UTF-8 text. An empty file is always damaged.
    """
    try:
        if path.stat().st_size == 0:
            return "empty file"
        if path.suffix in (".npz", ".pt"):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            return None if bad is None else f"member {bad} fails its checksum"
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".tsv":
            path.read_text(encoding="utf-8")
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        if isinstance(err, PermissionError):
            raise
        return f"{type(err).__name__}: {str(err)[:200]}"
    return None


def damaged_products(run_dir: str | os.PathLike) -> list[tuple[Path, str]]:
    """Every product file of a run folder that fails :func:`damage`, with the reason."""
    found = []
    for folder in PRODUCT_FOLDERS:
        for path in sorted((Path(run_dir) / folder).rglob("*")):
            if path.suffix in PRODUCT_SUFFIXES and path.is_file():
                why = damage(path)
                if why is not None:
                    found.append((path, why))
    return found
