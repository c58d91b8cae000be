"""Analytics state rebuilt without a checkpoint: closed bars and final profiles from PostgreSQL,
then the trades stream folded from where the stored bars end up to what the group has consumed.

Used as ``ofcommon.stage.Rebuild`` when Redis lost the snapshot or it is of another version.

* Position. The trades stream counts as consumed up to the entry before the group's oldest
  pending one (else its last-delivered ID): those inputs were acknowledged, so their bars and
  profiles are in PostgreSQL. Pending entries are then re-read by the stage as after any crash.
  The book stream goes on after its last-delivered ID: a live book needs a fresh snapshot anyway.
* Cut. ``B`` = the close of the latest stored 1m bar that event time of the consumed entries had
  reached. Trades before ``B`` come from storage, entries at or after ``B`` through the real fold.
* Profiles. Closed sessions are the stored final session profiles (their rows are exact); the
  current session's volume-at-price and TPO periods are summed from the stored bars' footprints.
  That is exact when the footprint rows nest in the profile rows (the same or a dividing row
  size); otherwise the current session starts from the stream alone and a warning says so.
* Tick-volume profiles (quote-only instruments: no stored session and no stored bar of the
  instrument has real volume). Stored bars hold no tick counts, so the current session's are
  folded from the stream, read back to the session's start (a warning if it no longer reaches
  that far); only stored sessions of the profiler's volume kind enter the composite.
* Naked POCs. A stored session's POC row stays naked unless a later stored session's rows, an
  out-of-hours stored bar after it or the current session traded in that row.
* Time. The stream is folded in a thread (nothing else touches this instrument's state
  meanwhile): a rebuild of millions of trades takes longer than a lease lives, and the event
  loop must keep renewing it.
* Gaps. If the stream no longer holds entries back to ``B`` and may have been trimmed, or the
  group consumed nothing although bars are stored (Redis lost the stream), a ``Gap`` is folded
  first (the next bar is marked gapped, ``BarsState.gaps`` counts it) and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from of_analytics.bars import BarBuilder
from of_analytics.fold import DEDUP_WINDOW, AnalyticsFold, AnalyticsState
from of_analytics.persist import AnalyticsStore
from of_analytics.profile import SessionProfiler
from of_analytics.state import ClosedSessionState, NakedPocState, SessionState
from ofcommon import keys
from ofcommon.bus import Redis, decode_fields
from ofcommon.consumed import consumed, delivered
from ofcommon.instruments import Instrument, Registry
from ofcommon.messages import (
    Bar,
    Gap,
    Heartbeat,
    InstrumentSpec,
    Message,
    ProfileUpdate,
    SizeKind,
    Trade,
)
from ofcommon.sessions import session_bounds, session_id
from ofcommon.stage import Rebuilt

__all__ = ["AnalyticsRebuild"]

log = logging.getLogger(__name__)

_DAY_NS: Final = 86_400 * 1_000_000_000
_CHUNK: Final = 1000
# How far back (entries) a rebuild looks for the venue's last InstrumentSpec; the feeds republish
# it at every instruments-info check (Bybit: hourly), so an hour of a busy stream is enough.
SPEC_SCAN: Final = 200_000
_FAR: Final = 2**62
NAKED_LOOKBACK_DAYS: Final = 30

Entry = tuple[str, Message | None]
RowOf = Callable[[float], int]


@dataclass(slots=True)
class _Stream:
    """The consumed part of the trades stream: its last ID and the entries back to the cut."""

    position: str | None
    entries: list[Entry]  # oldest first
    reached: int | None  # the latest event time among the last consumed entries
    from_start: bool  # the entries reach back to the first entry the stream still holds


def _ts(msg: Message | None) -> int | None:
    return msg.ts_event if isinstance(msg, Trade | Heartbeat | Gap) else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _chunk_before(redis: Redis, stream: str, upto: str, inclusive: bool) -> list[Entry]:
    top = upto if inclusive else f"({upto}"
    raw: Any = await redis.xrevrange(stream, max=top, min="-", count=_CHUNK)
    return [(_text(entry_id), decode_fields(fields)[0]) for entry_id, fields in reversed(raw)]


class AnalyticsRebuild:
    """``ofcommon.stage.Rebuild`` of the analytics stage (see the module docstring)."""

    def __init__(
        self,
        fold: AnalyticsFold,
        store: AnalyticsStore,
        registry: Registry,
        *,
        naked_days: int = NAKED_LOOKBACK_DAYS,
    ) -> None:
        self._fold = fold
        self._store = store
        self._registry = registry
        self._lookback = naked_days * _DAY_NS

    async def __call__(self, symbol: str, redis: Redis) -> Rebuilt[AnalyticsState] | None:
        trades = keys.stream(symbol, "trades")
        book = keys.stream(symbol, "book")
        position, pending = await consumed(redis, trades, self._fold.stage)
        tail = await _chunk_before(redis, trades, position, True) if position else []
        reached = max((t for _, m in tail if (t := _ts(m)) is not None), default=None)
        if reached is None and pending:
            # Rows stored while folding the pending entries (a worker killed before its first
            # checkpoint) would be counted twice when they are re-read: trust nothing stored.
            reached = -1
        last = await asyncio.to_thread(
            self._store.last_bar, symbol, _FAR if reached is None else reached
        )
        cut = None if last is None else last.close_ts
        if position is None and last is None:
            return None  # nothing consumed, nothing stored: an empty state is the right one
        state, ticks_from = await asyncio.to_thread(self._stored_state, symbol, last, reached)
        reach = cut if ticks_from is None or cut is None else min(cut, ticks_from)
        stream = await self._back_to(redis, trades, _Stream(position, tail, reached, False), reach)
        spec = await self._spec_before(redis, trades, stream)
        if spec is not None:
            self._fold.adopt_spec(state, spec)
        trimmed = await self._maybe_trimmed(redis, trades, stream, cut)
        # In a thread: a whole stream takes seconds to fold, longer than a lease lives, and the
        # event loop must go on renewing it (and serving the worker's other instruments).
        await asyncio.to_thread(self._fold_stream, state, stream, cut, trimmed, ticks_from)
        positions = {trades: position} if position else {}
        book_at = await delivered(redis, book, self._fold.stage)
        if book_at:
            positions[book] = book_at
        log.warning(
            "%s analytics rebuilt: stored bars up to %s, %d stream entries folded",
            symbol,
            cut,
            sum(1 for _, m in stream.entries if cut is None or (_ts(m) or 0) >= cut),
        )
        return Rebuilt(state, positions)

    # --- the stream -------------------------------------------------------------------------

    async def _back_to(self, redis: Redis, key: str, stream: _Stream, cut: int | None) -> _Stream:
        """Extend ``stream.entries`` back until they hold every entry at or after ``cut`` and the
        trade IDs the duplicate filter remembers before it (late entries may interleave)."""
        if stream.position is None:
            stream.from_start = True
            return stream
        chunk = stream.entries
        trades_before = 0  # trades before the cut seen so far: the duplicate filter's memory
        while True:
            if len(chunk) < _CHUNK:
                stream.from_start = True
                return stream
            if cut is not None:
                early = [isinstance(m, Trade) for _, m in chunk if (_ts(m) or 0) < cut]
                trades_before += sum(early)
                if len(early) == len(chunk) and trades_before >= DEDUP_WINDOW:
                    return stream
            chunk = await _chunk_before(redis, key, stream.entries[0][0], False)
            stream.entries[:0] = chunk

    async def _spec_before(self, redis: Redis, key: str, stream: _Stream) -> InstrumentSpec | None:
        """The venue's newest ``InstrumentSpec`` before ``stream.entries`` (which ``_fold_stream``
        adopts itself), within ``SPEC_SCAN`` entries: the stored bars were built on its tick."""
        if any(isinstance(m, InstrumentSpec) for _, m in stream.entries):
            return None
        upto = stream.entries[0][0] if stream.entries else stream.position
        scanned = 0
        while upto is not None and scanned < SPEC_SCAN:
            chunk = await _chunk_before(redis, key, upto, False)
            for _, msg in reversed(chunk):
                if isinstance(msg, InstrumentSpec):
                    return msg
            if len(chunk) < _CHUNK:
                return None
            scanned += len(chunk)
            upto = chunk[0][0]
        return None

    async def _maybe_trimmed(
        self, redis: Redis, key: str, stream: _Stream, cut: int | None
    ) -> bool:
        """Whether trades after the stored bars (or, with none stored, any) may be missing."""
        info = await redis.xinfo_stream(key)
        # Redis 7 counts every entry ever added: fewer left means some were trimmed or deleted
        # (its max-deleted-entry-id is not moved by a trim). Redis 6 cannot tell.
        added = info.get("entries-added")
        trimmed = added is None or int(added) > int(info["length"])
        if cut is None:
            return added is not None and trimmed
        if stream.position is None:
            return True  # rows are stored yet the group consumed nothing: Redis lost the stream
        if not stream.from_start:
            return False  # an entry before the cut is still there: nothing after it is missing
        first = next((t for _, m in stream.entries if (t := _ts(m)) is not None), None)
        return (first is None or first >= cut) and trimmed

    def _fold_stream(
        self,
        state: AnalyticsState,
        stream: _Stream,
        cut: int | None,
        trimmed: bool,
        ticks_from: int | None,
    ) -> None:
        """Fold the entries at or after ``cut``; before it, only what storage lacks: the duplicate
        filter's and the big-trade window's memory and, from ``ticks_from`` on, the tick counts of
        a tick-volume profile's current session (stored bars hold no tick volume)."""
        if trimmed:
            log.warning(
                "%s: the trades stream may have been trimmed past the stored bars (up to %s):"
                " the next bar is marked gapped",
                state.symbol,
                cut,
            )
            at = cut if cut is not None else 0
            gap = Gap(at, at, "trades", "rebuild: stream trimmed past stored bars")
            self._fold.step(state, "trades", gap)
        builder = BarBuilder.for_instrument(self._registry.get(state.symbol))
        first = next((t for _, m in stream.entries if (t := _ts(m)) is not None), None)
        if ticks_from is not None and stream.from_start and (first is None or first > ticks_from):
            log.warning(
                "%s: the trades stream holds nothing from before the session start (%d): the"
                " current tick-volume profile is rebuilt from the entries it holds",
                state.symbol,
                ticks_from,
            )
        for _, msg in stream.entries:
            if msg is None:
                continue
            ts = _ts(msg)
            if cut is None or (ts is not None and ts >= cut):
                self._fold.step(state, "trades", msg)
            elif isinstance(msg, Trade):
                fresh = not msg.trade_id or msg.trade_id not in state.recent_set
                if fresh and ticks_from is not None and msg.ts_event >= ticks_from:
                    state.profiler.on_trade(msg)
                # Counted in the stored bars: only the big-trade window and the duplicate filter
                # still need it.
                builder.observe(state.bars, msg)
                if msg.trade_id:
                    _remember(state, msg.trade_id)
            elif isinstance(msg, InstrumentSpec):
                # The stored bars after it were built on its tick: adopt it with them, at once.
                self._fold.adopt_spec(state, msg)

    # --- storage ----------------------------------------------------------------------------

    def _stored_state(
        self, symbol: str, last: Bar | None, reached: int | None
    ) -> tuple[AnalyticsState, int | None]:
        """The state from storage, and where a tick-volume profile's current session starts
        (None for real volume): its tick counts must come from the stream."""
        inst = self._registry.get(symbol)
        state = self._fold.initial(symbol)
        if last is None:
            return state, None
        cut = last.close_ts
        profiler = state.profiler
        spec = profiler.spec
        start, end = session_bounds(spec, last.open_ts)
        since = min(cut - cut % _DAY_NS, start) - _DAY_NS
        bars = self._store.bars_between(symbol, since, cut)
        stored = self._closed_sessions(symbol, cut, _FAR if reached is None else reached)
        closed_end = stored[-1].session_end if stored else -1
        builder = BarBuilder.for_instrument(inst)
        builder.seed(state.bars, bars)
        # The profiler's rule: real volume, once there is any, for good; else tick volume.
        real = any(p.volume_kind is SizeKind.REAL for p in stored)
        kind = SizeKind.REAL if real or any(b.volume > 0 for b in bars) else SizeKind.TICKS
        current = None
        ticks_from = None
        if end > closed_end:
            if kind is SizeKind.REAL:
                mine = [b for b in bars if start <= b.open_ts < end]
                current = self._current(inst, profiler, mine, start, end)
            else:
                ticks_from = start
        vaps = [_vap(profiler.row_of, p.rows) for p in stored]
        out_of_hours = self._out_of_hours(
            symbol, stored, start if current else cut, profiler.row_of
        )
        naked = []
        for i, p in enumerate(stored):
            row = profiler.row_of(p.poc)
            later = [*vaps[i + 1 :], *out_of_hours[i:]]
            if current is not None:
                later.append(current.vap)
            if p.volume > 0 and not any(v.get(row, 0.0) > 0 for v in later):
                naked.append(NakedPocState(p.session_id, p.poc, row))
        profiler.install(
            [
                ClosedSessionState(p.session_id, p.session_start, p.session_end, v)
                for p, v in zip(stored, vaps, strict=True)
                if p.volume_kind is kind
            ],
            current,
            naked,
            kind,
        )
        return state, ticks_from

    def _closed_sessions(self, symbol: str, cut: int, reached: int) -> list[ProfileUpdate]:
        stored = self._store.profiles(symbol, cut - self._lookback)
        return [p for p in stored if p.scope == "session" and p.final and p.session_end <= reached]

    def _out_of_hours(
        self, symbol: str, closed: Sequence[ProfileUpdate], until: int, row_of: RowOf
    ) -> list[dict[int, float]]:
        """Per closed session, the volume at price traded after its close and before the next
        session's open (or ``until``): trades that can take a naked POC but are in no profile."""
        out = []
        for i, p in enumerate(closed):
            nxt = closed[i + 1].session_start if i + 1 < len(closed) else until
            bars = (
                self._store.bars_between(symbol, p.session_end, nxt) if nxt > p.session_end else []
            )
            out.append(_footprint_vap(row_of, bars))
        return out

    @staticmethod
    def _current(
        inst: Instrument, profiler: SessionProfiler, bars: Sequence[Bar], start: int, end: int
    ) -> SessionState | None:
        """The current session from its stored bars, if their footprint rows sum exactly."""
        if not bars:
            return None
        tpr = inst.ticks_per_row
        # Stored footprints are at the configured footprint row: every label on its grid, and
        # that row dividing the profile row (a single stored row says nothing about its height).
        fp_ticks = inst.footprint.row_ticks
        ticks = [round(fp.price / inst.tick_size) for b in bars for fp in b.footprint]
        if tpr % fp_ticks or any(t % fp_ticks for t in ticks):
            log.warning(
                "%s: stored footprint rows (not all on the %d-tick footprint grid) do not nest in"
                " profile rows (%d ticks): the current session's profile is rebuilt from the"
                " stream only",
                inst.symbol,
                fp_ticks,
                tpr,
            )
            return None
        row = profiler.row_of
        period_ns = profiler.config.period_ns
        vap = _footprint_vap(row, bars)
        periods: dict[int, tuple[int, int]] = {}
        for b in bars:
            rows = [row(fp.price) for fp in b.footprint if fp.bid_volume + fp.ask_volume > 0]
            if rows:
                p = (b.open_ts - start) // period_ns
                lo, hi = periods.get(p, (min(rows), max(rows)))
                periods[p] = (min(lo, *rows), max(hi, *rows))
        sid = session_id(profiler.spec, start)
        # The last trade's time is not stored: the last bar's last nanosecond stands in for it.
        last_ts = bars[-1].close_ts - 1
        return SessionState(sid, start, end, start, period_ns, vap, periods, 0.0, [], last_ts)


def _vap(row_of: RowOf, rows: Sequence[tuple[float, float]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for price, size in rows:
        if size > 0:
            r = row_of(price)
            out[r] = out.get(r, 0.0) + size
    return out


def _footprint_vap(row_of: RowOf, bars: Sequence[Bar]) -> dict[int, float]:
    out: dict[int, float] = {}
    for b in bars:
        for fp in b.footprint:
            size = fp.bid_volume + fp.ask_volume
            if size > 0:
                r = row_of(fp.price)
                out[r] = out.get(r, 0.0) + size
    return out


def _remember(state: AnalyticsState, trade_id: str) -> None:
    """What the fold's duplicate filter does with a trade already counted in stored bars."""
    if trade_id in state.recent_set:
        return
    state.recent_ids.append(trade_id)
    state.recent_set.add(trade_id)
    if len(state.recent_ids) > DEDUP_WINDOW:
        state.recent_set.discard(state.recent_ids.popleft())
