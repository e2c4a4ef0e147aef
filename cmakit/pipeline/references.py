"""The kit's reference documents: where each profile's lives, how one is read, who made it.

A reference document, ``docs/reference/<profile>.json``, holds one finished run's
``summary.json`` and tables with the machine, CPU, python and package versions that made it
(``python -m cmakit.pipeline.publish --reference RUN`` writes it). ``python -m cmakit compare``
(:mod:`cmakit.pipeline.compare`) reads it, and so does the publishing of the docs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cmakit.common.io import read_json

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Where the kit's reference of each embedded profile lives (``<profile>.json``).
REFERENCE_DIR = PROJECT_ROOT / "docs" / "reference"
#: What a reference document says it is (``kind``), and its format version.
REFERENCE_KIND, REFERENCE_FORMAT = "cmakit reference", 1


def read_reference(path: str | Path) -> dict[str, Any]:
    """A reference as ``{"summary", "made_by", ...}`` from a reference document, a run folder or
    a ``summary.json`` (the latter two with no ``made_by``).

    Raises:
        FileNotFoundError: no such file or folder (or no ``summary.json`` in the folder).
        ValueError: a JSON file that is neither a reference document nor a summary.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give a run folder, its summary.json or a "
                                "reference document (docs/reference/<profile>.json).")  # fmt: skip
    doc = read_json(path)
    if isinstance(doc, dict) and doc.get("kind") == REFERENCE_KIND:
        if doc.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"{path} is a reference of format {doc.get('format')!r}; this cmakit "
                             f"reads format {REFERENCE_FORMAT}: regenerate it with `python -m "
                             "cmakit.pipeline.publish --reference RUN`.")  # fmt: skip
        return doc
    if isinstance(doc, dict) and "methods" in doc and "profile" in doc:
        return {"summary": doc, "made_by": None, "config": _run_config(path.parent)}
    raise ValueError(f"{path} is neither a run's summary.json nor a cmakit reference document.")


def _run_config(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "config.json"
    return read_json(path).get("config") if path.is_file() else None


def describe_machine(made_by: Mapping[str, Any]) -> str:
    """One line: CPU, cores, platform, python and the numeric packages' versions."""
    machine = made_by.get("machine", {})
    versions = made_by.get("versions", {})
    packages = ", ".join(f"{name} {versions[pkg]}" for pkg, name in
                         (("torch", "torch"), ("numpy", "numpy"), ("open_clip_torch", "open_clip"))
                         if versions.get(pkg))  # fmt: skip
    commit = made_by.get("git_commit")
    return (f"{machine.get('cpu', 'unknown CPU')} ({machine.get('cores', '?')} cores, "
            f"{machine.get('arch', '?')}), {machine.get('platform', '?')}, python "
            f"{made_by.get('python', '?')}, {packages}"
            + (f", cmakit {commit[:12]}" if commit else "")
            + (" with uncommitted changes" if made_by.get("git_dirty") else ""))  # fmt: skip
