"""Every Redis key name of the system, and nothing else: the only module that forms key strings.

Per-instrument keys carry a Redis Cluster hash tag on the symbol: one instrument, one slot.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

PREFIX: Final = "of"

StreamKind = Literal[
    "trades",  # feeds -> analytics: Trade, Heartbeat, Gap(trades)
    "book",  # feeds -> analytics: BookSnapshot, BookDelta, Quote, Heartbeat, Gap(book)
    "bars",  # analytics -> patterns, aggregator, api: Bar
    "profile",  # analytics -> patterns, aggregator, api: ProfileUpdate
    "bookstats",  # analytics -> patterns, api: BookStats
    "consumption",  # analytics -> patterns (sweep), api: Consumption
    "patterns",  # patterns -> aggregator, alerts, api: PatternSignal
    "signals",  # aggregator -> alerts, api: Bias
    "tradeevents",  # aggregator -> alerts, api: TradeEvent
    "dlq",  # any stage: dead letters with reason and origin
    "bias",  # aggregator -> alerts, api: Bias (framing, once per session close and on change)
    "status",  # aggregator -> api: StrategyStatus, the latest entry is current (docs/aggregator.md)
]
STREAM_KINDS: Final[tuple[str, ...]] = get_args(StreamKind)

_SYMBOL = re.compile(r"^[A-Za-z0-9._#-]{1,40}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_STREAM_KEY = re.compile(r"^of:\{(?P<symbol>[^{}]+)\}:(?P<kind>[a-z_]+)$")


def check_symbol(symbol: str) -> str:
    if not _SYMBOL.match(symbol):
        raise ValueError(f"invalid instrument symbol {symbol!r}: letters, digits, . _ # - only")
    return symbol


def _check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid {what} {name!r}: lowercase letters, digits and _ only")
    return name


def stream(symbol: str, kind: str) -> str:
    """The stream of one instrument and kind, e.g. ``of:{BTCUSDT}:trades``."""
    return f"{PREFIX}:{{{check_symbol(symbol)}}}:{_check_name(kind, 'stream kind')}"


def parse_stream(key: str) -> tuple[str, str]:
    """Split a stream key into (symbol, kind); raise ValueError for anything else."""
    m = _STREAM_KEY.match(key)
    if m is None:
        raise ValueError(f"not an OrderFlow stream key: {key!r}")
    return m["symbol"], m["kind"]


def stream_pattern(kind: str = "*") -> str:
    """A SCAN MATCH pattern for stream keys of one kind (or all)."""
    return f"{PREFIX}:{{*}}:{kind}"


def dead_letters(symbol: str | None) -> str:
    """The dead-letter stream of an instrument, or the global one for keys without an instrument."""
    return stream(symbol, "dlq") if symbol is not None else f"{PREFIX}:dlq"


def lease(symbol: str, stage: str) -> str:
    return f"{PREFIX}:{{{check_symbol(symbol)}}}:lease:{_check_name(stage, 'stage')}"


def lease_generation(symbol: str, stage: str) -> str:
    return f"{PREFIX}:{{{check_symbol(symbol)}}}:leasegen:{_check_name(stage, 'stage')}"


def snapshot(symbol: str, stage: str) -> str:
    return f"{PREFIX}:{{{check_symbol(symbol)}}}:snap:{_check_name(stage, 'stage')}"


def source_claim(symbol: str) -> str:
    """String ``<venue>/<worker>`` with a TTL: the one feed that may publish the instrument."""
    return f"{PREFIX}:{{{check_symbol(symbol)}}}:source"


_EVENT_KEY = re.compile(r"^[A-Za-z0-9._:#-]{1,120}$")


def alert_record(symbol: str, event_key: str) -> str:
    """Hash chat:part -> delivery state of one alert (alerts' exactly-once record, with a TTL)."""
    if not _EVENT_KEY.match(event_key):
        raise ValueError(f"invalid alert event key {event_key!r}")
    return f"{PREFIX}:{{{check_symbol(symbol)}}}:alerted:{event_key}"


_CHAT = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z0-9_]{1,40})$")


def alert_chat_turn(chat: str) -> str:
    """One Telegram chat's send turn, shared by every alerts worker (a lease, then the gap)."""
    if not _CHAT.match(chat):
        raise ValueError(f"invalid Telegram chat {chat!r}")
    return f"{PREFIX}:alerts:turn:{chat}"


def workers(stage: str) -> str:
    """Sorted set of live workers of a stage, scored by last heartbeat (Redis server ms)."""
    return f"{PREFIX}:workers:{{{_check_name(stage, 'stage')}}}"


def worker_eligibility(stage: str) -> str:
    """Hash worker id -> comma-separated symbols that worker may own (same slot as workers())."""
    return f"{PREFIX}:workers:{{{_check_name(stage, 'stage')}}}:eligible"


def health(service: str, worker_id: str) -> str:
    return f"{PREFIX}:health:{_check_name(service, 'service')}:{worker_id}"


def health_pattern(service: str) -> str:
    return f"{PREFIX}:health:{_check_name(service, 'service')}:*"
