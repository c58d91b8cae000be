"""The analytics stage: footprint bars, delta, profiles and book statistics per instrument.
Each owned instrument runs ``AnalyticsFold`` under ``ofcommon.stage.run_owned`` (exactly once).

Closed 1-minute bars and final profiles are also upserted into PostgreSQL (``AnalyticsStore``)
before the batch that produced them is published and acknowledged, so a crash-restart replays
them into the same rows. An instrument without a usable checkpoint is rebuilt from those rows and
the trades stream (``AnalyticsRebuild``). The schema is applied by ``ofx migrate``, not here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from sqlalchemy.exc import DBAPIError

from of_analytics.fold import AnalyticsFold
from of_analytics.persist import BAR_TIMEFRAME, AnalyticsStore
from of_analytics.rebuild import AnalyticsRebuild
from ofcommon.db import current_revision, head_revision
from ofcommon.instruments import load_registry
from ofcommon.messages import Bar, Message, ProfileUpdate
from ofcommon.service import Service, ServiceContext
from ofcommon.settings import OwnedStageSettings
from ofcommon.stage import OutputsHook, run_owned

log = logging.getLogger(__name__)

# Attempts of one write before the worker gives up and restarts from its checkpoint (which
# re-folds the unacknowledged inputs and so retries the write again: nothing is dropped).
WRITE_ATTEMPTS: Final = 5
BACKOFF_S: Final = 0.2
BACKOFF_MAX_S: Final = 5.0


def persisted(outputs: list[tuple[str, Message]]) -> tuple[list[Bar], list[ProfileUpdate]]:
    """The outputs that are stored: final 1-minute bars and final profiles."""
    bars = [
        m
        for k, m in outputs
        if k == "bars" and isinstance(m, Bar) and m.final and m.timeframe == BAR_TIMEFRAME
    ]
    profiles = [
        m for k, m in outputs if k == "profile" and isinstance(m, ProfileUpdate) and m.final
    ]
    return bars, profiles


def persist_hook(store: AnalyticsStore) -> OutputsHook:
    async def on_outputs(symbol: str, outputs: list[tuple[str, Message]]) -> None:
        bars, profiles = persisted(outputs)
        if not bars and not profiles:
            return
        delay = BACKOFF_S
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                if bars:
                    await asyncio.to_thread(store.write_bars, symbol, bars)
                if profiles:
                    await asyncio.to_thread(store.write_profiles, symbol, profiles)
                return
            except (OSError, DBAPIError) as err:
                if attempt == WRITE_ATTEMPTS:
                    raise  # the worker restarts from its checkpoint: the inputs stay unacked
                log.warning("%s: PostgreSQL write failed (%s), retry in %.1fs", symbol, err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    return on_outputs


class SchemaError(RuntimeError):
    """The database is reachable but not at the schema this code writes."""


async def require_schema(url: str) -> None:
    """Refuse to start on a database that is not migrated to this code's head revision.

    An unreachable database is only a warning: the writes retry, and an instrument whose worker
    needs the database restarts from its checkpoint until it answers (nothing is lost)."""
    try:
        current = await asyncio.to_thread(current_revision, url)
    except (OSError, DBAPIError) as err:
        log.warning("PostgreSQL not reachable at start (%s); writes will retry", err)
        return
    head = head_revision()
    if current != head:
        raise SchemaError(
            f"the database schema is at {current or 'nothing'}, analytics needs {head}:"
            " run `ofx migrate` (make run and docker compose do it first)"
        )


async def main(ctx: ServiceContext[OwnedStageSettings]) -> None:
    # The same registry file the ownership layer reads, so instrument parameters agree.
    registry = load_registry(ctx.settings.registry_file or None)
    await require_schema(ctx.settings.database_url.get())
    store = AnalyticsStore(ctx.settings.database_url.get())
    try:
        fold = AnalyticsFold(registry)
        await run_owned(
            ctx,
            fold,
            on_outputs=persist_hook(store),
            rebuild=AnalyticsRebuild(fold, store, registry),
        )
    finally:
        store.close()


SERVICE = Service(
    name="analytics",
    settings_type=OwnedStageSettings,
    main=main,
    summary="footprint bars, delta, profiles and book statistics",
)
