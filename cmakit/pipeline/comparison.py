"""The result of a comparison: one row per number, the verdict and the text ``compare`` prints.

:mod:`cmakit.pipeline.compare` makes a :class:`Comparison` from two summaries (or from a paper
run and the paper's tables); this module holds its shape and how it reads.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

#: Units of a headline number: a fraction in [0, 1] (shown in percent) or the gap's norm.
Unit = Literal["fraction", "gap"]


@dataclasses.dataclass(frozen=True)
class Row:
    """One number of the run beside the reference's.

    Attributes:
        label: What it is, in words.
        unit: "fraction" or "gap".
        run: The run's value (``None``: the run lacks it).
        reference: The reference's value.
        tolerance: The largest difference that agrees (``None``: informational, no verdict).
    """

    label: str
    unit: Unit
    run: float | None
    reference: float
    tolerance: float | None

    @property
    def diff(self) -> float | None:
        """``run - reference`` (``None`` when the run lacks the number)."""
        return None if self.run is None else self.run - self.reference

    @property
    def agrees(self) -> bool:
        """Within the tolerance (a missing number never agrees)."""
        if self.diff is None:
            return False
        return self.tolerance is None or abs(self.diff) <= self.tolerance


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A run's headline numbers beside a reference's.

    Attributes:
        run: Where the run's numbers come from (a path, or "run").
        reference: Where the reference's come from.
        profile: The profile of both.
        rows: One per headline number of the reference.
        verdict: Whether a verdict is given (``False`` for the paper's tables: information).
        header: Lines about the reference and the tolerance, printed before the table.
        notes: Lines about other differences (seeds, configuration), printed after it.
    """

    run: str
    reference: str
    profile: str
    rows: tuple[Row, ...]
    verdict: bool = True
    header: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def disagreements(self) -> list[Row]:
        """The rows outside their tolerance (none when no verdict is given)."""
        return [r for r in self.rows if not r.agrees] if self.verdict else []

    @property
    def agrees(self) -> bool:
        """Every headline number within its tolerance (always True without a verdict)."""
        return not self.disagreements

    @property
    def exit_code(self) -> int:
        """0 when the run agrees (or no verdict is given), 1 otherwise."""
        return 0 if self.agrees else 1

    def text(self) -> str:
        """The comparison as the command prints it: header, table, notes, verdict."""
        lines = [f"run: {self.run}", f"reference: {self.reference}", *self.header, ""]
        lines += format_rows(self.rows)
        lines += ["", *self.notes] if self.notes else []
        lines.append(self.verdict_line())
        return "\n".join(lines)

    def verdict_line(self) -> str:
        """One line: agrees, or which numbers disagree and by how much."""
        if not self.verdict:
            return "no verdict: differences from the paper are shown for information."
        bad = self.disagreements
        if not bad:
            return f"verdict: AGREES (all {len(self.rows)} headline numbers within tolerance)."
        named = "; ".join(_describe(r) for r in bad)
        return f"verdict: DISAGREES on {len(bad)} of {len(self.rows)} numbers: {named}."


def format_rows(rows: tuple[Row, ...] | list[Row]) -> list[str]:
    """The rows as a fixed-width table; fractions in percent, the gap as it is."""
    width = max([len(r.label + _unit_suffix(r)) for r in rows] + [6]) + 1
    verdict = any(r.tolerance is not None for r in rows)
    head = f"{'number':<{width}} {'run':>8} {'ref.':>8} {'diff':>8}"
    lines = [head + (f" {'tol.':>7}" if verdict else "")]
    for r in rows:
        digits, scale = (3, 1.0) if r.unit == "gap" else (1, 100.0)
        run = "missing" if r.run is None else f"{r.run * scale:.{digits}f}"
        diff = "" if r.diff is None else f"{r.diff * scale:+.{digits + 1}f}"
        line = f"{r.label + _unit_suffix(r):<{width}} {run:>8} {r.reference * scale:>8.{digits}f} {diff:>8}"
        if r.tolerance is not None:
            line += f" {r.tolerance * scale:>7.{digits + 1}f}  {'ok' if r.agrees else 'DIFFERS'}"
        lines.append(line)
    return lines


def _unit_suffix(row: Row) -> str:
    return "" if row.unit == "gap" else " (%)"


def _describe(row: Row) -> str:
    scale, digits = (1.0, 3) if row.unit == "gap" else (100.0, 1)
    if row.run is None:
        return f"{row.label} missing in the run"
    return (f"{row.label} {row.run * scale:.{digits}f} vs {row.reference * scale:.{digits}f} "
            f"(tolerance {row.tolerance * scale:.{digits + 1}f})")  # fmt: skip
