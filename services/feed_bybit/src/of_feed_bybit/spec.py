"""The venue's instrument facts as a frame of our own on the connection, so recordings carry them.
Built from instruments-info rows; the parser turns it into ``InstrumentSpec`` messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from of_feed_bybit.rest import InstrumentInfo, parse_instrument
from ofcommon.messages import InstrumentSpec
from ofcommon.venue import BadFrame, Published

__all__ = ["SPEC_TOPIC", "parse_spec_frame", "spec_frame"]

# Not a Bybit topic (Bybit's have no "of." prefix): the client injects it, the recorder keeps it.
SPEC_TOPIC: Final = "of.instruments_info"
_NS_PER_MS: Final = 1_000_000


def spec_frame(category: str, infos: Sequence[InstrumentInfo], ts_ms: int) -> bytes:
    """One frame holding ``infos`` in instruments-info's own row shape (decimals as strings)."""
    rows = [
        {
            "symbol": i.symbol,
            "status": i.status,
            "priceFilter": {"tickSize": str(i.tick_size)},
            "lotSizeFilter": {"qtyStep": str(i.qty_step)},
        }
        for i in infos
    ]
    data = {"category": category, "list": rows}
    return msgspec.json.encode({"topic": SPEC_TOPIC, "type": "snapshot", "ts": ts_ms, "data": data})


def parse_spec_frame(
    category: str, venue_symbols: Mapping[str, str], recv_ns: int, ts_ms: int | None, data: bytes
) -> list[Published]:
    """The ``InstrumentSpec`` of each of our instruments in a ``spec_frame`` (``venue_symbols``:
    venue symbol -> registry symbol), on its trades stream and on its book stream: each stream
    carries the spec its consumer needs, so a fold adopts it at a place in that stream alone."""
    try:
        body: dict[str, Any] = msgspec.json.decode(data)
        rows = body["list"]
        if body.get("category") != category or not isinstance(rows, list):
            raise BadFrame(f"{SPEC_TOPIC}: not a {category} instrument list")
        infos = [parse_instrument(category, row) for row in rows]
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError) as err:
        raise BadFrame(f"{SPEC_TOPIC}: {err}") from None
    ts = ts_ms * _NS_PER_MS if ts_ms else recv_ns
    out: list[Published] = []
    for info in infos:
        symbol = venue_symbols.get(info.symbol)
        if symbol is None or info.tick_size <= 0:
            continue  # not ours; a missing tick is check_instruments' "not listed" business
        spec = InstrumentSpec(
            ts_event=ts,
            ts_recv=recv_ns,
            venue=f"bybit:{category}",
            venue_symbol=info.symbol,
            tick_size=float(info.tick_size),
            size_step=float(info.qty_step),
        )
        out.append(Published(symbol, "trades", spec))
        out.append(Published(symbol, "book", spec))
    return out
