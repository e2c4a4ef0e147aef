"""`explore` on each kind of folder (plain arrays, `embed` folders, run folders), on arrays, and
its one-line errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import cmakit
from cmakit import cli
from cmakit.common.io import write_json
from cmakit.pipeline.explore import load_source
from cmakit.pipeline.explore_sources import folder_kind, from_arrays

D, N, C, M, N_OOD = 8, 30, 3, 5, 12


def _raw(rng: np.random.Generator, n: int) -> np.ndarray:
    return (3.0 * rng.normal(size=(n, D))).astype(np.float32)  # not normalised: the loader does


def _arrays_folder(path, seed: int = 0, *, thumbs: bool = True):
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    (path / "ood").mkdir(exist_ok=True)
    np.save(path / "id_images.npy", _raw(rng, N))
    np.save(path / "id_texts.npy", _raw(rng, C))
    np.save(path / "id_labels.npy", np.arange(N) % C)
    (path / "class_names.txt").write_text("cat\ndog\nbird\n")
    np.save(path / "neg_texts.npy", _raw(rng, M))
    (path / "neg_names.txt").write_text("\n".join(f"word{i}" for i in range(M)) + "\n")
    np.save(path / "ood" / "far.npy", _raw(rng, N_OOD))
    if thumbs:
        for i in range(N_OOD):
            Image.new("RGB", (20, 10), (10 * i, 0, 0)).save(path / f"img{i}.png")
        (path / "ood" / "far.txt").write_text(
            "\n".join(str(path / f"img{i}.png") for i in range(N_OOD))
        )
    return path


def _embed_folder(path, seed: int = 0):
    """The layout `python -m cmakit embed` writes: cache files and embeddings.json."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    np.savez(path / "id.npz", embeddings=_raw(rng, N), labels=np.arange(N) % C)
    np.savez(path / "text.npz", embeddings=_raw(rng, C))
    np.savez(path / "neg.npz", embeddings=_raw(rng, M))
    np.savez(path / "ood.npz", embeddings=_raw(rng, N_OOD), labels=np.zeros(N_OOD, int))
    negatives = path / "neg.txt"
    negatives.write_text("\n".join(f"a photo of a word{i}" for i in range(M)) + "\n")
    (path / "class_names.txt").write_text("cat\ndog\nbird\n")
    write_json(path / "embeddings.json", {
        "id": "id.npz", "id_text": "text.npz", "neg_text": "neg.npz", "ood": {"mos-SUN": "ood.npz"},
        "negatives": str(negatives), "logit_scale": 50.0, "id_set": "imagenet-val",
        "bad_images": {}, "bad_paths": {}})  # fmt: skip
    return path


def test_arrays_folder_is_normalised_named_and_has_thumbnails(tmp_path):
    folder = _arrays_folder(tmp_path / "arrays")
    assert folder_kind(folder) == "arrays"
    src = load_source([folder])
    ((name, bundle),) = src.bundles.items()
    assert name == "arrays"
    for x in (bundle.id_images, bundle.id_texts, bundle.neg_texts, bundle.ood["far"]):
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    raw = np.load(folder / "id_images.npy")
    np.testing.assert_allclose(bundle.id_images[4], raw[4] / np.linalg.norm(raw[4]), rtol=1e-5)
    assert src.labels["id_images"][:4] == ["cat", "dog", "bird", "cat"]
    assert src.neg_names == [f"word{i}" for i in range(M)] and src.class_names[1] == "dog"
    assert src.labels["ood/far"][2] == "arrays/img2.png"
    pixels = src.thumbnails["ood/far"](np.array([3]))  # read on demand, only the rows drawn
    assert pixels.shape == (1, 48, 48, 3) and (pixels[0, :, :, 0] == 30).all()


def test_embed_folder_reads_the_manifest_and_its_negatives(tmp_path):
    folder = _embed_folder(tmp_path / "zero-shot")
    assert folder_kind(folder) == "embed"
    src = load_source([folder])
    bundle = src.bundles["zero-shot"]
    assert bundle.logit_scale == 50.0 and list(bundle.ood) == ["mos-SUN"]
    assert src.neg_names[0] == "a photo of a word0" and src.labels["id_images"][2] == "bird"
    np.testing.assert_allclose(np.linalg.norm(bundle.ood["mos-SUN"], axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_explore_writes_a_page_of_each_kind(tmp_path):
    arrays = _arrays_folder(tmp_path / "arrays")
    assert (
        cli.main(["explore", str(arrays), "--out", str(tmp_path / "a.html"), "--alphas", "0"]) == 0
    )
    page = (tmp_path / "a.html").read_text()
    assert "cmakitExplorer" in page and "OoD far" in page
    assert '"labels":["joint PCA","gap direction"]' in page  # one model: no shared view
    # two embed folders of the same data: two models, drawn with their paths in shared axes
    folders = [_embed_folder(tmp_path / "zero-shot", 0), _embed_folder(tmp_path / "cma", 1)]
    out = cmakit.explore(
        folders, out=tmp_path / "b.html", alphas=[0.0, 1.0], scores=["mcm", "energy"]
    )
    page = out.read_text()
    assert '"labels":["joint PCA","gap direction","shared PCA (all models)"]' in page
    assert '"colour by","options":["group","MCM","Energy"]' in page
    assert '"options":["zero-shot","cma"]' in page
    # arrays given directly
    rng = np.random.default_rng(3)
    out = cmakit.explore(_raw(rng, 20), _raw(rng, C), class_names=["a", "b", "c"],
                         ood={"x": _raw(rng, 9)}, out=tmp_path / "c.html", alphas=[0.0])  # fmt: skip
    assert "OoD x" in out.read_text() and not list(tmp_path.glob("*.tmp*"))


def _error(capsys, argv) -> str:
    assert cli.main(["explore", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cmakit explore: error: ")
    return err.splitlines()[0]


def test_bad_folders_get_one_line_naming_the_file(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds none of" in _error(capsys, [str(empty)])
    assert "is not a folder" in _error(capsys, [str(tmp_path / "nowhere")])

    wide = _arrays_folder(tmp_path / "wide", thumbs=False)
    np.save(wide / "ood" / "far.npy", np.ones((4, D + 1), np.float32))
    line = _error(capsys, [str(wide)])
    assert f"{wide / 'ood' / 'far.npy'} holds 4x9 embeddings" in line and "8-wide" in line

    nan = _arrays_folder(tmp_path / "nan", thumbs=False)
    x = np.load(nan / "id_images.npy")
    x[7, 2] = np.nan
    np.save(nan / "id_images.npy", x)
    line = _error(capsys, [str(nan)])
    assert f"{nan / 'id_images.npy'} has NaN or infinite values in 1 rows (first: row 7)" in line

    names = _arrays_folder(tmp_path / "names", thumbs=False)
    (names / "class_names.txt").write_text("cat\ndog\n")
    line = _error(capsys, [str(names)])
    assert f"{names / 'class_names.txt'} has 2 entries but {names / 'id_texts.npy'} has 3" in line

    labels = _arrays_folder(tmp_path / "labels", thumbs=False)
    np.save(labels / "id_labels.npy", np.full(N, 5))
    assert "has classes outside [0, 3)" in _error(capsys, [str(labels)])

    paths = _arrays_folder(tmp_path / "paths", thumbs=False)
    (paths / "ood" / "far.txt").write_text("a.png\nb.png\n")
    line = _error(capsys, [str(paths)])
    assert (
        f"{paths / 'ood' / 'far.txt'} has 2 entries but" in line and "far.npy has 12 rows" in line
    )

    lonely = _arrays_folder(tmp_path / "lonely", thumbs=False)
    (lonely / "neg_texts.npy").unlink()
    assert "neg_names.txt is given without" in _error(capsys, [str(lonely)])

    assert "ascending" in _error(capsys, [str(_arrays_folder(tmp_path / "ok", thumbs=False)),
                                          "--alphas", "1", "0"])  # fmt: skip
    assert "Unknown score 'xx'" in _error(capsys, [str(tmp_path / "ok"), "--scores", "xx"])

    other = _arrays_folder(tmp_path / "other", thumbs=False)
    np.save(other / "id_images.npy", _raw(np.random.default_rng(0), N + 1))
    np.save(other / "id_labels.npy", np.arange(N + 1) % C)
    line = _error(capsys, [str(_arrays_folder(tmp_path / "one", thumbs=False)), str(other)])
    assert "holds other rows than" in line


def test_bad_run_folders_say_what_to_run(tmp_path, capsys):
    from cmakit.pipeline.config import config_to_dict, resolve

    bad = tmp_path / "bad"
    bad.mkdir()
    write_json(bad / "config.json", {"profile": "smoke"})
    assert "is not a pipeline run's configuration" in _error(capsys, [str(bad)])
    run = tmp_path / "run"
    run.mkdir()
    cfg = resolve({"profile": "smoke", "run_dir": str(run)})
    write_json(run / "config.json", {"config": config_to_dict(cfg)})
    line = _error(capsys, [str(run)])
    assert "has no embeddings of seed 0" in line and "notebook 03" in line


def test_arrays_without_labels_pair_each_image_with_its_nearest_prompt():
    rng = np.random.default_rng(0)
    images, texts = _raw(rng, 10), _raw(rng, C)
    src = from_arrays(images, texts)
    bundle = src.bundles["embeddings"]
    assert bundle.id_labels.tolist() == (bundle.id_images @ bundle.id_texts.T).argmax(1).tolist()
    assert src.class_names == ["class 0", "class 1", "class 2"] and len(bundle.neg_texts) == 0
    with pytest.raises(ValueError, match=r"id_images holds a float32 array of shape \(10,\)"):
        from_arrays(images[:, 0], texts)
    with pytest.raises(ValueError, match="all-zero rows"):
        from_arrays(np.zeros((2, D)), texts)
