"""One-line progress of long loops, relayed from a notebook kernel to the runner's terminal.

A notebook runs in a kernel whose output reaches the user only when the notebook ends. So the
library's long loops (fine-tuning steps, negative-label mining, image embedding) also report one
short line through :func:`emit`, which appends it to the file named by ``$CMAKIT_PROGRESS_FILE``;
the runner sets that variable to ``<run_dir>/progress.log`` before the kernel starts and prints
each new line (:mod:`cmakit.pipeline.relay`). Without the variable (a notebook opened in
JupyterLab, a library call) nothing is written.

Lines are rate-limited per process: at most one every ``$CMAKIT_PROGRESS_INTERVAL`` seconds
(default :data:`DEFAULT_INTERVAL_S`), whatever the number of loops or calls; a loop that did
report something reports its end too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_FILE = "CMAKIT_PROGRESS_FILE"
ENV_INTERVAL = "CMAKIT_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 5.0

_last_emit = -float("inf")  # time.monotonic() of this process's last line


def progress_path() -> Path | None:
    """The progress file of this process (``$CMAKIT_PROGRESS_FILE``), or None."""
    value = os.environ.get(ENV_FILE, "")
    return Path(value) if value else None


def interval_s() -> float:
    """Least seconds between two lines (``$CMAKIT_PROGRESS_INTERVAL``, default 5).

    Raises:
        ValueError: the variable is not a non-negative number.
    """
    raw = os.environ.get(ENV_INTERVAL, "")
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL_S
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"${ENV_INTERVAL}={raw!r} must be a number of seconds >= 0, e.g. 5.")
    return value


def emit(line: str, *, force: bool = False) -> bool:
    """Append ``HH:MM:SS line`` to the progress file unless a line went out less than
    :func:`interval_s` ago (``force`` skips that check).

    Returns:
        Whether the line was written (False without ``$CMAKIT_PROGRESS_FILE``).
    """
    global _last_emit
    path = progress_path()
    now = time.monotonic()
    if path is None or (not force and now - _last_emit < interval_s()):
        return False
    _last_emit = now
    text = f"{time.strftime('%H:%M:%S')} {' '.join(line.split())}\n"  # always one line
    with open(path, "a", encoding="utf-8") as fh:  # one short append: whole lines, any process
        fh.write(text)
    return True


def format_eta(seconds: float) -> str:
    """``3725.2`` -> ``"1:02:05"``; ``"?"`` when unknown (not finite or negative)."""
    if not (seconds >= 0 and seconds != float("inf")):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Meter:
    """Counts the items of one long loop and emits ``desc: done/total unit, rate unit/s, ETA``.

    Args:
        desc: What the loop does, e.g. ``"negative labels (noun)"``.
        total: Items the loop will process (None = unknown: no ETA).
        unit: Name of an item, e.g. ``"images"``, ``"prompts"``, ``"pairs"``.

    Example:
        >>> meter = Meter("embedding imagenet-val", total=50000, unit="images")
        >>> for batch in batches:  # doctest: +SKIP
        ...     meter.update(len(batch))
        >>> meter.close()  # doctest: +SKIP
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "items") -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.done, self.start = 0, time.perf_counter()
        self.reported = False

    def line(self, **extra: float) -> str:
        """The current progress line; ``extra`` values (e.g. ``loss=1.23``) are appended."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.done / elapsed
        of = f"/{self.total:,}" if self.total else ""
        parts = [f"{self.desc}: {self.done:,}{of} {self.unit}", f"{rate:,.1f} {self.unit}/s"]
        parts += [f"{k} {v:.4g}" for k, v in extra.items()]
        if self.total:
            parts.append(f"ETA {format_eta((self.total - self.done) / rate if rate else -1)}")
        return ", ".join(parts)

    def update(self, n: int = 1, **extra: float) -> None:
        """Count ``n`` more items; emit a line if the rate limit allows."""
        self.done += n
        self.reported |= emit(self.line(**extra))

    def close(self) -> None:
        """Emit the final line if this loop reported anything before (so its end is seen)."""
        if self.reported:
            emit(f"{self.line()} (done in {format_eta(time.perf_counter() - self.start)})",
                 force=True)  # fmt: skip
