"""What an earlier fetch left behind, and what a download must be, for PyPI and npm alike
(``pypi.kept_copy`` / ``pypi.check_pinned``, used by both fetchers)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from facefinder.pypi import FetchError, check_pinned, kept_copy

DATA = b"the pinned bytes"
PIN = hashlib.sha256(DATA).hexdigest()


def test_a_good_copy_is_kept_and_a_damaged_one_removed(tmp_path: Path) -> None:
    good, damaged = tmp_path / "good.tgz", tmp_path / "damaged.tgz"
    good.write_bytes(DATA)
    damaged.write_bytes(DATA[:-1])
    assert kept_copy(good, PIN) and good.read_bytes() == DATA
    assert not kept_copy(damaged, PIN) and not damaged.exists()
    assert not kept_copy(tmp_path / "absent.tgz", PIN)


def test_a_download_with_another_hash_is_refused(tmp_path: Path) -> None:
    download = tmp_path / ".download-1"
    download.write_bytes(DATA)
    check_pinned(download, "x.tgz", PIN)
    download.write_bytes(DATA + b"!")
    with pytest.raises(FetchError, match=r"x\.tgz has sha256 \w+, expected \w+; refusing"):
        check_pinned(download, "x.tgz", PIN)
