"""A real Chromium for the dashboard tests (Debian's `chromium`, never Playwright's own build):
where it is, the exact install hint when it is missing, and how blank a canvas is."""

from __future__ import annotations

import os
import shutil
from typing import Final

INSTALL_HINT: Final = (
    "the dashboard browser test needs Chromium: `apt-get install -y chromium` (Debian's package; "
    "Playwright's own browsers are not used), or set OF_CHROMIUM to a Chromium/Chrome binary"
)

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
