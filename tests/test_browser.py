"""The real studio in headless Chromium (Debian's `chromium`, driven by Playwright's Python package):
type a script, generate, wait for the video, download it and check its streams."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.talking_fixtures import StudioServer, studio_home

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_type_generate_watch_and_download(browser, tmp_path):
    from render.video import probe

    with StudioServer(studio_home(tmp_path)) as studio:
        page = browser.new_page(accept_downloads=True)
        page.goto(studio.url)
        page.locator("#script textarea").fill("Bob bought a blue boat.")
        avatar = page.locator("#avatar input")
        avatar.click()
        avatar.fill("tiny")
        page.keyboard.press("Enter")
        page.locator("#generate").click()
        page.locator("#video video").wait_for(timeout=180_000)
        assert "Done" in page.locator("#status").inner_text()
        with page.expect_download() as download:
            page.locator("#download a").first.click()
        saved = tmp_path / "downloaded.mp4"
        download.value.save_as(saved)
        info = probe(saved)
        assert (info.video_codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", "aac")
        assert (info.width, info.height) == (64, 64)
        assert info.video_start_s == pytest.approx(0.0, abs=1e-3) and info.audio_start_s == pytest.approx(0.0, abs=1e-3)
        assert abs(info.num_frames / info.fps - info.duration_s) < 0.05  # audio as long as the video

        # Bad input in the page: an empty script shows the message and makes no video.
        page.locator("#script textarea").fill("   ")
        page.locator("#generate").click()
        page.get_by_text("the script is empty").first.wait_for(timeout=30_000)
        page.close()
