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

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from facefinder.decisions import Verdicts, name_key
from facefinder.records import Face, FileResult, Match, face_id

BLOCK_VALUES = 1 << 24  # floats in one temporary similarity matrix (64 MB)
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

    def nearest(self, embeddings: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(F, P) cosine distance from each face to each person's nearest reference
        (written into ``out`` when given)."""
        bounds = np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1], True])
        # Similarities (M, F): each person's references are consecutive rows, so their
        # most similar is an element-wise max over a few whole rows (twice as quick as a
        # reduceat across columns); then 1 - it, the same numbers as the nearest of
        # 1 - similarity (rounding keeps the order), with P subtractions per face, not M.
        similar = self.vectors @ np.asarray(embeddings, np.float32).T
        best = np.empty((len(bounds) - 1, similar.shape[1]), np.float32)
        for p, (start, end) in enumerate(itertools.pairwise(bounds)):
            np.max(similar[start:end], axis=0, out=best[p])
        if out is None:
            out = np.empty(best.shape[::-1], np.float32)
        # turned to (F, P) a slice of faces at a time: a whole transposed copy strides
        # across memory and took as long as the product itself at a million faces
        for a in range(0, best.shape[1], _TILE):
            np.subtract(1.0, best[:, a:a + _TILE].T, out=out[a:a + _TILE])
        return out

    def nearest_all(self, vectors: np.ndarray) -> np.ndarray:
        """``nearest`` in blocks of bounded size, into one (F, P) array: a million faces
        never make one huge similarity matrix, nor a second copy of the answer."""
        out = np.empty((len(vectors), len(self.people)), np.float32)
        rows = max(1, BLOCK_VALUES // max(1, len(self.vectors)))
        for i in range(0, len(vectors), rows):
            self.nearest(vectors[i:i + rows], out[i:i + rows])
        return out


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
        """Faces in videos are left out (``match_video`` judges those, frame by frame)."""
        photos = [(i, file.faces) for i, file in enumerate(files) if file.kind == "image"]
        vectors = [face.embedding for _, faces in photos for face in faces
                   if face.embedding is not None]
        if not vectors:
            return cls(np.zeros((0, 0), np.float32), np.zeros(0, np.int64),
                       np.zeros(0, np.int64))
        # three flat passes, not a million (file, n, vector) tuples unzipped
        file = [i for i, faces in photos for face in faces if face.embedding is not None]
        n = [n for _, faces in photos for n, face in enumerate(faces)
             if face.embedding is not None]
        # one concatenation of the flat vectors: np.stack adds an axis to each first,
        # a third of the time at a million faces
        if len({v.shape for v in vectors}) == 1:
            block = np.concatenate(vectors).reshape(len(vectors), -1)
        else:  # vectors of different lengths: np.stack refuses them
            block = np.stack(vectors)
        return cls(block.astype(np.float32, copy=False),
                   np.array(file, np.int64), np.array(n, np.int64))

    def __len__(self) -> int:
        return len(self.file)

    def rows_of(self, files: Sequence[FileResult], keys: set[bytes]) -> list[int]:
        """Rows of the faces whose file's content key is in ``keys`` (the few with a
        verdict), without a lookup per face."""
        wanted = [i for i, f in enumerate(files) if f.key is not None and f.key in keys]
        if not wanted:
            return []
        starts = np.searchsorted(self.file, wanted, side="left")
        ends = np.searchsorted(self.file, wanted, side="right")
        return [r for a, b in zip(starts, ends, strict=True) for r in range(int(a), int(b))]


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



def match_photos(files: Sequence[FileResult], faces: PhotoFaces | None,
                 distance: np.ndarray | None, gallery: Gallery, threshold: float | np.ndarray,
                 verdicts: Verdicts | None = None,
                 maybe_below: float | np.ndarray | None = None
                 ) -> dict[int, tuple[list[Match], list[Match]]]:
    """``match_file`` for every photo of a collection at once: {file index: (matches,
    maybes)} for the files that have any, from the (F, P) ``distance`` of ``faces``.

    The same rule as ``match_file`` (the user's yes first, then the nearest person under
    their cutoff, per photo the closest face, the first one on a tie; maybes for people
    not found in the photo), in array operations: a million faces take seconds, where a
    Python loop per photo took a minute.
    """
    people = len(gallery.people)
    out: dict[int, tuple[list[Match], list[Match]]] = {}
    faces = PhotoFaces.of(files) if faces is None else faces
    if not len(faces) or not people:
        return out
    if distance is None:  # no decision rule ran: the gallery's own distances
        distance = gallery.nearest_all(faces.vectors)
    cut = cutoffs(threshold, people)
    maybe_cut = cutoffs(maybe_below, people)
    assert cut is not None
    best = distance.argmin(axis=1)
    near = distance[np.arange(len(best)), best].astype(np.float32)
    confirmed = np.zeros(len(best), bool)
    if verdicts is not None and len(verdicts):
        column = {name_key(p): i for i, p in enumerate(gallery.people)}
        keys = {k for k, _ in verdicts.yes} | {k for (k, _n), v in verdicts.no.items() if v}
        for row in faces.rows_of(files, keys):
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
    group = faces.file[rows] * people + best[rows]
    rows = rows[np.r_[True, group[1:] != group[:-1]]] if len(rows) else rows
    for row in rows.tolist():
        entry = out.setdefault(int(faces.file[row]), ([], []))
        entry[0].append(_match(files, faces, gallery, row, int(best[row]), float(near[row]),
                               bool(confirmed[row]), float(cut[best[row]])))
    if maybe_cut is not None:
        maybe = np.flatnonzero(~found & (near < maybe_cut[best]))
        taken = set((faces.file[rows] * people + best[rows]).tolist())
        order = np.lexsort((maybe, near[maybe], best[maybe], faces.file[maybe]))
        maybe = maybe[order]
        group = faces.file[maybe] * people + best[maybe]
        maybe = maybe[np.r_[True, group[1:] != group[:-1]]] if len(maybe) else maybe
        for row in maybe.tolist():
            if int(faces.file[row]) * people + int(best[row]) in taken:
                continue
            entry = out.setdefault(int(faces.file[row]), ([], []))
            entry[1].append(_match(files, faces, gallery, row, int(best[row]),
                                   float(near[row]), False, float(cut[best[row]])))
    return out


def _match(files: Sequence[FileResult], faces: PhotoFaces, gallery: Gallery, row: int,
           person: int, distance: float, confirmed: bool, cut: float) -> Match:
    result = files[faces.file[row]]
    n = int(faces.n[row])
    face = result.faces[n]
    return Match(result.rel, gallery.people[person], distance, face.box, taken=result.taken,
                 taken_from=result.taken_from,
                 face=None if result.key is None else face_id(result.key, n),
                 confirmed=confirmed, threshold=cut)
