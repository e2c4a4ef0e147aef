"""Progress a user can watch: rate-limited lines from the kernel, relayed by the runner."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from cmakit.common import progress
from cmakit.pipeline import runner
from cmakit.pipeline.relay import ProgressRelay


@pytest.fixture
def progress_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.log"
    monkeypatch.setenv(progress.ENV_FILE, str(path))
    monkeypatch.setattr(progress, "_last_emit", -float("inf"))
    return path


def _lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_emit_is_silent_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV_FILE, raising=False)
    assert progress.emit("step 1") is False
    assert not list(tmp_path.iterdir())


def test_emit_writes_at_most_one_line_per_interval(progress_file, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    monkeypatch.setenv(progress.ENV_INTERVAL, "5")
    assert progress.emit("a") and not progress.emit("b")  # 0 s after the last line
    clock[0] += 4.9
    assert not progress.emit("c")
    clock[0] += 0.2
    assert progress.emit("d\nsplit")  # 5.1 s: written, and kept on one line
    assert progress.emit("e", force=True)
    text = [line.split(" ", 1)[1] for line in _lines(progress_file)]
    assert text == ["a", "d split", "e"]


def test_bad_interval_is_refused(progress_file, monkeypatch):
    monkeypatch.setenv(progress.ENV_INTERVAL, "soon")
    with pytest.raises(ValueError, match="CMAKIT_PROGRESS_INTERVAL='soon' must be a number"):
        progress.emit("x")


def test_meter_line_has_count_rate_extra_and_eta(progress_file, monkeypatch):
    meter = progress.Meter("mining negative labels (noun)", total=1000, unit="prompts")
    monkeypatch.setattr(progress.time, "perf_counter", lambda: meter.start + 2.0)
    meter.update(250, loss=1.23456)
    (line,) = _lines(progress_file)
    assert line.endswith(
        "mining negative labels (noun): 250/1,000 prompts, 125.0 prompts/s, loss 1.235, ETA 0:00:06"
    )
    assert progress.format_eta(3725.2) == "1:02:05" and progress.format_eta(-1) == "?"


def test_a_silent_loop_stays_silent_and_a_reported_loop_reports_its_end(progress_file, monkeypatch):
    monkeypatch.setenv(progress.ENV_INTERVAL, "3600")
    progress.emit("someone else's line")
    quiet = progress.Meter("quiet", total=10)
    quiet.update(10)
    quiet.close()  # never reported: no closing line
    assert len(_lines(progress_file)) == 1
    monkeypatch.setattr(progress, "_last_emit", -float("inf"))
    loud = progress.Meter("loud", total=10)
    loud.update(5)
    loud.update(5)  # rate-limited away
    loud.close()
    lines = _lines(progress_file)
    assert len(lines) == 3 and "loud: 5/10" in lines[1] and "(done in" in lines[2]


def test_relay_echoes_only_new_complete_lines(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV_FILE, raising=False)
    path = tmp_path / "progress.log"
    path.write_text("old run\n")
    seen: list[str] = []
    with ProgressRelay(path, poll_s=60, echo=seen.append) as relay:
        assert os.environ[progress.ENV_FILE] == str(path)
        with open(path, "a") as fh:
            fh.write("one\ntwo\nhalf")
        relay.drain()
        assert seen == ["one", "two"]
        with open(path, "a") as fh:
            fh.write(" done\n")
    assert seen == ["one", "two", "half done"]
    assert progress.ENV_FILE not in os.environ


def _fake_notebook(folder, source: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("run_dir = 'x'\nprofile = 'smoke'\noverrides = {}")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    folder.mkdir(exist_ok=True)
    nbformat.write(nb, folder / "02_finetune.ipynb")


def test_runner_relays_kernel_progress_to_its_log_and_the_run_folder(
    tmp_path, monkeypatch, caplog, capfd
):
    """A kernel loop of 20,000 updates gives 2 lines (first + end), on the terminal and on file."""
    _fake_notebook(tmp_path / "nbs", (
        "from cmakit.common.progress import Meter\n"
        "meter = Meter('fake fine-tuning', total=20000, unit='pairs')\n"
        "for i in range(20000):\n"
        "    meter.update(1, loss=1.0 / (i + 1))\n"
        "meter.close()\n"
    ))  # fmt: skip
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", tmp_path / "nbs")
    monkeypatch.setenv(progress.ENV_INTERVAL, "600")  # the kernel inherits it
    monkeypatch.delenv(progress.ENV_FILE, raising=False)
    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    assert runner.main(["--profile", "smoke", "--out", str(out), "--only", "02"]) == 0
    lines = _lines(out / runner.PROGRESS_LOG)
    assert len(lines) == 2, lines
    assert "fake fine-tuning: 1/20,000 pairs" in lines[0] and "ETA" in lines[0]
    assert "fake fine-tuning: 20,000/20,000 pairs" in lines[1] and "(done in" in lines[1]
    relayed = [r.getMessage() for r in caplog.records if r.name == "cmakit.pipeline"]
    assert lines[0] in relayed and lines[1] in relayed
    assert "without encryption" not in capfd.readouterr().err


def test_fine_tuning_and_mining_report_step_loss_rate_and_eta(progress_file, tmp_path, monkeypatch):
    monkeypatch.setenv(progress.ENV_INTERVAL, "600")
    from _cmakit_tiny import tiny_model, tiny_pairs

    from cmakit.engine.embed import encode_texts
    from cmakit.engine.trainer import TrainConfig, train

    cfg = TrainConfig(batch_size=8, max_steps=3, warmup_steps=1, lr=1e-4, num_workers=0,
                      progress=False, device="cpu")  # fmt: skip
    train(tiny_model(), tiny_pairs(32), cfg, out_dir=tmp_path / "lam0.1-seed0-abc")
    lines = _lines(progress_file)
    assert len(lines) == 2, lines  # step 1, then the end (steps 2-3 fall inside the interval)
    assert "train lam0.1-seed0-abc: step 1/3, loss " in lines[0]
    assert "pairs/s, ETA 0:00:" in lines[0] and "ended at step 3/3" in lines[1]

    progress._last_emit = -float("inf")
    tokenizer = lambda texts: torch.full((len(texts), 8), 63)  # noqa: E731
    encode_texts(tiny_model(), tokenizer, ["a"] * 10, batch_size=4, desc="mining (noun)")
    assert "mining (noun): 4/10 prompts" in _lines(progress_file)[2]


def test_a_relayed_loop_draws_no_bar_and_logs_one_final_line(progress_file, monkeypatch, caplog):
    """Under the runner the executed notebook stores the loop's last line, not its bar."""
    caplog.set_level(logging.INFO, logger="cmakit")
    assert progress.bar(range(3), total=3, desc="x") is None  # the relay reports instead
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    monkeypatch.setenv(progress.ENV_INTERVAL, "5")
    short = progress.Meter("short", total=2)
    short.update(2)  # reported (first line in a while), but over in under one interval
    short.close()
    long = progress.Meter("long", total=2)
    monkeypatch.setattr(progress, "_last_emit", -float("inf"))
    long.update(1)
    clock[0] += 6.0
    long.update(1)
    long.close()
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("cmakit")]
    assert len(logged) == 1 and logged[0].startswith("long: 2/2 items") and "done in" in logged[0]


def test_a_bar_without_the_relay_is_tqdm_text_unless_ipywidgets_is_there(monkeypatch):
    """tqdm.auto without ipywidgets warns "IProgress not found": cmakit picks the text bar."""
    import importlib.util

    from tqdm.std import tqdm as text_bar

    monkeypatch.delenv(progress.ENV_FILE, raising=False)
    assert progress.bar(range(3), enabled=False) is None
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ipywidgets" else real(name, *a))  # fmt: skip
    shown = progress.bar(range(3), total=3, desc="x")
    try:
        assert type(shown) is text_bar and list(shown) == [0, 1, 2]
    finally:
        shown.close()


def test_relayed_training_logs_no_step_lines_only_its_end(progress_file, tmp_path, monkeypatch,
                                                          caplog):  # fmt: skip
    from _cmakit_tiny import tiny_model, tiny_pairs

    from cmakit.engine.trainer import TrainConfig, train

    caplog.set_level(logging.INFO, logger="cmakit")
    cfg = TrainConfig(batch_size=8, max_steps=4, warmup_steps=1, lr=1e-4, num_workers=0,
                      progress=True, log_every=1, device="cpu")  # fmt: skip
    train(tiny_model(), tiny_pairs(32), cfg, out_dir=tmp_path / "lam0-seed0-abc")
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    ends = [r.getMessage() for r in caplog.records if "ended at step 4/4" in r.getMessage()]
    assert steps == [] and len(ends) == 1
