"""Proof that the written report renders: headless Chromium loads it, counts its images and names any that fail
to decode, and can save a screenshot.

Apart from the rest of the report because it is the only part that runs an outside program, and it is optional
(`quant-explorer report --check-render`): building the report never needs a browser.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import UserError

CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")
CHECK_SCRIPT = """<script>window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const out = document.createElement("pre"); out.id = "qe-render-check";
  out.textContent = JSON.stringify({images: images.length, broken: broken});
  document.body.appendChild(out);
});</script>"""


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM if (path := shutil.which(name))), None)


def render_check(index: Path, screenshot: Path | None = None, timeout: int = 180) -> dict:
    """Load the report in headless Chromium: how many images, which failed to decode; optionally a screenshot."""
    browser = find_chromium()
    if browser is None:
        raise UserError("no Chromium found (looked for " + ", ".join(CHROMIUM) + "); install it, e.g. "
                        "`apt-get install chromium`")
    with tempfile.TemporaryDirectory(prefix="qe-render-") as tmp:
        page = Path(tmp) / "check.html"
        page.write_text(Path(index).read_text().replace("</body>", CHECK_SCRIPT + "</body>"))

        def chromium(*args: str) -> subprocess.CompletedProcess:
            profile = tempfile.mkdtemp(dir=tmp)
            return subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                                  capture_output=True, text=True, timeout=timeout)

        dom = chromium("--virtual-time-budget=10000", "--dump-dom", page.as_uri()).stdout
        start = dom.find('<pre id="qe-render-check">')
        if start < 0:
            raise RuntimeError(f"Chromium did not run the page's check script; its output began: {dom[:300]!r}")
        result = json.loads(html.unescape(dom[dom.index(">", start) + 1:dom.index("</pre>", start)]))
        if screenshot is not None:
            chromium("--window-size=1400,2200", f"--screenshot={Path(screenshot).resolve()}", Path(index).resolve().as_uri())
            if not Path(screenshot).is_file():
                raise RuntimeError(f"Chromium wrote no screenshot at {screenshot}")
    return {**result, "screenshot": str(screenshot) if screenshot else None}
