"""The import rules of docs/architecture.md: each part imports only the parts below it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cmakit"

#: part -> the parts it may import (besides itself). Mirrors docs/architecture.md.
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "core": {"common"},
    "models": {"common", "core"},
    "data": {"common", "core", "models"},  # data sets default to the models' preprocessing
    "engine": {"common", "core", "models", "data"},
    "report": {"common", "core"},
    "pipeline": {"common", "core", "models", "data", "engine", "report"},
    "top": {"common", "core", "models", "data", "engine", "report", "pipeline"},
}


def _part(module: str) -> str:
    """``cmakit.core.losses`` -> ``core``; top-level modules (cli, __init__) -> ``top``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else "top"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] + ["__init__"]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every ``cmakit`` module imported anywhere in the file (function-local imports too)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("cmakit")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cmakit"):
            if node.module == "cmakit":  # `from cmakit import x`: x is a module or an export
                found += [(node.lineno, f"cmakit.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def _violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mine = _part(_module_name(path))
        for line, target in _imports(path):
            theirs = _part(target)
            if theirs == "top" and target.count(".") == 1 and target.split(".")[1] in ALLOWED:
                theirs = target.split(".")[1]
            if theirs != mine and theirs not in ALLOWED[mine]:
                bad.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {mine} imports {target} ({theirs})"
                )
    return bad


def _module_files() -> dict[str, Path]:
    """Module name -> file, for every module of the package (``pkg`` for ``pkg/__init__.py``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path).removesuffix(".__init__")
        out[name] = path
    return out


def _edges(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (function-local imports too);
    ``from pkg import mod`` counts as an import of ``pkg.mod`` when that is a module."""
    edges: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t for t in subs if t in files] or [node.module]
            for target in targets:
                if target in files and target != name and target != "cmakit":
                    edges[name].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_any_two_modules():
    """Imports run one way inside every part too, function-local imports included."""
    cycles = _cycles(_edges(_module_files()))
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_checker_catches_a_function_local_cycle(tmp_path, monkeypatch):
    fake = tmp_path / "cmakit"
    (fake / "pipeline").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "pipeline" / "__init__.py").write_text("")
    (fake / "pipeline" / "a.py").write_text("from cmakit.pipeline import b\n")
    (fake / "pipeline" / "b.py").write_text("def f():\n    from cmakit.pipeline.a import g\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _cycles(_edges(_module_files())) == [["cmakit.pipeline.a", "cmakit.pipeline.b"]]


def test_no_two_modules_share_a_file_name_unless_their_folder_says_which():
    """A file name names one job; ``config.py`` may repeat only as the configuration of a part
    (``pipeline/config.py``: the run's, ``data/world/config.py``: the world's)."""
    allowed = {"__init__", "config"}
    seen: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        seen.setdefault(path.stem, []).append(str(path.relative_to(PACKAGE)))
    shared = {stem: paths for stem, paths in seen.items() if len(paths) > 1 and stem not in allowed}
    assert not shared, f"modules sharing a file name: {shared}"


def test_architecture_doc_lists_every_module():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.stem != "__init__"
        and f"`{path.stem}`" not in doc
        and f"`{path.relative_to(PACKAGE)}`" not in doc
    ]
    assert not missing, f"docs/architecture.md does not list: {missing}"


def test_every_part_imports_only_downward():
    bad = _violations()
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(bad)


def test_every_module_belongs_to_a_part():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == {"__init__", "__main__", "cli"}, f"modules outside the parts: {sorted(top)}"
    for part in ALLOWED:
        if part != "top":
            assert (PACKAGE / part / "__init__.py").is_file(), f"cmakit/{part}/ is not a package"


def test_the_rule_checker_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself must fail on a core module that imports the engine."""
    fake = tmp_path / "cmakit"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "__init__.py").write_text("")
    (fake / "core" / "bad.py").write_text("def f():\n    from cmakit.engine import trainer\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert any("core/bad.py:2: core imports cmakit.engine" in v for v in _violations())


@pytest.mark.parametrize("part", ["core"])
def test_core_needs_only_numpy_and_torch(part):
    """Pure math: no pandas, matplotlib, open_clip or I/O libraries in core/."""
    allowed = {
        "numpy",
        "torch",
        "scipy",
        "inspect",
        "math",
        "typing",
        "collections",
        "__future__",
        "dataclasses",
        "functools",
        "itertools",
        "cmakit",
        "warnings",
        "textwrap",
    }
    for path in (PACKAGE / part).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
