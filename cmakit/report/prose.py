"""Sentences computed from a run's numbers: the words of a comparison follow its sign.

A number a reader sees in a notebook comes from the run it sits in. The notebooks render their
"what to notice" and "what to conclude" text with these pure functions, which take numbers the
notebook also shows (a table, a printed value) and return Markdown: "rises" or "falls", "above"
or "below", "monotonically" or not, as the numbers decide. Values are compared as they are
printed (rounded), so a sentence never contradicts the table beside it.

The only numbers typed into the notebooks' text are the declared constants below, of the paper
(its recipe; its tables come from :mod:`cmakit.report.paper_reference`) and of the recipe or the
mathematics (chance levels, the operating point of FPR95, CLIP's initial temperature).
"""

from __future__ import annotations

import importlib.resources
import math
from collections.abc import Sequence
from functools import lru_cache

import pandas as pd

#: The paper's CMA weight λ on ImageNet.
PAPER_LAM = 0.001

#: Constants of the paper quoted in the notebooks' text (value as printed -> what it is).
PAPER_CONSTANTS: dict[str, str] = {
    "0.001": "the paper's CMA weight λ on ImageNet (PAPER_LAM)",
    "100": "the logit scale of CLIP ViT-B/16 (its cap)",
    "512": "the paper's fine-tuning batch size",
    "1,000": "the classes of ImageNet-1k",
}

#: Constants of the recipe or of the mathematics quoted in the notebooks' text.
RECIPE_CONSTANTS: dict[str, str] = {
    "0": "λ = 0 (FLYP), α = 0 (the model as trained), a gap of zero",
    "1": "λ = 1 (no partition term), α = 1 (centroids meet), a perfect score or cosine",
    "2": "the largest distance between two unit vectors",
    "0.5": "the AUROC of a random score (fraction)",
    "50": "the AUROC of a random score (percent)",
    "95": "FPR95's operating point: 95% of ID inputs accepted (and a random score's FPR95, %)",
    "0.95": "the FPR95 of a random score (fraction)",
    "0.01": "NegLabel's temperature τ",
    "0.07": "CLIP's initial temperature",
    "14": "CLIP's initial logit scale, 1/0.07 (rounded)",
}


@lru_cache(maxsize=1)
def declared_constants() -> frozenset[float]:
    """Every number the notebooks' text may quote without computing it: the two lists above and
    every value of the paper's tables (``cmakit/report/paper_tables/*.csv``)."""
    values = {float(k.replace(",", "")) for k in {**PAPER_CONSTANTS, **RECIPE_CONSTANTS}}
    for resource in (importlib.resources.files("cmakit.report") / "paper_tables").iterdir():
        if resource.name.endswith(".csv"):
            with resource.open("r", encoding="utf-8") as fh:
                table = pd.read_csv(fh)
            values |= {float(v) for v in table.select_dtypes("number").to_numpy().ravel()}
    return frozenset(values)


def number(x: float, digits: int = 2) -> str:
    """``x`` as printed in the notebooks' text: fixed ``digits``, a true minus sign."""
    text = f"{x:.{digits}f}"
    return text.replace("-", "−") if text.startswith("-") and float(text) != 0 else text.lstrip("-")


def plain(x: float) -> str:
    """A parameter as typed: ``0.1`` -> ``"0.1"``, ``1.0`` -> ``"1"``, ``0.001`` -> ``"0.001"``."""
    return f"{x:g}".replace("-", "−")


def percent(x: float, digits: int = 2) -> str:
    """A fraction in percent, as the benchmark tables print it (``0.83114`` -> ``"83.11"``)."""
    return number(100.0 * x, digits)


def _sign(a: float, b: float, digits: int) -> int:
    """Sign of ``b − a`` as printed: 0 when both round to the same value."""
    ra, rb = round(float(a), digits), round(float(b), digits)  # numpy scalars included
    return int(rb > ra) - int(rb < ra)


def compare(a: float, b: float, *, digits: int = 2, above: str = "above",
            below: str = "below", level: str = "level with") -> str:  # fmt: skip
    """The word for ``a`` against ``b``, at the printed precision.

    Example:
        >>> compare(0.8311, 0.8501), compare(0.8501, 0.8311), compare(0.831, 0.8312, digits=3)
        ('below', 'above', 'level with')
    """
    return {1: below, -1: above, 0: level}[_sign(a, b, digits)]


def change(before: float, after: float, *, digits: int = 2, scale: float = 1.0,
           rises: str = "rises", falls: str = "falls", stays: str = "stays") -> str:  # fmt: skip
    """``"rises from 83.40 to 84.30"`` / ``"falls from …"`` / ``"stays at 85.20"``.

    Args:
        before, after: The two values (multiplied by ``scale`` when printed, e.g. 100 for %).
        digits: Printed decimals; the verb is decided on the printed values.
        rises, falls, stays: The verbs.
    """
    a, b = before * scale, after * scale
    step = _sign(a, b, digits)
    if step == 0:
        return f"{stays} at {number(b, digits)}"
    return f"{rises if step > 0 else falls} from {number(a, digits)} to {number(b, digits)}"


def trend(values: Sequence[float], *, digits: int = 2, scale: float = 1.0) -> str:
    """How a sequence moves, at the printed precision.

    Returns:
        ``"falls monotonically from a to b"``, ``"rises monotonically from a to b"`` ("falls
        from a to b" for two values), ``"stays at a"``, or ``"does not move monotonically: from
        a to b, lowest at c and highest at d"``.

    Raises:
        ValueError: fewer than two values.
    """
    if len(values) < 2:
        raise ValueError(f"a trend needs at least two values, got {list(values)!r}.")
    v = [round(x * scale, digits) for x in values]
    steps = {_sign(a, b, digits) for a, b in zip(v, v[1:], strict=False)}
    first, last = number(v[0], digits), number(v[-1], digits)
    if steps == {0}:
        return f"stays at {first}"
    how = " monotonically" if len(v) > 2 else ""
    if steps <= {-1, 0}:
        return f"falls{how} from {first} to {last}"
    if steps <= {1, 0}:
        return f"rises{how} from {first} to {last}"
    return (f"does not move monotonically: from {first} to {last}, lowest at "
            f"{number(min(v), digits)} and highest at {number(max(v), digits)}")  # fmt: skip


def join(words: Sequence[str]) -> str:
    """``["a"]`` -> ``"a"``, ``["a", "b"]`` -> ``"a and b"``, ``["a", "b", "c"]`` -> ``"a, b and c"``."""
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def near_chance(aurocs: Sequence[float], *, within: float = 0.05) -> bool:
    """Whether every AUROC (fraction) lies within ``within`` of chance (0.5)."""
    return all(abs(x - 0.5) < within for x in aurocs)


def count(n: int, noun: str) -> str:
    """``count(1, "seed")`` -> ``"one seed"``, ``count(3, "seed")`` -> ``"three seeds"``."""
    words = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    head = words[n] if 0 <= n < len(words) else f"{n:,}"
    return f"{head} {noun}{'' if n == 1 else 's'}"


def span(values: Sequence[float], *, digits: int = 2, scale: float = 1.0) -> str:
    """``"0.99–1.00"`` (lowest–highest as printed), or one value when they print the same."""
    finite = [x * scale for x in values if math.isfinite(x)]
    if not finite:
        raise ValueError("span needs at least one finite value.")
    lo, hi = number(min(finite), digits), number(max(finite), digits)
    return lo if lo == hi else f"{lo}–{hi}"
