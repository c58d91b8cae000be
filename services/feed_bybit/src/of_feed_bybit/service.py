"""The Bybit v5 feed service: settings and wiring; the feed itself is not built yet.

Until then it starts, reports health and stops cleanly, publishing nothing.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from ofcommon.service import Service, ServiceContext
from ofcommon.settings import BaseSettings


class BybitSettings(BaseSettings, kw_only=True, frozen=True):
    bybit_ws_url: str = "wss://stream.bybit.com/v5/public"
    bybit_rest_url: str = "https://api.bybit.com"
    bybit_depth: Literal[1, 50, 200, 1000] = 50

    docs: ClassVar = {
        **BaseSettings.docs,
        "bybit_ws_url": "public WebSocket base URL; /linear and /spot are appended",
        "bybit_rest_url": "REST base URL (instruments-info, recent-trade backfill)",
        "bybit_depth": "order book depth topic: 1, 50, 200 or 1000",
    }


async def main(ctx: ServiceContext[BybitSettings]) -> None:
    ctx.status["feed"] = "not built yet"
    await ctx.stop.wait()


SERVICE = Service(
    name="feed_bybit", settings_type=BybitSettings, main=main, summary="Bybit v5 feed"
)
