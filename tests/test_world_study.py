"""The world study's code path on the smoke profile: tables, figures and the doc block."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "world_study.py"


def _module():
    spec = importlib.util.spec_from_file_location("world_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_world_study_smoke(tmp_path, capsys):
    study = _module()
    doc = tmp_path / "study.md"
    doc.write_text("# Study\n\n<!-- study:begin -->\nold\n<!-- study:end -->\n\nafter\n")
    argv = ["--profile", "smoke", "--run-dir", str(tmp_path / "run"), "--doc", str(doc),
            "--assets", str(tmp_path / "assets"), "--threads", "1",
            "--cache-dir", str(tmp_path / "cache"), "--factors", "data,lam,neg_fraction,neg_kind,id_task"]  # fmt: skip
    assert study.main(argv) == 0
    text = doc.read_text()
    assert "old" not in text and text.endswith("after\n") and "**Main table**" in text
    assert "**Headline**" in text and "| cma (λ = 0.1) |" in text
    for factor in ("data", "lam", "neg_kind", "id_task"):
        assert (tmp_path / "assets" / f"world_study_{factor}.png").stat().st_size > 0
        assert f"**{factor}**" in text
    assert "| neg_kind | nouns |" in text and "| 0.1 | cma |" in text
    assert "| id_task | stripes+dots |" in text
    assert "OoD concepts named by a negative" in text
    assert (tmp_path / "run" / "world_study.json").is_file()
    assert "Main table" not in capsys.readouterr().err


def test_unknown_factor_is_refused(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        _module().main(["--profile", "smoke", "--factors", "lr,widht", "--run-dir", str(tmp_path)])
    assert "unknown factors ['widht']" in capsys.readouterr().err
