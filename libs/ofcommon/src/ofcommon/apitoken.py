"""The local stack's API token: ``OF_API_TOKEN`` when set, else one generated into ``var/``.

The file is created 0600 once and reused, so a dashboard tab keeps working across restarts.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Final

TOKEN_FILE: Final = "api_token"  # noqa: S105 - a file name, not a secret


def local_token(var_dir: Path, env: Mapping[str, str]) -> tuple[str, Path | None]:
    """(token, file it was read from or written to; None when it came from OF_API_TOKEN)."""
    given = env.get("OF_API_TOKEN", "")
    if given:
        return given, None
    path = var_dir / TOKEN_FILE
    if path.is_file():
        token = path.read_text().strip()
        if token:
            return token, path
    var_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, path
