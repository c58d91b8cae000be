"""What a fenced read returns for an entry decodes as its field map would: the bare ``d`` value,
the flat field list and a trimmed entry, good bytes and bad."""

from __future__ import annotations

from ofcommon import codec
from ofcommon.bus import decode_fields, decode_value
from ofcommon.messages import Heartbeat, Side, Trade


def test_a_bare_value_decodes_as_its_field_map() -> None:
    trade = Trade(5, 6, 100.5, 0.25, Side.SELL, "t1")
    good = codec.encode(trade)
    assert decode_value(good) == (trade, good, "")
    assert decode_value(good) == decode_fields({codec.FIELD: good})
    bad = b"\xc1 not msgpack"
    msg, raw, reason = decode_value(bad)
    assert (msg, raw) == (None, bad)
    assert reason.startswith("undecodable: ")
    assert decode_value(bad) == decode_fields({codec.FIELD: bad})


def test_flat_fields_and_trimmed_entries() -> None:
    hb = Heartbeat(1, 2, "x")
    data = codec.encode(hb)
    assert decode_value([b"other", b"1", codec.FIELD, data]) == (hb, data, "")
    assert decode_value([b"other", b"1"])[2] == "malformed: no 'd' field"
    assert decode_value(None)[2].startswith("trimmed: ")
