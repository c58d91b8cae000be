"""Run the patterns service: `python -m of_patterns` (same as `ofx run patterns`)."""

from of_patterns.service import SERVICE
from ofcommon.runner import run

raise SystemExit(run(SERVICE))
