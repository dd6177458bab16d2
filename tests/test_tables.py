"""Result tables as text, CSV, JSON and Markdown (seprobe/tables.py), checked against values written out by hand."""

import json

import numpy as np
import pandas as pd
import pytest

from seprobe import SeprobeError
from seprobe.tables import SCHEMA, format_for, json_document, render, render_all, table_paths, write_tables

ROWS = pd.DataFrame({"model": ["a", "b"], "params": pd.array([3, None], dtype="Int64"), "gflops": [0.5, np.nan],
                     "knobs": [{"reduction": 8, "stages": (2, 3)}, {}]})


def test_json_keeps_integers_and_says_null_for_what_is_missing():
    doc = json.loads(json_document({"summary": ROWS}, "complexity"))
    assert doc["schema"] == SCHEMA and doc["command"] == "complexity"
    assert doc["tables"]["summary"] == [
        {"model": "a", "params": 3, "gflops": 0.5, "knobs": {"reduction": 8, "stages": [2, 3]}},
        {"model": "b", "params": None, "gflops": None, "knobs": {}},
    ]
    assert isinstance(doc["tables"]["summary"][0]["params"], int)


def test_csv_flattens_structured_cells_and_holds_one_table():
    assert render(ROWS, "csv").splitlines() == ["model,params,gflops,knobs", 'a,3,0.5,"reduction=8, stages=2,3"',
                                                "b,,,"]
    with pytest.raises(SeprobeError, match="format 'csv' prints one table, and this run has 2 .summary, ops.") as e:
        render_all({"summary": ROWS, "ops": ROWS}, "csv", "complexity")
    assert e.value.argument == ("format", "output", "format")


def test_markdown_and_text_sections_are_headed_by_table_name():
    text = render_all({"summary": ROWS, "ops": ROWS.head(1)}, "markdown", "complexity")
    assert text.startswith("# summary\n|") and "\n# ops\n|" in text
    assert render_all({"summary": ROWS}, "table", "c").splitlines()[0].split() == ["model", "params", "gflops",
                                                                                   "knobs"]


def test_the_format_comes_from_the_suffix_or_is_named():
    assert [format_for(p, None) for p in ("x.csv", "x.JSON", "x.md", "x.txt")] == ["csv", "json", "markdown", "table"]
    assert format_for("x.csv", "json") == "json"
    with pytest.raises(SeprobeError, match="cannot tell how to write 'x.xlsx' from its suffix"):
        format_for("x.xlsx", None)


def test_several_tables_go_to_one_file_each_beside_the_first(tmp_path):
    out = tmp_path / "r.csv"
    assert table_paths({"summary": ROWS, "ops": ROWS}, out) == {"summary": out, "ops": tmp_path / "r.ops.csv"}
    written = write_tables({"summary": ROWS, "ops": ROWS.head(1)}, out, None, "complexity")
    assert written == [out, tmp_path / "r.ops.csv"]
    assert pd.read_csv(tmp_path / "r.ops.csv")["model"].tolist() == ["a"]
    (doc,) = write_tables({"summary": ROWS, "ops": ROWS}, tmp_path / "r.json", None, "complexity")
    assert set(json.loads(doc.read_text())["tables"]) == {"summary", "ops"}
