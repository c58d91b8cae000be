"""A real capture split into recorder parts and replayed by two ``ofx replay`` runs, one per part:
every trade arrives once, whatever millisecond the seam falls in.

The real Binance BTCUSDT capture (6 minutes) is converted to Bybit v5 frames at test time and
recorded with the recorder's own rotation, the seam in the densest millisecond of trades.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from tests.support.binance_frames import BINANCE_SPOT, binance_lines, binance_to_bybit

from ofcommon import codec, keys
from ofcommon.messages import BookDelta, BookSnapshot, Gap, Trade
from ofcommon.recording import RecordingWriter, read_recording

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
OFX = Path(sys.executable).with_name("ofx")
TRADES = keys.stream("BTCUSDT", "trades")
BOOK = keys.stream("BTCUSDT", "book")
SPOT_BTC = '[instruments.BTCUSDT]\nbybit = { category = "spot", symbol = "BTCUSDT" }\n'


def split_recording(out: Path) -> tuple[list[Path], int]:
    """The capture as two recorder parts, rotated inside the millisecond holding the most trade
    frames; returns the parts and how many of that millisecond's trades went to the second."""
    frames = list(binance_to_bybit())
    per_ms = collections.Counter(r // 1_000_000 for r, f in frames if b'"publicTrade.' in f)
    busiest, _ = per_ms.most_common(1)[0]
    burst = [i for i, (r, _) in enumerate(frames) if r // 1_000_000 == busiest]
    seam = burst[len(burst) // 2]
    rotate_s = (frames[seam][0] - frames[0][0]) / 1e9
    with RecordingWriter(out, "bybit", "spot", rotate_s=rotate_s) as writer:
        for recv_ns, frame in frames:
            writer.write(recv_ns, frame)
    paths = writer.paths
    assert len(paths) == 2
    second = list(read_recording(paths[1]))
    assert second[0] == frames[seam]  # the rotation fell where the test meant it to
    after = sum(1 for r, f in second if r // 1_000_000 == busiest and b'"publicTrade.' in f)
    return paths, after


def ofx_replay(env: dict[str, str], *paths: Path) -> dict[str, Any]:
    out = subprocess.run(
        [str(OFX), "replay", *map(str, paths), "--ids", "derived"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    stats: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return stats


def stream(client: sync_redis.Redis, key: str) -> list[tuple[bytes, Any]]:
    return [(i, codec.decode(f[codec.FIELD])) for i, f in client.xrange(key)]


def test_parts_replayed_one_by_one_lose_no_trade_at_the_seam(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    capture = [
        d
        for _, obj in binance_lines(BINANCE_SPOT)
        if (d := obj.get("data", {})).get("e") == "trade"
    ]
    (tmp_path / "instruments.toml").write_text(SPOT_BTC)
    env = {**service_env, "OF_REGISTRY_FILE": str(tmp_path / "instruments.toml")}
    paths, at_seam = split_recording(tmp_path / "rec")
    assert at_seam > 40  # the seam really splits a millisecond full of trades

    first = ofx_replay(env, paths[0])
    second = ofx_replay(env, paths[1])
    client = sync_redis.Redis.from_url(env["OF_REDIS_URL"])
    try:
        parts = stream(client, TRADES)
        book = [m for _, m in stream(client, BOOK)]
        again = ofx_replay(env, paths[1])  # a repeat of a part writes nothing new
        assert stream(client, TRADES) == parts
        client.flushdb()
        whole = ofx_replay(env, *paths)
        one_run = stream(client, TRADES)
    finally:
        client.close()

    tape = [m for _, m in parts]
    assert all(isinstance(t, Trade) for t in tape)
    assert [t.trade_id for t in tape] == [str(t["t"]) for t in capture]
    assert len(tape) == len(capture) == 9_757
    assert parts == one_run  # the same IDs and entries as one replay of both parts
    for stats in (first, second, whole):
        assert (stats["duplicates"], stats["holes"]) == (0, 0)
    for stats in (first, second, whole):
        assert stats["added"] == sum(stats["messages"].values())
    split_trades = first["messages"]["trades"] + second["messages"]["trades"]
    assert split_trades == whole["messages"]["trades"] == len(capture)
    assert (again["added"], again["holes"]) == (0, 0)
    assert again["duplicates"] == second["added"]

    # the second part starts amid book deltas: no book until a snapshot, and a Gap says so
    n_first = first["messages"]["book"]
    assert isinstance(book[0], BookSnapshot)
    assert all(isinstance(m, BookDelta) for m in book[1:n_first])
    assert len(book) == n_first + 1
    gap = book[n_first]
    assert isinstance(gap, Gap)
    assert gap.stream == "book"
    assert "delta before snapshot" in gap.reason
