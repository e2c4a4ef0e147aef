"""Fixed negative-label lists (the CMA authors' .npy, .txt, cmakit's .tsv) and how a run uses them."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from cmakit.engine.negatives import NegativeLabel, read_negative_labels, save_negative_labels
from cmakit.pipeline import preflight, products, runner, steps
from cmakit.pipeline.config import resolve

# The quirks of Neglabel/neg_label_10000.npy: adjective prompts first, then noun prompts;
# duplicates; a stray "[" left from WordNet's adjective-cluster markup.
OFFICIAL_LIKE = [
    "This is a [thermal photo",
    "This is a circumscribed photo",
    "This is a circumscribed photo",
    "This is a [aqueous photo",
    "The nice yellow clintonia",
    "The nice silvery spleenwort",
    "The nice yellow clintonia",
    "The nice san carlos apache",
]


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "neg_label_small.npy"
    np.save(path, np.asarray(OFFICIAL_LIKE))  # a <U..> array, as the authors' file
    return path


def test_npy_is_read_verbatim_in_file_order(npy):
    prompts = read_negative_labels(npy)
    assert prompts == OFFICIAL_LIKE and all(type(p) is str for p in prompts)
    assert len(prompts) == 8 and len(set(prompts)) == 6  # duplicates kept
    assert sum("[" in p for p in prompts) == 2
    assert [p.startswith("This is a ") for p in prompts] == [True] * 4 + [False] * 4


def test_txt_and_tsv(tmp_path):
    txt = tmp_path / "neg.txt"
    txt.write_bytes(("\r\n".join(OFFICIAL_LIKE) + "\r\n").encode())
    assert read_negative_labels(txt) == OFFICIAL_LIKE
    txt.write_text("The nice  spaced \nThe nice last")  # no final newline; spaces kept
    assert read_negative_labels(txt) == ["The nice  spaced ", "The nice last"]
    tsv = save_negative_labels(tmp_path / "neg.tsv", [NegativeLabel("rock", "noun", 0.1),
                                                     NegativeLabel("wavy", "adj", 0.2),
                                                     NegativeLabel("red thing", "csp", 0.3)])  # fmt: skip
    assert read_negative_labels(tsv) == [
        "The nice rock", "This is a wavy photo", "a nice photo of red thing"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("neg.csv", b"a,b", r"unknown format '\.csv'"),
        ("neg.txt", b"The nice a\n\nThe nice b\n", r"line\(s\) \[2\] hold no prompt"),
        ("neg.txt", b"", "holds no prompts"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_negative_labels(path)


def test_bad_arrays_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_negative_labels(tmp_path / "none.npy")
    np.save(tmp_path / "obj.npy", np.asarray(["a", None], dtype=object))
    with pytest.raises(ValueError, match="string array"):
        read_negative_labels(tmp_path / "obj.npy")
    np.save(tmp_path / "two.npy", np.asarray([["a", "b"]]))
    with pytest.raises(ValueError, match=r"1-D array of strings, got shape \(1, 2\)"):
        read_negative_labels(tmp_path / "two.npy")


def test_run_uses_the_file_verbatim_keyed_by_its_content(npy, tmp_path):
    cfg = resolve({"profile": "smoke", "run_dir": str(tmp_path / "run")})
    given = resolve({**vars(cfg), "negative_labels": str(npy)})
    assert steps.negative_prompts(given) == OFFICIAL_LIKE
    with pytest.raises(ValueError, match="uses that file's prompts verbatim"):
        steps.negative_labels(given)
    moved = tmp_path / "elsewhere.npy"
    shutil.copyfile(npy, moved)
    same = resolve({**vars(cfg), "negative_labels": str(moved)})
    assert products.negatives_key(same) == products.negatives_key(given)  # content, not path
    assert products.negatives_key(given) != products.negatives_key(cfg)
    assert products.embeddings_key(given, 0.1, 0) != products.embeddings_key(cfg, 0.1, 0)
    assert products.csp_negatives_key(given) == products.csp_negatives_key(cfg)
    assert products.model_key(given, 0.1, 0) == products.model_key(cfg, 0.1, 0)
    np.save(moved, np.asarray(OFFICIAL_LIKE[:-1]))
    assert products.negatives_key(same) != products.negatives_key(given)
    with pytest.raises(FileNotFoundError, match="is not a file"):
        products.negatives_key(resolve({**vars(cfg), "negative_labels": str(tmp_path / "no")}))


def test_dry_run_lists_the_pool_or_the_file(npy, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = str(tmp_path / "run")
    assert runner.main(["--profile", "smoke", "--out", out, "--dry-run"]) == 0
    assert "negative labels: mined from the smoke world's lexicon (50% of each kind" in caplog.text
    assert "CSP labels: mined from the smoke world's lexicon" in caplog.text
    caplog.clear()
    argv = ["--profile", "smoke", "--out", out, "--dry-run", "--set", f"negative_labels={npy}"]
    assert runner.main(argv) == 0
    assert f"negative labels: 8 prompts (6 unique) of {npy}, used verbatim" in caplog.text
    caplog.clear()
    argv[-1] = f"negative_labels={tmp_path / 'missing.npy'}"
    assert runner.main(argv) == 2
    assert "negative_labels: Negative-label file not found" in caplog.text
    paper = preflight.negatives_plan(resolve({"profile": "paper"}))
    assert paper == [
        "negative labels: mined from WordNet pool 'neglabel' (15% of each kind kept)",
        "CSP labels: mined from WordNet pool 'csp', adjectives conjugated (15% of each kind kept)",
    ]


@pytest.mark.slow
def test_notebook_7_and_the_explorer_run_with_a_given_negative_labels_file(npy, tmp_path):
    """Both show the negatives through the one ``negative_prompts``: a given file's prompts,
    with no mining (``negative_labels`` refuses to mine under such a file)."""
    import json

    out = tmp_path / "run"
    argv = ["--profile", "smoke", "--out", str(out), "--only", "07", "08",
            "--set", f"negative_labels={npy}", "--set", f"cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    assert runner.main(argv) == 0
    page = (out / "figures" / "explorer.html").read_text()
    assert "The nice yellow clintonia" in page and "This is a circumscribed photo" in page
    cells = json.loads((out / "notebooks" / "07_benchmark_tables.ipynb").read_text())["cells"]
    shown = json.dumps([c.get("outputs", []) for c in cells])
    assert any(prompt in shown for prompt in OFFICIAL_LIKE)  # the nearest negative labels
    assert not list((out / "negatives").glob("[!c]*.tsv"))  # NegLabel's were not mined
