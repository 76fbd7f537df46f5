"""Decide who is in a photo: compare each face with every person's reference faces.

A face is the person whose nearest reference embedding is closest, provided that cosine
distance is under the threshold; each face names at most one person, and a photo names a
person once (by their closest face), so a group photo can still name several people.

The user's verdicts (``decisions.Verdicts``) come first: a face confirmed as a person is
theirs whatever its distance (and nobody else's), a face rejected for a person is never
theirs. A face just over the threshold, nearest to a person not otherwise found in the
file, is a "maybe" for that person: what the reports and the review page offer to check.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np
from threadpoolctl import OpenBLASController, ThreadpoolController

from facefinder.cores import available_cores
from facefinder.decisions import Verdicts, name_key
from facefinder.records import Face, FileResult, Match, face_id
from facefinder.stored_faces import StoredFaces

BLOCK_VALUES = 1 << 24  # floats in one temporary similarity matrix (64 MB)
# ... in ``Gallery.nearest_all``'s blocks: 8 MB, so that a block's similarities are still
# in the (32 MB) cache when they are reduced to each person's nearest
NEAREST_VALUES = 1 << 21
_TILE = 2048  # faces turned from (P, F) to (F, P) at a time


@dataclass
class Gallery:
    """All reference embeddings, grouped by person."""

    people: list[str]
    vectors: np.ndarray  # (M, D) unit vectors, rows grouped by person in ``people`` order
    owner: np.ndarray  # (M,) index into ``people`` for each row
    # Final distances of the collection's own faces to each person, from the decision
    # rule ((file path, face number) -> (P,)): computed once for the whole collection
    # (a face that joined by expansion is measured to its person's *other* faces, never
    # to itself), so matching a file does not compare it with the grown gallery again.
    known: Mapping[tuple[str, int], np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, per_person: dict[str, Sequence[np.ndarray]]) -> Gallery:
        """From {person: [embedding, ...]}; people without an embedding are left out."""
        people = [p for p in per_person if len(per_person[p])]
        rows = [v for p in people for v in per_person[p]]
        owner = np.array([i for i, p in enumerate(people) for _ in per_person[p]], dtype=np.int64)
        vectors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
        return cls(people, vectors, owner)

    def with_added(self, vectors: np.ndarray, owner: np.ndarray,
                   rows: np.ndarray | None = None) -> Gallery:
        """This gallery with ``vectors`` (or, given ``rows``, ``vectors[rows]``) added to
        the people at ``owner`` (indices into ``people``), laid out as ``build`` lays out
        its dict: each person's references, then their added vectors in the order given.

        In array operations: expansion adds 200,000 faces at a million, not 200,000 rows
        to list and stack again; and each person's added rows are gathered from
        ``vectors`` straight into their place in the new array, so the 100 MB of them are
        not copied twice more on the way (fresh memory is what costs at that size)."""
        people = len(self.people)
        owner = np.asarray(owner)
        order = np.argsort(owner, kind="stable")  # by person, each in the order given
        taken = order if rows is None else np.asarray(rows)[order]  # rows of ``vectors``
        owner = owner[order]
        new_at = np.searchsorted(owner, np.arange(people + 1))
        ref_at = np.searchsorted(self.owner, np.arange(people + 1))
        counts = np.diff(ref_at) + np.diff(new_at)
        if (not np.array_equal(np.sort(self.owner, kind="stable"), self.owner)
                or (counts == 0).any()):  # not laid out as ``build`` makes it: build it
            added = vectors[taken]
            return Gallery.build({name: [*self.vectors[self.owner == p],
                                         *added[new_at[p]:new_at[p + 1]]]
                                  for p, name in enumerate(self.people)})
        dim = vectors.shape[1] if self.vectors.size == 0 else self.vectors.shape[1]
        if vectors.dtype != np.float32:  # (``take`` writes only its own type)
            vectors = np.asarray(vectors, np.float32)
        out = np.empty((int(counts.sum()), dim), np.float32)
        start = 0
        for p in range(people):
            refs = ref_at[p + 1] - ref_at[p]
            out[start:start + refs] = self.vectors[ref_at[p]:ref_at[p + 1]]
            start += refs
            mine = taken[new_at[p]:new_at[p + 1]]
            if len(mine):
                # mode "clip": rows of ``vectors`` by construction; "raise" (the default)
                # would gather into a temporary and copy it over
                np.take(vectors, mine, axis=0, out=out[start:start + len(mine)], mode="clip")
                start += len(mine)
        return Gallery(list(self.people), out,
                       np.repeat(np.arange(people, dtype=np.int64), counts))

    def nearest(self, embeddings: np.ndarray, out: np.ndarray | None = None,
                work: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(F, P) cosine distance from each face to each person's nearest reference
        (written into ``out`` when given; ``work``: two flat float32 buffers of at least
        M x F and P x F values for the temporaries, reused block after block)."""
        bounds = np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1], True])
        # Similarities (M, F): each person's references are consecutive rows, so their
        # most similar is an element-wise max over a few whole rows (twice as quick as a
        # reduceat across columns); then 1 - it, the same numbers as the nearest of
        # 1 - similarity (rounding keeps the order), with P subtractions per face, not M.
        faces = np.asarray(embeddings, np.float32)
        if work is None:
            similar = self.vectors @ faces.T
            best = np.empty((len(bounds) - 1, similar.shape[1]), np.float32)
        else:  # memory already touched: fresh pages for every block cost as much again
            similar = np.matmul(self.vectors, faces.T,
                                out=work[0][:len(self.vectors) * len(faces)].reshape(
                                    len(self.vectors), len(faces)))
            best = work[1][:(len(bounds) - 1) * len(faces)].reshape(len(bounds) - 1,
                                                                    len(faces))
        sizes = np.diff(bounds)
        if len(sizes) and (sizes == sizes[0]).all():  # as many references each: one max
            np.max(similar.reshape(len(sizes), int(sizes[0]), -1), axis=1, out=best)
        else:
            for p, (start, end) in enumerate(itertools.pairwise(bounds)):
                np.max(similar[start:end], axis=0, out=best[p])
        if out is None:
            out = np.empty(best.shape[::-1], np.float32)
        # turned to (F, P) a slice of faces at a time: a whole transposed copy strides
        # across memory and took as long as the product itself at a million faces
        for a in range(0, best.shape[1], _TILE):
            np.subtract(1.0, best[:, a:a + _TILE].T, out=out[a:a + _TILE])
        return out

    def nearest_all(self, vectors: np.ndarray,
                    each: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
        """``nearest`` in blocks of ``block_rows()`` faces, into one (F, P) array: a
        million faces never make one huge similarity matrix, nor a second copy of the
        answer. ``each`` is called with each block's first row and its (rows, P)
        distances just written, to read them while they are in the cache: on the thread
        that computed the block, so two calls may run at once (in any order).

        The blocks are computed on threads of our own, one per core, each with a
        one-thread BLAS (``one_blas_thread``): a face's distances then depend on nothing
        but the block it sits in, not on how many cores the PC has or how the BLAS
        library split its sums; and the blocks, what ``each`` reads of them and the
        first writes to the answer's fresh memory use both cores.
        """
        out = np.empty((len(vectors), len(self.people)), np.float32)
        rows = self.block_rows()
        starts = range(0, len(vectors), rows)
        if not len(starts):
            return out
        step = min(rows, len(vectors))
        threads = min(available_cores(), len(starts))
        spare: queue.SimpleQueue[tuple[np.ndarray, np.ndarray]] = queue.SimpleQueue()
        for _ in range(threads):
            spare.put((np.empty(len(self.vectors) * step, np.float32),
                       np.empty(len(self.people) * step, np.float32)))

        def block(i: int) -> None:
            work = spare.get()
            try:
                self.nearest(vectors[i:i + rows], out[i:i + rows], work)
            finally:
                spare.put(work)
            if each is not None:
                each(i, out[i:i + rows])

        with one_blas_thread():
            if threads == 1:  # one core, or one block (the page's one person): no pool
                for i in starts:
                    block(i)
            else:
                with ThreadPoolExecutor(threads, thread_name_prefix="nearest") as pool:
                    list(pool.map(block, starts))  # (raises what a block raised)
        return out

    def block_rows(self) -> int:
        """Faces per block of ``nearest_all``: 8 MB of similarities, still in the cache
        when they are reduced to each person's nearest."""
        return max(1, NEAREST_VALUES // max(1, len(self.vectors)))


class _OneBlasThread:
    """The BLAS library held to one thread while anyone holds this (``one_blas_thread``).

    The first holder sets the limit, the last to leave gives the library's threads
    back, counted under a lock: the limit is the whole process's, and decisions may
    overlap (the review page's threads). ``threadpoolctl`` lets only the first thread
    that ever set an OpenBLAS limit set one again (the main thread, usually), silently
    ignoring the others; a decision made on a page's thread must hold the limit too, so
    the holder that sets or restores it takes that control first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._limit: Any = None
        self._controller: ThreadpoolController | None = None  # made once: 4 ms a time

    def __enter__(self) -> None:
        with self._lock:
            if self._holders == 0:
                if self._controller is None:
                    self._controller = ThreadpoolController()
                _take_blas_control()
                self._limit = self._controller.limit(limits=1, user_api="blas")
            self._holders += 1

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._limit is not None:
                _take_blas_control()
                self._limit.restore_original_limits()
                self._limit = None


def _take_blas_control() -> None:
    """Make this thread the one ``threadpoolctl`` lets set OpenBLAS's thread count
    (versions before 3.6 have no such rule)."""
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


_ONE_BLAS_THREAD = _OneBlasThread()


def one_blas_thread() -> contextlib.AbstractContextManager:
    """While it is held, the BLAS library computes a matrix product on one thread.

    Why: the product of a block of faces with the references gives last-bits different
    numbers with one BLAS thread or two (the library splits the sums otherwise: up to
    3e-5 apart on unnormalised test vectors), so ``nearest_all`` computes a block per
    thread of its own, each with a one-thread BLAS: the same numbers on any number of
    cores, from any thread."""
    return _ONE_BLAS_THREAD


@dataclass
class PhotoFaces:
    """The embedded faces of a collection's photos as arrays: one row per face.

    What the decision rule and ``match_photos`` work on, so that a million faces are a
    few numpy operations rather than a million Python objects compared one by one.
    """

    vectors: np.ndarray  # (F, D) float32
    file: np.ndarray  # (F,) index into the files list the table was made from
    n: np.ndarray  # (F,) the face's number in its file

    @classmethod
    def of(cls, files: Sequence[FileResult]) -> PhotoFaces:
        """Faces in videos are left out (``match_video`` judges those, frame by frame).

        Faces as the face index handed them back (``stored_faces.StoredFaces``, not yet
        made into objects) are taken straight from their chunks' embedding blocks; the
        others face by face."""
        # C-level passes and one comprehension: a loop step per file cost half a second
        # at a million faces
        kinds, lists = list(map(_kind, files)), list(map(_faces, files))
        fast = [i for i, kind, faces in zip(itertools.count(), kinds, lists, strict=False)
                if type(faces) is StoredFaces and faces.objects is None and kind == "image"]
        taken = np.zeros(len(files), bool)
        taken[fast] = True
        runs = [lists[i] for i in fast]  # (no (index, faces) pairs: half a million tuples)
        plain = [(i, lists[i]) for i in np.flatnonzero(~taken).tolist()
                 if kinds[i] == "image" and lists[i]]
        parts = [part for part in (_from_columns(fast, runs), _from_objects(plain))
                 if part is not None and len(part[0])]
        if len(parts) == 2 and parts[0][2].shape[1] != parts[1][2].shape[1]:
            parts = [_from_objects(sorted([*zip(fast, runs, strict=True), *plain],
                                          key=lambda pair: pair[0]))]
            parts = [p for p in parts if p is not None and len(p[0])]
        if not parts:
            return cls(np.zeros((0, 0), np.float32), np.zeros(0, np.int64),
                       np.zeros(0, np.int64))
        if len(parts) == 1:
            file, n, block = parts[0]
            return cls(block, file, n)
        file = np.concatenate([parts[0][0], parts[1][0]])
        order = np.argsort(file, kind="stable")  # each file's faces stay in their order
        return cls(np.concatenate([parts[0][2], parts[1][2]])[order], file[order],
                   np.concatenate([parts[0][1], parts[1][1]])[order])

    def __len__(self) -> int:
        return len(self.file)

    def rows_with_verdict(self, files: Sequence[FileResult], verdicts: Verdicts) -> list[int]:
        """Rows of the faces of the files with a verdict on any of their faces (the few
        the decision and matching ask ``verdicts`` about), without a lookup per face."""
        keys = {k for k, _ in verdicts.yes} | {k for (k, _n), v in verdicts.no.items() if v}
        wanted = [i for i, f in enumerate(files) if f.key is not None and f.key in keys]
        if not wanted:
            return []
        starts = np.searchsorted(self.file, wanted, side="left")
        ends = np.searchsorted(self.file, wanted, side="right")
        return [r for a, b in zip(starts, ends, strict=True) for r in range(int(a), int(b))]


_kind, _faces = attrgetter("kind"), attrgetter("faces")
_run = attrgetter("columns", "start", "end")


def _from_objects(files: Sequence[tuple[int, Sequence[Face]]]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(file, n, vectors) of the embedded faces of (file index, faces) pairs, face by
    face."""
    vectors = [face.embedding for _, faces in files for face in faces
               if face.embedding is not None]
    if not vectors:
        return None
    # three flat passes, not a million (file, n, vector) tuples unzipped
    file = [i for i, faces in files for face in faces if face.embedding is not None]
    n = [n for _, faces in files for n, face in enumerate(faces)
         if face.embedding is not None]
    # one concatenation of the flat vectors: np.stack adds an axis to each first,
    # a third of the time at a million faces
    if len({v.shape for v in vectors}) == 1:
        block = np.concatenate(vectors).reshape(len(vectors), -1)
    else:  # vectors of different lengths: np.stack refuses them
        block = np.stack(vectors)
    return (np.array(file, np.int64), np.array(n, np.int64),
            block.astype(np.float32, copy=False))


def _from_columns(index: Sequence[int], runs: Sequence[StoredFaces]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(file, n, vectors) of the embedded faces of stored faces ``runs`` (of the files
    at ``index``), from their chunks' columns: a few array operations, not one step per
    face. When the files come in their chunks' order (a warm run), the vectors are the
    chunks' blocks joined, without picking rows."""
    if not runs:
        return None
    # one C-level pass over the runs: at a million faces each pass over half a million
    # objects scattered in memory costs tenths of a second in cache misses
    of_run, first_row, end_row = zip(*map(_run, runs), strict=True)
    chunks = list(dict.fromkeys(of_run))
    if (any(c.vectors is None for c in chunks)  # vectors of different lengths in a chunk,
            or len({c.vectors.shape[1] for c in chunks if len(c.vectors)}) > 1):  # or apart
        return _from_objects(list(zip(index, runs, strict=True)))  # (cannot happen)
    which = {c: k for k, c in enumerate(chunks)}
    chunk = np.array(list(map(which.__getitem__, of_run)), np.int64)
    start = np.array(first_row, np.int64)
    count = np.array(end_row, np.int64) - start
    first_face = np.r_[0, np.cumsum([len(c) for c in chunks])]
    blocks = [c.vectors for c in chunks]
    first_vector = np.r_[0, np.cumsum([len(b) for b in blocks])]
    vector_row = np.concatenate([np.where(c.vector_row >= 0, c.vector_row + first_vector[k], -1)
                                 for k, c in enumerate(chunks)])
    ends = np.cumsum(count)
    rank = np.arange(int(ends[-1])) - np.repeat(ends - count, count)  # number in its file
    row = vector_row[np.repeat(first_face[chunk] + start, count) + rank]
    embedded = row >= 0
    file = np.repeat(np.array(index, np.int64), count)[embedded]
    n, row = rank[embedded], row[embedded]
    if not len(row):
        return None
    used = [c for c in chunks if len(c.vectors)]
    first, last = used[0], used[-1]
    if first.arena is not None and all(
            b.arena is first.arena and b.arena_start == a.arena_start + len(a.vectors)
            for a, b in itertools.pairwise(used)):  # one after the other in one arena
        whole = first.arena.rows[first.arena_start:last.arena_start + len(last.vectors)]
        whole.flags.writeable = False  # the stored faces' own embeddings (see ``take``)
    else:
        whole = np.concatenate([c.vectors for c in used])
    if not (len(row) == len(whole) and np.array_equal(row, np.arange(len(whole)))):
        whole = whole[row]  # files not in their chunks' order, or some faces left out
    return file, n, np.asarray(whole, np.float32)


class KnownDistances(Mapping):
    """(file path, face number) -> (P,) final distances, over the decision's arrays; the
    dict behind it is made only if something looks a face up by name."""

    def __init__(self, files: Sequence[FileResult], faces: PhotoFaces,
                 distance: np.ndarray) -> None:
        self.files, self.faces, self.distance = files, faces, distance
        self._dict: dict[tuple[str, int], np.ndarray] | None = None

    def _table(self) -> dict[tuple[str, int], np.ndarray]:
        if self._dict is None:
            self._dict = {(self.files[f].rel, int(n)): self.distance[i] for i, (f, n)
                          in enumerate(zip(self.faces.file.tolist(), self.faces.n.tolist(),
                                             strict=True))}
        return self._dict

    def __getitem__(self, key: tuple[str, int]) -> np.ndarray:
        return self._table()[key]

    def __iter__(self):
        return iter(self._table())

    def __len__(self) -> int:
        return len(self.faces)


@dataclass
class FaceTable:
    """The embedded faces of one file against the gallery, verdicts applied.

    ``distance[i, p]`` is inf where the user said face i is not person p (or is someone
    not searched for); ``confirmed[i]`` is the person index the user said yes to, or -1.
    """

    faces: list[tuple[int, Face]]  # (number in the file, face)
    distance: np.ndarray  # (F, P)
    confirmed: np.ndarray  # (F,)

    @classmethod
    def of(cls, result: FileResult, gallery: Gallery, verdicts: Verdicts | None) -> FaceTable:
        faces = [(n, f) for n, f in enumerate(result.faces) if f.embedding is not None]
        people = len(gallery.people)
        if not faces or not people:
            return cls([], np.zeros((0, people), np.float32), np.zeros(0, np.int64))
        known = [gallery.known.get((result.rel, n)) for n, _ in faces]
        if gallery.known and all(k is not None for k in known):
            distance = np.stack(known).astype(np.float32)  # a copy: vetoes go in below
        else:
            distance = gallery.nearest(np.stack([f.embedding for _, f in faces]))
        confirmed = np.full(len(faces), -1, np.int64)
        if verdicts is not None and len(verdicts):
            column = {name_key(p): i for i, p in enumerate(gallery.people)}
            for row, (n, _face) in enumerate(faces):
                yes, no = verdicts.verdict(result.key, n)
                if yes is not None:
                    distance[row, :] = np.inf  # theirs alone, or no one's searched
                    if name_key(yes) in column:
                        confirmed[row] = column[name_key(yes)]
                for name in no:
                    if name in column:
                        distance[row, column[name]] = np.inf
        return cls(faces, distance, confirmed)


def cutoffs(value: float | np.ndarray | None, people: int) -> np.ndarray | None:
    """A per-person (P,) array from one cutoff for everyone or from per-person cutoffs."""
    if value is None:
        return None
    return np.broadcast_to(np.asarray(value, np.float32), (people,))


def match_file(result: FileResult, gallery: Gallery, threshold: float | np.ndarray,
               verdicts: Verdicts | None = None,
               maybe_below: float | np.ndarray | None = None
               ) -> tuple[list[Match], list[Match]]:
    """The people shown in one analysed photo, each with their closest face; and the
    "maybes": faces nearest a person not found in the photo, under ``maybe_below``.

    ``threshold`` and ``maybe_below`` are one value for everyone or one per person (in
    ``gallery.people`` order).
    """
    table = FaceTable.of(result, gallery, verdicts)
    if not table.faces:
        return [], []
    cut = cutoffs(threshold, len(gallery.people))
    maybe_cut = cutoffs(maybe_below, len(gallery.people))
    assert cut is not None
    best: dict[int, tuple[float, int, bool]] = {}  # person -> (distance, row, confirmed)
    maybe: dict[int, tuple[float, int]] = {}
    best_person = table.distance.argmin(axis=1)
    for row, person in enumerate(best_person):
        if table.confirmed[row] >= 0:  # the user's yes: before any distance
            person = int(table.confirmed[row])
            distance = 0.0  # a confirmed face is one of the person's references
            if person not in best or not best[person][2] or distance < best[person][0]:
                best[person] = (distance, row, True)
            continue
        distance = float(table.distance[row, person])
        person = int(person)
        if distance < cut[person]:
            if person not in best or (not best[person][2] and distance < best[person][0]):
                best[person] = (distance, row, False)
        elif (maybe_cut is not None and distance < maybe_cut[person]
              and (person not in maybe or distance < maybe[person][0])):
            maybe[person] = (distance, row)

    def make(person: int, distance: float, row: int, confirmed: bool) -> Match:
        n, face = table.faces[row]
        return Match(result.rel, gallery.people[person], distance, face.box,
                     taken=result.taken, taken_from=result.taken_from,
                     face=None if result.key is None else face_id(result.key, n),
                     confirmed=confirmed, threshold=float(cut[person]))

    matches = [make(p, d, r, c) for p, (d, r, c) in sorted(best.items())]
    used = {r for _, r, _ in best.values()}
    maybes = [make(p, d, r, False) for p, (d, r) in sorted(maybe.items())
              if p not in best and r not in used]
    return matches, maybes



@dataclass
class MatchedPhotos:
    """``match_photos``' answer, and what it was made from face by face.

    Why: the review page decides the whole collection again after every answer, and an
    answer changes the outcome of a few faces; at a million faces, making the 200,000
    ``Match`` objects again was most of a second of each answer. Given the one before
    (over the very same ``faces``), ``match_collection`` keeps the objects of every photo
    whose faces all came out the same (person, distance, yes, cutoffs) and makes them
    only for the others.
    """

    by_file: dict[int, tuple[list[Match], list[Match]]]
    faces: PhotoFaces | None = None
    people: list[str] = field(default_factory=list)
    # per face: nearest person, distance, confirmed, that person's cutoff and maybe cutoff
    outcome: tuple[np.ndarray, ...] = ()

    def changed_files(self, faces: PhotoFaces, people: list[str], outcome: tuple[np.ndarray, ...],
                      files: int) -> np.ndarray | None:
        """(files,) True for each file where some face's outcome differs from this one's;
        None when this answer was not made over the same faces and people."""
        if (self.faces is not faces or self.people != people
                or len(self.outcome) != len(outcome)):
            return None
        differs = np.zeros(len(faces), bool)
        for before, now in zip(self.outcome, outcome, strict=True):
            differs |= before != now
        fresh = np.zeros(files, bool)
        fresh[faces.file[differs]] = True
        return fresh


def match_photos(files: Sequence[FileResult], faces: PhotoFaces | None,
                 distance: np.ndarray | None, gallery: Gallery, threshold: float | np.ndarray,
                 verdicts: Verdicts | None = None,
                 maybe_below: float | np.ndarray | None = None, *,
                 nearest: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> dict[int, tuple[list[Match], list[Match]]]:
    """``match_file`` for every photo of a collection at once: {file index: (matches,
    maybes)} for the files that have any, from the (F, P) ``distance`` of ``faces``.

    The same rule as ``match_file`` (the user's yes first, then the nearest person under
    their cutoff, per photo the closest face, the first one on a tie; maybes for people
    not found in the photo), in array operations: a million faces take seconds, where a
    Python loop per photo took a minute. ``nearest``: each face's nearest person in
    ``distance`` and that distance, when already known (``decide.Decided.nearest``).
    """
    return match_collection(files, faces, distance, gallery, threshold, verdicts,
                            maybe_below, nearest=nearest).by_file


def match_collection(files: Sequence[FileResult], faces: PhotoFaces | None,
                     distance: np.ndarray | None, gallery: Gallery,
                     threshold: float | np.ndarray, verdicts: Verdicts | None = None,
                     maybe_below: float | np.ndarray | None = None, *,
                     nearest: tuple[np.ndarray, np.ndarray] | None = None,
                     verdict_rows: Sequence[int] | None = None,
                     earlier: MatchedPhotos | None = None) -> MatchedPhotos:
    """``match_photos``, with what it was made from: ``earlier``, the answer over the same
    faces before (see ``MatchedPhotos``), lends the ``Match`` objects of the photos that
    came out the same. ``verdict_rows``: ``faces.rows_with_verdict(files, verdicts)``
    when the caller has it already."""
    people = len(gallery.people)
    out: dict[int, tuple[list[Match], list[Match]]] = {}
    faces = PhotoFaces.of(files) if faces is None else faces
    if not len(faces) or not people:
        return MatchedPhotos(out)
    if distance is None:  # no decision rule ran: the gallery's own distances
        distance = gallery.nearest_all(faces.vectors)
    cut = cutoffs(threshold, people)
    maybe_cut = cutoffs(maybe_below, people)
    assert cut is not None
    if nearest is not None and len(nearest[0]) == len(distance):
        best, near = nearest[0].copy(), nearest[1].astype(np.float32)  # changed below
    else:
        best = distance.argmin(axis=1)
        near = distance[np.arange(len(best)), best].astype(np.float32)
    confirmed = np.zeros(len(best), bool)
    if verdicts is not None and len(verdicts):
        column = {name_key(p): i for i, p in enumerate(gallery.people)}
        if verdict_rows is None:
            verdict_rows = faces.rows_with_verdict(files, verdicts)
        for row in verdict_rows:
            yes, no = verdicts.verdict(files[faces.file[row]].key, int(faces.n[row]))
            if yes is None and not no:
                continue
            line = np.array(distance[row], np.float32)
            if yes is not None:
                line[:] = np.inf
                if name_key(yes) in column:
                    confirmed[row] = True
                    best[row], near[row] = column[name_key(yes)], 0.0
                    continue
            for name in no:
                if name in column:
                    line[column[name]] = np.inf
            best[row] = line.argmin()
            near[row] = line[best[row]]
    found = confirmed | (near < cut[best])
    rows = np.flatnonzero(found)
    # per (file, person): a confirmed face first, then the closest, then the first row
    order = np.lexsort((rows, near[rows], ~confirmed[rows], best[rows], faces.file[rows]))
    rows = rows[order]
    group = faces.file[rows] * people + best[rows]  # (file, person), never negative
    head = np.diff(group, prepend=-1) != 0  # each (file, person)'s first row
    rows, taken = rows[head], group[head]
    outcome = (best, near, confirmed, cut[best],
               maybe_cut[best] if maybe_cut is not None else np.zeros(0, np.float32))
    fresh = (earlier.changed_files(faces, list(gallery.people), outcome, len(files))
             if earlier is not None else None)
    if fresh is not None:  # the earlier answer's lists for the photos that came out the same
        out = dict(earlier.by_file)  # (whose lists nobody changes)
        for file in np.flatnonzero(fresh).tolist():
            out.pop(file, None)
        rows = rows[fresh[faces.file[rows]]]
    for file, match in _matches(files, faces, gallery, rows, best, near, confirmed, cut):
        out.setdefault(file, ([], []))[0].append(match)
    if maybe_cut is not None:
        maybe = np.flatnonzero(~found & (near < maybe_cut[best]))
        order = np.lexsort((maybe, near[maybe], best[maybe], faces.file[maybe]))
        maybe = maybe[order]
        group = faces.file[maybe] * people + best[maybe]
        head = np.diff(group, prepend=-1) != 0
        maybe = maybe[head & ~np.isin(group, taken)]
        if fresh is not None:
            maybe = maybe[fresh[faces.file[maybe]]]
        for file, match in _matches(files, faces, gallery, maybe, best, near,
                                    np.zeros(len(near), bool), cut):
            out.setdefault(file, ([], []))[1].append(match)
    return MatchedPhotos(out, faces, list(gallery.people), outcome)


def _matches(files: Sequence[FileResult], faces: PhotoFaces, gallery: Gallery,
             rows: np.ndarray, best: np.ndarray, near: np.ndarray, confirmed: np.ndarray,
             cut: np.ndarray) -> Iterator[tuple[int, Match]]:
    """(file index, Match) for each of ``rows`` (its person ``best``, distance ``near``,
    the person's cutoff): the arrays read once as lists, not a numpy scalar per field,
    which is what made 200,000 matches take a second."""
    people = gallery.people
    for file, n, person, distance, sure, cutoff in zip(
            faces.file[rows].tolist(), faces.n[rows].tolist(), best[rows].tolist(),
            near[rows].tolist(), confirmed[rows].tolist(), cut[best[rows]].tolist(),
            strict=True):
        result = files[file]
        key, found = result.key, result.faces
        # stored faces: the box without making the file's Face objects
        box = found.box(n) if type(found) is StoredFaces else found[n].box
        yield file, Match(result.rel, people[person], distance, box, result.taken,
                          result.taken_from, face=None if key is None else face_id(key, n),
                          confirmed=sure, threshold=cutoff)
