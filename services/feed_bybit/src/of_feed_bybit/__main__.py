"""Run the feed_bybit service: `python -m of_feed_bybit` (same as `ofx run feed_bybit`)."""

from of_feed_bybit.service import SERVICE
from ofcommon.runner import run

raise SystemExit(run(SERVICE))
