"""A real browser for tests: Debian's headless Chromium driven through its chromedriver by selenium.

    with loaded_html(store_page(report)) as page:
        assert page.console_errors() == []
        assert page.figures()["kpis.orders"] == "1234"
        page.screenshot(screenshot_path("store_full"))

The driver and the browser are Debian's packages (scripts/prerequisites.sh installs them), never a download:
Selenium Manager is skipped because the driver's path is given. When either is missing, `BrowserMissing`
says what to install, so a test that needs the browser fails instead of quietly skipping."""
from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 2000)
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "test-output" / "screenshots"

# Read in the page through WebDriver (which CSP does not govern): one round trip for every figure, where
# asking element by element would cost one per element. SVG elements have no innerText: their visible text
# is their <text> children (a <title> is a tooltip, not on screen).
_FIGURES_JS = """
const out = [];
for (const e of document.querySelectorAll('[data-figure]')) {
  const text = e instanceof HTMLElement ? e.innerText
    : Array.from(e.querySelectorAll('text'), t => t.textContent).join(' ');
  out.push([e.getAttribute('data-figure'), e.getAttribute('data-value'), text.trim()]);
}
return out;
"""


class BrowserMissing(RuntimeError):
    """Chromium or chromedriver is not installed: the browser tests cannot run (and must not pass)."""


def check_installed() -> None:
    missing = [f"{p} (Debian package {pkg})" for p, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver"))
               if not p.is_file()]
    if missing:
        raise BrowserMissing(
            "the browser tests need " + " and ".join(missing) + ": run scripts/prerequisites.sh as root "
            "(or make setup), or apt-get install -y chromium chromium-driver")


class Page:
    """One loaded page in the running browser."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self._log: list[dict[str, Any]] = []

    def console_errors(self) -> list[str]:
        """The browser console's SEVERE entries (script errors, CSP refusals, failed loads) so far."""
        self._log += self.driver.get_log("browser")  # reading the log empties it: keep what was read
        return [e["message"] for e in self._log if e.get("level") == "SEVERE"]

    def _figures(self) -> list[tuple[str, str, str]]:
        return [tuple(f) for f in self.driver.execute_script(_FIGURES_JS)]

    def figures(self) -> dict[str, str]:
        """Every `[data-figure]`'s data-value, by its name (a repeated name raises: the page would be ambiguous)."""
        found = self._figures()
        names = [name for name, _, _ in found]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise AssertionError(f"data-figure names appear more than once: {repeated[:10]}")
        return {name: value for name, value, _ in found}

    def figure_texts(self) -> dict[str, str]:
        """Every figure's text as rendered on screen (empty for a bare chart bar)."""
        return {name: text for name, _, text in self._figures()}

    def visible_text(self) -> str:
        """The page's text as a reader sees it (hidden elements and tooltips left out)."""
        return self.driver.execute_script("return document.body.innerText;")

    def screenshot(self, path: str | Path) -> Path:
        """A PNG of the whole page, not only the window (the report is longer than any window)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        width, height = self.driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight];")
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def screenshot_path(name: str) -> Path:
    """Where a test's screenshot goes: test-output/screenshots/<name>.png under the repository (git-ignored)."""
    return SCREENSHOTS / f"{name}.png"


def _driver() -> Any:
    check_installed()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # The last five keep a test machine's browser from calling home (updates, sync, field trials): the pages
    # load nothing from the network, so nothing in a test should wait on it either.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--lang=en-US",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    return driver


class Browser:
    """One running Chromium that opens pages one after another (start it once per module: ~1 s each start)."""

    def __init__(self) -> None:
        self.driver = _driver()

    def open(self, url: str) -> Page:
        self.driver.get_log("browser")  # the previous page's entries are not this page's
        self.driver.get(url)
        return Page(self.driver)

    def load_html(self, html: str, directory: str | Path) -> Page:
        """`html` written to a file in `directory` and opened as file:// (what a saved report link does)."""
        path = Path(directory) / "page.html"
        path.write_text(html, encoding="utf-8")
        return self.open(path.as_uri())

    def close(self) -> None:
        self.driver.quit()


@contextmanager
def browser() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


@contextmanager
def open_page(url: str) -> Iterator[Page]:
    """A page in a browser of its own, closed on leaving."""
    with browser() as b:
        yield b.open(url)


@contextmanager
def loaded_html(html: str, *, using: Browser | None = None) -> Iterator[Page]:
    """`html` opened from a temporary file, in `using` or a browser of its own."""
    with tempfile.TemporaryDirectory(prefix="chaincrm-page-") as tmp:
        if using is not None:
            yield using.load_html(html, tmp)
            return
        with browser() as b:
            yield b.load_html(html, tmp)
