"""The venue's instrument spec in the analytics fold: which tick it accepts, and when to switch.
The registry tick is a default; the tick of the venue feeding the instrument decides the grid.
"""

from __future__ import annotations

import logging
import math

import msgspec

from of_analytics.bars import BarsState
from ofcommon.instruments import Instrument
from ofcommon.messages import InstrumentSpec

__all__ = ["SpecState", "accept", "open_until"]

log = logging.getLogger(__name__)
_warned: set[tuple[str, str, float]] = set()  # (symbol, venue, tick): each disagreement logged once


class SpecState(msgspec.Struct, gc=False):
    """The venue ticks one instrument's fold uses; 0 means the registry's. Checkpointed."""

    tick: float = 0.0  # bars, footprint and profile
    book_tick: float = 0.0  # the book window
    pending: float = 0.0  # a tick waiting for every open bar to close
    pending_from: int = 0  # event time from which ``pending`` applies
    last: float = 0.0  # the venue tick of the last accepted spec
    mismatches: int = 0  # accepted specs whose tick is not the registry's (counted per change)
    refused: int = 0  # specs whose tick is unusable (not positive, or off the profile row)


def accept(
    state: SpecState, registry: Instrument, spec: InstrumentSpec, *, count: bool = True
) -> float | None:
    """The venue tick of ``spec`` if it is usable for ``registry``'s instrument, else None (logged,
    counted in ``refused``); a tick that disagrees with the registry is logged once and counted.
    ``count=False`` for the book stream's copy of a spec the trades stream counts already."""
    tick = spec.tick_size
    reason = ""
    if not (math.isfinite(tick) and tick > 0):
        reason = "the tick is not a positive number"
    else:
        try:
            msgspec.structs.replace(registry, tick_size=tick)
        except (msgspec.ValidationError, ValueError) as err:
            reason = str(err)
    if reason:
        if not count:
            return None
        state.refused += 1
        log.error("%s: venue spec from %s refused (%s)", registry.symbol, spec.venue, reason)
        return None
    if not math.isclose(tick, registry.tick_size, rel_tol=1e-9, abs_tol=0.0):
        if count and tick != state.last:
            state.mismatches += 1
        key = (registry.symbol, spec.venue, tick)
        if key not in _warned:
            _warned.add(key)
            log.warning(
                "%s: the venue tick (%s %s) is %r, the registry says %r; using the venue's",
                registry.symbol,
                spec.venue,
                spec.venue_symbol,
                tick,
                registry.tick_size,
            )
    else:
        tick = registry.tick_size
    if count:
        state.last = tick
    return tick


def open_until(bars: BarsState) -> int | None:
    """The latest close time of the bars open in ``bars``, or None when none is open."""
    closes = [acc.close_ts for acc in bars.composed.values()]
    if bars.base is not None:
        closes.append(bars.base.close_ts)
    return max(closes) if closes else None
