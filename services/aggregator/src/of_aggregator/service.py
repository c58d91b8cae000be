"""The aggregator stage: framing, the trade state machine and the strategy status per instrument.
Each owned instrument runs ``AggregatorFold`` under ``ofcommon.stage.run_owned`` (exactly once).

Consumed pattern signals, trade events and biases are also upserted into the PostgreSQL journal
(``Journal``) before the batch that produced them is published and acknowledged, so a
crash-restart replays them into the same rows; while PostgreSQL is away the instrument pauses.
An instrument without a usable checkpoint is rebuilt from PostgreSQL (``AggregatorRebuild``).
The schema is applied by ``ofx migrate``, not here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from sqlalchemy.exc import DBAPIError

from of_aggregator.fold import AggregatorFold
from of_aggregator.journal import Journal
from of_aggregator.rebuild import AggregatorRebuild
from of_aggregator.settings import AggregatorSettings
from of_analytics.persist import AnalyticsStore
from ofcommon import retrying
from ofcommon.instruments import load_registry
from ofcommon.messages import Bias, Message, PatternSignal, TradeEvent
from ofcommon.service import Service, ServiceContext
from ofcommon.settings import OwnedStageSettings
from ofcommon.stage import OutputsHook, run_owned

log = logging.getLogger(__name__)


def journal_hook(
    journal: Journal, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> OutputsHook:
    """Journal each batch's consumed signals, trade events and biases before it is published
    (``OutputsHook``).

    A failed write is retried in place with capped backoff for as long as it fails: a PostgreSQL
    outage pauses the instrument (its inputs wait unacknowledged in Redis). Restarting the worker
    instead would re-deliver the pending inputs until the stage took them for poison
    (``ofcommon.deliveries``) and dead-lettered real input."""

    async def on_outputs(symbol: str, outputs: list[tuple[str, Message]]) -> None:
        events = [m for k, m in outputs if k == "tradeevents" and isinstance(m, TradeEvent)]
        biases = [m for k, m in outputs if k == "bias" and isinstance(m, Bias)]
        signals = [m for k, m in outputs if k == "consumed" and isinstance(m, PatternSignal)]
        if not events and not biases and not signals:
            return
        await retrying.until_written(
            lambda: journal.write(symbol, events, biases, signals),
            what=f"{symbol}: journal write",
            transient=lambda err: isinstance(err, (OSError, DBAPIError)),
            sleep=sleep,
        )

    return on_outputs


async def main(ctx: ServiceContext[AggregatorSettings]) -> None:
    # The same registry file the ownership layer reads, so instrument parameters agree.
    registry = load_registry(ctx.settings.registry_file or None)
    url = ctx.settings.database_url.get()
    journal = Journal(url)
    store = AnalyticsStore(url)
    try:
        fold = AggregatorFold(registry, params=ctx.settings.params())
        fold.check()  # a registry override that does not fit stops the service here
        # AggregatorSettings is an OwnedStageSettings; ServiceContext is invariant in it.
        owned = cast("ServiceContext[OwnedStageSettings]", ctx)
        rebuild = AggregatorRebuild(fold, journal, store)
        await run_owned(owned, fold, on_outputs=journal_hook(journal), rebuild=rebuild)
    finally:
        journal.close()
        store.close()


SERVICE = Service(
    name="aggregator",
    settings_type=AggregatorSettings,
    main=main,
    summary="framing, the trade state machine, the strategy status and the journal",
)
