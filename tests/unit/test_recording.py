"""Recordings of raw venue frames: names, exact round trips, rotation, and damaged files."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from tests.support.real_data import BYBIT_XRP_OB500

from ofcommon.recording import (
    RecordingError,
    RecordingWriter,
    parse_name,
    read_recording,
    recording_name,
)

T0 = 1_733_011_200_691_000_000  # 2024-12-01T00:00:00.691Z in ns
S = 1_000_000_000
BYBIT_XRP = BYBIT_XRP_OB500


def read_all(paths: list[Path]) -> list[tuple[int, bytes]]:
    return [frame for path in paths for frame in read_recording(path)]


def uncompressed_lines(path: Path) -> list[bytes]:
    with gzip.open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


# --- names -------------------------------------------------------------------------------------


def test_name_carries_venue_category_and_utc_start() -> None:
    assert recording_name("bybit", "linear", T0) == "bybit-linear-20241201T000000Z.gz"
    assert recording_name("bybit", "linear", T0, 3) == "bybit-linear-20241201T000000Z-0003.gz"
    assert recording_name("mt5", "ticks_dom", T0) == "mt5-ticks_dom-20241201T000000Z.gz"


@pytest.mark.parametrize(
    "name",
    [
        "bybit-linear-20241201T000000Z.gz",
        "bybit-linear-20241201T000000Z-0001.gz",
        "bybit-linear-20241201T000000Z",  # a decompressed copy replays too
    ],
)
def test_parse_name_gives_venue_and_category(name: str) -> None:
    assert parse_name(Path("/any/dir") / name) == ("bybit", "linear")


def test_parse_name_round_trips_recording_name() -> None:
    for venue, category in [("bybit", "spot"), ("mt5", "ticks"), ("x2", "a_b")]:
        assert parse_name(Path(recording_name(venue, category, T0, 7))) == (venue, category)


@pytest.mark.parametrize(
    "name",
    [
        "capture.gz",
        "Bybit-linear-20241201T000000Z.gz",  # venues are lower case
        "bybit-linear-2024-12-01.gz",
        "bybit_linear_20241201T000000Z.gz",
        "bybit-20241201T000000Z.gz",  # no category
    ],
)
def test_parse_name_rejects_other_names_clearly(name: str) -> None:
    with pytest.raises(RecordingError) as err:
        parse_name(Path("/rec") / name)
    assert str(err.value).startswith(f"/rec/{name}: not a recording name")
    assert "<venue>-<category>-<YYYYmmddTHHMMSSZ>" in str(err.value)


# --- exact round trip --------------------------------------------------------------------------

# Any bytes but the two line breaks go through unchanged: the frame is never decoded.
frames = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**62), frames), max_size=40))
def test_any_frame_without_line_breaks_round_trips_byte_for_byte(
    recorded: list[tuple[int, bytes]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with RecordingWriter(Path(tmp), "bybit", "linear", rotate_bytes=2_000) as writer:
            for recv_ns, frame in recorded:
                writer.write(recv_ns, frame)
        assert read_all(writer.paths) == recorded


def test_frames_with_spaces_at_either_end_and_empty_frames_round_trip(tmp_path: Path) -> None:
    recorded = [(T0, b"  leading"), (T0 + 1, b"trailing  "), (T0 + 2, b""), (T0 + 3, b" ")]
    with RecordingWriter(tmp_path, "bybit", "linear") as writer:
        for recv_ns, frame in recorded:
            writer.write(recv_ns, frame)
    assert read_all(writer.paths) == recorded


def test_text_frames_are_stored_as_utf8(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path, "bybit", "spot") as writer:
        writer.write(T0, '{"s":"BTCUSDT","note":"ünïcode €"}')
    assert read_all(writer.paths) == [(T0, '{"s":"BTCUSDT","note":"ünïcode €"}'.encode())]


def test_line_layout_is_receive_ns_space_frame(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path, "bybit", "linear") as writer:
        writer.write(T0, b'{"a":1}')
        writer.write(T0 + 5, b'{"b":2}')
    assert uncompressed_lines(writer.paths[0]) == [
        b'1733011200691000000 {"a":1}\n',
        b'1733011200691000005 {"b":2}\n',
    ]


@pytest.mark.skipif(not BYBIT_XRP.is_file(), reason=f"real data folder absent ({BYBIT_XRP})")
def test_real_bybit_frames_round_trip_byte_for_byte(tmp_path: Path) -> None:
    # the archive has no receive time; Bybit's send time ``ts`` (ms) stands in for it
    raw = [line.rstrip(b"\r\n") for line in BYBIT_XRP.read_bytes().splitlines()]
    recorded = [(json.loads(frame)["ts"] * 1_000_000, frame) for frame in raw]
    with RecordingWriter(tmp_path, "bybit", "linear") as writer:
        for recv_ns, frame in recorded:
            writer.write(recv_ns, frame)
    assert len(recorded) == 50
    assert read_all(writer.paths) == recorded


# --- line breaks inside frames -----------------------------------------------------------------


def test_line_breaks_inside_a_frame_become_spaces_one_line_per_frame(tmp_path: Path) -> None:
    pretty = b'{\n  "topic": "publicTrade.BTCUSDT",\r\n  "data": [1, 2]\r}'
    with RecordingWriter(tmp_path, "bybit", "linear") as writer:
        writer.write(T0, pretty)
        writer.write(T0 + 1, "x\ny")
    lines = uncompressed_lines(writer.paths[0])
    assert len(lines) == 2
    (recv1, frame1), (recv2, frame2) = read_all(writer.paths)
    assert (recv1, recv2) == (T0, T0 + 1)
    assert frame1 == b'{   "topic": "publicTrade.BTCUSDT",    "data": [1, 2] }'
    assert len(frame1) == len(pretty)  # one space per break byte: nothing else moves
    assert json.loads(frame1) == json.loads(pretty)  # between JSON tokens: same meaning
    assert frame2 == b"x y"


# --- rotation ----------------------------------------------------------------------------------


def test_rotation_by_size_starts_numbered_parts_and_keeps_order(tmp_path: Path) -> None:
    recorded = [(T0 + i * 1_000, b'{"n":%d,"pad":"%s"}' % (i, b"x" * 30)) for i in range(40)]
    with RecordingWriter(tmp_path, "bybit", "linear", rotate_bytes=300) as writer:
        for recv_ns, frame in recorded:
            writer.write(recv_ns, frame)
    assert len(writer.paths) > 3
    names = [p.name for p in writer.paths]
    assert names[0] == "bybit-linear-20241201T000000Z.gz"
    assert names[1:] == [f"bybit-linear-20241201T000000Z-{n:04d}.gz" for n in range(1, len(names))]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    line = len(b"%d " % T0) + len(recorded[0][1]) + 1
    for path in writer.paths:
        # a part is closed at the first write that finds it at or past the limit
        assert len(b"".join(uncompressed_lines(path))) < 300 + line
    assert read_all(writer.paths) == recorded


def test_rotation_by_time_follows_receive_time_not_the_wall_clock(tmp_path: Path) -> None:
    offsets_ms = [0, 400, 800, 1000, 1500, 2200, 2300, 5000]
    with RecordingWriter(tmp_path, "bybit", "spot", rotate_s=1.0) as writer:
        for ms in offsets_ms:
            writer.write(T0 + ms * 1_000_000, b"%d" % ms)
    parts = [[int(f) for _, f in read_recording(p)] for p in writer.paths]
    assert parts == [[0, 400, 800], [1000, 1500], [2200, 2300], [5000]]
    # every part is named after the recording's start, with its part number
    assert [p.name for p in writer.paths] == [
        "bybit-spot-20241201T000000Z.gz",
        "bybit-spot-20241201T000000Z-0001.gz",
        "bybit-spot-20241201T000000Z-0002.gz",
        "bybit-spot-20241201T000000Z-0003.gz",
    ]


def test_flush_makes_frames_readable_from_a_closed_copy(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path, "bybit", "linear")
    writer.write(T0, b"a")
    writer.flush()
    writer.write(T0 + 1, b"b")
    writer.close()
    assert read_all(writer.paths) == [(T0, b"a"), (T0 + 1, b"b")]


# --- damaged files -----------------------------------------------------------------------------


def write_gz(path: Path, data: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


def test_truncated_last_line_without_a_frame_is_skipped(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "bybit-linear-20241201T000000Z.gz", b"1 a\n2 b\n17330112")
    assert list(read_recording(path)) == [(1, b"a"), (2, b"b")]


def test_last_line_without_newline_in_plain_text_is_skipped_when_cut_in_the_stamp(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bybit-linear-20241201T000000Z"
    path.write_bytes(b"1 a\r\n2 b\r\n3")  # CRLF files (edited on Windows) read the same
    assert list(read_recording(path)) == [(1, b"a"), (2, b"b")]


def test_truncated_last_line_cut_inside_the_frame_is_skipped(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "bybit-linear-20241201T000000Z.gz", b'1 a\n2 b\n3 {"topic":"ord')
    assert list(read_recording(path)) == [(1, b"a"), (2, b"b")]


def test_recording_of_a_killed_writer_reads_up_to_the_last_flush(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path, "bybit", "linear")
    for i in range(100):
        writer.write(T0 + i, b'{"n":%d}' % i)
    writer.flush()
    # a SIGKILL leaves what was flushed, without the gzip trailer
    killed = tmp_path / "bybit-linear-20241201T000001Z.gz"
    killed.write_bytes(writer.paths[0].read_bytes())
    writer.close()
    assert [f for _, f in read_recording(killed)] == [b'{"n":%d}' % i for i in range(100)]


def test_two_writers_in_the_same_second_never_share_a_file(tmp_path: Path) -> None:
    with (
        RecordingWriter(tmp_path, "bybit", "linear") as a,
        RecordingWriter(tmp_path, "bybit", "linear") as b,
    ):
        a.write(T0, b"from-a")
        b.write(T0, b"from-b")
    assert a.paths != b.paths
    assert list(read_recording(a.paths[0])) == [(T0, b"from-a")]
    assert list(read_recording(b.paths[0])) == [(T0, b"from-b")]


def test_bad_line_error_names_file_and_line(tmp_path: Path) -> None:
    path = write_gz(
        tmp_path / "bybit-linear-20241201T000000Z.gz",
        b"1 a\n\n2 b\nnot-a-stamp {}\n3 c\n",
    )
    frames = read_recording(path)
    assert next(frames) == (1, b"a")
    assert next(frames) == (2, b"b")  # the blank line 2 is skipped but still counted
    with pytest.raises(RecordingError) as err:
        next(frames)
    assert str(err.value) == f"{path}:4: expected '<receive_ns> <frame>'"


@pytest.mark.parametrize("line", [b"12a4 x", b"-5 x", b"nospace", b" 123 x"])
def test_lines_without_a_decimal_stamp_and_space_are_errors(tmp_path: Path, line: bytes) -> None:
    path = write_gz(tmp_path / "bybit-linear-20241201T000000Z.gz", b"1 a\n" + line + b"\n")
    with pytest.raises(RecordingError, match=r":2: expected"):
        list(read_recording(path))
