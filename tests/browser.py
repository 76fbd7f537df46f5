"""Real-browser tests: find (or install) Debian's Chromium and drive it with Playwright.

The pages under test (the review page, the HTML report) are checked in headless Chromium
from the system's packages, driven by Playwright for Python pointed at that binary
(``executable_path=``): Playwright's own browser download is never used.

Where Chromium is looked for, in order: ``$FACEFINDER_CHROMIUM``; ``chromium``,
``chromium-browser``, ``google-chrome`` on PATH; ``/usr/bin/chromium``. With none of
them, as root on Debian or Ubuntu, Debian's ``chromium`` package is installed with
apt-get (once, under a lock shared by parallel test sessions); otherwise the browser
tests are skipped with a one-line reason saying how to install it.

Why Playwright rather than Selenium (measured on a 2-core Debian 12 machine): Selenium
is smaller in site-packages (45 MB against 168 MB, most of it the Node.js driver
Playwright ships in its wheel) but needs a matching chromedriver as well (Debian's
``chromium-driver``, one more apt package and version to keep in step, or a download by
Selenium Manager, which fails on a closed network); Playwright talks to Chromium itself,
waits for elements on its own (no sleeps, fewer flaky tests) and reports console
messages and page errors as events.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from debian import PackageUnavailable, install, is_root

ENV_VAR = "FACEFINDER_CHROMIUM"
ON_PATH = ("chromium", "chromium-browser", "google-chrome")
FIXED = ("/usr/bin/chromium",)
HOW_TO_INSTALL = (f"install Chromium (Debian/Ubuntu: `apt-get install chromium`) or set "
                  f"{ENV_VAR} to a Chromium or Chrome binary")

# Chromium's own background traffic (updates, sync, Google look-ups) is refused on a closed
# network, many connections at a time; Playwright already passes most of these, repeated
# here so a change in its defaults cannot bring them back.
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run", "--disable-gpu"]


class BrowserUnavailable(PackageUnavailable):
    """No browser can be had here; the message is a one-line reason for pytest.skip."""


def find_chromium() -> str | None:
    """The Chromium (or Chrome) binary to use, or None."""
    chosen = os.environ.get(ENV_VAR, "").strip()
    if chosen:
        found = shutil.which(chosen)
        if found is None:
            raise BrowserUnavailable(f"{ENV_VAR}={chosen} is not an executable file")
        return found
    for name in ON_PATH:
        found = shutil.which(name)
        if found:
            return found
    for path in FIXED:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def ensure_chromium(say: Callable[[str], None] = print) -> str:
    """A Chromium binary, installing Debian's package if need be; else BrowserUnavailable."""
    try:
        return install("chromium", find_chromium, how_to=HOW_TO_INSTALL, say=say)
    except PackageUnavailable as error:
        raise BrowserUnavailable(str(error)) from None


def chromium_version(binary: str) -> str:
    """``Chromium 120.0.6099.224 built on Debian 12.4`` or similar ("" if it won't say)."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def launch(playwright, binary: str):
    """Headless Chromium at ``binary`` under Playwright.

    The sandbox is kept where it works: as root Chromium refuses to start with it, and in
    some containers an ordinary user cannot create it either, so then (only then) it runs
    with ``--no-sandbox``.
    """
    options = {"executable_path": binary, "headless": True, "args": CHROMIUM_ARGS}
    if is_root():
        return playwright.chromium.launch(**options, chromium_sandbox=False)
    try:
        return playwright.chromium.launch(**options, chromium_sandbox=True)
    except Exception as error:  # Playwright raises its own Error with Chromium's output
        if "sandbox" not in str(error).lower():
            raise
        return playwright.chromium.launch(**options, chromium_sandbox=False)


# A small local web server, for pages that are files or strings.


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serve_directory(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) from a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def serve_asgi(app, startup_timeout: float = 20.0) -> Iterator[str]:
    """Run the ASGI ``app`` (Starlette, ...) under uvicorn on 127.0.0.1 (a free port) in a
    thread; yield its base URL, and stop it afterwards."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            lifespan="auto")
    server = uvicorn.Server(config)  # off the main thread it installs no signal handlers
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
