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


def test_a_fetch_names_the_licence_of_what_it_fetches(tmp_path: Path, monkeypatch) -> None:
    """The user learns a model's licence when it is fetched, before it is used: the
    opt-in object detector's weights are AGPL-3.0, unlike every other model (here the
    download itself is made to fail: only the announcement is looked at)."""
    from facefinder.models import npm
    from facefinder.models.fetch import ensure_models

    def offline(pin, dest):
        raise FetchError("no network in this test")

    monkeypatch.setattr(npm, "fetch", offline)
    said: list[str] = []
    with pytest.raises(FetchError):
        ensure_models(tmp_path / "models", ["objects-yolov8n"], say=said.append)
    assert said and "licence: AGPL-3.0" in said[0], said
