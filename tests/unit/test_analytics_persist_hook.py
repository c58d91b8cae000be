"""The analytics service's persistence hook: what it stores, and that it never drops a write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pytest
from sqlalchemy.exc import OperationalError

from of_analytics import service
from of_analytics.persist import AnalyticsStore
from ofcommon.messages import Bar, Message, ProfileUpdate


def bar(timeframe: str, *, final: bool) -> Bar:
    return Bar(
        timeframe=timeframe,
        open_ts=0,
        close_ts=60,
        open=1.0,
        high=1.0,
        low=1.0,
        close=1.0,
        volume=1.0,
        buy_volume=1.0,
        sell_volume=0.0,
        delta=1.0,
        delta_min=0.0,
        delta_max=1.0,
        trades=1,
        vwap=1.0,
        poc=1.0,
        footprint=[],
        final=final,
        rev=int(final),
    )


def profile(*, final: bool) -> ProfileUpdate:
    return ProfileUpdate(
        scope="session",
        session_id="2023-11-15",
        session_start=0,
        session_end=10,
        ts_event=5,
        poc=1.0,
        vah=1.0,
        val=1.0,
        volume=1.0,
        rows=[],
        shape="D",
        final=final,
    )


OUTPUTS: list[tuple[str, Message]] = [
    ("bars", bar("1m", final=True)),
    ("bars", bar("5m", final=True)),
    ("profile", profile(final=True)),
    ("bars", bar("1m", final=False)),
    ("profile", profile(final=False)),
]


class FakeStore:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.bars: list[tuple[str, list[Bar]]] = []
        self.profiles: list[tuple[str, list[ProfileUpdate]]] = []

    def write_bars(self, symbol: str, bars: Sequence[Bar]) -> int:
        if self.failures:
            self.failures -= 1
            raise OperationalError("INSERT", {}, OSError("connection refused"))
        self.bars.append((symbol, list(bars)))
        return len(bars)

    def write_profiles(self, symbol: str, updates: Sequence[ProfileUpdate]) -> int:
        self.profiles.append((symbol, list(updates)))
        return len(updates)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "BACKOFF_S", 0.0)


def test_only_final_1m_bars_and_final_profiles_are_stored() -> None:
    assert service.persisted(OUTPUTS) == ([bar("1m", final=True)], [profile(final=True)])


async def test_hook_writes_and_skips_empty_batches() -> None:
    store = FakeStore()
    hook = service.persist_hook(cast(AnalyticsStore, store))
    await hook("BTCUSDT", OUTPUTS)
    await hook("BTCUSDT", [OUTPUTS[3]])  # nothing to store: no write at all
    assert store.bars == [("BTCUSDT", [bar("1m", final=True)])]
    assert store.profiles == [("BTCUSDT", [profile(final=True)])]


async def test_hook_retries_then_raises_instead_of_dropping() -> None:
    store = FakeStore(failures=service.WRITE_ATTEMPTS - 1)
    await service.persist_hook(cast(AnalyticsStore, store))("BTCUSDT", OUTPUTS)
    assert len(store.bars) == 1

    down = FakeStore(failures=service.WRITE_ATTEMPTS)
    with pytest.raises(OperationalError):
        await service.persist_hook(cast(AnalyticsStore, down))("BTCUSDT", OUTPUTS)
    assert down.bars == []
