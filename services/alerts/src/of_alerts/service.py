"""The alerts service: settings and wiring; Telegram delivery is not built yet.

Until then it starts, reports health and stops cleanly, sending nothing.
"""

from __future__ import annotations

from typing import ClassVar

from ofcommon.service import Service, idle
from ofcommon.settings import BaseSettings, Secret


class AlertsSettings(BaseSettings, kw_only=True, frozen=True):
    telegram_bot_token: Secret = Secret("")
    telegram_chat_id: str = ""
    telegram_api_url: str = "https://api.telegram.org"

    docs: ClassVar = {
        **BaseSettings.docs,
        "telegram_bot_token": "Telegram Bot API token",
        "telegram_chat_id": "chat to alert",
        "telegram_api_url": "Bot API base URL",
    }


SERVICE = Service(name="alerts", settings_type=AlertsSettings, main=idle, summary="Telegram alerts")
