"""The backtest's progress: a bar with trades/s, event time and ETA on a terminal, plain lines
otherwise (issue 12)."""

from __future__ import annotations

import io

from of_backtest.progress import Reporter
from of_backtest.source import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


EVENT = 1_723_161_600_000_000_000  # 2024-08-09 00:00:00 UTC


def test_a_terminal_gets_a_bar_with_rate_event_time_and_eta() -> None:
    out = _Tty()
    r = Reporter(out)
    line = r.line(Progress(total=1000, done=500, trades=1234, event_ns=EVENT))
    assert line.startswith("\r[" + "#" * 15 + "." * 15 + "]")
    assert " 50 %" in line
    assert "trades/s" in line
    assert "event time 2024-08-09 00:00:00" in line
    assert "ETA" in line
    r.done(Progress(total=1000, done=1000, trades=1234, event_ns=EVENT))
    assert out.getvalue().endswith("trades/s)\n")


def test_a_pipe_gets_plain_lines() -> None:
    out = io.StringIO()
    r = Reporter(out)
    line = r.line(Progress(total=0, done=0, trades=10, event_ns=0))
    assert line.startswith("backtest: 0 % 10 trades")
    assert "\r" not in line
    assert "ETA ?" in line  # nothing to estimate from yet
    r.done(Progress(trades=10))
    assert out.getvalue().startswith("backtest: 10 trades in ")
