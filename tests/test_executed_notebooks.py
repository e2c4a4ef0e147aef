"""Executed notebooks as a reader opens them: numbers from their own run, cells from [1], no noise.

One smoke run on a seed that no default uses, so that no sentence can lean on numbers of
another run: every number of each notebook's text (Markdown cells and Markdown rendered into
outputs) must be shown by that notebook itself or be a declared constant of the paper or the
recipe (tests/_notebook_numbers.py says how numbers are read and matched).
"""

from __future__ import annotations

import json
import re

import pytest
from _notebook_numbers import quoted_numbers, unshown

from cmakit.pipeline import runner

#: Most lines of progress (tqdm bars, relayed step lines) one executed notebook may store.
MAX_PROGRESS_LINES = 3
#: Notebooks whose "what to notice" / "what to conclude" paragraphs are rendered from the run.
RENDERED = {"00_primer.ipynb", "01_pretrain.ipynb", "02_finetune.ipynb", "04_modality_gap.ipynb",
            "05_geometry.ipynb", "06_lambda_ablation.ipynb", "07_benchmark_tables.ipynb"}  # fmt: skip
PROGRESS = re.compile(r"\d+/\d+ \[|it/s|step/s|ETA |ended at step|\(done in ")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """``{name: notebook}`` of a smoke run with ``seeds=[3]``."""
    tmp = tmp_path_factory.mktemp("seed3")
    argv = ["--profile", "smoke", "--out", str(tmp / "run"), "--set", "seeds=[3]",
            "--set", f"cache_dir={tmp / 'cache'}"]  # fmt: skip
    assert runner.main(argv) == 0
    return {name: json.loads((tmp / "run" / "notebooks" / name).read_text())
            for name, _ in runner.NOTEBOOKS}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, _ in runner.NOTEBOOKS])
def test_every_number_of_the_text_is_shown_by_the_notebook(executed, name):
    nb = executed[name]
    missing = unshown(nb)
    assert missing == [], "numbers in the text that the notebook does not show"
    if name in RENDERED:  # their computed paragraphs are there, and quote numbers
        rendered = [o for c in nb["cells"] for o in c.get("outputs", [])
                    if "text/markdown" in o.get("data", {})]  # fmt: skip
        assert rendered and any(quoted_numbers(_text(o["data"]["text/markdown"])) for o in rendered)


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, _ in runner.NOTEBOOKS])
def test_an_executed_notebook_reads_as_if_run_alone(executed, name):
    """Cells numbered from [1]; a long loop leaves its last line, not its bar; no tqdm notice."""
    cells = [c for c in executed[name]["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in cells]
    assert counts == list(range(1, len(cells) + 1)), counts
    streams = [_text(o.get("text", "")) for c in cells for o in c["outputs"]
               if o["output_type"] == "stream"]  # fmt: skip
    lines = [ln for s in streams for ln in re.split(r"[\r\n]", s) if PROGRESS.search(ln)]
    assert len(lines) <= MAX_PROGRESS_LINES, lines[:10]
    assert not any("IProgress" in s for s in streams)
