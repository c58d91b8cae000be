"""Chart snapshots: candles of the last closed bars, their footprint volume at price, the delta,
and the alert's price lines (POC/VAH/VAL, entry/SL/TP), rendered to PNG with matplotlib's Agg.

Pure: bars and lines in, PNG bytes out; no pyplot state, so it is safe to call from a thread.
"""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, NamedTuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ofcommon.messages import Bar

_UP: Final = "#26a69a"
_DOWN: Final = "#ef5350"
_LOCK = threading.Lock()  # matplotlib's font cache and text layout are not thread-safe
WIDTH_IN: Final = 8.0
HEIGHT_IN: Final = 4.8
DPI: Final = 100


class Line(NamedTuple):
    """A horizontal price line. An ``essential`` line (entry, SL, TP, the value area) is always
    in view; any other (a far qualified level) is drawn only when it falls within the candles."""

    price: float
    label: str
    color: str
    style: str = "-"
    essential: bool = True


def _hhmm(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%H:%M")


def _volume_at_price(bars: Sequence[Bar]) -> tuple[list[float], list[float], list[float], float]:
    """(row prices, bid volume, ask volume, row height) summed over the bars' footprints."""
    rows: dict[float, list[float]] = {}
    for bar in bars:
        for row in bar.footprint:
            acc = rows.setdefault(row.price, [0.0, 0.0])
            acc[0] += row.bid_volume
            acc[1] += row.ask_volume
    prices = sorted(rows)
    steps = [b - a for a, b in itertools.pairwise(prices) if b > a]
    height = min(steps) if steps else 1.0
    return prices, [rows[p][0] for p in prices], [rows[p][1] for p in prices], height


def _limits(bars: Sequence[Bar], lines: Sequence[Line]) -> tuple[float, float]:
    lows = [b.low for b in bars] + [ln.price for ln in lines if ln.essential]
    highs = [b.high for b in bars] + [ln.price for ln in lines if ln.essential]
    lo, hi = min(lows), max(highs)
    pad = (hi - lo) * 0.06 or max(abs(hi) * 1e-4, 1e-9)
    return lo - pad, hi + pad


def _label_positions(prices: Sequence[float], lo: float, hi: float) -> list[float]:
    """Label heights near their lines but never overlapping: at least 5.5 % of the view apart."""
    gap = (hi - lo) * 0.055
    order = sorted(range(len(prices)), key=lambda i: prices[i])
    pos = [0.0] * len(prices)
    last = -float("inf")
    for i in order:  # upwards: each label at its line or just above the one below
        pos[i] = max(prices[i], last + gap)
        last = pos[i]
    ceiling = hi - gap / 2
    for i in reversed(order):  # downwards: nothing past the top
        pos[i] = min(pos[i], ceiling)
        ceiling = pos[i] - gap
    return pos


def render(bars: Sequence[Bar], lines: Sequence[Line], title: str) -> bytes:
    """PNG bytes of the chart; ``bars`` oldest first (at least one)."""
    if not bars:
        raise ValueError("a chart needs at least one bar")
    with _LOCK:
        return _render(bars, lines, title)


def _render(bars: Sequence[Bar], lines: Sequence[Line], title: str) -> bytes:
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        2, 2, width_ratios=(5, 1), height_ratios=(4, 1), wspace=0.03, hspace=0.06
    )
    ax = fig.add_subplot(grid[0, 0])
    vp = fig.add_subplot(grid[0, 1], sharey=ax)
    dx = fig.add_subplot(grid[1, 0], sharex=ax)
    n = len(bars)
    xs = list(range(n))
    colors = [_UP if b.close >= b.open else _DOWN for b in bars]
    ax.vlines(xs, [b.low for b in bars], [b.high for b in bars], colors=colors, linewidth=0.8)
    bottoms = [min(b.open, b.close) for b in bars]
    lo, hi = _limits(bars, lines)
    tiny = (hi - lo) * 0.002
    heights = [max(abs(b.close - b.open), tiny) for b in bars]
    ax.bar(xs, heights, bottom=bottoms, width=0.65, color=colors, linewidth=0)
    ax.set_ylim(lo, hi)
    ax.set_xlim(-0.8, n - 0.2 + max(2.0, n * 0.12))
    shown = [ln for ln in lines if ln.essential or lo <= ln.price <= hi]
    for ln in shown:
        ax.axhline(ln.price, color=ln.color, linestyle=ln.style, linewidth=1.1)
    right = n - 0.2 + max(2.0, n * 0.12)
    for y, ln in zip(_label_positions([ln.price for ln in shown], lo, hi), shown, strict=True):
        ax.text(
            right,
            y,
            ln.label,
            color=ln.color,
            fontsize=7,
            ha="right",
            va="center",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.0},
        )
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(alpha=0.2)
    ax.tick_params(labelbottom=False, labelsize=7)
    prices, bid, ask, height = _volume_at_price(bars)
    if prices:
        vp.barh(prices, bid, height=height * 0.9, color=_DOWN, alpha=0.8, label="sell")
        vp.barh(prices, ask, left=bid, height=height * 0.9, color=_UP, alpha=0.8, label="buy")
        vp.legend(fontsize=6, loc="upper right", frameon=False)
    vp.set_title("volume at price", fontsize=7)
    vp.tick_params(labelleft=False, labelsize=6)
    vp.grid(alpha=0.2)
    deltas = [b.delta for b in bars]
    dx.bar(xs, deltas, width=0.65, color=[_UP if d >= 0 else _DOWN for d in deltas])
    dx.axhline(0, color="#888888", linewidth=0.6)
    dx.set_ylabel("delta", fontsize=7)
    dx.tick_params(labelsize=7)
    step = max(1, n // 6)
    dx.set_xticks(xs[::step], [_hhmm(b.open_ts) for b in bars][::step])
    dx.grid(alpha=0.2)
    fig.text(0.99, 0.01, "UTC · 1m · OrderFlow", fontsize=6, ha="right", color="#888888")
    fig.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.08)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()
