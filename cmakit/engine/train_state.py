"""Run-folder bookkeeping for the trainer: loop position, history, progress bar, checkpoints.

Kept apart from :mod:`cmakit.engine.trainer` so that the loop reads top to bottom. Only rank 0 writes;
every rank reads the same checkpoint when resuming.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from cmakit.common import progress
from cmakit.common.io import write_text
from cmakit.common.progress import emit, format_eta
from cmakit.common.strict_config import to_dict
from cmakit.engine.checkpoint import (
    capture_rng,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    restore_rng,
    save_checkpoint,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoopState:
    """Position of the training loop; ``batch_in_epoch`` is the next step's index in its epoch."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed: float = 0.0
    last_checkpoint: str = ""

    def progress(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "last_checkpoint"}


class RunFiles:
    """Paths of a run folder, the ``history.jsonl`` writer and the progress bar."""

    def __init__(self, out_dir: Path, *, is_main: bool) -> None:
        self.out_dir, self.is_main = Path(out_dir), is_main
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.history_path = self.out_dir / "history.jsonl"
        self.model_path = self.out_dir / "model.pt"
        self._fh = None
        self._total, self._last_step, self._reported = 0, 0, False

    def open_history(self, keep_until_step: int) -> None:
        """Open ``history.jsonl`` for appending, first dropping lines after ``keep_until_step``."""
        if not self.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        kept = []
        if keep_until_step and self.history_path.exists():
            for line in self.history_path.read_text().splitlines():
                if line.strip() and json.loads(line)["step"] <= keep_until_step:
                    kept.append(line + "\n")
        write_text(self.history_path, "".join(kept))
        self._fh = open(self.history_path, "a", buffering=1 << 16)  # noqa: SIM115

    def progress_bar(self, initial: int, total: int, *, enabled: bool):
        """A tqdm bar on rank 0 (None elsewhere, when disabled, or when a runner relays the
        progress: :func:`cmakit.common.progress.bar`)."""
        self._total = total
        return progress.bar(total=total, initial=initial, unit="step", desc="train",
                            enabled=self.is_main and enabled)  # fmt: skip

    def record(self, st: LoopState, terms, stepper, pairs_per_s, bar, log_every: int) -> None:
        """Append one history line; refresh the bar / log every ``log_every`` steps."""
        if not self.is_main:
            return
        row = {"step": st.step, "epoch": st.epoch, **{k: round(v, 6) for k, v in terms.items()}}
        row.update(
            lr=stepper.last_lr,
            logit_scale=round(float(stepper.model.logit_scale.detach().exp()), 4),
            pairs_per_s=round(pairs_per_s, 2),
            elapsed=round(st.elapsed, 3),
        )
        self._fh.write(json.dumps(row) + "\n")
        if bar is not None:
            bar.update(1)
        self._reported |= emit(self._progress_line(st, row))
        if st.step % log_every == 0:
            self._fh.flush()
            short = {k: row[k] for k in row if k not in ("step", "epoch", "elapsed")}
            if bar is not None:
                bar.set_postfix({k: f"{v:.4g}" for k, v in short.items()}, refresh=False)
            elif (
                not progress.relayed()
            ):  # the relay has its own lines; the notebook gets the last one
                log.info("step %d %s", st.step, short)

    def _progress_line(self, st: LoopState, row: dict[str, Any]) -> str:
        """``train <run>: step 120/2500, loss 1.2345, 830 pairs/s, ETA 0:41:10`` (the relay)."""
        self._last_step = st.step
        eta = (self._total - st.step) * st.elapsed / st.step if st.step else -1.0
        return (f"train {self.out_dir.name}: step {st.step}/{self._total}, loss {row['loss']:.4f}, "
                f"{row['pairs_per_s']:,.0f} pairs/s, ETA {format_eta(eta)}")  # fmt: skip

    def close(self, bar=None) -> None:
        if self._reported:  # a run the user watched: say that it ended, there and here
            final = f"train {self.out_dir.name}: ended at step {self._last_step}/{self._total}"
            emit(final, force=True)
            log.info("%s", final)
            self._reported = False
        if bar is not None:
            bar.close()
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _config_diff(old: dict[str, Any], new: dict[str, Any], allowed) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if k not in allowed and old.get(k) != new.get(k)]  # fmt: skip


def newest_readable(found: list[Path], *, move_aside: bool) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of ``found`` (oldest first) that loads, and its contents.

    An unreadable newer checkpoint (a job killed while the file system flushed it, a disk
    that filled up) is skipped with a warning and, when ``move_aside``, renamed to
    ``<name>.unreadable`` so that pruning and the next resume ignore it.

    Raises:
        ValueError: when no checkpoint loads (each file and its problem are listed).
    """
    problems = []
    for path in reversed(found):
        try:
            ckpt = load_checkpoint(path)
        except (ValueError, FileNotFoundError) as err:
            problems.append(str(err))
            log.warning("skipping an unreadable checkpoint: %s", err)
            if move_aside and path.is_file():
                path.rename(path.with_name(path.name + ".unreadable"))
            continue
        if problems:
            log.warning(
                "resuming from %s, the newest checkpoint that loads (%d newer one(s) unreadable)",
                path, len(problems),
            )  # fmt: skip
        return path, ckpt
    raise ValueError("No checkpoint to resume from loads:\n- " + "\n- ".join(problems))


def restore_or_start(files: RunFiles, stepper, cfg, resume: bool, allowed) -> LoopState:
    """Load the newest checkpoint into the stepper (``resume``), or start a fresh run.

    Raises:
        ValueError: a fresh start into a folder that holds checkpoints, or a resume whose
            settings differ from the checkpoint's in fields other than ``allowed``.
    """
    found = list_checkpoints(files.ckpt_dir)
    if not resume:
        if found:
            raise ValueError(
                f"{files.ckpt_dir} already holds checkpoints (newest {found[-1].name}); pass "
                "resume=True to continue that run, or choose a new out_dir."
            )
        files.open_history(0)
        return LoopState()
    if not found:
        log.info("resume=True but no checkpoint in %s: starting from step 0", files.ckpt_dir)
        files.open_history(0)
        return LoopState()
    path, ckpt = newest_readable(found, move_aside=files.is_main)
    diff = _config_diff(ckpt["config"], to_dict(cfg), allowed)
    if diff:
        raise ValueError(
            f"Cannot resume from {path}: settings changed ({'; '.join(diff)}). "
            "Use the original settings or a new out_dir."
        )
    stepper.model.load_state_dict(ckpt["state_dict"])
    stepper.opt.load_state_dict(ckpt["optimizer"])
    stepper.sched.load_state_dict(ckpt["scheduler"])
    stepper.scaler.load_state_dict(ckpt["scaler"])
    restore_rng(ckpt["rng"])
    st = LoopState(**ckpt["progress"], last_checkpoint=str(path))
    files.open_history(st.step)
    log.info("resumed from %s at step %d (epoch %d)", path, st.step, st.epoch)
    return st


def write_checkpoint(files: RunFiles, stepper, st: LoopState, meta: dict, cfg) -> str:
    """Write ``checkpoints/step_XXXXXXXX.pt`` on rank 0 and return its path (on every rank)."""
    path = files.ckpt_dir / f"step_{st.step:08d}.pt"
    if files.is_main:
        if files._fh is not None:
            files._fh.flush()
        sd = {k: v.detach().cpu() for k, v in stepper.model.state_dict().items()}
        from cmakit.models.weights import model_info

        save_checkpoint(
            path,
            {
                "state_dict": sd,
                "optimizer": stepper.opt.state_dict(),
                "scheduler": stepper.sched.state_dict(),
                "scaler": stepper.scaler.state_dict(),
                "rng": capture_rng(),
                "progress": st.progress(),
                "config": meta["config"],
                "model_info": model_info(stepper.model, meta.get("model_name")),
            },
        )
        prune_checkpoints(files.ckpt_dir, cfg.keep_checkpoints)
    return str(path)
