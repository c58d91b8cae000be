"""Run the api service: `python -m of_api` (same as `ofx run api`)."""

from of_api.service import SERVICE
from ofcommon.runner import run

raise SystemExit(run(SERVICE))
