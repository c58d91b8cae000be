"""Real recorded market data as MT5 ticks for the fake terminal, and the side-estimator report.

``python -m tests.support.fake_mt5_data`` prints the accuracy table of docs/mt5.md.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from of_feed_mt5 import frames
from of_feed_mt5.parser import Mt5Parser
from ofcommon.instruments import Instrument, Mt5Venue, Registry, load_registry
from ofcommon.messages import SideSource, Trade
from tests.support import fake_mt5
from tests.support.real_data import real_file

REPO = Path(__file__).resolve().parents[2]

EURUSD_CSV = "fx/eurusd_ticks_histdata_20200101.csv"
BINANCE_GZ = "binance/spot_btcusdt_20240808.gz"
CME_CSV = "cme/esh4_20231225_trades_derived.csv"

FlagMode = Literal["exchange", "none", "both", "mixed"]
_HISTDATA_UTC_SHIFT = timedelta(hours=5)  # HistData is EST without DST: UTC-5
_TRADE = fake_mt5.TICK_FLAG_LAST | fake_mt5.TICK_FLAG_VOLUME


# --- EURUSD: quote-only FX ticks ---------------------------------------------------------------


@cache
def eurusd_quotes() -> tuple[tuple[int, float, float], ...]:
    """(utc_ms, bid, ask) of the HistData EURUSD file, in file order."""
    out = []
    with real_file(EURUSD_CSV).open() as f:
        for line in f:
            stamp, bid, ask, _volume = line.strip().split(",")
            local = datetime.strptime(stamp, "%Y%m%d %H%M%S%f").replace(tzinfo=UTC)
            utc_ms = int((local + _HISTDATA_UTC_SHIFT).timestamp() * 1000)
            out.append((utc_ms, float(bid), float(ask)))
    return tuple(out)


def fx_ticks(
    quotes: Sequence[tuple[int, float, float]], *, offset_min: int = 120
) -> npt.NDArray[np.void]:
    """Quote-only MT5 ticks (last = 0, volume = 0, flags BID/ASK as they changed) in server time."""
    rows = []
    prev_bid = prev_ask = 0.0
    for utc_ms, bid, ask in quotes:
        flags = (fake_mt5.TICK_FLAG_BID if bid != prev_bid else 0) | (
            fake_mt5.TICK_FLAG_ASK if ask != prev_ask else 0
        )
        msc = utc_ms + offset_min * 60_000
        rows.append((msc // 1000, bid, ask, 0.0, 0, msc, flags or 6, 0.0))
        prev_bid, prev_ask = bid, ask
    return fake_mt5.ticks(rows)


# --- Binance BTCUSDT: trades with the true aggressor, and quotes -------------------------------


@dataclass(frozen=True)
class Event:
    """One line of the capture: a bookTicker quote or a trade, at the recorder's receive time."""

    local_ns: int
    bid: float = 0.0
    ask: float = 0.0
    bid_size: float = 0.0
    ask_size: float = 0.0
    price: float = 0.0  # > 0 for a trade
    qty: float = 0.0
    side: int = 0  # true aggressor of a trade: +1 buy, -1 sell (m = buyer is maker = sell)
    trade_id: int = 0


@cache
def binance_events() -> tuple[Event, ...]:
    out = []
    with gzip.open(real_file(BINANCE_GZ), "rt") as f:
        for line in f:
            stamp, _, raw = line.partition(" ")
            doc = json.loads(raw)
            stream, data = doc.get("stream", ""), doc.get("data", {})
            if stream.endswith("@bookTicker"):
                out.append(
                    Event(
                        int(stamp),
                        bid=float(data["b"]),
                        ask=float(data["a"]),
                        bid_size=float(data["B"]),
                        ask_size=float(data["A"]),
                    )
                )
            elif stream.endswith("@trade"):
                out.append(
                    Event(
                        int(stamp),
                        price=float(data["p"]),
                        qty=float(data["q"]),
                        side=-1 if data["m"] else 1,
                        trade_id=int(data["t"]),
                    )
                )
    return tuple(out)


def _flags_for(mode: FlagMode, side: int, trade_id: int) -> int:
    if mode == "mixed":
        mode = ("exchange", "none", "both")[trade_id % 3]
    if mode == "exchange":
        return fake_mt5.TICK_FLAG_BUY if side > 0 else fake_mt5.TICK_FLAG_SELL
    if mode == "both":
        return fake_mt5.TICK_FLAG_BUY | fake_mt5.TICK_FLAG_SELL
    return 0


@dataclass(frozen=True)
class ExchangeScript:
    ticks: npt.NDArray[np.void]
    truth: dict[str, int]  # trade id the parser gives (time_msc.ordinal) -> true side
    books: list[tuple[int, tuple[fake_mt5.BookInfo, ...]]]  # top-of-book DOM snapshots


def exchange_ticks(
    events: Iterable[Event],
    *,
    mode: FlagMode = "exchange",
    offset_min: int = 120,
    time_ms: Callable[[int], int] | None = None,
) -> ExchangeScript:
    """MT5 ticks of an exchange instrument, in receive order: quotes (bid/ask changes) and trades
    (last, volume, LAST|VOLUME and the BUY/SELL flags ``mode`` asks for). Every field carries
    its previous value when unchanged, as MT5 does. ``time_ms`` maps receive ms to script ms."""
    to_ms = time_ms or (lambda ms: ms)
    rows: list[tuple[int, float, float, float, int, int, int, float]] = []
    truth: dict[str, int] = {}
    books: list[tuple[int, tuple[fake_mt5.BookInfo, ...]]] = []
    bid = ask = last = 0.0
    ms_seen, ordinal = -1, 0
    for e in events:
        msc = to_ms(e.local_ns // 1_000_000) + offset_min * 60_000
        if e.price <= 0:
            book = fake_mt5.book(
                (fake_mt5.BOOK_TYPE_SELL, e.ask, e.ask_size),
                (fake_mt5.BOOK_TYPE_BUY, e.bid, e.bid_size),
            )
            books.append((msc, book))
            flags = (fake_mt5.TICK_FLAG_BID if e.bid != bid else 0) | (
                fake_mt5.TICK_FLAG_ASK if e.ask != ask else 0
            )
            if not flags:
                continue  # only sizes changed: MT5 ticks carry no sizes, so no tick
            bid, ask = e.bid, e.ask
            row = (msc // 1000, bid, ask, last, 0, msc, flags, 0.0)
        else:
            last = e.price
            flags = _TRADE | _flags_for(mode, e.side, e.trade_id)
            row = (msc // 1000, bid, ask, last, round(e.qty), msc, flags, e.qty)
        ordinal = ordinal + 1 if msc == ms_seen else 0
        ms_seen = msc
        if e.price > 0:
            truth[f"{msc}.{ordinal}"] = e.side
        rows.append(row)
    return ExchangeScript(fake_mt5.ticks(rows), truth, books)


@cache
def cme_trades() -> tuple[tuple[int, float, float, int], ...]:
    """(ts_event_ns, price, size, true side) of the ESH4 trades with a known aggressor."""
    out = []
    with real_file(CME_CSV).open() as f:
        for row in csv.DictReader(f):
            side = {"B": 1, "A": -1}.get(row["aggressor_side"], 0)
            if side:
                out.append((int(row["ts_event_ns"]), float(row["price"]), float(row["size"]), side))
    return tuple(out)


# --- the accuracy report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Accuracy:
    name: str
    trades: int  # trades with a true side
    classified: int  # trades the estimator gave a side
    correct: int
    by_source: dict[str, tuple[int, int]]  # source -> (classified, correct)

    @property
    def accuracy(self) -> float:
        return self.correct / self.classified if self.classified else 0.0

    @property
    def coverage(self) -> float:
        return self.classified / self.trades if self.trades else 0.0


def _score(name: str, trades: Iterable[Trade], truth: dict[str, int]) -> Accuracy:
    classified = correct = 0
    by_source: dict[str, list[int]] = {}
    for t in trades:
        want = truth.get(t.trade_id)
        if want is None:
            continue
        ok = int(t.side) == want
        classified += 1
        correct += ok
        tally = by_source.setdefault(SideSource(t.side_source).name, [0, 0])
        tally[0] += 1
        tally[1] += ok
    return Accuracy(
        name, len(truth), classified, correct, {k: (v[0], v[1]) for k, v in by_source.items()}
    )


def parse_ticks(
    registry: Registry,
    instrument: str,
    ticks: npt.NDArray[np.void],
    *,
    rule: str = "lee_ready",
    clock: str = "+120",
) -> list[Trade]:
    """Run the feed's own parser over ``ticks`` (one frame) and return the trades it makes."""
    parser = Mt5Parser(registry)
    data = frames.ticks_frame(instrument, instrument, clock, ticks.tolist(), side_rule=rule)
    return [p.msg for p in parser.parse(0, data) if isinstance(p.msg, Trade)]


ES = Instrument(
    symbol="ESH4",
    group="indices",
    tick_size=0.25,
    row_size=1.0,
    session="NY_CASH",
    mt5=Mt5Venue(names=("ESH4",)),
)


def accuracy_report() -> list[Accuracy]:
    """Tick rule and Lee–Ready, as the feed runs them, against the venues' true aggressor."""
    registry = load_registry()
    btc = exchange_ticks(binance_events(), mode="none")
    out = [
        _score(
            "binance_tick_rule",
            parse_ticks(registry, "BTCUSDT", btc.ticks, rule="tick_rule"),
            btc.truth,
        ),
        _score(
            "binance_lee_ready",
            parse_ticks(registry, "BTCUSDT", btc.ticks, rule="lee_ready"),
            btc.truth,
        ),
    ]
    rows, truth = [], {}
    ms_seen, ordinal = -1, 0
    for ts_ns, price, size, side in cme_trades():
        msc = ts_ns // 1_000_000
        rows.append((msc // 1000, 0.0, 0.0, price, int(size), msc, _TRADE, size))
        ordinal = ordinal + 1 if msc == ms_seen else 0
        ms_seen = msc
        truth[f"{msc}.{ordinal}"] = side
    es_registry = Registry([ES])
    es_ticks = fake_mt5.ticks(rows)
    out.append(
        _score(
            "cme_tick_rule",
            parse_ticks(es_registry, "ESH4", es_ticks, rule="tick_rule", clock="+0"),
            truth,
        )
    )
    return out


def markdown(report: Sequence[Accuracy]) -> str:
    lines = [
        "| data | estimator | trades | classified | accuracy |",
        "|---|---|---:|---:|---:|",
    ]
    for a in report:
        lines.append(
            f"| `{a.name}` | {_LABELS[a.name]} | {a.trades:,} | {a.coverage:.1%} |"
            f" {a.accuracy:.1%} |"
        )
    return "\n".join(lines)


_LABELS: dict[str, str] = {
    "binance_tick_rule": "tick rule",
    "binance_lee_ready": "Lee–Ready, previous tick's quote",
    "cme_tick_rule": "tick rule (no quotes in the file)",
}


def _main() -> None:
    report = accuracy_report()
    print(markdown(report))
    for a in report:
        print(a.name, {k: f"{c:,} at {ok / c:.1%}" for k, (c, ok) in a.by_source.items()})


if __name__ == "__main__":
    _main()


# --- the demo terminal: real data replayed in compressed time ------------------------------------

DEMO_LOGIN = 5_012_345
DEMO_PASSWORD = "s3cret'\"pw"  # quotes on purpose: secrets must never be spliced into code
DEMO_SERVER = "Demo-Server"
DEMO_SYMBOLS = {"EURUSD": "EURUSDm", "BTCUSDT": "BTCUSD", "XAUUSDT": "XAUUSD.r"}


@dataclass(frozen=True)
class Demo:
    """What the demo terminal holds, in broker server time (UTC + ``offset_min``).

    EURUSD: 600 real quotes, the first 200 before ``pivot_utc_ms`` (tick history), the rest
    after it, compressed 300×. BTCUSD: the first 1,500 events of the Binance capture after the
    pivot, 5× compressed, BUY/SELL flags mixed, with a top-of-book DOM. XAUUSD.r: 30 M1 bars
    before the pivot and no ticks (warm-up falls back to bars).
    """

    offset_min: int
    pivot_utc_ms: int
    eurusd: npt.NDArray[np.void]
    btc: ExchangeScript
    xau_rates: npt.NDArray[np.void]


def demo_script(pivot_utc_ms: int, offset_min: int = 120) -> Demo:
    quotes = eurusd_quotes()[:600]
    t200 = quotes[200][0]
    fx = [(pivot_utc_ms + (t - t200) // 300, b, a) for t, b, a in quotes]
    events = binance_events()[:1500]
    t0 = events[0].local_ns // 1_000_000
    btc = exchange_ticks(
        events,
        mode="mixed",
        offset_min=offset_min,
        time_ms=lambda ms: pivot_utc_ms + (ms - t0) // 5,
    )
    first_bar = (pivot_utc_ms + offset_min * 60_000) // 60_000 * 60 - 32 * 60  # closed by then
    bars = []
    price = 2400.0
    for i in range(30):
        o = price
        c = round(o + (1.5 if i % 3 else -2.25), 2)
        bars.append((first_bar + 60 * i, o, max(o, c) + 0.5, min(o, c) - 0.75, c, 40 + i, 12, 0))
        price = c
    return Demo(
        offset_min, pivot_utc_ms, fx_ticks(fx, offset_min=offset_min), btc, fake_mt5.rates(bars)
    )


def install_demo(pivot_utc_ms: int, offset_min: int = 120) -> None:
    """Build the demo terminal and install it into the fake module (run on the bridge)."""
    demo = demo_script(pivot_utc_ms, offset_min)
    term = fake_mt5.FakeTerminal(
        fake_mt5.server_now(offset_min),
        login=DEMO_LOGIN,
        password=DEMO_PASSWORD,
        server=DEMO_SERVER,
    )
    term.add(fake_mt5.FakeSymbol("EURUSDm", ticks=demo.eurusd, description="Euro vs US Dollar"))
    term.add(
        fake_mt5.FakeSymbol(
            "BTCUSD",
            ticks=demo.btc.ticks,
            books=demo.btc.books,
            digits=2,
            point=0.01,
            tick_size=0.01,
            book_depth=5,
        )
    )
    term.add(
        fake_mt5.FakeSymbol(
            "XAUUSD.r",
            rates=demo.xau_rates,
            digits=2,
            point=0.01,
            tick_size=0.01,
        )
    )
    term.add(fake_mt5.FakeSymbol("EURGBP.x"))  # a near miss that discovery must not take
    fake_mt5.install(term)
