"""One runner at a time per run folder: an advisory lock on ``<run_dir>/.cmakit.lock``.

Two runners on one folder would share checkpoints and show each other's progress. The lock is
``fcntl.flock`` on a file that also records who holds it (process id, start time, command), so
a second runner refuses at once and names the first. The operating system releases the lock
when its process ends, however it ends: a killed runner leaves no stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".cmakit.lock"


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock; the message says which."""


def holder(run_dir: str | os.PathLike) -> dict[str, object]:
    """What the lock file says of the process that holds (or last held) it; {} if unknown."""
    try:
        return json.loads((Path(run_dir) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def run_folder_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the run folder's lock for the duration of the block.

    Raises:
        RunFolderBusy: another process holds it (the message names its process id, when it
            started and its command, and what to do).
    """
    path = Path(run_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(run_dir)
            since = who.get("started", "?")
            raise RunFolderBusy(
                f"run folder {run_dir} is in use by process {who.get('pid', '?')} (started "
                f"{since}: {who.get('command', '?')}); wait for it to finish, or give this run "
                "another --out."
            ) from None
        me = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
