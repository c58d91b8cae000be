"""How each instrument behaves on the simulated venue: price level, lot, rates, sizes, volatility.

Scales derive from the registry's tick grid and thresholds: episodes speak the detectors' units.
"""

from __future__ import annotations

import math
from typing import Final

import msgspec

from ofcommon.instruments import Instrument

__all__ = ["SimProfile", "decimals_of", "profile_for"]

# Plausible early-2024 price levels, so the dashboard shows familiar numbers; anything not listed
# starts at 100,000 ticks.
_BASE_PRICES: Final[dict[str, float]] = {
    "NAS100USDT": 18000.0,
    "SP500": 5100.0,
    "DJ30": 38900.0,
    "UK100": 7650.0,
    "DAX40": 17700.0,
    "NIKKEI225": 40000.0,
    "CAC40": 7900.0,
    "ASX200": 7700.0,
    "HK50": 16500.0,
    "XAUUSDT": 2120.0,
    "XAGUSD": 23.8,
    "USOIL": 78.5,
    "UKOIL": 82.5,
    "EURUSD": 1.085,
    "GBPUSD": 1.268,
    "AUDUSD": 0.655,
    "USDCAD": 1.355,
    "USDCHF": 0.885,
    "NZDUSD": 0.61,
    "EURGBP": 0.856,
    "USDJPY": 150.0,
    "EURJPY": 162.8,
    "GBPJPY": 190.3,
    "AAPL": 170.0,
    "TSLA": 180.0,
    "AMZN": 175.0,
    "MSFT": 410.0,
    "NVDA": 850.0,
    "META": 490.0,
    "GOOGL": 135.0,
    "BTCUSDT": 65000.0,
}

# Market orders per second in calm conditions (Hawkes clusters raise the instantaneous rate).
_TRADE_RATE: Final[dict[str, float]] = {
    "crypto": 8.0,
    "indices": 4.0,
    "forex": 3.0,
    "metals": 3.0,
    "energy": 3.0,
    "stocks": 3.0,
}

_MINUTE_SD_ROWS: Final = 16.0

# What a feed adds between venue time and our receive time; fixed so runs are byte-identical.
_LATENCY_MS: Final[dict[str, int]] = {
    "crypto": 3,
    "indices": 12,
    "forex": 25,
    "metals": 12,
    "energy": 12,
    "stocks": 12,
}


class SimProfile(msgspec.Struct, frozen=True, kw_only=True):
    """The simulated venue's scales for one instrument; prices in ticks, sizes in lots."""

    symbol: str
    tick_size: float
    price_decimals: int
    lot: float
    size_decimals: int
    base_ticks: int
    trade_rate: float  # background market orders per second (long-run mean)
    book_rate: float  # background book updates (adds/cancels) per second
    bar_lots: int  # background traded volume per one-minute bar
    level_lots: int  # typical resting size at the touch
    thin_lots: int  # the sweep detector's thin-book threshold
    sigma_ticks: float  # fair-value volatility, ticks per square-root second
    latency_ns: int


def decimals_of(step: float) -> int:
    """The fewest decimals that write ``step`` exactly (0.01 -> 2, 0.00001 -> 5, 1.0 -> 0)."""
    for d in range(12):
        scaled = step * 10**d
        if math.isclose(scaled, round(scaled), rel_tol=0, abs_tol=1e-9 * max(1.0, scaled)):
            return d
    raise ValueError(f"step {step!r} has no short decimal form")


def profile_for(inst: Instrument) -> SimProfile:
    tick = inst.tick_size
    lot = 0.001 if inst.group == "crypto" else 0.01
    base_price = _BASE_PRICES.get(inst.symbol)
    base_ticks = round(base_price / tick) if base_price is not None else 100_000
    # Background bars carry half the absorption threshold: heavy enough to look alive, light
    # enough that only injected episodes reach the detectors' volume and delta thresholds.
    bar_lots = max(60, round(0.5 * inst.absorption.min_aggressive_volume / lot))
    thin_lots = max(2, round(inst.sweep.thin_book_threshold / lot))
    # Resting levels are twice the thin threshold, so background flow never looks like a sweep.
    level_lots = 2 * thin_lots
    # One-minute standard deviation of 10 footprint rows: the registry's rows are sized for a
    # typical minute of the market (docs/analytics.md), so simulated bars span 10+ rows as real
    # ones do (a minute's range is about 1.6 standard deviations).
    minute_sd = _MINUTE_SD_ROWS * inst.footprint.row_ticks
    rate = _TRADE_RATE.get(inst.group, 3.0)
    return SimProfile(
        symbol=inst.symbol,
        tick_size=tick,
        price_decimals=decimals_of(tick),
        lot=lot,
        size_decimals=decimals_of(lot),
        base_ticks=base_ticks,
        trade_rate=rate,
        book_rate=1.5 * rate,
        bar_lots=bar_lots,
        level_lots=level_lots,
        thin_lots=thin_lots,
        sigma_ticks=minute_sd / math.sqrt(60.0),
        latency_ns=_LATENCY_MS.get(inst.group, 12) * 1_000_000,
    )
