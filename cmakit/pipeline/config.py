"""The run configuration shared by every notebook, the runner and the command line.

A notebook's tagged ``parameters`` cell holds ``run_dir``, ``profile`` and an ``overrides``
dict of the fields that differ from the profile (plus the few knobs that notebook alone owns);
:func:`notebook_config` turns them into the frozen :class:`RunConfig` that the code reads. So
``papermill ... -p profile smoke`` gives the smoke run, and ``-p overrides '{"lam": 0.01}'``
changes one knob of it. :func:`resolve` merges a profile preset with any flat mapping of
:class:`RunParams` fields (the runner's ``--set``, the command line).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cmakit.common.constants import CONVENTIONS, TEST_PROMPT, TOWERS, TRAIN_PROMPT
from cmakit.common.strict_config import ConfigError, check_keys, from_dict, to_dict
from cmakit.data.wordnet import POOLS

Profile = Literal["smoke", "cpu", "paper"]
PROFILE_NAMES = ("smoke", "cpu", "paper")


@dataclass(frozen=True)
class RunConfig:
    """Every knob of one cmakit run, fully resolved (no ``None`` left where a value is needed).

    Attributes are grouped by stage; units are steps, pairs, or plain numbers as named.
    """

    run_dir: str  # run folder (relative: to the caller's directory, or the project in a notebook)
    profile: Profile  # preset of every other field: smoke | cpu | paper
    # where the data come from
    world: str  # embedded-world preset ("smoke" | "cpu"); "" on the paper path
    model: str  # open_clip architecture name
    pretrained: str  # "" = pretrain the tiny CLIP on the embedded world; else a tag or a file
    imagenet_root: str  # paper path: ImageNet-1k root (train/, val/)
    mos_root: str  # paper path: MOS OoD root (iNaturalist/, SUN/, Places/, Textures/)
    openood_root: str  # paper path: OpenOOD v1.5 root (benchmark_imglist/, images_*)
    # fine-tuning
    seeds: list[int]  # fine-tuning seeds (data order; the world's evaluation samples)
    lam: float  # CMA weight lambda for the "cma" model
    finetune_epochs: int  # passes over the ID training pairs
    finetune_max_steps: int  # 0 = no cap
    finetune_batch_size: int  # global batch (pairs)
    finetune_lr: float  # AdamW peak learning rate (cosine schedule to 0)
    finetune_warmup_steps: int  # linear warm-up steps
    finetune_towers: str  # towers fine-tuning moves: "both" (the paper) | "image" | "text"
    train_per_class: int  # embedded world: ID training images per class used (0 = all)
    weight_decay: float  # AdamW weight decay, on all parameters
    precision: str  # "fp32" | "bf16"
    train_prompt: str  # prompt of the fine-tuning pairs, one {} for the class name
    finetune_micro_batch_size: int  # most pairs one device encodes at once (0 = its whole share)
    grad_checkpointing: bool  # recompute activations in backward: less memory, ~1/3 more compute
    # evaluation
    test_prompt: str  # ID prompt at test time (scores, accuracy, mining), one {}
    neg_fraction: float  # share of nouns and of adjectives kept as negative labels
    neg_pool: str  # paper path: WordNet pool, "all" | "neglabel" | "csp" (the world: its lexicon)
    negative_labels: str  # "" = mine; else a .npy/.txt/.tsv of prompts used verbatim
    neglabel_temperature: float  # NegLabel's tau on cosines
    neglabel_groups: int  # groups of the grouped NegLabel score
    mcm_temperature: float  # MCM's softmax temperature T on cosines
    convention: str  # "id_positive" (paper, MOS) | "ood_positive" (OpenOOD v1.5)
    bootstrap: int  # bootstrap resamples for confidence intervals (0 = none)
    # lambda ablation
    ablation_lams: list[float]  # lambda grid of the ablation (0 = FLYP)
    ablation_seeds: int  # how many of `seeds` the ablation uses
    # machine
    device: str  # auto | cpu | cuda | cuda:N
    threads: int  # torch CPU threads (0 = torch's default)
    num_workers: int  # data-loader worker processes for image folders (paper path)
    cache_dir: str  # "" = the project's .cache/cmakit (or $CMAKIT_CACHE)

    def __post_init__(self) -> None:
        if self.profile not in PROFILE_NAMES:
            raise ConfigError(
                f"profile={self.profile!r} is not known; choose one of {list(PROFILE_NAMES)}."
            )
        if not self.seeds:
            raise ConfigError("seeds=[] is empty; give at least one fine-tuning seed, e.g. [0].")
        if not 0 <= self.lam <= 1:
            raise ConfigError(f"lam={self.lam!r} must be in [0, 1] (0 is FLYP; the paper: 0.001).")
        if not 0 < self.neg_fraction <= 1:
            raise ConfigError(f"neg_fraction={self.neg_fraction!r} must be in (0, 1].")
        if self.neg_pool not in POOLS:
            raise ConfigError(
                f"neg_pool={self.neg_pool!r} is not known; choose one of {list(POOLS)}."
            )
        if self.convention not in CONVENTIONS:
            raise ConfigError(
                f"convention={self.convention!r} is not known; choose 'id_positive' or 'ood_positive'."
            )
        if self.finetune_towers not in TOWERS:
            raise ConfigError(
                f"finetune_towers={self.finetune_towers!r}; choose one of {list(TOWERS)}."
            )
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision={self.precision!r} must be 'fp32' or 'bf16'.")
        if not 1 <= self.ablation_seeds <= len(self.seeds):
            raise ConfigError(
                f"ablation_seeds={self.ablation_seeds!r} must be between 1 and len(seeds)={len(self.seeds)}."
            )
        if not self.ablation_lams or any(not 0 <= x <= 1 for x in self.ablation_lams):
            raise ConfigError(
                f"ablation_lams={self.ablation_lams!r} must be a non-empty list of values in [0, 1]."
            )
        if self.train_per_class < 0 or (self.train_per_class and self.profile == "paper"):
            raise ConfigError(
                f"train_per_class={self.train_per_class!r} must be >= 0, and 0 on the paper "
                "profile (it subsamples the embedded world's training split)."
            )
        for name in ("finetune_epochs", "neglabel_groups"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be >= 1.")
        if self.finetune_batch_size < 2:
            raise ConfigError(
                f"finetune_batch_size={self.finetune_batch_size!r} must be >= 2 (contrastive loss)."
            )
        for name in ("finetune_lr", "mcm_temperature", "neglabel_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be > 0.")
        for name in ("finetune_max_steps", "finetune_warmup_steps", "weight_decay", "bootstrap",
                     "threads", "finetune_micro_batch_size", "num_workers"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be >= 0.")
        for name in ("train_prompt", "test_prompt"):
            _check_prompt(name, getattr(self, name))
        if not _DEVICE_RE.fullmatch(self.device):
            raise ConfigError(
                f"device={self.device!r} is not a device cmakit knows; use 'auto', 'cpu', "
                "'cuda', 'cuda:N' or 'mps'."
            )

    @property
    def embedded(self) -> bool:
        """True when the run uses the embedded world (no external weights or data)."""
        return self.profile != "paper"


_DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def _check_prompt(name: str, template: str) -> None:
    """A prompt template must hold exactly one ``{}`` for the class name, and nothing else to fill."""
    try:
        ok = template.format("\x00").count("\x00") == 1
    except (IndexError, KeyError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            f"{name}={template!r} must contain exactly one {{}} where the class name goes "
            "(and no other braces), e.g. 'a photo of a {}.'"
        )


_COMMON: dict[str, Any] = {
    "imagenet_root": "",
    "mos_root": "",
    "openood_root": "",
    "weight_decay": 0.1,
    "precision": "fp32",
    "finetune_towers": "both",
    "train_prompt": TRAIN_PROMPT,
    "test_prompt": TEST_PROMPT,
    "neg_fraction": 0.15,  # NegLabel: 15% of nouns and of adjectives
    "neg_pool": "all",  # every WordNet noun and adjective lemma
    "negative_labels": "",  # mine them
    "neglabel_temperature": 0.01,
    "neglabel_groups": 100,
    "mcm_temperature": 1.0,
    "convention": "id_positive",
    "bootstrap": 0,
    "device": "auto",
    "threads": 0,
    "cache_dir": "",
    "finetune_max_steps": 0,
    "finetune_micro_batch_size": 0,
    "grad_checkpointing": False,
    "num_workers": 0,  # the embedded world is in memory
    "train_per_class": 0,
}

#: Profile presets: every RunConfig field but run_dir/profile.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_COMMON,
        "world": "smoke",
        "model": "cmakit-micro",
        "pretrained": "",
        "neg_fraction": 0.5,  # the world's lexicon has ~110 candidates, not WordNet's 136k
        "seeds": [0],
        "lam": 0.1,
        "finetune_epochs": 8,  # 128 steps: FLYP lifts smoke ID accuracy from chance (25%) to 38%
        "finetune_batch_size": 32,
        "finetune_lr": 3e-3,
        "finetune_warmup_steps": 2,
        "neglabel_groups": 4,
        "ablation_lams": [0.0, 0.1],
        "ablation_seeds": 1,
    },
    "cpu": {
        **_COMMON,
        "world": "cpu",
        # the tiny ResNet: the tiny ViT (8-pixel patches) cannot see the world's markings
        # (zero-shot ID validation accuracy 38% vs 71%; docs/world_study.md, capacity)
        "model": "cmakit-tiny-rn",
        "neg_fraction": 0.5,  # the world's lexicon has ~110 candidates, not WordNet's 136k
        "pretrained": "",
        "seeds": [0, 1, 2],
        # lr, epochs and lam chosen on validation data only by cmakit.pipeline.selection
        # (rule and numbers: docs/world_study.md, docs/world_selection.json): on the cpu
        # world's zero-shot model the rule takes λ = 0.01 (best validation NegLabel AUROC of
        # the λ that keep ID accuracy; every one up to 0.1 is within 0.7 point of it)
        "lam": 1e-2,
        "finetune_epochs": 10,
        "finetune_batch_size": 128,
        "finetune_lr": 1e-3,
        "finetune_warmup_steps": 20,
        "neglabel_groups": 10,
        # one seed keeps the first run near 6 minutes on 2 cores (each fine-tuning costs
        # ~15 s; λ = 0 and the profile's λ are the headline's seed-0 models, reused);
        # docs/world_study.md has every λ with three seeds
        "ablation_lams": [0.0, 1e-2, 1e-1, 1.0],
        "ablation_seeds": 1,
    },
    "paper": {
        **_COMMON,
        "world": "",
        "model": "ViT-B-16",
        "pretrained": "",  # a local OpenAI ViT-B/16 file (or the tag "openai"); required
        "imagenet_root": "",  # default: $CMAKIT_IMAGENET
        "mos_root": "",  # default: $CMAKIT_MOS
        "openood_root": "",  # default: $CMAKIT_OPENOOD
        "seeds": [0],
        "lam": 0.001,
        "finetune_epochs": 10,
        "finetune_batch_size": 512,
        "finetune_lr": 1e-5,
        "finetune_warmup_steps": 500,
        "ablation_lams": [0.0, 1e-4, 1e-3, 1e-2],
        "ablation_seeds": 1,
        "neg_pool": "neglabel",  # NegLabel's own lexicographer files (~70k words)
        "num_workers": 8,
    },
}


def method_lam(cfg: RunConfig, method: str) -> float | None:
    """The CMA weight of a method: None for zero-shot, 0 for FLYP, ``cfg.lam`` for CMA."""
    lams = {"zero_shot": None, "flyp": 0.0, "cma": cfg.lam}
    if method not in lams:
        raise KeyError(f"Unknown method {method!r}; choose one of {list(lams)}.")
    return lams[method]


def model_lam(cfg: RunConfig, method: str, lam: float | None = None) -> float | None:
    """The CMA weight of a model: ``lam`` when given (an ablation point), else the method's."""
    return method_lam(cfg, method) if lam is None else float(lam)


def model_tag(weight: float | None, seed: int) -> str:
    """A model's name in file names: ``zero_shot-seed0`` or ``lam0.1-seed0``."""
    return f"zero_shot-seed{seed}" if weight is None else f"lam{weight:g}-seed{seed}"


_ENV_ROOTS = {
    "imagenet_root": "CMAKIT_IMAGENET",
    "mos_root": "CMAKIT_MOS",
    "openood_root": "CMAKIT_OPENOOD",
}


def _params_class() -> type:
    """Build :class:`RunParams`: the fields of RunConfig, all optional but run_dir/profile."""
    specs = []
    for f in dataclasses.fields(RunConfig):
        if f.name == "run_dir":
            specs.append((f.name, str, dataclasses.field(default="runs/cpu")))
        elif f.name == "profile":
            specs.append((f.name, str, dataclasses.field(default="cpu")))
        else:
            specs.append((f.name, f"{f.type} | None", dataclasses.field(default=None)))
    cls = dataclasses.make_dataclass("RunParams", specs, frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = (
        "Notebook parameters: RunConfig's fields, each None = the profile's value "
        "(run_dir and profile are always given)."
    )
    return cls


RunParams = _params_class()


def resolve(params: dict[str, Any] | None = None, **overrides: Any) -> RunConfig:
    """Merge a profile preset with explicit parameters into a :class:`RunConfig`.

    Args:
        params: Flat mapping of :class:`RunParams` fields (a papermill parameters cell, CLI
            flags); ``None`` values mean "the profile's value".
        **overrides: More parameters, applied after ``params``.

    Returns:
        The resolved, validated, frozen configuration. On the paper profile, empty data roots
        are filled from ``$CMAKIT_IMAGENET``, ``$CMAKIT_MOS`` and ``$CMAKIT_OPENOOD``.

    Raises:
        ConfigError: an unknown parameter (with the closest valid name), a wrong type or an
            impossible value.
    """
    given = {**(params or {}), **overrides}
    check_keys(RunParams, given)
    profile = given.get("profile") or "cpu"
    if profile not in PROFILES:
        raise ConfigError(f"profile={profile!r} is not known; choose one of {list(PROFILE_NAMES)}.")
    merged = {**PROFILES[profile], "run_dir": f"runs/{profile}", "profile": profile}
    merged.update({k: v for k, v in given.items() if v is not None})
    if profile == "paper":
        for key, env in _ENV_ROOTS.items():
            if not merged[key]:
                merged[key] = os.environ.get(env, "")
    return from_dict(RunConfig, merged)


def params_from_namespace(namespace: dict[str, Any]) -> dict[str, Any]:
    """Pick the :class:`RunParams` fields out of a notebook's global namespace."""
    return {f.name: namespace[f.name] for f in dataclasses.fields(RunParams) if f.name in namespace}


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """JSON-ready dict of a resolved configuration."""
    return to_dict(cfg)


def project_root() -> Path:
    """The folder above the package (a source checkout's root, where ``notebooks/`` is)."""
    return Path(__file__).resolve().parents[2]


def notebook_config(
    run_dir: str, profile: str, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """The configuration of a notebook's ``parameters`` cell: ``run_dir``, ``profile`` and an
    ``overrides`` dict of RunConfig fields that differ from the profile.

    A relative ``run_dir`` is taken relative to the project (not the kernel's working
    directory), so a notebook opened in JupyterLab from ``notebooks/`` finds ``runs/cpu``.

    Raises:
        ConfigError: an unknown field in ``overrides`` (with the closest valid name), a wrong
            type or an impossible value.
    """
    if isinstance(overrides, str):  # papermill's -p passes a dict as its JSON text
        import json

        try:
            overrides = json.loads(overrides)
        except json.JSONDecodeError as err:
            raise ConfigError(f"overrides={overrides!r} is not a JSON object: {err}") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"overrides={overrides!r} must be a dict of RunConfig fields.")
    overrides = dict(overrides)
    for key in ("run_dir", "profile"):
        if key in overrides:
            raise ConfigError(f"overrides[{key!r}]: give {key} as its own notebook parameter.")
    path = Path(run_dir)
    if not path.is_absolute():
        path = project_root() / path
    return resolve({**overrides, "run_dir": str(path), "profile": profile})


#: RunConfig fields that hold paths (``pretrained`` may instead be an open_clip tag).
PATH_FIELDS = ("run_dir", "pretrained", "imagenet_root", "mos_root", "openood_root", "cache_dir",
               "negative_labels")  # fmt: skip
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def with_absolute_paths(cfg: RunConfig, base: str | os.PathLike) -> RunConfig:
    """``cfg`` with every relative path made absolute against ``base`` (the caller's folder).

    Notebooks run in the project root, so a relative path must be fixed before any kernel
    starts. ``pretrained`` counts as a path when it names an existing file or looks like one
    (a ``/`` or a weights suffix); otherwise it is an open_clip tag and kept.
    """
    base = Path(base)
    changed = {}
    for name in PATH_FIELDS:
        value = getattr(cfg, name)
        if not value:
            continue
        path = Path(value).expanduser()
        if name == "pretrained" and not (
            (base / path).exists() or os.sep in value or "/" in value
            or value.endswith(_WEIGHT_SUFFIXES)
        ):  # fmt: skip
            continue
        if not path.is_absolute():
            path = base / path
        if str(path) != value:
            changed[name] = os.path.normpath(path)
    return dataclasses.replace(cfg, **changed) if changed else cfg


def profile_overrides(cfg: RunConfig) -> dict[str, Any]:
    """The fields of ``cfg`` that differ from its profile's preset (what a notebook is passed)."""
    preset = PROFILES[cfg.profile]
    values = config_to_dict(cfg)
    return {k: v for k, v in values.items() if k in preset and preset[k] != v}


def field_help() -> list[dict[str, Any]]:
    """Every RunConfig field with its meaning (the comment beside it in the class) and its
    value in each profile: what ``bash run_all.sh --help-config`` prints."""
    import inspect
    import re

    meaning = {}
    for line in inspect.getsource(RunConfig).splitlines():
        m = re.match(r"\s{4}(\w+): [^#]+#\s*(.*)$", line)
        if m:
            meaning[m.group(1)] = m.group(2).strip()
    rows = []
    for f in dataclasses.fields(RunConfig):
        values = {p: PROFILES[p].get(f.name, f"runs/{p}" if f.name == "run_dir" else p)
                  for p in PROFILE_NAMES}  # fmt: skip
        rows.append({"field": f.name, "type": str(f.type), "meaning": meaning.get(f.name, ""),
                     **values})  # fmt: skip
    return rows
