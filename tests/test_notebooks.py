"""The committed notebooks: parameters mirror RunParams, no code definitions, no outputs."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest

from cmakit.pipeline.config import RunParams
from cmakit.pipeline.runner import NOTEBOOK_DIR, NOTEBOOKS, STANDALONE

PATHS = [NOTEBOOK_DIR / name for name, _ in NOTEBOOKS]


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def test_every_notebook_of_the_sequence_exists():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(p.name for p in PATHS)


#: Knobs a notebook owns besides run_dir, profile and overrides (none is a RunConfig field).
OWN_KNOBS = {
    "04_modality_gap": {"gap_shift_alphas"},
    "08_explorer": {"explorer_alphas", "explorer_points"},
}
#: Notebooks independent of any run folder: their own knobs only (the runner passes them none).
STANDALONE_KNOBS = {
    "00_primer": {"seed", "steps", "logit_scale", "toy_lam", "temperatures", "toy_lams", "sweep_seeds",
                  "noise"},
}  # fmt: skip


def _code(cell: dict) -> str:
    """A code cell as Python (IPython magics such as ``%matplotlib inline`` transformed)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(_source(cell))


def _parameters(path: Path) -> dict:
    tagged = [c for c in _cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    values = {}
    for node in ast.parse(_source(tagged[0])).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        values[node.targets[0].id] = ast.literal_eval(node.value)
    for line in _source(tagged[0]).splitlines():
        if "=" in line and not line.startswith(" "):
            assert "#" in line, f"parameter without a comment: {line!r}"
    return values


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_parameters_cell_is_run_dir_profile_overrides_and_own_knobs(path):
    values = _parameters(path)
    if path.stem in STANDALONE_KNOBS or path.name in STANDALONE:
        assert set(values) == STANDALONE_KNOBS[path.stem] and path.name in STANDALONE
        assert not set(values) & {f.name for f in dataclasses.fields(RunParams)}
        return
    assert list(values)[:3] == ["run_dir", "profile", "overrides"]
    assert values["run_dir"] == "runs/cpu" and values["profile"] == "cpu"
    assert values["overrides"] == {}
    own = set(values) - {"run_dir", "profile", "overrides"}
    assert own == OWN_KNOBS.get(path.stem, set())
    assert not own & {f.name for f in dataclasses.fields(RunParams)}, "a RunConfig field twice"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebooks_are_thin_and_stripped(path):
    cells = _cells(path)
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# ")
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs", []) == [] and cell.get("execution_count") is None
        tree = ast.parse(_code(cell))
        for node in ast.walk(tree):
            assert not isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
            )
        src = _source(cell)
        assert "sys.path" not in src and "!pip" not in src and "/work/" not in src


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_figures_show_as_images(path):
    """cmakit draws on plain Figures (no pyplot): only the inline backend shows them as images."""
    cells = [c for c in _cells(path) if c["cell_type"] == "code"]
    if any(re.search(r"\bfig\b|plot_", _source(c)) for c in cells):
        assert any("%matplotlib inline" in _source(c) for c in cells), "no %matplotlib inline"
