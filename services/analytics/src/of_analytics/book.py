"""Live L2 book per instrument: snapshots + deltas, validity, throttled BookStats, consumption.
Pure (no I/O, no clock): every decision uses event time, so a replay yields the same outputs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final, NamedTuple, TypeAlias

from of_analytics.state import BookState, PrintState, RemovalState
from ofcommon.entry_ids import FANOUT, ZERO, EntryId
from ofcommon.messages import (
    BookDelta,
    BookSnapshot,
    BookStats,
    Consumption,
    Direction,
    Gap,
    Heartbeat,
    Level,
    Message,
    Quote,
    Side,
    SizeKind,
    Trade,
)

__all__ = ["BookEngine", "BookOutput", "BookParams", "Resolved", "least_resistance"]


class Resolved(NamedTuple):
    """A consumption event and its anchor: the ID of the book entry that removed the size, with
    the removal's index in it (``entry_ids.FANOUT`` slots per entry)."""

    consumption: Consumption
    anchor: EntryId


BookOutput: TypeAlias = BookStats | Resolved

_EPS: Final = 1e-9  # price tolerance for the window edges: prices are floats on a tick grid
_SIZE_EPS: Final = 1e-12  # sizes below this are float noise, not a change


@dataclass(frozen=True, slots=True)
class BookParams:
    """Tunables of one instrument's book engine (defaults suit a liquid crypto perpetual)."""

    row: float  # price height of one row (the instrument's tick or row size)
    rows: int = 10  # ±rows of the mid that statistics and consumption look at
    thin_fraction: float = 0.25  # thin: size < thin_fraction × average level size
    wall_multiple: float = 4.0  # wall: size > wall_multiple × average level size
    throttle_ns: int = 250_000_000  # at most one valid BookStats per 250 ms of event time
    # A print explains a removal if it is at most 1 s before it, or at most ``print_lag_ns``
    # after it: the book's timestamp may trail the print's (docs/analytics.md measures it).
    match_window_ns: int = 1_000_000_000
    print_lag_ns: int = 20_000_000
    dead_band: float = 0.15  # |imbalance| below this: no path of least resistance (seed §7)
    max_pending: int = 50_000  # removals waiting for the trades stream; beyond, the oldest resolve
    max_prints: int = 200_000  # prints waiting for the book stream; beyond, the oldest are dropped
    # Prints this far (event time) behind the trades stream are dropped even if the book stream
    # lags further: a trades-only instrument must not keep every print in its checkpoint.
    max_skew_ns: int = 60_000_000_000

    def __post_init__(self) -> None:
        if not self.row > 0:
            raise ValueError(f"row must be positive, got {self.row}")
        if self.rows < 1:
            raise ValueError(f"rows must be at least 1, got {self.rows}")
        if self.throttle_ns < 0 or self.match_window_ns < 0 or self.print_lag_ns < 0:
            raise ValueError("throttle_ns, match_window_ns and print_lag_ns must not be negative")
        if self.print_lag_ns > self.match_window_ns:
            # resolution waits match_window_ns: a later print could not be seen in time
            raise ValueError("print_lag_ns must not exceed match_window_ns")
        if self.max_pending < 1 or self.max_prints < 1:
            raise ValueError("max_pending and max_prints must be at least 1")


def least_resistance(stats: BookStats, dead_band: float = 0.15) -> Direction:
    """The side price moves to most easily: towards the side with less resting size."""
    return _direction(stats.imbalance, dead_band) if stats.valid else Direction.NEUTRAL


def _direction(imbalance: float, dead_band: float) -> Direction:
    if imbalance > dead_band:
        return Direction.LONG  # more bids than asks: less to trade through above
    if imbalance < -dead_band:
        return Direction.SHORT
    return Direction.NEUTRAL


@dataclass(slots=True)
class _Removal:
    ts: int
    side: Side  # the aggressor side that would have taken the level
    price: float
    removed: float
    refilled: bool = False
    anchor: EntryId = ZERO


# A print waiting to explain removals: ``left`` is its size not yet used. The checkpoint's own
# Struct, so that a checkpoint lists the live prints as they are (tens of thousands at 20 k
# trades/s: re-building each one was most of the checkpoint's cost).
_Print: TypeAlias = PrintState


@dataclass(slots=True)
class _Side:
    levels: dict[float, float] = field(default_factory=dict)
    best: float | None = None
    stale: bool = False  # the best was deleted: recompute on demand, not on every delta

    def top(self, is_bid: bool) -> float | None:
        if self.stale:
            self.best = (max if is_bid else min)(self.levels) if self.levels else None
            self.stale = False
        return self.best


class BookEngine:
    """One instrument's live book. Feed it with ``on_message`` (or the typed ``on_*`` methods);
    each call returns the ``BookStats`` and ``Consumption`` messages to publish, in order.

    * **Validity.** The book is valid from a ``BookSnapshot`` (or a ``Quote``, the quote-only
      venues' one-level book) until the next ``Gap(stream="book")``, a ``BookDelta`` whose ``seq``
      is not the previous ``seq + 1`` (defence in depth: the feed already checks), or an update
      that leaves the book crossed or locked (best bid >= best ask). While invalid, deltas are
      ignored and one ``BookStats(valid=False)`` is emitted when the book breaks, nothing else.
    * **Window.** Statistics look at levels within ``rows`` rows (``row`` price units each) of the
      mid: bids priced at or above ``mid - rows*row``, asks at or below ``mid + rows*row``.
      ``imbalance = (bid_depth - ask_depth) / (bid_depth + ask_depth)`` in that window. A level is
      *thin* below ``thin_fraction`` × the window's average level size and a *wall* above
      ``wall_multiple`` × that average.
    * **Path of least resistance** (``least_resistance``): price moves most easily towards the side
      with less resting size to trade through inside the window. Fewer asks than bids (imbalance
      above ``+dead_band``) → ``LONG`` (up); fewer bids (below ``-dead_band``) → ``SHORT``; else
      ``NEUTRAL``. Published as ``BookStats.least_resistance``.
    * **Throttle.** At most one valid ``BookStats`` per ``throttle_ns`` of *event time*: the first
      book update at or past ``last_published + throttle_ns`` publishes. State changes (broken,
      revalidated by a snapshot) publish at once, so a consumer never trusts a stale ``valid=True``.
    * **Consumption.** A level inside the window that shrinks or disappears records a pending
      removal, anchored at the book entry that carried the delta (``at``). Trades and book updates
      arrive on different streams, read in batches whose interleaving depends on timing; so that a
      re-run after a crash gives the very same events, nothing here depends on that interleaving:
      each stream has its own event-time watermark (``ts_event`` of its trades or book messages,
      heartbeats and gaps), and a removal is resolved only once *both* have passed
      ``removal ts + match_window_ns`` (each stream is in event-time order, so by then every print
      and every book update that can bear on it has been seen, whatever the interleaving).
      Removals resolve in book order, each against the not yet used trades at that exact price
      whose aggressor hit that side (a ``SELL`` aggressor takes bids, a ``BUY`` takes asks) and
      whose ``ts_event`` lies in ``[removal ts - match_window_ns, removal ts + print_lag_ns]``,
      nearest in event time first (ties: the earlier arrival): ``traded = min(removed,
      matched)``, ``cancelled = the rest``; each trade's size is used once. A print later than
      the allowance belongs to a later removal: a cancel, a re-post and a lift of the re-posted
      order must read "cancelled, then traded", not "traded, refilled". If the same level
      grows again by ``removal ts + match_window_ns``, ``refilled`` is set (a synthetic iceberg
      hint: a hidden or re-posted order). Levels outside the window are skipped: the feed's depth
      window pushes far levels out with size 0, which is neither a trade nor a cancellation.
      ``Consumption.side`` is the aggressor side that takes such a level (``SELL`` for a bid,
      ``BUY`` for an ask), like ``Trade.side``. A stream that stops advancing (no trades and no
      heartbeats) holds removals back; beyond ``max_pending`` the oldest resolve with what has
      been seen and ``forced`` counts them (likewise ``max_prints`` and ``dropped_prints``), and
      prints more than ``max_skew_ns`` behind the trades stream are dropped when the book stream
      lags that far (an instrument without a book keeps one minute of prints, not all of them).
      Within those bounds nothing depends on how the two streams interleave.
    """

    def __init__(self, params: BookParams) -> None:
        self.params = params
        self._bids = _Side()
        self._asks = _Side()
        self.valid = False
        self._told = False  # BookStats(valid=False) already published for the current break
        self.seq = 0
        self.now = 0  # event time: the largest ts_event seen on any input
        self.trades_now = 0  # watermark of the trades stream
        self.book_now = 0  # watermark of the book stream
        self.forced = 0  # removals resolved before both watermarks passed them (max_pending)
        self.dropped_prints = 0  # prints dropped unused because the book stream stood still
        self._last_stats: int | None = None
        self._pending: deque[_Removal] = deque()
        self._pending_ordered = True  # _pending is in event-time order (see _mark_refill)
        # The same removals by (taker side, price), each in _pending's order: a refill looks up
        # its level instead of scanning every pending removal.
        self._pending_at: dict[tuple[Side, float], deque[_Removal]] = {}
        # The event time of each such level's last refill (not checkpointed: see _mark_refill).
        self._refill_ts: dict[tuple[Side, float], int] = {}
        self._prints: deque[_Print] = deque()  # arrival order, for pruning
        self._by_level: dict[tuple[Side, float], deque[_Print]] = {}  # lookup by side and price

    # --- inputs -----------------------------------------------------------------------------

    def on_message(self, msg: Message, at: EntryId = ZERO) -> list[BookOutput]:
        """Dispatch a message of one merged stream: a heartbeat advances both watermarks."""
        if isinstance(msg, Trade):
            return self.on_trade(msg)
        if isinstance(msg, Heartbeat):
            return self.advance(msg.ts_event)
        if isinstance(msg, Gap) and msg.stream == "trades":
            return self.advance_trades(msg.ts_event)
        return self.on_book(msg, at)

    def on_book(self, msg: Message, at: EntryId = ZERO) -> list[BookOutput]:
        """A message of the book stream (``at``: its entry ID); others are ignored."""
        if isinstance(msg, BookDelta):
            return self.on_delta(msg, at)
        if isinstance(msg, BookSnapshot):
            return self.on_snapshot(msg)
        if isinstance(msg, Quote):
            return self.on_quote(msg)
        if isinstance(msg, Gap):
            return self.on_gap(msg)
        if isinstance(msg, Heartbeat):
            return self.advance_book(msg.ts_event)
        return []

    def on_snapshot(self, snap: BookSnapshot) -> list[BookOutput]:
        return self._replace(snap.ts_event, snap.seq, snap.bids, snap.asks)

    def on_quote(self, q: Quote) -> list[BookOutput]:
        # Quote-only venues: the top of book is the whole book; it carries no sequence.
        return self._replace(q.ts_event, self.seq, [(q.bid, q.bid_size)], [(q.ask, q.ask_size)])

    def on_gap(self, gap: Gap) -> list[BookOutput]:
        if gap.stream == "trades":
            return self.advance_trades(gap.ts_event)
        out = self.advance_book(gap.ts_event)
        return out + self._invalidate(gap.ts_event)

    def on_delta(self, d: BookDelta, at: EntryId = ZERO) -> list[BookOutput]:
        out = self.advance_book(d.ts_event)
        if not self.valid:
            return out
        if d.seq != self.seq + 1:
            return out + self._invalidate(d.ts_event)
        self.seq = d.seq
        # The window is taken on the book before the delta: that is where the removed size rested.
        bid, ask = self._bids.top(True), self._asks.top(False)
        lo, hi = self._window(bid, ask) if bid is not None and ask is not None else (0.0, -1.0)
        anchor = [EntryId(at.ms, at.seq * FANOUT)]
        self._apply(d.ts_event, self._bids, True, d.bids, lo, hi, anchor)
        self._apply(d.ts_event, self._asks, False, d.asks, lo, hi, anchor)
        if len(self._pending) > self.params.max_pending:
            out += self._force()
        if self._crossed():
            return out + self._invalidate(d.ts_event)
        if self._last_stats is None or d.ts_event >= self._last_stats + self.params.throttle_ns:
            out.append(self.stats(d.ts_event))
            self._last_stats = d.ts_event
        return out

    def on_trade(self, t: Trade) -> list[BookOutput]:
        ts = t.ts_event
        if ts > self.trades_now:
            self.trades_now = ts
        # The fast path of the fold's hottest call: nothing to resolve or prune, nothing to do.
        pending, prints = self._pending, self._prints
        w = self.params.match_window_ns
        now = self.trades_now
        # A superset of what _settle resolves: when true, _settle decides exactly.
        if pending and pending[0].ts + w < min(now, self.book_now):
            out = self._settle(ts)
        else:
            # Nothing to resolve: only _settle's pruning of the prints (most trades prune the
            # oldest print, the window sliding on), inlined.
            out = []
            if ts > self.now:
                self.now = ts
            if prints:
                book = self.book_now
                skew = now - self.params.max_skew_ns
                if skew > book:
                    book = skew
                horizon = (min(pending[0].ts, book) if pending else book) - w
                while prints and prints[0].ts < horizon:
                    self._drop_oldest_print()
        if t.size_kind == SizeKind.REAL and t.size > 0:
            side, price = t.side, t.price
            p = _Print(ts, price, side, t.size)
            prints.append(p)
            level = self._by_level.get((side, price))
            if level is None:
                self._by_level[(side, price)] = deque((p,))
            else:
                level.append(p)
            if len(prints) > self.params.max_prints:
                self.dropped_prints += 1
                self._drop_oldest_print()
        return out

    def advance(self, ts_event: int) -> list[BookOutput]:
        """Event time ``ts_event`` reached on both streams (a merged input's heartbeat)."""
        self.trades_now = max(self.trades_now, ts_event)
        self.book_now = max(self.book_now, ts_event)
        return self._settle(ts_event)

    def advance_trades(self, ts_event: int) -> list[BookOutput]:
        """The trades stream reached ``ts_event`` (a trade, its heartbeat or its gap marker)."""
        if ts_event > self.trades_now:
            self.trades_now = ts_event
        return self._settle(ts_event)

    def advance_book(self, ts_event: int) -> list[BookOutput]:
        """The book stream reached ``ts_event`` (any book message, its heartbeat or gap)."""
        if ts_event > self.book_now:
            self.book_now = ts_event
        return self._settle(ts_event)

    def flush(self) -> list[BookOutput]:
        """Resolve every pending removal now (end of a replay); trades still unseen are lost."""
        out: list[BookOutput] = [self._resolve(r) for r in self._pending]
        self._pending.clear()
        self._pending_at.clear()
        self._refill_ts.clear()
        return out

    # --- checkpoint -------------------------------------------------------------------------

    def to_state(self) -> BookState:
        """The engine's whole state as a serialisable Struct (orders kept). Its prints are the
        engine's own: encode it (or copy them) before the engine goes on."""
        return BookState(
            bids=list(self._bids.levels.items()),
            asks=list(self._asks.levels.items()),
            bid_best=self._bids.best,
            ask_best=self._asks.best,
            bid_stale=self._bids.stale,
            ask_stale=self._asks.stale,
            valid=self.valid,
            told=self._told,
            seq=self.seq,
            now=self.now,
            last_stats=self._last_stats,
            pending=[
                RemovalState(
                    r.ts, r.side, r.price, r.removed, r.refilled, r.anchor.ms, r.anchor.seq
                )
                for r in self._pending
            ],
            # The live print objects, not copies: encode the state before the engine goes on.
            prints=list(self._prints),
            trades_now=self.trades_now,
            book_now=self.book_now,
            forced=self.forced,
            dropped_prints=self.dropped_prints,
        )

    def restore(self, state: BookState) -> None:
        """Replace this engine's state by ``state`` (from ``to_state``)."""
        self._bids = _Side(dict(state.bids), state.bid_best, state.bid_stale)
        self._asks = _Side(dict(state.asks), state.ask_best, state.ask_stale)
        self.valid = state.valid
        self._told = state.told
        self.seq = state.seq
        self.now = state.now
        self._last_stats = state.last_stats
        self.trades_now = state.trades_now
        self.book_now = state.book_now
        self.forced = state.forced
        self.dropped_prints = state.dropped_prints
        self._pending = deque(
            _Removal(r.ts, Side(r.side), r.price, r.removed, r.refilled, anchor)
            for r in state.pending
            for anchor in (EntryId(r.anchor_ms, r.anchor_seq),)
        )
        self._pending_at = {}
        self._refill_ts = {}
        for r in self._pending:
            self._pending_at.setdefault((r.side, r.price), deque()).append(r)
        self._pending_ordered = all(
            a.ts <= b.ts for a, b in zip(self._pending, list(self._pending)[1:], strict=False)
        )
        self._prints = deque()
        self._by_level = {}
        # Both indexes hold the same print objects in arrival order, as ``on_trade`` builds them.
        for ps in state.prints:
            p = _Print(ps.ts, ps.price, Side(ps.side), ps.left)
            self._prints.append(p)
            self._by_level.setdefault((p.side, p.price), deque()).append(p)

    # --- queries ----------------------------------------------------------------------------

    def levels(self, side: Side) -> list[Level]:
        """The resting levels of one book side, best first (``Side.BUY`` = bids)."""
        if side == Side.BUY:
            return sorted(self._bids.levels.items(), reverse=True)
        return sorted(self._asks.levels.items())

    def stats(self, ts_event: int) -> BookStats:
        """The statistics of the current book (``valid=False`` if it is broken or empty)."""
        bid, ask = self._bids.top(True), self._asks.top(False)
        if not self.valid or bid is None or ask is None:
            return BookStats(ts_event=ts_event, valid=False)
        lo, hi = self._window(bid, ask)
        bids = sorted(((p, s) for p, s in self._bids.levels.items() if p >= lo), reverse=True)
        asks = sorted((p, s) for p, s in self._asks.levels.items() if p <= hi)
        bid_depth = sum(s for _, s in bids)
        ask_depth = sum(s for _, s in asks)
        total = bid_depth + ask_depth
        n = len(bids) + len(asks)
        avg = total / n if n else 0.0
        thin_cut = self.params.thin_fraction * avg
        wall_cut = self.params.wall_multiple * avg
        near = [*bids, *asks]
        imbalance = (bid_depth - ask_depth) / total if total > 0 else 0.0
        return BookStats(
            ts_event=ts_event,
            valid=True,
            best_bid=bid,
            best_ask=ask,
            spread=round(ask - bid, 12),  # float prices: drop subtraction noise
            bid_depth=bid_depth,
            ask_depth=ask_depth,
            imbalance=imbalance,
            thin_levels=[p for p, s in near if s < thin_cut],
            walls=[(p, s) for p, s in near if s > wall_cut],
            least_resistance=_direction(imbalance, self.params.dead_band),
        )

    # --- internals --------------------------------------------------------------------------

    def _window(self, bid: float, ask: float) -> tuple[float, float]:
        mid = (bid + ask) / 2
        reach = self.params.rows * self.params.row
        return mid - reach - _EPS, mid + reach + _EPS

    def _replace(self, ts: int, seq: int, bids: list[Level], asks: list[Level]) -> list[BookOutput]:
        out = self.advance_book(ts)
        # A snapshot is a new image, not a diff: no consumption is inferred across it.
        self._bids = _Side({p: s for p, s in bids if s > 0}, stale=True)
        self._asks = _Side({p: s for p, s in asks if s > 0}, stale=True)
        self.seq = seq
        self.valid = True
        if self._crossed():
            # A crossed image is as broken as a gap; announce it unless the break already was.
            self.valid = False
            self._bids, self._asks = _Side(), _Side()
            if self._told:
                return out
            self._told = True
            return [*out, BookStats(ts_event=ts, valid=False)]
        self._told = False
        out.append(self.stats(ts))
        self._last_stats = ts
        return out

    def _invalidate(self, ts: int) -> list[BookOutput]:
        if not self.valid and self._told:
            return []
        self.valid = False
        self._told = True
        self._bids = _Side()
        self._asks = _Side()
        return [BookStats(ts_event=ts, valid=False)]

    def _crossed(self) -> bool:
        bid, ask = self._bids.top(True), self._asks.top(False)
        return bid is not None and ask is not None and bid >= ask

    def _apply(
        self,
        ts: int,
        book: _Side,
        is_bid: bool,
        changes: list[Level],
        lo: float,
        hi: float,
        anchor: list[EntryId],
    ) -> None:
        taker = Side.SELL if is_bid else Side.BUY
        levels = book.levels
        for price, size in changes:
            old = levels.get(price, 0.0)
            if size > 0:
                levels[price] = size
                if book.best is None or (price > book.best if is_bid else price < book.best):
                    book.best = price
            elif price in levels:
                del levels[price]
                if price == book.best:
                    book.stale = True
            if size > old + _SIZE_EPS:
                self._mark_refill(ts, taker, price)
            elif old - size > _SIZE_EPS and lo <= price <= hi:
                # Bids sit below the mid and asks above it, so this is the side's own window edge.
                pending = self._pending
                if not pending:
                    self._pending_ordered = True
                elif ts < pending[-1].ts:
                    self._pending_ordered = False
                removal = _Removal(ts, taker, price, old - size, anchor=anchor[0])
                pending.append(removal)
                self._pending_at.setdefault((taker, price), deque()).append(removal)
                anchor[0] = anchor[0].next()

    def _mark_refill(self, ts: int, taker: Side, price: float) -> None:
        key = (taker, price)
        level = self._pending_at.get(key)
        if not level:
            return
        w = self.params.match_window_ns
        # Only this level's removals (a scan of every pending one was most of the service's
        # time at 5 k deltas/s), newest first: on a book stream in event-time order (the norm)
        # the first removal too old to match ends the scan. The last refill of this level (at
        # ``last``) marked every removal it could; one not earlier marks a subset of those and
        # the newer ones, so the first marked removal in its reach ends the scan too (all older
        # ones in reach were marked then). After a restore the first refill scans in full.
        last = self._refill_ts.get(key)
        self._refill_ts[key] = ts
        newer = last is not None and ts >= last
        ordered = self._pending_ordered
        for r in reversed(level):
            if ts > r.ts + w:
                if ordered:
                    break
            elif not r.refilled:
                r.refilled = True
            elif newer:
                break

    def _settle(self, ts_event: int) -> list[BookOutput]:
        if ts_event > self.now:
            self.now = ts_event
        w = self.params.match_window_ns
        both = min(self.trades_now, self.book_now)
        out: list[BookOutput] = []
        while self._pending and self._pending[0].ts + w < both:
            out.append(self._resolve(self._pop_pending()))
        # No print older than this can explain a pending removal or a future one (the book stream
        # is in event-time order, so future removals are at or after its watermark) - unless the
        # book stream lags the trades stream by more than max_skew_ns.
        book = max(self.book_now, self.trades_now - self.params.max_skew_ns)
        horizon = (min(self._pending[0].ts, book) if self._pending else book) - w
        while self._prints and self._prints[0].ts < horizon:
            self._drop_oldest_print()
        return out

    def _force(self) -> list[BookOutput]:
        out: list[BookOutput] = []
        while len(self._pending) > self.params.max_pending:
            self.forced += 1
            out.append(self._resolve(self._pop_pending()))
        return out

    def _pop_pending(self) -> _Removal:
        r = self._pending.popleft()
        # Both queues are in arrival order, so the oldest removal is its level's head too.
        key = (r.side, r.price)
        level = self._pending_at[key]
        level.popleft()
        if not level:
            del self._pending_at[key]
            self._refill_ts.pop(key, None)
        return r

    def _drop_oldest_print(self) -> None:
        p = self._prints.popleft()
        # Both queues are in arrival order, so the oldest print is its level's head too.
        key = (p.side, p.price)
        level = self._by_level[key]
        level.popleft()
        if not level:
            del self._by_level[key]

    def _resolve(self, r: _Removal) -> Resolved:
        lo = r.ts - self.params.match_window_ns
        hi = r.ts + self.params.print_lag_ns
        need = r.removed
        level = self._by_level.get((r.side, r.price), ())
        # Nearest first: the print closest to the removal is the likeliest cause; sorted() is
        # stable, so equally near prints go in arrival order and the split stays deterministic.
        near = sorted(
            (p for p in level if p.left > 0 and lo <= p.ts <= hi), key=lambda p: abs(p.ts - r.ts)
        )
        for p in near:
            if need <= _SIZE_EPS:
                break
            used = min(p.left, need)
            p.left -= used
            need -= used
        traded = r.removed - max(need, 0.0)
        event = Consumption(
            ts_event=r.ts,
            side=r.side,
            price=r.price,
            removed=r.removed,
            traded=traded,
            cancelled=r.removed - traded,
            refilled=r.refilled,
        )
        return Resolved(event, r.anchor)
