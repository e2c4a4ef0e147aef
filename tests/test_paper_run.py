"""The paper path in miniature: the README's command-line example as written, and every notebook
of the paper profile, on a 1,000-class ImageNet / MOS / OpenOOD v1.5 tree with the 224-px
``cmakit-paper-tiny`` CLIP in OpenAI's weight format (:mod:`cmakit.data.fixtures`)."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cmakit.common.io import read_json
from cmakit.data.fixtures import PAPER_TINY_MODEL, write_openai_weights, write_paper_tree

ROOT = Path(__file__).resolve().parents[1]

#: The README's placeholders and what this test puts in their place (the README says so too).
PLACEHOLDERS = {"/weights/ViT-B-16.pt": "{weights}", "ViT-B-16": PAPER_TINY_MODEL}
#: Flags appended to each README command so that it finishes in seconds (no other change).
FAST_FLAGS = {
    "train": [
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--warmup-steps",
        "1",
        "--num-workers",
        "0",
        "--no-progress",
    ],  # fmt: skip
    "mine": ["--keep", "0.01"],  # fewer negatives for embed to encode
    "embed": ["--num-workers", "0", "--batch-size", "250"],
    "evaluate": [],
}


@pytest.fixture(scope="module")
def paper_tree(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paper-fixture")
    tree = write_paper_tree(root)
    return {**tree, "weights": write_openai_weights(root / "ViT-tiny-openai.pt")}


def readme_commands(text: str) -> list[list[str]]:
    """The command lines of the README's fenced bash block that ends with ``evaluate``."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    block = next(b for b in blocks if "python -m cmakit evaluate" in b)
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_block_is_found_and_complete():
    cmds = readme_commands((ROOT / "README.md").read_text())
    assert [c[c.index("cmakit") + 1] for c in cmds] == ["train", "mine", "embed", "evaluate"]
    embed = next(c for c in cmds if "embed" in c)
    assert "--pretrained" not in embed and "--negatives" in embed


@pytest.mark.slow
def test_readme_command_line_example_runs_as_written(paper_tree, tmp_path):
    env = {**os.environ, "CMAKIT_IMAGENET": str(paper_tree["imagenet"]),
           "CMAKIT_MOS": str(paper_tree["mos"]), "PYTHONPATH": str(ROOT),
           "PET_MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}  # fmt: skip
    launchers = {"python": [sys.executable],
                 "torchrun": [sys.executable, "-m", "torch.distributed.run"]}  # fmt: skip
    for cmd in readme_commands((ROOT / "README.md").read_text()):
        for old, new in PLACEHOLDERS.items():
            cmd = [arg.replace(old, new.format(weights=paper_tree["weights"])) for arg in cmd]
        command = cmd[cmd.index("cmakit") + 1]
        argv = launchers[cmd[0]] + cmd[1:] + FAST_FLAGS[command]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)  # fmt: skip
        assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stderr[-4000:]}"
    manifest = json.loads((tmp_path / "runs" / "cma" / "emb" / "embeddings.json").read_text())
    assert manifest["pretrained"] is None  # the checkpoint alone, no "openai" download
    assert manifest["neg_text"] and manifest["negatives"] == "runs/neg_labels.tsv"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    mos = {f"mos-{name}" for name in ("iNaturalist", "SUN", "Places", "Textures")}
    assert metrics["score"] == "neglabel" and set(metrics["per_set"]) == mos
    assert list(metrics["group_sets"]) == ["mos"] and set(metrics["group_sets"]["mos"]) == mos
    assert all(math.isfinite(v) for v in metrics["group_means"]["mos"].values())


@pytest.mark.slow
def test_paper_profile_runs_every_notebook_on_the_miniature_tree(
    paper_tree, tmp_path, monkeypatch, capsys
):
    from cmakit.pipeline import runner
    from cmakit.report.summary import validate_summary
    from cmakit.report.tables import PAPER_LABEL

    monkeypatch.setenv("CMAKIT_PROGRESS_INTERVAL", "0")  # every progress line, for the check
    out = tmp_path / "run"
    sets = {"model": PAPER_TINY_MODEL, "pretrained": paper_tree["weights"],
            "imagenet_root": paper_tree["imagenet"], "mos_root": paper_tree["mos"],
            "openood_root": paper_tree["openood"], "finetune_max_steps": 2,
            "finetune_batch_size": 16, "finetune_warmup_steps": 1, "neg_fraction": 0.01,
            "ablation_lams": "[0.0,0.001]", "num_workers": 0}  # the README's miniature run  # fmt: skip
    argv = ["--profile", "paper", "--out", str(out)]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    start = time.perf_counter()
    assert runner.main(argv) == 0
    wall = time.perf_counter() - start
    with capsys.disabled():
        print(f"\npaper profile on the miniature tree: {wall:.1f} s wall")

    executed = sorted(p.name for p in (out / "notebooks").glob("*.ipynb"))
    assert executed == [name for name, on_paper in runner.NOTEBOOKS if on_paper]
    summary = read_json(out / "summary.json")
    validate_summary(summary)
    assert summary["profile"] == "paper" and set(summary["methods"]) == {"zero_shot", "flyp", "cma"}
    assert {"near_mean", "far_mean", "mos_mean"} <= set(
        summary["methods"]["cma"]["ood"]["neglabel"]
    )
    for table in ("table1_mos", "table2_openood_v15", "table3_id_accuracy"):
        text = (out / "tables" / f"{table}_beside.md").read_text()
        assert f"ours (ImageNet-1k, {PAPER_TINY_MODEL})" in text and PAPER_LABEL in text, table
    assert PAPER_LABEL in (out / "tables" / "geometry.md").read_text()
    progress = (out / runner.PROGRESS_LOG).read_text()
    assert re.search(r"train lam0-seed0-\w+: step 1/2, loss [\d.]+, [\d,]+ pairs/s, ETA", progress)
    assert "mining negative labels (noun):" in progress and "prompts/s" in progress
    assert "embedding imagenet-val:" in progress and "images/s" in progress
