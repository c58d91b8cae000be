"""The aggregator stage: framing, the trade state machine and the strategy status per instrument.
Each owned instrument runs ``AggregatorFold`` under ``ofcommon.stage.run_owned`` (exactly once).
"""

from __future__ import annotations

from of_aggregator.fold import AggregatorFold
from ofcommon.instruments import load_registry
from ofcommon.service import Service, ServiceContext
from ofcommon.settings import OwnedStageSettings
from ofcommon.stage import run_owned


async def main(ctx: ServiceContext[OwnedStageSettings]) -> None:
    # The same registry file the ownership layer reads, so instrument parameters agree.
    registry = load_registry(ctx.settings.registry_file or None)
    await run_owned(ctx, AggregatorFold(registry))


SERVICE = Service(
    name="aggregator",
    settings_type=OwnedStageSettings,
    main=main,
    summary="framing, the trade state machine and the strategy status",
)
