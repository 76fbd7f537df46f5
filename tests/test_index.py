"""The face index: files are read once, recognised after a copy, re-read when changed, and
a run killed with SIGKILL resumes to exactly the results of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, copy_references
from PIL import Image

from facefinder.cli import EXIT_USAGE, main

PEOPLE = ("madonna", "ben_afflek")


def run(args: list, models_dir: Path, index: Path | None = None) -> int:
    extra = ["--index", str(index)] if index is not None else []
    return main([*map(str, args), *extra, "--models", str(models_dir), "--no-progress"])


def report(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def pairs(path: Path) -> set[tuple[str, str]]:
    return {(m["path"], m["person"]) for m in report(path)["matches"]}


def exact(path: Path) -> list[tuple]:
    """Everything a match says, so two runs can be compared exactly."""
    return sorted((m["path"], m["person"], m["distance"], tuple(m["box"]))
                  for m in report(path)["matches"])


@pytest.fixture(scope="module")
def album(celebrities: Path, tmp_path_factory) -> Path:
    """reference/ with two people, photos/ with the val photos of all five celebrities."""
    root = tmp_path_factory.mktemp("index_album")
    copy_references(celebrities, root, PEOPLE, 4)
    for n, photo in enumerate(sorted((celebrities / "val").glob("*/*.jpg"))):
        target = root / "photos" / ("a" if n % 2 else "b") / f"IMG_{n:03d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, target)
    (root / "photos" / "notes.txt").write_text("not a photo", encoding="utf-8")
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return root


def test_second_run_decodes_nothing_and_a_copy_is_found(album, models_dir, tmp_path):
    index = tmp_path / "faces.sqlite"
    refs = album / "reference"
    first, second, third = (tmp_path / f"r{i}.json" for i in range(3))
    assert run([album / "photos", "--reference", refs, "--json", first, "--jobs", "2"],
               models_dir, index) == 0
    assert report(first)["summary"]["files_decoded"] == 26  # 25 photos + the broken one
    assert pairs(first)

    # Same collection, another threshold (the loosest any person gets by default, for
    # everyone): nothing decoded, not even the references.
    assert run([album / "photos", "--reference", refs, "--json", second,
                "--threshold", "0.5"], models_dir, index) == 0
    summary = report(second)["summary"]
    assert summary["files_decoded"] == 0 and summary["references_decoded"] == 0
    assert summary["from_index"] == 26
    assert pairs(first) <= pairs(second)
    assert [u["path"] for u in report(second)["unreadable"]] == ["broken.jpg"]

    # The collection copied elsewhere (new times, renamed folder): found by content.
    copy = tmp_path / "elsewhere" / "Photos copy"
    copy.mkdir(parents=True)
    for photo in (album / "photos").rglob("*.jpg"):
        target = copy / "renamed" / photo.relative_to(album / "photos")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(photo.read_bytes())  # a fresh file: new mtime, no metadata kept
    assert run([copy, "--reference", refs, "--json", third], models_dir, index) == 0
    assert report(third)["summary"]["files_decoded"] == 0
    assert {(p.removeprefix("renamed/"), who) for p, who in pairs(third)} == pairs(first)


def test_a_file_changed_in_place_is_read_again(album, models_dir, tmp_path, celebrities):
    photos = tmp_path / "photos"
    shutil.copytree(album / "photos", photos)
    index = tmp_path / "faces.sqlite"
    refs = album / "reference"
    out = tmp_path / "r.json"
    assert run([photos, "--reference", refs, "--json", out], models_dir, index) == 0
    victim = next(rel for rel, who in sorted(pairs(out)) if who == "madonna")
    # Replace that Madonna photo by a Ben Affleck photo under the same name and time.
    old = os.stat(photos / victim)
    ben = sorted((celebrities / "train" / "ben_afflek").glob("*.jpg"))[-1]
    shutil.copy(ben, photos / victim)
    os.utime(photos / victim, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert run([photos, "--reference", refs, "--json", out], models_dir, index) == 0
    assert report(out)["summary"]["files_decoded"] == 1
    assert (victim, "ben_afflek") in pairs(out) and (victim, "madonna") not in pairs(out)


def test_adding_a_person_decodes_no_collection_photo(album, models_dir, tmp_path,
                                                    celebrities):
    refs = tmp_path / "reference"
    shutil.copytree(album / "reference", refs)
    index = tmp_path / "faces.sqlite"
    out = tmp_path / "r.json"
    assert run([album / "photos", "--reference", refs, "--json", out], models_dir, index) == 0
    (refs / "elton_john").mkdir()
    for photo in sorted((celebrities / "train" / "elton_john").glob("*.jpg"))[:3]:
        shutil.copy(photo, refs / "elton_john" / photo.name)
    assert run([album / "photos", "--reference", refs, "--json", out], models_dir, index) == 0
    summary = report(out)["summary"]
    assert summary["files_decoded"] == 0 and summary["references_decoded"] == 3
    assert summary["matches_per_person"].get("elton_john", 0) >= 3


def test_truncated_index_is_a_clear_error(album, models_dir, tmp_path, capsys):
    index = tmp_path / "faces.sqlite"
    assert run([album / "photos", "--reference", album / "reference"], models_dir, index) == 0
    data = index.read_bytes()
    index.write_bytes(data[: len(data) // 2])
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    capsys.readouterr()
    code = run([album / "photos", "--reference", album / "reference"], models_dir, index)
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE
    assert len(err.splitlines()) == 1 and str(index) in err and "truncated" in err
    assert index.stat().st_size == len(data) // 2  # never overwritten


def test_an_index_whose_checkpoint_filled_the_disk_is_read_from_its_log(
        album, models_dir, tmp_path, capsys):
    """A checkpoint that filled the disk wrote the header (the new page count) but could
    not extend the file: the pages are still in the write-ahead log beside it, so the
    index is whole and is opened, not called truncated (which would tell the user to
    move their answers away)."""
    index = tmp_path / "faces.sqlite"
    assert run([album / "photos", "--reference", album / "reference"], models_dir, index) == 0
    crashed = tmp_path / "crashed.sqlite"
    conn = sqlite3.connect(index, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE filler(x BLOB)")
    for _ in range(50):
        conn.execute("INSERT INTO filler VALUES (?)", (os.urandom(8192),))
    shutil.copy(index, crashed)  # the state a crash left: the file, and the log beside it
    shutil.copy(f"{index}-wal", f"{crashed}-wal")
    conn.close()  # (checkpoints: the page count the header then holds)
    header = bytearray(crashed.read_bytes())
    page_size = int.from_bytes(header[16:18], "big")
    pages = index.stat().st_size // page_size
    assert crashed.stat().st_size < pages * page_size
    header[28:32] = pages.to_bytes(4, "big")
    crashed.write_bytes(bytes(header))
    capsys.readouterr()
    assert run([album / "photos", "--reference", album / "reference"], models_dir,
               crashed) == 0, capsys.readouterr().err
    with sqlite3.connect(crashed) as check:
        assert check.execute("SELECT count(*) FROM filler").fetchone() == (50,)
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_foreign_file_is_refused_and_left_alone(album, models_dir, tmp_path, capsys):
    foreign = tmp_path / "photos.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    before = foreign.read_bytes()
    code = run([album / "photos", "--reference", album / "reference"], models_dir, foreign)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "not a face index" in err and str(foreign) in err
    assert foreign.read_bytes() == before
    text = tmp_path / "notes.sqlite"
    text.write_text("hello", encoding="utf-8")
    assert run([album / "photos", "--reference", album / "reference"], models_dir,
               text) == EXIT_USAGE
    assert text.read_text(encoding="utf-8") == "hello"


def test_index_info_of_an_empty_file_is_no_index_yet(tmp_path, capsys):
    """A search takes an empty file as a new index; --index-info says the same of it
    (not "damaged")."""
    index = tmp_path / "faces.sqlite"
    index.write_bytes(b"")
    assert main(["--index-info", "--index", str(index)]) == 0
    out = capsys.readouterr().out
    assert "No face index at" in out and "damaged" not in out
    assert index.read_bytes() == b""


def test_index_info_and_prune(album, models_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    shutil.copytree(album / "photos", photos)
    index = tmp_path / "faces.sqlite"
    assert run([photos, "--reference", album / "reference"], models_dir, index) == 0
    capsys.readouterr()
    assert main(["--index-info", "--index", str(index)]) == 0
    info = capsys.readouterr().out
    assert "Files it knows (by content): 34," in info  # 26 photos + 8 references
    assert "Facenet: CenterFace detector" in info and "Integrity check: passed" in info
    assert "Last search: " in info and "photos: 27 files (26 read, 0 answered" in info
    assert "weights=" not in info and '"crop"' not in info  # plain words, no internal keys
    for photo in sorted(photos.rglob("IMG_*.jpg"))[:5]:
        photo.unlink()
    assert main([str(photos), "--prune", "--index", str(index)]) == 0
    assert "5 paths" in capsys.readouterr().err
    assert main(["--index-info", "--index", str(index)]) == 0
    assert "Files it knows (by content): 29," in capsys.readouterr().out


def test_no_index_writes_nothing(album, models_dir, tmp_path):
    index = tmp_path / "faces.sqlite"
    code = main([str(album / "photos"), "--reference", str(album / "reference"), "--no-index",
                 "--index", str(index), "--models", str(models_dir), "--no-progress"])
    assert code == 0 and not index.exists()


@pytest.fixture(scope="module")
def slow_album(celebrities: Path, tmp_path_factory) -> Path:
    """~120 distinct, upscaled photos: a run long enough to be killed half-way."""
    root = tmp_path_factory.mktemp("slow_album")
    copy_references(celebrities, root, PEOPLE, 3)
    photos = sorted(celebrities.glob("*/*/*.jpg"))
    for n, photo in enumerate(photos):
        image = Image.open(photo).convert("RGB")
        image = image.resize((image.width * 3, image.height * 3), Image.Resampling.BICUBIC)
        target = root / "photos" / f"{n // 40:02d}" / f"P{n:03d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=90)
    return root


def _finder(album: Path, models_dir: Path, index: Path, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "finder.py"), str(album / "photos"),
            "--reference", str(album / "reference"), "--models", str(models_dir),
            "--index", str(index), "--json", str(out), "--no-progress", "--jobs", "1"]


def _analysed(index: Path) -> int:
    try:
        with sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM analyses").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_mid_run_resumes_to_the_same_results(slow_album, models_dir, tmp_path):
    total = len(list((slow_album / "photos").rglob("*.jpg")))
    whole = tmp_path / "whole.json"
    assert run([slow_album / "photos", "--reference", slow_album / "reference",
                "--json", whole, "--jobs", "1"], models_dir, tmp_path / "whole.sqlite") == 0

    index = tmp_path / "killed.sqlite"
    out = tmp_path / "resumed.json"
    proc = subprocess.Popen(_finder(slow_album, models_dir, index, out),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    refs = 6
    deadline = time.monotonic() + 240
    while _analysed(index) < refs + total // 4 and proc.poll() is None:
        assert time.monotonic() < deadline, "the finder made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = _analysed(index) - refs
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 0 < stored < total

    done = subprocess.run(_finder(slow_album, models_dir, index, out), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = report(out)["summary"]
    assert summary["from_index"] >= stored  # what was committed before the kill is kept
    assert summary["files_decoded"] == total - summary["from_index"]
    assert exact(out) == exact(whole)
    assert _analysed(index) == refs + total


def test_a_locked_index_gives_a_clear_message(album, models_dir, tmp_path, capsys,
                                              monkeypatch):
    """Another run holding the index too long: this run still answers in full (exit 0)
    and says the index could not be updated; the next run uses it as usual."""
    import facefinder.index as index_module

    index = tmp_path / "faces.sqlite"
    assert run([album / "photos", "--reference", album / "reference"], models_dir, index) == 0
    monkeypatch.setattr(index_module, "BUSY_TIMEOUT_S", 0.5)
    other = sqlite3.connect(index, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another finder in the middle of a write
        photos = tmp_path / "new"
        shutil.copytree(album / "photos", photos)  # a new root: the run must write
        capsys.readouterr()
        code = run([photos, "--reference", album / "reference"], models_dir, index)
    finally:
        other.execute("ROLLBACK")
        other.close()
    err = capsys.readouterr().err
    assert code == 0 and str(index) in err
    assert "could not be updated (another finder run kept it locked)" in err
    assert run([photos, "--reference", album / "reference"], models_dir, index) == 0
