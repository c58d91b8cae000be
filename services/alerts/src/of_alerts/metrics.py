"""The alerts service's Prometheus metrics (served with the shared ones on OF_METRICS_PORT).

Counted per message part and chat: sent, failed for good, unknown delivery, skipped, retried.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

SENT: Final = Counter("of_alerts_sent_total", "Telegram messages sent", ["type"])
FAILED: Final = Counter(
    "of_alerts_failed_total",
    "Telegram messages given up on a permanent error (bad chat id, bot blocked, ...)",
    ["type", "error"],
)
UNCERTAIN: Final = Counter(
    "of_alerts_uncertain_total",
    "Messages whose delivery is unknown (crash or timeout mid-request) and not resent",
    ["type"],
)
SKIPPED: Final = Counter(
    "of_alerts_skipped_total",
    "Events not alerted: filtered (type, grade), stale, not an alert, or already sent",
    ["reason"],
)
RETRIES: Final = Counter("of_alerts_retries_total", "Telegram requests retried", ["cause"])
