"""Playwright drives Debian's Chromium headless, without downloading a browser."""

import pytest

pytestmark = pytest.mark.browser


def test_chromium_renders_a_page_and_runs_javascript(chromium_browser):
    page = chromium_browser.new_page()
    try:
        page.set_content("<title>t</title><button id=b onclick=\"this.textContent='done'\">go</button>")
        page.click("#b")
        assert page.text_content("#b") == "done"
        assert "Chrome" in page.evaluate("navigator.userAgent")
    finally:
        page.close()
