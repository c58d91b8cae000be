"""MT5 frames → normalised messages, live and in replay alike: no I/O, no clock.

Ticks become Quotes and Trades (for quote-only FX ticks: one-tick ``SizeKind.TICKS`` estimates).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Final, NamedTuple

import msgspec

from of_feed_mt5 import frames
from of_feed_mt5.book import book_sides
from of_feed_mt5.constants import TICK_FLAG_BUY, TICK_FLAG_LAST, TICK_FLAG_SELL, TICK_FLAG_VOLUME
from of_feed_mt5.cursor import TickRow
from of_feed_mt5.servertime import ClockSpecError, ServerClock
from of_feed_mt5.side import (
    DEFAULT_SIDE_RULE,
    SIDE_RULES,
    QuotePressure,
    SideRule,
    TradeClassifier,
)
from ofcommon.instruments import Instrument, Registry
from ofcommon.messages import (
    BookSnapshot,
    Heartbeat,
    InstrumentSpec,
    Level,
    Quote,
    Side,
    SideSource,
    SizeKind,
    Trade,
)
from ofcommon.venue import BadFrame, Published

SOURCE: Final = "mt5"
_MS: Final = 1_000_000
_TRADE_FLAGS: Final = TICK_FLAG_LAST | TICK_FLAG_VOLUME | TICK_FLAG_BUY | TICK_FLAG_SELL
# Where in its minute each of a bar's four synthetic prints (open, extreme, extreme, close) sits.
_BAR_STEPS_MS: Final = (0, 15_000, 30_000, 45_000)


class Rejected(NamedTuple):
    """One tick the parser could not use: dead-letter ``frame`` (a frame holding just it)."""

    instrument: str
    reason: str
    frame: bytes


def tick_snapper(tick_size: float) -> Callable[[float], float]:
    """Round a price to the instrument's tick grid, without binary noise in the last digits."""
    decimals = max(0, -int(Decimal(repr(tick_size)).normalize().as_tuple().exponent))

    def snap(price: float) -> float:
        return round(round(price / tick_size) * tick_size, decimals)

    return snap


class _State:
    """What the parser remembers of one instrument between frames."""

    __slots__ = (
        "book",
        "book_seq",
        "classifier",
        "last_close",
        "last_quote",
        "ms",
        "ordinal",
        "pressure",
        "prev_ask",
        "prev_bid",
        "rule",
        "snap",
    )

    def __init__(self, inst: Instrument) -> None:
        self.snap = tick_snapper(inst.tick_size)
        self.rule: SideRule = DEFAULT_SIDE_RULE
        self.classifier = TradeClassifier(self.rule)
        self.pressure = QuotePressure()
        self.prev_bid = 0.0
        self.prev_ask = 0.0
        self.last_quote: tuple[float, float] | None = None
        self.ms = -1
        self.ordinal = 0
        self.book: tuple[list[Level], list[Level]] | None = None
        self.book_seq = 0
        self.last_close = 0.0

    def use_rule(self, rule: str) -> None:
        if rule != self.rule:
            if rule not in SIDE_RULES:
                raise BadFrame(f"unknown side_rule {rule!r}")
            self.rule = rule
            self.classifier = TradeClassifier(self.rule)

    def trade_id(self, time_msc: int) -> str:
        # Several ticks share a millisecond; the ordinal keeps ids unique and stable across polls.
        if time_msc == self.ms:
            n = self.ordinal
        else:
            self.ms, n = time_msc, 0
        self.ordinal = n + 1
        return f"{time_msc}.{n}"


class Mt5Parser:
    """The ``FrameParser`` of venue ``mt5``. Ticks that fail validation are skipped, counted and
    kept in ``rejected`` for the caller to dead-letter; a frame that is unusable as a whole
    raises ``BadFrame``. ``counts`` tallies what was seen and produced."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._states: dict[str, _State] = {}
        self._clocks: dict[str, ServerClock] = {}
        self.rejected: list[Rejected] = []
        self.counts: Counter[str] = Counter()

    def take_rejected(self) -> list[Rejected]:
        out, self.rejected = self.rejected, []
        return out

    def parse(self, recv_ns: int, frame: bytes) -> list[Published]:
        try:
            decoded = frames.decode(frame)
        except msgspec.DecodeError as err:
            raise BadFrame(f"malformed mt5 frame: {err}") from None
        state = self._state(decoded.instrument)
        self.counts[f"frames_{type(decoded).__name__}"] += 1
        if isinstance(decoded, frames.TicksFrame):
            return self._ticks(recv_ns, decoded, state)
        if isinstance(decoded, frames.BookFrame):
            return self._book(recv_ns, decoded, state)
        if isinstance(decoded, frames.HeartbeatFrame):
            beat = Heartbeat(decoded.ts_event, recv_ns, SOURCE)
            return [Published(decoded.instrument, kind, beat) for kind in ("trades", "book")]
        if isinstance(decoded, frames.BarsFrame):
            return self._bars(recv_ns, decoded, state)
        self._clock(decoded.clock)  # a symbol frame announces; its clock must be valid
        return self._spec(recv_ns, decoded, state)

    # --- frames ------------------------------------------------------------------------------

    def _state(self, instrument: str) -> _State:
        state = self._states.get(instrument)
        if state is None:
            if instrument not in self._registry:
                raise BadFrame(f"unknown instrument {instrument!r}")
            state = self._states[instrument] = _State(self._registry.get(instrument))
        return state

    def _spec(self, recv_ns: int, frame: frames.SymbolFrame, state: _State) -> list[Published]:
        """The terminal's tick (``trade_tick_size``, else ``point``) as the instrument's
        ``InstrumentSpec``; from here on prices snap to it rather than to the registry's."""
        tick = frame.tick_size if frame.tick_size > 0 else frame.point
        if not (math.isfinite(tick) and tick > 0):
            return []  # the terminal said nothing usable: the registry's grid stays
        state.snap = tick_snapper(tick)
        spec = InstrumentSpec(
            ts_event=recv_ns,
            ts_recv=recv_ns,
            venue=SOURCE,
            venue_symbol=frame.symbol or frame.instrument,
            tick_size=tick,
        )
        # On both streams: the bars follow the trades stream's, the book window the book's.
        return [
            Published(frame.instrument, "trades", spec),
            Published(frame.instrument, "book", spec),
        ]

    def _clock(self, spec: str) -> ServerClock:
        clock = self._clocks.get(spec)
        if clock is None:
            try:
                clock = self._clocks[spec] = ServerClock.parse(spec)
            except ClockSpecError as err:
                raise BadFrame(str(err)) from None
        return clock

    def _ticks(self, recv_ns: int, frame: frames.TicksFrame, state: _State) -> list[Published]:
        clock = self._clock(frame.clock)
        state.use_rule(frame.side_rule)
        out: list[Published] = []
        for raw in frame.ticks:
            try:
                row = frames.decode_tick(raw)
            except msgspec.DecodeError as err:
                self._reject(frame, raw, f"malformed tick: {err}")
                continue
            reason = self._tick(recv_ns, row, clock, frame, state, out)
            if reason:
                self._reject(frame, raw, reason)
        return out

    def _tick(
        self,
        recv_ns: int,
        row: TickRow,
        clock: ServerClock,
        frame: frames.TicksFrame,
        state: _State,
        out: list[Published],
    ) -> str:
        """Publish one tick into ``out``; a non-empty return is why it was rejected."""
        _time, bid, ask, last, _volume, time_msc, _flags, volume_real = row
        trade_id = state.trade_id(time_msc)
        if time_msc <= 0:
            return f"bad time_msc {time_msc}"
        if not all(math.isfinite(x) and x >= 0 for x in (bid, ask, last, volume_real)):
            return "non-finite or negative price or volume"
        quoted = bid > 0 and ask > 0
        if last <= 0 and not quoted:
            return "no price: last, bid and ask all zero"
        self.counts["ticks"] += 1
        ts = clock.to_utc_ms(time_msc) * _MS
        if quoted and (bid, ask) != state.last_quote:
            state.last_quote = (bid, ask)
            # History warms up bars and profiles; hours-old quotes would serve nothing.
            if not frame.backfill:
                quote = Quote(ts, recv_ns, state.snap(bid), state.snap(ask))
                out.append(Published(frame.instrument, "book", quote))
                self.counts["quotes"] += 1
        trade = self._print(recv_ns, ts, trade_id, row, frame.backfill, state)
        if trade is not None:
            out.append(Published(frame.instrument, "trades", trade))
            self.counts[f"trades_{trade.side_source.name.lower()}"] += 1
        if quoted:
            state.prev_bid, state.prev_ask = bid, ask
        return ""

    def _print(
        self, recv_ns: int, ts: int, trade_id: str, row: TickRow, backfill: bool, state: _State
    ) -> Trade | None:
        """The trade a valid tick stands for, if any."""
        _time, bid, ask, last, volume, _msc, flags, volume_real = row
        if last > 0:
            if not flags & _TRADE_FLAGS:
                return None  # a quote change on an instrument with real trades
            size = volume_real if volume_real > 0 else float(volume)
            decided = state.classifier.classify(last, flags, state.prev_bid, state.prev_ask)
            price = last
            kind = SizeKind.REAL if size > 0 else SizeKind.TICKS
        else:
            # Quote-only (FX/CFD): no trade happened; count the tick, signed by quote pressure.
            decided = state.pressure.push(bid, ask)
            price, size, kind = (bid + ask) / 2, 0.0, SizeKind.TICKS
        if decided is None:
            self.counts["unclassified"] += 1  # nothing to compare with yet
            return None
        side, source = decided
        return Trade(
            ts,
            recv_ns,
            state.snap(price),
            size if size > 0 else 1.0,
            side,
            trade_id,
            source,
            backfill=backfill,
            size_kind=kind,
        )

    def _reject(self, frame: frames.TicksFrame, raw: msgspec.Raw, reason: str) -> None:
        self.counts["rejected"] += 1
        single = msgspec.structs.replace(frame, ticks=[raw])
        self.rejected.append(Rejected(frame.instrument, reason, frames.encode(single)))

    def _book(self, recv_ns: int, frame: frames.BookFrame, state: _State) -> list[Published]:
        try:
            bids, asks = book_sides(frame.levels, state.snap)
        except ValueError as err:
            raise BadFrame(str(err)) from None
        if state.book == (bids, asks):
            return []  # MT5 books are polled: only a change is news
        state.book = (bids, asks)
        state.book_seq += 1
        snap = BookSnapshot(frame.ts_event, recv_ns, state.book_seq, bids, asks, frame.depth)
        self.counts["books"] += 1
        return [Published(frame.instrument, "book", snap)]

    def _bars(self, recv_ns: int, frame: frames.BarsFrame, state: _State) -> list[Published]:
        """Each M1 bar as four prints (open, low/high, high/low, close) splitting its volume, so a
        bar rebuilt from them has the bar's OHLC and volume; sides by the tick test along the
        path. Estimates, flagged backfill, of tick counts unless the bar has real volume."""
        clock = self._clock(frame.clock)
        out: list[Published] = []
        for time_s, o, h, low, c, tick_volume, _spread, real_volume in frame.bars:
            prices = (o, low, h, c) if c >= o else (o, h, low, c)
            if not all(math.isfinite(p) and p > 0 for p in prices) or tick_volume < 0:
                raise BadFrame(f"bad bar at {time_s}: {prices}")
            if real_volume > 0:
                volume, kind = real_volume, SizeKind.REAL
            else:
                volume, kind = tick_volume, SizeKind.TICKS
            if volume <= 0:
                continue
            bar_direction = 1 if c >= o else -1
            prev = state.last_close or o
            for k, (price, step) in enumerate(zip(prices, _BAR_STEPS_MS, strict=True)):
                direction = (price > prev) - (price < prev) or bar_direction
                prev = price
                ts = clock.to_utc_ms(time_s * 1000 + step) * _MS
                side = Side.BUY if direction > 0 else Side.SELL
                trade = Trade(
                    ts,
                    recv_ns,
                    state.snap(price),
                    volume / 4,
                    side,
                    f"bar{time_s}.{k}",
                    SideSource.TICK_RULE,
                    backfill=True,
                    size_kind=kind,
                )
                out.append(Published(frame.instrument, "trades", trade))
            state.last_close = c
            self.counts["bars"] += 1
        return out


def make_parser(category: str, registry: Registry) -> Mt5Parser:
    """The ``Venue.parser`` factory; MT5 has one category, ``ticks``."""
    if category != "ticks":
        raise ValueError(f"mt5 records one category, 'ticks' (got {category!r})")
    return Mt5Parser(registry)
