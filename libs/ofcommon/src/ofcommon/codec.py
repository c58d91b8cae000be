"""Encoding of wire messages: reused msgpack encoder/decoder, JSON views and JSON Schema.

Every stream entry holds one field, ``d``, whose value is the msgpack of one ``Message``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from ofcommon.messages import MESSAGE_TYPES, Message

FIELD: Final = b"d"

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)
_json_encoder = msgspec.json.Encoder()

DecodeError = msgspec.DecodeError


def encode(msg: Message) -> bytes:
    return _encoder.encode(msg)


def decode(data: bytes) -> Message:
    """Decode one entry value; raises ``msgspec.DecodeError`` (incl. validation) on bad bytes."""
    return _decoder.decode(data)


def to_plain(obj: Any) -> Any:
    """A keyed, JSON-ready view of a message (array-like structs become objects with their tag)."""
    if isinstance(obj, msgspec.Struct):
        cfg = obj.__struct_config__
        out: dict[str, Any] = {}
        if isinstance(cfg.tag, str) and isinstance(cfg.tag_field, str):
            out[cfg.tag_field] = cfg.tag
        for name in obj.__struct_fields__:
            out[name] = to_plain(getattr(obj, name))
        return out
    if isinstance(obj, list | tuple):
        return [to_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return msgspec.to_builtins(obj)


def to_json(obj: Any) -> bytes:
    return _json_encoder.encode(to_plain(obj))


def json_schema() -> dict[str, Any]:
    """JSON Schema of every wire type as encoded on the streams (positional: array_like)."""
    schemas, components = msgspec.json.schema_components(MESSAGE_TYPES)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "OrderFlow wire messages",
        "anyOf": list(schemas),
        "$defs": components,
    }
