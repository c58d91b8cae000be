"""The patterns stage: the five pattern detectors.

Not built yet: a worker takes part in instrument ownership, reports health and stops cleanly.
"""

from __future__ import annotations

from ofcommon.stage import lease_only_service

SERVICE = lease_only_service("patterns", "the five pattern detectors")
