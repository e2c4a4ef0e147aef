"""Strict configuration: unknown keys, wrong types and profile resolution."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from cmakit.common.strict_config import ConfigError, defaults, from_dict, to_dict
from cmakit.pipeline.config import PROFILES, RunConfig, RunParams, resolve


@dataclasses.dataclass(frozen=True)
class _Toy:
    lr: float = 1e-3
    steps: int = 10
    name: str = "a"
    mode: Literal["x", "y"] = "x"
    lams: tuple[float, ...] = (0.0,)
    cap: int | None = None


def test_from_dict_converts_and_keeps_defaults():
    cfg = from_dict(_Toy, {"lr": 1, "lams": [0, 0.5]}, steps=3)
    assert cfg == _Toy(lr=1.0, steps=3, lams=(0.0, 0.5))
    assert isinstance(cfg.lr, float)
    assert to_dict(cfg)["lams"] == [0.0, 0.5]
    assert defaults(_Toy)["steps"] == 10


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"stepz": 1}, "Unknown parameter 'stepz'.*Did you mean 'steps'"),
        ({"steps": 1.5}, "steps=1.5 must be an integer"),
        ({"steps": True}, "steps=True must be an integer"),
        ({"lr": "fast"}, "lr='fast' must be a number"),
        ({"mode": "z"}, r"mode='z' is not allowed; choose one of \['x', 'y'\]"),
        ({"lams": 0.1}, "lams=0.1 must be a list"),
        ({"cap": "none"}, "cap='none' must be an integer"),
    ],
)
def test_from_dict_rejects_bad_values(params, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(_Toy, params)


def test_run_params_mirror_run_config():
    run_fields = [f.name for f in dataclasses.fields(RunConfig)]
    assert [f.name for f in dataclasses.fields(RunParams)] == run_fields
    for profile, preset in PROFILES.items():
        assert set(preset) == set(run_fields) - {"run_dir", "profile"}, profile


def test_resolve_takes_profile_then_explicit_values():
    smoke = resolve({"profile": "smoke"})
    assert smoke.world == "smoke" and smoke.run_dir == "runs/smoke"
    changed = resolve({"profile": "smoke", "lam": 0.5, "seeds": [3, 4], "world": None})
    assert changed.lam == 0.5 and changed.seeds == [3, 4] and changed.world == "smoke"
    assert resolve().profile == "cpu"
    assert smoke.neg_pool == "all" and smoke.negative_labels == ""
    assert resolve({"profile": "paper"}).neg_pool == "neglabel"  # NegLabel's own files


def test_resolve_paper_roots_from_environment(monkeypatch):
    monkeypatch.setenv("CMAKIT_IMAGENET", "/data/imagenet")
    assert resolve({"profile": "paper"}).imagenet_root == "/data/imagenet"
    assert resolve({"profile": "paper", "imagenet_root": "/x"}).imagenet_root == "/x"


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"profile": "gpu"}, "profile='gpu' is not known"),
        ({"lamda": 0.1}, "Did you mean 'lam'"),
        ({"seeds": []}, "seeds=\\[\\] is empty"),
        ({"lam": -1.0}, "lam=-1.0 must be in \\[0, 1\\]"),
        ({"neg_fraction": 0.0}, "neg_fraction=0.0 must be in"),
        ({"convention": "ood"}, "convention='ood' is not known"),
        ({"neg_pool": "wordnet"}, "neg_pool='wordnet' is not known; choose one of"),
        ({"seeds": [0], "ablation_seeds": 2}, "ablation_seeds=2 must be between 1 and len"),
    ],
)
def test_resolve_rejects_bad_parameters(params, match):
    with pytest.raises(ConfigError, match=match):
        resolve(params)
