"""What the runner shows while a notebook's kernel works: relayed progress, no kernel noise.

papermill runs each notebook in a kernel whose cell output arrives only in the executed
notebook. :class:`ProgressRelay` points ``$CMAKIT_PROGRESS_FILE`` (which the kernel inherits) at
``<run_dir>/progress.log`` and, from a background thread, logs every line the library's long loops
append to it (:mod:`cmakit.common.progress`: fine-tuning steps, negative-label mining, image
embedding; at most one line every few seconds), so the terminal shows step, loss, pairs/s and
ETA while the notebook runs, and the file keeps them.

:data:`KERNEL_ARGS` silences the kernel application's own start-up warning ("Kernel is running
over TCP without encryption", logged by ``ipykernel.kernelapp.IPKernelApp`` in the kernel
process, on the stderr it shares with the runner): the kernel listens on localhost for this
runner only. Cell output, errors and the library's logging are not affected.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from cmakit.common.progress import ENV_FILE

log = logging.getLogger("cmakit.pipeline")

#: Extra command-line arguments of every kernel the runner starts.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


class ProgressRelay:
    """Context manager: set ``$CMAKIT_PROGRESS_FILE`` and echo the lines appended to it.

    Lines already in the file (a previous run) are not repeated. On exit the thread stops, the
    last lines are echoed, and the environment variable is restored.

    Args:
        path: The progress file (``<run_dir>/progress.log``); created if missing, appended to.
        poll_s: Seconds between two reads of the file.
        echo: Called with each new line (default: ``log.info`` on the runner's logger).
    """

    def __init__(self, path: str | os.PathLike, *, poll_s: float = 0.5,
                 echo: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.path, self.poll_s = Path(path), poll_s
        self.echo = echo or (lambda line: log.info("%s", line))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._offset, self._saved_env = 0, None

    def __enter__(self) -> ProgressRelay:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._offset = self.path.stat().st_size
        self._saved_env = os.environ.get(ENV_FILE)
        os.environ[ENV_FILE] = str(self.path)
        self._thread = threading.Thread(target=self._follow, name="cmakit-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.drain()
        if self._saved_env is None:
            os.environ.pop(ENV_FILE, None)
        else:
            os.environ[ENV_FILE] = self._saved_env

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.drain()

    def drain(self) -> None:
        """Echo every complete line appended since the last read."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:  # removed under us: nothing to relay
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        self._offset += end
        for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
            if line.strip():
                self.echo(line)
