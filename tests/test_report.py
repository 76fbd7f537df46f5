"""Reports: exact CSV/JSON formats, atomic writes, console text that never crashes."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from facefinder.records import FileResult, Match, ObjectBox
from facefinder.report import (
    CSV_COLUMNS,
    format_answer,
    format_results,
    format_summary,
    safe_print,
    write_csv,
    write_json,
)

MATCHES = [
    Match("2020/b.jpg", "Zoë", 0.3, (5, 6, 7, 8)),
    Match('2019/Zoë, "beach".jpg', "Zoë", np.float32(0.123456), (10, 20, 30, 40)),
    Match("2020/b.jpg", "Anna", 0.55557, (np.int64(1), 2, 3, 4)),
]


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial-" in p.name]


def test_csv_header_and_rows_exact(tmp_path: Path) -> None:
    out = tmp_path / "matches.csv"
    write_csv(out, MATCHES, model="facenet512", threshold=0.6)
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM, so Excel on Windows reads UTF-8
    text = raw[3:].decode("utf-8")
    assert text.split("\r\n") == [
        "path,person,distance,box,model,threshold,taken,taken_from,confidence",
        '"2019/Zoë, ""beach"".jpg",Zoë,0.1235,"10,20,30,40",facenet512,0.6,,,',
        '2020/b.jpg,Anna,0.5556,"1,2,3,4",facenet512,0.6,,,',
        '2020/b.jpg,Zoë,0.3000,"5,6,7,8",facenet512,0.6,,,',
        "",
    ]
    assert leftovers(tmp_path) == []


def test_csv_objects_column_and_rows_for_files_with_objects_alone(tmp_path: Path) -> None:
    """--objects: a last ``objects`` column; a file nobody matched gets a row of its own,
    its cells under the right headers even with the video columns present."""
    out = tmp_path / "matches.csv"
    video = Match("clip.mp4", "Anna", 0.25, (1, 2, 3, 4), taken="2021-05-01 10:00:00",
                  taken_from="video", first=1.0, last=4.0, frames=3)
    cat = FileResult(rel="=cat.jpg", kind="image", taken="2020-01-02 03:04:05",
                     taken_from="exif", objects=[ObjectBox("cat", 0.8, (5, 6, 7, 8))])
    seen = FileResult(rel="clip.mp4", kind="video",
                      objects=[ObjectBox("dog", 0.91, (0, 0, 9, 9), time=2.0)])
    write_csv(out, [video], model="m", threshold=0.3, object_files=[seen, cat])
    with open(out, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == (*CSV_COLUMNS, "first_s", "last_s",
                                                   "frames", "objects")
        rows = list(reader)
    assert [(r["path"], r["person"], r["objects"]) for r in rows] == [
        ("clip.mp4", "Anna", "dog 0.91"), ("'=cat.jpg", "", "cat 0.80")]
    alone = rows[1]
    assert (alone["model"], alone["taken"], alone["taken_from"]) == (
        "m", "2020-01-02 03:04:05", "exif")
    assert all(alone[c] == "" for c in ("distance", "box", "threshold", "confidence",
                                        "first_s", "last_s", "frames"))


def test_csv_round_trips_through_dictreader(tmp_path: Path) -> None:
    out = tmp_path / "matches.csv"
    write_csv(out, MATCHES, model="m", threshold=0.6)
    with open(out, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert [(r["path"], r["person"]) for r in rows] == sorted((m.rel, m.person) for m in MATCHES)
    first = rows[0]
    assert first["path"] == '2019/Zoë, "beach".jpg'
    assert tuple(int(v) for v in first["box"].split(",")) == (10, 20, 30, 40)
    assert float(first["distance"]) == 0.1235
    assert float(first["threshold"]) == 0.6


def test_csv_reads_with_pandas(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    out = tmp_path / "matches.csv"
    write_csv(out, MATCHES, model="m", threshold=0.6)
    frame = pd.read_csv(out)
    assert list(frame.columns) == list(CSV_COLUMNS)
    assert len(frame) == 3


def test_empty_csv_has_header_only(tmp_path: Path) -> None:
    out = tmp_path / "matches.csv"
    write_csv(out, [], model="m", threshold=0.5)
    assert out.read_bytes() == (b"\xef\xbb\xbfpath,person,distance,box,model,threshold,"
                                b"taken,taken_from,confidence\r\n")


def test_reports_replace_old_reports_but_never_a_photo(tmp_path: Path) -> None:
    out = tmp_path / "matches.csv"
    write_csv(out, MATCHES, model="m", threshold=0.6)
    write_csv(out, MATCHES[:1], model="m", threshold=0.6)  # a re-run replaces its own report
    assert len(out.read_text(encoding="utf-8-sig").splitlines()) == 2

    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 jpeg bytes")
    with pytest.raises(FileExistsError):
        write_csv(photo, MATCHES, model="m", threshold=0.6)
    with pytest.raises(FileExistsError):
        write_json(photo, matches=MATCHES, unreadable=[], summary={}, model="m", threshold=0.6)
    assert photo.read_bytes() == b"\xff\xd8\xff\xe0 jpeg bytes"
    assert leftovers(tmp_path) == []


def test_a_file_that_only_looks_like_a_report_is_never_replaced(tmp_path: Path) -> None:
    """Blank lines ahead of a user's text do not make it empty, and a JSON file with a
    "model" and a "threshold" of its own is not an old report of this finder."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": "resnet50", "threshold": 0.7, "notes": "mine"},
                                 indent=2))
    padded = tmp_path / "contacts.csv"
    padded.write_text("\n" * 300 + "name,phone\nGrandma,555-1234\n")
    theirs = {path: path.read_bytes() for path in (config, padded)}
    with pytest.raises(FileExistsError):
        write_json(config, matches=MATCHES, unreadable=[], summary={}, model="m",
                   threshold=0.6)
    with pytest.raises(FileExistsError):
        write_csv(padded, MATCHES, model="m", threshold=0.6)
    assert {path: path.read_bytes() for path in theirs} == theirs
    # what earlier versions wrote (no marker yet) and an empty file are still replaced
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"model": "Facenet", "threshold": 0.32, "matches": [],
                               "unreadable": [], "summary": {}}, indent=2))
    blank = tmp_path / "blank.csv"
    blank.write_text("\n")
    write_json(old, matches=MATCHES, unreadable=[], summary={}, model="m", threshold=0.6)
    write_csv(blank, MATCHES, model="m", threshold=0.6)
    assert json.loads(old.read_text())["facefinder"] == "report"
    assert blank.read_text(encoding="utf-8-sig").startswith("path,")


def test_crash_while_writing_keeps_old_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report.json"
    write_json(out, matches=MATCHES, unreadable=[], summary={}, model="m", threshold=0.6)
    before = out.read_bytes()

    def boom(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        write_json(out, matches=[], unreadable=[], summary={}, model="m", threshold=0.6)
    assert out.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_json_layout(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "report.json"
    unreadable = [("broken/x.heic", "cannot identify image file"), ("bad\udcff.jpg", "truncated")]
    summary = {
        "files_scanned": np.int64(10),
        "matches_per_person": {"Zoë": 2, "Anna": 1},
        "unreadable": unreadable,
        "elapsed_s": np.float64(1.5),
    }
    write_json(
        out, matches=MATCHES, unreadable=unreadable, summary=summary, model="m", threshold=0.6
    )
    raw = out.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert "Zoë".encode() in raw  # ensure_ascii=False
    doc = json.loads(raw.decode("utf-8"))
    assert list(doc) == ["facefinder", "model", "threshold", "matches", "unreadable", "summary"]
    assert doc["facefinder"] == "report"  # the marker that lets a later run replace it
    assert doc["model"] == "m" and doc["threshold"] == 0.6
    assert doc["matches"][0] == {
        "path": '2019/Zoë, "beach".jpg',
        "person": "Zoë",
        "distance": 0.1235,
        "box": [10, 20, 30, 40],
    }
    assert doc["unreadable"] == [
        {"path": "broken/x.heic", "reason": "cannot identify image file"},
        {"path": "bad\udcff.jpg", "reason": "truncated"},  # undecodable name survives exactly
    ]
    assert doc["summary"]["files_scanned"] == 10
    assert doc["summary"]["matches_per_person"] == {"Zoë": 2, "Anna": 1}
    assert leftovers(out.parent) == []


def test_format_results_lists_everyone() -> None:
    text = format_results(MATCHES, ["Anna", "Ben", "Zoë"], show_distance=False)
    assert text.splitlines() == [
        "Anna: 1 photo",
        "  (no date)    2020/b.jpg",
        "",
        "Ben: 0 photos",
        "  (not found in any photo)",
        "",
        "Zoë: 2 photos",
        '  (no date)    2019/Zoë, "beach".jpg',
        "  (no date)    2020/b.jpg",
    ]


def test_format_results_dates_oldest_first_and_marks_file_dates() -> None:
    matches = [Match("new.jpg", "Anna", 0.2, (0, 0, 9, 9), "2021-05-01 10:00:00", "exif"),
               Match("old.jpg", "Anna", 0.2, (0, 0, 9, 9), "1985-07-14 09:00:00", "file time")]
    lines = format_results(matches, ["Anna"], show_distance=False).splitlines()
    assert lines[1:3] == ["  1985-07-14*  old.jpg", "  2021-05-01   new.jpg"]
    assert lines[-1].startswith("* no camera date")


def test_format_results_shows_the_first_lines_then_a_count() -> None:
    matches = [Match(f"{i:03d}.jpg", "Anna", 0.2, (0, 0, 9, 9)) for i in range(25)]
    lines = format_results(matches, ["Anna"], show_distance=False, limit=10).splitlines()
    assert lines[0] == "Anna: 25 photos" and len(lines) == 12
    assert lines[-1].startswith("  ... and 15 more (--list all")
    every = format_results(matches, ["Anna"], show_distance=False, limit=None).splitlines()
    assert len(every) == 26


def test_format_answer_lists_each_file_once_with_who_is_in_it() -> None:
    matches = [Match("b.jpg", "Ben", 0.2, (0, 0, 9, 9), "2004-01-01 00:00:00", "exif"),
               Match("b.jpg", "Anna", 0.25, (9, 0, 9, 9), "2004-01-01 00:00:00", "exif"),
               Match("a.jpg", "Anna", 0.1, (0, 0, 9, 9), "2003-01-01 00:00:00", "exif")]
    text = format_answer(matches, "Files showing Anna or Ben", show_distance=False)
    assert text.splitlines() == ["Files showing Anna or Ben: 2 files",
                                 "  2003-01-01   a.jpg  - Anna",
                                 "  2004-01-01   b.jpg  - Anna, Ben"]


def test_format_results_with_distance_and_unknown_person() -> None:
    text = format_results(MATCHES, ["Zoë"], show_distance=True)
    lines = text.splitlines()
    assert lines[0] == "Zoë: 2 photos"
    assert lines[1].endswith("(0.123)")
    assert lines[2] == "  (no date)    2020/b.jpg  (0.300)"
    assert "Anna: 1 photo" in lines  # matched but not in people: still shown


def test_format_summary_full() -> None:
    unreadable = [(f"bad/{i:02d}.jpg", f"broken\nfile {i}") for i in range(25)]
    text = format_summary(
        {
            "files_scanned": 1234,
            "images_read": 1200,
            "faces_found": 3400,
            "faces_skipped": 120,
            "matches_per_person": {"Anna": 12, "Ben": 0},
            "files_decoded": 1000,
            "other_files": 31,
            "unreadable": unreadable,
            "elapsed_s": 83.0,
        }
    )
    lines = text.splitlines()
    assert lines[:7] == [
        "Files scanned: 1234",
        "Images: 1200",
        "Faces found: 3400",
        "Faces too small/blurry to trust: 120",
        "Files read and analysed in this run: 1000",
        "Other files ignored: 31",
        "Files that could not be read: 25",
    ]
    assert lines[7] == "  bad/00.jpg: broken file 0"
    assert lines[26] == "  bad/19.jpg: broken file 19"
    assert lines[27] == "  ... and 5 more (see --json)"
    assert lines[28] == "Time: 1 min 23 s (wall clock); 1000 files read at 12.0 files/s"
    assert len(lines) == 29


def test_format_summary_speed_is_wall_clock_and_only_for_files_read() -> None:
    """A warm run answered from the index claims no speed (it read nothing)."""
    warm = format_summary({"files_scanned": 1878, "files_decoded": 0, "from_index": 1878,
                           "elapsed_s": 0.2}, wall_s=1.5)
    assert warm.splitlines()[-1] == "Time: 1.5 s (wall clock)"
    assert "/s" not in warm


def test_format_summary_tolerates_missing_keys() -> None:
    assert format_summary({}) == ""
    assert format_summary({"files_scanned": 5, "elapsed_s": 0}) == (
        "Files scanned: 5\nTime: 0.0 s (wall clock)")
    assert "Files that could not be read: 0" in format_summary({"unreadable": []})


def test_safe_print_survives_legacy_code_page() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="cp1252", errors="strict")
    safe_print("Zoë 写真 \udcff", stream)
    stream.flush()
    assert raw.getvalue() == "Zoë ?? ?\n".encode("cp1252")


def test_safe_print_defaults_to_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    safe_print("Zoë: 2 photos")
    assert capsys.readouterr().out == "Zoë: 2 photos\n"
