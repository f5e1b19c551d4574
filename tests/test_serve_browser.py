"""The draw-a-digit page in a real headless Chromium: a drawn stroke gets the same top 3 as `gpunn predict`.

Needs Debian's chromium and chromium-driver (.ci/run installs them) and Selenium (the test extra).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpunn.drawing import mnist_like
from gpunn.nn.model import mlp

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
    "--window-size=1200,800",
]

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="no browser: apt-get install chromium chromium-driver (as .ci/run does)",
)


@pytest.fixture
def page_url(tmp_path):
    # any 784-input model will do: the check is that the page and `gpunn predict` agree on it
    mlp([784, 32, 10], seed=3).save(tmp_path / "model.npz")
    process = subprocess.Popen(
        [sys.executable, "-m", "gpunn", "serve", str(tmp_path / "model.npz"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("serving http://127.0.0.1:"), first + process.stderr.read()
        yield first.split()[1], tmp_path / "model.npz"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="Selenium (the test extra) is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def draw_stroke(driver, points) -> None:
    """Press, drag through `points` (pixels from the canvas's top-left) and release, like a mouse."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    pad = driver.find_element(By.ID, "pad")
    origin = (-pad.size["width"] // 2, -pad.size["height"] // 2)  # Selenium offsets count from the centre
    actions = ActionChains(driver).move_to_element_with_offset(
        pad, origin[0] + points[0][0], origin[1] + points[0][1]
    )
    actions.click_and_hold()
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        actions.move_by_offset(x1 - x0, y1 - y0)
    actions.release().perform()


def canvas_channel(driver, canvas_id: str) -> np.ndarray:
    """The red channel of a canvas on the page, (height, width) uint8."""
    values = driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "const out = []; for (let i = 0; i < d.length; i += 4) out.push(d[i]);"
        "return [c.height, c.width, out];",
        canvas_id,
    )
    height, width, red = values
    return np.array(red, dtype=np.uint8).reshape(height, width)


def test_drawn_stroke_gets_the_same_top3_as_gpunn_predict(page_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, model_path = page_url
    browser.get(url)
    draw_stroke(browser, [(150, 40), (160, 80), (150, 140), (120, 200), (110, 240)])
    WebDriverWait(browser, 60).until(
        lambda d: (
            d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"
            and len(d.find_elements(By.CSS_SELECTOR, "#top li")) == 3
        )
    )
    shown = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#top li")]
    assert browser.find_element(By.ID, "error").text == ""

    seen = canvas_channel(browser, "seen")  # the 28x28 picture the page shows
    np.testing.assert_array_equal(seen, mnist_like(canvas_channel(browser, "pad")))
    assert seen.max() == 255 and np.count_nonzero(seen) > 40  # a real stroke, not a blank field

    np.save(tmp_path / "seen.npy", seen)
    predicted = subprocess.run(
        [sys.executable, "-m", "gpunn", "predict", str(model_path), str(tmp_path / "seen.npy")],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.strip() == f"{tmp_path / 'seen.npy'}: " + ", ".join(shown)
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert len(bars) == 10
