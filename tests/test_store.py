"""The face index as a store: schema migrations, read-only use, commit policy, notices.

The old-format index is written by ``legacy_v1`` (a frozen copy of the v1 writer), from
faces computed by the real pipeline, so the migration is tested against the format that
users' sticks really hold.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_references, unshare_works
from legacy_v1 import (
    FACENET_WEIGHT_FILES,
    content_key,
    v1_analysis_key,
    v1_weights_fingerprint,
    write_v1_index,
)

from facefinder.analyse import AnalysisJob, analyse_files, analysis_key, upgrade_v1_key
from facefinder.cli import main
from facefinder.index import SCHEMA_VERSION, FaceIndex, IndexFileError
from facefinder.models.catalog import read_manifest
from facefinder.records import Face, FileResult
from facefinder.vision.registry import model_spec

PEOPLE = ["madonna", "elton_john"]


def _file_rows(root: Path, results: list[FileResult]) -> list[dict]:
    rows = []
    for result in results:
        path = root / result.rel
        info = os.stat(path)
        rows.append({
            "rel": result.rel, "root": str(root), "bytes": info.st_size,
            "mtime_ns": info.st_mtime_ns, "key": content_key(path, info.st_size),
            "kind": result.kind, "width": result.size[0] if result.size else None,
            "height": result.size[1] if result.size else None, "taken": result.taken,
            "taken_from": result.taken_from, "duration": result.duration,
            "error": result.error, "frames": result.frames,
            "faces": [{"box": f.box, "landmarks": f.landmarks, "score": f.score,
                       "embedding": f.embedding, "skipped": f.skipped, "time": f.time}
                      for f in result.faces],
        })
    return rows


@pytest.fixture
def v1_album(celebrities: Path, models_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(photos, reference, index): an album and a v1 index that already holds all of it."""
    refs = copy_references(celebrities, tmp_path, PEOPLE, 3)
    photos = tmp_path / "photos"
    for person in PEOPLE:
        for photo in sorted((celebrities / "val" / person).glob("*.jpg"))[:4]:
            target = photos / person[:3] / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(photo.read_bytes())
    job = AnalysisJob(model_spec("Facenet"), models_dir)
    rows = []
    for root in (refs, photos):
        items = [(p, p.relative_to(root).as_posix(), "image")
                 for p in sorted(root.rglob("*.jpg"))]
        rows += _file_rows(root, analyse_files(items, job))
    weights = v1_weights_fingerprint(read_manifest(models_dir), FACENET_WEIGHT_FILES)
    index = tmp_path / "v1.sqlite"
    write_v1_index(index, str(refs), rows, key=v1_analysis_key(weights=weights),
                   last_run={"date": "2026-11-22 10:00:00", "folder": str(photos)})
    return photos, refs, index


def _dump(path: Path) -> dict[str, list]:
    conn = sqlite3.connect(path)
    try:
        return {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall())
                for table in ("roots", "contents", "paths", "faces")}
    finally:
        conn.close()


def test_v1_index_migrates_keeps_every_face_and_reads_each_photo_once_more(
        v1_album, models_dir: Path, tmp_path: Path, capsys) -> None:
    """A stick's index from the first version loses nothing; its photos are read once
    more because the detector changed since (INT8 CenterFace, second look), and then
    never again."""
    photos, refs, index = v1_album
    before = _dump(index)
    args = [str(photos), "--reference", str(refs), "--index", str(index), "--models",
            str(models_dir), "--no-progress", "--jobs", "1", "--json"]
    first, warm_out = tmp_path / "first.json", tmp_path / "warm.json"
    assert main([*args, str(first)]) == 0
    assert "upgraded from schema 1" in capsys.readouterr().err
    summary = json.loads(first.read_text(encoding="utf-8"))["summary"]
    assert summary["files_decoded"] == 8 and summary["from_index"] == 0
    after = _dump(index)
    for table, rows in before.items():  # every v1 row is still there
        assert set(rows) <= set(after[table]), table
    assert main([*args, str(warm_out)]) == 0
    warm = json.loads(warm_out.read_text(encoding="utf-8"))
    assert warm["summary"]["files_decoded"] == 0
    assert warm["summary"]["references_decoded"] == 0
    assert warm["summary"]["from_index"] == 8
    conn = sqlite3.connect(index)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    keys = [key for (key,) in conn.execute("SELECT key FROM settings")]
    conn.close()
    job = AnalysisJob(model_spec("Facenet"), models_dir)
    assert analysis_key(job, "image") in keys
    fresh = tmp_path / "fresh.json"
    assert main([str(photos), "--reference", str(refs), "--no-index", "--json", str(fresh),
                 "--models", str(models_dir), "--no-progress", "--jobs", "1"]) == 0
    cold = json.loads(fresh.read_text(encoding="utf-8"))
    # the same matches; only the indexed run knows each face's id (the page's handle)
    assert [{k: v for k, v in m.items() if k != "face"} for m in warm["matches"]] == cold[
        "matches"] and cold["matches"]


def test_read_only_v1_index_is_read_without_being_changed(v1_album, models_dir) -> None:
    """An old index on a write-protected stick is still opened and read, in memory, and
    the file is not changed."""
    _photos, _refs, index = v1_album
    data = index.read_bytes()
    weights = v1_weights_fingerprint(read_manifest(models_dir), FACENET_WEIGHT_FILES)
    opened = FaceIndex.open(index, read_only=True, upgrade_key=upgrade_v1_key)
    try:
        upgraded = upgrade_v1_key(v1_analysis_key(weights=weights))
        assert upgraded is not None
        settings = opened.settings_id(upgraded)
        assert settings is not None
        contents = [c for (c,) in opened.conn.execute("SELECT id FROM contents")]
        assert len(opened.load(settings, contents)) == len(contents) == 14
        assert opened.new_notices(["x"]) == {"x"}  # v1 has no notices table: all are new
    finally:
        opened.close()
    assert index.read_bytes() == data


def test_v1_keys_upgrade_to_keys_never_mistaken_for_todays(models_dir: Path) -> None:
    """A v1 key maps to a key of the new form that keeps the old weights' fingerprint, so
    analyses made by the first version's detector are never served as today's."""
    weights = v1_weights_fingerprint(read_manifest(models_dir), FACENET_WEIGHT_FILES)
    job = AnalysisJob(model_spec("Facenet"), models_dir)
    image = upgrade_v1_key(v1_analysis_key(weights=weights))
    video = upgrade_v1_key(v1_analysis_key(weights=weights, fps=1.0))
    assert image is not None and video is not None and image != video
    assert json.loads(image)["weights"] == weights and "video_fps" in json.loads(video)
    assert image != analysis_key(job, "image") and video != analysis_key(job, "video")
    assert upgrade_v1_key(v1_analysis_key(weights=weights)) == image  # deterministic
    assert upgrade_v1_key(v1_analysis_key(weights=weights, margin=0.2)) is None  # other crop
    assert upgrade_v1_key("something else") is None


def test_failed_migration_leaves_the_old_index_as_it_was(v1_album) -> None:
    """A migration that fails half-way changes nothing (one transaction)."""
    _photos, _refs, index = v1_album
    before = _dump(index)

    def broken(key: str) -> str:
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        FaceIndex.open(index, upgrade_key=broken)
    conn = sqlite3.connect(index)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT key FROM settings").fetchone()[0].startswith("v1 Facenet")
    conn.close()
    assert _dump(index) == before


def test_newer_or_unknown_schema_is_refused(tmp_path: Path) -> None:
    """An index from a newer finder is never touched."""
    path = tmp_path / "i.sqlite"
    FaceIndex.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(IndexFileError, match="newer finder"):
        FaceIndex.open(path)


def _result(n: int) -> FileResult:
    face = Face(box=(1, 2, 3, 4), landmarks=np.zeros((5, 2), np.float32), score=0.9,
                embedding=np.full(128, n, np.float32))
    return FileResult(rel=f"{n}.jpg", kind="image", size=(10, 10), faces=[face])


def test_records_are_committed_every_few_files_and_on_flush(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill loses at most the last few seconds: results are committed as they come."""
    import facefinder.index

    monkeypatch.setattr(facefinder.index, "COMMIT_SECONDS", 3600.0)  # count files only
    path = tmp_path / "i.sqlite"
    index = FaceIndex.open(path)
    settings = index.settings_id("k")
    root = index.root_id("/photos")
    assert settings is not None and root is not None
    reader = sqlite3.connect(path)

    def committed() -> int:
        return reader.execute("SELECT count(*) FROM analyses").fetchone()[0]

    for n in range(49):
        index.record(settings, bytes([n]) * 16, 10, _result(n), root, f"{n}.jpg", 1)
    assert committed() == 0
    index.record(settings, b"\xff" * 16, 10, _result(99), root, "99.jpg", 1)
    assert committed() == 50
    index.record(settings, b"\xfe" * 16, 10, _result(98), root, "98.jpg", 1)
    index.flush()
    assert committed() == 51
    stored = index.load(settings, [c for (c,) in index.conn.execute("SELECT id FROM contents")])
    assert all(len(r.faces) == 1 and r.faces[0].embedding is not None for r in stored.values())
    reader.close()
    index.close()


def test_notices_are_new_once(tmp_path: Path) -> None:
    """A note about a reference photo is shown once, not on every run."""
    index = FaceIndex.open(tmp_path / "i.sqlite")
    assert index.new_notices(["a", "b"]) == {"a", "b"}
    index.mark_notices(["a"])
    assert index.new_notices(["a", "b"]) == {"b"}
    assert index.quick_check() == "ok"
    index.close()


@pytest.mark.skipif(not unshare_works(), reason="needs Linux and `unshare -m` (root) to "
                    "mount a folder read-only; root ignores permission bits otherwise")
def test_index_on_a_read_only_mount_is_read_not_called_damaged(
        v1_album, models_dir: Path, tmp_path: Path) -> None:
    """A write-protected stick: the index answers the search, nothing is written to it."""
    import subprocess
    import sys

    from conftest import ROOT

    photos, refs, index = v1_album
    assert main([str(photos), "--reference", str(refs), "--index", str(index), "--models",
                 str(models_dir), "--no-progress", "--jobs", "1"]) == 0  # upgrade, close
    folder = index.parent
    before = sorted(p.name for p in folder.iterdir())
    out = tmp_path.parent / f"{tmp_path.name}-ro.json"
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from facefinder.cli import main; "
            f"sys.exit(main([{str(photos)!r}, '--reference', {str(refs)!r}, '--index', "
            f"{str(index)!r}, '--models', {str(models_dir)!r}, '--no-progress', '--jobs', "
            f"'1', '--json', {str(out)!r}]))")
    script = (f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && '
              f'exec "{sys.executable}" -c "$0"')
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, code], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "is only read this run" in done.stderr and "damaged" not in done.stderr
    summary = json.loads(out.read_text(encoding="utf-8"))["summary"]
    assert summary["files_decoded"] == 0 and summary["from_index"] == 8
    assert sorted(p.name for p in folder.iterdir()) == before
