"""Headless Chromium (Debian's `chromium`) as a real browser for tests: the DOM after the page's
scripts ran, and a screenshot of what a person sees.

Each run gets a private profile in the test's folder, may reach 127.0.0.1 only (every other host
name resolves to nothing, and Chromium's own background traffic is off), and is stopped by its
process group (Chromium forks helpers) if it outlives its timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = "chromium"
# Virtual time: timers run as fast as the page lets them, while network fetches still take
# their real time, so a page polling once a second polls several times in a short real wait.
BUDGET_MS = 4000
TIMEOUT = 90.0


def chromium() -> str:
    """The browser's path; the test fails with one sentence when it is not installed."""
    path = shutil.which(CHROMIUM)
    assert path, "chromium is not installed: run scripts/ensure-system-packages " \
                 "(or apt-get install -y --no-install-recommends chromium)"
    return path


def _run(tmp: Path, url: str, *args: str) -> bytes:
    profile = tmp / f"chromium-profile-{os.urandom(4).hex()}"
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--virtual-time-budget={BUDGET_MS}", *args, url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)      # the group we made: Chromium and its helpers
        proc.communicate()
        raise AssertionError(f"chromium did not finish loading {url} in {TIMEOUT}s") from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # helpers that outlived the browser process
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}: {err.decode()[-2000:]}"
    return out


def dump_dom(tmp: Path, url: str) -> str:
    """The page's DOM as HTML once its scripts have run for the virtual time budget."""
    return _run(tmp, url, "--dump-dom").decode()


def screenshot(tmp: Path, url: str, path: Path, width: int, height: int) -> Path:
    """A PNG of the page in a width x height window."""
    _run(tmp, url, f"--screenshot={path}", f"--window-size={width},{height}",
         "--hide-scrollbars")
    return path


def pixels(png: Path) -> tuple[tuple[int, int], list[tuple[int, int, int]]]:
    """A screenshot's (width, height) and its RGB pixels, row by row."""
    from PIL import Image      # Pillow: installed with matplotlib (requirements-dev.txt)
    with Image.open(png) as image:
        rgb = image.convert("RGB")
    raw = rgb.tobytes()
    return rgb.size, list(zip(raw[0::3], raw[1::3], raw[2::3]))


def near(pixels: list, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels are within `tolerance` of `colour` in each channel."""
    return sum(1 for p in pixels if all(abs(a - b) < tolerance for a, b in zip(p, colour)))


class Rows(HTMLParser):
    """The page's table rows by their data-key: {key: {field: text}}, and its pool headings."""

    def __init__(self, dom: str):
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.pools: list[str] = []
        self.cards: dict[str, str] = {}
        self._row = self._field = self._card = None
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-key" in attrs:
            self._row = self.rows.setdefault(attrs["data-key"], {})
        elif tag == "td" and self._row is not None and "data-field" in attrs:
            self._field = attrs["data-field"]
            self._row[self._field] = ""
        elif tag == "div" and attrs.get("class") == "card":
            self._card = attrs["data-field"]
            self.cards[self._card] = ""
        elif tag == "h3" and "data-pool" in attrs:
            self.pools.append(attrs["data-pool"])

    def handle_endtag(self, tag):
        if tag == "td":
            self._field = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._field is not None:
            self._row[self._field] += data
        elif self._card is not None and not self.cards[self._card]:
            self.cards[self._card] = data      # a card's value comes first, then its label
            self._card = None
