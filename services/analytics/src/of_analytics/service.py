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
from collections.abc import Awaitable, Callable
from typing import Final

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from of_analytics.fold import AnalyticsFold
from of_analytics.persist import BAR_TIMEFRAME, AnalyticsStore
from of_analytics.rebuild import AnalyticsRebuild
from ofcommon.db import current_revision, head_revision
from ofcommon.instruments import load_registry
from ofcommon.messages import Bar, Message, ProfileUpdate
from ofcommon.service import Service, ServiceContext
from ofcommon.settings import OwnedStageSettings
from ofcommon.stage import OutputsHook, Rejected, run_owned

log = logging.getLogger(__name__)

# Attempts of one write before the worker gives up and restarts from its checkpoint (which
# re-folds the unacknowledged inputs and so retries the write again: nothing is dropped).
# A failing write is logged at its first attempt and then every LOG_EVERY attempts.
LOG_EVERY: Final = 12
BACKOFF_S: Final = 0.2
BACKOFF_MAX_S: Final = 5.0

# What the database says about a row itself (a value out of range, a violated constraint): it
# says it again on every attempt, so the row is rejected. Anything else (the server or network
# away or busy, a schema problem) is not the row's fault: retried, then the worker restarts.
ROW_REFUSED: Final = (DataError, IntegrityError)


def _stored(kind: str, msg: Message) -> bool:
    if kind == "bars":
        return isinstance(msg, Bar) and msg.final and msg.timeframe == BAR_TIMEFRAME
    return kind == "profile" and isinstance(msg, ProfileUpdate) and msg.final


def persisted(outputs: list[tuple[str, Message]]) -> tuple[list[Bar], list[ProfileUpdate]]:
    """The outputs that are stored: final 1-minute bars and final profiles."""
    bars = [m for k, m in outputs if k == "bars" and isinstance(m, Bar) and _stored(k, m)]
    profiles = [
        m for k, m in outputs if k == "profile" and isinstance(m, ProfileUpdate) and _stored(k, m)
    ]
    return bars, profiles


def _write(store: AnalyticsStore, symbol: str, msgs: list[Message]) -> None:
    bars = [m for m in msgs if isinstance(m, Bar)]
    profiles = [m for m in msgs if isinstance(m, ProfileUpdate)]
    if bars:
        store.write_bars(symbol, bars)
    if profiles:
        store.write_profiles(symbol, profiles)


def _row_refused(err: BaseException) -> bool:
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return False
    return isinstance(err, ROW_REFUSED)


def _culprit(store: AnalyticsStore, symbol: str, stored: list[tuple[int, Message]]) -> Rejected:
    """Write the batch's rows one by one (upserts: the good ones are idempotent) to find the
    first the database refuses for good; raises a transient error as it comes."""
    for index, msg in stored:
        try:
            _write(store, symbol, [msg])
        except Exception as err:
            if not _row_refused(err):
                raise
            return Rejected(index, f"{type(err).__name__}: {err}".splitlines()[0])
    raise LookupError("no single row fails on its own")


def persist_hook(
    store: AnalyticsStore, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> OutputsHook:
    """Store each batch's final bars and profiles before it is published (see ``OutputsHook``).

    Errors retry in place with capped backoff for as long as they last (a PostgreSQL outage pauses
    the instrument; its inputs wait unacked in Redis), except a row the database refuses for good
    (``ROW_REFUSED``): that raises ``Rejected`` naming it, so the stage dead-letters the input that
    produced it and goes on. Retrying in place rather than restarting the worker matters: every
    restart re-delivers the pending inputs, and the stage takes an entry delivered again and again
    for poison (``ofcommon.deliveries``), so an outage would dead-letter real trades."""

    async def on_outputs(symbol: str, outputs: list[tuple[str, Message]]) -> None:
        stored = [(i, m) for i, (k, m) in enumerate(outputs) if _stored(k, m)]
        if not stored:
            return
        msgs = [m for _, m in stored]
        delay = BACKOFF_S
        attempt = 0
        while True:
            attempt += 1
            try:
                await asyncio.to_thread(_write, store, symbol, msgs)
                return
            except Exception as err:
                if _row_refused(err):
                    log.error("%s: PostgreSQL refused the batch (%s)", symbol, err)
                    try:
                        culprit = await asyncio.to_thread(_culprit, store, symbol, stored)
                    except LookupError:
                        raise err from None
                    raise culprit from err
                if attempt % LOG_EVERY == 1:
                    log.warning(
                        "%s: PostgreSQL write failed (attempt %d: %s); retry at most %.1fs apart",
                        symbol,
                        attempt,
                        err,
                        BACKOFF_MAX_S,
                    )
                await sleep(delay)
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
