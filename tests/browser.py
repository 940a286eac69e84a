"""A real headless browser for the page tests: Debian's Chromium and its driver, driven by Selenium.

:func:`ensure_chromium` installs the two apt packages when they are missing and this is a Debian machine where we
are root (CI is a fresh one), once per machine at a time (a file lock: pytest-xdist workers share the machine).
The browser starts with networking features off and a fresh profile, so a closed network costs nothing.

Run as a module from the checkout's root to take the README's screenshot of a whole page::

    python -m tests.browser /tmp/page/index.html results/embedded/leaderboard_page.png
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGES = ("chromium", "chromium-driver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
LOCK = Path(tempfile.gettempdir()) / "peftbench-apt-chromium.lock"


def _found() -> tuple[str, str] | None:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def ensure_chromium() -> tuple[str, str] | str:
    """Paths of ``chromium`` and ``chromedriver``, installing them with apt if needed; else why they are missing."""
    if (found := _found()) is not None:
        return found
    if shutil.which("apt-get") is None:
        return "chromium / chromedriver are not installed and this machine has no apt-get to install them"
    if os.geteuid() != 0:
        return f"chromium / chromedriver are not installed; as root: apt-get install -y {' '.join(PACKAGES)}"
    import fcntl

    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time; the others find it done
        if (found := _found()) is not None:
            return found
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
        t0 = time.perf_counter()
        proc = subprocess.run(install, capture_output=True, text=True, env=env)
        if proc.returncode != 0:  # a fresh machine has no package lists yet
            subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env)
            proc = subprocess.run(install, capture_output=True, text=True, env=env)
        print(f"[browser] apt-get install {' '.join(PACKAGES)}: exit {proc.returncode}, "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if proc.returncode != 0:
            return f"apt-get install {' '.join(PACKAGES)} failed: {proc.stderr.strip()[-500:]}"
    return _found() or "apt-get reported success but chromium / chromedriver are not on PATH"


@contextlib.contextmanager
def chrome(width: int = 1500, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium WebDriver with browser console logging, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = ensure_chromium()
    if isinstance(found, str):
        raise RuntimeError(found)
    browser, driver_path = found
    with tempfile.TemporaryDirectory(prefix="peftbench-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        try:
            yield driver
        finally:
            driver.quit()


def open_page(driver: Any, page: Path, timeout: float = 20.0) -> None:
    """Load ``page`` from disk and wait until its scripts ran (every Plotly figure drawn)."""
    driver.get(page.resolve().as_uri())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = driver.execute_script(
            "return document.readyState === 'complete' && "
            "document.querySelectorAll('.plotly-graph-div').length === document.querySelectorAll('.js-plotly-plot').length")
        if ready:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{page} did not finish loading in {timeout} s")


def screenshot(page: Path, png: Path, width: int = 1500, height: int = 1000, full_page: bool = False) -> Path:
    """Open ``page`` and save a PNG of its top ``height`` pixels (``full_page``: all of it, up to 6000)."""
    with chrome(width, height) as driver:
        open_page(driver, page)
        if full_page:
            total = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(width, min(int(total) + 140, 6000))  # + the window's frame
            open_page(driver, page)
        png.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(png))
    return png


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tests.browser PAGE.html OUT.png")
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2]), full_page=True))
