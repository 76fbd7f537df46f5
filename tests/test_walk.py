"""Tests for facefinder.walk: order, skipping, links, errors, names, exclusion."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import unicodedata
from pathlib import Path

import pytest

from facefinder.cli import main
from facefinder.references import find_people
from facefinder.walk import (
    IMAGE_EXTENSIONS,
    OUTSIDE_LINK,
    VIDEO_EXTENSIONS,
    kind_of,
    printable,
    scan,
)

try:  # pytest puts tests/ on sys.path while tests/ has no __init__.py
    from conftest import copy_references, rerun_as_a_user, symlinks_work
    from testdata import group_photo
except ImportError:  # tests/ imported as a package
    from tests.conftest import copy_references, rerun_as_a_user, symlinks_work
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


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_named_like_a_photo_is_one_line_and_never_opened(tmp_path: Path,
                                                                photo: Path) -> None:
    """A FIFO (or a link to one) named like a photo or video would block its reader
    forever: it is named once, "not a regular file (a FIFO)", and not yielded; a FIFO
    with no photo's name is passed over quietly; the photos beside it are found."""
    shutil.copy(photo, tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "fifo.jpg")
    os.mkfifo(tmp_path / "clip.mp4")
    os.mkfifo(tmp_path / "pipe")
    os.symlink("fifo.jpg", tmp_path / "link.jpg")
    rels, errors = walk(tmp_path)
    assert rels == ["a.jpg"]
    assert errors == [(rel, "not a regular file (a FIFO): not read")
                      for rel in ("clip.mp4", "fifo.jpg", "link.jpg")]


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
    os.symlink(tmp_path / "outside", root / "m", target_is_directory=True)  # leads outside
    os.symlink(root, tmp_path / "outside" / "back", target_is_directory=True)  # and back
    rels, errors = walk(root)
    assert rels == ["a/pic.jpg", "z/other.jpg"]
    assert errors == [("m", OUTSIDE_LINK)]
    rels, errors = walk(root, follow_links=True)
    assert rels == ["a/pic.jpg", "m/far.jpg", "z/other.jpg"]
    assert errors == []


def test_links_that_lead_outside_are_reported_and_never_read(
    tmp_path: Path, photo: Path, monkeypatch
) -> None:
    if not symlinks_work(tmp_path):
        pytest.skip("cannot create symlinks here")
    root = tmp_path / "Photos"
    put(root, "album/in.jpg", photo)
    put(tmp_path, "elsewhere/deep/far.jpg", photo)
    put(tmp_path, "secret.jpg", photo)
    os.symlink(tmp_path / "elsewhere", root / "album" / "linked", target_is_directory=True)
    os.symlink(os.path.join("..", "..", "secret.jpg"), root / "album" / "relative.jpg")
    os.symlink(tmp_path / "elsewhere", root / "hop")  # a link to a link that leads out:
    os.symlink(root / "hop", root / "via-hop", target_is_directory=True)  # out as well
    os.symlink(tmp_path / "unplugged" / "x.jpg", root / "gone-outside.jpg")  # dangling
    listed: list[str] = []
    real_scandir = os.scandir

    def watched(path):
        listed.append(os.path.realpath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", watched)
    errors: list[tuple[str, str]] = []
    found = list(scan(root, on_error=lambda rel, reason: errors.append((rel, reason))))
    assert [rel for _, rel, _ in found] == ["album/in.jpg"]
    assert errors == [(rel, OUTSIDE_LINK) for rel in
                      ["album/linked", "album/relative.jpg", "gone-outside.jpg", "hop",
                       "via-hop"]]
    assert OUTSIDE_LINK.startswith("link to a place outside the folder searched")
    assert "--follow-links" in OUTSIDE_LINK and "\n" not in OUTSIDE_LINK
    real_root = os.path.realpath(root)
    assert all(p == real_root or p.startswith(real_root + os.sep) for p in listed)

    rels, errors = walk(root, follow_links=True)
    # hop and via-hop lead to the folder album/linked showed already: walked once.
    assert rels == ["album/in.jpg", "album/linked/deep/far.jpg", "album/relative.jpg"]
    assert [rel for rel, _ in errors] == ["gone-outside.jpg"]
    assert errors[0][1].startswith("broken link: ")


def test_a_link_to_the_whole_system_is_not_walked(tmp_path: Path, photo: Path) -> None:
    """What happened: a link to / took in 64,521 system images, /proc included."""
    if not symlinks_work(tmp_path):
        pytest.skip("cannot create symlinks here")
    put(tmp_path, "a.jpg", photo)
    os.symlink(os.path.abspath(os.sep), tmp_path / "everything", target_is_directory=True)
    errors: list[tuple[str, str]] = []
    first = list(itertools.islice(scan(tmp_path, on_error=lambda r, m: errors.append((r, m))),
                                  100))
    assert [rel for _, rel, _ in first] == ["a.jpg"]
    assert errors == [("everything", OUTSIDE_LINK)]


def test_links_that_stay_inside_are_followed(tmp_path: Path, photo: Path) -> None:
    if not symlinks_work(tmp_path):
        pytest.skip("cannot create symlinks here")
    real = tmp_path / "real"
    put(real, ".store/2019/kept.jpg", photo)  # hidden: reached only through the links
    put(real, ".store/one.jpg", photo)
    os.symlink(real / ".store" / "2019", real / "album", target_is_directory=True)
    os.symlink(os.path.join(".store", "one.jpg"), real / "best.jpg")
    os.symlink(os.path.join("..", "real", ".store", "one.jpg"), real / "roundabout.jpg")
    # The folder searched may itself be a link (a drive mounted elsewhere, a shortcut):
    # a link inside it to the real path of its contents is still inside.
    os.symlink(real, tmp_path / "shortcut", target_is_directory=True)
    for root in (real, tmp_path / "shortcut"):
        found = list(scan(root, on_error=lambda r, m: pytest.fail(f"{r}: {m}")))
        assert [rel for _, rel, _ in found] == ["album/kept.jpg", "best.jpg", "roundabout.jpg"]
        assert all(path == root.joinpath(*rel.split("/")) for path, rel, _ in found)


def test_reference_folder_follows_links_to_photos_kept_elsewhere(
    tmp_path: Path, photo: Path
) -> None:
    """The user builds reference/ by hand; linking a person's folder (or one photo) to
    where the photos already are is deliberate, so find_people walks it with
    ``follow_links=True``."""
    if not symlinks_work(tmp_path):
        pytest.skip("cannot create symlinks here")
    reference = tmp_path / "reference"
    put(reference, "Anna/own.jpg", photo)
    put(tmp_path, "Pictures/Ben/ben.jpg", photo)
    put(tmp_path, "Pictures/anna-best.jpg", photo)
    os.symlink(tmp_path / "Pictures" / "Ben", reference / "Ben", target_is_directory=True)
    os.symlink(tmp_path / "Pictures" / "anna-best.jpg", reference / "Anna" / "best.jpg")
    rels, errors = walk(reference, follow_links=True)
    assert rels == ["Anna/best.jpg", "Anna/own.jpg", "Ben/ben.jpg"]
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


def test_unreadable_folder_is_reported_and_walk_goes_on(tmp_path: Path, photo: Path,
                                                         request: pytest.FixtureRequest) -> None:
    put(tmp_path, "a.jpg", photo)
    locked = put(tmp_path, "locked/inside.jpg", photo).parent
    put(tmp_path, "z.jpg", photo)
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK | os.X_OK):  # root: run it again as a plain user
            locked.chmod(0o755)
            rerun_as_a_user(request)
            return
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


def test_find_people_follows_links_in_the_reference_folder(tmp_path: Path, photo: Path) -> None:
    if not symlinks_work(tmp_path):
        pytest.skip("cannot create symlinks here")
    reference = tmp_path / "reference"
    put(reference, "Anna/own.jpg", photo)
    put(tmp_path, "Pictures/Ben/ben.jpg", photo)
    os.symlink(tmp_path / "Pictures" / "Ben", reference / "Ben", target_is_directory=True)
    people, notes = find_people(reference)
    assert [(p.name, [rel for _, rel in p.photos]) for p in people] == [
        ("Anna", ["Anna/own.jpg"]), ("Ben", ["Ben/ben.jpg"])]
    assert notes == []


def test_search_does_not_read_photos_behind_a_link_that_leads_outside(
    celebrities: Path, models_dir: Path, tmp_path: Path
) -> None:
    """End to end: real photos of a reference person behind a link to another folder are
    neither read nor matched, the link is listed in the report, and --follow-links takes
    them in."""
    if not symlinks_work(tmp_path):
        pytest.skip("cannot create symlinks here")
    refs = copy_references(celebrities, tmp_path, ["madonna"], 2)
    val = sorted((celebrities / "val" / "madonna").glob("*.jpg"))
    put(tmp_path, "photos/inside.jpg", val[0])
    for n, source in enumerate(val[1:]):
        put(tmp_path, f"elsewhere/{n}.jpg", source)
    os.symlink(tmp_path / "elsewhere", tmp_path / "photos" / "linked",
               target_is_directory=True)
    common = [str(tmp_path / "photos"), "--reference", str(refs), "--no-index",
              "--models", str(models_dir), "--no-progress", "--jobs", "1"]
    assert main([*common, "--json", str(tmp_path / "default.json")]) == 0
    default = json.loads((tmp_path / "default.json").read_text(encoding="utf-8"))
    assert default["summary"]["files_scanned"] == 1
    assert [m["path"] for m in default["matches"]] == ["inside.jpg"]
    assert default["unreadable"] == [{"path": "linked", "reason": OUTSIDE_LINK}]
    assert main([*common, "--follow-links", "--json", str(tmp_path / "follow.json")]) == 0
    follow = json.loads((tmp_path / "follow.json").read_text(encoding="utf-8"))
    assert follow["summary"]["files_scanned"] == len(val) and follow["unreadable"] == []
    matched = [m["path"] for m in follow["matches"]]
    assert "inside.jpg" in matched and any(p.startswith("linked/") for p in matched)
