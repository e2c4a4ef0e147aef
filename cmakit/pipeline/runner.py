"""Run the notebook pipeline: validate the configuration, then execute each notebook.

``python -m cmakit.pipeline.runner --profile cpu --out runs/cpu`` (what ``bash run_all.sh``
calls). Parameters are resolved and validated against :class:`~cmakit.pipeline.config.RunConfig`
before any kernel starts; the notebooks are executed in order with papermill into
``<run_dir>/notebooks/``; a failing cell stops the run with its error and the path of the
partially executed notebook.
"""

from __future__ import annotations

import argparse
import errno
import functools
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from cmakit.common.io import read_json, write_json, write_text
from cmakit.common.progress import ENV_FILE
from cmakit.common.strict_config import ConfigError
from cmakit.pipeline.config import (
    PROFILE_NAMES,
    RunConfig,
    config_to_dict,
    profile_overrides,
    resolve,
    with_absolute_paths,
)
from cmakit.pipeline.kernel import SharedKernel
from cmakit.pipeline.lock import RunFolderBusy, run_folder_lock
from cmakit.pipeline.relay import KERNEL_ARGS, ProgressRelay

log = logging.getLogger("cmakit.pipeline")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
PROGRESS_LOG = "progress.log"  # one line per few seconds of the kernels' long loops

#: The notebook sequence, in order, and whether each runs on the paper profile.
NOTEBOOKS: list[tuple[str, bool]] = [
    ("00_primer.ipynb", True),
    ("01_pretrain.ipynb", False),
    ("02_finetune.ipynb", True),
    ("03_embed.ipynb", True),
    ("04_modality_gap.ipynb", True),
    ("05_geometry.ipynb", True),
    ("06_lambda_ablation.ipynb", True),
    ("07_benchmark_tables.ipynb", True),
    ("08_explorer.ipynb", True),
]

#: Notebooks that read no run folder: they get no run parameters (only their own defaults).
STANDALONE = {"00_primer.ipynb"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the runner (unknown options are errors)."""
    p = argparse.ArgumentParser(
        prog="run_all.sh",
        description="Run the cmakit notebook pipeline (pretrain, fine-tune, embed, gap, "
        "geometry, lambda ablation, tables, explorer) and leave a run folder with everything it made.",
    )
    p.add_argument("--profile", choices=PROFILE_NAMES, default="cpu", help="default: cpu")
    p.add_argument(
        "--out",
        default=None,
        help="run folder, relative to where you run the command (default: runs/<profile> in "
        "the checkout)",
    )
    p.add_argument("--seeds", type=int, default=None, help="number of fine-tuning seeds (0..N-1)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one RunConfig field; VALUE is JSON (e.g. --set lam=0.01 --set 'seeds=[0,5]')",
    )
    p.add_argument("--only", nargs="+", default=None, help="run only these notebooks (e.g. 04 05)")
    p.add_argument(
        "--dry-run", action="store_true", help="validate configuration and paths, run nothing"
    )
    p.add_argument(
        "--rerun",
        action="store_true",
        help="execute every notebook even when its executed copy is up to date",
    )
    p.add_argument(
        "--fresh-kernels",
        action="store_true",
        help="start a new kernel for every notebook (default: one kernel for the run, reset "
        "between notebooks, which saves the 6-8 s of imports each new kernel spends)",
    )
    p.add_argument(
        "--help-config",
        action="store_true",
        help="list every configuration field with its meaning and each profile's value, and exit",
    )
    return p.parse_args(argv)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"profile": args.profile}
    if args.out:
        out["run_dir"] = args.out
    if args.seeds is not None:
        if args.seeds < 1:
            raise ConfigError(f"--seeds {args.seeds} must be >= 1.")
        out["seeds"] = list(range(args.seeds))
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} must look like KEY=VALUE.")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw  # a bare string
    return out


def notebooks_to_run(cfg: RunConfig, only: list[str] | None) -> list[str]:
    """Names of the notebooks this run executes, in order."""
    names = [name for name, on_paper in NOTEBOOKS if cfg.embedded or on_paper]
    if only:
        unknown = [o for o in only if not any(n.startswith(o) for n in names)]
        if unknown:
            raise ConfigError(f"--only {unknown} matches no notebook; choose from {names}.")
        names = [n for n in names if any(n.startswith(o) for o in only)]
    return names


def machine() -> dict[str, Any]:
    """The machine a run is made on: CPU model, cores, architecture and platform (numbers are
    deterministic on one machine, not across CPUs, so a reference names its own)."""
    import platform

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "arch": platform.machine(),
            "platform": platform.platform()}  # fmt: skip


def provenance() -> dict[str, Any]:
    """Package versions, the machine and the git commit of the project (for the resolved-config
    file)."""
    import platform
    import subprocess
    from importlib import metadata

    versions = {}
    for pkg in (
        "cmakit",
        "torch",
        "torchvision",
        "open_clip_torch",
        "numpy",
        "scikit-learn",
        "pandas",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {
        "python": platform.python_version(),
        "machine": machine(),
        "versions": versions,
        "git_commit": commit,
        "git_dirty": dirty,
    }


@functools.lru_cache(maxsize=1)
def _package_digest() -> str:
    """Fingerprint of cmakit's source files (read once per process, not once per notebook)."""
    from cmakit.common.io import file_digest, fingerprint

    package = Path(__file__).resolve().parents[1]
    return fingerprint({str(p.relative_to(package)): file_digest(p)
                        for p in sorted(package.rglob("*.py"))})  # fmt: skip


def data_roots(cfg: RunConfig) -> dict[str, str]:
    """The data folders a run reads: the paper profile's ImageNet, MOS and OpenOOD roots (from
    the configuration or their environment variables); none for the embedded world."""
    if cfg.embedded:
        return {}
    from cmakit.data.paper import ENV_VARS

    given = {"imagenet": cfg.imagenet_root, "mos": cfg.mos_root, "openood": cfg.openood_root}
    roots = {kind: value or os.environ.get(ENV_VARS[kind], "") for kind, value in given.items()}
    return {kind: value for kind, value in roots.items() if value}


def data_key(cfg: RunConfig) -> dict[str, Any] | None:
    """What the run's data folders hold (:func:`cmakit.common.io.tree_digest` of each root), so
    that a changed data folder re-runs the notebooks; ``None`` for the embedded world."""
    from cmakit.common.io import tree_digest

    roots = data_roots(cfg)
    if not roots:
        return None
    start = time.perf_counter()
    key = {kind: tree_digest(root) for kind, root in sorted(roots.items())}
    log.info("data folders listed in %.1f s: %s", time.perf_counter() - start,
             ", ".join(f"{k} {v.get('files', 0):,} files" for k, v in key.items()))  # fmt: skip
    return key


def notebook_key(name: str, params: dict[str, Any], data: dict[str, Any] | None = None) -> str:
    """Fingerprint of what an executed notebook depends on: its source, its parameters, the
    source of the cmakit package (products it reads are keyed by the same configuration) and,
    on the paper path, what its data folders hold (:func:`data_key`)."""
    from cmakit.common.io import file_digest, fingerprint

    parts = [name, file_digest(NOTEBOOK_DIR / name), params, _package_digest()]
    return fingerprint(*parts, *([data] if data is not None else []))


def execute(
    cfg: RunConfig, names: list[str], *, rerun: bool = False, shared_kernel: bool = True
) -> dict[str, float]:
    """Execute notebooks with papermill; returns wall seconds per notebook.

    With ``shared_kernel`` the notebooks run one after the other in one kernel, emptied and reset
    between them (:mod:`cmakit.pipeline.kernel`); otherwise each gets a new kernel. The first
    notebook executed pays the kernel's start-up and imports in its time.

    A notebook already executed in the run folder with the same source, parameters, cmakit
    code and (paper path) data folders (:func:`notebook_key`, kept in ``notebooks/.<name>.key``)
    is not executed again unless ``rerun``: an unchanged re-run only checks keys.

    Raises:
        SystemExit: when a notebook fails (after logging the cell's error and the notebook path).
    """
    from cmakit.pipeline.products import damaged_products, discard

    run_dir = Path(cfg.run_dir)
    damaged = damaged_products(run_dir)
    for path, why in damaged:
        discard(path, why)
    if damaged and not rerun:
        log.info("re-running the notebooks: %d damaged product(s) are recomputed, the rest reused",
                 len(damaged))  # fmt: skip
        rerun = True
    params = {"run_dir": cfg.run_dir, "profile": cfg.profile, "overrides": profile_overrides(cfg)}
    data = data_key(cfg)  # listed once per run, not once per notebook
    timings: dict[str, float] = {}
    env = {ENV_FILE: str(run_dir / PROGRESS_LOG)}
    with SharedKernel(PROJECT_ROOT, env, extra_arguments=KERNEL_ARGS, shared=shared_kernel) as kern:
        for name in names:
            ran = _execute_one(cfg, name, names, params, kern, rerun=rerun, data=data)
            if ran is not None:
                timings[name.removesuffix(".ipynb")] = ran
    return timings


def _execute_one(
    cfg: RunConfig, name: str, names: list[str], params: dict[str, Any], kern: SharedKernel,
    *, rerun: bool, data: dict[str, Any] | None = None,
) -> float | None:  # fmt: skip
    """Execute one notebook (see :func:`execute`); its wall seconds, or None when kept."""
    import papermill
    from nbclient.exceptions import DeadKernelError

    run_dir = Path(cfg.run_dir)
    out_nb = run_dir / "notebooks" / name
    out_nb.parent.mkdir(parents=True, exist_ok=True)
    stamp = out_nb.parent / f".{name}.key"
    standalone = name in STANDALONE
    key = notebook_key(name, {} if standalone else params, None if standalone else data)
    if not rerun and out_nb.is_file() and stamp.is_file() and stamp.read_text() == key:
        log.info("%s is up to date (same notebook, parameters, code and data): kept", name)
        return None
    stamp.unlink(missing_ok=True)  # a partial notebook never looks complete
    log.info("running %s -> %s (progress: %s)", name, out_nb, run_dir / PROGRESS_LOG)
    start = time.perf_counter()
    try:
        with ProgressRelay(run_dir / PROGRESS_LOG):  # step, loss, ETA while the kernel works
            papermill.execute_notebook(
                str(NOTEBOOK_DIR / name),
                str(out_nb),
                parameters={} if name in STANDALONE else params,
                kernel_name="python3",
                cwd=str(PROJECT_ROOT),
                progress_bar=False,
                log_output=False,
                extra_arguments=KERNEL_ARGS,
                km=kern.manager(),
            )
    except papermill.PapermillExecutionError as err:
        if err.ename == "OSError" and "[Errno 28]" in str(err.evalue):  # the kernel's writes
            log.error("%s", interrupted_message(cfg, name, names, disk_full(run_dir)))
            raise SystemExit(1) from None
        log.error(
            "notebook %s failed in cell %s: %s: %s\nPartially executed notebook: %s",
            name,
            err.exec_count,
            err.ename,
            err.evalue,
            out_nb,
        )
        raise SystemExit(1) from None
    except OSError as err:  # the runner's own writes (the executed notebook) on a full disk
        if err.errno != errno.ENOSPC:
            raise
        log.error("%s", interrupted_message(cfg, name, names, disk_full(run_dir)))
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        quiet_dead_kernel_reports()  # the kernel got Ctrl-C too; its death is no news
        log.error("%s", interrupted_message(cfg, name, names, "interrupted (Ctrl-C)"))
        raise SystemExit(130) from None
    except DeadKernelError:
        what = ("its kernel died (killed by the system, most often for lack of memory, or "
                "crashed)")  # fmt: skip
        log.error("%s", interrupted_message(cfg, name, names, what))
        raise SystemExit(1) from None
    seconds = round(time.perf_counter() - start, 2)
    write_text(stamp, key)
    log.info("%s done in %.1f s", name, seconds)
    return seconds


def disk_full(run_dir: Path) -> str:
    """What stopped a run whose disk filled up, with the space left where it writes."""
    import shutil

    try:
        free = f"{shutil.disk_usage(run_dir).free / 2**20:,.0f} MB free there now"
    except OSError:
        free = "free space unknown"
    return (f"the disk is full (no space left on device) while writing under {run_dir} ({free}); "
            "free some space, or move the run with --out to another disk, then resume")  # fmt: skip


class _DeadKernelFilter(logging.Filter):
    """Drops the reports of a kernel's death that follow Ctrl-C (the kernel got the signal too):
    asyncio's "Task exception was never retrieved" of nbclient's kernel-alive poll, which fails
    with DeadKernelError, and nbclient's own "Kernel died while waiting for execute reply." on
    papermill's logger. Either may come once the run's kernel is shut down, after the resume
    line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        text = str(record.msg)
        return not (type(exc).__name__ == "DeadKernelError" or "DeadKernelError" in text
                    or text.startswith("Kernel died"))  # fmt: skip


#: The loggers that report a kernel's death: asyncio's (unretrieved task exceptions) and
#: papermill's (nbclient logs through it).
DEAD_KERNEL_LOGGERS = ("asyncio", "papermill")


def quiet_dead_kernel_reports() -> None:
    """Install :class:`_DeadKernelFilter` on :data:`DEAD_KERNEL_LOGGERS` (once each)."""
    for name in DEAD_KERNEL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DeadKernelFilter) for f in logger.filters):
            logger.addFilter(_DeadKernelFilter())


def interrupted_message(cfg: RunConfig, name: str, names: list[str], what: str) -> str:
    """One line for a run stopped inside notebook ``name``: what stopped, where the partial
    notebook is, and the command that resumes it (finished products and training checkpoints
    are reused, so nothing done is redone)."""
    partial = Path(cfg.run_dir) / "notebooks" / name
    rest = names[names.index(name) :]
    resume = f"bash run_all.sh --profile {cfg.profile} --out {shlex.quote(cfg.run_dir)}"
    if rest != notebooks_to_run(cfg, None):
        resume += " --only " + " ".join(n.split("_")[0] for n in rest)
    for key, value in profile_overrides(cfg).items():
        if key != "run_dir":
            resume += f" --set {shlex.quote(f'{key}={json.dumps(value)}')}"
    return (f"notebook {name} stopped: {what}. Partially executed notebook: {partial}. "
            f"Resume with: {resume}")  # fmt: skip


def help_config_text() -> str:
    """A plain-text table of every RunConfig field: meaning and value per profile."""
    from cmakit.pipeline.config import field_help

    lines = []
    for row in field_help():
        values = "  ".join(f"{p}={row[p]!r}" for p in PROFILE_NAMES)
        lines.append(f"{row['field']} ({row['type']}): {row['meaning'] or '-'}\n    {values}")
    return "\n".join(lines)


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{field: (old, new)}`` for every field whose value differs between two configs."""
    keys = sorted(set(old) | set(new))
    return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}


def report_config_change(path: Path, cfg: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Say which fields differ from the run folder's previous configuration, and which stages
    they key (those products are recomputed; every other product is reused)."""
    from cmakit.pipeline.products import affected_by

    if not path.is_file():
        return {}
    old = read_json(path).get("config", {})
    changes = config_changes(old, config_to_dict(cfg))
    changes.pop("run_dir", None)
    if changes:
        lines = [f"  {key}: {a!r} -> {b!r} ({affected_by(key)})" for key, (a, b) in changes.items()]
        log.info("configuration differs from the folder's previous run; products are keyed by "
                 "their inputs, so only what these change is recomputed:\n%s",
                 "\n".join(lines))  # fmt: skip
    return changes


def caller_dir() -> Path:
    """The folder the user ran the command from: ``$CMAKIT_CALLER_CWD`` (set by ``run_all.sh``,
    which changes into the checkout), else the working directory."""
    return Path(os.environ.get("CMAKIT_CALLER_CWD") or os.getcwd())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bash run_all.sh``."""
    logging.basicConfig(level=logging.INFO, format="[cmakit] %(message)s")
    args = parse_args(argv)
    if args.help_config:
        print(help_config_text())
        return 0
    try:
        overrides = _overrides(args)
        overrides.setdefault("run_dir", str(PROJECT_ROOT / "runs" / args.profile))
        cfg = with_absolute_paths(resolve(overrides), caller_dir())
        names = notebooks_to_run(cfg, args.only)
        from cmakit.pipeline.preflight import check_run_inputs

        check_run_inputs(cfg)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    if args.dry_run:
        log.info(
            "dry run: configuration and inputs are valid; would run %s in %s", names, cfg.run_dir
        )
        return 0
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_folder_lock(run_dir):
            return _run(cfg, names, args)
    except RunFolderBusy as err:
        log.error("%s", err)
        return 2


def _run(cfg: RunConfig, names: list[str], args: argparse.Namespace) -> int:
    """Run the notebooks ``names`` of ``cfg`` in its (locked) run folder."""
    run_dir = Path(cfg.run_dir)
    report_config_change(run_dir / "config.json", cfg)
    write_json(run_dir / "config.json", {"config": config_to_dict(cfg), **provenance()})
    start = time.perf_counter()
    timings = execute(cfg, names, rerun=args.rerun, shared_kernel=not args.fresh_kernels)
    elapsed = time.perf_counter() - start
    # Seconds per notebook, kept across partial re-runs (--only): the latest run of each.
    record = run_dir / "metrics" / "notebook_timings.json"
    merged = {**(read_json(record) if record.is_file() else {}), **timings}
    merged["total"] = round(sum(v for k, v in merged.items() if k != "total"), 2)
    write_json(record, merged)
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        summary = read_json(summary_path)
        summary["timings"] = {**summary.get("timings", {}), "notebooks_s": merged}
        write_json(summary_path, summary)
    log.info("run finished in %.1f s; results in %s", elapsed, run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
