"""Run the alerts service: `python -m of_alerts` (same as `ofx run alerts`)."""

from of_alerts.service import SERVICE
from ofcommon.runner import run

raise SystemExit(run(SERVICE))
