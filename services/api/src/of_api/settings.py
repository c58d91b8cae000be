"""The API service's settings: where it listens, its token, and the WebSocket's limits.

Every field is an ``OF_*`` variable (docs/configuration.md); the token is a ``Secret``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from ofcommon.settings import BaseSettings, Port, PositiveFloat, Secret


class ApiSettings(BaseSettings, kw_only=True, frozen=True):
    api_host: str = "127.0.0.1"
    api_port: Port = 8080
    api_token: Secret = Secret("")
    api_cors_origins: str = ""
    api_ws_queue: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 2000
    api_ws_auth_timeout_s: PositiveFloat = 5.0
    api_tick_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 200
    api_orderbook_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 500
    api_delta_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 200
    api_candle_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 250
    api_profile_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 1000
    api_stats_ms: Annotated[int, msgspec.Meta(ge=100, le=600_000)] = 5000
    api_read_count: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000

    docs: ClassVar = {
        **BaseSettings.docs,
        "api_host": "address the API listens on (0.0.0.0 in containers)",
        "api_port": "API and dashboard port",
        "api_token": "bearer token required by every route but /healthz and by /ws (required)",
        "api_cors_origins": "comma-separated origins allowed by CORS; empty = none (closed)",
        "api_ws_queue": "critical WebSocket messages queued per client before it is dropped",
        "api_ws_auth_timeout_s": "seconds a WebSocket client has to send its token",
        "api_tick_ms": "tick channel conflation interval per instrument (ms)",
        "api_orderbook_ms": "orderbook channel conflation interval per instrument (ms)",
        "api_delta_ms": "delta channel conflation interval per instrument (ms)",
        "api_candle_ms": "partial-candle conflation interval per instrument (ms)",
        "api_profile_ms": "developing volume-profile conflation interval (ms)",
        "api_stats_ms": "stats channel interval per instrument (ms)",
        "api_read_count": "stream entries per XREAD of the WebSocket hub",
    }

    def longest_block_ms(self) -> int:
        return 1000
