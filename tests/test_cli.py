"""Command line: help, strict flags, and train -> embed -> evaluate on fixture data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import open_clip
import pytest
import torch
from _cmakit_tiny import TOK_NAME, register_tiny
from PIL import Image

from cmakit import cli
from cmakit.engine.negatives import NegativeLabel, save_negative_labels
from cmakit.models.weights import save_model

torch.set_num_threads(1)


@pytest.mark.parametrize("command", ["train", "mine", "embed", "evaluate", "explore"])
def test_help_lists_dataclass_flags(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    flag = {"train": "--grad-accum-steps", "mine": "--keep", "embed": "--ood-sets",
            "evaluate": "--convention", "explore": "--max-points"}  # fmt: skip
    assert flag[command] in out and "(default:" in out


def test_embed_loads_no_pretrained_weights_under_a_checkpoint():
    from cmakit.pipeline.commands import EmbedRun, embed_pretrained

    ns = cli.build_parser().parse_args(["embed", "--checkpoint", "runs/cma/model.pt"])
    assert cli._take(EmbedRun, ns).pretrained == "auto"
    assert embed_pretrained("auto", "runs/cma/model.pt") is None
    assert embed_pretrained("auto", None) == "openai"
    assert embed_pretrained("/w/ViT-B-16.pt", "runs/cma/model.pt") == "/w/ViT-B-16.pt"
    assert embed_pretrained(None, None) is None  # --pretrained none: random init, on purpose


def test_evaluate_without_negatives_says_how_to_get_them(tmp_path):
    from cmakit.common.io import write_json
    from cmakit.pipeline.commands import load_bundle

    write_json(tmp_path / "embeddings.json", {"neg_text": None})
    with pytest.raises(ValueError, match="python -m cmakit mine --out FILE"):
        load_bundle(tmp_path, need_negatives=True)


def test_unknown_option_and_bad_value_are_usage_errors(capsys):
    for argv in (
        ["train", "--lamb", "0.1"],
        ["train", "--lam", "-1"],
        ["evaluate", "--score", "xx"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --lamb" in err and "lam=-1.0 must be in [0, 1]" in err


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "cmakit", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "train" in done.stdout


def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((18, 18, 3), value % 256, dtype=np.uint8)).save(path)


@pytest.mark.slow
def test_train_embed_evaluate_end_to_end(tmp_path):
    register_tiny()
    for split in ("train", "val"):
        for c in range(1000):
            _png(tmp_path / "imagenet" / split / f"n{c:08d}" / "0.png", c)
    for k in range(6):
        _png(tmp_path / "mos" / "SUN" / "images" / f"{k}.png", 7 * k)
    (tmp_path / "mos" / "SUN" / "images" / "bad.png").write_bytes(b"broken")
    words = [NegativeLabel("pebble", "noun", 0.1), NegativeLabel("velvety", "adj", 0.2)]
    save_negative_labels(tmp_path / "neg.tsv", words)
    torch.manual_seed(0)
    save_model(open_clip.create_model(TOK_NAME), tmp_path / "init.pt", name=TOK_NAME)
    common = ["--model", TOK_NAME, "--pretrained", str(tmp_path / "init.pt"), "--device", "cpu"]

    cli.main(["train", *common, "--imagenet", str(tmp_path / "imagenet"), "--out",
              str(tmp_path / "run"), "--batch-size", "8", "--max-steps", "2", "--warmup-steps",
              "1", "--lr", "1e-4", "--num-workers", "0", "--no-progress"])  # fmt: skip
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["final_step"] == 2 and summary["config"]["lam"] == 0.001

    embed = ["embed", "--model", TOK_NAME, "--pretrained", "none", "--checkpoint",
             str(tmp_path / "run" / "model.pt"), "--out", str(tmp_path / "emb"), "--imagenet",
             str(tmp_path / "imagenet"), "--mos", str(tmp_path / "mos"), "--ood-sets", "mos-SUN",
             "--negatives", str(tmp_path / "neg.tsv"), "--num-workers", "0", "--device", "cpu",
             "--batch-size", "500"]  # fmt: skip
    cli.main(embed)
    manifest = json.loads((tmp_path / "emb" / "embeddings.json").read_text())
    assert manifest["bad_images"] == {"imagenet-val": 0, "mos-SUN": 1}
    cli.main(embed)  # second run only loads
    assert len(list((tmp_path / "emb" / "cache").glob("*.npz"))) == 4

    for score in ("neglabel", "mcm"):
        out = tmp_path / f"{score}.json"
        cli.main(["evaluate", "--embeddings", str(tmp_path / "emb"), "--score", score,
                  "--out", str(out), "--convention", "ood_positive"])  # fmt: skip
        metrics = json.loads(out.read_text())
        assert set(metrics["per_set"]["mos-SUN"]) >= {"fpr95", "auroc", "aupr_in", "aupr_out"}
        assert metrics["convention"] == "ood_positive" and metrics["bad_images"]["mos-SUN"] == 1
        assert 0.0 <= metrics["id_accuracy"] <= 1.0
