"""One result line per fault case, and the results table of ``docs/reliability.md``.

Cases append their lines to ``OF_FAULTS_RESULTS`` (JSON lines) when it is set (``make faults``);
``python -m tests.support.faults.report RESULTS DOC`` writes them into the document's table.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

RESULTS_ENV: Final = "OF_FAULTS_RESULTS"
BEGIN: Final = "<!-- fault-matrix:begin (written by `make faults`) -->"
END: Final = "<!-- fault-matrix:end -->"


@dataclass
class Case:
    """What one case injects and checks; ``figures`` are measurements worth reporting."""

    fault: str
    checked: str
    result: str = "not run"
    seconds: float = 0.0
    figures: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        figures = "".join(f"; {k} {v}" for k, v in self.figures.items())
        return f"{self.fault} | {self.checked} | {self.result} ({self.seconds:.1f} s{figures})"


def record(case: Case) -> None:
    path = os.environ.get(RESULTS_ENV)
    if path:
        with Path(path).open("a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(case)) + "\n")


def table(cases: list[Case]) -> str:
    rows = [
        "| fault | checked | result | time | figures |",
        "|---|---|---|---|---|",
    ]
    for c in cases:
        figures = ", ".join(f"{k} {v}" for k, v in c.figures.items()) or "-"
        result = c.result.replace("|", "/").replace("\n", " ")
        rows.append(f"| {c.fault} | {c.checked} | {result} | {c.seconds:.1f} s | {figures} |")
    return "\n".join(rows)


def write_doc(results: Path, doc: Path) -> None:
    """Replace the table between the markers of ``doc`` with the cases in ``results``."""
    cases = [Case(**json.loads(line)) for line in results.read_text().splitlines() if line]
    text = doc.read_text()
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{doc}: the fault-matrix markers are missing")
    doc.write_text(f"{head}{BEGIN}\n{table(cases)}\n{END}{tail}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m tests.support.faults.report RESULTS.jsonl DOC.md")
    write_doc(Path(sys.argv[1]), Path(sys.argv[2]))
