"""The paper's reported tables ship with the package and load by name or number."""

from __future__ import annotations

import pytest

from cmakit.report.paper_reference import PAPER_TABLES, paper_table


@pytest.mark.parametrize(("number", "name"), list(enumerate(PAPER_TABLES, start=1)))
def test_every_table_loads_by_name_and_number(number, name):
    df = paper_table(name)
    assert df.equals(paper_table(number))
    assert df.columns[0] == "method" and len(df) >= 6
    assert "reported in Kim & Hwang" in df.attrs["source"] and df.attrs["table"] == name


def test_headline_numbers_of_the_paper():
    mos = paper_table("table1_mos").set_index("method")
    assert mos.loc["NegLabel", "average_fpr95"] == 27.97
    assert paper_table(3).set_index("method").loc["CMA", "id_accuracy"] == 82.64
    geo = paper_table(4).set_index("method")
    assert list(geo.columns) == [
        "uni_all", "uni_i", "uni_t", "uni_cm", "uni_cmm", "align_id", "align_ood",
    ]  # fmt: skip
    assert geo.loc["ZS", "uni_i"] == geo.loc["CoOp", "uni_i"]  # frozen image tower


@pytest.mark.parametrize("bad", ["table5", 0, 5, "Table1_MOS", True])
def test_unknown_table(bad):
    with pytest.raises(KeyError, match=r"Unknown paper table .*choose one of \['table1_mos'"):
        paper_table(bad)
