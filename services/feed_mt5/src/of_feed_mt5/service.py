"""The MetaTrader 5 feed service: settings and wiring; the feed itself is not built yet.

Until then it starts, reports health and stops cleanly, publishing nothing.
"""

from __future__ import annotations

from typing import ClassVar

from ofcommon.service import Service, ServiceContext
from ofcommon.settings import BaseSettings, Port, Secret


class Mt5Settings(BaseSettings, kw_only=True, frozen=True):
    mt5_bridge_host: str = ""
    mt5_bridge_port: Port = 18812
    mt5_login: int = 0
    mt5_password: Secret = Secret("")
    mt5_server: str = ""

    docs: ClassVar = {
        **BaseSettings.docs,
        "mt5_bridge_host": "RPyC bridge host (mt5linux); empty = native MetaTrader5 package",
        "mt5_bridge_port": "RPyC bridge port",
        "mt5_login": "trading account login (0 = use the terminal's current login)",
        "mt5_password": "trading account password",
        "mt5_server": "broker server name",
    }


async def main(ctx: ServiceContext[Mt5Settings]) -> None:
    ctx.status["feed"] = "not built yet"
    await ctx.stop.wait()


SERVICE = Service(
    name="feed_mt5", settings_type=Mt5Settings, main=main, summary="MetaTrader 5 feed"
)
