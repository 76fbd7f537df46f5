"""The user's decisions: stored in the index, honoured by every run, never lost.

Unit tests of the rule (``Verdicts`` + ``match_file``) on made-up vectors, then the real
thing: a search over real faces, decisions stored in its index, and later runs, reports,
``--prune`` and a schema upgrade that must all keep them.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from facefinder import Finder
from facefinder.api import open_index
from facefinder.cli import main
from facefinder.decisions import Verdicts, check_name
from facefinder.index import SCHEMA_VERSION
from facefinder.match import Gallery, match_file
from facefinder.records import Decision, Face, FileResult, face_id, parse_face_id
from facefinder.review import export_references

KEY = bytes(range(16))


def _unit(*values: float) -> np.ndarray:
    v = np.array(values, np.float32)
    return v / np.linalg.norm(v)


def _face(vector: np.ndarray, x: int = 0) -> Face:
    return Face((x, 0, 50, 50), np.zeros((5, 2), np.float32), 0.9, vector)


ANNA, BEN = _unit(1, 0, 0), _unit(0, 1, 0)
GALLERY = Gallery.build({"Anna": [ANNA], "Ben": [BEN]})


def _photo(*vectors: np.ndarray) -> FileResult:
    return FileResult("a.jpg", "image", (200, 100),
                      [_face(v, 60 * i) for i, v in enumerate(vectors)], key=KEY)


def test_face_ids_round_trip_and_refuse_anything_else() -> None:
    assert parse_face_id(face_id(KEY, 7)) == (KEY, 7)
    for bad in ("", "../etc/passwd", "00-1", f"{KEY.hex()}-", f"{KEY.hex()}-x",
                f"{'zz' * 16}-1", f"{KEY.hex()}-1/2", f"{KEY.hex()}-99999999"):
        with pytest.raises(ValueError):
            parse_face_id(bad)


def test_names_must_work_as_folder_names_everywhere() -> None:
    assert check_name("  Grandma   Rose ") == "Grandma Rose"
    assert check_name("Zoë") == "Zoë"
    for bad in ("", "   ", "a/b", "a\\b", "..", "x.", "a:b", "bell\x07", "x" * 101, "<b>"):
        with pytest.raises(ValueError):
            check_name(bad)


def test_a_yes_replaces_the_faces_other_yes_and_a_no_undoes_a_yes() -> None:
    verdicts = Verdicts([Decision(KEY, 0, "Anna", "yes", (0, 0, 9, 9), None, ANNA)],
                        names=["Anna"])
    assert verdicts.people() == ["Anna"] and len(verdicts.confirmed_vectors("anna")) == 1
    verdicts.add(Decision(KEY, 0, "Ben", "yes", (0, 0, 9, 9), None, ANNA))
    assert verdicts.people() == ["Ben"] and verdicts.verdict(KEY, 0)[0] == "Ben"
    verdicts.add(Decision(KEY, 0, "ben", "no", (0, 0, 9, 9)))
    assert verdicts.people() == [] and verdicts.verdict(KEY, 0) == (None, {"ben"})
    verdicts.remove(KEY, 0, "Ben")
    assert verdicts.verdict(KEY, 0) == (None, set())


def test_rejected_face_is_never_that_person_and_confirmed_face_always_is() -> None:
    near_anna = _unit(1, 0.2, 0)  # distance ~0.02 to Anna
    far = _unit(1, 1.3, 0.2)  # over the threshold for both
    matches, _ = match_file(_photo(near_anna), GALLERY, 0.32)
    assert [m.person for m in matches] == ["Anna"] and matches[0].face == face_id(KEY, 0)

    no = Verdicts([Decision(KEY, 0, "Anna", "no", (0, 0, 50, 50))])
    matches, maybes = match_file(_photo(near_anna), GALLERY, 0.32, no, 0.5)
    assert matches == [] and maybes == []  # not Anna; and too far from Ben

    yes = Verdicts([Decision(KEY, 1, "Ben", "yes", (60, 0, 50, 50), None, far)])
    matches, _ = match_file(_photo(near_anna, far), GALLERY, 0.32, yes)
    assert {(m.person, m.confirmed, m.box[0]) for m in matches} == {
        ("Anna", False, 0), ("Ben", True, 60)}


def test_a_face_confirmed_as_someone_not_searched_is_nobody_elses() -> None:
    verdicts = Verdicts([Decision(KEY, 0, "Carl", "yes", (0, 0, 50, 50), None, ANNA)])
    matches, maybes = match_file(_photo(ANNA), GALLERY, 0.32, verdicts, 0.9)
    assert matches == [] and maybes == []


def test_maybe_is_the_nearest_face_just_over_the_threshold() -> None:
    over = _unit(1, 0.85, 0)  # ~0.24 from Anna at a 0.2 threshold
    matches, maybes = match_file(_photo(over), GALLERY, 0.2, None, 0.3)
    assert matches == [] and [(m.person, m.face) for m in maybes] == [("Anna", face_id(KEY, 0))]
    assert match_file(_photo(over), GALLERY, 0.2, None, 0.22)[1] == []


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def indexed(celeb_album: Path, models_dir: Path, tmp_path: Path):
    """(finder, photos folder, index path) after one search of a copy of the album."""
    photos = tmp_path / "photos"
    shutil.copytree(celeb_album / "collection", photos)
    index = tmp_path / "faces.sqlite"
    finder = Finder(celeb_album / "reference", models=models_dir, index=index, jobs=2)
    yield finder, photos, index
    finder.close()


def _decide(finder: Finder, index_path: Path, decision: Decision) -> None:
    with open_index(index_path) as index:
        kind_id = finder.settings_ids(index)["image"]
        assert kind_id is not None
        index.decide(kind_id, decision)


def test_a_rejected_match_stays_out_of_every_later_run_report_and_copy(
        indexed, models_dir: Path, tmp_path: Path) -> None:
    finder, photos, index = indexed
    first = finder.find(photos)
    wrong = first.matches[0]
    key, n = parse_face_id(wrong.face)
    _decide(finder, index, Decision(key, n, wrong.person, "no", wrong.box))

    again = finder.find(photos)
    assert (wrong.rel, wrong.person) not in {(m.rel, m.person) for m in again.matches}
    assert len(again.matches) == len(first.matches) - 1
    assert again.summary.files_decoded == 0  # decisions need no new analysis

    out, copies = tmp_path / "run.csv", tmp_path / "found"
    assert main([str(photos), "--reference", str(finder.reference), "--index", str(index),
                 "--models", str(models_dir), "--no-progress", "--csv", str(out),
                 "--copy", str(copies)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert (wrong.rel, wrong.person) not in {(r["path"], r["person"]) for r in rows}
    assert not (copies / wrong.person / wrong.rel).exists()
    assert len(rows) == len(again.matches)


def test_a_confirmed_face_is_found_whatever_the_threshold_and_becomes_a_reference(
        indexed, tmp_path: Path) -> None:
    finder, photos, index = indexed
    strict = finder.find(photos, threshold=0.1)
    loose = finder.find(photos)
    missed = next(m for m in loose.matches
                  if (m.rel, m.person) not in {(s.rel, s.person) for s in strict.matches})
    key, n = parse_face_id(missed.face)
    file = next(f for f in loose.files if f.rel == missed.rel)
    _decide(finder, index, Decision(key, n, missed.person, "yes", missed.box, None,
                                    file.faces[n].embedding))
    after = finder.find(photos, threshold=0.1)
    found = {(m.rel, m.person): m for m in after.matches}
    assert found[(missed.rel, missed.person)].confirmed
    assert found[(missed.rel, missed.person)].distance == 0.0
    assert after.confirmed_faces == {missed.person: 1}


def test_a_name_given_on_the_page_is_a_person_without_a_folder(
        indexed, models_dir: Path, tmp_path: Path) -> None:
    finder, photos, index = indexed
    result = finder.find(photos)
    file = result.files[0]
    _decide(finder, index, Decision(file.key, 0, "New Friend", "yes", file.faces[0].box,
                                    None, file.faces[0].embedding))
    again = finder.find(photos)
    assert "New Friend" in again.people
    assert ("New Friend", file.rel) in {(m.person, m.rel) for m in again.matches}
    # and the same face is nobody else's now
    assert [m.person for m in again.matches if m.rel == file.rel] == ["New Friend"]
    exported = tmp_path / "refs"
    assert export_references(index, exported) == (1, 0, 0)
    assert export_references(index, exported) == (0, 1, 0)  # never overwritten
    (crop,) = (exported / "New Friend").iterdir()
    assert Finder(exported, models=models_dir).faces(crop).faces  # a usable reference


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="a read-only mount needs unshare and root")
def test_a_no_holds_for_new_settings_on_an_index_that_cannot_keep_them(
        indexed, celeb_album: Path, models_dir: Path, tmp_path: Path) -> None:
    """Other settings (--min-face) on a write-protected stick: the new analysis cannot be
    stored, so nothing is carried into the index, yet the user's no still holds."""
    import json
    import subprocess
    import sys

    from conftest import ROOT

    finder, photos, index = indexed
    first = finder.find(photos)
    wrong = first.matches[0]
    key, n = parse_face_id(wrong.face)
    _decide(finder, index, Decision(key, n, wrong.person, "no", wrong.box))
    finder.close()
    out = tmp_path.parent / f"{tmp_path.name}-ro.json"
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from facefinder.cli import main; "
            f"sys.exit(main([{str(photos)!r}, '--reference', "
            f"{str(celeb_album / 'reference')!r}, '--index', {str(index)!r}, '--models', "
            f"{str(models_dir)!r}, '--no-progress', '--jobs', '1', '--min-face', '41', "
            f"'--json', {str(out)!r}]))")
    folder = index.parent
    script = (f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && '
              f'exec "{sys.executable}" -c "$0"')
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, code], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "is only read this run" in done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["summary"]["files_decoded"] > 0  # analysed anew, not kept
    found = {(m["path"], m["person"]) for m in report["matches"]}
    assert (wrong.rel, wrong.person) not in found
    assert len(found) >= len(first.matches) - 2


def test_decisions_outlive_prune_and_come_back_with_the_photo(indexed) -> None:
    finder, photos, index = indexed
    result = finder.find(photos)
    wrong = result.matches[0]
    key, n = parse_face_id(wrong.face)
    _decide(finder, index, Decision(key, n, wrong.person, "no", wrong.box))
    moved = photos.parent / "elsewhere.jpg"
    shutil.move(photos / wrong.rel, moved)
    finder.find(photos)
    from facefinder import api

    assert api.prune(index, photos)[1] >= 1  # its content is forgotten ...
    with open_index(index) as opened:
        assert len(opened.decisions(None)) == 1  # ... its decision is not
    shutil.move(moved, photos / wrong.rel)
    back = finder.find(photos)
    assert back.summary.files_decoded == 1
    assert (wrong.rel, wrong.person) not in {(m.rel, m.person) for m in back.matches}


def test_a_schema_2_index_is_upgraded_and_keeps_every_file(indexed) -> None:
    finder, photos, index = indexed
    first = finder.find(photos)
    conn = sqlite3.connect(index)
    for table in ("decisions", "face_clusters", "clusters", "object_settings",
                  "object_analyses", "objects"):  # schema 3's and 4's tables
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    again = finder.find(photos)
    assert again.summary.files_decoded == 0
    assert sorted((m.rel, m.person) for m in again.matches) == sorted(
        (m.rel, m.person) for m in first.matches)
    conn = sqlite3.connect(index)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert conn.execute("SELECT count(*) FROM decisions").fetchone()[0] == 0
    conn.close()


def test_a_wrong_photo_among_the_references_is_named_and_coverage_is_summarised(
        celebrities: Path, models_dir: Path, tmp_path: Path) -> None:
    """Someone else's photo in Madonna's folder would make the finder search for them
    too: it is named. Each person's reference set is summarised with what to add."""
    from conftest import copy_references

    refs = copy_references(celebrities, tmp_path, ["madonna"], 4)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "notes.txt").write_text("no photo: only the references are looked at")
    with Finder(refs, models=models_dir, jobs=1) as finder:
        stranger = next(p for p in sorted((celebrities / "train" / "elton_john").glob("*.jpg"))
                        if [f for f in finder.faces(p).faces if f.embedding is not None])
        shutil.copy(stranger, refs / "madonna" / "zz_not_her.jpg")
        result = finder.find(photos)
    notes = {n.rel: n.text for n in result.reference_notes}
    assert "unlike madonna's other reference photos" in notes["madonna/zz_not_her.jpg"]
    assert not any("unlike" in text for rel, text in notes.items()
                   if rel != "madonna/zz_not_her.jpg")
    assert notes["madonna"].startswith("5 reference faces")
    assert "add" in notes["madonna"]


def test_a_model_without_a_calibrated_rule_searches_at_its_own_threshold(
        indexed, monkeypatch) -> None:
    """``--model dlib`` has no calibrated rule: its plain default threshold, no expansion
    (not a cutoff of 0, which would find nothing)."""
    from facefinder import decide

    finder, photos, _index = indexed
    with_rule = finder.find(photos)
    monkeypatch.delitem(decide.RULES, "facenet")
    plain = finder.find(photos)
    assert plain.matches and set(plain.thresholds.values()) == {0.32}
    assert plain.expanded_faces == {}
    assert {(m.rel, m.person) for m in plain.matches} <= {
        (m.rel, m.person) for m in with_rule.matches}


def test_interrupted_search_still_reports_what_it_saw(indexed) -> None:
    """Ctrl-C after some files: their matches are decided and kept (the partial report
    and the listing are made from them)."""
    from facefinder import FileDone

    finder, photos, _index = indexed

    def on_event(event: object) -> None:
        if isinstance(event, FileDone) and event.done >= 12:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of the search

    result = finder.find(photos, on_event=on_event)
    assert result.interrupted and result.matches
    seen = {f.rel for f in result.files}
    assert {m.rel for m in result.matches} <= seen


KEY = b"k" * 16  # the one photo of the analyses below


@contextlib.contextmanager
def _two_analyses(tmp_path: Path, first: str, second: str):
    """(a new index, the ids of two analyses named ``first`` and ``second``, the id of
    the folder "/photos"), the index closed afterwards."""
    from facefinder.index import FaceIndex

    with FaceIndex.open(tmp_path / "i.sqlite") as index:
        one, two = index.settings_id(first), index.settings_id(second)
        root = index.root_id("/photos")
        assert one is not None and two is not None and root is not None
        yield index, one, two, root


def _record(index, settings: int, key: bytes, root: int,
            faces: list[tuple[int, float]]) -> None:
    """Queue "a.jpg" analysed under ``settings`` with faces (x, value): 50x60 boxes at
    x, vectors full of value."""
    index.record(settings, key, 10, FileResult(
        rel="a.jpg", kind="image", size=(400, 100),
        faces=[Face(box=(x, 10, 50, 60), landmarks=np.zeros((5, 2), np.float32), score=0.9,
                    embedding=np.full(128, value, np.float32)) for x, value in faces]),
        root, "a.jpg", 1)


def test_decisions_follow_a_photo_to_a_new_analysis_of_it(tmp_path: Path) -> None:
    """A new finder version re-analyses photos (another detector, other settings) and
    numbers their faces afresh: every yes/no moves to the face at the same place."""
    key = KEY
    with _two_analyses(tmp_path, "old pipeline", "new pipeline") as (index, old, new, root):
        _record(index, old, key, root, [(0, 1.0), (200, 2.0)])
        index.flush()
        index.decide(old, Decision(key, 0, "Anna", "yes", (0, 10, 50, 60)))
        index.decide(old, Decision(key, 1, "Anna", "no", (200, 10, 50, 60)))
        # The new detector finds a third face first and shifts the boxes a little.
        _record(index, new, key, root, [(330, 3.0), (205, 4.0), (4, 5.0)])
        index.flush()
        carried = {(d.n, d.person, d.verdict) for d in index.decisions([new])}
        assert carried == {(2, "Anna", "yes"), (1, "Anna", "no")}
        yes = next(d for d in index.decisions([new]) if d.verdict == "yes")
        assert yes.box == (4, 10, 50, 60) and yes.embedding is not None
        assert float(yes.embedding[0]) == 5.0  # the new analysis's vector joins the gallery
        assert {(d.n, d.verdict) for d in index.decisions([old])} == {(0, "yes"), (1, "no")}
        # counted once each, though kept under both analyses
        assert index.info().decisions == (1, 1, 1)


def test_an_answer_reaches_every_analysis_the_index_already_holds(tmp_path: Path) -> None:
    """The user switched --model (or --min-face) and back: an answer given under one
    analysis holds under the other one too, already in the index, on the face at the
    same place with that analysis's own vector; an undo takes it back from both."""
    key = KEY
    with _two_analyses(tmp_path, "Facenet", "dlib") as (index, one, two, root):
        _record(index, one, key, root, [(0, 1.0), (200, 2.0)])
        _record(index, two, key, root, [(203, 3.0), (2, 4.0)])
        index.flush()
        index.decide(one, Decision(key, 1, "Anna", "no", (200, 10, 50, 60)))
        index.decide(two, Decision(key, 1, "Ben", "yes", (2, 10, 50, 60),
                                   embedding=np.full(128, 4.0, np.float32)))
        assert {(d.n, d.person, d.verdict) for d in index.decisions([one])} == {
            (1, "Anna", "no"), (0, "Ben", "yes")}
        assert {(d.n, d.person, d.verdict) for d in index.decisions([two])} == {
            (0, "Anna", "no"), (1, "Ben", "yes")}
        ben = next(d for d in index.decisions([one]) if d.person == "Ben")
        assert ben.box == (0, 10, 50, 60) and float(ben.embedding[0]) == 1.0
        assert index.info().decisions == (1, 1, 1)  # each answer counted once
        index.undecide(two, key, 0, "Anna")  # undone under the other analysis
        assert {(d.n, d.person) for d in index.decisions([one])} == {(0, "Ben")}
        assert {(d.n, d.person) for d in index.decisions([two])} == {(1, "Ben")}


def test_the_first_run_of_a_new_finder_version_already_honours_every_decision(
        indexed, celeb_album: Path, models_dir: Path) -> None:
    """A new version analyses the photos again (other settings): in that very run a photo
    the user said no to stays out, and a person named only on the page is still a
    person who can be searched for."""
    from facefinder.analyse import AnalysisSettings

    finder, photos, index = indexed
    first = finder.find(photos)
    wrong = first.matches[0]
    key, n = parse_face_id(wrong.face)
    _decide(finder, index, Decision(key, n, wrong.person, "no", wrong.box))
    named = next(m for m in first.matches if m.rel != wrong.rel)
    key, n = parse_face_id(named.face)
    file = next(f for f in first.files if f.key == key)
    _decide(finder, index, Decision(key, n, "Zed", "yes", named.box, None,
                                    file.faces[n].embedding))

    reference = celeb_album / "reference"
    with Finder(reference, models=models_dir, index=index, jobs=2,
                settings=AnalysisSettings(min_face=41)) as upgraded:
        anew = upgraded.find(photos)  # the run that analyses every photo anew
        assert anew.summary.files_decoded > 0
        assert (wrong.rel, wrong.person) not in {(m.rel, m.person) for m in anew.matches}
        assert "Zed" in anew.people
    with Finder(reference, models=models_dir, index=index, jobs=2,
                settings=AnalysisSettings(min_face=42)) as upgraded:
        zed = upgraded.find(photos, people=["Zed"])  # named on the page only, then re-read
        assert zed.summary.files_decoded > 0
        assert [(m.rel, m.person, m.confirmed) for m in zed.matches
                if m.rel == named.rel] == [(named.rel, "Zed", True)]


def test_the_review_page_keeps_a_no_carried_in_memory_on_a_full_disk(
        indexed, celeb_album: Path, models_dir: Path, monkeypatch) -> None:
    """A new analysis of every photo (other settings) on an index whose disk is full: the
    user's no is carried to the new analysis in memory only. The review page shows what
    that search decided, and a refresh keeps it, so the photo said no to is not back."""
    from facefinder.analyse import AnalysisSettings
    from facefinder.index import FaceIndex
    from facefinder.review import Review

    finder, photos, index = indexed
    first = finder.find(photos)
    wrong = first.matches[0]
    key, n = parse_face_id(wrong.face)
    _decide(finder, index, Decision(key, n, wrong.person, "no", wrong.box))

    def full(*_args, **_kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(FaceIndex, "store", full)  # no analysis can be written now
    with Finder(celeb_album / "reference", models=models_dir, index=index, jobs=2,
                settings=AnalysisSettings(min_face=41)) as upgraded:
        review = Review(upgraded, photos)
        for _ in range(2):  # as opened, and after a refresh (the page's "search again")
            assert review.result.summary.not_kept_in_index > 0  # nothing of it was kept
            found = {(m.rel, m.person) for m in review.result.matches}
            assert (wrong.rel, wrong.person) not in found
            assert len(found) >= len(first.matches) - 2
            assert wrong.person in review.verdicts.verdict(key, n)[1]
            review.refresh()
        # the user takes the no back: it stays taken back, in the index too (the analysis
        # it was said of would otherwise bring it back at the next search)
        review.decide(wrong.face, wrong.person, "undo")
        for _ in range(2):
            assert wrong.person not in review.verdicts.verdict(key, n)[1]
            assert (wrong.rel, wrong.person) in {(m.rel, m.person)
                                                 for m in review.result.matches}
            review.refresh()
    with open_index(index) as opened:
        assert not [d for d in opened.decisions(None) if d.person == wrong.person]
