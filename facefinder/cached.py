"""Answer "what is in this file?" from the face index when possible, from an executor if not.

Main process only (SQLite never crosses into a worker); no SQL here (``index`` owns it).
Scanned files are handled in chunks: one stat each, one query for the chunk's paths; a
path whose size and mtime are unchanged is a hit without reading a byte. The others are
hashed (``index.content_key``) and looked up by content, which is how a renamed, moved
or copied file is recognised. Whatever is still unknown goes to the executor, a few
hundred files at a time, and each result is recorded in the index as it arrives (the
index commits every few seconds), so a run killed at any moment loses at most those
seconds of work and the next run carries on.

Objects (``--objects``) are looked up beside the faces under their own key: a file whose
faces the index knows but whose objects it does not is sent to an objects-only pass
(``AnalysisJob.faces`` False), so its faces are never detected again.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from facefinder.analyse import AnalysisJob, analysis_key, local_time
from facefinder.executors import Executor, Item, analyse_all
from facefinder.index import FaceIndex, content_key
from facefinder.object_analysis import object_key
from facefinder.records import FileKind, FileResult

SCAN_CHUNK = 256  # files stat'ed and looked up per query round
DISPATCH = 256  # unknown files handed to the executor per round
INLINE_FILES = 8  # fewer trusted files than this are analysed here: no worker start-up


@dataclass
class _Pending:
    path: Path
    rel: str
    kind: FileKind
    key: bytes
    size: int
    mtime_ns: int


class Analyser:
    """Turns scanned files into FileResults, using and filling the index (if any).

    ``decoded`` counts files analysed by the pipeline in this run (what a warm re-run
    should keep at zero) and ``from_index`` those answered from the index;
    ``objects_read`` those whose faces the index knew, read again for objects only.
    """

    def __init__(self, index: FaceIndex | None, job: AnalysisJob, executor: Executor,
                 inline: Executor) -> None:
        self.index = index
        self.job = job
        self.executor = executor
        self.inline = inline  # for a handful of files: no worker start-up
        self.decoded = 0
        self.from_index = 0
        self.objects_read = 0
        self._settings_ids: dict[FileKind, int | None] = {}
        self._object_ids: dict[FileKind, int | None] = {}
        # Files whose faces came from the index and whose objects are still to be found:
        # rel -> (the file, its stored result, its content id).
        self._objects_waiting: dict[str, tuple[_Pending, FileResult, int]] = {}

    # ------------------------------------------------------------------ public

    def results(self, root: Path, items: Iterable[Item], *, trusted: bool = False
                ) -> Iterator[FileResult]:
        """FileResults for ``items`` (files under ``root``), hits first within each chunk.

        ``trusted`` files (the user's own reference photos) may be read in this process
        when there are only a few, sparing the workers' start-up; the collection's files
        always go to the executor, where a file that crashes its reader cannot take the
        whole finder down.
        """
        if self.index is None:  # stream straight to the executor
            for result in analyse_all(items, self._job(trusted), self.executor):
                self.decoded += result.kind != "other"
                yield result
            return
        root_id = self.index.root_id(os.path.abspath(root))
        iterator = iter(items)
        waiting: dict[str, _Pending] = {}
        try:
            while chunk := list(itertools.islice(iterator, SCAN_CHUNK)):
                yield from self._lookup(root_id, chunk, waiting, trusted)
                if len(waiting) >= DISPATCH:
                    yield from self._analyse_waiting(waiting, root_id, trusted)
                if len(self._objects_waiting) >= DISPATCH:
                    yield from self._objects_pass()
            yield from self._analyse_waiting(waiting, root_id, trusted)
            yield from self._objects_pass()
        finally:
            self.index.flush()

    # ------------------------------------------------------------------ internals

    def settings_id(self, kind: FileKind) -> int | None:
        """The index's id of this run's analysis key for ``kind`` (computed once)."""
        if kind not in self._settings_ids:
            assert self.index is not None
            self._settings_ids[kind] = self.index.settings_id(analysis_key(self.job, kind))
        return self._settings_ids[kind]

    def _job(self, trusted: bool) -> AnalysisJob:
        """The job for these files: reference photos (``trusted``) need no objects."""
        return replace(self.job, objects=None) if trusted else self.job

    def object_settings_id(self, kind: FileKind) -> int | None:
        """The index's id of this run's object key for ``kind`` (None: no --objects)."""
        if self.job.objects is None:
            return None
        if kind not in self._object_ids:
            assert self.index is not None
            self._object_ids[kind] = self.index.object_settings_id(
                object_key(self.job.objects, self.job.settings, kind))
        return self._object_ids[kind]

    def _lookup(self, root_id: int | None, chunk: list[Item], waiting: dict[str, _Pending],
                trusted: bool = False) -> Iterator[FileResult]:
        """Yield the chunk's hits; put the rest in ``waiting`` (and in
        ``_objects_waiting`` the hits whose objects are not known yet)."""
        index = self.index
        assert index is not None
        stats: list[tuple[Path, str, FileKind, int, int]] = []
        for path, rel, kind in chunk:
            if kind == "other":
                yield FileResult(rel=rel, kind="other")
                continue
            try:
                info = os.stat(path)
            except OSError as exc:
                yield FileResult(rel=rel, kind=kind,
                                 error=f"cannot read file: {exc.strerror or exc}")
                continue
            stats.append((path, rel, kind, info.st_size, info.st_mtime_ns))
        known = index.paths(root_id, [s[1] for s in stats]) if root_id is not None else {}
        content_of: dict[str, int] = {}
        keys: dict[str, bytes] = {}
        for _path, rel, _kind, size, mtime in stats:
            row = known.get(rel)
            if row is not None and row[0] == size and row[1] == mtime:
                content_of[rel] = row[2]
        to_hash = [s for s in stats if s[1] not in content_of]
        for path, rel, _kind, size, _mtime in to_hash:
            try:
                keys[rel] = content_key(path, size)
            except OSError:
                keys[rel] = b""  # unreadable now: the worker says why, in its own words
        by_key = index.contents_by_key([k for k in keys.values() if k])
        moved: list[tuple[str, int, int, int]] = []
        for _path, rel, _kind, size, mtime in to_hash:
            content = by_key.get(keys[rel])
            if content is not None:
                content_of[rel] = content
                moved.append((rel, size, mtime, content))

        stored: dict[FileKind, dict[int, FileResult]] = {}
        objects: dict[FileKind, dict | None] = {}
        for kind in ("image", "video"):
            ids = [content_of[s[1]] for s in stats if s[2] == kind and s[1] in content_of]
            settings = self.settings_id(kind) if ids else None
            stored[kind] = index.load(settings, ids) if settings is not None else {}
            objects[kind] = None
            if ids and not trusted and self.job.objects is not None:
                # No id: a read-only index that has never seen this detector (or of an
                # older schema): every file's objects are found again, and not kept.
                wanted = self.object_settings_id(kind)
                objects[kind] = index.load_objects(wanted, ids) if wanted is not None else {}
        moved_known: list[tuple[str, int, int, int]] = []
        for path, rel, kind, size, mtime in stats:
            content = content_of.get(rel)
            result = stored[kind].get(content) if content is not None else None
            if result is None:
                key = keys.get(rel)
                if key is None:  # known by its path, not yet analysed with these settings:
                    try:  # its content key is what the new analysis is stored under
                        key = content_key(path, size)
                    except OSError:
                        key = b""  # unreadable now: the worker says why
                waiting[rel] = _Pending(path, rel, kind, key, size, mtime)
                continue
            self.from_index += 1
            result = replace(result, rel=rel)  # two paths may share one content's record
            if result.taken_from == "file time":  # the file's date, not its content's: the
                result.taken = local_time(mtime / 1e9)  # date it has now, at this path
            known = objects[kind]
            if known is not None and result.error is None:
                if content not in known:  # faces known, objects not yet
                    self._objects_waiting[rel] = (
                        _Pending(path, rel, kind, keys.get(rel) or b"", size, mtime),
                        result, content)
                    continue
                result.objects = known[content]
            yield result
        for rel, size, mtime, content in moved:
            if rel not in waiting:
                moved_known.append((rel, size, mtime, content))
        if root_id is not None and not index.read_only:
            index.record_paths(root_id, moved_known)

    def _analyse_waiting(self, waiting: dict[str, _Pending], root_id: int | None,
                         trusted: bool) -> Iterator[FileResult]:
        if not waiting:
            return
        pending = dict(waiting)
        waiting.clear()
        items = [(p.path, p.rel, p.kind) for p in pending.values()]
        # A handful of files (a new reference person) is faster in this process than
        # starting worker processes and loading the models in each.
        small = trusted and len(items) < INLINE_FILES
        for result in analyse_all(items, self._job(trusted),
                                  self.inline if small else self.executor):
            if result.kind != "other":
                self.decoded += 1
            item = pending.get(result.rel)
            self._store(result, item, root_id)
            if item is not None and item.key and result.kind != "other":
                result.key = item.key
            yield result

    def _objects_pass(self) -> Iterator[FileResult]:
        """Find the objects of files whose faces the index knew: no face is detected."""
        if not self._objects_waiting:
            return
        waiting = dict(self._objects_waiting)
        self._objects_waiting.clear()
        items = [(p.path, p.rel, p.kind) for p, _result, _content in waiting.values()]
        index = self.index
        assert index is not None
        for found in analyse_all(items, replace(self.job, faces=False), self.executor):
            if found.rel not in waiting:
                continue
            item, result, content = waiting[found.rel]
            self.objects_read += 1
            # Unreadable now but read before (its faces are known): a file that is still
            # being written, a drive that hiccupped, a detector that failed on it; said
            # in one line and not kept, so the next run retries.
            unread = found.objects_error or found.error
            objects = None if unread else found.objects or []
            result.objects, result.objects_error = objects, unread
            settings = self.object_settings_id(item.kind)
            if objects is not None and settings is not None:
                index.record_objects(settings, content, objects)
            yield result

    def _store(self, result: FileResult, item: _Pending | None, root_id: int | None) -> None:
        index = self.index
        if index is None or item is None:
            return
        if result.error and result.error.startswith("cannot read file"):
            return  # an I/O problem of this moment, not a property of the content
        key = item.key
        if not key:
            return
        settings = self.settings_id(item.kind)
        if settings is None or root_id is None:  # a read-only index (counts what it loses)
            index.record_lost()
            return
        objects = None if result.objects is None else self.object_settings_id(item.kind)
        index.record(settings, key, item.size, result, root_id, item.rel, item.mtime_ns,
                     objects_settings=objects)
