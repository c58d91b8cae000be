"""Run the analytics service: `python -m of_analytics` (same as `ofx run analytics`)."""

from of_analytics.service import SERVICE
from ofcommon.runner import run

raise SystemExit(run(SERVICE))
