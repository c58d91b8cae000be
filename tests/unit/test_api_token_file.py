"""The local stack's API token: OF_API_TOKEN wins; else one is generated into var/ (0600) once
and reused."""

from __future__ import annotations

import stat
from pathlib import Path

from ofcommon.apitoken import local_token


def test_the_environment_wins(tmp_path: Path) -> None:
    assert local_token(tmp_path, {"OF_API_TOKEN": "given"}) == ("given", None)
    assert not (tmp_path / "api_token").exists()


def test_a_generated_token_is_private_and_reused(tmp_path: Path) -> None:
    token, path = local_token(tmp_path / "var", {})
    assert path == tmp_path / "var" / "api_token"
    assert len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token
    again, _ = local_token(tmp_path / "var", {"OF_API_TOKEN": ""})
    assert again == token
