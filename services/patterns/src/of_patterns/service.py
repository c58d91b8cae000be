"""The patterns stage: owns instruments through leases; its fold is not built yet.

Until then a worker takes part in ownership, reports health and stops cleanly, and nothing more.
"""

from __future__ import annotations

from ofcommon.service import Service, ServiceContext
from ofcommon.settings import OwnedStageSettings
from ofcommon.stage import run_owned


async def main(ctx: ServiceContext[OwnedStageSettings]) -> None:
    await run_owned(ctx, None)


SERVICE = Service(
    name="patterns",
    settings_type=OwnedStageSettings,
    main=main,
    summary="the five pattern detectors",
)
