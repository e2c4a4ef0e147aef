"""Numbers in an executed notebook's text, and whether its own outputs show each of them.

A reader checks a sentence against the tables and printed values beside it. So the numbers of a
notebook's Markdown (its Markdown cells, and Markdown that code cells render into outputs) are
collected, and each must be shown by the notebook itself: among its other outputs (tables,
printed lines, the displayed configuration), in the source of its parameters cells, or in the
declared constants of the paper and the recipe (:mod:`cmakit.report.prose`).

What is not a number a reader checks: headings, code spans (names and formulas), references
("notebook 6", "Table 4", "§2"), years, and digits inside names (ViT-B/16, ImageNet-1k, 3-D).
A quoted value matches a shown one only when it equals that value as printed (``83.11`` or
``83.110`` for a table's ``83.11``; pandas trims a column's trailing zeros), or 100 times it
(``83.11`` for a fraction printed ``0.8311``): a sentence quotes what the reader can find, and
letting a coarser quote ("83.1") match anything that rounds to it would match too many of a
large table's numbers by chance to check anything.

``python tests/_notebook_numbers.py RUN_DIR`` prints what a run's notebooks quote but do not show.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from cmakit.report.prose import declared_constants

NUMBER = re.compile(r"(?<![\w./\-])[-−]?\d+(?:,\d{3})*(?:\.\d+)?(?![\w/]|-[A-Za-z]|\.\d)")
REFERENCE = re.compile(
    r"(?i)(?:notebooks?|tables?|figures?|§|sections?|cells?|v)\s*\d+(?:\s*(?:–|-|,|and|or)\s*\d+)*"
)
CODE = re.compile(r"`[^`]*`")
YEAR = re.compile(r"^(19|20)\d\d$")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def markdown_of(nb: dict) -> list[str]:
    """The notebook's Markdown: its Markdown cells and the Markdown its code cells rendered."""
    parts = [_text(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if "text/markdown" in out.get("data", {}):
                parts.append(_text(out["data"]["text/markdown"]))
    return parts


def shown_text(nb: dict) -> str:
    """What the notebook shows besides Markdown: plain-text outputs and parameters cells."""
    parts = []
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "code" and {"parameters", "injected-parameters"} & set(tags):
            parts.append(_text(cell["source"]))
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/markdown" in data:
                continue
            parts.append(_text(out.get("text", "")) + _text(data.get("text/plain", "")))
    return "\n".join(parts)


def _plain(token: str) -> str:
    """A number token without thousands separators and with an ASCII minus."""
    return token.replace("−", "-").replace(",", "")


def quoted_numbers(markdown: str) -> list[str]:
    """The numbers a reader would check in one piece of Markdown (see the module docstring)."""
    found = []
    for line in markdown.splitlines():
        if line.lstrip().startswith("#"):
            continue
        line = REFERENCE.sub(" ", CODE.sub(" ", line))
        found += [t for t in NUMBER.findall(line) if not YEAR.match(t)]
    return found


def _decimals(token: str) -> int:
    return len(token.split(".")[1]) if "." in token else 0


def shown_numbers(nb: dict) -> set[float]:
    """Every number the notebook shows, as printed, and each one with two or more decimals also
    as a percentage (``0.8311`` -> ``83.11``)."""
    shown = set()
    for token in map(_plain, NUMBER.findall(shown_text(nb))):
        shown.add(round(float(token), 10))
        if _decimals(token) >= 2:
            shown.add(round(100 * float(token), _decimals(token) - 2))
    return shown


def unshown(nb: dict) -> list[str]:
    """Numbers the notebook's Markdown quotes that neither its outputs nor a constant show."""
    shown, constants = shown_numbers(nb), declared_constants()
    missing = []
    for markdown in markdown_of(nb):
        for token in quoted_numbers(markdown):
            plain = _plain(token)
            if round(float(plain), 10) in shown or abs(float(plain)) in constants:
                continue
            missing.append(token)
    return missing


if __name__ == "__main__":
    for path in sorted((Path(sys.argv[1]) / "notebooks").glob("*.ipynb")):
        print(path.name, unshown(json.loads(path.read_text())))
