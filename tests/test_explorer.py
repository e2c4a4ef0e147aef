"""The embedding explorer: its data (oracle and known values) and its page in a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cmakit.core.geometry import joint_pca, modality_gap
from cmakit.core.metrics import fpr_at_95_tpr
from cmakit.engine.bundle import EmbeddingBundle
from cmakit.engine.evaluate import ScoreSettings, score_images, shift_bundle
from cmakit.pipeline.explore import explorer_points, sample_rows
from cmakit.report.explorer import (
    SHARED_VIEW,
    VIEWS,
    explorer_html,
    notebook_view,
    write_explorer,
)
from cmakit.report.sprites import thumbnail_atlas

D, N_ID, N_NEAR, N_FAR, K, M = 16, 40, 30, 12, 4, 9
ALPHAS = [0.0, 0.5, 1.0]
MAX_POINTS = 25
EXPECTED = {"ID images": 25, "OoD near": 25, "OoD far": 12, "ID prompts": 4, "negative labels": 9}


def _unit(rng: np.random.Generator, n: int, shift: np.ndarray) -> np.ndarray:
    x = rng.normal(size=(n, D)) + shift
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _bundle(seed: int = 0, logit_scale: float = 50.0) -> EmbeddingBundle:
    """Images around +g, texts around -g: a clear modality gap."""
    rng = np.random.default_rng(seed)
    g = np.zeros(D)
    g[0] = 2.0
    return EmbeddingBundle(
        id_images=_unit(rng, N_ID, g), id_labels=rng.integers(0, K, N_ID),
        id_texts=_unit(rng, K, -g), neg_texts=_unit(rng, M, -g), logit_scale=logit_scale,
        ood={"near": _unit(rng, N_NEAR, g), "far": _unit(rng, N_FAR, g)},
    )  # fmt: skip


def _points(max_points: int = MAX_POINTS, thumbnails: bool = True):
    b = _bundle()
    rng = np.random.default_rng(1)
    labels = {"id_images": [f"class{k}" for k in b.id_labels], "ood/near": ["near"] * N_NEAR,
              "ood/far": ["far"] * N_FAR, "id_texts": [f"a photo of a class{k}." for k in range(K)],
              "neg_texts": [f"word{k}" for k in range(M)]}  # fmt: skip
    thumbs = {k: rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
              for k, n in [("id_images", N_ID), ("ood/near", N_NEAR), ("ood/far", N_FAR)]}  # fmt: skip
    bundles = {"zero-shot": b, "CMA": _bundle(seed=2, logit_scale=30.0)}
    return explorer_points(
        bundles, ScoreSettings(), labels=labels, thumbnails=thumbs if thumbnails else None,
        alphas=ALPHAS, max_points=max_points, seed=0,
    )  # fmt: skip


NAMES = ([f"class{k}" for k in range(K)], [f"word{k}" for k in range(M)])


def test_groups_are_sampled_per_group_and_shared_by_every_model():
    groups, models = _points()
    assert {g.name: len(g.labels) for g in groups} == EXPECTED
    assert [g.kind for g in groups] == ["id", "ood", "ood", "prompt", "neg"]
    assert groups[0].thumbnails.shape == (25, 8, 8, 3) and groups[3].thumbnails is None
    assert list(models[0].scores) == ["mcm", "neglabel", "neglabel_grouped", "msp", "energy",
                                      "max_logit"]  # no CSP labels: CSP is left out  # fmt: skip
    for m in models:
        for view in (*VIEWS, SHARED_VIEW):
            for g in groups:
                assert m.coords[view][g.name].shape == (len(ALPHAS), len(g.labels), 2)
                assert np.isfinite(m.coords[view][g.name]).all()


def test_sample_is_fixed_sorted_and_without_repeats():
    rows = sample_rows({"a": 100, "b": 7}, 20, seed=3)
    assert len(rows["a"]) == 20 and len(set(rows["a"].tolist())) == 20
    assert np.all(np.diff(rows["a"]) > 0) and rows["b"].tolist() == list(range(7))
    assert rows["a"].tolist() == sample_rows({"a": 100, "b": 7}, 20, seed=3)["a"].tolist()
    with pytest.raises(ValueError, match="max_points=0"):
        sample_rows({"a": 3}, 0, seed=0)


def test_scores_and_nearest_texts_match_the_evaluator():
    groups, models = _points(max_points=1000)  # every row, so row i is image i
    b = _bundle()
    for ai, alpha in enumerate(ALPHAS):
        shifted = shift_bundle(b, alpha)
        want = score_images(shifted.id_images, shifted, ScoreSettings(), scores=("mcm", "neglabel"))
        for col in ("mcm", "neglabel"):
            np.testing.assert_allclose(models[0].scores[col]["ID images"][ai], want[col], rtol=1e-5)
    cos, neg = b.id_images @ b.id_texts.T, b.id_images @ b.neg_texts.T
    near = models[0].nearest["ID images"]
    assert near.id_rows.shape == (N_ID, 3) and near.id_rows.dtype == np.int32
    assert near.id_rows[5].tolist() == np.argsort(-cos[5])[:3].tolist()
    np.testing.assert_allclose(near.id_cos[5], np.sort(cos[5])[::-1][:3], rtol=1e-6)
    assert near.neg_rows[5, 0] == neg[5].argmax() and near.neg_cos[5, 0] == pytest.approx(
        neg[5].max()
    )


def test_pairs_point_at_the_class_prompt_of_each_id_image():
    groups, _ = _points()
    rows = sample_rows({"id_images": N_ID}, MAX_POINTS, seed=0)["id_images"]
    # all K prompts are drawn, in class order, so an image's pair is its class
    assert groups[0].pair.tolist() == _bundle().id_labels[rows].tolist()
    assert all(g.pair is None for g in groups[1:])


def test_shared_view_puts_every_model_in_one_pca():
    """In the shared axes, two models' ID prompts sit where one joint PCA of both puts them."""
    groups, models = _points(max_points=1000)
    a, b = _bundle(), _bundle(seed=2, logit_scale=30.0)
    layers = [x for m in (a, b) for x in (m.id_images, m.ood["near"], m.ood["far"], m.id_texts,
                                          m.neg_texts)]  # fmt: skip
    want, _ = joint_pca(*layers, n_components=2)
    np.testing.assert_allclose(models[0].coords[SHARED_VIEW]["ID prompts"][0], want[3], atol=1e-4)
    np.testing.assert_allclose(models[1].coords[SHARED_VIEW]["ID prompts"][0], want[8], atol=1e-4)


def test_thumbnail_atlas_is_one_sheet_in_row_major_order():
    import base64
    import io

    from PIL import Image

    pixels = np.zeros((5, 4, 4, 3), np.uint8)
    pixels[:, :, :, 0] = np.arange(5)[:, None, None] * 50  # thumbnail i: red level 50 i
    for size, side in ((8, 4), (2, 2)):  # 4-pixel images: never upscaled, downscaled to 2
        uri, cols = thumbnail_atlas(pixels, size=size)
        assert cols == 3 and uri.startswith("data:image/png;base64,")
        data = base64.b64decode(uri.split(",", 1)[1])
        sheet = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert sheet.shape == (2 * side, 3 * side, 3)
        for i in range(5):
            r, c = divmod(i, cols)
            assert (sheet[r * side : (r + 1) * side, c * side : (c + 1) * side, 0] == 50 * i).all()


def test_gap_view_separates_the_modalities_by_the_centroid_gap():
    """Along the gap axis, ID images and ID prompts (all rows) differ by exactly the gap."""
    groups, models = _points(max_points=1000)
    xy = models[0].coords["gap direction"]
    got = xy["ID images"][0, :, 0].mean() - xy["ID prompts"][0, :, 0].mean()
    assert got == pytest.approx(modality_gap(_bundle().id_images, _bundle().id_texts), rel=1e-5)
    # closing the gap post hoc moves images and prompts toward each other along that axis
    closed = xy["ID images"][-1, :, 0].mean() - xy["ID prompts"][-1, :, 0].mean()
    assert abs(closed) < 0.5 * got


def test_thumbnails_from_files_and_on_demand(tmp_path):
    from PIL import Image

    from cmakit.pipeline.explore import read_thumbnails

    Image.new("RGB", (60, 30), (200, 10, 10)).save(tmp_path / "wide.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    got = read_thumbnails([str(tmp_path / "wide.png"), str(tmp_path / "broken.jpg")], size=16)
    assert got.shape == (2, 16, 16, 3) and got.dtype == np.uint8
    assert (got[0] == (200, 10, 10)).all() and (got[1] == 128).all()

    asked = []
    b = _bundle()

    def thumbs(rows):
        asked.append(rows.tolist())
        return np.zeros((len(rows), 4, 4, 3), np.uint8)

    labels = {"id_images": ["x"] * N_ID, "ood/near": ["n"] * N_NEAR, "ood/far": ["f"] * N_FAR,
              "id_texts": ["t"] * K, "neg_texts": ["w"] * M}  # fmt: skip
    groups, _ = explorer_points({"m": b}, ScoreSettings(), labels=labels,
                                thumbnails={"id_images": thumbs}, alphas=[0.0], max_points=10)  # fmt: skip
    assert asked == [sample_rows({"id_images": N_ID}, 10, seed=0)["id_images"].tolist()]
    assert groups[0].thumbnails.shape == (10, 4, 4, 3) and groups[1].thumbnails is None


def test_pca_view_is_the_joint_pca_of_the_model_as_trained_in_fixed_axes():
    groups, models = _points(max_points=1000)
    b = _bundle()
    layers = [b.id_images, b.ood["near"], b.ood["far"], b.id_texts, b.neg_texts]
    want, _ = joint_pca(*layers, n_components=2)
    pca = models[0].coords["joint PCA"]
    for g, w in zip(groups, want, strict=True):
        np.testing.assert_allclose(pca[g.name][0], w, atol=1e-5)
    # alpha = 1 moves the ID images toward the prompts along the gap, within the same axes
    shifted = shift_bundle(b, 1.0)
    mean = np.concatenate(layers).mean(0)
    axes = np.linalg.lstsq(np.concatenate(layers) - mean, np.concatenate(want), rcond=None)[0]
    np.testing.assert_allclose(pca["ID images"][-1], (shifted.id_images - mean) @ axes, atol=1e-4)


def test_bad_inputs_say_what_is_wrong():
    b = _bundle()
    with pytest.raises(ValueError, match=r"labels\['id_images'\] has 3 entries; the layer has 40"):
        explorer_points({"m": b}, ScoreSettings(), labels={"id_images": ["a"] * 3}, alphas=ALPHAS)
    other = b.replace(id_images=b.id_images[:10], id_labels=b.id_labels[:10])
    with pytest.raises(ValueError, match="different benchmarks"):
        explorer_points({"a": b, "b": other}, ScoreSettings(), labels={}, alphas=ALPHAS)
    groups, models = _points()
    with pytest.raises(ValueError, match=r"expected \(2, 25, 2\)"):
        explorer_html(groups, models, [0.0, 1.0])


def test_page_is_self_contained():
    groups, models = _points()
    page = explorer_html(groups, models, ALPHAS, title="explorer test")
    external = re.findall(r"<(?:script|link|img)[^>]+(?:src|href)=[\"']?(?:https?:)?//", page)
    assert external == [], "the page must load nothing from the network"
    # one sprite sheet per image group, held once (the hover templates are filled in the page)
    for g in groups[:3]:
        assert page.count(thumbnail_atlas(g.thumbnails)[0]) == 1
    assert "explorer-summary" in page and "data-explorer-errors" in page
    assert "cmakitExplorer" in page and '"output_backend":"webgl"' in page


def test_notebook_view_embeds_the_page_in_an_iframe(tmp_path):
    import warnings

    page = '<html><body><p class="x">a & b</p></body></html>'
    (tmp_path / "p.html").write_text(page)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shown = [notebook_view(page).data, notebook_view(tmp_path / "p.html").data]
    for data in shown:
        assert 'srcdoc="&lt;html&gt;&lt;body&gt;&lt;p class=&quot;x&quot;&gt;a &amp; b' in data


# ---------------------------------------------------------------- in a real browser
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000"]  # fmt: skip


def _browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        pytest.skip("No headless Chromium found (tried chromium, chromium-browser, google-chrome). "
                    "Install Debian's package: apt-get install chromium (scripts/setup.sh does "
                    "when run as root).")  # fmt: skip
    return found


def _chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    groups, models = _points()
    return write_explorer(tmp_path_factory.mktemp("explorer") / "explorer.html", groups, models,
                          ALPHAS, title="explorer test", text_names=NAMES)  # fmt: skip


def _report(browser: str, page: Path, tmp: Path) -> dict:
    """The page's own report (``#explorer-summary``) after its self-test, with no script error."""
    got = _chromium(browser, tmp, "--dump-dom", page.resolve().as_uri() + "#selftest")
    assert got.returncode == 0, got.stderr[-2000:]
    errors = re.search(r'data-explorer-errors="([^"]*)"', got.stdout)
    assert errors is None, f"script errors in the page: {errors.group(1) if errors else ''}"
    found = re.search(r'id="explorer-summary">(.*?)</script>', got.stdout, re.S)
    assert found, "the page's script never wrote its summary (Bokeh did not render)"
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def report(page, tmp_path_factory) -> dict:
    return _report(_browser(), page, tmp_path_factory.mktemp("chromium"))


@pytest.mark.slow
def test_page_loads_offline_in_chromium_with_its_data_and_working_controls(report):
    assert report["groups"] == EXPECTED
    assert report["models"] == 2 and report["alphas"] == len(ALPHAS)
    assert report["views"] == [*VIEWS, SHARED_VIEW] and report["root_views"] >= 1
    test = report["selftest"]  # last model, gap view, alpha = 1, first ID image tapped
    assert (
        test["x_after"] == pytest.approx(test["x_expected"]) and test["x_after"] != test["x_before"]
    )
    assert "nearest ID prompts" in test["details"] and "CMA, α = 1" in test["details"]
    # the tapped image's nearest prompt under CMA, named from the page's class names
    row = sample_rows({"id_images": N_ID}, MAX_POINTS, seed=0)["id_images"][0]
    cma = _bundle(seed=2, logit_scale=30.0)
    cos = cma.id_images[row] @ cma.id_texts.T
    assert f"<b>nearest ID prompts</b>: class{cos.argmax()} ({cos.max():.2f})" in test["details"]


@pytest.mark.slow
def test_threshold_lets_through_what_fpr95_counts(report):
    """Coloured by MCM, the page's threshold at 95% (then 80%) ID recall lets through exactly the
    OoD images that FPR@95's threshold rule counts, on the scores drawn."""
    groups, models = _points()
    steps = report["selftest"]
    assert steps["initial"]["colour"] == "group" and steps["initial"]["passed"] == {}
    mcm = models[0].scores["mcm"]
    for step, recall in (("score", 0.95), ("recall", 0.8)):
        state = steps[step]
        assert state["colour"] == "mcm" and state["recall"] == pytest.approx(recall)
        for name in ("OoD near", "OoD far"):
            ood = mcm[name][0]
            fpr = fpr_at_95_tpr(mcm["ID images"][0], ood, tpr=recall, estimator="threshold")
            assert state["passed"][name] == round(fpr * len(ood)), (step, name)
            assert state["ood_shown"][name] == len(ood)
        assert state["threshold"] == pytest.approx(
            np.sort(mcm["ID images"][0])[::-1][int(np.ceil(recall * 25)) - 1], rel=1e-6)  # fmt: skip
    assert steps["recall"]["passed"] != steps["score"]["passed"]


@pytest.mark.slow
def test_box_and_lasso_selections_fill_the_panel(report):
    groups, models = _points()
    steps = report["selftest"]
    x0, x1, y0, y1 = steps["box_rect"]
    want = {}
    for g in groups:
        xy = models[0].coords[VIEWS[0]][g.name][0]
        inside = int(
            ((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)).sum()
        )
        if inside:
            want[g.name] = inside
    assert steps["box"]["selected"] == pytest.approx(want, abs=1)  # float32 edges
    n_images = sum(
        v for k, v in steps["box"]["selected"].items() if k in ("ID images", "OoD near", "OoD far")
    )
    assert steps["box"]["histogram"] == {"selected": n_images, "rest": 62 - n_images}
    assert f"{sum(steps['box']['selected'].values())} selected" in steps["panel_after_box"]
    assert 'class="t0"' in steps["panel_after_box"]  # thumbnails cropped from the sprite sheet
    lasso = steps["lasso"]["selected"]
    assert list(lasso) == ["OoD near"] and lasso["OoD near"] == 25  # a triangle around the set
    assert steps["lasso"]["histogram"] == {"selected": 25, "rest": 37}


@pytest.mark.slow
def test_pairs_paths_legend_and_search(report):
    steps = report["selftest"]
    assert steps["score"]["pairs"] == 0 and steps["pairs"]["pairs"] == 25  # one per ID image
    assert steps["paths"]["view"] == SHARED_VIEW  # paths switch to the shared axes
    assert steps["paths"]["paths"] == 20 + 20 + 12  # the first 20 of each image group
    assert steps["legend"]["hidden"] == ["negative labels"] and steps["search"]["hidden"] == []
    query = steps["search"]["search"]
    assert query == "class0"
    groups, _ = _points()
    want = {g.name: sum(query in label.lower() for label in g.labels) for g in groups}
    assert steps["search"]["matches"] == want and want["ID images"] > 0


@pytest.mark.slow
def test_page_screenshot(page, tmp_path):
    from PIL import Image

    browser = _browser()
    shot = tmp_path / "explorer.png"
    url = page.resolve().as_uri() + "#selftest"
    got = _chromium(browser, tmp_path, f"--screenshot={shot}", "--window-size=1400,1000", url)
    assert got.returncode == 0 and shot.is_file(), got.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (1000, 1400, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "a blank screenshot"
    if os.environ.get("CMAKIT_TEST_ARTIFACTS"):
        out = Path(os.environ["CMAKIT_TEST_ARTIFACTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / "explorer.png")
