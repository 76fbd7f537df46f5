"""--prune forgets only files it has seen to be gone: never those of an unplugged drive, of
a subfolder linked to one, or of a folder it cannot read.

The index is built by the real command line over real photos, so the rows pruned (and the
contents, analyses and faces behind them) are the ones a user's run leaves.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, as_a_user, copy_references, symlinks_work

from facefinder import walk
from facefinder.api import prune
from facefinder.cli import main

PEOPLE = ("madonna", "ben_afflek")
# Where each of the first val photos goes in the album (one per path).
LAYOUT = ("a/IMG_000.jpg", "a/IMG_001.jpg", "drive/2019/IMG_002.jpg", "drive/IMG_003.jpg",
          "locked/IMG_004.jpg", "top.jpg")


@pytest.fixture
def indexed(celebrities: Path, models_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(photos folder, face index) after a real search of a small album with --index."""
    refs = copy_references(celebrities, tmp_path, PEOPLE, 2)
    photos = tmp_path / "photos"
    for rel, photo in zip(LAYOUT, sorted((celebrities / "val").glob("*/*.jpg")), strict=False):
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, photos / rel)
    index = tmp_path / "faces.sqlite"
    code = main([str(photos), "--reference", str(refs), "--index", str(index),
                 "--models", str(models_dir), "--no-progress", "--jobs", "1"])
    assert code == 0
    assert rows(index, photos) == set(LAYOUT)
    return photos, index


def rows(index: Path, photos: Path) -> set[str]:
    """The paths the index holds under ``photos`` (read with SQLite itself)."""
    conn = sqlite3.connect(index)
    try:
        found = conn.execute("SELECT r.path, p.rel FROM paths p JOIN roots r ON r.id = p.root")
        root = os.fsencode(os.path.abspath(photos.resolve()))
        return {bytes(rel).decode("utf-8", "surrogateescape")
                for path, rel in found if bytes(path) == root}
    finally:
        conn.close()


def contents(index: Path) -> int:
    conn = sqlite3.connect(index)
    try:
        return conn.execute("SELECT count(*) FROM contents").fetchone()[0]
    finally:
        conn.close()


def cli_prune(photos: Path, index: Path) -> int:
    return main([str(photos), "--prune", "--index", str(index)])


def unplug(photos: Path, folder: str, tmp_path: Path, *, mount_point: bool) -> Path:
    """Turn ``photos/folder`` into a link to a drive that is not plugged in: a link to a
    mount point left empty, or a dangling link. Returns where the files went."""
    away = tmp_path / "drive-contents"
    shutil.move(photos / folder, away)
    target = tmp_path / "media" / "drive"
    if mount_point:
        target.mkdir(parents=True)
    os.symlink(target, photos / folder, target_is_directory=True)
    return away


def test_deleted_files_and_folders_are_pruned(indexed, capsys) -> None:
    photos, index = indexed
    before = contents(index)
    (photos / "a" / "IMG_000.jpg").unlink()
    shutil.rmtree(photos / "drive")  # a whole folder deleted: its two files go too
    assert cli_prune(photos, index) == 0
    assert "3 paths" in capsys.readouterr().err
    assert rows(index, photos) == {"a/IMG_001.jpg", "locked/IMG_004.jpg", "top.jpg"}
    assert contents(index) == before - 3


def roots(index: Path) -> list[str]:
    """The folders the index says were searched."""
    conn = sqlite3.connect(index)
    try:
        return sorted(os.fsdecode(bytes(p)) for (p,) in conn.execute("SELECT path FROM roots"))
    finally:
        conn.close()


def test_a_subfolder_or_a_folder_around_the_one_searched_is_pruned_too(
        indexed, tmp_path, capsys) -> None:
    """``--prune PHOTOS/a`` prunes what is gone under a/ only; ``--prune`` of a folder
    around the one searched prunes it all; neither adds a folder never searched."""
    photos, index = indexed
    searched = roots(index)
    (photos / "a" / "IMG_000.jpg").unlink()
    (photos / "top.jpg").unlink()  # outside a/: not this prune's
    assert cli_prune(photos / "a", index) == 0
    assert "1 path" in capsys.readouterr().err
    assert rows(index, photos) == set(LAYOUT) - {"a/IMG_000.jpg"}
    assert roots(index) == searched
    assert cli_prune(tmp_path, index) == 0  # the folder around the photos
    assert rows(index, photos) == set(LAYOUT) - {"a/IMG_000.jpg", "top.jpg"}
    assert roots(index) == searched


def test_a_folder_around_an_unplugged_drive_prunes_nothing_of_it(indexed, tmp_path) -> None:
    """The drive's mount folder is gone (unplugged: /media/USER/LABEL disappears): a
    prune of the folder around it must not take its files for deleted."""
    photos, index = indexed
    before = contents(index)
    shutil.move(photos, tmp_path / "unplugged")
    assert cli_prune(tmp_path, index) == 0
    assert rows(index, photos) == set(LAYOUT)
    assert contents(index) == before


@pytest.mark.parametrize("mount_point", [False, True], ids=["dangling-link", "empty-mount"])
def test_files_under_a_link_to_an_unplugged_drive_are_kept(indexed, tmp_path,
                                                           mount_point) -> None:
    if not symlinks_work(tmp_path):
        pytest.skip("cannot create symlinks here")
    photos, index = indexed
    unplug(photos, "drive", tmp_path, mount_point=mount_point)
    (photos / "top.jpg").unlink()  # really deleted: still pruned in the same run
    assert cli_prune(photos, index) == 0
    assert rows(index, photos) == set(LAYOUT) - {"top.jpg"}


def run_unprivileged(code: str) -> subprocess.CompletedProcess[str]:
    """``python -c code`` (in the repository) without root's power to read any folder.

    As root, permission bits are ignored; ``setpriv`` removes CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the child's bounding set so they are gone after exec (it
    stays uid 0: the interpreter may live under /root, where "nobody" cannot start it).
    """
    return subprocess.run(as_a_user([sys.executable, "-c", code]), cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_files_under_an_unreadable_folder_are_kept(indexed) -> None:
    photos, index = indexed
    locked = photos / "locked"
    (photos / "a" / "IMG_000.jpg").unlink()  # really deleted: still pruned in the same run
    locked.chmod(0)
    try:
        child = run_unprivileged(
            "import os, sys\n"
            "from facefinder.cli import main\n"
            f"photos, index = {str(photos)!r}, {str(index)!r}\n"
            "try:\n"
            "    os.listdir(os.path.join(photos, 'locked'))\n"
            "except PermissionError:\n"
            "    pass\n"
            "else:\n"
            "    sys.exit(99)  # this user can read it after all\n"
            "sys.exit(main([photos, '--prune', '--index', index]))\n")
    finally:
        locked.chmod(0o755)
    if child.returncode == 99 or "Operation not permitted" in child.stderr:
        pytest.skip(f"could not make a folder unreadable here: {child.stderr.strip()}")
    assert child.returncode == 0, child.stderr
    assert rows(index, photos) == set(LAYOUT) - {"a/IMG_000.jpg"}


def test_empty_root_an_unplugged_mount_point_prunes_nothing(indexed, tmp_path) -> None:
    photos, index = indexed
    before = contents(index)
    away = tmp_path / "unplugged"
    away.mkdir()
    for entry in list(photos.iterdir()):
        shutil.move(entry, away / entry.name)
    assert cli_prune(photos, index) == 0
    assert rows(index, photos) == set(LAYOUT)
    assert contents(index) == before


def test_counts_removed_and_could_not_be_checked(indexed, tmp_path) -> None:
    if not symlinks_work(tmp_path):
        pytest.skip("cannot create symlinks here")
    photos, index = indexed
    before = contents(index)
    away = unplug(photos, "drive", tmp_path, mount_point=False)  # 2 files behind it
    (photos / "a" / "IMG_000.jpg").unlink()
    (photos / "top.jpg").unlink()
    assert prune(index, photos) == (2, 2, 2)  # 2 paths and their 2 contents; 2 unchecked
    assert prune(index, photos) == (0, 0, 2)  # nothing more to remove; still unchecked
    assert contents(index) == before - 2
    (photos / "drive").unlink()  # the drive is back
    shutil.move(away, photos / "drive")
    assert prune(index, photos) == (0, 0, 0)
    assert rows(index, photos) == set(LAYOUT) - {"a/IMG_000.jpg", "top.jpg"}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prune(index, empty) == (0, 0, 0)  # a folder never searched: nothing to do


# --------------------------------------------------------------------------- Presence


def test_presence_says_gone_only_when_it_saw_it_gone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "kept").mkdir(parents=True)
    (root / "kept" / "here.jpg").write_bytes(b"x")
    (root / "file.jpg").write_bytes(b"x")
    presence = walk.Presence(root)
    assert presence("kept/here.jpg") is True
    assert presence("kept/gone.jpg") is False  # its folder is there and readable
    assert presence("gone/deeper/x.jpg") is False  # the folder itself was deleted
    assert presence("gone.jpg") is False
    assert presence("file.jpg/x.jpg") is None  # a file where a folder was: not ENOENT
    if symlinks_work(tmp_path):
        os.symlink(tmp_path / "unplugged", root / "dangling", target_is_directory=True)
        (tmp_path / "mount").mkdir()
        os.symlink(tmp_path / "mount", root / "to-mount", target_is_directory=True)
        assert presence("dangling/x.jpg") is None
        assert presence("dangling/2019/x.jpg") is None
        assert presence("to-mount/2019/x.jpg") is None  # the link's target is empty
        (tmp_path / "mount" / "2019" / "2020").mkdir(parents=True)
        assert walk.Presence(root)("to-mount/2019/x.jpg") is False  # a real folder below
        os.symlink(tmp_path / "nowhere.jpg", root / "link.jpg")
        assert presence("link.jpg") is True  # the name is there (the link may come back)


def test_presence_under_an_empty_folder_is_unknown_until_the_folder_goes(
    tmp_path: Path,
) -> None:
    """A drive mounted below the root, unplugged, leaves an empty folder: its files are
    kept. A folder emptied by hand is the same to look at; deleting it settles it."""
    root = tmp_path / "root"
    (root / "mnt").mkdir(parents=True)
    (root / "other.jpg").write_bytes(b"x")
    assert walk.Presence(root)("mnt/2019/x.jpg") is None
    assert walk.Presence(root)("mnt/x.jpg") is None
    (root / "mnt").rmdir()
    assert walk.Presence(root)("mnt/2019/x.jpg") is False


def test_presence_of_an_empty_or_missing_root_is_unknown(tmp_path: Path) -> None:
    assert walk.Presence(tmp_path)("a/b.jpg") is None  # empty: an unplugged mount point
    assert walk.Presence(tmp_path / "missing")("b.jpg") is None
