"""The analytics service refuses a database that is not migrated, with the command that fixes it,
instead of starting workers that fail on every write.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.support.servers import spawn_service

from ofcommon.db import head_revision, migrate

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres]


def test_unmigrated_database_stops_the_service_with_a_clear_error(
    service_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    proc = spawn_service(
        "analytics",
        service_env,
        tmp_path,
        "a",
        OF_DATABASE_URL=database_url,
        OF_INSTRUMENTS="BTCUSDT",
    )
    assert proc.wait(30) == 1
    log = (tmp_path / "a.log").read_text()
    assert f"analytics needs {head_revision()}" in log
    assert "run `ofx migrate`" in log


def test_migrated_database_starts(
    service_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    migrate(database_url)
    proc = spawn_service(
        "analytics",
        service_env,
        tmp_path,
        "b",
        OF_DATABASE_URL=database_url,
        OF_INSTRUMENTS="BTCUSDT",
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(3)  # still running: it started
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
