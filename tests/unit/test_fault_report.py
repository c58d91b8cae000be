"""The fault matrix's report: result lines into the table of docs/reliability.md, the rest kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.faults.report import BEGIN, END, Case, write_doc


def test_results_replace_only_the_table_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "reliability.md"
    doc.write_text(f"# head\n\n{BEGIN}\n| old | table |\n{END}\n\n## tail\n")
    results = tmp_path / "faults.jsonl"
    cases = [
        Case("Redis restarted", "outputs equal", "pass", 12.34, {"resumed after": "0.4 s"}),
        Case("OOM", "no loss", "FAIL: 3 | lost", 5.0),
    ]
    results.write_text("".join(json.dumps(c.__dict__) + "\n" for c in cases))
    write_doc(results, doc)
    assert doc.read_text() == (
        f"# head\n\n{BEGIN}\n"
        "| fault | checked | result | time | figures |\n"
        "|---|---|---|---|---|\n"
        "| Redis restarted | outputs equal | pass | 12.3 s | resumed after 0.4 s |\n"
        "| OOM | no loss | FAIL: 3 / lost | 5.0 s | - |\n"
        f"{END}\n\n## tail\n"
    )
    assert cases[0].line() == "Redis restarted | outputs equal | pass (12.3 s; resumed after 0.4 s)"


def test_a_document_without_markers_is_refused(tmp_path: Path) -> None:
    doc = tmp_path / "reliability.md"
    doc.write_text("# no table here\n")
    results = tmp_path / "faults.jsonl"
    results.write_text("")
    with pytest.raises(SystemExit, match="markers are missing"):
        write_doc(results, doc)
    assert doc.read_text() == "# no table here\n"
