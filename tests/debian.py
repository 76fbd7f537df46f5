"""Tools the tests need from Debian's packages (Chromium, ExifTool): located, or installed.

A tool is looked for first; with none, as root on Debian or Ubuntu, its package is
installed with apt-get, once, under a lock per package shared by parallel test sessions
(a session that waited finds it installed). Anywhere else :class:`PackageUnavailable`
carries a one-line reason, which the tests turn into a skip that says how to install it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

APT_GET = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-q"]


class PackageUnavailable(Exception):
    """The tool cannot be had here; the message is a one-line reason for pytest.skip."""


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _debian_like() -> bool:
    try:
        release = Path("/etc/os-release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    fields = dict(line.split("=", 1) for line in release.splitlines() if "=" in line)
    ids = (fields.get("ID", "") + " " + fields.get("ID_LIKE", "")).replace('"', "").split()
    return "debian" in ids or "ubuntu" in ids


def why_no_install() -> str | None:
    """Why this machine cannot install a Debian package itself, or None if it can."""
    if not sys.platform.startswith("linux") or not _debian_like():
        return "this is not Debian or Ubuntu"
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if not is_root():
        return "not running as root, so apt-get cannot install it"
    return None


@contextlib.contextmanager
def _install_lock(package: str) -> Iterator[None]:
    """Held by one test session at a time (the others wait, then find it installed)."""
    import fcntl

    with open(Path(tempfile.gettempdir()) / f"facefinder-{package}-install.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install(package: str, find: Callable[[], str | None], *, how_to: str,
            say: Callable[[str], None] = print) -> str:
    """The tool ``find`` locates, installing Debian's ``package`` first if need be.

    ``how_to`` (one line: how a user installs it) ends every reason given.
    """
    found = find()
    if found:
        return found
    reason = why_no_install()
    if reason:
        raise PackageUnavailable(f"no {package} found and {reason}: {how_to}")
    with _install_lock(package):
        found = find()  # another session may have installed it while we waited
        if found:
            return found
        log_path = Path(tempfile.gettempdir()) / f"facefinder-{package}-install.log"
        say(f"tests: installing Debian's {package} as root (apt-get update && apt-get "
            f"install -y --no-install-recommends {package}; log: {log_path})")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        started = time.monotonic()
        with open(log_path, "w", encoding="utf-8") as log:
            for command in ([*APT_GET, "update"],
                            [*APT_GET, "install", "-y", "--no-install-recommends", package]):
                log.write(f"$ {' '.join(command)}\n")
                log.flush()
                done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, env=env, timeout=1800)
                if done.returncode:
                    raise PackageUnavailable(
                        f"`{' '.join(command)}` failed (exit {done.returncode}, see "
                        f"{log_path}): {how_to}")
        found = find()
        if found is None:
            raise PackageUnavailable(f"apt-get installed {package} but it was not found: "
                                     f"{how_to}")
        say(f"tests: installed {found} in {time.monotonic() - started:.0f} s")
        return found
