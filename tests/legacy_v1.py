"""A frozen writer of the face index's version-1 file format (``user_version`` 1).

Why this exists: users have index.sqlite files written by the v1 finder on their sticks,
and the rewritten ``facefinder`` must open and migrate them. A test that built its "old"
index with the package itself would silently start writing the *new* format as soon as
the package changes, and the migration would no longer be tested against anything real.
So this module reproduces, byte-for-byte in every row, what the v1 code (``index.py``
with ``SCHEMA_VERSION = 1`` and ``analyse.analysis_key`` with ``PIPELINE_VERSION = 1``)
writes, and it imports nothing from ``facefinder``: it must keep producing v1 files
however the package is refactored. Only the standard library and numpy are used.

It was checked against an index written by the v1 program (the demo album run through
``finder.py``): rebuilt from that index's rows, the file has the same schema text,
pragmas and rows in every table, apart from the ``analyses.at`` timestamps and the
``created`` date.

Do not "fix" or modernise anything here: every quirk is part of the format being frozen.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

APPLICATION_ID = 0x46414346  # "FACF" in the SQLite header: this file is a face index
SCHEMA_VERSION = 1
SAMPLE = 64 * 1024  # bytes hashed at the start, middle and end of a file by content_key

# The model files each v1 recogniser's weights fingerprint names, in the order the v1
# code joined them (catalog.SOURCES[source].produces for the recogniser's sources).
FACENET_WEIGHT_FILES = ["centerface.onnx", "facenet128-int8.onnx"]

# What v1 wrote for Facenet with the models manifest main ships with today; the analysis
# key of any test index must carry it, or the new code rightly treats its faces as stale.
FACENET_WEIGHTS = "8934942bac9a"

# Copied verbatim from the v1 index.py: SQLite stores each CREATE statement's text in
# sqlite_master, so even whitespace here is part of what a v1 file looks like.
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE roots (id INTEGER PRIMARY KEY, path BLOB NOT NULL UNIQUE);
CREATE TABLE contents (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    bytes INTEGER NOT NULL,
    kind TEXT NOT NULL,
    width INTEGER, height INTEGER,
    taken TEXT, taken_from TEXT,
    duration REAL
);
CREATE TABLE paths (
    root INTEGER NOT NULL REFERENCES roots(id),
    rel BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content INTEGER NOT NULL REFERENCES contents(id),
    PRIMARY KEY (root, rel)
) WITHOUT ROWID;
CREATE INDEX paths_content ON paths(content);
CREATE TABLE settings (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE analyses (
    content INTEGER NOT NULL REFERENCES contents(id),
    settings INTEGER NOT NULL REFERENCES settings(id),
    error TEXT,
    frames INTEGER NOT NULL DEFAULT 0,
    faces INTEGER NOT NULL DEFAULT 0,
    at REAL NOT NULL,
    PRIMARY KEY (content, settings)
) WITHOUT ROWID;
CREATE TABLE faces (
    content INTEGER NOT NULL,
    settings INTEGER NOT NULL,
    n INTEGER NOT NULL,
    time REAL,
    x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
    score REAL NOT NULL,
    landmarks BLOB NOT NULL,
    embedding BLOB,
    skipped TEXT,
    PRIMARY KEY (content, settings, n)
) WITHOUT ROWID;
"""


def content_key(path: Path | str, size: int) -> bytes:
    """The v1 content key: 16-byte blake2b of the size and three 64 KiB samples.

    Kept identical to v1 because the key is what lets a migrated index recognise files
    it has already analysed; a test builds keys of real files with it. The whole file is
    hashed when it is at most 192 KiB, else its first, middle and last 64 KiB.
    """
    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    with open(path, "rb") as handle:
        if size <= 3 * SAMPLE:
            digest.update(handle.read())
        else:
            digest.update(handle.read(SAMPLE))
            handle.seek((size - SAMPLE) // 2)
            digest.update(handle.read(SAMPLE))
            handle.seek(size - SAMPLE)
            digest.update(handle.read(SAMPLE))
    return digest.digest()


def encode_path(text: str) -> bytes:
    """A root or relative path as v1 stored it: UTF-8 with surrogate escapes.

    The surrogate escapes are what let v1 store names that are not valid UTF-8, so a
    migration test can include such a name and this is the only correct way to write it.
    """
    return text.encode("utf-8", "surrogateescape")


def v1_weights_fingerprint(manifest_files: Mapping[str, str], names: Sequence[str]) -> str:
    """The 12 hex digits v1 put after ``weights=`` in an analysis key.

    ``manifest_files`` is the ``files`` mapping of models/manifest.json (name -> sha256)
    and ``names`` the model files of the recogniser in v1's order (``FACENET_WEIGHT_FILES``
    for Facenet); a file missing from the manifest counts as ``?``, as in v1. Tests need
    it to derive the key v1 would have used for whatever models they run with.
    """
    joined = "|".join(f"{name}={manifest_files.get(name, '?')}" for name in names)
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


def v1_analysis_key(
    model: str = "Facenet",
    weights: str = FACENET_WEIGHTS,
    margin: float | str = 0.1,
    rotate: bool | str = True,
    decode: int = 1600,
    detect: int = 800,
    minface: int = 40,
    sharp: float = 3.0,
    fps: float | None = None,
) -> str:
    """The settings key v1 stored for an analysis, e.g. the default Facenet photo key
    ``v1 Facenet weights=8934942bac9a crop=0.1/True decode=1600 detect=800 minface=40
    sharp=3``; pass ``fps`` (v1's ``--video-fps``, 1 by default there) for a video key.

    The exact text matters because v1 answered a file from the index only when this key
    matched, and a migration has to map each stored key onto the new settings. ``margin``
    and ``rotate`` are the recogniser's crop geometry (v1 wrote ``-`` for a recogniser
    without them, e.g. ``margin="-", rotate="-"`` for dlib).
    """
    key = (f"v1 {model} weights={weights} crop={margin}/{rotate} "
           f"decode={decode} detect={detect} minface={minface} sharp={sharp:g}")
    if fps is not None:
        key += f" fps={fps:g}"
    return key


def _create(conn: sqlite3.Connection, created: str) -> None:
    """v1's ``FaceIndex._create``: WAL first, then schema, ids and ``created`` in one go."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    for statement in V1_SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("INSERT INTO meta VALUES ('created', ?)", (created,))
    conn.execute("COMMIT")


def _intern(conn: sqlite3.Connection, table: str, column: str, stored: object) -> int:
    """Id of a ``roots``/``settings`` row, inserted when missing (v1's ``_intern``)."""
    row = conn.execute(f"SELECT id FROM {table} WHERE {column} = ?", (stored,)).fetchone()
    if row is not None:
        return int(row[0])
    cursor = conn.execute(f"INSERT INTO {table} ({column}) VALUES (?)", (stored,))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _store(conn: sqlite3.Connection, settings: int, file: Mapping[str, Any]) -> int:
    """v1's ``FaceIndex._store``: content row (updated when re-analysed without error),
    the analysis marker and the faces in order; returns the content id."""
    key = bytes(file["key"])
    width, height = file.get("width"), file.get("height")
    info = (file["kind"], width, height, file.get("taken"), file.get("taken_from"),
            file.get("duration"))
    row = conn.execute("SELECT id FROM contents WHERE key = ?", (key,)).fetchone()
    if row is None:
        cursor = conn.execute(
            "INSERT INTO contents (key, bytes, kind, width, height, taken, taken_from, "
            "duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (key, file["bytes"], *info))
        assert cursor.lastrowid is not None
        content = cursor.lastrowid
    else:
        content = int(row[0])
        if file.get("error") is None:
            conn.execute(
                "UPDATE contents SET kind = ?, width = ?, height = ?, taken = ?, "
                "taken_from = ?, duration = ? WHERE id = ?", (*info, content))
    faces = list(file.get("faces", ()))
    conn.execute("DELETE FROM faces WHERE content = ? AND settings = ?", (content, settings))
    conn.execute("INSERT OR REPLACE INTO analyses VALUES (?, ?, ?, ?, ?, ?)",
                 (content, settings, file.get("error"), file.get("frames", 0), len(faces),
                  file.get("at", time.time())))
    conn.executemany(
        "INSERT INTO faces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (content, settings, n, face.get("time"), *(int(v) for v in face["box"]),
             float(face["score"]),
             np.asarray(face["landmarks"], dtype=np.float32).tobytes(),
             None if face.get("embedding") is None
             else np.asarray(face["embedding"], dtype=np.float32).tobytes(),
             face.get("skipped"))
            for n, face in enumerate(faces)
        ],
    )
    return content


def write_v1_index(
    path: Path | str,
    root: str,
    files: Sequence[Mapping[str, Any]],
    *,
    key: str,
    video_key: str | None = None,
    last_run: Mapping[str, Any] | None = None,
    created: str = "2026-11-22 10:00:00",
) -> None:
    """Write a new v1 face index at ``path`` holding ``files``, as v1 would have stored them.

    ``root`` is the scanned folder (absolute, as v1 recorded ``os.path.abspath``); it gets
    roots id 1. Each file is a mapping with ``rel``, ``bytes``, ``mtime_ns``, ``key`` (its
    :func:`content_key`), ``kind`` (``image``/``video``), ``width``, ``height``, ``taken``,
    ``taken_from``, ``duration``, ``error``, ``frames`` and ``faces``; a face has ``box``
    (x, y, w, h), ``landmarks`` (5x2), ``score``, ``embedding`` (or None), ``skipped`` and
    ``time``. Two optional keys exist because a real v1 index needs them: ``root`` (a
    file under another scanned folder, e.g. the reference folder v1 also indexed; new
    roots get ids in order of first use) and ``at`` (the analysis timestamp, default now).

    Files are stored in the given order, which fixes the content ids; a repeated content
    key shares one content row, like a copied file in v1. Photos use ``key`` and videos
    ``video_key`` as their settings, interned in order of first use. As in v1, files are
    not stored when they would not have been: an empty content key or an error starting
    with "cannot read file" (a passing I/O problem, not a property of the content).
    ``last_run`` (v1's summary of the last run, shown by --index-info) is written last as
    JSON, like v1's ``set_meta``. Raises FileExistsError rather than touch an existing
    file, since v1 only ever created an index in a new file.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        _create(conn, created)
        conn.execute("BEGIN IMMEDIATE")
        roots = {root: _intern(conn, "roots", "path", encode_path(root))}
        settings: dict[str, int] = {}
        for file in files:
            file_root = str(file.get("root", root))
            if file_root not in roots:
                roots[file_root] = _intern(conn, "roots", "path", encode_path(file_root))
            error = file.get("error")
            if not file["key"] or (error is not None and error.startswith("cannot read file")):
                continue
            settings_key = video_key if file["kind"] == "video" else key
            if settings_key is None:
                raise ValueError(f"{file['rel']} is a video: pass video_key")
            if settings_key not in settings:
                settings[settings_key] = _intern(conn, "settings", "key", settings_key)
            content = _store(conn, settings[settings_key], file)
            conn.execute("INSERT OR REPLACE INTO paths VALUES (?, ?, ?, ?, ?)",
                         (roots[file_root], encode_path(file["rel"]), file["bytes"],
                          file["mtime_ns"], content))
        if last_run is not None:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                         ("last_run", json.dumps(last_run, ensure_ascii=False)))
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if leftover.exists():
                os.remove(leftover)
        raise
    conn.close()
