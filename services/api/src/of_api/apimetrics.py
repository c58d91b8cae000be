"""The API's own Prometheus metrics: WebSocket clients, messages sent, conflated and refused
per channel, slow-client disconnects; REST requests by route and status.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

WS_CLIENTS: Final = Gauge("of_api_ws_clients", "Connected, authenticated WebSocket clients")
WS_SENT: Final = Counter("of_api_ws_sent_total", "WebSocket messages sent", ["channel"])
WS_SUPERSEDED: Final = Counter(
    "of_api_ws_conflated_total",
    "Conflated-channel updates replaced by a newer one before they were sent",
    ["channel"],
)
WS_DISCONNECTS: Final = Counter(
    "of_api_ws_disconnects_total", "WebSocket clients closed by the server", ["reason"]
)
REQUESTS: Final = Counter("of_api_requests_total", "REST requests", ["route", "status"])
