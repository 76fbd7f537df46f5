"""The command line as a user meets it: exit codes, one-line errors, what is printed.

Each test runs ``finder.py``'s ``main`` in-process on a tiny album of real faces (the
5-celebrity set, the insightface group photo, or images drawn here) with the real
models, and checks one thing the user sees: a refused option, an exit status, a line of
the listing, a file written next to a report.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import copy_references
from PIL import Image

from facefinder.cli import main

EXIT_OK, EXIT_USAGE, EXIT_UNDELIVERED = 0, 2, 3
DEFAULT_THRESHOLD = "0.32"  # Facenet's default, as --help and the README give it
BOX = re.compile(r"at x=(\d+), y=(\d+), (\d+)x(\d+) px")


def run(args: list[object], models_dir: Path) -> int:
    """``python finder.py ARGS --models M --no-progress --jobs 1``; the exit status."""
    return main([*map(str, args), "--models", str(models_dir), "--no-progress", "--jobs", "1"])


def val_photo(celebrities: Path, person: str, number: int = 0) -> Path:
    """One of ``person``'s held-out (val) photos, never one of their references.

    With their first 3 train photos as references, madonna's val photos 0 and 2 and
    ben_afflek's 0, 1 and 4 are found at the default threshold; the others are not.
    """
    return sorted((celebrities / "val" / person).glob("*.jpg"))[number]


def album(celebrities: Path, root: Path, photos: dict[str, tuple[str, int]],
          people: tuple[str, ...] = ("madonna",), references: int = 3) -> tuple[Path, Path]:
    """``root/reference/<person>/`` (their first train photos) and ``root/photos/`` holding
    ``{name: (person, val number)}``; returns (photos, reference)."""
    reference = copy_references(celebrities, root, people, references)
    folder = root / "photos"
    folder.mkdir()
    for name, (person, number) in photos.items():
        shutil.copy(val_photo(celebrities, person, number), folder / name)
    return folder, reference


def side_by_side(*faces: tuple[Path, int]) -> Image.Image:
    """One canvas with each photo scaled to the given height, left to right."""
    images = []
    for path, height in faces:
        image = Image.open(path).convert("RGB")
        images.append(image.resize((image.width * height // image.height, height)))
    margin = 40
    canvas = Image.new("RGB", (sum(i.width for i in images) + margin * (len(images) + 1),
                               max(i.height for i in images) + 2 * margin), (128, 128, 128))
    x = margin
    for image in images:
        canvas.paste(image, (x, margin))
        x += image.width + margin
    return canvas


def private_index() -> Path:
    """The face index this test's runs use (set per test by conftest)."""
    return Path(os.environ["FACEFINDER_INDEX"])


def set_mtime(path: Path, day: str) -> None:
    """Give ``path`` the modification time ``day`` (YYYY-MM-DD) at noon, local time."""
    stamp = time.mktime(time.strptime(f"{day} 12:00:00", "%Y-%m-%d %H:%M:%S"))
    os.utime(path, (stamp, stamp))


def listed_paths(out: str, person: str) -> list[str]:
    """The path lines under ``person``'s heading of the per-person listing."""
    block = out.split(f"{person}:", 1)[1].split("\n\n", 1)[0]
    return [line for line in block.splitlines()[1:] if ".jpg" in line]


# --------------------------------------------------------------------------- 1. preflight


@pytest.mark.parametrize("case", ["csv in /proc", "csv in missing folder", "csv on a photo",
                                  "json on a photo", "copy onto a file", "csv name too long",
                                  "copy name too long"])
def test_undeliverable_output_is_refused_before_any_photo_is_read(
        case: str, celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A report or copy target that cannot work exits 2 at once, in one line, reading nothing."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0)})
    photo = tmp_path / "holiday.jpg"
    shutil.copy(val_photo(celebrities, "madonna", 1), photo)
    original = photo.read_bytes()
    option, target = {
        "csv in /proc": ("--csv", Path("/proc/x.csv")),
        "csv in missing folder": ("--csv", tmp_path / "no such folder" / "found.csv"),
        "csv on a photo": ("--csv", photo),
        "json on a photo": ("--json", photo),
        "copy onto a file": ("--copy", photo),
        "csv name too long": ("--csv", tmp_path / f"{'x' * 300}.csv"),  # > NAME_MAX (255)
        "copy name too long": ("--copy", tmp_path / ("x" * 300)),
    }[case]
    capsys.readouterr()
    started = time.monotonic()
    code = run([photos, "--reference", reference, option, target], models_dir)
    seconds = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE, err
    assert seconds < 5, f"took {seconds:.1f} s to refuse {option} {target}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert option in lines[0] and target.name[:40] in lines[0]
    assert "Looking for" not in err and not out.strip()
    assert not private_index().exists(), "photos were read before the option was refused"
    assert photo.read_bytes() == original
    assert not Path("/proc/x.csv").exists()


@pytest.mark.parametrize("option", ["--copy", "--annotate", "--csv", "--index"])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(
        option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--copy "$DEST"`` with DEST unset would copy into wherever the script runs."""
    from facefinder.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "photos"), option, ""])
    assert stopped.value.code == EXIT_USAGE
    assert f"argument {option}: an empty name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


# --------------------------------------------------------------------------- 2. exit 3


def test_failed_copy_exits_3(celebrities: Path, models_dir: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """A copy that cannot be made is named on stderr and makes the exit status 3, not 0."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0)})
    dest = tmp_path / "found"
    dest.mkdir()
    blocker = dest / "madonna"  # a file where the person's copy folder must go
    blocker.write_bytes(b"not a folder")
    code = run([photos, "--reference", reference, "--copy", dest], models_dir)
    err = capsys.readouterr().err
    assert code == EXIT_UNDELIVERED, err
    assert "a.jpg" in err and "could not copy" in err.lower()
    assert blocker.read_bytes() == b"not a folder"


def test_same_file_for_csv_and_json_is_refused_before_the_search(
        celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--csv and --json naming one file would lose one report: refused up front (exit 2)."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0)})
    report = tmp_path / "found.txt"
    code = run([photos, "--reference", reference, "--csv", report, "--json", report],
               models_dir)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "same file" in err and "Looking for" not in err
    assert not report.exists()


@pytest.mark.parametrize("option", ["--copy", "--annotate"])
def test_output_folder_holding_the_photos_is_refused_before_the_search(
        option: str, celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--copy or --annotate into a folder holding PHOTOS_DIR would read its own output on
    the next run: refused up front (exit 2), naming the option and a subfolder to use."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0)})
    code = run([photos, "--reference", reference, option, tmp_path], models_dir)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "Looking for" not in err
    assert f"{option} {tmp_path}: that folder holds the photos searched" in err
    assert str(photos.resolve() / "found") in err


def test_report_that_cannot_be_written_after_the_run_exits_3(
        celebrities: Path, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A report that fails after the search (its folder replaced by a file meanwhile, as a
    pulled stick or another program might) is named, and the exit status is 3."""
    from facefinder import console

    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0)})
    folder = tmp_path / "reports"
    folder.mkdir()
    close = console.Console.close

    def close_and_break_the_folder(self: console.Console) -> None:
        close(self)
        shutil.rmtree(folder)
        folder.write_bytes(b"now a file")

    monkeypatch.setattr(console.Console, "close", close_and_break_the_folder)
    code = run([photos, "--reference", reference, "--csv", folder / "found.csv"], models_dir)
    err = capsys.readouterr().err
    assert code == EXIT_UNDELIVERED, err
    assert "cannot write" in err and "found.csv" in err


# --------------------------------------------------------------------------- 3. --all


def test_all_prints_each_file_once_by_capture_time_with_who_is_in_it(
        celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--all A B prints only the answer, once: the files showing both, oldest first."""
    photos, reference = album(
        celebrities, tmp_path, {"ben.jpg": ("ben_afflek", 0), "madonna.jpg": ("madonna", 0)},
        people=("ben_afflek", "madonna", "jerry_seinfeld"))
    for name, ben, madonna, day in (("a_newer.jpg", 1, 2, "2021-05-01"),
                                    ("b_older.jpg", 4, 0, "2019-05-01")):
        side_by_side((val_photo(celebrities, "ben_afflek", ben), 300),
                     (val_photo(celebrities, "madonna", madonna), 300)).save(photos / name,
                                                                             quality=92)
        set_mtime(photos / name, day)
    code = run([photos, "--reference", reference, "--all", "ben_afflek", "madonna"],
               models_dir)
    out = capsys.readouterr().out
    assert code == EXIT_OK
    files = [line for line in out.splitlines() if ".jpg" in line]
    assert [("b_older.jpg" in line, "a_newer.jpg" in line) for line in files] == [
        (True, False), (False, True)], out
    assert all(line.rstrip().endswith("ben_afflek, madonna") for line in files), out
    assert files[0].split()[0].startswith("2019-05-01")
    assert files[1].split()[0].startswith("2021-05-01")
    assert "0 photos" not in out and "not found in any photo" not in out
    assert "jerry_seinfeld" not in out
    assert out.count("together") == 1, out


# --------------------------------------------------------------------------- 4. threshold


@pytest.mark.parametrize("value", ["32", "-1", "nan", "inf", "2"])
def test_threshold_outside_the_useful_range_exits_2_with_the_default(
        value: str, celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A --threshold no cosine distance can be compared with exits 2 and names the default."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0)})
    code = run([photos, "--reference", reference, "--threshold", value], models_dir)
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE, err
    assert len(err.strip().splitlines()) == 1 and "--threshold" in err
    assert "default" in err and DEFAULT_THRESHOLD in err
    assert "Looking for" not in err and not out.strip()


def test_threshold_in_range_is_accepted(celebrities: Path, models_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--threshold 0.3 is a usable value: the search runs with it."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0)})
    code = run([photos, "--reference", reference, "--threshold", "0.3"], models_dir)
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    assert "threshold 0.3," in err


# --------------------------------------------------------------------------- 5. references


def test_largest_face_of_a_group_reference_is_named_and_saved_beside_the_report(
        models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A lone several-face reference: the largest face is taken, its box said, its crop saved."""
    from testdata import group_photo

    reference = tmp_path / "reference"
    (reference / "Guest").mkdir(parents=True)
    shutil.copy(group_photo(), reference / "Guest" / "party.jpg")
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(group_photo(), photos / "t1.jpg")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    report = out_dir / "found.json"
    code = run([photos, "--reference", reference, "--json", report], models_dir)
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    note = next(line for line in err.splitlines() if "Guest/party.jpg" in line
                and "largest" in line)
    found = BOX.search(note)
    assert found, note
    box = tuple(int(v) for v in found.groups())

    from facefinder.api import Finder  # the library's own view of the photo's faces

    faces = Finder(models=models_dir, jobs=1).faces(group_photo()).faces
    usable = [f for f in faces if f.embedding is not None]
    assert len(usable) > 1
    largest = max(usable, key=lambda f: f.box[2] * f.box[3])
    assert box == tuple(int(v) for v in largest.box)

    crops = list((out_dir / "reference-faces").glob("*.jpg"))
    assert len(crops) == 1, crops
    with Image.open(crops[0]) as crop:
        assert abs(crop.width - box[2]) <= 2 and abs(crop.height - box[3]) <= 2
    assert str(crops[0]) in err
    matches = json.loads(report.read_text(encoding="utf-8"))["matches"]
    assert [(m["path"], m["person"]) for m in matches] == [("t1.jpg", "Guest")]


def test_group_reference_face_that_agrees_with_a_portrait_is_taken(
        celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """With a portrait of Y, Y's face in a group reference is taken even if not the largest."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 2)},
                              references=1)
    big, small = 480, 240  # ben_afflek large on the left, madonna half his size on the right
    canvas = side_by_side((val_photo(celebrities, "ben_afflek", 0), big),
                          (val_photo(celebrities, "madonna", 0), small))
    canvas.save(reference / "madonna" / "with_ben.jpg", quality=92)
    with Image.open(val_photo(celebrities, "ben_afflek", 0)) as ben:
        madonna_left = 40 + ben.width * big // ben.height + 40  # where side_by_side put her
    code = run([photos, "--reference", reference], models_dir)
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    note = next(line for line in err.splitlines() if "with_ben.jpg" in line)
    found = BOX.search(note)
    assert found, note
    x, y, w, h = (int(v) for v in found.groups())
    assert madonna_left - 10 <= x + w / 2 <= canvas.width - 40 + 10, note
    assert 40 - 10 <= y + h / 2 <= 40 + small + 10, note
    assert "largest" not in note


def test_one_group_photo_as_two_peoples_only_reference_is_an_error(
        celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The same several-face photo as the only reference of two people exits 2 naming both."""
    from testdata import group_photo

    reference = tmp_path / "reference"
    for person in ("Anna", "Ben"):
        (reference / person).mkdir(parents=True)
        shutil.copy(group_photo(), reference / person / "group.jpg")
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(val_photo(celebrities, "madonna"), photos / "a.jpg")
    code = run([photos, "--reference", reference], models_dir)
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE, err
    error = [line for line in err.splitlines() if "error" in line]
    assert len(error) == 1, err
    assert str(reference / "Anna") in error[0] and str(reference / "Ben") in error[0]
    assert "Looking for" not in err and not out.strip()


# --------------------------------------------------------------------------- 6. folders


def test_stray_file_in_the_reference_folder_is_reported(
        celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A photo lying directly in reference/ (in no person's folder) is named on stderr."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0)})
    shutil.copy(val_photo(celebrities, "madonna", 1), reference / "stray.jpg")
    code = run([photos, "--reference", reference], models_dir)
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    lines = [line for line in err.splitlines() if "stray.jpg" in line]
    assert len(lines) == 1 and "folder" in lines[0], err


def test_photos_dir_that_is_a_file_is_called_a_file(
        celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """PHOTOS_DIR naming a file exits 2 saying it is a file, not that it was not found."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0)})
    code = run([photos / "a.jpg", "--reference", reference], models_dir)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert "is a file" in err and "not found" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_an_empty_or_unplugged_photos_dir_is_an_error_and_keeps_the_last_report(
        celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An empty PHOTOS_DIR (what an unplugged drive's mount point looks like) exits 2 with
    one line before anything is searched or written: the report of the run that saw the
    photos is not replaced by an empty one. A FIFO named as PHOTOS_DIR is "not a
    folder", not "not found"."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0)})
    report = tmp_path / "found.csv"
    assert run([photos, "--reference", reference, "--csv", report, "--no-index"],
               models_dir) == EXIT_OK
    written = report.read_bytes()
    assert b"a.jpg" in written
    (photos / "a.jpg").unlink()  # the drive is gone: its mount point is left, empty
    capsys.readouterr()
    code = run([photos, "--reference", reference, "--csv", report, "--no-index"], models_dir)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert "the photos folder is empty" in err and len(err.strip().splitlines()) == 1, err
    assert report.read_bytes() == written
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        assert run([tmp_path / "pipe", "--reference", reference], models_dir) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "is not a folder" in err and "not found" not in err, err


# --------------------------------------------------------------------------- 7. console


def test_listing_shows_ten_paths_then_how_many_more(
        celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Past 10 matches a person's listing stops with '... and N more'; --list all shows all."""
    photos, reference = album(celebrities, tmp_path, {})
    source = Image.open(val_photo(celebrities, "madonna")).convert("RGB")
    for i in range(12):  # one pixel differs, so each is a photo of its own
        copy = source.copy()
        copy.putpixel((i, 0), (i * 20, 7, 9))
        copy.save(photos / f"IMG_{i:02d}.jpg", quality=92)
    assert run([photos, "--reference", reference], models_dir) == EXIT_OK
    out = capsys.readouterr().out
    assert "madonna: 12 photos" in out
    assert len(listed_paths(out, "madonna")) == 10, out
    assert re.search(r"^\s*\.\.\. and 2 more\b", out, re.MULTILINE), out
    assert run([photos, "--reference", reference, "--list", "all"], models_dir) == EXIT_OK
    out = capsys.readouterr().out
    assert len(listed_paths(out, "madonna")) == 12, out
    assert "more" not in out


def test_warm_rerun_repeats_no_reference_notice_and_claims_no_speed(
        celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A reference notice is told once per index; a run read wholly from it gives no speed."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0),
                                                     "b.jpg": ("madonna", 2)})
    gradient = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    gradient.save(reference / "madonna" / "sky.jpg")
    assert run([photos, "--reference", reference], models_dir) == EXIT_OK
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "sky.jpg" in line and "no face found" in line]
    assert run([photos, "--reference", reference], models_dir) == EXIT_OK
    out, err = capsys.readouterr()
    assert "sky.jpg" not in err and "no face found" not in err, err
    assert "madonna: 2 photos" in out
    assert "files/s" not in out + err and "photos/s" not in out + err, out


# --------------------------------------------------------------------------- 8. dates


def test_capture_time_and_where_it_comes_from(celebrities: Path, models_dir: Path,
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The camera date (EXIF) is used and said; without one the file date is used and marked."""
    photos, reference = album(celebrities, tmp_path, {"plain.jpg": ("madonna", 2)})
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2004:06:30 12:34:56"  # DateTimeOriginal
    Image.open(val_photo(celebrities, "madonna", 0)).convert("RGB").save(
        photos / "camera.jpg", exif=exif, quality=92)
    set_mtime(photos / "camera.jpg", "2015-03-03")  # must lose to the camera's date
    set_mtime(photos / "plain.jpg", "2011-01-02")
    report = tmp_path / "found.csv"
    assert run([photos, "--reference", reference, "--csv", report], models_dir) == EXIT_OK
    out = capsys.readouterr().out
    with report.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = {row["path"]: row for row in reader}
        assert reader.fieldnames is not None
        assert {"taken", "taken_from"} <= set(reader.fieldnames)
    assert rows["camera.jpg"]["taken_from"] == "exif"
    assert rows["camera.jpg"]["taken"].startswith("2004-06-30")
    assert rows["plain.jpg"]["taken_from"] == "file time"
    assert rows["plain.jpg"]["taken"].startswith("2011-01-02")
    camera = next(line for line in out.splitlines() if "camera.jpg" in line)
    plain = next(line for line in out.splitlines() if "plain.jpg" in line)
    assert "2004-06-30" in camera and "*" not in camera, camera
    assert "2011-01-02*" in plain, plain
    assert [line for line in out.splitlines() if line.startswith("*")], out


def test_a_file_date_follows_the_file_not_the_index(
        celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without a camera date the photo's date is the file's own: when that changes
    (touched, copied with a new date) the face index answers with the date the file has
    now, as a run without the index does, not the one it had when it was read."""
    photos, reference = album(celebrities, tmp_path, {"plain.jpg": ("madonna", 2)})
    set_mtime(photos / "plain.jpg", "2011-01-02")
    report = tmp_path / "found.csv"
    args = [photos, "--reference", reference, "--csv", report, "--index", tmp_path / "i.db"]
    assert run(args, models_dir) == EXIT_OK
    set_mtime(photos / "plain.jpg", "2004-06-30")
    capsys.readouterr()
    assert run([*args, "--since", "2004", "--until", "2004"], models_dir) == EXIT_OK
    assert "Files read and analysed in this run: 0" in capsys.readouterr().out
    with report.open(encoding="utf-8-sig", newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert rows["plain.jpg"]["taken"].startswith("2004-06-30")
    assert rows["plain.jpg"]["taken_from"] == "file time"


# --------------------------------------------------------------------------- 9. demo


def test_demo_says_how_many_of_each_persons_photos_were_found(
        models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With no PHOTOS_DIR the demo runs and scores itself: 'N of M found' per person."""
    code = main(["--models", str(models_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    scores = {m[1]: (int(m[2]), int(m[3]))
              for m in re.finditer(r"^\s+(.+?): (\d+) of (\d+) found$", out, re.MULTILINE)}
    assert scores, out
    with (models_dir / "demo-album" / "truth.csv").open(encoding="utf-8", newline="") as handle:
        truth = Counter(person for row in csv.DictReader(handle)
                        for person in row["people"].split(";"))
    assert set(scores) == set(truth), out
    for person, (found, total) in scores.items():
        assert total == truth[person] and 0 < found <= total, (person, found, total)


# --------------------------------------------------------------------------- 10. index info


def test_index_info_is_plain_words_and_says_the_check_passed(
        celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--index-info shows no internal key text and says the integrity check passed."""
    photos, reference = album(celebrities, tmp_path, {"a.jpg": ("madonna", 0)})
    assert run([photos, "--reference", reference], models_dir) == EXIT_OK
    capsys.readouterr()
    assert main(["--index-info"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Integrity check: passed" in out, out
    assert "weights=" not in out and "{" not in out and "}" not in out, out
    assert str(photos) in out


def test_index_info_on_an_index_of_the_first_version_is_plain_words_too(
        models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--index-info on a v1 index (not yet upgraded by a search) shows no internal key text."""
    from legacy_v1 import (
        FACENET_WEIGHT_FILES,
        content_key,
        v1_analysis_key,
        v1_weights_fingerprint,
        write_v1_index,
    )

    photos = tmp_path / "photos"
    photos.mkdir()
    sky = photos / "sky.jpg"
    Image.linear_gradient("L").convert("RGB").save(sky)
    size = sky.stat().st_size
    manifest = json.loads((models_dir / "manifest.json").read_text(encoding="utf-8"))
    weights = v1_weights_fingerprint(manifest["files"], FACENET_WEIGHT_FILES)
    index = tmp_path / "v1.sqlite"
    write_v1_index(index, str(photos), [{
        "rel": "sky.jpg", "bytes": size, "mtime_ns": sky.stat().st_mtime_ns,
        "key": content_key(sky, size), "kind": "image", "width": 256, "height": 256,
        "faces": [],
    }], key=v1_analysis_key(weights=weights))
    assert main(["--index-info", "--index", str(index)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Integrity check: passed" in out, out
    assert "weights=" not in out and "v1 Facenet" not in out, out
    assert "{" not in out and "}" not in out, out
    # v1's analyses are today's (a search answers from them), so they are not "older".
    assert "no longer used" not in out, out
    assert "Facenet" in out, out


def test_the_answer_says_every_condition_of_the_question() -> None:
    """The answer's heading names the people and every filter, so it reads as asked."""
    from facefinder.cli_options import build_parser
    from facefinder.console import question_of

    args = build_parser().parse_args(["x", "--any", "Anna", "Ben", "--without", "Carl",
                                      "--since", "2004", "--max-faces", "1"])
    assert question_of(args) == ("Files showing Anna or Ben, without Carl, since 2004, "
                                 "with at most 1 face")
    assert question_of(build_parser().parse_args(["x"])) is None
