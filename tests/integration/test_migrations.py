"""Alembic revisions against a real PostgreSQL: up, down and up again, and the schema they build.

The migrated schema must equal ofcommon.tables, the one definition the stages share.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, inspect, pool, text

from of_analytics.persist import AnalyticsStore
from ofcommon.db import alembic_config, current_revision, migrate, to_sync_url
from ofcommon.messages import Bar, FootprintRow, ProfileUpdate, SizeKind
from ofcommon.tables import metadata

pytestmark = pytest.mark.postgres

HEAD = "0006_journal_signals"
ANALYTICS_TABLES = frozenset({"bars_1m", "session_profiles"})
JOURNAL_TABLES = frozenset({"journal_events", "journal_trades", "journal_bias"})
SIGNALS = "journal_signals"
BAR_ANALYTICS = (
    "delta_at_high",
    "delta_at_low",
    "cvd",
    "cvd_total",
    "imbalances",
    "stacked",
    "unfinished_high",
    "unfinished_low",
    "big_trades",
)


def _downgrade(url: str, revision: str) -> None:
    from alembic import command

    config = alembic_config(url)
    engine = create_engine(to_sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        engine.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(to_sync_url(database_url), poolclass=pool.NullPool)
    try:
        yield eng
    finally:
        eng.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _bar_columns(engine: Engine) -> set[str]:
    return {str(c["name"]) for c in inspect(engine).get_columns("bars_1m")}


def _profile_columns(engine: Engine) -> set[str]:
    return {str(c["name"]) for c in inspect(engine).get_columns("session_profiles")}


def _schema_version(engine: Engine) -> str:
    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT value FROM of_meta WHERE key = 'schema_version'")
        ).scalar_one()
    return str(value)


def test_up_down_up_is_idempotent(database_url: str, engine: Engine) -> None:
    migrate(database_url)
    migrate(database_url)  # a second upgrade at head is a no-op
    assert current_revision(database_url) == HEAD
    assert _tables(engine) >= ANALYTICS_TABLES | JOURNAL_TABLES | {SIGNALS}
    assert _schema_version(engine) == "6"

    _downgrade(database_url, "0005_journal")
    assert current_revision(database_url) == "0005_journal"
    assert SIGNALS not in _tables(engine)
    assert _tables(engine) >= JOURNAL_TABLES
    assert _schema_version(engine) == "5"

    _downgrade(database_url, "0004_profile_volume_kind")
    assert current_revision(database_url) == "0004_profile_volume_kind"
    assert not JOURNAL_TABLES & _tables(engine)
    assert _schema_version(engine) == "4"

    _downgrade(database_url, "0003_bar_analytics")
    assert current_revision(database_url) == "0003_bar_analytics"
    assert "volume_kind" not in _profile_columns(engine)
    assert _schema_version(engine) == "3"

    _downgrade(database_url, "0002_analytics")
    assert current_revision(database_url) == "0002_analytics"
    assert not set(BAR_ANALYTICS) & _bar_columns(engine)
    assert _schema_version(engine) == "2"

    _downgrade(database_url, "0001_baseline")
    assert current_revision(database_url) == "0001_baseline"
    assert not ANALYTICS_TABLES & _tables(engine)
    assert _schema_version(engine) == "1"

    migrate(database_url)
    assert current_revision(database_url) == HEAD
    assert _tables(engine) >= ANALYTICS_TABLES
    assert set(BAR_ANALYTICS) <= _bar_columns(engine)
    assert "volume_kind" in _profile_columns(engine)
    assert _tables(engine) >= JOURNAL_TABLES | {SIGNALS}
    assert _schema_version(engine) == "6"

    _downgrade(database_url, "base")
    assert current_revision(database_url) is None
    assert not {"of_meta", *ANALYTICS_TABLES} & _tables(engine)


def _column_shape(engine: Engine, column: dict[str, Any]) -> tuple[str, str, bool]:
    return (column["name"], column["type"].compile(dialect=engine.dialect), column["nullable"])


def test_migrated_schema_matches_tables_py(database_url: str, engine: Engine) -> None:
    migrate(database_url)
    inspector = inspect(engine)
    for name in ANALYTICS_TABLES | JOURNAL_TABLES | {SIGNALS}:
        table = metadata.tables[name]
        expected_columns = [
            (c.name, c.type.compile(dialect=engine.dialect), bool(c.nullable))
            for c in table.columns
        ]
        actual_columns = [_column_shape(engine, c) for c in inspector.get_columns(name)]
        assert actual_columns == expected_columns, name

        pk = inspector.get_pk_constraint(name)
        assert pk["constrained_columns"] == [c.name for c in table.primary_key.columns]
        assert pk["name"] == table.primary_key.name

        expected_indexes = {
            (str(ix.name), tuple(c.name for c in ix.columns), bool(ix.unique))
            for ix in table.indexes
        }
        actual_indexes = {
            (str(ix["name"]), tuple(str(c) for c in ix["column_names"]), bool(ix["unique"]))
            for ix in inspector.get_indexes(name)
        }
        assert actual_indexes == expected_indexes, name
    assert set(metadata.tables) == ANALYTICS_TABLES | JOURNAL_TABLES | {SIGNALS}


def test_bars_stored_before_0003_read_back_without_analytics(
    database_url: str, engine: Engine
) -> None:
    """A bar written under 0002 (no analytics columns) reads back as a version-1 wire bar."""
    migrate(database_url)
    _downgrade(database_url, "0002_analytics")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO bars_1m VALUES ('BTCUSDT', 60, 120, 1.5, 2.5, 1.0, 2.0, 3.0, 2.0, 1.0,"
                " 1.0, -1.0, 1.0, 2, 1.75, 1.5, '[[1.0, 1.0, 2.0, 2]]', 1)"
            )
        )
    migrate(database_url)
    with AnalyticsStore(database_url) as store:
        (bar,) = store.bars_between("BTCUSDT", 0, 2**62)
    assert bar == Bar(
        "1m", 60, 120, 1.5, 2.5, 1.0, 2.0, 3.0, 2.0, 1.0, 1.0, -1.0, 1.0, 2, 1.75, 1.5,
        [FootprintRow(1.0, 1.0, 2.0, 2)], True, 1,
    )  # fmt: skip


def test_profiles_stored_before_0004_read_back_as_real_volume(
    database_url: str, engine: Engine
) -> None:
    """A profile written under 0003 (no volume_kind) counted real volume: it reads back so."""
    migrate(database_url)
    _downgrade(database_url, "0003_bar_analytics")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO session_profiles (symbol, scope, session_id, session_start,"
                " session_end, poc, vah, val, volume, shape, rows, final, ts_event) VALUES"
                " ('BTCUSDT', 'session', '2024-01-02', 10, 20, 1.5, 2.0, 1.0, 3.0, 'd_shape',"
                " '[[1.0, 1.0], [1.5, 2.0]]', true, 20)"
            )
        )
    migrate(database_url)
    with AnalyticsStore(database_url) as store:
        (profile,) = store.profiles("BTCUSDT", 0)
    assert profile == ProfileUpdate(
        "session", "2024-01-02", 10, 20, 20, 1.5, 2.0, 1.0, 3.0, [(1.0, 1.0), (1.5, 2.0)],
        "d_shape", True,
    )  # fmt: skip
    assert profile.volume_kind is SizeKind.REAL
