"""The fault sweep: what a careful user and an unlucky cluster job meet, each with its message.

One test (or one parametrised row) per fault, numbered as the sweep found them:
1 the dry run catches what would fail later; 2 unreadable checkpoints; 3 divergence;
4 the command line's embedding cache; 5 interrupted notebooks and pretraining; 6 paths and
permissions; 7 ImageNet subsets at the command line; 8 one-line errors at the command line;
9 damaged products are recomputed; 10 a full disk; 11 an unwritable cache; 12 Ctrl-C ends with
the resume line; 13 embeddings of mismatched widths; 14 one runner per run folder; 15 advice
that fits a cache file.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from _cmakit_tiny import TOK_NAME, register_tiny, tiny_model, tiny_pairs
from PIL import Image

from cmakit import cli
from cmakit.common.io import write_json
from cmakit.engine.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from cmakit.engine.trainer import TrainConfig, train
from cmakit.models.weights import read_weights, save_model
from cmakit.pipeline import runner

torch.set_num_threads(1)
FAST = {"lr": 1e-3, "warmup_steps": 1, "batch_size": 16, "num_workers": 0, "progress": False}
OPENOOD = ("ssb_hard", "ninco", "inaturalist", "textures", "openimage_o")
WNIDS = ["n01440764", "n01443537", "n01484850"]  # ImageNet's tench, goldfish, great white shark


def _png(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((18, 18, 3), value % 256, dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def paper_tree(tmp_path_factory):
    """A complete paper-profile input tree: ImageNet (1,000 classes), MOS, OpenOOD, weights."""
    from cmakit.data.paper import MOS_SETS
    from cmakit.models.factory import register_model_configs

    root = tmp_path_factory.mktemp("paper")
    for split in ("train", "val"):
        for k in range(1000):
            _png(root / "imagenet" / split / f"n{k:08d}" / f"{k}.png", k)  # unique, as ImageNet's
    for name in MOS_SETS:
        _png(root / "mos" / name / "a.png")
    lists = root / "openood" / "benchmark_imglist" / "imagenet"
    lists.mkdir(parents=True)
    (lists / "test_imagenet.txt").write_text("imagenet_1k/val/3.png 3\nimagenet_1k/val/7.png 7\n")
    for name in OPENOOD:
        (lists / f"test_{name}.txt").write_text(f"{name}/a.png -1\n")
        folder = "images_classic" if name == "textures" else "images_largescale"
        _png(root / "openood" / folder / name / "a.png")
    register_model_configs()
    torch.manual_seed(0)
    save_model(open_clip.create_model("cmakit-micro"), root / "micro.pt", name="cmakit-micro")
    return root


def _paper_argv(tree: Path, out: Path, **sets: str) -> list[str]:
    values = {"pretrained": str(tree / "micro.pt"), "model": "cmakit-micro",
              "imagenet_root": str(tree / "imagenet"), "mos_root": str(tree / "mos"),
              "openood_root": str(tree / "openood"), **sets}  # fmt: skip
    argv = ["--profile", "paper", "--dry-run", "--out", str(out)]
    for key, value in values.items():
        argv += ["--set", f"{key}={value}"]
    return argv


# ----------------------------------------------------------------- 1. the dry run
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("lam=2", "lam=2.0 must be in [0, 1]"),
        ("finetune_lr=0", "finetune_lr=0.0 must be > 0"),
        ("mcm_temperature=0", "mcm_temperature=0.0 must be > 0"),
        ("neglabel_temperature=-1", "neglabel_temperature=-1.0 must be > 0"),
        ("device=gpu", "device='gpu' is not a device cmakit knows"),
        ("ablation_lams=[0,5]", "ablation_lams=[0.0, 5.0] must be a non-empty list of values in"),
        ("finetune_max_steps=-3", "finetune_max_steps=-3 must be >= 0"),
        ("test_prompt=a photo", "test_prompt='a photo' must contain exactly one {}"),
        ("train_prompt=a {} of {}", "train_prompt='a {} of {}' must contain exactly one {}"),
        ("finetune_batch_size=1", "finetune_batch_size=1 must be >= 2"),
    ],
)
def test_1_dry_run_refuses_out_of_range_settings(tmp_path, caplog, setting, message):
    argv = ["--profile", "smoke", "--dry-run", "--out", str(tmp_path / "run"), "--set", setting]
    assert runner.main(argv) == 2
    assert message in caplog.text


def test_1_dry_run_refuses_an_unwritable_run_folder(tmp_path, caplog):
    (tmp_path / "file").write_text("x")
    assert (
        runner.main(["--profile", "smoke", "--dry-run", "--out", str(tmp_path / "file/run")]) == 2
    )
    assert "is a file, not a folder; choose another --out" in caplog.text
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert runner.main(["--profile", "smoke", "--dry-run", "--out", str(locked / "run")]) == 2
        assert f"run folder {locked / 'run'} cannot be written" in caplog.text


def test_1_paper_dry_run_passes_on_a_complete_tree(paper_tree, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    assert runner.main(_paper_argv(paper_tree, tmp_path / "run")) == 0, caplog.text
    assert "dry run: configuration and inputs are valid" in caplog.text
    assert "negative labels: mined from WordNet pool 'neglabel'" in caplog.text
    assert not (tmp_path / "run").exists()  # a dry run creates nothing


def test_1_dry_run_reads_the_weights(paper_tree, tmp_path, caplog):
    text = tmp_path / "ViT-B-16.pt"
    text.write_text("placeholder, not weights\n")
    assert runner.main(_paper_argv(paper_tree, tmp_path / "a", pretrained=str(text))) == 2
    assert f"{text} is not a readable PyTorch weights file: it is a text file" in caplog.text
    caplog.clear()
    # the case: tiny-CLIP weights given as ViT-B-16 (died in notebook 02, KeyError: 101)
    assert runner.main(_paper_argv(paper_tree, tmp_path / "b", model="ViT-B-16")) == 2
    assert "(cmakit-model weights) does not fit model='ViT-B-16'" in caplog.text
    assert "of another shape: " in caplog.text


def test_1_dry_run_checks_every_image_set(paper_tree, tmp_path, caplog):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(paper_tree, tree)
    lists = tree / "openood" / "benchmark_imglist" / "imagenet"
    (lists / "test_ninco.txt").write_text("ninco/a.png -1\nninco/gone.png -1\n")
    shutil.rmtree(tree / "openood" / "images_classic")
    shutil.rmtree(tree / "imagenet" / "val" / "n00000007")
    (tree / "imagenet" / "val" / "n00000007").mkdir()  # ImageNet val: an empty class folder
    assert runner.main(_paper_argv(tree, tmp_path / "run")) == 2
    text = caplog.text
    gone = tree / "openood" / "images_largescale" / "ninco" / "gone.png"
    assert f"image set openood-ninco: 1 of 2 checked images do not exist (e.g. {gone}" in text
    assert f"OpenOOD set textures: image folder {tree / 'openood' / 'images_classic'} not found"
    assert f"Class folder {tree / 'imagenet' / 'val' / 'n00000007'} holds no images" in text


def test_1_dry_run_checks_wordnet(paper_tree, tmp_path, caplog, monkeypatch):
    from cmakit.data import wordnet

    def missing():
        raise LookupError(wordnet.WORDNET_INSTALL_HINT)

    monkeypatch.setattr(wordnet, "_wordnet_root", missing)
    assert runner.main(_paper_argv(paper_tree, tmp_path / "run")) == 2
    assert "WordNet (negative-label mining): WordNet 3.0 was not found" in caplog.text


def test_1_embedding_a_set_without_readable_images_names_the_set(tmp_path):
    from cmakit.data.paper import ImageFiles
    from cmakit.engine.embed import encode_images

    gone = str(tmp_path / "images_largescale" / "ninco" / "a.png")
    data = ImageFiles([(gone, -1)], name="openood-ninco")
    with pytest.raises(ValueError, match=r"No readable image to encode in image set "
                       r"'openood-ninco': all 1 images are unreadable, e\.g\. \['/"):  # fmt: skip
        encode_images(tiny_model(), data, num_workers=0, device="cpu", progress=False)


# ----------------------------------------------------------------- 2. unreadable checkpoints
def _text_and_truncated(tmp_path: Path) -> tuple[Path, Path]:
    text = tmp_path / "text.pt"
    text.write_text("these are not weights\n")
    good = tmp_path / "good.pt"
    save_model(tiny_model(), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return text, cut


def test_2_unreadable_weight_files_name_the_file(tmp_path):
    text, cut = _text_and_truncated(tmp_path)
    with pytest.raises(ValueError, match="is not a readable PyTorch weights file: it is a text"):
        read_weights(text)
    with pytest.raises(ValueError, match=r"cut\.pt is not a readable PyTorch weights file: it is "
                       r"a zip archive of [\d,]+ bytes that cannot be read: truncated or corrupt"):  # fmt: skip
        read_weights(cut)
    with pytest.raises(ValueError, match=r"cut\.pt is not a readable PyTorch training checkpoint"):
        load_checkpoint(cut)


def test_2_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, caplog):
    cfg = TrainConfig(**FAST, epochs=2, checkpoint_every_steps=1)  # 4 steps per epoch
    ref = tiny_model()
    train(ref, tiny_pairs(64), cfg, out_dir=tmp_path / "ref")
    run = tmp_path / "run"
    train(tiny_model(), tiny_pairs(64), cfg, out_dir=run)
    for ckpt in list_checkpoints(run / "checkpoints")[5:]:
        ckpt.unlink()
    (run / "model.pt").unlink()
    newest = list_checkpoints(run / "checkpoints")[-1]  # step 5, cut short by a dying job
    newest.write_bytes(newest.read_bytes()[:1000])
    resumed = tiny_model(seed=1)
    res = train(resumed, tiny_pairs(64), cfg, out_dir=run, resume=True)
    assert (
        f"skipping an unreadable checkpoint: {newest} is not a readable PyTorch training"
        in caplog.text
    )
    older = run / "checkpoints" / "step_00000004.pt"
    assert f"resuming from {older}, the newest checkpoint that loads" in caplog.text
    assert newest.with_name(newest.name + ".unreadable").is_file()
    assert res.final_step == 8
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# ----------------------------------------------------------------- 3. divergence
def _poison_at(monkeypatch, at_step: int, what: str) -> None:
    """Make optimizer step ``at_step`` leave a finite loss but an infinite multiplier (``what``
    = "scale") or a NaN weight ("weight"), as a blown-up update does."""
    from cmakit.engine import trainer

    real, calls = trainer._Stepper.step, {"n": 0}

    def step(self, micro):
        terms = real(self, micro)
        calls["n"] += 1
        if calls["n"] == at_step:
            with torch.no_grad():
                if what == "scale":
                    self.model.logit_scale.fill_(61535.0)  # exp() overflows: s = inf
                else:
                    self.model.visual.proj.view(-1)[0] = float("nan")
        return terms

    monkeypatch.setattr(trainer._Stepper, "step", step)


def test_3_infinite_multiplier_is_divergence(tmp_path, monkeypatch):
    _poison_at(monkeypatch, 3, "scale")
    cfg = TrainConfig(**FAST, epochs=1, checkpoint_every_steps=1)
    with pytest.raises(FloatingPointError, match=r"exp\(logit_scale\) became inf at step 3 .*"
                       r"last finite checkpoint: .*step_00000002\.pt"):  # fmt: skip
        train(tiny_model(), tiny_pairs(64), cfg, out_dir=tmp_path)
    assert "Infinity" not in (tmp_path / "history.jsonl").read_text()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")][-1] == "step_00000002.pt"


def test_3_non_finite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    _poison_at(monkeypatch, 2, "weight")
    cfg = TrainConfig(**FAST, epochs=1, checkpoint_every_steps=1)
    with pytest.raises(FloatingPointError, match=r"1 weight tensor\(s\) became non-finite "
                       r"\(e\.g\. visual\.proj\) at step 2 .*step_00000001\.pt"):  # fmt: skip
        train(tiny_model(), tiny_pairs(64), cfg, out_dir=tmp_path)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_00000001.pt"]


# ----------------------------------------------------------------- 4 + 7. embed: cache, subsets
@pytest.fixture()
def subset_tree(tmp_path):
    """An ImageNet-3 subset named by WordNet ids, one MOS set, and tiny-CLIP weights."""
    register_tiny()
    for k, wnid in enumerate(WNIDS):
        for i in range(2):
            _png(tmp_path / "in3" / "val" / wnid / f"{i}.png", 40 * k + i)
    for i in range(3):
        _png(tmp_path / "mos" / "SUN" / f"{i}.png", 9 * i)
    torch.manual_seed(0)
    save_model(open_clip.create_model(TOK_NAME), tmp_path / "init.pt", name=TOK_NAME)
    return tmp_path


def _embed_argv(tree: Path, *extra: str) -> list[str]:
    return ["embed", "--model", TOK_NAME, "--pretrained", str(tree / "init.pt"), "--out",
            str(tree / "emb"), "--imagenet", str(tree / "in3"), "--mos", str(tree / "mos"),
            "--ood-sets", "mos-SUN", "--num-workers", "0", "--device", "cpu", *extra]  # fmt: skip


def test_4_an_unknown_ood_set_stops_embed_before_any_image_is_encoded(subset_tree, capsys):
    argv = _embed_argv(subset_tree)
    argv[argv.index("mos-SUN")] = "mos-SUN,mos-dtd"
    assert cli.main(argv) == 1
    assert "Unknown MOS set 'dtd'; choose one of" in capsys.readouterr().err
    assert not list((subset_tree / "emb").rglob("*.npz"))  # nothing encoded, not even ID


def test_4_and_7_second_embed_hits_the_cache_on_an_imagenet_subset(subset_tree, monkeypatch):
    from cmakit.engine.embed import EmbeddingCache
    from cmakit.models.transforms import paper_transform_key

    keys, real = [], EmbeddingCache.images

    def spy(self, model, data, *, preprocessing, **kw):
        keys.append(preprocessing)
        return real(self, model, data, preprocessing=preprocessing, **kw)

    monkeypatch.setattr(EmbeddingCache, "images", spy)
    assert cli.main(_embed_argv(subset_tree)) == 0
    files = {p: p.stat().st_mtime_ns for p in (subset_tree / "emb" / "cache").glob("*.npz")}
    assert cli.main(_embed_argv(subset_tree)) == 0
    after = {p: p.stat().st_mtime_ns for p in (subset_tree / "emb" / "cache").glob("*.npz")}
    assert after == files and len(files) == 3  # ID images, SUN, ID prompts: all loaded again
    assert set(keys) == {paper_transform_key(16)} and "0x" not in keys[0]
    manifest = json.loads((subset_tree / "emb" / "embeddings.json").read_text())
    with np.load(subset_tree / "emb" / manifest["id"]) as z:
        assert sorted(set(z["labels"].tolist())) == [0, 1, 2]


def test_7_class_names_of_imagenet_subsets_and_other_trees(tmp_path):
    from cmakit.data.paper import imagefolder_classnames, imagenet_split

    for wnid in WNIDS:
        _png(tmp_path / "in3" / "val" / wnid / "0.png")
    assert imagefolder_classnames(tmp_path / "in3" / "val") == [
        "tench",
        "goldfish",
        "great white shark",
    ]
    with pytest.raises(ValueError, match="holds 3 class folders, expected 1000"):
        imagenet_split("val", tmp_path / "in3")  # the paper profile keeps the 1,000-class check
    for name in ("cat", "dog"):
        _png(tmp_path / "pets" / "val" / name / "0.png")
    with pytest.raises(ValueError, match=r"2 of 2 class folders are not ImageNet WordNet ids "
                       r"\(e\.g\. 'cat'\); give their names with --classnames FILE"):  # fmt: skip
        imagefolder_classnames(tmp_path / "pets" / "val")
    (tmp_path / "names.txt").write_text("tabby cat\ncorgi\n")
    assert imagefolder_classnames(tmp_path / "pets" / "val", tmp_path / "names.txt") == [
        "tabby cat",
        "corgi",
    ]
    (tmp_path / "map.tsv").write_text("dog\tcorgi\ncat\ttabby cat\n")
    assert imagefolder_classnames(tmp_path / "pets" / "val", tmp_path / "map.tsv") == [
        "tabby cat",
        "corgi",
    ]


# ----------------------------------------------------------------- 5. interruptions
def _resume_line(caplog) -> str:
    return next(r.getMessage() for r in caplog.records if " stopped: " in r.getMessage())


def test_5_killed_kernel_says_where_and_how_to_resume(tmp_path, monkeypatch, caplog):
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("run_dir = 'x'")
    params.metadata["tags"] = ["parameters"]
    kill = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer does"
    nb.cells = [params, nbformat.v4.new_code_cell(kill)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, tmp_path / "nbs" / "03_embed.ipynb")
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", tmp_path / "nbs")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--profile", "smoke", "--out", str(out), "--only", "03", "--set", "lam=0.2"])
    assert exit_info.value.code == 1
    assert _resume_line(caplog) == (
        "notebook 03_embed.ipynb stopped: its kernel died (killed by the system, most often for "
        f"lack of memory, or crashed). Partially executed notebook: {out / 'notebooks'}"
        f"/03_embed.ipynb. Resume with: bash run_all.sh --profile smoke --out {out} --only 03 "
        "--set lam=0.2"
    )
    assert (out / "notebooks" / "03_embed.ipynb").is_file()


def test_5_ctrl_c_says_where_and_how_to_resume(tmp_path, monkeypatch, caplog):
    import papermill

    def interrupted(src, dst, **kw):
        Path(dst).write_text("{}")  # papermill writes the notebook as it goes
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--profile", "smoke", "--out", str(out), "--only", "03", "04"])
    assert exit_info.value.code == 130
    assert _resume_line(caplog) == (
        "notebook 03_embed.ipynb stopped: interrupted (Ctrl-C). Partially executed notebook: "
        f"{out / 'notebooks' / '03_embed.ipynb'}. Resume with: bash run_all.sh --profile smoke "
        f"--out {out} --only 03 04"
    )


class _FakeWorld:
    """Stands in for the embedded world: only the pretraining pairs are read."""

    def __init__(self, config) -> None:
        self.config = config

    def pretrain_dataset(self, tokenizer, *, uint8: bool = False):
        g = torch.Generator().manual_seed(0)
        size = self.config.image_size
        images = torch.randint(0, 256, (64, 3, size, size), generator=g, dtype=torch.uint8)
        return torch.utils.data.TensorDataset(images, tokenizer(["a red circle"] * 64).long())


def test_5_interrupted_pretraining_resumes_from_its_checkpoints(tmp_path, monkeypatch, caplog):
    from cmakit.data.world import world_config
    from cmakit.engine import pretrain, trainer

    wcfg = world_config("smoke")
    pcfg = pretrain.pretrain_config("smoke", steps=6, batch_size=16, progress=False, threads=1)
    ref, _, _ = pretrain.pretrain_clip(
        wcfg, pcfg, cache_dir=tmp_path / "ref", world=_FakeWorld(wcfg)
    )

    real = trainer.write_checkpoint

    def killed_after_step_3(files, stepper, st, meta, cfg):
        path = real(files, stepper, st, meta, cfg)
        if st.step == 3:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(trainer, "write_checkpoint", killed_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        pretrain.pretrain_clip(wcfg, pcfg, cache_dir=tmp_path / "c", world=_FakeWorld(wcfg))
    work = [p for p in (tmp_path / "c" / "pretrain").iterdir() if p.is_dir()]
    assert [p.name for p in work] == [f".work-cmakit-micro-{pretrain.pretrain_key(wcfg, pcfg)}"]
    monkeypatch.setattr(trainer, "write_checkpoint", real)
    caplog.set_level(logging.INFO)
    model, _, info = pretrain.pretrain_clip(
        wcfg, pcfg, cache_dir=tmp_path / "c", world=_FakeWorld(wcfg)
    )
    assert "resumed from" in caplog.text and "at step 3" in caplog.text
    assert info["steps"] == 6
    left = sorted(p.name for p in (tmp_path / "c" / "pretrain").iterdir())
    assert left == [f"cmakit-micro-{info['key']}"]  # work folder and lock file gone
    for a, b in zip(ref.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# ----------------------------------------------------------------- 6. paths and permissions
def test_6_relative_paths_are_the_callers(tmp_path, monkeypatch, caplog):
    caller = tmp_path / "caller"
    caller.mkdir()
    monkeypatch.chdir(tmp_path)  # as run_all.sh, which changes into the checkout
    monkeypatch.setenv("CMAKIT_CALLER_CWD", str(caller))
    caplog.set_level(logging.INFO)
    argv = ["--profile", "smoke", "--dry-run", "--out", "myrun", "--set", "cache_dir=cache"]
    assert runner.main(argv) == 0
    assert f"in {caller / 'myrun'}" in caplog.text

    from cmakit.pipeline.config import resolve, with_absolute_paths

    cfg = resolve({"profile": "paper", "run_dir": "r", "pretrained": "w/ViT-B-16.pt",
                   "imagenet_root": "data/in", "mos_root": "~/mos", "openood_root": "/abs/oo",
                   "cache_dir": "c"})  # fmt: skip
    fixed = with_absolute_paths(cfg, caller)
    assert fixed.run_dir == str(caller / "r") and fixed.cache_dir == str(caller / "c")
    assert fixed.pretrained == str(caller / "w" / "ViT-B-16.pt")
    assert fixed.imagenet_root == str(caller / "data" / "in")
    assert fixed.mos_root == str(Path("~/mos").expanduser()) and fixed.openood_root == "/abs/oo"
    tag = with_absolute_paths(resolve({"profile": "paper", "pretrained": "openai"}), caller)
    assert tag.pretrained == "openai"


def test_6_run_all_records_the_callers_folder_before_changing_into_the_checkout():
    script = (Path(__file__).resolve().parents[1] / "run_all.sh").read_text()
    assert 0 <= script.index('export CMAKIT_CALLER_CWD="$PWD"') < script.index('cd "$(dirname')


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_6_outputs_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "summary.json", {"a": 1})
        save_checkpoint(tmp_path / "step_00000001.pt", {"state_dict": {}})
    finally:
        os.umask(old)
    for name in ("summary.json", "step_00000001.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


# ----------------------------------------------------------------- 8. one-line errors
def test_8_expected_errors_are_one_message_bugs_keep_tracebacks(subset_tree, tmp_path, capsys):
    text, _ = _text_and_truncated(tmp_path)
    assert cli.main(_embed_argv(subset_tree, "--checkpoint", str(text))) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cmakit embed: error: {text} is not a readable PyTorch weights file")
    assert "Traceback" not in err and "--debug shows the traceback" in err

    argv = _embed_argv(subset_tree)
    argv[argv.index("--imagenet") + 1] = str(tmp_path / "nowhere")
    assert cli.main(argv) == 1
    assert f"imagenet root {tmp_path / 'nowhere'} is not a folder" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):  # --debug: the traceback, for a bug report
        cli.main(["--debug", *argv])


# ----------------------------------------------------------------- installing beside a torch
def test_install_declares_ranges_and_the_lock_pins_a_tested_set_inside_them():
    from packaging.requirements import Requirement  # installed with pytest

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    reqs = [
        Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]
    ]
    lock = {}
    for line in (root / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            lock[name.lower().replace("_", "-")] = version
    for req in reqs:
        ops = {s.operator for s in req.specifier}
        assert ops == {">=", "<"}, f"{req}: give a range (oldest tested, next major), not a pin"
        pinned = lock.get(req.name.lower().replace("_", "-"))
        assert pinned and req.specifier.contains(pinned), f"{req}: lock has {pinned}"
    setup = (root / "scripts" / "setup.sh").read_text()
    assert '-c "$CMAKIT_ROOT/requirements.lock"' in setup
    assert '"$CMAKIT_ROOT/pyproject.toml" "$CMAKIT_ROOT/requirements.lock" | sha256sum' in setup
    assert "-c requirements.lock" in (root / "environment.yml").read_text()


# ---------------------------------------------------------------- 9: damaged products
def _bundle(d: int = 8):
    from cmakit.engine.bundle import EmbeddingBundle

    rng = np.random.default_rng(0)

    def unit(n: int) -> np.ndarray:
        x = rng.normal(size=(n, d)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return EmbeddingBundle(id_images=unit(6), id_labels=np.arange(6) % 2, id_texts=unit(2),
                           neg_texts=unit(3), logit_scale=100.0, ood={"far": unit(4)})  # fmt: skip


def test_9_the_load_check_finds_truncated_corrupt_and_empty_products(tmp_path):
    from cmakit.pipeline.products import damage, damaged_products

    run = tmp_path / "run"
    good = _bundle().save(run / "embeddings" / "good.npz")
    cut = run / "embeddings" / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    flipped = bytearray(good.read_bytes())
    flipped[len(flipped) // 3] ^= 0xFF  # inside a member's data: its CRC fails
    (run / "embeddings" / "flipped.npz").write_bytes(bytes(flipped))
    write_json(run / "metrics" / "ok.json", {"a": 1})
    (run / "metrics" / "half.json").write_text('{"record": {"id_acc')
    (run / "negatives").mkdir()
    (run / "negatives" / "empty.tsv").write_bytes(b"")
    (run / "embeddings" / ".partial.npz.abc.tmp").write_bytes(b"x")  # a temp name: not a product
    assert damage(good) is None and damage(run / "metrics" / "ok.json") is None
    found = {p.name: why for p, why in damaged_products(run)}
    assert set(found) == {"cut.npz", "flipped.npz", "half.json", "empty.tsv"}
    assert found["empty.tsv"] == "empty file" and "BadZipFile" in found["cut.npz"]


def test_9_a_stage_recomputes_a_damaged_product_with_a_warning_naming_it(tmp_path, caplog):
    from cmakit.engine.bundle import EmbeddingBundle
    from cmakit.pipeline.products import reuse

    path = _bundle().save(tmp_path / "emb.npz")
    assert reuse(path, EmbeddingBundle.load).sizes()["far"] == 4
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"emb\.npz is not a readable embeddings file"):
        EmbeddingBundle.load(path)
    assert reuse(path, EmbeddingBundle.load) is None and not path.exists()
    assert f"damaged product {path}" in caplog.text and "it is recomputed" in caplog.text


@pytest.mark.slow
def test_9_runner_recomputes_a_truncated_embeddings_file_instead_of_keeping_it(tmp_path, caplog):
    from cmakit.engine.bundle import EmbeddingBundle

    out = tmp_path / "run"
    argv = ["--profile", "smoke", "--out", str(out), "--only", "03",
            "--set", f"cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    assert runner.main(argv) == 0
    victim = sorted((out / "embeddings").glob("lam0-seed0-*.npz"))[0]
    size = victim.stat().st_size
    victim.write_bytes(victim.read_bytes()[: size // 2])
    caplog.clear()
    assert runner.main(argv) == 0
    assert f"damaged product {victim}" in caplog.text
    assert "03_embed.ipynb is up to date" not in caplog.text
    assert EmbeddingBundle.load(victim).id_images.shape[0] > 0  # recomputed, whole again
    assert victim.stat().st_size == size


# ---------------------------------------------------------------- 10: a full disk
@pytest.mark.parametrize("where", ["runner", "kernel"])
def test_10_a_full_disk_is_one_line_with_the_path_and_the_resume_command(
    tmp_path, monkeypatch, caplog, where
):
    import errno

    import papermill

    def full(src, dst, **kw):
        if where == "runner":  # papermill writing the executed notebook
            raise OSError(errno.ENOSPC, "No space left on device")
        raise papermill.PapermillExecutionError(
            cell_index=3, exec_count=4, source="train(...)", ename="OSError",
            evalue="[Errno 28] No space left on device", traceback=["..."] * 60,
        )  # fmt: skip

    monkeypatch.setattr(papermill, "execute_notebook", full)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--profile", "smoke", "--out", str(out), "--only", "02", "03"])
    assert exit_info.value.code == 1
    line = _resume_line(caplog)
    assert line.startswith(
        f"notebook 02_finetune.ipynb stopped: the disk is full (no space left on device) while "
        f"writing under {out} ("
    )
    assert "MB free there now); free some space, or move the run with --out" in line
    assert line.endswith(f"Resume with: bash run_all.sh --profile smoke --out {out} --only 02 03")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0].getMessage()


# ---------------------------------------------------------------- 11: an unwritable cache
def test_11_an_unwritable_cache_is_refused_before_any_work(tmp_path, monkeypatch, caplog):
    (tmp_path / "file").write_text("x")
    bad = tmp_path / "file" / "cache"
    out = str(tmp_path / "run")
    argv = ["--profile", "smoke", "--out", out, "--set", f"cache_dir={bad}"]
    assert runner.main(argv) == 2  # not a dry run: it stops before any notebook
    assert f"cache folder {bad}: {tmp_path / 'file'} is a file, not a folder" in caplog.text
    assert "--set cache_dir=DIR at a writable folder" in caplog.text
    assert not (tmp_path / "run" / "notebooks").exists()
    caplog.clear()
    monkeypatch.setenv("CMAKIT_CACHE", str(bad))
    assert runner.main(["--profile", "smoke", "--out", out, "--dry-run"]) == 2
    assert "point CMAKIT_CACHE=DIR (or --set cache_dir=DIR) at a writable folder" in caplog.text


# ---------------------------------------------------------------- 12: Ctrl-C
@pytest.mark.slow
def test_12_ctrl_c_ends_with_the_resume_line_and_nothing_after_it(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("run_dir = 'x'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("import time\nprint('sleeping', flush=True)\n"
                                                  "time.sleep(120)")]  # fmt: skip
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, tmp_path / "nbs" / "03_embed.ipynb")
    out = tmp_path / "run"
    # SIGINT as in a terminal: a job started in the background of a non-interactive shell (a CI
    # script's `cmd &`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from pathlib import Path; from cmakit.pipeline import runner; "
            f"runner.NOTEBOOK_DIR = Path({str(tmp_path / 'nbs')!r}); "
            f"sys.exit(runner.main(['--profile', 'smoke', '--out', {str(out)!r}, '--only', '03']))")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    partial = out / "notebooks" / "03_embed.ipynb"
    while time.monotonic() < deadline and "sleeping" not in (
        partial.read_text() if partial.is_file() else ""
    ):
        time.sleep(0.5)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    try:  # 1-2 s
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(
            f"the runner did not end within 60 s of Ctrl-C:\n{err[-3000:]}"
        ) from None
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130, err[-2000:]
    assert " stopped: interrupted (Ctrl-C)" in lines[-1] and "Resume with: " in lines[-1], err
    assert "Traceback" not in err and "DeadKernelError" not in err, err


def test_12_after_ctrl_c_the_kernel_death_reports_are_dropped_and_nothing_else():
    """Both reports of the kernel's death come after the resume line when the run's kernel is
    shut down (asyncio's unretrieved DeadKernelError, nbclient's line on papermill's logger);
    the filter drops exactly those, once installed."""
    from nbclient.exceptions import DeadKernelError

    from cmakit.pipeline.runner import DEAD_KERNEL_LOGGERS, _DeadKernelFilter

    def record(msg, exc=None):
        info = (type(exc), exc, None) if exc else None
        return logging.LogRecord("papermill", logging.ERROR, __file__, 1, msg, None, info)

    keep = _DeadKernelFilter().filter
    assert not keep(record("Kernel died while waiting for execute reply."))
    assert not keep(record("Task exception was never retrieved", DeadKernelError("Kernel died")))
    assert keep(record("Executing notebook with kernel: python3"))
    assert keep(record("Task exception was never retrieved", RuntimeError("other")))
    assert set(DEAD_KERNEL_LOGGERS) == {"asyncio", "papermill"}


# ---------------------------------------------------------------- 13: mismatched widths
def test_13_evaluate_on_embeddings_of_two_widths_names_the_set_and_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "emb"
    (folder / "cache").mkdir(parents=True)
    np.savez(folder / "cache" / "id.npz", embeddings=rng.normal(size=(6, 8)).astype(np.float32),
             labels=np.arange(6) % 2)  # fmt: skip
    np.savez(folder / "cache" / "text.npz", embeddings=rng.normal(size=(2, 8)).astype(np.float32))
    np.savez(folder / "cache" / "sun.npz", embeddings=rng.normal(size=(5, 4)).astype(np.float32))
    write_json(folder / "embeddings.json", {
        "id": "cache/id.npz", "id_text": "cache/text.npz", "neg_text": None,
        "ood": {"mos-SUN": "cache/sun.npz"}, "id_set": "imagenet-val", "bad_images": {},
        "bad_paths": {}, "logit_scale": 100.0,
    })  # fmt: skip
    argv = ["evaluate", "--embeddings", str(folder), "--score", "mcm",
            "--out", str(tmp_path / "m.json")]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert f"mos-SUN ({folder / 'cache' / 'sun.npz'}) holds 5x4 embeddings" in err
    assert f"id ({folder / 'cache' / 'id.npz'}) holds 8-wide rows" in err
    assert "Traceback" not in err and "gufunc" not in err


def test_13_a_bundle_of_two_widths_is_refused_naming_the_layer():
    import dataclasses

    good = _bundle()
    with pytest.raises(ValueError, match=r"ood/near holds 3x5 embeddings but id_images holds 8"):
        dataclasses.replace(good, ood={**good.ood, "near": np.ones((3, 5), np.float32)})


# ---------------------------------------------------------------- 14: one runner per folder
def test_14_a_second_runner_on_a_busy_run_folder_refuses_naming_the_first(tmp_path, caplog):
    from cmakit.pipeline.lock import holder, run_folder_lock

    out = tmp_path / "run"
    with run_folder_lock(out):
        assert holder(out)["pid"] == os.getpid()
        assert runner.main(["--profile", "smoke", "--out", str(out), "--only", "03"]) == 2
    assert f"run folder {out} is in use by process {os.getpid()} (started " in caplog.text
    assert "wait for it to finish, or give this run another --out" in caplog.text
    with run_folder_lock(out):  # released when the holder's block ends
        pass


def test_14_the_lock_is_released_when_its_process_dies(tmp_path):
    import subprocess
    import sys

    from cmakit.pipeline.lock import RunFolderBusy, run_folder_lock

    code = ("import os, sys, time; from cmakit.pipeline.lock import run_folder_lock\n"
            f"with run_folder_lock({str(tmp_path)!r}):\n"
            "    print('held', flush=True); time.sleep(60)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(RunFolderBusy, match=f"in use by process {proc.pid}"):
        with run_folder_lock(tmp_path):
            pass
    proc.kill()
    proc.wait()
    with run_folder_lock(tmp_path):  # no stale lock after a kill
        pass


# ---------------------------------------------------------------- 15: cache-file advice
def test_15_a_corrupt_cache_file_is_to_be_deleted_a_given_file_copied_again(tmp_path):
    from cmakit.common.io import tag_cache
    from cmakit.models.weights import load_torch_file

    cache = tag_cache(tmp_path / "cache")
    for folder, advice in [(cache / "pretrained" / "abc", "delete it and run again"),
                           (tmp_path / "given", "Copy the file again")]:  # fmt: skip
        folder.mkdir(parents=True)
        (folder / "model.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
        with pytest.raises(ValueError, match=advice):
            load_torch_file(folder / "model.pt", what="weights file")
