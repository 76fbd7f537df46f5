"""The face index: one SQLite file that remembers what is in every file ever analysed.

Storage only: this module knows tables and rows, not scanning, workers or matching
(``facefinder.cached`` decides what to look up and what to analyse).

Layout, and why:

* ``contents`` - one row per distinct file *content*, keyed by :func:`content_key`, a
  blake2b hash of the size and three 64 KiB samples (start, middle, end). A copy of the
  collection on another drive or PC has the same key, so it is never decoded again.
  Collisions: two different files of equal size that agree in all three samples, which
  photos and videos (compressed data, EXIF with timestamps and camera serials in the
  first block) essentially never do; an edit in the unsampled middle of a file that keeps
  its size exactly is the one realistic miss, and editors rewrite the whole file. The
  price of a collision would be one file reported with another's faces; hashing whole
  files instead would read every byte of a 200 GB collection on each new drive.
* ``paths`` - (root, path relative to root) -> content, with size and mtime_ns. When size
  and mtime are unchanged the file is not even hashed: that shortcut is what makes a warm
  re-run cost one stat per file. Paths are relative to the scanned folder (the root is
  recorded separately), so D:\\Photos seen as E:\\Photos later is re-hashed once, never
  re-decoded. Paths are stored as UTF-8 bytes with surrogate escapes, so any name works.
* ``settings`` - one row per analysis key (``analyse.analysis_key``: the model's part
  specs, weights, sizes); changing any of them re-analyses instead of mixing vectors.
* ``analyses`` - (content, settings) was analysed: the marker that also records files with
  no face and the reason a file could not be read.
* ``faces`` - box, landmarks, detector score, float32 embedding, skipped reason and, for
  videos, the frame time; ordered by ``n`` so results come back exactly as computed.

* ``notices`` - (schema 2) reference notices already shown, so a note about a reference
  photo ("3 faces, used ...") is printed once, not on every run.
* ``decisions`` - (schema 3) what the user said of a face: yes/no for a person. Keyed by
  the file's content *key* (not its row id) and the face's number, so a decision outlives
  ``--prune`` and the photo turning up again elsewhere; the face's box and embedding are
  kept with it, so a confirmed face stays a reference for its person even when the photo
  is gone. Nothing deletes a decision except the user changing it.
* ``face_clusters`` / ``clusters`` - (schema 3) the cluster of each face that matches
  nobody ("who else is here"), and per cluster whether the user hid it. Labels are kept
  between runs so that new photos join the clusters the user has already seen.
* ``object_settings`` / ``object_analyses`` / ``objects`` - (schema 4, ``--objects``) the
  objects of each content under an object-detector key of its own
  (``object_analysis.object_key``), so an index that knows a file's faces learns its
  objects without its faces being detected again, and a face model change keeps them.

All SQL of the program lives here: reads, writes, transactions and the commit policy
(:meth:`FaceIndex.record` commits every COMMIT_FILES files or COMMIT_SECONDS seconds),
housekeeping and the integrity check. Schema versions are upgraded in place by
:data:`MIGRATIONS`, one step per version, inside one transaction: an old index opens,
is upgraded, and keeps every file, face and decision it held.

Robustness: WAL journal (readers never block, a killed writer leaves the last committed
state), a busy timeout for a second finder on the same index, ``application_id`` and
``user_version`` to recognise our file and its schema, and a header check that turns a
truncated or foreign file into :class:`IndexFileError` instead of a crash - the file is
never replaced or repaired silently. Only the main process opens the index.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefinder.records import Decision, Face, FileResult, ObjectBox, name_key
from facefinder.stored_faces import FaceColumns, StoredFaces, VectorArena

APPLICATION_ID = 0x46414346  # "FACF" in the SQLite header: this file is a face index
SCHEMA_VERSION = 4
SAMPLE = 64 * 1024
BUSY_TIMEOUT_S = 30.0
SQL_CHUNK = 400  # host parameters per IN (...) query; SQLite allows 999 on old builds
COMMIT_FILES = 50  # results committed at least this often ...
COMMIT_SECONDS = 2.0  # ... or this often, so a kill loses seconds of work, not hours

_SQLITE_MAGIC = b"SQLite format 3\x00"

SCHEMA = """
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
CREATE TABLE notices (key TEXT PRIMARY KEY, shown REAL NOT NULL);
"""

# Schema 3's tables: the user's decisions, clusters of unknown faces.
_SCHEMA_3 = """
CREATE TABLE decisions (
    key BLOB NOT NULL,
    settings INTEGER NOT NULL,
    n INTEGER NOT NULL,
    person TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('yes', 'no')),
    x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
    time REAL,
    embedding BLOB,
    at REAL NOT NULL,
    PRIMARY KEY (key, settings, n, person)
) WITHOUT ROWID;
CREATE TABLE face_clusters (
    key BLOB NOT NULL,
    settings INTEGER NOT NULL,
    n INTEGER NOT NULL,
    cluster INTEGER NOT NULL,
    PRIMARY KEY (key, settings, n)
) WITHOUT ROWID;
CREATE TABLE clusters (
    settings INTEGER NOT NULL,
    cluster INTEGER NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (settings, cluster)
) WITHOUT ROWID;
"""
SCHEMA += _SCHEMA_3

# Schema 4's tables: objects (--objects), keyed apart from the faces' analysis.
_SCHEMA_4 = """
CREATE TABLE object_settings (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE object_analyses (
    content INTEGER NOT NULL,
    settings INTEGER NOT NULL,
    objects INTEGER NOT NULL DEFAULT 0,
    at REAL NOT NULL,
    PRIMARY KEY (content, settings)
) WITHOUT ROWID;
CREATE TABLE objects (
    content INTEGER NOT NULL,
    settings INTEGER NOT NULL,
    n INTEGER NOT NULL,
    time REAL,
    label TEXT NOT NULL,
    score REAL NOT NULL,
    x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
    PRIMARY KEY (content, settings, n)
) WITHOUT ROWID;
"""
SCHEMA += _SCHEMA_4

KeyUpgrade = Callable[[str], "str | None"]


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off for a bounded step that makes hundreds of
    thousands of acyclic objects (a chunk of stored faces, the matches of a collection),
    on again after it: each collection meanwhile would walk them all again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _migrate_1_to_2(conn: sqlite3.Connection, upgrade_key: KeyUpgrade) -> None:
    """Schema 2: analysis keys derived from the model's part specs; shown notices.

    Each old key is rewritten to the key today's finder computes for the same analysis,
    so its files are answered from the index instead of being read again; a key that
    maps to nothing current is kept as it was (its rows stay, ``--prune`` keeps them).
    """
    for settings_id, key in conn.execute("SELECT id, key FROM settings").fetchall():
        new = upgrade_key(key)
        if new is not None and new != key:
            conn.execute("UPDATE settings SET key = ? WHERE id = ?", (new, settings_id))
    conn.execute("CREATE TABLE IF NOT EXISTS notices (key TEXT PRIMARY KEY, shown REAL NOT NULL)")


def _migrate_2_to_3(conn: sqlite3.Connection, upgrade_key: KeyUpgrade) -> None:
    """Schema 3: the user's decisions and the clusters of unknown faces (new tables)."""
    for statement in _SCHEMA_3.split(";"):
        if statement.strip():
            conn.execute(statement)


# A face generation counter's first value (``FaceIndex._faces_changed``): random, so two
# index files never share one by chance (the neighbour graph beside an index trusts it).
_RANDOM_GENERATION = "abs(random() % 1000000000000)"


def _migrate_3_to_4(conn: sqlite3.Connection, upgrade_key: KeyUpgrade) -> None:
    """Schema 4: objects (--objects) in tables of their own; the face generation counter
    starts at a random value (as in a new index once it stores a face)."""
    for statement in _SCHEMA_4.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('faces_generation', "
                 f"{_RANDOM_GENERATION})")


# from version N to N + 1, applied in order inside one transaction
MIGRATIONS: dict[int, Callable[[sqlite3.Connection, KeyUpgrade], None]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
    3: _migrate_3_to_4,
}


class IndexFileError(Exception):
    """The index file is damaged, truncated or not ours; ``str()`` names the file."""


class IndexLockedError(Exception):
    """Another finder run holds the index longer than the busy timeout."""


def content_key(path: Path | str, size: int) -> bytes:
    """16-byte blake2b of the size and the first, middle and last 64 KiB of the file.

    Reads at most 192 KiB whatever the file's size (the whole file when it is smaller),
    so recognising a moved or copied file costs a fraction of decoding it. Raises OSError.
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


def encode_rel(text: str) -> bytes:
    """A path as stored: UTF-8, undecodable name bytes kept via surrogate escapes."""
    return text.encode("utf-8", "surrogateescape")


def decode_rel(data: bytes) -> str:
    return bytes(data).decode("utf-8", "surrogateescape")


def _chunks(values: Sequence, size: int = SQL_CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _check_header(path: Path) -> None:
    """Refuse files that are not a complete SQLite database before SQLite touches them.

    SQLite itself only notices a truncated file when a query reaches a missing page,
    possibly mid-run; the header's page count (valid when its change counters agree)
    tells at once whether pages are missing.
    """
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the open below forever
            raise IndexFileError(f"{path} is not a regular file (a folder, pipe or device); "
                                 "pass --index with a file name")
        size = info.st_size
        if size == 0:
            return  # a new, empty file: SQLite will create the database in it
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise IndexFileError(f"cannot read the face index {path}: {exc.strerror or exc}") from None
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise IndexFileError(
            f"{path} is not a face index (not an SQLite database, or damaged); "
            "move it away or pass --index with another file"
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counters_agree = header[24:28] == header[92:96]
    # a write-ahead log beside it holds pages a checkpoint could not put in the file (a
    # disk that filled up mid-checkpoint): SQLite reads them from the log, so the file
    # is not short of anything; refusing it would tell the user to move their answers away
    recovering = _wal_pending(path)
    if counters_agree and pages and size < pages * page_size and not recovering:
        raise IndexFileError(
            f"the face index {path} is truncated ({size} of {pages * page_size} bytes); "
            "move it away (the next run builds a new one) or restore a copy"
        )


def _place_in(path: str, folder: str) -> str | None:
    """Where ``path`` lies in ``folder``: a '/'-separated path ('' for the folder
    itself), or None when it is not inside it."""
    try:
        rel = os.path.relpath(path, folder)
    except ValueError:  # another drive (Windows)
        return None
    if rel == os.curdir:
        return ""
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        return None
    return rel.replace(os.sep, "/")


def _wal_pending(path: Path) -> bool:
    """Whether a non-empty write-ahead log lies beside the index file."""
    try:
        return os.stat(f"{path}-wal").st_size > 0
    except OSError:
        return False


@dataclass
class _Queued:
    """What ``flush`` will write: a file's analysis and path, or paths of known contents."""

    root: int
    paths: list[tuple[str, int, int]]  # (rel, bytes, mtime_ns)
    analysis: tuple[int, bytes, FileResult] | None = None  # (settings, content key, result)
    contents: list[int] | None = None  # content ids of ``paths`` (moved files)
    # (object settings, objects): with ``analysis``, that file's objects; alone, the
    # objects of the known content ``contents[0]`` (an objects-only pass).
    objects: tuple[int, list[ObjectBox]] | None = None


@dataclass
class IndexInfo:
    """What ``--index-info`` shows."""

    path: Path
    bytes_on_disk: int
    roots: list[tuple[str, int]]  # (root folder, paths under it)
    contents: int
    unreadable: int
    settings: list[tuple[str, int, int]]  # (analysis key, files analysed, faces)
    last_run: dict | None
    created: str | None
    decisions: tuple[int, int, int] | None = None  # (confirmed, rejected, people named)
    # per object detector: (its name, files it looked at, [(class, files showing it)],
    # most files first); detectors are counted apart, as their results are kept apart
    objects: list[tuple[str, int, list[tuple[str, int]]]] | None = None



def _detector_name(object_key: str) -> str:
    """The object detector's name in an objects' index key (``object_analysis.object_key``)."""
    try:
        return str(json.loads(object_key)["objects"]["name"])
    except (ValueError, KeyError, TypeError):
        return "an older detector"


_NO_MARKS = np.zeros((5, 2), np.float32)  # (a face read back for its box alone)


def _overlapping_face(faces: Sequence[Face], box: tuple[int, int, int, int],
                      when: float | None) -> int | None:
    """The number of the face in ``faces`` that covers ``box`` (x, y, w, h) best, with an
    intersection over union of at least 0.5 and the same video time; None if none does."""
    best, best_iou = None, 0.5
    x, y, w, h = box
    for n, face in enumerate(faces):
        if (when is None) != (face.time is None) or (
                when is not None and abs(float(face.time) - when) > 0.01):
            continue
        fx, fy, fw, fh = (float(v) for v in face.box)
        iw = max(0.0, min(x + w, fx + fw) - max(x, fx))
        ih = max(0.0, min(y + h, fy + fh) - max(y, fy))
        inter = iw * ih
        union = w * h + fw * fh - inter
        iou = inter / union if union > 0 else 0.0
        if iou >= best_iou:
            best, best_iou = n, iou
    return best

def _on_faces(faces: Sequence[Face], rows: Iterable[Sequence]
              ) -> Iterator[tuple[int, Face, tuple]]:
    """Verdict rows ``(x, y, w, h, time, *rest)`` said of another analysis's faces, each
    with the number and ``Face`` of the face at the same place in ``faces``
    (``_overlapping_face``), and its ``rest``; a row that matches no face is left out.
    In the rows' order (oldest first: a later verdict wins)."""
    for x, y, w, h, when, *rest in rows:
        n = _overlapping_face(faces, (x, y, w, h), when)
        if n is not None:
            yield n, faces[n], tuple(rest)


class FaceIndex:
    """An open face index. Use :meth:`open`; results go in through :meth:`record`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, read_only: bool,
                 upgrade_key: KeyUpgrade | None) -> None:
        self.path = path
        self.conn = conn
        self.read_only = read_only
        self.migrated_from: int | None = None  # schema version upgraded from on open
        self._upgrade_key = upgrade_key
        self._settings_ids: dict[str, int] = {}
        self._object_ids: dict[str, int] = {}
        self._root_ids: dict[str, int] = {}
        self._queue: list[_Queued] = []  # results recorded, not yet written
        self._uncommitted = 0
        self._last_commit = time.monotonic()
        self.keeping = not read_only  # False once a write failed: the run goes on without
        self.not_kept = 0  # results this run could not keep (disk full, locked too long)
        self.carried = 0  # verdicts moved to a new analysis of their photo (_carry_decisions)
        self._last_answer = 0.0  # when the last answer was stored (``_now``)
        self.why_not_kept: str | None = None
        # where ``load`` puts embeddings, one per analysis: a chunk's videos (loaded
        # after its photos) must not land between photos, nor fill their room
        self._arenas: dict[int, VectorArena] = {}

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False,
             upgrade_key: KeyUpgrade | None = None) -> FaceIndex:
        """Open (creating if missing) the index at ``path``, upgrading an older schema.

        ``upgrade_key`` maps an analysis key of an older schema to today's (or None);
        the analysis layer knows the key format, this module only applies it. Without it
        an older index is refused rather than upgraded with its analyses orphaned.

        Raises IndexFileError for a file that is not a complete face index of a schema
        this version knows, IndexLockedError when another run keeps it locked, and OSError
        (or sqlite3.OperationalError) when it cannot be opened for writing at all.
        """
        path = Path(path)
        if path.exists():
            _check_header(path)
        elif read_only:
            raise FileNotFoundError(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        if not read_only:
            return cls._connect(path, str(path), False, upgrade_key)
        # Read-only: a WAL index on a write-protected stick cannot be opened the usual
        # way when SQLite cannot create its -shm file; "immutable" reads it without any
        # side file (results a killed run left un-checkpointed in the -wal are not seen;
        # they are simply read again from the photos).
        base = path.resolve().as_uri()
        try:
            return cls._connect(path, base + "?mode=ro", True, upgrade_key)
        except OSError:
            return cls._connect(path, base + "?mode=ro&immutable=1", True, upgrade_key)

    @classmethod
    def _connect(cls, path: Path, target: str, read_only: bool,
                 upgrade_key: KeyUpgrade | None) -> FaceIndex:
        try:
            conn = sqlite3.connect(target, uri=read_only, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise OSError(f"cannot open {path}: {exc}") from None
        index = cls(path, conn, read_only, upgrade_key)
        try:
            index._prepare()
        except sqlite3.DatabaseError as exc:
            conn.close()
            text = str(exc).lower()
            if _is_locked(exc):
                raise IndexLockedError(_locked_message(path)) from None
            if isinstance(exc, sqlite3.OperationalError) and (
                    "readonly" in text or "unable to open" in text or "disk i/o" in text
                    or "full" in text):
                raise OSError(f"cannot use {path} here: {exc}") from None
            raise IndexFileError(f"the face index {path} is damaged ({exc}); "
                                 "move it away or pass --index with another file") from None
        except BaseException:
            conn.close()
            raise
        return index

    def _prepare(self) -> None:
        conn = self.conn
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and version == 0 and tables == 0:
            if self.read_only:
                raise sqlite3.DatabaseError("empty file")
            self._create()
            return
        if app_id != APPLICATION_ID:
            raise IndexFileError(
                f"{self.path} is an SQLite database of another program, not a face index; "
                "it was left untouched - pass --index with another file"
            )
        if version > SCHEMA_VERSION:
            raise IndexFileError(
                f"the face index {self.path} was written by a newer finder "
                f"(schema {version}, this one reads {SCHEMA_VERSION}); update the finder"
            )
        if version < 1 or any(v not in MIGRATIONS for v in range(version, SCHEMA_VERSION)):
            raise IndexFileError(
                f"the face index {self.path} has a schema ({version}) this finder cannot "
                "upgrade; move it away and the next run builds a new one"
            )
        if version < SCHEMA_VERSION and self._upgrade_key is None:
            raise IndexFileError(f"the face index {self.path} has an older schema "
                                 f"({version}); open it with the finder to upgrade it")
        if version < SCHEMA_VERSION and self.read_only:
            self._translate_old_keys()  # cannot upgrade a read-only file: map keys in memory
        elif version < SCHEMA_VERSION:
            self._migrate(version)
        if not self.read_only:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")

    def _migrate(self, version: int) -> None:
        """Upgrade the schema step by step in one transaction (all or nothing)."""
        conn = self.conn
        self.begin()
        try:
            assert self._upgrade_key is not None
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn, self._upgrade_key)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        self.migrated_from = version

    def _translate_old_keys(self) -> None:
        assert self._upgrade_key is not None
        for settings_id, key in self.conn.execute("SELECT id, key FROM settings").fetchall():
            new = self._upgrade_key(key)
            if new is not None:
                self._settings_ids[new] = settings_id

    def _create(self) -> None:
        conn = self.conn
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("INSERT INTO meta VALUES ('created', ?)",
                         (time.strftime("%Y-%m-%d %H:%M:%S"),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def __enter__(self) -> FaceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write what is queued and close; a no-op when already closed."""
        try:
            with contextlib.suppress(sqlite3.Error):
                self.flush()
        finally:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()

    # ------------------------------------------------------------------ ids

    def settings_id(self, key: str) -> int | None:
        """Id of an analysis key; created when writable, None if unknown and read-only."""
        return self._intern("settings", "key", key, key, self._settings_ids)

    def object_settings_id(self, key: str) -> int | None:
        """Id of an object-detection key (``object_analysis.object_key``); as settings_id.

        None also for a read-only index of an older schema (no such table yet).
        """
        try:
            return self._intern("object_settings", "key", key, key, self._object_ids)
        except sqlite3.OperationalError:
            return None

    def root_id(self, root: str) -> int | None:
        """Id of a scanned folder (absolute path); created when writable."""
        return self._intern("roots", "path", root, encode_rel(root), self._root_ids)

    def _intern(
        self, table: str, column: str, name: str, stored: object, cache: dict[str, int]
    ) -> int | None:
        """Id of the row of ``table`` whose ``column`` is ``stored``, inserted if missing.

        ``table`` and ``column`` are this module's own constants, never user input.
        """
        if name in cache:
            return cache[name]
        row = self.conn.execute(
            f"SELECT id FROM {table} WHERE {column} = ?", (stored,)
        ).fetchone()
        if row is None:
            inserted: list[int] = []
            if not self._try_write(lambda: inserted.append(self.conn.execute(
                    f"INSERT INTO {table} ({column}) VALUES (?)", (stored,)).lastrowid)):
                return None
            row = (inserted[0],)
        cache[name] = row[0]
        return row[0]

    # ------------------------------------------------------------------ lookups

    def paths(self, root: int, rels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """{rel: (bytes, mtime_ns, content id)} for the rels of ``root`` in the index.

        A chunk of a walk's files are mostly neighbours in the index's order too, so
        they are read as one range of it (one seek, then rows in order: half the time
        of a seek per file at a million faces), unless that range holds many more rows
        than asked for (a folder's files around its subfolders'): then file by file."""
        found: dict[str, tuple[int, int, int]] = {}
        for names in _chunks(rels):
            wanted = {encode_rel(name): name for name in names}  # stored form -> as asked
            chunk = list(wanted)
            most = 2 * len(wanted) + 16
            rows = self.conn.execute(
                "SELECT rel, bytes, mtime_ns, content FROM paths WHERE root = ? AND "
                "rel BETWEEN ? AND ? LIMIT ?", (root, min(chunk), max(chunk), most + 1)
            ).fetchall()
            if len(rows) > most:
                rows = self.conn.execute(
                    "SELECT rel, bytes, mtime_ns, content FROM paths WHERE root = ? AND rel "
                    "IN (" + ",".join("?" * len(chunk)) + ")", (root, *chunk)).fetchall()
            for rel, size, mtime, content in rows:
                name = wanted.get(rel)
                if name is not None:  # (the asked name itself: no decoding of each row)
                    found[name] = (size, mtime, content)
        return found

    def contents_by_key(self, keys: Sequence[bytes]) -> dict[bytes, int]:
        """{content key: content id} for the keys already in the index."""
        found: dict[bytes, int] = {}
        for chunk in _chunks(list(keys)):
            sql = "SELECT key, id FROM contents WHERE key IN (" + ",".join("?" * len(chunk)) + ")"
            for key, content in self.conn.execute(sql, chunk):
                found[bytes(key)] = content
        return found

    def load(self, settings: int, contents: Sequence[int]) -> dict[int, FileResult]:
        """Stored analyses of ``contents`` under ``settings``, as FileResults (rel left empty).

        Two queries per chunk of ids whatever the number of faces, which is what keeps a
        warm re-run at thousands of files per second. The cyclic garbage collector is
        paused meanwhile: the rows and records made here hold no cycles, and it walked
        them again and again (a tenth of the load of a million faces).
        """
        with paused_gc():
            return self._load(settings, contents)

    def _load(self, settings: int, contents: Sequence[int]) -> dict[int, FileResult]:
        """``load``'s work."""
        results: dict[int, FileResult] = {}
        for chunk in _chunks(list(dict.fromkeys(contents))):
            marks = ",".join("?" * len(chunk))
            runs = self._stored_faces(settings, self.conn.execute(
                "SELECT content, time, x, y, w, h, score, landmarks, embedding, skipped "
                f"FROM faces WHERE settings = ? AND content IN ({marks}) ORDER BY content, n",
                (settings, *chunk)).fetchall())
            rows = self.conn.execute(
                "SELECT a.content, a.error, a.frames, c.kind, c.width, c.height, c.taken, "
                "c.taken_from, c.duration, c.key FROM analyses a "
                "JOIN contents c ON c.id = a.content "
                f"WHERE a.settings = ? AND a.content IN ({marks})", (settings, *chunk))
            for (content, error, frames, kind, width, height, taken, taken_from, duration,
                 key) in rows:
                faces = runs.get(content)  # (not ``or []``: that asks each run its length)
                results[content] = FileResult(
                    rel="", kind=kind, error=error, frames=frames,
                    size=(width, height) if width is not None else None,
                    faces=[] if faces is None else faces,  # (an analysis without faces)
                    taken=taken, taken_from=taken_from, duration=duration, from_index=True,
                    key=key if type(key) is bytes else bytes(key),  # (sqlite3's blobs are)
                )
        return results

    def _stored_faces(self, settings: int, faces: list[tuple]) -> dict[int, StoredFaces]:
        """{content id: its faces} from a chunk's face rows (by content, then number).

        Column by column (one transposition of the rows), each file a run of them, Face
        objects made only when looked at: a million faces are a million small objects the
        decision never needs (stored_faces.py; docs/index.md, "A warm run at a million
        faces")."""
        if not faces:
            return {}
        content, when, x, y, w, h, score, points, blobs, skipped = zip(*faces, strict=True)
        vectors, vector_row, vector_list = _embedding_block(blobs)
        arena, at = None, 0
        if vectors is not None and len(vectors):
            arena = self._arena_for(settings, vectors)
            vectors, at = arena.take(vectors)
        columns = FaceColumns((x, y, w, h), _landmark_block(points), score, vectors,
                              vector_row, vector_list, skipped, when, arena, at)
        # each file's run of rows, found in one pass of numpy, its object made by map
        owners = np.array(content, np.int64)
        bounds = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1], True]).tolist()
        return dict(zip(owners[bounds[:-1]].tolist(),
                        map(StoredFaces, itertools.repeat(columns), bounds[:-1], bounds[1:]),
                        strict=True))

    def _arena_for(self, settings: int, block: np.ndarray) -> VectorArena:
        """Where a chunk's embeddings go (``stored_faces.VectorArena``): the current one
        of ``settings``, or a new one with room for every face stored under them."""
        arena = self._arenas.get(settings)
        if arena is None or not arena.fits(block):
            (stored,) = self.conn.execute(
                "SELECT coalesce(sum(faces), 0) FROM analyses WHERE settings = ?",
                (settings,)).fetchone()
            arena = self._arenas[settings] = VectorArena(max(int(stored), len(block)),
                                                         block.shape[1])
        return arena

    def load_objects(self, settings: int, contents: Sequence[int]
                     ) -> dict[int, list[ObjectBox]]:
        """The objects of those ``contents`` already looked at under ``settings`` (an
        empty list: looked at, nothing found; absent: not looked at yet)."""
        found: dict[int, list[ObjectBox]] = {}
        for chunk in _chunks(list(dict.fromkeys(contents))):
            marks = ",".join("?" * len(chunk))
            for (content,) in self.conn.execute(
                    "SELECT content FROM object_analyses WHERE settings = ? AND content IN "
                    f"({marks})", (settings, *chunk)):
                found[content] = []
            for content, when, label, score, x, y, w, h in self.conn.execute(
                    "SELECT content, time, label, score, x, y, w, h FROM objects "
                    f"WHERE settings = ? AND content IN ({marks}) ORDER BY content, n",
                    (settings, *chunk)):
                if content in found:
                    found[content].append(ObjectBox(label, score, (x, y, w, h), when))
        return found

    def record_objects(self, settings: int, content: int, objects: list[ObjectBox]) -> None:
        """Queue the objects of a content the index already has (objects-only pass)."""
        if not self.keeping:
            self.not_kept += 1
            return
        self._queue.append(_Queued(0, [], contents=[content], objects=(settings, objects)))
        self._written(1)

    def _store_objects(self, settings: int, content: int, objects: list[ObjectBox]) -> None:
        """Replace one content's objects under ``settings``; caller holds a transaction."""
        conn = self.conn
        conn.execute("DELETE FROM objects WHERE content = ? AND settings = ?",
                     (content, settings))
        conn.execute("INSERT OR REPLACE INTO object_analyses VALUES (?, ?, ?, ?)",
                     (content, settings, len(objects), time.time()))
        conn.executemany("INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (content, settings, n, o.time, o.label, float(o.score), *(int(v) for v in o.box))
            for n, o in enumerate(objects)])

    # ------------------------------------------------------------------ writes

    @contextlib.contextmanager
    def _write(self):
        """One short write transaction (used outside the batched writer)."""
        if self.conn.in_transaction:
            yield
            return
        self.begin()
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise

    def begin(self) -> None:
        """Start a write transaction unless one is open (batched writer)."""
        if not self.conn.in_transaction:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _is_locked(exc):
                    raise IndexLockedError(_locked_message(self.path)) from None
                raise

    def set_path(self, root: int, rel: str, size: int, mtime_ns: int, content: int) -> None:
        """Record (or move) a path onto a content; caller holds a transaction."""
        self.conn.execute("INSERT OR REPLACE INTO paths VALUES (?, ?, ?, ?, ?)",
                          (root, encode_rel(rel), size, mtime_ns, content))

    def store(self, settings: int, key: bytes, size: int, result: FileResult) -> int:
        """Store one analysed file's content row, analysis and faces; returns the content id.

        Caller holds a transaction (``begin``/``commit``); the analysis row and its faces
        go into the same transaction, so a kill can never leave half a file stored.
        """
        # A savepoint makes the file all-or-nothing even if Ctrl-C lands between two of
        # its statements and the caller then commits the transaction.
        self.conn.execute("SAVEPOINT one_file")
        try:
            content = self._store(settings, key, size, result)
        except BaseException:
            # A full disk may have rolled the whole transaction back already: then there
            # is no savepoint left, and the original error is the one to report.
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK TO one_file")
                    self.conn.execute("RELEASE one_file")
            raise
        self.conn.execute("RELEASE one_file")
        self._faces_changed()
        return content

    def _faces_changed(self) -> None:
        """Count a change of the stored faces (caller holds a transaction): the neighbour
        index beside this file (``neighbours.FaceGraph``) is trusted only when built at
        the current count."""
        # The first value is random, not 1: a new index made where a moved-away one was
        # (same path, same settings id) must never reach the old graph's generation. Each
        # step is random too: two copies of one index (a backup put back while the graph
        # of the newer one stays beside it) that each store as many files must not meet
        # at one count either.
        self.conn.execute(
            f"INSERT INTO meta VALUES ('faces_generation', {_RANDOM_GENERATION}) "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 "
            "+ abs(random() % 1000000)")

    def faces_generation(self) -> int:
        """A counter that moves on every change of the stored faces, from a random start
        (0 for an index that has not counted yet): part of the neighbour index's
        fingerprint."""
        row = self.conn.execute(
            "SELECT value FROM meta WHERE key = 'faces_generation'").fetchone()
        return int(row[0]) if row else 0

    def photo_embeddings(self, settings: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every embedded face of a photo under ``settings``: content keys (F, 16) uint8,
        face numbers (F,) and vectors (F, D) float32, by content id then face number.

        One query and one buffer per column, so a million faces load in about a second
        (building ``FileResult`` objects for them takes several): what the neighbour
        index is built from.
        """
        rows = self.conn.execute(
            "SELECT c.key, f.n, f.embedding FROM faces f JOIN contents c ON c.id = f.content "
            "WHERE f.settings = ? AND f.embedding IS NOT NULL AND c.kind = 'image' "
            "ORDER BY f.content, f.n", (settings,)).fetchall()
        if not rows:
            return (np.zeros((0, 16), np.uint8), np.zeros(0, np.int64),
                    np.zeros((0, 0), np.float32))
        keys, numbers, blobs = zip(*rows, strict=True)
        vectors = np.frombuffer(b"".join(blobs), np.float32).reshape(len(rows), -1)
        return (np.frombuffer(b"".join(keys), np.uint8).reshape(len(rows), -1),
                np.array(numbers, np.int64), vectors)

    def _store(self, settings: int, key: bytes, size: int, result: FileResult) -> int:
        conn = self.conn
        width, height = result.size if result.size else (None, None)
        row = conn.execute("SELECT id FROM contents WHERE key = ?", (key,)).fetchone()
        if row is None:
            content = conn.execute(
                "INSERT INTO contents (key, bytes, kind, width, height, taken, taken_from, "
                "duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, size, result.kind, width, height, result.taken, result.taken_from,
                 result.duration)).lastrowid
        else:
            content = row[0]
            if result.error is None:
                conn.execute(
                    "UPDATE contents SET kind = ?, width = ?, height = ?, taken = ?, "
                    "taken_from = ?, duration = ? WHERE id = ?",
                    (result.kind, width, height, result.taken, result.taken_from,
                     result.duration, content))
        conn.execute("DELETE FROM faces WHERE content = ? AND settings = ?", (content, settings))
        conn.execute("INSERT OR REPLACE INTO analyses VALUES (?, ?, ?, ?, ?, ?)",
                     (content, settings, result.error, result.frames, len(result.faces),
                      time.time()))
        conn.executemany(
            "INSERT INTO faces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (content, settings, n, face.time, *(int(v) for v in face.box),
                 float(face.score),
                 np.asarray(face.landmarks, dtype=np.float32).tobytes(),
                 None if face.embedding is None
                 else np.asarray(face.embedding, dtype=np.float32).tobytes(),
                 face.skipped)
                for n, face in enumerate(result.faces)
            ],
        )
        self._carry_decisions(settings, key, result)
        return content

    def _carry_decisions(self, settings: int, key: bytes, result: FileResult) -> None:
        """Give a file's new analysis the verdicts the user made on an earlier one of it.

        A new finder version (another detector, other settings) analyses a photo again and
        numbers its faces afresh, while the user's yes/no were said of the earlier
        analysis's faces. Each verdict is carried to the new face whose box overlaps the
        old one most (IoU >= 0.5; the same moment in a video), with the new face's box and
        embedding, so an upgrade loses no decision. The earlier rows stay as they were.
        Caller holds a transaction.
        """
        conn = self.conn
        if not result.faces or conn.execute(
                "SELECT 1 FROM decisions WHERE key = ? AND settings = ? LIMIT 1",
                (key, settings)).fetchone():
            return
        rows = conn.execute(
            "SELECT x, y, w, h, time, person, verdict, embedding, at FROM decisions "
            "WHERE key = ? AND settings != ? ORDER BY at", (key, settings)).fetchall()
        for n, face, (person, verdict, vector, at) in _on_faces(result.faces, rows):
            if face.embedding is not None:
                vector = np.asarray(face.embedding, np.float32).tobytes()
            # (in the verdicts' order: a face is one person only, the later verdict wins)
            self._put(settings, key, n, person, verdict, tuple(int(v) for v in face.box),
                      face.time, vector, at)
            self.carried += 1

    def record(self, settings: int, key: bytes, size: int, result: FileResult,
               root: int, rel: str, mtime_ns: int, objects_settings: int | None = None
               ) -> None:
        """Queue one analysed file and its path (and its objects, when it was looked at
        for them and ``objects_settings`` is given); written per the commit policy."""
        if not self.keeping:
            self.not_kept += 1
            return
        objects = (None if objects_settings is None or result.objects is None
                   else (objects_settings, result.objects))
        self._queue.append(_Queued(root, [(rel, size, mtime_ns)], (settings, key, result),
                                   objects=objects))
        self._written(1)

    def record_lost(self) -> None:
        """Count a result this index cannot keep (read-only, or writing has failed)."""
        self.not_kept += 1

    def record_paths(self, root: int, moved: Sequence[tuple[str, int, int, int]]) -> None:
        """Point paths (rel, bytes, mtime_ns, content id) at known contents (moved files)."""
        if moved and self.keeping:
            self._queue.append(_Queued(root, [(r, s, m) for r, s, m, _c in moved],
                                       contents=[c for *_rest, c in moved]))
            self._written(len(moved))

    def _written(self, files: int) -> None:
        self._uncommitted += files
        if (self._uncommitted >= COMMIT_FILES
                or time.monotonic() - self._last_commit >= COMMIT_SECONDS):
            self.flush()

    def flush(self) -> None:
        """Write what is queued, in one short transaction (also on Ctrl-C and at the end).

        Results wait in memory and the write lock is held only while they are written
        (milliseconds), so a second finder run on the same index is never kept waiting.
        """
        queue = self._queue
        self._uncommitted = 0
        self._last_commit = time.monotonic()
        if not queue or not self.keeping:
            self._queue = []
            return

        def write() -> None:
            for item in queue:
                if item.analysis is not None:  # a file analysed in this run
                    settings, key, result = item.analysis
                    (rel, size, mtime_ns), = item.paths
                    content = self.store(settings, key, size, result)
                    self.set_path(item.root, rel, size, mtime_ns, content)
                    if item.objects is not None:
                        self._store_objects(item.objects[0], content, item.objects[1])
                elif item.objects is not None and item.contents:  # objects-only pass
                    self._store_objects(item.objects[0], item.contents[0], item.objects[1])
                else:  # known contents found under new paths (moved or copied files)
                    for (rel, size, mtime_ns), content in zip(item.paths, item.contents,
                                                              strict=True):
                        self.set_path(item.root, rel, size, mtime_ns, content)

        if self._try_write(write):  # a Ctrl-C here leaves the queue for close()
            self._queue = []

    def _try_write(self, write: Callable[[], None]) -> bool:
        """Run ``write`` in its own short transaction; False when it could not be kept.

        A full disk, or another run holding the index longer than the busy timeout, is
        no reason to lose the search: from then on results are used but not kept
        (``keeping`` False, ``why_not_kept`` says why, ``not_kept`` counts them). Other
        database errors (a damaged file) are raised.
        """
        if not self.keeping:
            return False
        try:
            with self._write():
                write()
        except IndexLockedError:
            self._stop_keeping("another finder run kept it locked")
            return False
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "full" in text or "disk i/o" in text or "readonly" in text:
                self._stop_keeping("the disk is full" if "full" in text else str(exc))
                return False
            raise
        return True

    def _stop_keeping(self, why: str) -> None:
        self.keeping = False
        self.why_not_kept = why
        self.not_kept += sum(1 for item in self._queue if item.analysis is not None)
        self._queue = []

    def new_notices(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` not yet marked as shown; all of them when read-only and new."""
        found: set[str] = set()
        for chunk in _chunks(list(dict.fromkeys(keys))):
            sql = "SELECT key FROM notices WHERE key IN (" + ",".join("?" * len(chunk)) + ")"
            try:
                found.update(k for (k,) in self.conn.execute(sql, chunk))
            except sqlite3.OperationalError:  # schema 1 opened read-only: no such table
                break
        return set(keys) - found

    def mark_notices(self, keys: Sequence[str]) -> None:
        """Remember that these notices were shown (no-op when nothing can be kept)."""
        if keys:
            self._try_write(lambda: self.conn.executemany(
                "INSERT OR IGNORE INTO notices VALUES (?, ?)", [(k, time.time()) for k in keys]))

    def quick_check(self) -> str:
        """SQLite's own quick integrity check: 'ok' or the first problem found."""
        return str(self.conn.execute("PRAGMA quick_check(1)").fetchone()[0])

    def set_meta(self, key: str, value: dict) -> None:
        """Store one JSON value under ``key`` (skipped when nothing can be kept)."""
        self._try_write(lambda: self.conn.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            (key, json.dumps(value, ensure_ascii=False))))

    # ------------------------------------------------------------------ decisions

    def decisions(self, settings: Sequence[int] | None) -> list[Decision]:
        """Every decision the user made on faces of these analyses (None: of any
        analysis), oldest first."""
        if settings is not None and not settings:
            return []
        where = "" if settings is None else f"WHERE settings IN ({','.join('?' * len(settings))})"
        return [
            Decision(bytes(key), n, person, verdict, (x, y, w, h), when,
                     None if vector is None else np.frombuffer(vector, np.float32))
            for key, n, person, verdict, x, y, w, h, when, vector in self.conn.execute(
                "SELECT key, n, person, verdict, x, y, w, h, time, embedding FROM decisions "
                f"{where} ORDER BY at", tuple(settings or ()))
        ]

    def decisions_elsewhere(self, files: Sequence[FileResult],
                            settings: Sequence[int]) -> list[Decision]:
        """The user's verdicts on ``files`` made under analyses other than ``settings``,
        each on the file's own face at the same place (as ``_carry_decisions`` stores
        them), for the files with no verdict under ``settings``; each file's oldest first.

        Why: a run whose new analyses the index could not keep (a read-only stick, a full
        disk) carried nothing into it, and a photo the user said no to would be back."""
        wanted = {file.key: file for file in files if file.key is not None and file.faces}
        if not wanted:
            return []
        marks = ",".join("?" * len(settings))
        have = {bytes(key) for (key,) in self.conn.execute(
            f"SELECT DISTINCT key FROM decisions WHERE settings IN ({marks})",
            tuple(settings))} if settings else set()
        rows: dict[bytes, list[tuple]] = {}  # per file, oldest first
        for key, *row in self.conn.execute(
                "SELECT key, x, y, w, h, time, person, verdict FROM decisions "
                f"WHERE settings NOT IN ({marks}) ORDER BY at", tuple(settings)).fetchall():
            if bytes(key) in wanted and bytes(key) not in have:
                rows.setdefault(bytes(key), []).append(row)
        return [Decision(key, n, person, verdict, face.box, face.time, face.embedding)
                for key, said in rows.items()
                for n, face, (person, verdict) in _on_faces(wanted[key].faces, said)]

    def decide(self, settings: int, decision: Decision) -> None:
        """Store one verdict at once (own transaction); a face is one person only, so a
        ``yes`` replaces any other ``yes`` for that face, and either verdict replaces the
        opposite one for the same person.

        The verdict is the user's word on a face, not on one analysis of it: every other
        analysis of the photo already in the index (another model, ``--min-face``) gets it
        too, on its face that covers the same box, with that face's own embedding."""
        at = self._now()
        vector = (None if decision.embedding is None
                  else np.asarray(decision.embedding, np.float32).tobytes())
        with self._write():
            self._put(settings, decision.key, decision.n, decision.person, decision.verdict,
                      tuple(int(v) for v in decision.box), decision.time, vector, at)
            for other, n, box, embedding in self._same_face_elsewhere(
                    settings, decision.key, decision.box, decision.time):
                self._put(other, decision.key, n, decision.person, decision.verdict, box,
                          decision.time, embedding, at)

    def _put(self, settings: int, key: bytes, n: int, person: str, verdict: str,
             box: tuple[int, ...], when: float | None, vector: bytes | None,
             at: float) -> None:
        """One verdict row, replacing what it contradicts (caller holds a transaction)."""
        if verdict == "yes":
            self.conn.execute("DELETE FROM decisions WHERE key = ? AND settings = ? AND "
                              "n = ? AND verdict = 'yes'", (key, settings, n))
        self._forget(settings, key, n, person)
        self.conn.execute(
            "INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, settings, n, person, verdict, *box, when, vector, at))

    def _same_face_elsewhere(self, settings: int, key: bytes, box: Sequence[float],
                             when: float | None
                             ) -> list[tuple[int, int, tuple[int, ...], bytes | None]]:
        """(settings, face number, box, embedding) of the face covering ``box`` in each
        other analysis of the file ``key`` that the index holds (IoU >= 0.5, the same
        moment in a video)."""
        row = self.conn.execute("SELECT id FROM contents WHERE key = ?", (key,)).fetchone()
        if row is None:
            return []
        found: dict[int, list[tuple[int, Face, bytes | None]]] = {}
        for other, n, t, x, y, w, h, embedding in self.conn.execute(
                "SELECT settings, n, time, x, y, w, h, embedding FROM faces "
                "WHERE content = ? AND settings != ? ORDER BY settings, n", (row[0], settings)):
            face = Face((x, y, w, h), _NO_MARKS, 0.0, None, None, t)
            found.setdefault(other, []).append((n, face, embedding))
        same = []
        for other, faces in found.items():
            at = _overlapping_face([face for _, face, _ in faces],
                                   tuple(int(v) for v in box), when)  # type: ignore[arg-type]
            if at is not None:
                n, face, embedding = faces[at]
                same.append((other, n, tuple(int(v) for v in face.box), embedding))
        return same

    def _now(self) -> float:
        """When an answer is stored: never the same moment twice from one index (a clock
        may tick every 15 ms), so each answer is counted once (``info``) even when its
        copies under other analyses share it."""
        now = max(time.time(), self._last_answer + 1e-6)
        self._last_answer = now
        return now

    def decided_people(self) -> list[str]:
        """Everyone the user confirmed a face for, under any analysis: a name given on
        the review page stays a person when a new finder version analyses the photos
        again (its verdicts move to the new analysis as the photos are read)."""
        return [person for (person,) in self.conn.execute(
            "SELECT DISTINCT person FROM decisions WHERE verdict = 'yes' ORDER BY person")]

    def undecide(self, settings: int, key: bytes, n: int, person: str,
                 box: Sequence[float] | None = None, when: float | None = None) -> None:
        """Forget the verdict on one face for ``person`` (the user's undo), in every
        analysis of the photo that holds it (as ``decide`` gave it to them), and in
        every verdict said of the face at the same place under another analysis.

        ``box``/``when``: where the face is, for a verdict not stored under ``settings``:
        one carried to an analysis the index could not keep (a full disk) lives only in
        the run's memory, and would come back from the analysis it was said of
        (``decisions_elsewhere``) at the next search."""
        with self._write():
            said = self.conn.execute(
                "SELECT x, y, w, h, time FROM decisions WHERE key = ? AND settings = ? "
                "AND n = ?", (key, settings, n)).fetchone()
            self._forget(settings, key, n, person)
            if said is not None:
                box, when = said[:4], said[4]
            if box is None:
                return
            # every copy ``decide`` or a carry stored under another analysis sits at its
            # face's box there, so the verdicts at this place are all of them
            wanted = name_key(person)
            for other, m, x, y, w, h, t, stored in self.conn.execute(
                    "SELECT settings, n, x, y, w, h, time, person FROM decisions "
                    "WHERE key = ? AND settings != ?", (key, settings)).fetchall():
                if name_key(stored) == wanted and _overlapping_face(
                        [Face((x, y, w, h), _NO_MARKS, 0.0, None, None, t)],
                        tuple(int(v) for v in box), when) == 0:  # type: ignore[arg-type]
                    self._forget(other, key, m, person)

    def _forget(self, settings: int, key: bytes, n: int, person: str) -> None:
        """Delete a face's verdicts for ``person`` however the name was spelt then."""
        wanted = name_key(person)
        for (stored,) in self.conn.execute(
                "SELECT person FROM decisions WHERE key = ? AND settings = ? AND n = ?",
                (key, settings, n)).fetchall():
            if name_key(stored) == wanted:
                self.conn.execute("DELETE FROM decisions WHERE key = ? AND settings = ? AND "
                                  "n = ? AND person = ?", (key, settings, n, stored))

    # ------------------------------------------------------------------ clusters

    def cluster_labels(self, settings: int) -> dict[tuple[bytes, int], int]:
        """(content key, face number) -> cluster, as last stored."""
        return {(bytes(key), n): cluster for key, n, cluster in self.conn.execute(
            "SELECT key, n, cluster FROM face_clusters WHERE settings = ?", (settings,))}

    def change_cluster_labels(self, settings: int, labels: Sequence[tuple[bytes, int, int]],
                              gone: Sequence[tuple[bytes, int]],
                              new_from: int | None = None) -> int:
        """Set the cluster of ``(key, n, cluster)`` faces and forget ``(key, n)`` ones,
        leaving every other face's as stored (after an answer on the review page a few
        faces move: rewriting a million labels would take seconds, and the index may hold
        other folders' clusters, which a review of one folder must leave alone); clusters
        no face belongs to any more lose their flags.

        ``new_from``: the labels from this value on are new groups, numbered by a review
        from what the index held when it opened. Another review of the index (another
        folder, another window) may have stored groups under those ids since; then the new
        groups are moved up past every id stored, in this same write, so that two groups
        never share an id (a hidden flag is per id). Returns how far they were moved (0:
        not at all): the caller's labels from ``new_from`` on move as far."""
        if not labels and not gone:
            return 0
        with self._write():
            shift = 0
            if new_from is not None and any(c >= new_from for _k, _n, c in labels):
                (top,) = self.conn.execute(
                    "SELECT MAX(cluster) FROM face_clusters WHERE settings = ? AND "
                    "cluster >= ?", (settings, new_from)).fetchone()
                if top is not None:
                    shift = int(top) + 1 - new_from
                    labels = [(k, n, c + shift if c >= new_from else c)
                              for k, n, c in labels]
            self.conn.executemany(
                "DELETE FROM face_clusters WHERE key = ? AND settings = ? AND n = ?",
                [(key, settings, n) for key, n in gone])
            self.conn.executemany("INSERT OR REPLACE INTO face_clusters VALUES (?, ?, ?, ?)",
                                  [(key, settings, n, c) for key, n, c in labels])
            self.conn.execute("DELETE FROM clusters WHERE settings = ? AND cluster NOT IN "
                              "(SELECT cluster FROM face_clusters WHERE settings = ?)",
                              (settings, settings))
        return shift

    def hidden_clusters(self, settings: int) -> set[int]:
        return {c for (c,) in self.conn.execute(
            "SELECT cluster FROM clusters WHERE settings = ? AND hidden", (settings,))}

    def hide_cluster(self, settings: int, cluster: int, hidden: bool = True) -> None:
        with self._write():
            self.conn.execute("INSERT OR REPLACE INTO clusters VALUES (?, ?, ?)",
                              (settings, cluster, int(hidden)))

    # ------------------------------------------------------------------ lookups

    def paths_of(self, key: bytes) -> list[tuple[str, str]]:
        """Every (root folder, relative path) known to hold the content ``key``."""
        return [(decode_rel(root), decode_rel(rel)) for root, rel in self.conn.execute(
            "SELECT r.path, p.rel FROM contents c JOIN paths p ON p.content = c.id "
            "JOIN roots r ON r.id = p.root WHERE c.key = ? ORDER BY r.path, p.rel", (key,))]

    # ------------------------------------------------------------------ housekeeping

    def prune(self, root: str, presence: Callable[[str], Callable[[str], bool | None]]
              ) -> tuple[int, int, int]:
        """Forget paths under ``root`` that are positively gone, then contents no path
        refers to any more (with their analyses and faces).

        ``presence(folder)`` gives ``exists(rel)`` for the files under ``folder``: ``True``
        (still there: kept), ``False`` (seen to be gone: forgotten) or ``None`` (cannot
        tell - an unplugged drive, an unreadable folder: kept, and counted). A folder
        searched inside ``root`` is asked on its own, so that one whose drive is not
        plugged in (its mount folder gone) loses nothing. Returns (paths removed,
        contents removed, paths kept because they could not be checked). Contents still
        referenced from another root (a second copy of the collection, a drive not
        plugged in) are kept.
        """
        exists_under_root = presence(root)
        # ``root`` may be a folder searched, a folder inside one (its files only) or a
        # folder around several: the folders searched are looked up, never added
        # (root id, stored rel, the file's path as its ``exists`` takes it, that exists)
        asked: list[tuple[int, bytes, str, Callable[[str], bool | None]]] = []
        for root_id, stored in self.conn.execute("SELECT id, path FROM roots").fetchall():
            searched = decode_rel(stored)
            inner = _place_in(root, searched)  # root is the folder searched, or inside it
            if inner is None and _place_in(searched, root) is None:
                continue  # elsewhere
            exists = exists_under_root if inner is not None else presence(searched)
            for (rel,) in self.conn.execute("SELECT rel FROM paths WHERE root = ?",
                                            (root_id,)).fetchall():
                text = decode_rel(rel)
                if inner is None:  # a folder searched inside root: asked on its own
                    asked.append((root_id, rel, text, exists))
                elif not inner or text.startswith(inner + "/"):
                    asked.append((root_id, rel, text[len(inner) + 1:] if inner else text,
                                  exists))
        gone, unchecked = [], 0
        for root_id, rel, text, exists in asked:  # no statement open on the index meanwhile
            state = exists(text)
            if state is None:
                unchecked += 1
            elif not state:
                gone.append((root_id, rel))
        with self._write():
            self.conn.executemany("DELETE FROM paths WHERE root = ? AND rel = ?", gone)
            orphans = [c for (c,) in self.conn.execute(
                "SELECT id FROM contents WHERE id NOT IN (SELECT content FROM paths)")]
            for table in ("faces", "analyses", "objects", "object_analyses"):
                self.conn.executemany(f"DELETE FROM {table} WHERE content = ?",
                                      [(c,) for c in orphans])
            self.conn.executemany("DELETE FROM contents WHERE id = ?", [(c,) for c in orphans])
            if orphans:
                self._faces_changed()
        return len(gone), len(orphans), unchecked

    def info(self) -> IndexInfo:
        """Counts for ``--index-info``."""
        conn = self.conn
        roots = [(decode_rel(path), count) for path, count in conn.execute(
            "SELECT r.path, count(p.rel) FROM roots r LEFT JOIN paths p ON p.root = r.id "
            "GROUP BY r.id ORDER BY r.path")]
        contents = conn.execute("SELECT count(*) FROM contents").fetchone()[0]
        unreadable = conn.execute(
            "SELECT count(DISTINCT content) FROM analyses WHERE error IS NOT NULL").fetchone()[0]
        upgrade = self._upgrade_key or (lambda key: None)
        settings = [(upgrade(key) or key, files, faces)
                    for key, files, faces in conn.execute(
            "SELECT s.key, count(a.content), coalesce(sum(a.faces), 0) FROM settings s "
            "LEFT JOIN analyses a ON a.settings = s.id GROUP BY s.id ORDER BY s.key")]
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        size = sum(
            os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal"))
            if os.path.exists(p)
        )
        last = json.loads(meta["last_run"]) if "last_run" in meta else None
        decisions = None
        with contextlib.suppress(sqlite3.OperationalError):  # an old schema: no table
            # Each answer once: a verdict carried to a new analysis of the photo (other
            # settings, another finder version) keeps its person, verdict and moment.
            yes, no, named = conn.execute(
                "SELECT count(*) FILTER (WHERE verdict = 'yes'), "
                "count(*) FILTER (WHERE verdict = 'no'), "
                "count(DISTINCT person) FILTER (WHERE verdict = 'yes') FROM "
                "(SELECT DISTINCT key, person, verdict, at FROM decisions)"
            ).fetchone()
            decisions = (yes, no, named) if yes or no else None
        objects = None
        with contextlib.suppress(sqlite3.OperationalError):  # before schema 4: no tables
            by_name: dict[str, list[int]] = {}
            for settings_id, key in conn.execute("SELECT id, key FROM object_settings"):
                by_name.setdefault(_detector_name(key), []).append(settings_id)
            objects = []
            for name, ids in sorted(by_name.items()):
                marks = ",".join("?" * len(ids))
                looked = conn.execute("SELECT count(DISTINCT content) FROM object_analyses "
                                      f"WHERE settings IN ({marks})", ids).fetchone()[0]
                if looked:
                    labels = conn.execute(
                        "SELECT label, count(DISTINCT content) FROM objects WHERE settings IN "
                        f"({marks}) GROUP BY label ORDER BY 2 DESC, 1", ids).fetchall()
                    objects.append((name, looked, [(str(a), int(b)) for a, b in labels]))
            objects = objects or None
        return IndexInfo(self.path, size, roots, contents, unreadable, settings, last,
                         meta.get("created"), decisions, objects)


def _landmark_block(blobs: Sequence[bytes]) -> np.ndarray | list[np.ndarray]:
    """Each face row's landmarks (5, 2): one buffer for the chunk, a view per face (a
    third quicker than an array per blob, which counts at a million faces)."""
    if blobs and len(set(map(len, blobs))) == 1:
        return np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), -1, 2)
    return [np.frombuffer(b, np.float32).reshape(-1, 2) for b in blobs]


def _embedding_block(blobs: Sequence[bytes | None]
                     ) -> tuple[np.ndarray | None, np.ndarray, list[np.ndarray | None] | None]:
    """The embedded faces' vectors as one (E, D) block, each face's row in it (-1: not
    embedded), or, when their lengths differ, None, -1s and a vector (or None) per face:
    what ``FaceColumns`` takes."""
    if None not in blobs and len(set(map(len, blobs))) == 1:  # the usual case: C passes
        block = np.frombuffer(b"".join(blobs), np.float32)  # type: ignore[arg-type]
        return block.reshape(len(blobs), -1), np.arange(len(blobs), dtype=np.int64), None
    present = [i for i, b in enumerate(blobs) if b is not None]
    row = np.full(len(blobs), -1, np.int64)
    if len({len(blobs[i]) for i in present}) > 1:
        return None, row, [None if b is None else np.frombuffer(b, np.float32)
                           for b in blobs]
    if not present:
        return np.zeros((0, 0), np.float32), row, None
    block = np.frombuffer(b"".join(blobs[i] for i in present), np.float32)  # type: ignore[misc]
    row[present] = np.arange(len(present))
    return block.reshape(len(present), -1), row, None


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _locked_message(path: Path) -> str:
    return (f"the face index {path} is locked by another finder run (waited "
            f"{BUSY_TIMEOUT_S:.0f} s); let it finish, or use --index OTHER_FILE or --no-index")
