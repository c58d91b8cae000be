"""Run the feed_mt5 service: `python -m of_feed_mt5` (same as `ofx run feed_mt5`)."""

from of_feed_mt5.service import SERVICE
from ofcommon.runner import run

raise SystemExit(run(SERVICE))
