"""The notebook pipeline: runner validation, the paper dry run, and the smoke profile end to end."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import pytest

from cmakit import cli
from cmakit.common.io import read_json
from cmakit.pipeline import runner
from cmakit.report.summary import validate_summary


def _leaves(node, path="$"):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, node


def test_unknown_parameter_stops_before_any_kernel(tmp_path, caplog):
    out = tmp_path / "run"
    assert runner.main(["--profile", "smoke", "--out", str(out), "--set", "lamda=0.1"]) == 2
    assert "Did you mean 'lam'" in caplog.text
    assert not out.exists()


def test_bad_value_and_bad_only_are_refused(tmp_path, caplog):
    assert runner.main(["--out", str(tmp_path / "a"), "--set", "seeds=[]"]) == 2
    assert "seeds=[] is empty" in caplog.text
    assert runner.main(["--out", str(tmp_path / "b"), "--only", "99"]) == 2
    assert "matches no notebook" in caplog.text


def test_paper_dry_run_names_every_missing_input(tmp_path, monkeypatch, caplog):
    for var in ("CMAKIT_IMAGENET", "CMAKIT_MOS", "CMAKIT_OPENOOD"):
        monkeypatch.delenv(var, raising=False)
    missing = tmp_path / "nowhere"
    argv = ["--profile", "paper", "--dry-run", "--set", f"imagenet_root={missing}"]
    assert runner.main(argv) == 2
    text = caplog.text
    assert "pretrained is empty" in text
    assert str(missing) in text and "train/n01440764" in text  # path tried + layout
    assert "$CMAKIT_MOS" in text and "benchmark_imglist" in text


@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path):
    out = tmp_path / "run"
    argv = ["--profile", "smoke", "--out", str(out), "--set", f"cache_dir={tmp_path / 'cache'}"]
    assert runner.main(argv) == 0
    summary = read_json(out / "summary.json")
    validate_summary(summary)
    assert summary["profile"] == "smoke" and summary["convention"] == "id_positive"
    assert set(summary["methods"]) == {"zero_shot", "flyp", "cma"}
    for method in summary["methods"].values():
        assert {"mcm", "neglabel", "neglabel_grouped", "csp", "msp", "energy"} <= set(method["ood"])
        assert {"near_mean", "far_mean"} <= set(method["ood"]["neglabel"])
        assert "auroc_per_seed" in method["ood"]["neglabel"]["far_mean"]
    for path, value in _leaves(summary):
        if isinstance(value, float):
            assert math.isfinite(value), path
    assert [row["lam"] for row in summary["ablation"]] == [0.0, 0.1]
    # what must hold in any correct run: CMA (lam > 0) closes the gap that FLYP keeps, and the
    # ablation's gap falls as lambda grows
    gaps = {m: summary["methods"][m]["modality_gap"] for m in ("flyp", "cma")}
    assert gaps["cma"] < gaps["flyp"], gaps
    ablation_gaps = [row["modality_gap"] for row in summary["ablation"]]
    assert ablation_gaps == sorted(ablation_gaps, reverse=True), ablation_gaps
    assert summary["fingerprints"]["metrics"]["cma-seed0"]
    # a finished fine-tuning keeps its weights and history, not its resume checkpoints
    assert list((out / "models").rglob("model.pt")) and not list(
        (out / "models").rglob("step_*.pt")
    )
    assert summary["timings"]["notebooks_s"]["total"] > 0
    for name, _ in runner.NOTEBOOKS:
        executed = json.loads((out / "notebooks" / name).read_text())
        assert any(c.get("outputs") for c in executed["cells"] if c["cell_type"] == "code"), name
    for stem in ("pca_panels", "gap_shift", "ablation", "training_curves", "auroc_neglabel"):
        assert (out / "figures" / f"{stem}.png").stat().st_size > 1000, stem
        assert (out / "figures" / f"{stem}.pdf").is_file(), stem
    for ext in ("csv", "md", "tex"):
        assert (out / "tables" / f"benchmark_neglabel.{ext}").is_file()
        assert (out / "tables" / f"benchmark_csp_vs_neglabel.{ext}").is_file()
    assert len(list((out / "negatives").glob("csp-*.tsv"))) == 1
    assert (out / "figures" / "explorer.html").stat().st_size > 100_000
    # the command line's explorer reads the run folder's embeddings (three methods, two λ)
    from cmakit.pipeline.explore import load_source

    assert len(load_source([out]).bundles) >= 3
    assert (
        cli.main(["explore", str(out), "--out", str(tmp_path / "x.html"), "--max-points", "40"])
        == 0
    )
    config = read_json(out / "config.json")
    assert config["config"]["profile"] == "smoke" and config["versions"]["torch"]
    assert len(list((out / "metrics" / "ablation").glob("*.json"))) == 2

    # a second run of the ablation reuses every finished point (one JSON each)
    points = sorted((out / "metrics" / "ablation").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in points]
    assert runner.main([*argv, "--only", "06"]) == 0
    assert [p.stat().st_mtime_ns for p in points] == stamps

    # a changed metric convention re-scores every model without re-embedding any
    embedded = {p: p.stat().st_mtime_ns for p in (out / "embeddings").glob("*.npz")}
    assert runner.main([*argv, "--only", "07", "--set", "convention=ood_positive"]) == 0
    rescored = read_json(out / "summary.json")
    assert rescored["convention"] == "ood_positive"
    assert {p: p.stat().st_mtime_ns for p in (out / "embeddings").glob("*.npz")} == embedded
    far = ("methods", "zero_shot", "ood", "neglabel", "far_mean", "fpr95")
    old, new = summary, rescored
    for key in far:
        old, new = old[key], new[key]
    assert old != new
    assert "ood_positive" in (out / "tables" / "benchmark_neglabel.md").read_text()
    assert runner.main(argv) == 0  # back to the first configuration: everything is reused
    assert {p: p.stat().st_mtime_ns for p in (out / "embeddings").glob("*.npz")} == embedded

    # a real run with another λ disagrees with the first, and names CMA's numbers only
    from cmakit.pipeline.compare import compare_runs

    first = tmp_path / "first"
    first.mkdir()
    (first / "summary.json").write_text((out / "summary.json").read_text())
    assert compare_runs(out, first).agrees
    assert runner.main([*argv, "--only", "07", "--set", "lam=1.0"]) == 0
    other_lam = compare_runs(out, first)
    assert not other_lam.agrees and other_lam.exit_code == 1
    assert {r.label.split()[0] for r in other_lam.disagreements} == {"CMA"}, other_lam.text()
    assert runner.main(argv) == 0  # back again: the first summary

    from cmakit.pipeline.publish import publish, write_reference

    reference = write_reference(out, tmp_path / "docs", figures=True)
    assert compare_runs(out, reference).agrees
    page = publish(reference, tmp_path / "docs")
    text = page.read_text()
    assert "| zero_shot |" in text and "| cma |" in text and "NegLabel far AUROC" in text
    assert "CSP far AUROC" in text and "| CMA_CSP |" in text
    assert (tmp_path / "docs" / "assets" / "pca_panels.png").stat().st_size > 1000


def test_help_config_lists_every_field_with_its_meaning(capsys):
    from cmakit.pipeline.config import RunConfig

    assert runner.main(["--help-config"]) == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(RunConfig):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{field.name} ("))
        assert not line.endswith(": -"), f"{field.name} has no meaning in RunConfig"
    assert "smoke='cmakit-micro'" in text and "paper=0.001" in text


def test_runner_names_the_fields_that_changed_since_the_last_run(tmp_path, caplog):
    from cmakit.common.io import write_json
    from cmakit.pipeline.config import config_to_dict, resolve

    cfg = resolve({"profile": "smoke", "run_dir": str(tmp_path)})
    write_json(tmp_path / "config.json", {"config": config_to_dict(cfg)})
    caplog.set_level(logging.INFO)
    new = resolve({**config_to_dict(cfg), "lam": 0.5, "convention": "ood_positive"})
    changes = runner.report_config_change(tmp_path / "config.json", new)
    assert set(changes) == {"lam", "convention"}
    assert "lam: 0.1 -> 0.5 (selects the CMA model" in caplog.text
    assert "convention: 'id_positive' -> 'ood_positive' (recomputes metrics" in caplog.text


def _fake_notebook(
    tmp_path, monkeypatch, parameters: str, body: str, name: str = "02_finetune.ipynb"
) -> None:
    """Make the runner's notebook ``name`` a two-cell notebook: a parameters cell and ``body``."""
    import nbformat

    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, nb_dir / name)
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", nb_dir)


def test_an_executed_notebook_is_kept_until_its_inputs_change(tmp_path, monkeypatch, caplog):
    _fake_notebook(
        tmp_path,
        monkeypatch,
        "run_dir = 'x'\nprofile = 'smoke'\noverrides = {}",
        "print(overrides)",
    )
    out = tmp_path / "run"
    argv = ["--profile", "smoke", "--out", str(out), "--only", "02"]
    caplog.set_level(logging.INFO)
    assert runner.main(argv) == 0
    executed = out / "notebooks" / "02_finetune.ipynb"
    first = executed.stat().st_mtime_ns
    assert runner.main(argv) == 0
    assert "is up to date" in caplog.text and executed.stat().st_mtime_ns == first
    caplog.clear()
    assert runner.main([*argv, "--set", "lam=0.2"]) == 0  # another configuration: executed
    assert "is up to date" not in caplog.text and "'lam': 0.2" in executed.read_text()
    caplog.clear()
    assert runner.main([*argv, "--set", "lam=0.2", "--rerun"]) == 0
    assert "is up to date" not in caplog.text


def _outputs(path) -> dict[str, str]:
    """``{"PID": ..., "LEAK": ...}`` from the printed lines of an executed notebook, and
    ``"streams"``: every stream output's text, in order (a kernel's stray message shows there)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    streams = [o.get("text", "") for c in nb.cells for o in c.get("outputs", [])]
    lines = [line for text in streams for line in text.splitlines()]
    keys = ("PID", "LEAK", "HISTORY")
    found = dict(line.split(" ", 1) for line in lines if line.split(" ")[0] in keys)
    return {**found, "streams": "".join(streams)}


@pytest.mark.parametrize("fresh", [False, True])
def test_the_notebooks_of_a_run_share_a_kernel_that_carries_nothing_over(
    tmp_path, monkeypatch, fresh
):
    params = "run_dir = 'x'\nprofile = 'smoke'\noverrides = {}"
    body = (
        "import os\nimport torch\n"
        "print('PID', os.getpid())\nprint('LEAK', 'left_behind' in globals())\n"
        "print('HISTORY', get_ipython().history_manager.session_number)\n"
        "left_behind = torch.rand(3)"
    )
    for name in ("02_finetune.ipynb", "03_embed.ipynb"):
        _fake_notebook(tmp_path, monkeypatch, params, body, name=name)
    out = tmp_path / "run"
    argv = ["--profile", "smoke", "--out", str(out), "--only", "02", "03"]
    assert runner.main(argv + (["--fresh-kernels"] if fresh else [])) == 0
    first, second = (
        _outputs(out / "notebooks" / n) for n in ("02_finetune.ipynb", "03_embed.ipynb")
    )
    # nothing but the cells' own lines: a shared kernel whose count restarts at 1 in the same
    # history session printed IPython's "Session/line number was not unique" into a notebook
    for outputs in (first, second):
        expected = f"PID {outputs['PID']}\nLEAK False\nHISTORY {outputs['HISTORY']}\n"
        assert outputs["streams"] == expected, outputs["streams"]
    assert (first["PID"] != second["PID"]) is fresh  # one process for the run unless asked
    # each notebook its own session of a history kept in memory, as in a kernel of its own
    assert (first["HISTORY"], second["HISTORY"]) == (("1", "1") if fresh else ("1", "2"))
    assert second["LEAK"] == "False"  # the first notebook's names are gone
    import nbformat  # each executed notebook is numbered [1], [2], ... as if run alone

    for name in ("02_finetune.ipynb", "03_embed.ipynb"):
        cells = nbformat.read(out / "notebooks" / name, as_version=4).cells
        counts = [c.execution_count for c in cells if c.cell_type == "code"]
        assert counts == list(range(1, len(counts) + 1)), (name, counts)


def test_failing_notebook_reports_cell_and_partial_path(tmp_path, monkeypatch, caplog):
    _fake_notebook(tmp_path, monkeypatch, "run_dir = 'x'", "raise RuntimeError('boom in cell')")
    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        runner.main(["--profile", "smoke", "--out", str(out), "--only", "02"])
    assert "boom in cell" in caplog.text and "RuntimeError" in caplog.text
    assert str(out / "notebooks" / "02_finetune.ipynb") in caplog.text
    assert (out / "notebooks" / "02_finetune.ipynb").is_file()


def test_multi_gpu_fine_tuning_command_round_trips_through_the_cli(tmp_path):
    """The paper profile's torchrun command carries exactly the notebook's TrainConfig."""
    from cmakit.cli import _take, build_parser
    from cmakit.engine.trainer import TrainConfig
    from cmakit.pipeline.commands import TrainRun
    from cmakit.pipeline.config import resolve
    from cmakit.pipeline.steps import torchrun_command

    cfg = resolve({"profile": "paper", "pretrained": "/w/ViT-B-16.pt", "imagenet_root": "/d/in"})
    tcfg = TrainConfig(lam=cfg.lam, lr=cfg.finetune_lr, batch_size=cfg.finetune_batch_size,
                       warmup_steps=cfg.finetune_warmup_steps, seed=3, precision="bf16")  # fmt: skip
    cmd = torchrun_command(cfg, tcfg, tmp_path / "out", 4)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    ns = build_parser().parse_args(cmd[cmd.index("cmakit") + 1 :])
    assert _take(TrainConfig, ns) == dataclasses.replace(tcfg, progress=False)
    run = _take(TrainRun, ns)
    assert (run.model, run.pretrained, run.imagenet, run.resume) == (
        "ViT-B-16", "/w/ViT-B-16.pt", "/d/in", True,
    )  # fmt: skip


def test_ablation_metrics_average_per_group_never_over_every_set():
    """Paper-shaped record: near (2 sets), far (3) and MOS (4), each mean against its own ID set.
    The columns are the group means; the one-axis column weights each group once, where a mean
    over the nine sets would weight MOS 4/9 (0.3625 here instead of 0.4)."""
    from cmakit.pipeline.steps import ablation_metrics

    sets = {"near": (0.2, 0.2), "far": (0.4, 0.4, 0.4), "mos": (0.6, 0.6, 0.6, 0.6)}
    ood: dict = {}
    for group, values in sets.items():
        ood.update({f"{group}{i}": {"fpr95": v, "auroc": 1 - v} for i, v in enumerate(values)})
        ood[f"{group}_mean"] = {"fpr95": values[0], "auroc": 1 - values[0]}
    record = {"id_accuracy": 0.8, "modality_gap": 0.5, "ood": {"mcm": ood, "neglabel": ood}}
    row = ablation_metrics(record)
    assert row["neglabel_near_fpr95"] == 0.2 and row["mcm_mos_auroc"] == pytest.approx(0.4)
    assert row["neglabel_fpr95"] == pytest.approx(0.4)  # (0.2 + 0.4 + 0.6) / 3, not 0.3625
    assert row["mcm_auroc"] == pytest.approx(0.6) and row["id_accuracy"] == 0.8
    groups = ("", "near_", "far_", "mos_")
    assert set(row) == {"id_accuracy", "modality_gap"} | {
        f"{s}_{g}{m}" for s in ("mcm", "neglabel") for g in groups for m in ("fpr95", "auroc")
    }
    with pytest.raises(ValueError, match="no group means"):
        ablation_metrics({**record, "ood": {"mcm": {"a": ood["near0"]}, "neglabel": ood}})


def test_a_changed_data_folder_reruns_the_paper_notebooks(tmp_path, monkeypatch):
    """The key of an executed paper notebook covers what its data folders hold: an image list's
    bytes, a file added, a file's size or time; the embedded world has no data folders."""
    import os

    from cmakit.pipeline.config import resolve

    lists = tmp_path / "openood" / "benchmark_imglist" / "imagenet"
    lists.mkdir(parents=True)
    (lists / "test_ninco.txt").write_text("ninco/a.png -1\n")
    image = tmp_path / "imagenet" / "val" / "n01440764" / "ILSVRC2012_val_00000001.JPEG"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x" * 10)
    (tmp_path / "mos").mkdir()
    monkeypatch.setenv("CMAKIT_MOS", str(tmp_path / "mos"))  # a root from the environment
    cfg = resolve(profile="paper", imagenet_root=str(tmp_path / "imagenet"),
                  openood_root=str(tmp_path / "openood"))  # fmt: skip
    params = {"run_dir": "r", "profile": "paper", "overrides": {}}

    def key() -> str:
        return runner.notebook_key("03_embed.ipynb", params, runner.data_key(cfg))

    first = key()
    assert key() == first and set(runner.data_key(cfg)) == {"imagenet", "mos", "openood"}
    stamp = os.stat(lists / "test_ninco.txt").st_mtime_ns
    (lists / "test_ninco.txt").write_text("ninco/b.png -1\n")  # same size, time put back
    os.utime(lists / "test_ninco.txt", ns=(stamp, stamp))
    changed = [key()]
    (tmp_path / "mos" / "SUN").mkdir()
    (tmp_path / "mos" / "SUN" / "new.jpg").write_bytes(b"y")  # a file added
    changed.append(key())
    image.write_bytes(b"x" * 11)  # an image replaced
    changed.append(key())
    os.utime(image, ns=(1, 1))  # only its time
    changed.append(key())
    assert len({first, *changed}) == 5
    smoke = resolve(profile="smoke")
    assert runner.data_key(smoke) is None
    assert runner.notebook_key("03_embed.ipynb", params) == runner.notebook_key(
        "03_embed.ipynb", params, runner.data_key(smoke)
    )


def test_cluster_knobs_reach_the_torchrun_command(tmp_path):
    """Workers, micro-batch and activation checkpointing travel from RunConfig to the CLI."""
    from cmakit.cli import _take, build_parser
    from cmakit.engine.trainer import TrainConfig
    from cmakit.pipeline.config import resolve
    from cmakit.pipeline.steps import torchrun_command, train_config

    cfg = resolve({"profile": "paper", "pretrained": "/w/ViT-B-16.pt", "num_workers": 3,
                   "finetune_micro_batch_size": 64, "grad_checkpointing": True})  # fmt: skip
    tcfg = train_config(cfg, cfg.lam, seed=0)
    assert (tcfg.num_workers, tcfg.micro_batch_size, tcfg.grad_checkpointing) == (3, 64, True)
    for checkpointing in (True, False):
        want = dataclasses.replace(tcfg, grad_checkpointing=checkpointing)
        cmd = torchrun_command(cfg, want, tmp_path, 3)
        ns = build_parser().parse_args(cmd[cmd.index("cmakit") + 1 :])
        assert _take(TrainConfig, ns) == dataclasses.replace(want, progress=False)
    default = train_config(resolve({"profile": "paper"}), 0.0, seed=0)
    assert (default.num_workers, default.micro_batch_size, default.grad_checkpointing) == (
        8, None, False,
    )  # fmt: skip


def test_dry_run_checks_the_batch_split_over_devices():
    from cmakit.pipeline.config import resolve
    from cmakit.pipeline.preflight import check_batch_split

    cfg = resolve({"profile": "paper", "finetune_micro_batch_size": 64})
    line = check_batch_split(cfg, processes=3)
    assert line == ("global batch 512 on 3 process(es): shares [171, 171, 170], "
                    "3 micro-batch(es) of <= 57 pairs each")  # fmt: skip
    assert "2 micro-batch(es) of <= 37" in check_batch_split(cfg, processes=7)  # 74 > 64
    assert "1 micro-batch(es) of <= 64" in check_batch_split(cfg, processes=8)
    small = resolve({"profile": "paper", "finetune_batch_size": 6})
    with pytest.raises(ValueError, match=r"finetune_batch_size=6 .* on 8 device\(s\).*too small"):
        check_batch_split(small, processes=8)
