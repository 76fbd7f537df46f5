"""--copy: structure kept, nothing overwritten, originals untouched, failures contained."""

from __future__ import annotations

import builtins
import errno
import os
import stat
from pathlib import Path

import pytest
from conftest import rerun_as_a_user

from facefinder import copying
from facefinder.copying import CopySummary, copy_matches, safe_component
from facefinder.records import Match
from facefinder.walk import COPIES_NOTE, scan

BOX = (1, 2, 3, 4)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def m(rel: str, person: str) -> Match:
    return Match(rel=rel, person=person, distance=0.4, box=BOX)


def make_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        # An old, distinctive mtime so "preserved" cannot pass by accident.
        os.utime(path, ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def files_under(root: Path) -> list[str]:
    """The files under ``root``, the finder's note on its copies folder aside."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.name != COPIES_NOTE)


def partials(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if ".partial-" in p.name]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    make_tree(
        root,
        {
            "2019/beach/IMG_0001.jpg": os.urandom(3000),
            "2020/IMG_0001.jpg": os.urandom(5000),
            "top.png": os.urandom(100),
            "empty.jpg": b"",
        },
    )
    return root


def test_copies_keep_folder_structure_bytes_and_mtime(photos: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    matches = [m("2019/beach/IMG_0001.jpg", "Anna"), m("2020/IMG_0001.jpg", "Anna")]
    summary = copy_matches(matches, photos, dest)
    assert summary == CopySummary(copied=2, already_there=0, bytes_copied=8000)
    assert files_under(dest) == ["Anna/2019/beach/IMG_0001.jpg", "Anna/2020/IMG_0001.jpg"]
    for rel in ("2019/beach/IMG_0001.jpg", "2020/IMG_0001.jpg"):
        original, copy = photos / rel, dest / "Anna" / rel
        assert copy.read_bytes() == original.read_bytes()
        assert abs(copy.stat().st_mtime - original.stat().st_mtime) < 0.01
    assert partials(dest) == []


def test_two_people_get_two_independent_copies(photos: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    summary = copy_matches([m("top.png", "Anna"), m("top.png", "Ben")], photos, dest)
    assert summary.copied == 2
    a, b = dest / "Anna" / "top.png", dest / "Ben" / "top.png"
    assert a.read_bytes() == b.read_bytes() == (photos / "top.png").read_bytes()
    assert not os.path.samefile(a, b)  # editing one copy must not change the other
    assert not os.path.samefile(a, photos / "top.png")


def test_duplicate_matches_are_copied_once(photos: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    summary = copy_matches([m("top.png", "Anna")] * 3, photos, dest)
    assert (summary.copied, summary.already_there) == (1, 0)
    assert files_under(dest) == ["Anna/top.png"]


def test_rerun_copies_nothing_new(photos: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    matches = [
        m("2019/beach/IMG_0001.jpg", "Anna"),
        m("2019/beach/IMG_0001.jpg", "Ben"),
        m("top.png", "Ben"),
        m("empty.jpg", "Ben"),
    ]
    first = copy_matches(matches, photos, dest)
    assert first.copied == 4
    before = snapshot(dest)
    second = copy_matches(matches, photos, dest)
    assert (second.copied, second.already_there, second.renamed, second.failed) == (0, 4, [], [])
    assert second.bytes_copied == 0
    assert snapshot(dest) == before


def test_same_name_different_content_keeps_both(photos: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    squatter = dest / "Anna" / "2020" / "IMG_0001.jpg"
    squatter.parent.mkdir(parents=True)
    squatter.write_bytes(b"somebody else's photo")
    events: list[str] = []

    summary = copy_matches([m("2020/IMG_0001.jpg", "Anna")], photos, dest, on_event=events.append)

    assert summary.copied == 1
    assert summary.renamed == ["Anna/2020/IMG_0001 (2).jpg"]
    assert squatter.read_bytes() == b"somebody else's photo"
    renamed = dest / "Anna" / "2020" / "IMG_0001 (2).jpg"
    assert renamed.read_bytes() == (photos / "2020" / "IMG_0001.jpg").read_bytes()
    assert len(events) == 1 and "\n" not in events[0]
    assert "IMG_0001 (2).jpg" in events[0]

    # Re-run: the renamed copy is recognised, nothing new is written.
    again = copy_matches([m("2020/IMG_0001.jpg", "Anna")], photos, dest, on_event=events.append)
    assert (again.copied, again.already_there, again.renamed) == (0, 1, [])
    assert len(events) == 1
    assert files_under(dest) == ["Anna/2020/IMG_0001 (2).jpg", "Anna/2020/IMG_0001.jpg"]


def test_third_name_when_second_also_taken(photos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "out" / "Ben"
    folder.mkdir(parents=True)
    (folder / "top.png").write_bytes(b"one")
    (folder / "top (2).png").write_bytes(b"two")
    summary = copy_matches([m("top.png", "Ben")], photos, tmp_path / "out")
    assert summary.renamed == ["Ben/top (3).png"]
    assert (folder / "top.png").read_bytes() == b"one"
    assert (folder / "top (2).png").read_bytes() == b"two"


def test_originals_untouched_and_only_opened_for_reading(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(photos)
    source_root = photos.resolve()
    calls: list[tuple[str, object]] = []

    def under_source(path: object) -> bool:
        if isinstance(path, int):
            return False
        return Path(os.fspath(path)).resolve().is_relative_to(source_root)  # type: ignore[arg-type]

    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if under_source(file):
            calls.append(("open", mode))
        return real_open(file, mode, *args, **kwargs)

    def spy_os_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if under_source(path):
            calls.append(("os.open", flags))
        return real_os_open(path, flags, *args, **kwargs)

    # Make the whole source tree read-only too (meaningful when not running as root).
    for path in [photos, *photos.rglob("*")]:
        path.chmod(stat.S_IREAD | (stat.S_IEXEC if path.is_dir() else 0))
    try:
        monkeypatch.setattr(builtins, "open", spy_open)
        monkeypatch.setattr(os, "open", spy_os_open)
        for name in ("utime", "chmod", "rename", "replace", "unlink", "remove", "link", "truncate"):
            real = getattr(os, name)

            def spy(*args, _real=real, _name=name, **kwargs):  # type: ignore[no-untyped-def]
                assert not any(under_source(a) for a in args if isinstance(a, (str, Path))), (
                    f"os.{_name} called on a source path: {args}"
                )
                return _real(*args, **kwargs)

            monkeypatch.setattr(os, name, spy)
        matches = [m(rel, p) for rel in before for p in ("Anna", "Ben")]
        summary = copy_matches(matches, photos, tmp_path / "out")
        copy_matches(matches, photos, tmp_path / "out")  # re-run hashes the sources again
    finally:
        monkeypatch.undo()
        for path in [photos, *photos.rglob("*")]:
            path.chmod(stat.S_IRWXU)

    assert summary.failed == []
    assert summary.copied == 2 * len(before)
    assert calls, "spy saw no source opens"
    for kind, mode in calls:
        if kind == "open":
            assert set(str(mode)) <= {"r", "b", "t"}, mode
        else:
            assert int(mode) & WRITE_FLAGS == 0, mode  # type: ignore[call-overload]
    after = snapshot(photos)
    assert {k: v[:2] for k, v in after.items()} == {k: v[:2] for k, v in before.items()}


def test_read_only_destination_fails_without_crash(photos: Path, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    dest.chmod(stat.S_IREAD | stat.S_IEXEC)
    try:
        if os.access(dest, os.W_OK):  # root: run it again as a plain user
            dest.chmod(stat.S_IRWXU)
            rerun_as_a_user(request)
            return
        events: list[str] = []
        summary = copy_matches(
            [m("top.png", "Anna"), m("2020/IMG_0001.jpg", "Ben")],
            photos,
            dest,
            on_event=events.append,
        )
    finally:
        dest.chmod(stat.S_IRWXU)
    assert summary.copied == 0
    assert [label for label, _ in summary.failed] == ["Anna/top.png", "Ben/2020/IMG_0001.jpg"]
    assert all(reason and "\n" not in reason for _, reason in summary.failed)
    assert len(events) == 2
    assert files_under(dest) == []


def test_unwritable_destination_fails_without_crash(photos: Path, tmp_path: Path) -> None:
    """Same containment, but portable even as root: DEST is below a regular file."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"x")
    summary = copy_matches([m("top.png", "Anna"), m("empty.jpg", "Anna")], photos, blocker / "out")
    assert summary.copied == 0
    assert len(summary.failed) == 2
    assert blocker.read_bytes() == b"x"


def test_vanished_source_is_recorded_and_others_go_on(photos: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    matches = [m("gone.jpg", "Anna"), m("top.png", "Anna")]
    summary = copy_matches(matches, photos, dest)
    assert summary.copied == 1
    assert [label for label, _ in summary.failed] == ["Anna/gone.jpg"]
    reason = summary.failed[0][1]
    assert reason and "\n" not in reason  # e.g. "No such file or directory"
    assert files_under(dest) == ["Anna/top.png"]


def test_disk_full_removes_temp_file_and_goes_on(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "out"
    real_fsync = os.fsync
    calls = {"n": 0}

    def full_once(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_once)
    summary = copy_matches([m("top.png", "Anna"), m("top.png", "Ben")], photos, dest)
    assert summary.failed == [("Anna/top.png", "No space left on device")]
    assert summary.copied == 1
    assert files_under(dest) == ["Ben/top.png"]
    assert partials(dest) == []


def test_verification_mismatch_is_a_failure(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copying, "sha256_file", lambda path: "0" * 64)
    summary = copy_matches([m("top.png", "Anna")], photos, tmp_path / "out")
    assert summary.copied == 0
    assert summary.failed[0][1].startswith("verification failed")
    assert files_under(tmp_path / "out") == []


@pytest.mark.parametrize("same", [True, False])
def test_target_appearing_mid_copy_is_not_overwritten(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same: bool
) -> None:
    dest = tmp_path / "out"
    original = (photos / "top.png").read_bytes()
    intruder = original if same else b"written by someone else meanwhile"
    real = copying._write_verified_temp

    def racing(source, folder, name):  # type: ignore[no-untyped-def]
        tmp = real(source, folder, name)
        (folder / name).write_bytes(intruder)
        return tmp

    monkeypatch.setattr(copying, "_write_verified_temp", racing)
    summary = copy_matches([m("top.png", "Anna")], photos, dest)
    assert (dest / "Anna" / "top.png").read_bytes() == intruder
    assert partials(dest) == []
    if same:
        assert (summary.copied, summary.already_there) == (0, 1)
        assert files_under(dest) == ["Anna/top.png"]
    else:
        assert summary.renamed == ["Anna/top (2).png"]
        assert (dest / "Anna" / "top (2).png").read_bytes() == original


def test_works_without_hard_links_and_still_never_overwrites(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAT/exFAT sticks cannot hard-link; the fallback must be just as careful."""

    def no_links(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    dest = tmp_path / "out"
    (dest / "Anna").mkdir(parents=True)
    (dest / "Anna" / "top.png").write_bytes(b"different")
    summary = copy_matches([m("top.png", "Anna"), m("empty.jpg", "Anna")], photos, dest)
    assert summary.copied == 2 and summary.renamed == ["Anna/top (2).png"]
    assert (dest / "Anna" / "top.png").read_bytes() == b"different"
    assert (dest / "Anna" / "top (2).png").read_bytes() == (photos / "top.png").read_bytes()
    assert partials(dest) == []

    tmp = dest / "tmpfile"
    tmp.write_bytes(b"new")
    assert copying._place_without_links(tmp, dest / "Anna" / "top.png") is False
    assert (dest / "Anna" / "top.png").read_bytes() == b"different"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("IMG_0001.jpg", "IMG_0001.jpg"),
        ("Zoë & José", "Zoë & José"),
        ('a<b>c:d"e|f?g*h\\i.jpg', "a_b_c_d_e_f_g_h_i.jpg"),
        ("tab\there\x7f", "tab_here_"),
        ("Mr. ", "Mr_"),
        ("trailing...", "trailing_"),
        ("..", "_"),
        ("", "_"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("Lpt1.tar.gz", "_Lpt1.tar.gz"),
        ("COM¹", "_COM¹"),
        ("CONSOLE.jpg", "CONSOLE.jpg"),
        ("nul ", "nul_"),
        ("nul .txt", "_nul .txt"),
        ("bad\udcffbyte.jpg", "bad_byte.jpg"),
    ],
)
def test_safe_component(name: str, expected: str) -> None:
    assert safe_component(name) == expected
    assert safe_component(expected) == expected  # idempotent: re-runs hit the same names


def test_unsafe_names_are_mapped_in_destination(tmp_path: Path) -> None:
    if os.name == "nt":
        pytest.skip("these names cannot exist on Windows")
    photos = tmp_path / "photos"
    make_tree(photos, {"Trip: Paris?/CON.jpg": b"abc", "dots./x.jpg": b"def"})
    dest = tmp_path / "out"
    summary = copy_matches(
        [m("Trip: Paris?/CON.jpg", "Dr. Who"), m("dots./x.jpg", "aux")], photos, dest
    )
    assert summary.failed == []
    assert files_under(dest) == ["Dr. Who/Trip_ Paris_/_CON.jpg", "_aux/dots_/x.jpg"]


def test_paths_escaping_photos_root_are_refused(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.jpg").write_bytes(b"outside")
    summary = copy_matches([m("../secret.jpg", "Anna")], photos, tmp_path / "out")
    assert summary.copied == 0 and len(summary.failed) == 1
    assert "unsafe" in summary.failed[0][1]


@pytest.mark.skipif(os.name == "nt", reason="symbolic links need rights on Windows")
@pytest.mark.parametrize("where", ["Anna", "Anna/2019", "Anna/2019/beach"])
def test_a_link_inside_the_copies_folder_is_never_written_through(
        photos: Path, tmp_path: Path, where: str) -> None:
    """A folder link planted in DIR (pointing at the photos themselves, or at a backup)
    must not carry copies there: that copy fails with one line, the others are made."""
    dest, elsewhere = tmp_path / "out", tmp_path / "backup"
    elsewhere.mkdir()
    (elsewhere / "IMG_0001.jpg").write_bytes(b"the backup's own file")
    link = dest / where
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere, target_is_directory=True)
    before, backup = snapshot(photos), snapshot(elsewhere)
    events: list[str] = []
    summary = copy_matches([m("2019/beach/IMG_0001.jpg", "Anna"), m("top.png", "Ben")],
                           photos, dest, on_event=events.append)
    assert summary.copied == 1 and files_under(dest / "Ben") == ["top.png"]
    assert len(summary.failed) == 1 and "is a link" in summary.failed[0][1]
    assert len(events) == 1 and "\n" not in events[0]
    assert snapshot(elsewhere) == backup and snapshot(photos) == before


@pytest.mark.skipif(os.name == "nt", reason="symbolic links need rights on Windows")
def test_a_link_to_the_original_under_the_copy_name_is_not_a_copy(
        photos: Path, tmp_path: Path) -> None:
    """A link named like the copy, pointing at the original, is not the copy (its
    sidecar or --xmp embed would then land on the original): the copy takes "(2)"."""
    folder = tmp_path / "out" / "Anna"
    folder.mkdir(parents=True)
    (folder / "top.png").symlink_to(photos / "top.png")
    summary = copy_matches([m("top.png", "Anna")], photos, tmp_path / "out")
    assert summary.renamed == ["Anna/top (2).png"]
    assert (folder / "top (2).png").read_bytes() == (photos / "top.png").read_bytes()
    assert not (folder / "top (2).png").is_symlink()


def test_a_copy_kept_under_a_second_name_is_found_when_the_first_is_free(
        photos: Path, tmp_path: Path) -> None:
    """The user's own file held the name, so the copy became "(2)"; once they move
    their file away, a re-run finds the copy and makes no second one."""
    dest = tmp_path / "out"
    squatter = dest / "Anna" / "top.png"
    squatter.parent.mkdir(parents=True)
    squatter.write_bytes(b"the user's own file")
    assert copy_matches([m("top.png", "Anna")], photos, dest).renamed == ["Anna/top (2).png"]
    squatter.unlink()
    again = copy_matches([m("top.png", "Anna")], photos, dest)
    assert (again.copied, again.already_there) == (0, 1)
    assert files_under(dest) == ["Anna/top (2).png"]


@pytest.mark.skipif(os.name == "nt", reason="Linux file names of 255 bytes")
@pytest.mark.parametrize("name", ["x" * 251 + ".jpg", "con." + "y" * 247 + ".jpg",
                                  "é" * 125 + ".jpg"])
def test_a_name_as_long_as_the_disk_allows_is_copied_with_room_for_its_sidecar(
        tmp_path: Path, name: str) -> None:
    photos, dest = tmp_path / "photos", tmp_path / "out"
    make_tree(photos, {name: b"long"})
    summary = copy_matches([m(name, "Anna")], photos, dest)
    assert summary.failed == [] and summary.copied == 1
    [copy] = files_under(dest)
    final = copy.split("/")[-1]
    assert final.endswith(".jpg") and len((final + ".xmp").encode()) <= 255
    assert safe_component(final, room=4) == final  # the same name on every re-run
    assert copy_matches([m(name, "Anna")], photos, dest).already_there == 1


@pytest.mark.skipif(os.name == "nt", reason="Linux file names of 255 bytes")
def test_a_long_name_renamed_keeps_room_for_its_number_and_sidecar(tmp_path: Path) -> None:
    name = "x" * 251 + ".jpg"
    photos, dest = tmp_path / "photos", tmp_path / "out"
    make_tree(photos, {name: b"long"})
    (dest / "Anna").mkdir(parents=True)
    (dest / "Anna" / safe_component(name, room=4)).write_bytes(b"the user's own file")
    summary = copy_matches([m(name, "Anna")], photos, dest)
    assert summary.failed == [] and len(summary.renamed) == 1
    final = summary.renamed[0].split("/")[-1]
    assert final.endswith(" (2).jpg") and len((final + ".xmp").encode()) <= 255
    assert copy_matches([m(name, "Anna")], photos, dest).already_there == 1


@pytest.mark.parametrize("name", ["a" * 250 + "." + "b" * 200, "a" * 249 + " ." + "b" * 200])
def test_a_shortened_name_never_ends_in_a_dot_or_a_space(name: str) -> None:
    short = safe_component(name, room=4)
    assert len(short.encode()) <= 251 and not short.endswith((".", " "))
    assert safe_component(short, room=4) == short


def test_the_copies_folder_is_left_out_of_later_searches_around_it(
        photos: Path, tmp_path: Path) -> None:
    """Copies made inside the photos' folder are not found again by a later search of
    it (each person would be counted twice); a folder that held the user's own files
    before is not marked, and so still searched."""
    dest = photos / "found"
    copy_matches([m("top.png", "Anna")], photos, dest)
    assert (dest / COPIES_NOTE).is_file()
    assert [rel for _, rel, _ in scan(photos)] == sorted(
        ["2019/beach/IMG_0001.jpg", "2020/IMG_0001.jpg", "empty.jpg", "top.png"],
        key=str.casefold)
    assert [rel for _, rel, _ in scan(dest)] == ["Anna/top.png"]  # named: searched
    mine = photos / "albums"
    (mine / "2018").mkdir(parents=True)
    (mine / "2018" / "a.jpg").write_bytes(b"mine")
    copy_matches([m("top.png", "Ben")], photos, mine)
    assert not (mine / COPIES_NOTE).exists()
    assert "albums/Ben/top.png" in [rel for _, rel, _ in scan(photos)]
