"""The patterns stage: the five pattern detectors over the analytics outputs, per instrument.
Each owned instrument runs ``PatternsFold`` under ``ofcommon.stage.run_owned`` (exactly once).
"""

from __future__ import annotations

from typing import cast

from of_patterns.fold import PatternsFold
from of_patterns.settings import PatternsSettings
from ofcommon.instruments import load_registry
from ofcommon.service import Service, ServiceContext
from ofcommon.settings import OwnedStageSettings
from ofcommon.stage import run_owned


async def main(ctx: ServiceContext[PatternsSettings]) -> None:
    # The same registry file the ownership layer reads, so instrument parameters agree.
    registry = load_registry(ctx.settings.registry_file or None)
    fold = PatternsFold.from_settings(registry, ctx.settings)
    # PatternsSettings is an OwnedStageSettings; the context type is invariant only nominally.
    await run_owned(cast("ServiceContext[OwnedStageSettings]", ctx), fold)


SERVICE = Service(
    name="patterns",
    settings_type=PatternsSettings,
    main=main,
    summary="the five pattern detectors",
)
