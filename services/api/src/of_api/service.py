"""The API service: settings and wiring; REST, WebSocket and the dashboard are not built yet.

Until then it starts, reports health and stops cleanly, serving nothing.
"""

from __future__ import annotations

from typing import ClassVar

from ofcommon.service import Service, idle
from ofcommon.settings import BaseSettings, Port, Secret


class ApiSettings(BaseSettings, kw_only=True, frozen=True):
    api_host: str = "127.0.0.1"
    api_port: Port = 8080
    api_token: Secret = Secret("")

    docs: ClassVar = {
        **BaseSettings.docs,
        "api_host": "address the API listens on (0.0.0.0 in containers)",
        "api_port": "API and dashboard port",
        "api_token": "bearer token required by the API",
    }


SERVICE = Service(name="api", settings_type=ApiSettings, main=idle, summary="REST/WebSocket API")
