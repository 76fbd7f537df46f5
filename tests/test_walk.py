"""Tests for facefinder.walk: order, skipping, links, errors, names, exclusion."""

from __future__ import annotations

import os
import shutil
import sys
import unicodedata
from pathlib import Path

import pytest

from facefinder.walk import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, kind_of, printable, scan

try:  # pytest puts tests/ on sys.path while tests/ has no __init__.py
    from testdata import group_photo
except ImportError:  # tests/ imported as a package
    from tests.testdata import group_photo


@pytest.fixture(scope="module")
def photo() -> Path:
    return group_photo()


def put(root: Path, rel: str, source: Path | None = None) -> Path:
    """Create ``root/rel`` (a copy of a real photo, or empty) with its parent folders."""
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if source is None:
        target.write_bytes(b"")
    else:
        shutil.copyfile(source, target)
    return target


def walk(root: Path, **kwargs: object) -> tuple[list[str], list[tuple[str, str]]]:
    """(relative paths yielded, errors reported) for one scan."""
    errors: list[tuple[str, str]] = []
    rels = [rel for _, rel, _ in scan(root, on_error=lambda r, m: errors.append((r, m)), **kwargs)]
    return rels, errors


def symlinks_work(tmp_path: Path) -> bool:
    """Windows needs a privilege (or developer mode) to create symlinks."""
    try:
        os.symlink(tmp_path, tmp_path / "probe-link", target_is_directory=True)
    except (OSError, NotImplementedError):
        return False
    os.unlink(tmp_path / "probe-link")
    return True


def test_kinds_by_suffix() -> None:
    assert kind_of(Path("a/IMG_0001.JPG")) == "image"
    assert kind_of(Path("x.HeIc")) == "image"
    assert kind_of(Path("clip.MOV")) == "video"
    assert kind_of(Path("notes.txt")) == "other"
    assert kind_of(Path("no_suffix")) == "other"
    assert {".jpg", ".jpeg", ".png", ".webp", ".heic", ".tif", ".gif"} <= IMAGE_EXTENSIONS
    assert {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp"} == set(VIDEO_EXTENSIONS)
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)


def test_order_is_sorted_depth_first_and_deterministic(tmp_path: Path, photo: Path) -> None:
    # Created in a scrambled order on purpose: the walk must not depend on it.
    for rel in ["b.jpg", "c/z.mov", "A.png", "c/a/deep.JPG", "B2/y.txt", "a/x.jpg", "C1.gif"]:
        put(tmp_path, rel, photo)
    expected = ["a/x.jpg", "A.png", "b.jpg", "B2/y.txt", "c/a/deep.JPG", "c/z.mov", "C1.gif"]
    found = list(scan(tmp_path))
    assert [rel for _, rel, _ in found] == expected
    assert [rel for _, rel, _ in scan(tmp_path)] == expected  # same again
    kinds = {rel: kind for _, rel, kind in found}
    assert kinds["c/z.mov"] == "video" and kinds["B2/y.txt"] == "other"
    assert kinds["c/a/deep.JPG"] == "image"
    for path, rel, _ in found:
        assert path.is_absolute()
        assert path == tmp_path.joinpath(*rel.split("/"))
        assert path.is_file()


def test_relative_root_gives_absolute_paths(tmp_path: Path, photo: Path, monkeypatch) -> None:
    put(tmp_path, "photos/one.jpg", photo)
    monkeypatch.chdir(tmp_path)
    (path, rel, kind), = scan(Path("photos"))
    assert path.is_absolute() and path.is_file()
    assert (rel, kind) == ("one.jpg", "image")


def test_hidden_system_and_junk_are_skipped(tmp_path: Path, photo: Path) -> None:
    keep = ["keep.jpg", "album/keep2.jpg"]
    skip = [
        ".hidden/a.jpg", ".secret.jpg", "$RECYCLE.BIN/S-1-5/deleted.jpg",
        "System Volume Information/x.jpg", "album/@eaDir/keep2.jpg/SYNOPHOTO_THUMB_XL.jpg",
        "#recycle/old.jpg", ".Trashes/501/gone.jpg", ".Spotlight-V100/store.db",
        ".fseventsd/log", "lost+found/0001.jpg", "__MACOSX/album/._keep2.jpg",
        "Thumbs.db", "album/THUMBS.DB", "desktop.ini", ".DS_Store", "album/._keep2.jpg",
        "$recycle.bin/lower.jpg",
    ]
    for rel in keep + skip:
        put(tmp_path, rel, photo)
    rels, errors = walk(tmp_path)
    assert rels == ["album/keep2.jpg", "keep.jpg"]
    assert errors == []


def test_symlink_loops_terminate_and_each_folder_is_visited_once(
    tmp_path: Path, photo: Path
) -> None:
    if not symlinks_work(tmp_path):
        pytest.skip("cannot create symlinks here")
    root = tmp_path / "root"
    put(root, "a/pic.jpg", photo)
    put(root, "z/other.jpg", photo)
    put(tmp_path, "outside/far.jpg", photo)
    os.symlink(root, root / "a" / "loop", target_is_directory=True)  # a/loop -> root
    os.symlink(root / "a", root / "b", target_is_directory=True)  # b -> a (seen already)
    os.symlink(root / "a" / "loop", root / "z" / "deeper", target_is_directory=True)
    os.symlink(tmp_path / "outside", root / "m", target_is_directory=True)  # followed
    rels, errors = walk(root)
    assert rels == ["a/pic.jpg", "m/far.jpg", "z/other.jpg"]
    assert errors == []


def test_broken_symlink_is_reported(tmp_path: Path, photo: Path) -> None:
    if not symlinks_work(tmp_path):
        pytest.skip("cannot create symlinks here")
    put(tmp_path, "ok.jpg", photo)
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.jpg")
    os.symlink(tmp_path / "self", tmp_path / "self")  # a link to itself
    rels, errors = walk(tmp_path)
    assert rels == ["ok.jpg"]
    assert [rel for rel, _ in errors] == ["dangling.jpg", "self"]
    assert all(reason.startswith("broken link: ") for _, reason in errors)
    assert all("\n" not in reason for _, reason in errors)


def test_unreadable_folder_is_reported_and_walk_goes_on(tmp_path: Path, photo: Path) -> None:
    put(tmp_path, "a.jpg", photo)
    locked = put(tmp_path, "locked/inside.jpg", photo).parent
    put(tmp_path, "z.jpg", photo)
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK | os.X_OK):
            pytest.skip("this user can read any folder (root, or no POSIX permissions)")
        rels, errors = walk(tmp_path)
    finally:
        locked.chmod(0o755)
    assert rels == ["a.jpg", "z.jpg"]
    assert len(errors) == 1
    rel, reason = errors[0]
    assert rel == "locked"
    assert reason.startswith("cannot open folder: ") and "\n" not in reason


def test_missing_root_is_reported_not_raised(tmp_path: Path) -> None:
    rels, errors = walk(tmp_path / "no such folder")
    assert rels == []
    assert len(errors) == 1 and errors[0][1].startswith("cannot open folder: ")


def test_non_ascii_and_spaced_names(tmp_path: Path, photo: Path) -> None:
    names = [
        "Ünïcödé folder/фото 1.JPG",
        "日本 旅行/写真 (2).jpeg",
        unicodedata.normalize("NFD", "Café/crème brûlée.png"),
        "with  two  spaces /x y.jpg",
    ]
    for rel in names:
        put(tmp_path, rel, photo)
    found = list(scan(tmp_path))
    assert len(found) == len(names)
    for path, rel, kind in found:
        assert path.is_file() and kind == "image"
        # The file system may have re-normalised the name (macOS); compare loosely.
        assert unicodedata.normalize("NFC", rel) in {unicodedata.normalize("NFC", n) for n in names}
        assert printable(rel) == rel


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux allows arbitrary name bytes")
def test_undecodable_name_bytes_do_not_crash(tmp_path: Path, photo: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/bad-\xff\xfe-name.jpg"
    with open(raw, "wb") as handle:
        handle.write(photo.read_bytes())
    (path, rel, kind), = scan(tmp_path)
    assert kind == "image"
    assert path.read_bytes() == photo.read_bytes()  # surrogate escapes round-trip
    shown = printable(rel)
    shown.encode("utf-8")  # printable: no lone surrogates left
    assert shown.startswith("bad-") and "\ufffd" in shown


def test_exclude_skips_folders_by_path_and_by_link(tmp_path: Path, photo: Path) -> None:
    put(tmp_path, "keep/a.jpg", photo)
    put(tmp_path, "copies/a.jpg", photo)
    put(tmp_path, "stick/finder/b.jpg", photo)
    rels, _ = walk(tmp_path, exclude=[tmp_path / "copies", tmp_path / "stick" / "finder"])
    assert rels == ["keep/a.jpg"]
    if symlinks_work(tmp_path):
        os.symlink(tmp_path / "copies", tmp_path / "also-copies", target_is_directory=True)
        rels, _ = walk(tmp_path, exclude=[tmp_path / "copies", tmp_path / "stick"])
        assert rels == ["keep/a.jpg"]


def test_exclude_created_during_the_walk(tmp_path: Path, photo: Path) -> None:
    """The --copy destination may only appear once the first match is copied."""
    put(tmp_path, "a.jpg", photo)
    put(tmp_path, "zz/b.jpg", photo)
    destination = tmp_path / "matches"
    walker = scan(tmp_path, exclude=[destination])
    first = next(walker)
    assert first[1] == "a.jpg"
    put(destination, "a.jpg", first[0])
    assert [rel for _, rel, _ in walker] == ["zz/b.jpg"]


def test_scan_is_lazy(tmp_path: Path, photo: Path) -> None:
    put(tmp_path, "a/1.jpg", photo)
    put(tmp_path, "b/2.jpg", photo)
    walker = scan(tmp_path)
    assert next(walker)[1] == "a/1.jpg"
    shutil.rmtree(tmp_path / "b")  # not listed yet, so its removal is simply seen
    assert list(walker) == []
