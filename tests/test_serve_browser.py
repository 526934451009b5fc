"""The web page in a real browser: Debian's chromium driven by Selenium through Debian's
chromedriver (named explicitly, so Selenium Manager never downloads a browser or a driver).

Set ``CAMO_SERVE_SCREENSHOT=docs/images/serve.png`` to keep the screenshot of the result.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from serve_helpers import running

from camo_engine.samples import sample_paths
from camo_engine.serve import ServeSettings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
        "chromium-driver; .ci/run installs them)",
    ),
]


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,820"):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(tmp_path), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def test_page_protects_an_uploaded_photo_and_downloads_it(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    photo = next(p for p in sample_paths() if p.stem == "chelsea")
    settings = ServeSettings(victims=("brisque", "efficientnet-lite0"))
    with running(settings) as (base, _):
        browser.get(f"{base}/")
        wait = WebDriverWait(browser, 600)
        wait.until(lambda d: d.find_elements(By.ID, "option-victim"))
        Select(browser.find_element(By.ID, "option-victim")).select_by_value("efficientnet-lite0")
        browser.find_element(By.ID, "files").send_keys(str(photo))
        browser.find_element(By.ID, "protect").click()
        card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".result[data-state='done'], .result[data-state='error']"))
        assert card.get_attribute("data-state") == "done", card.text
        # What the page shows is what the service answers for the same photo and options.
        answer = httpx.post(
            f"{base}/v1/protect?report=json", files={"photo": (photo.name, photo.read_bytes())},
            data={"victim": "efficientnet-lite0"}, timeout=600,
        ).json()
        report, image = answer["report"], base64.b64decode(answer["image"])
        assert report["protected"] and report["win"]  # chelsea: a clean win
        assert card.find_element(By.CSS_SELECTOR, ".verdict").text == "protected"
        views = card.find_element(By.CSS_SELECTOR, ".views").text
        assert views == f"{report['views_protected']} views (medium, panel medium)"
        card.find_element(By.CSS_SELECTOR, ".per-view summary").click()
        cells = card.find_elements(By.CSS_SELECTOR, ".view-table tbody tr td:first-child")
        assert [c.text for c in cells] == [v["view"] for v in report["views"]] and len(cells) > 1
        scores = card.find_element(By.CSS_SELECTOR, ".scores").text
        assert scores == f"efficientnet-lite0: {report['before']} → {report['after']}"
        assert card.find_element(By.CSS_SELECTOR, ".psnr").text == f"{report['psnr']:.1f} dB"
        # The slider uncovers more of the protected photo.
        browser.execute_script(
            "const s = arguments[0]; s.value = 30; s.dispatchEvent(new Event('input'));",
            card.find_element(By.CSS_SELECTOR, ".slider"),
        )
        clip = card.find_element(By.CSS_SELECTOR, ".after-clip").value_of_css_property("clip-path")
        assert "30%" in clip
        if os.environ.get("CAMO_SERVE_SCREENSHOT"):
            browser.execute_script("window.scrollTo(0, 0)")
            browser.save_screenshot(os.environ["CAMO_SERVE_SCREENSHOT"])
        link = card.find_element(By.CSS_SELECTOR, "a.download")
        shown = {key: int(link.get_attribute(f"data-{key}")) for key in ("bytes", "width", "height")}
        link.click()
        downloaded = _downloaded(tmp_path / "chelsea-protected.jpg")
    assert downloaded.read_bytes() == image
    assert downloaded.stat().st_size == shown["bytes"] == report["bytes"]
    with Image.open(downloaded) as im:
        im.verify()
    with Image.open(downloaded) as im, Image.open(photo) as original:
        assert im.format == "JPEG"
        assert im.size == (shown["width"], shown["height"]) == original.size


def _downloaded(path: Path, within: float = 60) -> Path:
    """The file once Chromium has finished writing it (it writes ``.crdownload`` first)."""
    deadline = time.monotonic() + within
    while not path.is_file() or any(path.parent.glob("*.crdownload")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no download at {path}; folder has {sorted(os.listdir(path.parent))}")
        time.sleep(0.1)
    return path


def test_chromium_is_there_in_ci():
    """CI installs chromium: a skip there would hide a broken page."""
    if os.environ.get("CI"):
        assert shutil.which("chromium") and shutil.which("chromedriver")
