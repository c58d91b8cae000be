"""Run the aggregator service: `python -m of_aggregator` (same as `ofx run aggregator`)."""

from of_aggregator.service import SERVICE
from ofcommon.runner import run

raise SystemExit(run(SERVICE))
