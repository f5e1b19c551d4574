"""The draw-a-digit page in a real headless Chromium: a drawn stroke gets the same top 3 as `gpunn predict`.

Needs Debian's chromium and chromium-driver (.ci/run installs them) and Selenium (the test extra).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpunn.cli.drawing import mnist_like
from gpunn.nn.model import mlp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from page_driver import browser_installed, canvas_channel, chromium, draw_stroke, served  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not browser_installed(),
        reason="no browser: apt-get install chromium chromium-driver (as .ci/run does)",
    ),
]


def test_drawn_stroke_gets_the_same_top3_as_gpunn_predict(tmp_path):
    pytest.importorskip("selenium", reason="Selenium (the test extra) is not installed")
    from selenium.webdriver.common.by import By

    # any 784-input model will do: the check is that the page and `gpunn predict` agree on it
    mlp([784, 32, 10], seed=3).save(tmp_path / "model.npz")
    with served(tmp_path / "model.npz") as url, chromium(tmp_path / "profile") as browser:
        browser.get(url)
        draw_stroke(browser, [(150, 40), (160, 80), (150, 140), (120, 200), (110, 240)])
        shown = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#top li")]
        assert browser.find_element(By.ID, "error").text == ""
        assert len(browser.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 10
        seen = canvas_channel(browser, "seen")  # the 28x28 picture the page shows
        np.testing.assert_array_equal(seen, mnist_like(canvas_channel(browser, "pad")))
    assert seen.max() == 255 and np.count_nonzero(seen) > 40  # a real stroke, not a blank field

    np.save(tmp_path / "seen.npy", seen)
    predicted = subprocess.run(
        [sys.executable, "-m", "gpunn", "predict", str(tmp_path / "model.npz"), str(tmp_path / "seen.npy")],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.strip() == f"{tmp_path / 'seen.npy'}: " + ", ".join(shown)


def guesses(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#top li")]


def test_a_blank_canvas_shows_no_guess_but_a_hint_before_drawing_and_after_clear(tmp_path):
    pytest.importorskip("selenium", reason="Selenium (the test extra) is not installed")
    from selenium.webdriver.common.by import By

    mlp([784, 32, 10], seed=3).save(tmp_path / "model.npz")
    with served(tmp_path / "model.npz") as url, chromium(tmp_path / "profile") as browser:
        browser.get(url)
        hint = browser.find_element(By.ID, "hint")
        assert guesses(browser) == [] and hint.is_displayed() and "Draw a digit" in hint.text
        assert browser.find_elements(By.CSS_SELECTOR, "#bars .bar") == []
        draw_stroke(browser, [(150, 40), (160, 80), (150, 140), (120, 200), (110, 240)])
        assert len(guesses(browser)) == 3 and not hint.is_displayed()
        browser.find_element(By.ID, "clear").click()
        assert guesses(browser) == [] and hint.is_displayed()
        assert browser.find_elements(By.CSS_SELECTOR, "#bars .bar") == []
        assert not canvas_channel(browser, "seen").any() and not canvas_channel(browser, "pad").any()
        assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"


def test_on_a_phone_the_page_is_laid_out_at_the_screen_width_and_the_canvas_fits(tmp_path):
    pytest.importorskip("selenium", reason="Selenium (the test extra) is not installed")

    mlp([784, 32, 10], seed=3).save(tmp_path / "model.npz")
    with served(tmp_path / "model.npz") as url, chromium(tmp_path / "profile", phone=(360, 640)) as browser:
        browser.get(url)
        # without a viewport meta tag a phone lays the page out 980 px wide and shrinks it to a third
        width, right = browser.execute_script(
            "return [window.innerWidth, document.getElementById('pad').getBoundingClientRect().right];"
        )
        assert width == 360 and right <= 360


def test_the_page_loads_without_a_failed_request(tmp_path):
    pytest.importorskip("selenium", reason="Selenium (the test extra) is not installed")

    mlp([784, 32, 10], seed=3).save(tmp_path / "model.npz")
    with served(tmp_path / "model.npz") as url, chromium(tmp_path / "profile") as browser:
        browser.get(url)
        draw_stroke(browser, [(150, 40), (160, 80), (150, 140)])
        failed = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert failed == []  # a browser asks for /favicon.ico unless the page names its icon: that was a 404
