"""The Bybit venue plug for ``ofx record`` / ``ofx replay``: the live feed's own frame parser.
``record`` stays a module-level name so the recorder can be plugged in beside it.
"""

from __future__ import annotations

from of_feed_bybit.parser import BybitParser
from of_feed_bybit.recorder import record
from ofcommon.instruments import Registry
from ofcommon.venue import Venue


def make_parser(category: str, registry: Registry) -> BybitParser:
    """``Venue.parser``: a parser for one category at the default depth (Venue passes a str)."""
    # Spelled out per literal so the type checker narrows the str to BybitParser's Literal.
    if category == "linear":
        return BybitParser("linear", registry)
    if category == "spot":
        return BybitParser("spot", registry)
    raise ValueError(f"Bybit category must be 'linear' or 'spot', got {category!r}")


VENUE = Venue(name="bybit", categories=("linear", "spot"), parser=make_parser, record=record)
