"""Wire messages: every type round-trips, schema covers every type, JSON view is keyed."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, strategies as st
from tests.support.samples import SAMPLES

from ofcommon import codec
from ofcommon.messages import MESSAGE_TYPES, Side, Trade


def test_samples_cover_every_type() -> None:
    assert {type(m) for m in SAMPLES} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: msgspec.Struct) -> None:
    data = codec.encode(msg)
    assert codec.decode(data) == msg
    assert type(codec.decode(data)) is type(msg)


def test_tags_are_unique() -> None:
    tags = [t.__struct_config__.tag for t in MESSAGE_TYPES]
    assert len(tags) == len(set(tags))


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode(b"\x93\xa5nope!\x01\x02")
    with pytest.raises(codec.DecodeError):
        codec.decode(b"not msgpack at all \xff")


def test_schema_lists_every_type() -> None:
    schema = codec.json_schema()
    text = json.dumps(schema)
    for t in MESSAGE_TYPES:
        assert t.__name__ in schema["$defs"], t.__name__
    assert len(schema["anyOf"]) == len(MESSAGE_TYPES)
    assert "prefixItems" in text  # positional wire form is what the schema describes


def test_json_view_is_keyed_with_tag() -> None:
    t = Trade(1, 2, 100.5, 0.25, Side.SELL, "abc")
    view = json.loads(codec.to_json(t))
    assert view["k"] == "trade"
    assert view["price"] == 100.5
    assert view["side"] == -1
    assert view["trade_id"] == "abc"


@given(
    ts=st.integers(min_value=0, max_value=2**63 - 1),
    price=st.floats(allow_nan=False, allow_infinity=False),
    size=st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    side=st.sampled_from(list(Side)),
    trade_id=st.text(max_size=40),
)
def test_trade_round_trip_property(
    ts: int, price: float, size: float, side: Side, trade_id: str
) -> None:
    t = Trade(ts, ts, price, size, side, trade_id, seq=ts)
    assert codec.decode(codec.encode(t)) == t
