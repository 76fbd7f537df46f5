"""The real-browser chain works: Chromium from the system, Playwright, the fixtures.

The review page is served on 127.0.0.1 and the HTML report is opened as a file, so both
ways of loading a page are checked here on tiny pages of their own.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from browser import serve_directory
from PIL import Image

CLICK_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>click test</title>
<link rel="icon" href="data:,"></head>
<body>
<p id="status">not clicked</p>
<button id="go" onclick="document.getElementById('status').textContent = 'clicked ✓'">
Go</button>
</body></html>
"""


def test_served_page_button_click(page, console_errors, screenshot, tmp_path: Path):
    (tmp_path / "index.html").write_text(CLICK_PAGE, encoding="utf-8")
    with serve_directory(tmp_path) as url:
        page.goto(url)
        assert page.title() == "click test"
        assert page.text_content("#status") == "not clicked"
        page.click("#go")
        page.wait_for_function(
            "document.getElementById('status').textContent === 'clicked ✓'")
        shot = screenshot(page, "browser-smoke-click")
    assert shot.stat().st_size > 0
    assert not console_errors, console_errors


def test_file_page_data_uri_image(page, console_errors, screenshot, tmp_path: Path):
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(picture, "PNG")
    data_uri = "data:image/png;base64," + base64.b64encode(picture.getvalue()).decode()
    report = tmp_path / "report Família.html"  # a space and a non-ASCII letter in the URL
    report.write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>report'
                      f'</title></head><body><img id="face" src="{data_uri}" alt="face">'
                      f"</body></html>", encoding="utf-8")
    page.goto(report.as_uri())
    page.wait_for_function("document.getElementById('face').complete")
    size = page.eval_on_selector("#face", "img => [img.naturalWidth, img.naturalHeight]")
    assert size == [64, 48]
    screenshot(page, "browser-smoke-file")
    assert not console_errors, console_errors


def test_console_errors_are_collected(page, console_errors, tmp_path: Path):
    """The collector is not blind: a logged error and an uncaught exception both land."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><script>console.error('logged boom');</script>"
                      "<script>throw new Error('uncaught bang');</script>", encoding="utf-8")
    page.goto(broken.as_uri())
    page.wait_for_timeout(50)  # events arrive asynchronously after the load
    text = "\n".join(console_errors)
    assert "logged boom" in text and "uncaught bang" in text, console_errors


def test_asyncio_run_after_the_browser_started():
    """A test without the browser may use asyncio.run() while the session's browser is open
    (Playwright's sync API marks its loop as running in the main thread)."""
    import asyncio

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert asyncio.run(answer()) == 42


def test_page_after_asyncio(page):
    """...and the browser still works after it."""
    page.goto("data:text/html,<p id=p>still here</p>")
    assert page.text_content("#p") == "still here"
