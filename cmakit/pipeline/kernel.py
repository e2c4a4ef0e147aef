"""One Jupyter kernel for the notebooks of a run, reset between them.

Every kernel spends 6–8 s importing torch, torchvision, open_clip, matplotlib and pandas
before its first cell does any work; on the embedded world that is most of a short notebook's
time. :class:`SharedKernel` starts one kernel for the run and hands it to papermill for each
notebook. Between two notebooks it runs :data:`RESET_CODE`, which leaves the kernel as a
notebook would find a fresh one:

- the user namespace is emptied (``%reset -f``): a notebook cannot use a name that only an
  earlier notebook defined, so each executed notebook still runs on its own in Jupyter;
- open figures are closed, garbage is collected and cached GPU memory is released;
- the execution count starts again at 1, so the executed notebook's cells are numbered
  [1], [2], … as in a notebook run alone, and IPython's input history starts a new session
  (:func:`restart_count`): lines numbered from 1 again in the old session would collide in
  IPython's history database, and IPython would print "Session/line number was not unique in
  database" into whichever notebook's output was current.

Imported modules stay imported (that is the saving) and module-level state stays with them:
cmakit keeps none that a notebook's results depend on (products live in the run folder, and
every draw that matters is seeded; torch seeds its global generator at random in each new
process, so no unseeded draw was reproducible with a kernel per notebook either). Runs
that want a new process per notebook (``--fresh-kernels``) pass ``shared=False``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from jupyter_core.utils import run_sync

log = logging.getLogger("cmakit.pipeline")

#: Run in the kernel between two notebooks, silently (not counted as an execution), so that
#: the next notebook's first cell is [1].
RESET_CODE = (
    "%reset -f\nfrom cmakit.pipeline import kernel as _k\n_k.tidy()\n_k.restart_count()\ndel _k"
)


def tidy() -> None:
    """Close every open figure, collect garbage and hand cached GPU memory back to the driver
    (a later notebook may start ``torchrun`` processes that need it). Called in the kernel
    between notebooks."""
    import gc
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


#: The shared kernel's IPython history lives in memory, as in the kernels nbclient starts itself
#: (its ``ipython_hist_file``): a batch run writes nothing to the user's history database.
HISTORY_ARGS = ["--HistoryManager.hist_file=:memory:"]


def restart_count() -> None:
    """Number the next cell [1] in a new session of IPython's input history, as a new kernel
    would (the old session's lines are written out first). Called in the kernel between
    notebooks."""
    from IPython import get_ipython

    shell = get_ipython()
    shell.history_manager.reset(new_session=True)
    shell.execution_count = 1


def _tracking_manager() -> Any:
    """A jupyter_client ``AsyncKernelManager`` for ``python3`` that lists the clients it made
    (``.clients``), so that their channels can be stopped once a notebook is done.

    Asynchronous, as the managers nbclient makes itself: nbclient waits for a cell's reply on
    the event loop while it polls whether the kernel is alive, and a blocking client would hold
    the loop, so a kernel killed mid-cell (out of memory) would never be noticed."""
    from jupyter_client.manager import AsyncKernelManager

    class _Manager(AsyncKernelManager):
        def client(self, **kwargs: Any) -> Any:
            kc = super().client(**kwargs)
            self.clients.append(kc)
            return kc

    km = _Manager(kernel_name="python3")
    km.clients = []
    return km


class SharedKernel:
    """Context manager: the kernel manager to hand to papermill for each notebook of a run.

    Args:
        cwd: Working directory of the kernel.
        env: Environment variables set in the kernel on top of the runner's.
        extra_arguments: Command-line arguments of the kernel application.
        shared: False gives ``None`` from :meth:`manager`: papermill then starts (and stops) a
            kernel per notebook.

    The kernel starts on the first :meth:`manager` call (a run whose notebooks are all up to
    date starts none) and is shut down on exit, also after an error or Ctrl-C.
    """

    def __init__(self, cwd: str | os.PathLike, env: dict[str, str] | None = None, *,
                 extra_arguments: list[str] | None = None, shared: bool = True) -> None:  # fmt: skip
        self.cwd, self.env, self.shared = str(cwd), dict(env or {}), shared
        self.extra_arguments = list(extra_arguments or [])
        self._km: Any = None

    def __enter__(self) -> SharedKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._km is not None:
            self._stop_clients()
            try:
                run_sync(self._km.shutdown_kernel)(now=True)
            except Exception as err:  # a dead kernel has nothing left to stop
                log.debug("kernel shutdown: %s", err)
            self._km = None

    def manager(self) -> Any:
        """The kernel manager for the next notebook (``None`` when not shared): started on the
        first call, reset by :data:`RESET_CODE` on every later one.

        Raises:
            RuntimeError: the kernel did not answer, or the reset failed (the message says which).
        """
        if not self.shared:
            return None
        # papermill leaves its client running on a kernel it did not start: stop it here
        self._stop_clients()
        if self._km is None:
            self._km = _tracking_manager()
            run_sync(self._km.start_kernel)(
                extra_arguments=[*self.extra_arguments, *HISTORY_ARGS], cwd=self.cwd,
                env={**os.environ, **self.env},
            )  # fmt: skip
        else:
            self._run(RESET_CODE, "reset")
        return self._km

    def _stop_clients(self) -> None:
        while self._km is not None and self._km.clients:
            self._km.clients.pop().stop_channels()

    def _run(self, code: str, what: str) -> None:
        async def run() -> dict[str, Any]:
            kc = self._km.client()
            kc.start_channels()
            await kc.wait_for_ready(timeout=120)
            return await kc.execute_interactive(
                code, silent=True, timeout=120, output_hook=lambda msg: None
            )

        try:
            reply = run_sync(run)()
        finally:
            self._stop_clients()
        content = reply["content"]
        if content["status"] != "ok":
            raise RuntimeError(f"The run's kernel failed its {what} code: "
                               f"{content.get('ename')}: {content.get('evalue')}")  # fmt: skip
