"""Drive the `gpunn serve` page in Debian's headless Chromium (Selenium): the browser test and
scripts/screenshots.py share it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_installed() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@contextlib.contextmanager
def served(checkpoint: str | Path):
    """`gpunn serve CHECKPOINT --port 0` in a child process; yields the page's address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gpunn", "serve", str(checkpoint), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        first = process.stdout.readline()
        if not first.startswith("serving http://"):
            raise RuntimeError(f"gpunn serve did not start: {first}{process.stderr.read()}")
        yield first.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def chromium(profile_dir: Path, window: tuple[int, int] = (1200, 800), phone: tuple[int, int] | None = None):
    """A headless Chromium with a fresh profile in `profile_dir`, no network besides the page; `phone`
    (width, height) emulates a phone's screen, where the page's viewport meta tag decides the layout width.
    The browser's console log (driver.get_log("browser")) records failed loads such as a favicon's 404."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if phone is not None:
        metrics = {"width": phone[0], "height": phone[1], "pixelRatio": 3.0, "touch": True}
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
    for flag in [*FLAGS, f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile_dir}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def draw_stroke(driver, points) -> None:
    """Press, drag through `points` (pixels from the canvas's top-left), release; then wait for the guesses."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    pad = driver.find_element(By.ID, "pad")
    left, top = -pad.size["width"] // 2, -pad.size["height"] // 2  # Selenium offsets count from the centre
    actions = ActionChains(driver).move_to_element_with_offset(pad, left + points[0][0], top + points[0][1])
    actions.click_and_hold()
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        actions.move_by_offset(x1 - x0, y1 - y0)
    actions.release().perform()
    WebDriverWait(driver, 60).until(
        lambda d: (
            d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"
            and len(d.find_elements(By.CSS_SELECTOR, "#top li")) == 3
        )
    )


def canvas_channel(driver, canvas_id: str) -> np.ndarray:
    """The red channel of a canvas on the page, (height, width) uint8."""
    height, width, red = driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "const out = []; for (let i = 0; i < d.length; i += 4) out.push(d[i]);"
        "return [c.height, c.width, out];",
        canvas_id,
    )
    return np.array(red, dtype=np.uint8).reshape(height, width)
