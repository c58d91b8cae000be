"""The docs stay true: streams.md lists every stream and type, configuration.md every variable."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import msgspec
import pytest
from tests.support.samples import SAMPLES

from ofcommon import codec, keys
from ofcommon.messages import MESSAGE_TYPES, WIRE_VERSION
from ofcommon.service import registered
from ofcommon.settings import env_name, settings_fields

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_streams_doc_lists_every_stream_kind_and_type() -> None:
    text = (DOCS / "streams.md").read_text()
    for kind in keys.STREAM_KINDS:
        assert f"`of:{{SYM}}:{kind}`" in text, kind
    for t in MESSAGE_TYPES:
        tag = t.__struct_config__.tag
        assert f"| `{tag}` | `{t.__name__}` |" in text, t.__name__
    assert f"Wire version: **{WIRE_VERSION}**" in text


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_documented_positional_layout_is_the_wire_format(msg: msgspec.Struct) -> None:
    """A tool with plain msgpack sees [tag, *fields in the documented order]."""
    plain = msgpack.unpackb(codec.encode(msg))
    assert plain[0] == msg.__struct_config__.tag
    assert len(plain) == 1 + len(msg.__struct_fields__)
    text = (DOCS / "streams.md").read_text()
    row = re.search(rf"\| `{plain[0]}` \| `{type(msg).__name__}` \| (.*) \|", text)
    assert row is not None
    documented = [f.split("=")[0].split(" ")[0].strip() for f in row.group(1).split(", ")]
    assert documented[: len(msg.__struct_fields__)] == list(msg.__struct_fields__)


def test_configuration_doc_lists_every_variable() -> None:
    text = (DOCS / "configuration.md").read_text()
    for svc in registered().values():
        for field in settings_fields(svc.settings_type):
            assert f"`{env_name(field)}`" in text, (svc.name, field)


def test_configuration_doc_is_generated_from_the_settings() -> None:
    from scripts.gen_config_doc import render

    assert (DOCS / "configuration.md").read_text() == render(), (
        "docs/configuration.md is stale: run `uv run python scripts/gen_config_doc.py`"
    )
