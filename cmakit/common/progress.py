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

What the notebook itself stores: under the runner (the variable set), no progress bar, only one
final line per loop that ran for at least one interval (logged, so it lands in the executed
notebook once); opened alone, :func:`bar` gives tqdm's bar: a widget in JupyterLab when
ipywidgets is installed, tqdm's text bar otherwise (never tqdm.auto's "IProgress not found"
warning and fallback).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("cmakit.progress")

ENV_FILE = "CMAKIT_PROGRESS_FILE"
ENV_INTERVAL = "CMAKIT_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 5.0

_last_emit = -float("inf")  # time.monotonic() of this process's last line


def progress_path() -> Path | None:
    """The progress file of this process (``$CMAKIT_PROGRESS_FILE``), or None."""
    value = os.environ.get(ENV_FILE, "")
    return Path(value) if value else None


def relayed() -> bool:
    """Whether a runner relays this process's progress (``$CMAKIT_PROGRESS_FILE`` is set)."""
    return progress_path() is not None


def _tqdm_class() -> type:
    """tqdm's widget bar in a Jupyter kernel with ipywidgets installed, else its text bar."""
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:  # tqdm.auto would warn "IProgress not found" in a notebook, then draw text anyway
        from tqdm.std import tqdm
    return tqdm


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
        unit: str = "it", initial: int = 0, enabled: bool = True) -> Any:  # fmt: skip
    """A tqdm bar for a person watching this process, or None.

    None when ``enabled`` is False or when a runner relays progress (:func:`relayed`): the
    runner's terminal and ``progress.log`` then get :class:`Meter`'s lines, and an executed
    notebook would otherwise store one output per refresh of the bar.

    Args:
        iterable: Wrapped by the bar (None: the caller calls ``update``).
        total: Items expected (None = unknown).
        desc, unit, initial: As tqdm's.
        enabled: The caller's ``progress`` option.
    """
    if not enabled or relayed():
        return None
    return _tqdm_class()(iterable, total=total, desc=desc, unit=unit, initial=initial,
                         dynamic_ncols=True)  # fmt: skip


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
        """Emit the final line if this loop reported anything before (so its end is seen), and
        log it (once, into the executed notebook) when the loop lasted one interval or more."""
        if self.reported:
            elapsed = time.perf_counter() - self.start
            final = f"{self.line()} (done in {format_eta(elapsed)})"
            emit(final, force=True)
            if elapsed >= interval_s():
                log.info("%s", final)
