"""The aggregator stage: framing, signal aggregation, the trade state machine and journal.

Not built yet: a worker takes part in instrument ownership, reports health and stops cleanly.
"""

from __future__ import annotations

from ofcommon.stage import lease_only_service

SERVICE = lease_only_service(
    "aggregator", "framing, signal aggregation, the trade state machine and journal"
)
