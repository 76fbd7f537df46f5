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

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facefinder.decisions import Verdicts, name_key
from facefinder.records import Face, FileResult, Match, face_id


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
    known: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, per_person: dict[str, Sequence[np.ndarray]]) -> Gallery:
        """From {person: [embedding, ...]}; people without an embedding are left out."""
        people = [p for p in per_person if len(per_person[p])]
        rows = [v for p in people for v in per_person[p]]
        owner = np.array([i for i, p in enumerate(people) for _ in per_person[p]], dtype=np.int64)
        vectors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
        return cls(people, vectors, owner)

    def nearest(self, embeddings: np.ndarray) -> np.ndarray:
        """(F, P) cosine distance from each face to each person's nearest reference."""
        distances = 1.0 - embeddings @ self.vectors.T  # (F, M)
        starts = np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1]])
        return np.minimum.reduceat(distances, starts, axis=1)




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

