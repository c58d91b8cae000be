"""A real Chromium for the browser tests (Debian's `chromium`, never Playwright's own build):
launched, its page's errors collected, where screenshots go, and how blank a canvas is."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

INSTALL_HINT: Final = (
    "the browser tests need Chromium: `apt-get install -y chromium` (Debian's package; "
    "Playwright's own browsers are not used), or set OF_CHROMIUM to a Chromium/Chrome binary"
)
REPO: Final = Path(__file__).resolve().parents[2]

# JavaScript: for every <canvas> under the element of id `panel`, the number of pixels whose
# colour differs from the canvas's first pixel (a blank canvas scores 0).
CANVAS_INK_JS: Final = """(panel) => {
  const out = [];
  for (const c of document.getElementById(panel).querySelectorAll('canvas')) {
    if (!c.width || !c.height) { out.push(0); continue; }
    const ctx = c.getContext('2d', { willReadFrequently: true });
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 4; i < d.length; i += 4) {
      if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2] || d[i + 3] !== d[3]) n++;
    }
    out.push(n);
  }
  return out;
}"""


def chromium_path() -> str | None:
    """OF_CHROMIUM, else the first Chromium on PATH."""
    given = os.environ.get("OF_CHROMIUM")
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright's ``Browser``) on the system's binary; the test fails with
    the install hint when there is none."""
    exe = chromium_path()
    if exe is None:
        pytest.fail(INSTALL_HINT)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def collect_errors(page: Any) -> list[str]:
    """The page's console errors and uncaught exceptions, appended as they happen."""
    errors: list[str] = []

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    def on_error(err: Any) -> None:
        errors.append(f"uncaught: {err}")

    page.on("console", on_console)
    page.on("pageerror", on_error)
    return errors


def artifacts(name: str) -> Path:
    """``var/test-artifacts/<name>/`` (under ``OF_TEST_ARTIFACTS`` when set), created."""
    root = Path(os.environ.get("OF_TEST_ARTIFACTS", REPO / "var" / "test-artifacts"))
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path
