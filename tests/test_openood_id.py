"""OpenOOD v1.5's ID list as Table 2's ID test set, the full ImageNet val as Table 1's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmakit.core.metrics import ood_metrics
from cmakit.core.scores import mcm_score
from cmakit.data.paper import OPENOOD_ID_SUBSET, imagenet_split, openood_id_subset
from cmakit.engine.bundle import EmbeddingBundle, surviving_rows
from cmakit.engine.evaluate import ScoreSettings, ood_results
from cmakit.pipeline.config import resolve
from cmakit.pipeline.run_data import paper_benchmark
from cmakit.pipeline.stages.records import score_settings

CLASSES = ["tench", "goldfish", "great white shark"]


def _png(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value % 256, dtype=np.uint8)).save(path)


def _val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}.JPEG"


def _openood_list(root: Path, lines: list[str]) -> None:
    lists = root / "benchmark_imglist" / "imagenet"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "test_imagenet.txt").write_text("".join(f"{line}\n" for line in lines))


@pytest.fixture
def small_val(tmp_path) -> Path:
    """3 class folders, 2 val images each, named as ImageNet's val files (1..6)."""
    for i in range(6):
        wnid = ["n01440764", "n01443537", "n01484850"][i // 2]
        _png(tmp_path / "imagenet" / "val" / wnid / _val_name(i + 1), 30 * i)
    return tmp_path


def test_openood_id_list_matched_to_val_by_file_name(small_val):
    val = imagenet_split("val", small_val / "imagenet", classnames=CLASSES)
    _openood_list(small_val / "openood", [
        f"imagenet_1k/val/{_val_name(6)} 2", f"imagenet_1k/val/{_val_name(2)} 0",
        f"imagenet_1k/val/{_val_name(3)} 1",
    ])  # fmt: skip
    rows = openood_id_subset(val, small_val / "openood")
    assert rows == [1, 2, 5]
    assert [Path(val.samples[i][0]).name for i in rows] == [_val_name(k) for k in (2, 3, 6)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"imagenet_1k/val/{_val_name(9)} 0", "1 of 1 images not in the ImageNet val set"),
        (f"imagenet_1k/val/{_val_name(1)} 2", "labelled differently from the val class folders"),
    ],
)
def test_openood_id_list_problems_are_named(small_val, line, message):
    val = imagenet_split("val", small_val / "imagenet", classnames=CLASSES)
    _openood_list(small_val / "openood", [line])
    with pytest.raises(ValueError, match=message):
        openood_id_subset(val, small_val / "openood")


def test_missing_openood_id_list_shows_the_layout(small_val):
    val = imagenet_split("val", small_val / "imagenet", classnames=CLASSES)
    (small_val / "openood").mkdir()
    with pytest.raises(FileNotFoundError, match="test_imagenet.txt not found"):
        openood_id_subset(val, small_val / "openood")


def test_paper_benchmark_chooses_openood_list_for_table2_and_full_val_for_table1(tmp_path):
    for k in range(1000):
        _png(tmp_path / "imagenet" / "val" / f"n{k:08d}" / _val_name(k + 1), k)
    for name in ("iNaturalist", "SUN", "Places", "Textures"):
        _png(tmp_path / "mos" / name / "a.png")
    lists = tmp_path / "openood" / "benchmark_imglist" / "imagenet"
    lists.mkdir(parents=True)
    for name in ("ssb_hard", "ninco", "inaturalist", "textures", "openimage_o"):
        (lists / f"test_{name}.txt").write_text(f"{name}/a.png -1\n")
    for folder in ("images_largescale", "images_classic"):  # the OoD lists' image roots
        (tmp_path / "openood" / folder).mkdir()
    _openood_list(tmp_path / "openood", [f"imagenet_1k/val/{_val_name(k + 1)} {k}"
                                         for k in (999, 10, 500)])  # fmt: skip
    cfg = resolve(profile="paper", imagenet_root=str(tmp_path / "imagenet"),
                  mos_root=str(tmp_path / "mos"), openood_root=str(tmp_path / "openood"))  # fmt: skip
    bench = paper_benchmark(cfg, None)
    assert len(bench.id_test) == 1000  # Table 1 (MOS): the full val
    assert bench.id_subsets == {OPENOOD_ID_SUBSET: [10, 500, 999]}  # Table 2: OpenOOD's list
    settings = score_settings(cfg)
    assert settings.id_subsets == {"near": OPENOOD_ID_SUBSET, "far": OPENOOD_ID_SUBSET}
    assert settings.id_subset_of("ninco") == OPENOOD_ID_SUBSET
    assert settings.id_subset_of("mos_sun") is None
    assert score_settings(resolve(profile="smoke")).id_subsets == {}  # the world: one ID set


def _unit(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    x[:, 0] += shift
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _bundle() -> EmbeddingBundle:
    texts = _unit(3, 8, 1, shift=2.0)
    return EmbeddingBundle(
        id_images=_unit(30, 8, 2, shift=1.0), id_labels=np.arange(30) % 3, id_texts=texts,
        neg_texts=_unit(4, 8, 3), logit_scale=50.0,
        ood={"ninco": _unit(12, 8, 4, shift=0.5), "mos_sun": _unit(12, 8, 5, shift=0.5)},
        id_subsets={OPENOOD_ID_SUBSET: np.arange(0, 30, 3)},
    )  # fmt: skip


def test_each_group_is_measured_against_its_own_id_set():
    bundle = _bundle()
    settings = ScoreSettings(groups={"near": ["ninco"], "mos": ["mos_sun"]},
                             id_subsets={"near": OPENOOD_ID_SUBSET}, scores=("mcm",))  # fmt: skip
    got = ood_results(bundle, settings)["mcm"]
    id_all = mcm_score(bundle.id_images, bundle.id_texts)
    rows = bundle.id_subsets[OPENOOD_ID_SUBSET]
    ninco = mcm_score(bundle.ood["ninco"], bundle.id_texts)
    sun = mcm_score(bundle.ood["mos_sun"], bundle.id_texts)
    assert got["ninco"] == pytest.approx(ood_metrics(id_all[rows], ninco))
    assert got["mos_sun"] == pytest.approx(ood_metrics(id_all, sun))
    assert got["ninco"]["auroc"] != pytest.approx(ood_metrics(id_all, ninco)["auroc"])
    assert got["near_mean"]["auroc"] == got["ninco"]["auroc"]


def test_id_subsets_survive_save_load_and_unreadable_images(tmp_path):
    bundle = _bundle()
    back = EmbeddingBundle.load(bundle.save(tmp_path / "b.npz"))
    np.testing.assert_array_equal(back.id_subsets[OPENOOD_ID_SUBSET], np.arange(0, 30, 3))
    with pytest.raises(KeyError, match="no ID subset 'other'"):
        back.id_rows("other")
    # paths a..f, c and e unreadable: subset [1, 2, 5] (b, c, f) -> rows of b and f = [1, 3]
    rows = surviving_rows([1, 2, 5], list("abcdef"), ["c", "e"])
    assert rows.tolist() == [1, 3]
    assert surviving_rows([0, 3], list("abcd"), []).tolist() == [0, 3]


def test_settings_refuse_a_subset_of_an_unknown_group():
    with pytest.raises(ValueError, match=r"id_subsets names groups \['near'\]"):
        ScoreSettings(groups={"far": ["x"]}, id_subsets={"near": OPENOOD_ID_SUBSET})


@pytest.mark.slow
def test_evaluate_measures_openood_against_openood_id_list_and_mos_against_all(tmp_path):
    """`embed` records the rows of OpenOOD's ID list (fixture tree: every other class's val
    image); `evaluate` scores OpenOOD's sets against them and MOS against the full val."""
    import json

    import open_clip
    from _cmakit_tiny import TOK_NAME, register_tiny

    from cmakit import cli
    from cmakit.core.metrics import auroc
    from cmakit.data.fixtures import write_paper_tree
    from cmakit.models.weights import save_model
    from cmakit.pipeline.commands import load_bundle

    register_tiny()
    roots = write_paper_tree(tmp_path / "data", per_ood_set=6, size=12)
    save_model(open_clip.create_model(TOK_NAME), tmp_path / "init.pt", name=TOK_NAME)
    emb = tmp_path / "emb"
    assert cli.main(["embed", "--model", TOK_NAME, "--pretrained", str(tmp_path / "init.pt"),
                     "--out", str(emb), "--imagenet", str(roots["imagenet"]), "--mos",
                     str(roots["mos"]), "--openood", str(roots["openood"]), "--ood-sets",
                     "openood-ninco,openood-textures,mos-SUN", "--num-workers", "0",
                     "--device", "cpu", "--batch-size", "500"]) == 0  # fmt: skip
    manifest = json.loads((emb / "embeddings.json").read_text())
    assert manifest["id_subsets"][OPENOOD_ID_SUBSET] == list(range(0, 1000, 2))

    out = tmp_path / "mcm.json"
    assert (
        cli.main(["evaluate", "--embeddings", str(emb), "--score", "mcm", "--out", str(out)]) == 0
    )
    got = json.loads(out.read_text())
    bundle, _ = load_bundle(emb, need_negatives=False)
    id_all = mcm_score(bundle.id_images, bundle.id_texts)
    openood_ids = id_all[0::2]
    for name in ("openood-ninco", "openood-textures"):
        ood = mcm_score(bundle.ood[name], bundle.id_texts)
        assert got["per_set"][name]["auroc"] == pytest.approx(auroc(openood_ids, ood))
    sun = mcm_score(bundle.ood["mos-SUN"], bundle.id_texts)
    assert got["per_set"]["mos-SUN"]["auroc"] == pytest.approx(auroc(id_all, sun))
    assert got["id_sets"]["near"].startswith("OpenOOD v1.5's ID list")
    assert got["id_sets"]["mos"] == "ImageNet-1k val (all images)"
    assert got["id_subset_sizes"] == {OPENOOD_ID_SUBSET: 500}

    # embeddings without the rows (an older cmakit) are refused, not scored against all of val
    del manifest["id_subsets"]
    (emb / "embeddings.json").write_text(json.dumps(manifest))
    assert cli.main(["evaluate", "--embeddings", str(emb), "--score", "mcm", "--out",
                     str(tmp_path / "old.json")]) == 1  # fmt: skip
    assert not (tmp_path / "old.json").exists()
