"""The alerts service's settings: the Telegram bot, its chats, the filters and the send limits.

Chat ids and alert types are comma-separated lists checked here, so a typo stops the service.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Final, Literal

import msgspec

from of_alerts.kinds import ALERT_TYPES, DEFAULT_TYPES, GRADES
from ofcommon.settings import BaseSettings, PositiveFloat, Secret

_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$")
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Grade = Literal["A+", "A", "B", "C"]
TELEGRAM_API: Final = "https://api.telegram.org"


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


class AlertsSettings(BaseSettings, kw_only=True, frozen=True):
    telegram_bot_token: Secret = Secret("")
    telegram_chat_id: str = ""
    telegram_api_url: str = TELEGRAM_API
    telegram_timeout_s: PositiveFloat = 30.0
    alerts_types: str = ",".join(DEFAULT_TYPES)
    alerts_min_grade: Grade = "C"
    alerts_quiet_warnings: bool = False
    alerts_chart_bars: Annotated[int, msgspec.Meta(ge=0, le=500)] = 60
    alerts_max_age_s: NonNegative = 3600.0
    alerts_chat_interval_s: NonNegative = 1.0
    alerts_global_rate: Annotated[float, msgspec.Meta(gt=0, le=30)] = 30.0
    alerts_resend_uncertain: bool = False
    alerts_claim_idle_s: PositiveFloat = 60.0

    docs: ClassVar = {
        **BaseSettings.docs,
        "telegram_bot_token": "Telegram Bot API token from @BotFather; empty = no-op mode",
        "telegram_chat_id": "chat ids (or @channel names) to alert, comma-separated",
        "telegram_api_url": "Bot API server (a self-hosted telegram-bot-api, or Telegram's)",
        "telegram_timeout_s": "seconds one Bot API request may take (connect, write, read)",
        "alerts_types": (
            "alert types to send, comma-separated: " + ", ".join(ALERT_TYPES) + " (the first"
            " six are the defaults)"
        ),
        "alerts_min_grade": "lowest trade grade alerted (A+, A, B, C); bias alerts always pass",
        "alerts_quiet_warnings": "send exit warnings without a notification sound",
        "alerts_chart_bars": "closed 1m bars in each chart snapshot; 0 = text only",
        "alerts_max_age_s": "skip events that reached Redis longer ago than this; 0 = no limit",
        "alerts_chat_interval_s": "seconds between two messages to one chat (Telegram: ~1)",
        "alerts_global_rate": "messages per second over all chats (Telegram: 30)",
        "alerts_resend_uncertain": (
            "resend a message whose delivery is unknown (crash or timeout mid-send): at least"
            " once instead of at most once"
        ),
        "alerts_claim_idle_s": "seconds before a dead worker's pending events are taken over",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        for chat in self.chat_ids():
            if not _CHAT.match(chat):
                raise ValueError(
                    f"OF_TELEGRAM_CHAT_ID: {chat!r} is neither a numeric chat id nor an"
                    " @channel username"
                )
        unknown = [t for t in _items(self.alerts_types) if t not in ALERT_TYPES]
        if unknown:
            raise ValueError(
                f"OF_ALERTS_TYPES: unknown alert type {unknown[0]!r} (known: "
                + ", ".join(ALERT_TYPES)
                + ")"
            )
        if not self.telegram_api_url.startswith(("http://", "https://")):
            raise ValueError(
                f"OF_TELEGRAM_API_URL: expected an http(s) URL, got {self.telegram_api_url!r}"
            )

    def chat_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_items(self.telegram_chat_id)))

    def types(self) -> frozenset[str]:
        return frozenset(_items(self.alerts_types))

    def min_grade_rank(self) -> int:
        return GRADES.index(self.alerts_min_grade)
