"""Fixtures of the fault matrix: each case's own Redis, and its one-line result.

A case fills in ``case.fault`` and ``case.checked``; the line (with pass or the failure) is
printed in the session summary and recorded for ``docs/reliability.md`` (``make faults``).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from tests.support.faults.report import Case, record
from tests.support.faults.servers import OwnRedis

_LINES: list[str] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_REPORT] = report
    return report


_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    c = Case(fault=request.node.name, checked="")
    start = time.monotonic()
    yield c
    c.seconds = time.monotonic() - start
    report = request.node.stash.get(_REPORT, None)
    if report is None:
        c.result = "not run"
    elif report.passed:
        c.result = "pass"
    elif report.skipped:  # only the real-data fixtures may skip (tests/support/real_data.py)
        longrepr = report.longrepr
        c.result = f"skipped: {longrepr[2] if isinstance(longrepr, tuple) else longrepr}"
    else:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(report.longrepr)
        c.result = "FAIL: " + message.splitlines()[0][:300]
    _LINES.append(c.line())
    record(c)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.section("fault matrix")
        for line in _LINES:
            terminalreporter.write_line(line)
