"""The analytics stage: footprint bars, delta, profiles and book statistics per instrument.
Each owned instrument runs ``AnalyticsFold`` under ``ofcommon.stage.run_owned`` (exactly once).
"""

from __future__ import annotations

from of_analytics.fold import AnalyticsFold
from ofcommon.instruments import load_registry
from ofcommon.service import Service, ServiceContext
from ofcommon.settings import OwnedStageSettings
from ofcommon.stage import run_owned


async def main(ctx: ServiceContext[OwnedStageSettings]) -> None:
    # The same registry file the ownership layer reads, so instrument parameters agree.
    registry = load_registry(ctx.settings.registry_file or None)
    await run_owned(ctx, AnalyticsFold(registry))


SERVICE = Service(
    name="analytics",
    settings_type=OwnedStageSettings,
    main=main,
    summary="footprint bars, delta, profiles and book statistics",
)
