"""Bybit v5 public frames → wire messages: trades deduped, books sequenced by ``u``, gaps marked.
Pure (no clock, no I/O, no randomness): the live feed, ``ofx replay`` and tests run this code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec

from of_feed_bybit.book import L2Book, parse_decimal, parse_levels
from of_feed_bybit.spec import SPEC_TOPIC, parse_spec_frame
from ofcommon.instruments import Registry
from ofcommon.messages import BookDelta, BookSnapshot, Gap, Side, SideSource, Trade
from ofcommon.venue import BadFrame, Published

__all__ = [
    "COUNTERS",
    "DEPTHS",
    "RETIRED_DEPTHS",
    "BybitParser",
    "Category",
    "Event",
    "Pong",
    "Resubscribe",
    "SubscribeResult",
    "UnknownTopic",
]

Category: TypeAlias = Literal["linear", "spot"]

# feeds.md §A.5 (docs as of 2026-07). Bybit retired 25/100/500 on linear in late 2025; its
# historical archives (ob500) still carry them, so replays of those may opt in.
DEPTHS: Final[dict[str, tuple[int, ...]]] = {
    "linear": (1, 50, 200, 1000),
    "spot": (1, 50, 200, 1000),
}
RETIRED_DEPTHS: Final[dict[str, tuple[int, ...]]] = {"linear": (25, 100, 500), "spot": ()}

COUNTERS: Final = (
    "frames",  # every parse() call, good or bad
    "trades",  # Trade messages published from the WebSocket
    "backfilled",  # Trade messages published from REST backfill
    "duplicates",  # trades dropped because their id was already seen
    "snapshots",  # BookSnapshot messages published (resets included)
    "deltas",  # BookDelta messages published
    "gaps",  # Gap messages published, both streams
    "resets",  # book messages with u == 1
    "crossed",  # book messages refused because they would cross the book
    "ignored_deltas",  # deltas dropped because no valid book was held
    "absent_deletes",  # delta deletes of levels the book did not hold (tolerated)
    "truncated",  # levels dropped by the depth window
    "malformed",  # BadFrame raised (parse and backfill)
    "unknown_topic",  # data frames of topics this parser does not serve
    "pongs",
    "acks",  # subscribe/unsubscribe responses
)

_NS_PER_MS: Final = 1_000_000
_SIDES: Final = {"Buy": Side.BUY, "Sell": Side.SELL}
DEDUPE_WINDOW: Final = 100_000

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


# --- events for the caller (not market data) ---------------------------------------------------


class Pong(msgspec.Struct, frozen=True):
    """The server answered a ping (any of the three pong shapes)."""

    recv_ns: int


class SubscribeResult(msgspec.Struct, frozen=True):
    """A subscribe/unsubscribe acknowledgement; ``success`` false carries Bybit's reason."""

    success: bool
    ret_msg: str
    req_id: str
    op: str


class Resubscribe(msgspec.Struct, frozen=True):
    """The book of ``topic`` is invalid: unsubscribe + subscribe it to get a fresh snapshot."""

    topic: str
    reason: str


class UnknownTopic(msgspec.Struct, frozen=True):
    """A data frame of a topic this parser was not built for."""

    topic: str


Event: TypeAlias = Pong | SubscribeResult | Resubscribe | UnknownTopic


# --- Bybit wire shapes (decoding validates types; unknown fields are ignored) -----------------


class _Frame(msgspec.Struct):
    topic: str | None = None
    type: str | None = None
    ts: NonNegative | None = None
    cts: NonNegative | None = None
    data: msgspec.Raw = msgspec.Raw()
    op: str | None = None
    success: bool | None = None
    ret_msg: str | None = None
    req_id: str | None = None


class _TradeRow(msgspec.Struct):
    T: NonNegative
    s: str
    S: str
    v: str
    p: str
    i: str
    seq: NonNegative = 0
    BT: bool = False


class _BookData(msgspec.Struct):
    s: str
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    u: NonNegative
    seq: NonNegative = 0


class _CommandData(msgspec.Struct):
    # Field names are Bybit's (camelCase on the wire).
    successTopics: list[str] = msgspec.field(default_factory=list)
    failTopics: list[str] = msgspec.field(default_factory=list)


class _RestTrade(msgspec.Struct):
    execId: str
    price: str
    size: str
    side: str
    time: str | int
    symbol: str | None = None
    isBlockTrade: bool = False
    seq: str | int = 0


_FRAME: Final = msgspec.json.Decoder(_Frame)
_TRADES: Final = msgspec.json.Decoder(list[_TradeRow])
_BOOK: Final = msgspec.json.Decoder(_BookData)
_COMMAND: Final = msgspec.json.Decoder(_CommandData)


# --- per-topic state ------------------------------------------------------------------------


class _Tape:
    """Trade ids seen for one instrument (FIFO-bounded) and the last trade, for gap markers."""

    __slots__ = ("anchor", "ids", "last", "order", "symbol", "venue_symbol", "window")

    def __init__(self, symbol: str, venue_symbol: str, window: int) -> None:
        self.symbol = symbol
        self.venue_symbol = venue_symbol
        self.window = window
        self.ids: set[str] = set()
        self.order: deque[str] = deque()
        self.last: Trade | None = None  # the newest trade seen
        self.anchor: Trade | None = None  # the newest trade seen before the last disconnect

    def add(self, trade_id: str) -> bool:
        """Remember ``trade_id``; False if it was already seen."""
        if trade_id in self.ids:
            return False
        if len(self.order) >= self.window:
            self.ids.discard(self.order.popleft())
        self.order.append(trade_id)
        self.ids.add(trade_id)
        return True


class _BookTopic:
    __slots__ = (
        "book",
        "gap_open",
        "last_ts",
        "last_u",
        "resync_requested",
        "symbol",
        "topic",
        "valid",
        "venue_symbol",
    )

    def __init__(self, symbol: str, venue_symbol: str, topic: str, depth: int) -> None:
        self.symbol = symbol
        self.venue_symbol = venue_symbol
        self.topic = topic
        self.book = L2Book(depth)
        self.valid = False  # holds a snapshot and every delta since
        self.last_u = 0
        self.last_ts = 0  # ts_event of the last message published on the book stream
        self.resync_requested = False
        self.gap_open = False  # a Gap already told consumers there is no book until a snapshot


class BybitParser:
    """Parses one Bybit v5 public connection (one category) for every registry instrument on it.

    Book rules (feeds.md §A.5): the first message of a topic must be a snapshot; any snapshot
    replaces the book; ``u == 1`` is a reset and is loaded as a snapshot whatever its ``type``; a
    delta must carry ``u == previous u + 1``. A jump, or a message that would cross the book, drops
    the book: a ``Gap`` goes out on the book stream, a ``Resubscribe`` event asks the caller for a
    fresh snapshot, and deltas are ignored until it arrives. Snapshots carry no sequence check, so a
    depth-1 topic that re-pushes the same ``u`` is fine.

    Published ``BookDelta`` levels are the delta's net effect on our book, best first: the final
    size of every level it touched plus a size-0 entry for every level the depth window pushed out,
    so a consumer applying snapshot + deltas holds exactly our book.

    Control frames (pongs, subscribe acks, topics we did not subscribe) are not data: they are
    appended to ``events`` for the caller to drain. Anything malformed raises ``BadFrame`` before
    any state changes.
    """

    def __init__(
        self,
        category: Category,
        registry: Registry,
        depth: int = 50,
        *,
        allow_retired_depth: bool = False,
        dedupe_window: int = DEDUPE_WINDOW,
    ) -> None:
        if category not in DEPTHS:
            raise ValueError(f"category must be one of {sorted(DEPTHS)}, got {category!r}")
        allowed = DEPTHS[category] + (RETIRED_DEPTHS[category] if allow_retired_depth else ())
        if depth not in allowed:
            raise ValueError(
                f"order book depth {depth} is not offered on Bybit {category};"
                f" choose one of {', '.join(map(str, DEPTHS[category]))}"
            )
        if dedupe_window < 1:
            raise ValueError(f"dedupe_window must be at least 1, got {dedupe_window}")
        self.category: Category = category
        self.depth = depth
        self._tapes: dict[str, _Tape] = {}  # internal symbol → tape
        self._trade_topics: dict[str, _Tape] = {}
        self._book_topics: dict[str, _BookTopic] = {}
        self._books: dict[str, _BookTopic] = {}  # internal symbol → book topic
        self.topics: list[str] = []
        venue_symbols: dict[str, str] = {}
        for inst in registry:
            venue = inst.bybit
            if venue is None or venue.category != category:
                continue
            if venue.symbol in venue_symbols:
                raise ValueError(
                    f"Bybit {category} symbol {venue.symbol} is mapped by both"
                    f" {venue_symbols[venue.symbol]} and {inst.symbol}"
                )
            venue_symbols[venue.symbol] = inst.symbol
            tape = _Tape(inst.symbol, venue.symbol, dedupe_window)
            trade_topic = f"publicTrade.{venue.symbol}"
            book_topic = f"orderbook.{depth}.{venue.symbol}"
            self._tapes[inst.symbol] = tape
            self._trade_topics[trade_topic] = tape
            bt = _BookTopic(inst.symbol, venue.symbol, book_topic, depth)
            self._books[inst.symbol] = bt
            self._book_topics[book_topic] = bt
            self.topics += [trade_topic, book_topic]
        self._venue_symbols = venue_symbols
        self._allowed_depths = allowed
        self.events: list[Event] = []
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    # --- public API ---------------------------------------------------------------------------

    def parse(self, recv_ns: int, frame: bytes) -> list[Published]:
        """One WebSocket frame → the messages to publish (control frames go to ``events``)."""
        self.counters["frames"] += 1
        try:
            return self._parse(recv_ns, frame)
        except BadFrame:
            self.counters["malformed"] += 1
            raise

    def disconnected(self, recv_ns: int) -> list[Published]:
        """The connection dropped: every book is void and trades may be missing until backfill."""
        out: list[Published] = []
        for bt in self._book_topics.values():
            last_u = bt.last_u if bt.valid else 0
            self._drop(bt)
            bt.resync_requested = False  # the new connection subscribes every topic afresh
            bt.gap_open = True
            gap = Gap(
                bt.last_ts or recv_ns,
                recv_ns,
                "book",
                "connection lost: no book until a new snapshot",
                last_seq=last_u,
            )
            out.append(Published(bt.symbol, "book", gap))
        for tape in self._tapes.values():
            tape.anchor = tape.last
            last = tape.last
            gap = Gap(
                recv_ns if last is None else last.ts_event,
                recv_ns,
                "trades",
                "connection lost: trades may be missing until backfill",
                last_seq=0 if last is None else last.seq,
            )
            out.append(Published(tape.symbol, "trades", gap))
        self.counters["gaps"] += len(out)
        return out

    def backfill(
        self, recv_ns: int, symbol: str, rows: Sequence[dict[str, Any]]
    ) -> list[Published]:
        """REST ``/v5/market/recent-trade`` rows of an internal ``symbol``: the unseen ones, oldest
        first, as backfill trades; plus a trades ``Gap`` (first) when the rows do not reach back
        to the newest trade seen before the last disconnect.

        That anchor is consumed by the first backfill after a disconnect; a backfill without a
        preceding disconnect (seeding the tape at start-up) never adds a gap.
        """
        tape = self._tapes.get(symbol)
        if tape is None:
            raise ValueError(f"{symbol!r} is not an instrument of this Bybit {self.category} feed")
        try:
            trades = self._rest_trades(recv_ns, tape, rows)
        except BadFrame:
            self.counters["malformed"] += 1
            raise
        out: list[Published] = []
        anchor, tape.anchor = tape.anchor, None
        if anchor is not None and all(t.trade_id != anchor.trade_id for t in trades):
            gap = Gap(
                anchor.ts_event,
                recv_ns,
                "trades",
                "backfill did not reach the last trade before the disconnect",
                last_seq=anchor.seq,
                next_seq=trades[0].seq if trades else 0,
            )
            out.append(Published(symbol, "trades", gap))
            self.counters["gaps"] += 1
        for trade in trades:
            if not tape.add(trade.trade_id):
                self.counters["duplicates"] += 1
                continue
            if tape.last is None or trade.ts_event > tape.last.ts_event:
                tape.last = trade
            out.append(Published(symbol, "trades", trade))
            self.counters["backfilled"] += 1
        return out

    def book(self, symbol: str) -> L2Book | None:
        """The valid book of an internal symbol, or None while there is none (read-only use)."""
        bt = self._books.get(symbol)
        if bt is None:
            raise KeyError(f"{symbol!r} is not an instrument of this Bybit {self.category} feed")
        return bt.book if bt.valid else None

    # --- frames -------------------------------------------------------------------------------

    def _parse(self, recv_ns: int, frame: bytes) -> list[Published]:
        try:
            env = _FRAME.decode(frame)
        except msgspec.ValidationError as e:
            raise BadFrame(f"not a Bybit frame: {e}") from None
        except msgspec.DecodeError as e:
            raise BadFrame(f"not JSON: {e}") from None
        if env.topic is None:
            self._control(recv_ns, env)
            return []
        if env.topic == SPEC_TOPIC:
            return self._spec(recv_ns, env)
        tape = self._trade_topics.get(env.topic)
        if tape is not None:
            return self._trades(recv_ns, env, tape)
        bt = self._book_topics.get(env.topic) or self._other_depth(env.topic)
        if bt is not None:
            return self._book(recv_ns, env, bt)
        self.counters["unknown_topic"] += 1
        self.events.append(UnknownTopic(env.topic))
        return []

    def _spec(self, recv_ns: int, env: _Frame) -> list[Published]:
        # Every check is published, not only changes: a stream trimmed by age must still hold one
        # for a rebuild, and the fold counts a mismatch once per change anyway.
        return parse_spec_frame(self.category, self._venue_symbols, recv_ns, env.ts, env.data)

    def _other_depth(self, topic: str) -> _BookTopic | None:
        # A recording made at another depth than this parser subscribes to (replay of a depth-200
        # capture, or of Bybit's ob500 archives) still names one of our symbols: serve it as is.
        prefix, _, rest = topic.partition(".")
        depth, _, venue_symbol = rest.partition(".")
        symbol = self._venue_symbols.get(venue_symbol)
        if prefix != "orderbook" or symbol is None or not depth.isdigit():
            return None
        if int(depth) not in self._allowed_depths:
            return None
        bt = _BookTopic(symbol, venue_symbol, topic, int(depth))
        self._book_topics[topic] = bt
        self._books[symbol] = bt
        return bt

    def _control(self, recv_ns: int, env: _Frame) -> None:
        # linear/inverse/spot answer {"op":"ping"} with op "ping" + ret_msg "pong"; option and
        # spread send op "pong". Either way the server is alive.
        if env.op in ("ping", "pong"):
            self.counters["pongs"] += 1
            self.events.append(Pong(recv_ns))
            return
        if env.success is None:
            raise BadFrame("neither a topic frame nor a control frame (no topic, op or success)")
        ret_msg = env.ret_msg or ""
        if env.type == "COMMAND_RESP" and len(env.data):
            try:
                failed = _COMMAND.decode(env.data).failTopics
            except msgspec.DecodeError as e:
                raise BadFrame(f"COMMAND_RESP data: {e}") from None
            if failed:
                ret_msg = f"failTopics: {', '.join(failed)}"
        self.counters["acks"] += 1
        self.events.append(SubscribeResult(env.success, ret_msg, env.req_id or "", env.op or ""))

    def _trades(self, recv_ns: int, env: _Frame, tape: _Tape) -> list[Published]:
        topic = env.topic
        if not len(env.data):
            raise BadFrame(f"{topic}: no data")
        try:
            rows = _TRADES.decode(env.data)
        except msgspec.DecodeError as e:
            raise BadFrame(f"{topic}: data: {e}") from None
        # Validate the whole frame before remembering any id: a bad row leaves no trace.
        trades: list[Trade] = []
        for k, row in enumerate(rows):
            where = f"{topic}: data[{k}]"
            if row.s != tape.venue_symbol:
                raise BadFrame(f"{where}.s is {row.s!r}, not {tape.venue_symbol!r}")
            side = _SIDES.get(row.S)
            if side is None:
                raise BadFrame(f"{where}.S: unknown side {row.S!r} (expected 'Buy' or 'Sell')")
            if not row.i:
                raise BadFrame(f"{where}.i: empty trade id")
            trades.append(
                Trade(
                    row.T * _NS_PER_MS,
                    recv_ns,
                    _positive(row.p, f"{where}.p"),
                    _positive(row.v, f"{where}.v"),
                    side,
                    row.i,
                    SideSource.EXCHANGE,
                    seq=row.seq,
                    block=row.BT,
                )
            )
        out: list[Published] = []
        for trade in trades:
            if not tape.add(trade.trade_id):
                self.counters["duplicates"] += 1
                continue
            tape.last = trade
            out.append(Published(tape.symbol, "trades", trade))
        self.counters["trades"] += len(out)
        return out

    def _book(self, recv_ns: int, env: _Frame, bt: _BookTopic) -> list[Published]:
        topic = env.topic
        if env.type not in ("snapshot", "delta"):
            raise BadFrame(f"{topic}: type {env.type!r} is neither 'snapshot' nor 'delta'")
        ms = env.cts if env.cts is not None else env.ts
        if ms is None:
            raise BadFrame(f"{topic}: neither cts nor ts")
        if not len(env.data):
            raise BadFrame(f"{topic}: no data")
        try:
            data = _BOOK.decode(env.data)
        except msgspec.DecodeError as e:
            raise BadFrame(f"{topic}: data: {e}") from None
        if data.s != bt.venue_symbol:
            raise BadFrame(f"{topic}: data.s is {data.s!r}, not {bt.venue_symbol!r}")
        try:
            bids = parse_levels(data.b)
        except ValueError as e:
            raise BadFrame(f"{topic}: data.b{e}") from None
        try:
            asks = parse_levels(data.a)
        except ValueError as e:
            raise BadFrame(f"{topic}: data.a{e}") from None
        ts_event = ms * _NS_PER_MS
        if data.u == 1:
            # Bybit restarted the book service (or delisted, auction phase change, tick change):
            # the message is the whole book whatever its type says (feeds.md §A.5 rule 3).
            self.counters["resets"] += 1
            return self._snapshot(recv_ns, ts_event, bt, data.u, bids, asks)
        if env.type == "snapshot":
            return self._snapshot(recv_ns, ts_event, bt, data.u, bids, asks)
        return self._delta(recv_ns, ts_event, bt, data.u, bids, asks)

    def _snapshot(
        self,
        recv_ns: int,
        ts_event: int,
        bt: _BookTopic,
        u: int,
        bids: list[tuple[float, float]],
        asks: list[tuple[float, float]],
    ) -> list[Published]:
        last_u = bt.last_u if bt.valid else 0
        bt.resync_requested = False  # a snapshot answers any pending request
        self.counters["truncated"] += bt.book.replace(bids, asks)
        if bt.book.crossed():
            return self._refuse_crossed(recv_ns, ts_event, bt, u, last_u, "snapshot")
        bt.valid = True
        bt.gap_open = False
        bt.last_u = u
        bt.last_ts = ts_event
        self.counters["snapshots"] += 1
        msg = BookSnapshot(
            ts_event,
            recv_ns,
            u,
            bt.book.levels("bid"),
            bt.book.levels("ask"),
            depth=bt.book.depth,
        )
        return [Published(bt.symbol, "book", msg)]

    def _delta(
        self,
        recv_ns: int,
        ts_event: int,
        bt: _BookTopic,
        u: int,
        bids: list[tuple[float, float]],
        asks: list[tuple[float, float]],
    ) -> list[Published]:
        if not bt.valid:
            self.counters["ignored_deltas"] += 1
            self._request_resync(bt, "delta before snapshot")
            if bt.gap_open:
                return []
            # the first book message is a delta (a replay starting mid-recording, a lost
            # snapshot): what it and the deltas after it change is missing until a snapshot
            bt.gap_open = True
            self.counters["gaps"] += 1
            reason = "delta before snapshot: no book until a snapshot"
            return [Published(bt.symbol, "book", Gap(ts_event, recv_ns, "book", reason, 0, u))]
        if u != bt.last_u + 1:
            reason = f"u jumped from {bt.last_u} to {u}"
            return self._gap(recv_ns, ts_event, bt, reason, bt.last_u, u)
        changes = bt.book.update(bids, asks)
        self.counters["truncated"] += changes.truncated
        self.counters["absent_deletes"] += changes.absent_deletes
        if bt.book.crossed():
            return self._refuse_crossed(recv_ns, ts_event, bt, u, bt.last_u, "delta")
        bt.last_u = u
        bt.last_ts = ts_event
        self.counters["deltas"] += 1
        msg = BookDelta(ts_event, recv_ns, u, changes.bids, changes.asks)
        return [Published(bt.symbol, "book", msg)]

    def _refuse_crossed(
        self, recv_ns: int, ts_event: int, bt: _BookTopic, u: int, last_u: int, what: str
    ) -> list[Published]:
        self.counters["crossed"] += 1
        bid, ask = bt.book.best_bid(), bt.book.best_ask()
        assert bid is not None  # crossed() implies both sides
        assert ask is not None
        reason = f"{what} u={u} would cross the book (bid {bid[0]!r} >= ask {ask[0]!r})"
        return self._gap(recv_ns, ts_event, bt, reason, last_u, u)

    def _gap(
        self, recv_ns: int, ts_event: int, bt: _BookTopic, reason: str, last_u: int, next_u: int
    ) -> list[Published]:
        self._drop(bt)
        self._request_resync(bt, reason)
        bt.gap_open = True
        bt.last_ts = ts_event
        self.counters["gaps"] += 1
        gap = Gap(ts_event, recv_ns, "book", reason, last_seq=last_u, next_seq=next_u)
        return [Published(bt.symbol, "book", gap)]

    def _drop(self, bt: _BookTopic) -> None:
        bt.valid = False
        bt.last_u = 0
        bt.book.clear()

    def _request_resync(self, bt: _BookTopic, reason: str) -> None:
        # One request per invalid period: deltas keep flowing until the resubscribe lands.
        if not bt.resync_requested:
            bt.resync_requested = True
            self.events.append(Resubscribe(bt.topic, reason))

    # --- REST backfill ------------------------------------------------------------------------

    def _rest_trades(
        self, recv_ns: int, tape: _Tape, rows: Sequence[dict[str, Any]]
    ) -> list[Trade]:
        where = f"recent-trade {tape.venue_symbol}"
        try:
            parsed = msgspec.convert(rows, list[_RestTrade])
        except msgspec.ValidationError as e:
            raise BadFrame(f"{where}: {e}") from None
        trades: list[Trade] = []
        for k, row in enumerate(parsed):
            at = f"{where}: [{k}]"
            if row.symbol is not None and row.symbol != tape.venue_symbol:
                raise BadFrame(f"{at}.symbol is {row.symbol!r}, not {tape.venue_symbol!r}")
            side = _SIDES.get(row.side)
            if side is None:
                raise BadFrame(f"{at}.side: unknown side {row.side!r} (expected 'Buy' or 'Sell')")
            if not row.execId:
                raise BadFrame(f"{at}.execId: empty trade id")
            trades.append(
                Trade(
                    _count(row.time, f"{at}.time") * _NS_PER_MS,
                    recv_ns,
                    _positive(row.price, f"{at}.price"),
                    _positive(row.size, f"{at}.size"),
                    side,
                    row.execId,
                    SideSource.EXCHANGE,
                    seq=_count(row.seq, f"{at}.seq"),
                    block=row.isBlockTrade,
                    backfill=True,
                )
            )
        # Bybit lists newest first (not documented): restore oldest first, keeping the order of
        # trades that share a millisecond, whichever way the list runs.
        if len(trades) > 1 and trades[0].ts_event > trades[-1].ts_event:
            trades.reverse()
        trades.sort(key=lambda t: (t.ts_event, t.seq))
        return trades


def _positive(text: str, where: str) -> float:
    try:
        value = parse_decimal(text)
    except ValueError as e:
        raise BadFrame(f"{where}: {e}") from None
    if value <= 0.0:
        raise BadFrame(f"{where}: {text!r} is not positive")
    return value


def _count(value: str | int, where: str) -> int:
    if isinstance(value, int):
        if value < 0:
            raise BadFrame(f"{where}: {value} is negative")
        return value
    if not (value.isascii() and value.isdigit()):
        raise BadFrame(f"{where}: {value!r} is not a whole number")
    return int(value)
