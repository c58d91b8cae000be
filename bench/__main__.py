"""Every benchmark, one after the other, each writing its section of docs/benchmarks.md.

    uv run python -m bench [--redis-url URL] [--out docs/benchmarks.md] [--no-out]

(``make bench``.) Each benchmark starts its own embedded Redis unless a URL is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from bench import analytics, api, bus, feeds, harness, patterns

# name -> main(argv, command=...) of each benchmark module, in run order
BENCHMARKS: Final[dict[str, Callable[..., int]]] = {
    "bus": bus.main,
    "feeds": feeds.main,
    "analytics": analytics.main,
    "patterns": patterns.main,
    "api": api.main,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", help="use this server (default: OF_REDIS_URL, else embedded)")
    p.add_argument("--out", type=Path, default=harness.RESULTS, help="results file to update")
    p.add_argument("--no-out", action="store_true", help="print only, write no file")
    p.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these")
    args = p.parse_args(argv)
    command = harness.command_line("bench", argv)
    common = [*(["--redis-url", args.redis_url] if args.redis_url else [])]
    if not args.no_out:
        common += ["--out", str(args.out)]
    t0 = time.perf_counter()
    for name, run in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        harness.log(f"== bench.{name}")
        if rc := run(common, command=command):
            return rc
    harness.log(f"all benchmarks took {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
