"""Proof that the written report renders: headless Chromium loads it at a given width, counts its images and
names any that fail to decode, measures whether anything overflows the window horizontally and where the first
answer block sits, and can save a screenshot of the first screen.

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
  const top = el => el ? el.getBoundingClientRect().top + window.scrollY : null;
  const answer = document.querySelector(".answer");
  const others = Array.from(document.querySelectorAll("img, details, nav, table:not(.kv)")).map(top);
  const wide = Array.from(document.querySelectorAll("body *")).filter(e => e.getBoundingClientRect().right >
    document.documentElement.clientWidth + 1 && !e.closest(".wide")).slice(0, 5)
    .map(e => e.tagName + "." + e.className);
  const out = document.createElement("pre"); out.id = "qe-render-check";
  out.textContent = JSON.stringify({images: images.length, broken: broken,
    scroll_width: document.documentElement.scrollWidth, viewport_width: document.documentElement.clientWidth,
    overflowing: wide, answer_top: top(answer), first_other_top: Math.min(...others.filter(t => t !== null))});
  document.body.appendChild(out);
});</script>"""


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM if (path := shutil.which(name))), None)


def render_check(index: Path, screenshot: Path | None = None, timeout: int = 180, width: int = 1400,
                 height: int = 1000) -> dict:
    """Load the report in headless Chromium `width` px wide: how many images, which failed to decode, the page's
    scroll width against the window's (no horizontal overflow: equal), where the first answer block and the
    first other element (image, table, contents, details) start; optionally a screenshot of the first screen."""
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

        dom = chromium(f"--window-size={width},{height}", "--virtual-time-budget=10000", "--dump-dom",
                       page.as_uri()).stdout
        start = dom.find('<pre id="qe-render-check">')
        if start < 0:
            raise RuntimeError(f"Chromium did not run the page's check script; its output began: {dom[:300]!r}")
        result = json.loads(html.unescape(dom[dom.index(">", start) + 1:dom.index("</pre>", start)]))
        if screenshot is not None:
            chromium(f"--window-size={width},{height}", f"--screenshot={Path(screenshot).resolve()}",
                     Path(index).resolve().as_uri())
            if not Path(screenshot).is_file():
                raise RuntimeError(f"Chromium wrote no screenshot at {screenshot}")
    return {**result, "screenshot": str(screenshot) if screenshot else None}
