"""Nothing lost, nothing faked: dying workers, a full or locked index, hostile outputs.

Real files, real models, real processes; root ignores permission bits, so read-only and
full disks are made with mounts in a private namespace (``unshare -m``) where possible.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, as_a_user, copy_references, unshare_works

from facefinder.analyse import AnalysisJob
from facefinder.cli import main
from facefinder.executors import CRASHED, STOPPED, ProcessExecutor, analyse_all
from facefinder.vision.registry import model_spec


def _album(celebrities: Path, root: Path, copies: int = 1) -> tuple[Path, Path]:
    """(photos, reference): madonna's and ben_afflek's val photos, ``copies`` times each
    (every copy a different file: one pixel differs), references from train."""
    from PIL import Image

    refs = copy_references(celebrities, root, ["madonna", "ben_afflek"], 3)
    photos = root / "photos"
    photos.mkdir()
    for person in ("madonna", "ben_afflek"):
        for n, photo in enumerate(sorted((celebrities / "val" / person).glob("*.jpg"))):
            image = Image.open(photo).convert("RGB")
            for i in range(copies):
                copy = image.copy()
                copy.putpixel((i % copy.width, 0), (i % 256, 1, 2))
                copy.save(photos / f"{person[:3]}_{n}_{i:03d}.jpg", quality=92)
    return photos, refs


NEEDS_UNSHARE = pytest.mark.skipif(not unshare_works(), reason="needs Linux and `unshare -m` "
                                   "(root) to mount a small disk; root ignores permissions")


def _finder_cmd(photos: Path, refs: Path, models_dir: Path, index: Path, *extra: object
                ) -> list[str]:
    return [sys.executable, str(ROOT / "finder.py"), str(photos), "--reference", str(refs),
            "--models", str(models_dir), "--index", str(index), *map(str, extra)]


# --------------------------------------------------------------------------- workers


def test_a_file_that_kills_its_worker_is_reported_and_the_rest_is_read(
        celebrities: Path, models_dir: Path, tmp_path: Path) -> None:
    """One worker dying takes nothing else with it; the file that killed it, twice, is
    reported as unreadable (and so kept in the index as such), and the search goes on."""
    photos = sorted((celebrities / "val").rglob("*.jpg"))[:9]
    items = [(p, p.name, "image") for p in photos]
    poison = tmp_path / "poison.jpg"
    shutil.copy(photos[0], poison)
    items.insert(4, (poison, "poison.jpg", "image"))
    job = AnalysisJob(model_spec("Facenet"), models_dir)
    executor = ProcessExecutor(2, task=_abort_on_poison())
    try:
        results = {r.rel: r for r in analyse_all(items, job, executor)}
    finally:
        executor.close()
    assert set(results) == {rel for _, rel, _ in items}
    assert results["poison.jpg"].error == CRASHED
    assert all(r.error is None and r.faces for rel, r in results.items() if rel != "poison.jpg")


def _abort_on_poison():
    from crash_task import abort_on_poison

    return abort_on_poison


def test_a_worker_killed_mid_run_loses_nothing(celebrities: Path, models_dir: Path,
                                               tmp_path: Path) -> None:
    """What the OOM killer does on a small PC: SIGKILL to one worker mid-run. The run
    ends normally with exactly the matches of an undisturbed run."""
    photos, refs = _album(celebrities, tmp_path, copies=12)
    total = sum(1 for _ in photos.iterdir())
    report = tmp_path / "r.json"
    command = _finder_cmd(photos, refs, models_dir, tmp_path / "i.sqlite", "--json", report,
                          "--jobs", "2")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    seen = ""
    while not re.search(r"\b([2-9]\d)/\d+\b", seen[-200:]):  # progress: >= 20 files done
        char = proc.stderr.read(1)
        assert char, f"the finder ended first: {seen[-300:]}"
        seen += char
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
               if "resource_tracker" not in " ".join(c.cmdline())]
    assert workers, "no worker process found"
    workers[-1].send_signal(signal.SIGKILL)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["summary"]["files_scanned"] == total and not data["unreadable"]
    fresh = tmp_path / "fresh.json"
    assert main([str(photos), "--reference", str(refs), "--models", str(models_dir),
                 "--no-index", "--no-progress", "--json", str(fresh), "--jobs", "2"]) == 0
    expected = json.loads(fresh.read_text(encoding="utf-8"))["matches"]
    # the same matches; only the indexed run knows each face's id (the page's handle)
    assert [{k: v for k, v in m.items() if k != "face"} for m in data["matches"]] == expected


def test_jobs_beyond_cores_and_memory_are_capped_and_said(celebrities: Path, models_dir: Path,
                                                          tmp_path: Path, capsys) -> None:
    """--jobs 1000 would start 1000 processes loading the models: capped, and said."""
    photos, refs = _album(celebrities, tmp_path)
    code = main([str(photos), "--reference", str(refs), "--models", str(models_dir),
                 "--no-index", "--no-progress", "--jobs", "1000"])
    err = capsys.readouterr().err
    assert code == 0
    assert re.search(r"--jobs 1000: using \d+ worker processes", err)


# --------------------------------------------------------------------------- the index


@NEEDS_UNSHARE
def test_a_full_disk_under_the_index_loses_no_answer(celebrities: Path, models_dir: Path,
                                                     tmp_path: Path) -> None:
    """The index's disk fills up mid-run: the search finishes from memory, the report is
    written, and the finder says how many results the index could not keep."""
    photos, refs = _album(celebrities, tmp_path, copies=3)
    small = tmp_path / "small"
    small.mkdir()
    index = small / "i.sqlite"
    report = tmp_path / "r.json"
    # The first run knows only Madonna (every run reads everyone's references), so the
    # second has Ben's references and more to write.
    only = tmp_path / "only_madonna"
    shutil.copytree(refs / "madonna", only / "madonna")
    first = " ".join(f"'{a}'" for a in _finder_cmd(photos, only, models_dir, index,
                                                     "--no-progress", "--jobs", "1"))
    run = " ".join(f"'{a}'" for a in _finder_cmd(photos, refs, models_dir, index,
                                                   "--no-progress", "--json", report,
                                                   "--jobs", "2"))
    # A 512 KiB disk: room for the index of a few references, then filled up but for
    # 64 KiB, so the run starts writing and runs out of room half-way.
    script = (f'mount -t tmpfs -o size=512k tmpfs "{small}" && {first} >/dev/null 2>&1; '
              f'(head -c 100M /dev/zero > "{small}/filler") 2>/dev/null; '
              f'truncate -s -64K "{small}/filler" && {run}')
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "damaged" not in done.stderr and "Traceback" not in done.stderr
    found = re.search(r"could not keep (\d+) results \(the disk is full\)", done.stderr)
    assert found and int(found.group(1)) > 0, done.stderr
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["summary"]["not_kept_in_index"] == int(found.group(1))
    assert {m["person"] for m in data["matches"]} == {"madonna", "ben_afflek"}


def test_two_runs_on_one_index_both_finish(celebrities: Path, models_dir: Path,
                                           tmp_path: Path) -> None:
    """A second finder on the same index is never turned away: both complete."""
    photos, refs = _album(celebrities, tmp_path, copies=10)
    total = sum(1 for _ in photos.iterdir())
    index = tmp_path / "i.sqlite"
    runs = []
    for n in range(2):
        runs.append(subprocess.Popen(
            _finder_cmd(photos, refs, models_dir, index, "--no-progress", "--json",
                        tmp_path / f"r{n}.json", "--jobs", "1"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        time.sleep(1.0)
    for proc in runs:
        _out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "could not keep" not in err and "could not be updated" not in err, err
    for n in range(2):
        data = json.loads((tmp_path / f"r{n}.json").read_text(encoding="utf-8"))
        assert data["summary"]["files_scanned"] == total and not data["summary"]["interrupted"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_index_or_report_that_is_a_fifo_is_refused_not_waited_on(
        celebrities: Path, models_dir: Path, tmp_path: Path) -> None:
    """A FIFO given as --index or --csv would block forever: one line, exit 2, at once."""
    photos, refs = _album(celebrities, tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for extra in (["--index", fifo], ["--csv", fifo, "--no-index"]):
        command = [sys.executable, str(ROOT / "finder.py"), str(photos), "--reference",
                   str(refs), "--models", str(models_dir), "--no-progress", *map(str, extra)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "not a regular file" in done.stderr


# --------------------------------------------------------------------------- outputs


def test_a_json_sidecar_is_never_overwritten(celebrities: Path, models_dir: Path,
                                             tmp_path: Path, capsys) -> None:
    """--json pointed at a photo service's JSON sidecar: refused, the file untouched."""
    photos, refs = _album(celebrities, tmp_path)
    sidecar = tmp_path / "IMG_0001.jpg.json"
    sidecar.write_text('{"title": "IMG_0001.jpg", "photoTakenTime": {"timestamp": "1"}}')
    before = sidecar.read_bytes()
    code = main([str(photos), "--reference", str(refs), "--models", str(models_dir),
                 "--no-index", "--no-progress", "--json", str(sidecar)])
    assert code == 2 and "not a report of this finder" in capsys.readouterr().err
    assert sidecar.read_bytes() == before


def test_csv_cells_never_start_a_formula(celebrities: Path, models_dir: Path,
                                         tmp_path: Path) -> None:
    """File or person names like =HYPERLINK(...) are text in a spreadsheet, not formulas."""
    import csv

    photos, refs = _album(celebrities, tmp_path)
    (refs / "madonna").rename(refs / "=cmd")
    for n, photo in enumerate(sorted(photos.glob("mad_*"))):
        photo.rename(photos / ["=HYPERLINK(1).jpg", "+1.jpg", "-2.jpg", "@3.jpg"][n % 4])
    out = tmp_path / "r.csv"
    assert main([str(photos), "--reference", str(refs), "--models", str(models_dir),
                 "--no-index", "--no-progress", "--csv", str(out)]) == 0
    with out.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert any(r["person"] == "'=cmd" for r in rows)
    assert {r["path"][:2] for r in rows if r["person"] == "'=cmd"} <= {"'=", "'+", "'-", "'@"}
    for row in rows:
        assert not row["path"].startswith(("=", "+", "-", "@"))
        assert not row["person"].startswith(("=", "+", "-", "@"))


def test_copy_into_the_photos_folder_itself_is_refused(celebrities: Path, models_dir: Path,
                                                       tmp_path: Path, capsys) -> None:
    """--copy PHOTOS_DIR would nest copies one level deeper on every run: refused."""
    photos, refs = _album(celebrities, tmp_path)
    for dest in (photos, tmp_path):
        code = main([str(photos), "--reference", str(refs), "--models", str(models_dir),
                     "--no-index", "--no-progress", "--copy", str(dest)])
        assert code == 2 and "holds the photos searched" in capsys.readouterr().err
    inside = photos / "found"
    for _ in range(2):  # a subfolder is fine: it is not searched, so nothing nests
        assert main([str(photos), "--reference", str(refs), "--models", str(models_dir),
                     "--no-index", "--no-progress", "--copy", str(inside)]) == 0
    assert not any(p.name == "found" for p in inside.rglob("found"))


def test_temp_files_of_a_killed_copy_are_cleaned_up(celebrities: Path, models_dir: Path,
                                                    tmp_path: Path) -> None:
    """kill -9 while copying leaves a hidden temp file; the next run removes it."""
    photos, refs = _album(celebrities, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "copies" / "madonna"
    folder.mkdir(parents=True)
    leftover = folder / f".mad_0_000.jpg.partial-{dead.pid}-0123abcd"
    leftover.write_bytes(b"half a photo")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    mine = folder / f".keep.jpg.partial-{alive.pid}-0123abcd"  # a live run's: kept
    mine.write_bytes(b"in progress")
    assert main([str(photos), "--reference", str(refs), "--models", str(models_dir),
                 "--no-index", "--no-progress", "--copy", str(tmp_path / "copies")]) == 0
    alive.kill()
    alive.wait()
    assert not leftover.exists() and mine.exists()
    assert any(folder.glob("*.jpg"))


def test_control_characters_in_names_are_shown_escaped(celebrities: Path, models_dir: Path,
                                                       tmp_path: Path, capfd) -> None:
    """A name with terminal escapes or a newline can neither retitle the terminal nor
    forge a line of the report."""
    photos, refs = _album(celebrities, tmp_path)
    evil = "\x1b]0;owned\x07\nFiles scanned: 999.jpg"
    sorted(photos.glob("mad_*"))[0].rename(photos / evil)  # one that is found
    (photos / "broken\x1b[2J.jpg").write_bytes(b"not a photo")
    assert main([str(photos), "--reference", str(refs), "--models", str(models_dir),
                 "--no-index", "--no-progress", "--list", "all"]) == 0
    out, err = capfd.readouterr()
    for text in (out, err):
        assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;owned\\x07\\x0aFiles scanned: 999.jpg" in out
    assert "broken\\x1b[2J.jpg" in out
    assert not any(line.startswith("Files scanned: 999") for line in out.splitlines())


def test_detect_size_above_1600_reads_photos_that_large(models_dir: Path, tmp_path: Path,
                                                         capsys) -> None:
    """--detect-size 2400 really shows the detector 2400 px (decoding follows it)."""
    from PIL import Image

    photos, refs = tmp_path / "photos", tmp_path / "reference"
    (refs / "x").mkdir(parents=True)
    photos.mkdir()
    from testdata import face_crop

    shutil.copy(face_crop(), refs / "x" / "face.png")
    Image.new("RGB", (3000, 2000), (90, 120, 150)).save(photos / "big.jpg")
    index = tmp_path / "i.sqlite"
    assert main([str(photos), "--reference", str(refs), "--models", str(models_dir),
                 "--index", str(index), "--no-progress", "--detect-size", "2400"]) == 0
    capsys.readouterr()
    assert main(["--index-info", "--index", str(index)]) == 0
    assert "detector at 2400 px on photos read at up to 2400 px" in capsys.readouterr().out
    assert main([str(photos), "--reference", str(refs), "--models", str(models_dir),
                 "--no-index", "--no-progress", "--detect-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "--detect-size 32 or more" in err and "reference" not in err


def test_workers_that_cannot_start_are_not_taken_for_crashing_files(
        celebrities: Path, models_dir: Path, tmp_path: Path) -> None:
    """Python fed from stdin cannot start worker processes (they cannot re-read the main
    script): the files are then read in the main process, none is called crashed."""
    photos, refs = _album(celebrities, tmp_path)
    report = tmp_path / "r.json"
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from facefinder.cli import main\n"
            f"sys.exit(main([{str(photos)!r}, '--reference', {str(refs)!r}, '--models', "
            f"{str(models_dir)!r}, '--no-index', '--no-progress', '--jobs', '2', "
            f"'--json', {str(report)!r}]))\n")
    done = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "worker processes could not start" in done.stderr
    data = json.loads(report.read_text(encoding="utf-8"))
    assert not data["unreadable"] and {m["person"] for m in data["matches"]} == {
        "madonna", "ben_afflek"}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_an_index_the_user_cannot_write_is_still_read(celebrities: Path, models_dir: Path,
                                                      tmp_path: Path) -> None:
    """A stick the user has no write rights on: the index answers (nothing is decoded
    again) instead of being dropped, and nothing is written to it."""
    photos, refs = _album(celebrities, tmp_path)
    folder = tmp_path / "stick"
    folder.mkdir()
    index = folder / "index.sqlite"
    assert main([str(photos), "--reference", str(refs), "--models", str(models_dir),
                 "--index", str(index), "--no-progress", "--jobs", "1"]) == 0
    index.chmod(0o444)
    folder.chmod(0o555)
    before = sorted(p.name for p in folder.iterdir())
    report = tmp_path / "r.json"
    try:
        done = subprocess.run(as_a_user(_finder_cmd(photos, refs, models_dir, index,
                                                     "--no-progress", "--json", report)),
                              capture_output=True, text=True, timeout=300)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert "is only read this run" in done.stderr and "damaged" not in done.stderr
    summary = json.loads(report.read_text(encoding="utf-8"))["summary"]
    assert summary["files_decoded"] == 0 and summary["from_index"] == summary["files_scanned"]
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("task,kept", [
    ("abort_on_poison", True), ("fail_on_poison", False),
    pytest.param("die_on_poison", False, marks=pytest.mark.skipif(
        os.name != "posix", reason="how a worker died is known from its signal (POSIX)"))])
def test_what_the_index_remembers_about_a_failing_file(
        celebrities: Path, models_dir: Path, tmp_path: Path, task: str, kept: bool) -> None:
    """A file that crashes its worker twice is remembered as unreadable and never read
    again; a failure that is not the file's doing is tried next time: a model failing,
    or the worker reading it killed from outside (SIGKILL: the OOM killer on a PC short
    of memory that moment, a task manager) - a good photo must not be lost for good."""
    import crash_task
    from PIL import Image

    from facefinder import Finder

    photos, refs = _album(celebrities, tmp_path)
    # Its own content (the index knows files by content, so a byte-copy would be known).
    Image.open(sorted(photos.glob("mad_*"))[0]).rotate(1).save(photos / "poison.jpg")
    index = tmp_path / "i.sqlite"
    runs = []
    for _ in range(2):
        executor = ProcessExecutor(2, task=getattr(crash_task, task))
        with Finder(refs, models=models_dir, index=index, executor=executor) as finder:
            runs.append(finder.find(photos))
    first, second = runs
    reason = dict(first.unreadable)["poison.jpg"]
    assert reason == CRASHED if kept else reason.startswith("cannot read file:")
    if task == "die_on_poison":
        assert reason == STOPPED
    assert second.summary.files_decoded == (0 if kept else 1)
    assert {m.rel for m in first.matches} - {"poison.jpg"} == {
        m.rel for m in second.matches} - {"poison.jpg"}
    assert len(first.matches) >= 4  # the other files were read as usual


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_workers_end_with_a_finder_killed_hard(celebrities: Path, models_dir: Path,
                                               tmp_path: Path) -> None:
    """kill -9 of the finder (or the OOM killer taking it): its workers end too, instead
    of holding hundreds of MB each until the PC restarts."""
    photos, refs = _album(celebrities, tmp_path, copies=12)
    proc = subprocess.Popen(_finder_cmd(photos, refs, models_dir, tmp_path / "i.sqlite",
                                        "--jobs", "2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = ""
    while not re.search(r"\b([1-9]\d*)/\d+\b", seen[-200:]):
        char = proc.stderr.read(1)
        assert char, f"the finder ended first: {seen[-300:]}"
        seen += char
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children
    proc.kill()
    proc.wait()
    _gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, [c.pid for c in alive]
