"""Chart snapshots: a PNG that decodes at the figure's size, candles in their colours, labels
that never overlap, only the alert's lines (pure, no Redis)."""

from __future__ import annotations

import io
import itertools

import pytest
from PIL import Image
from tests.support import alert_market as m

from of_alerts.alert import Alert, Context
from of_alerts.chart import Line, _label_positions, render
from of_alerts.snapshot import lines, png


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_render_is_a_png_of_plausible_size() -> None:
    data = render(m.bars(), [Line(64_000.0, "VAL", "#7e57c2")], "BTCUSDT · TEST")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < len(data) < 400_000
    img = _decode(data)
    assert img.size == (800, 480)
    colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None
    present = {c for _, c in colours}
    assert (0x26, 0xA6, 0x9A) in present  # up candles
    assert (0xEF, 0x53, 0x50) in present  # down candles


def test_render_needs_bars() -> None:
    with pytest.raises(ValueError, match="at least one bar"):
        render([], [], "empty")


def test_labels_never_overlap() -> None:
    prices = [100.0, 100.0, 100.2, 90.0, 130.0, 129.9]
    lo, hi = 85.0, 131.0
    pos = _label_positions(prices, lo, hi)
    gap = (hi - lo) * 0.055
    ordered = sorted(pos)
    assert all(b - a >= gap - 1e-9 for a, b in itertools.pairwise(ordered))
    assert max(pos) <= hi
    # a lone label stays on its line
    assert _label_positions([95.0], lo, hi) == [95.0]


def test_each_alert_gets_its_lines() -> None:
    c = Context(tick_size=m.TICK, bars=tuple(m.bars()[:30]), bias=m.BIAS)
    entry = Alert(type="entry", symbol=m.SYMBOL, key="k", msg=m.EVENTS[0], context=c)
    labels = [ln.label for ln in lines(entry)]
    assert labels == [
        "VAH 64,090.0",
        "POC 64,040.0",
        "VAL 64,010.0",
        "Entry 64,012.4",
        "SL 63,978.0",
        "TP 64,090.0",
    ]
    bias = Alert(type="bias", symbol=m.SYMBOL, key="b", msg=m.BIAS, context=c)
    assert [ln.label for ln in lines(bias)] == [
        "VAH 64,090.0",
        "POC 64,040.0",
        "VAL 64,010.0",
        "LVN 63,990.0",
    ]
    exit_ = Alert(type="exit", symbol=m.SYMBOL, key="x", msg=m.EVENTS[-1], context=c)
    assert "Exit 64,090.0" in [ln.label for ln in lines(exit_)]
    no_bars = Alert(
        type="entry", symbol=m.SYMBOL, key="k", msg=m.EVENTS[0], context=Context(tick_size=m.TICK)
    )
    assert png(no_bars) is None
