"""Decide who is in a photo: compare each face with every person's reference faces.

A face is the person whose nearest reference embedding is closest, provided that cosine
distance is under the threshold; each face names at most one person, and a photo names a
person once (by their closest face), so a group photo can still name several people.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facefinder.records import FileResult, Match


@dataclass
class Gallery:
    """All reference embeddings, grouped by person."""

    people: list[str]
    vectors: np.ndarray  # (M, D) unit vectors, rows grouped by person in ``people`` order
    owner: np.ndarray  # (M,) index into ``people`` for each row

    @classmethod
    def build(cls, per_person: dict[str, Sequence[np.ndarray]]) -> Gallery:
        """From {person: [embedding, ...]}; every person needs at least one embedding."""
        people = list(per_person)
        rows = [v for p in people for v in per_person[p]]
        owner = np.array([i for i, p in enumerate(people) for _ in per_person[p]], dtype=np.int64)
        vectors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
        return cls(people, vectors, owner)

    def nearest(self, embeddings: np.ndarray) -> np.ndarray:
        """(F, P) cosine distance from each face to each person's nearest reference."""
        distances = 1.0 - embeddings @ self.vectors.T  # (F, M)
        starts = np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1]])
        return np.minimum.reduceat(distances, starts, axis=1)


def match_file(result: FileResult, gallery: Gallery, threshold: float) -> list[Match]:
    """The people shown in one analysed file, each with their closest face."""
    faces = [f for f in result.faces if f.embedding is not None]
    if not faces or not gallery.people:
        return []
    per_person = gallery.nearest(np.stack([f.embedding for f in faces]))
    best_person = per_person.argmin(axis=1)
    best: dict[int, tuple[float, int]] = {}
    for face_index, person in enumerate(best_person):
        distance = float(per_person[face_index, person])
        if distance < threshold and (person not in best or distance < best[person][0]):
            best[int(person)] = (distance, face_index)
    return [
        Match(result.rel, gallery.people[p], distance, faces[i].box)
        for p, (distance, i) in sorted(best.items())
    ]
