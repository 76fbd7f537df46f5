"""The decision rule: who is who, once every face of the collection has been seen.

One cutoff for everyone cannot be right. A person whose neighbourhood in the collection is
crowded with lookalikes (the devset's 1,500 press-photo strangers) needs a strict cutoff;
a person with no near impostor at all (a family's own album, a pair of photos) can be
found at a much looser one - that is where their photos from other years and angles are.
So each person gets their own cutoff, from how crowded their neighbourhood is:

* ``n_p``: collection faces in the impostor band (``band``: clearly not them, yet not far)
  of person p's nearest reference;
* ``t_p = clip(c0 - slope * log10(1 + n_p), floor, cap)``: a crowded person sits at the
  floor (the model's default threshold), an uncrowded one up to the cap.

Then **query expansion**: faces that are confidently a person's (under ``expand_below``)
join that person's references, a person at most once per photo, for a few rounds, so a
photo of Grandma in 1985 is reached through her 1995 photos rather than straight from a
2020 portrait. A face the user rejected for a person never joins them; a face confirmed
for someone is never added to anyone else.

Constants were chosen by cross-validation over several albums and the public pair sets
(``benchmarks/pairs.py``, ``benchmarks/album.py``; figures and the runners-up in
``docs/decision.md``): leaving out any album but the devset, the same constants came out.
The rule needs the whole collection, so ``Finder.find`` applies it after the search
(matches sent with progress events are provisional, at the floor).

Each match carries a confidence: the share of matches with at least its margin under the
person's cutoff that were right on the calibration albums (``CONFIDENCE``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from facefinder.decisions import Verdicts, name_key
from facefinder.match import Gallery
from facefinder.records import FileResult, Match


@dataclass(frozen=True)
class RuleSpec:
    """The constants of the per-person rule for one model (its distance scale)."""

    floor: float  # the model's default threshold: a crowded person's cutoff
    cap: float  # the loosest cutoff any person gets
    band: tuple[float, float]  # impostor band: distances counted for crowding
    c0: float
    slope: float
    expand_below: float  # faces this close join their person's references
    rounds: int = 10
    # (margin under the cutoff at least, confidence), margin ascending
    confidence: tuple[tuple[float, float], ...] = ()


RULES: dict[str, RuleSpec] = {
    "facenet": RuleSpec(
        floor=0.32, cap=0.50, band=(0.55, 0.75), c0=0.55, slope=0.14, expand_below=0.28,
        # 4,906 accepted matches of 10 albums and pair sets; share right per margin bin,
        # (right + 1) / (n + 2), made monotone; checked leaving each album out
        # (docs/decision.md). The margin is the cutoff minus the face's distance to its
        # person's *other* faces, so a face that joined by expansion is not judged by
        # itself.
        confidence=((0.0, 0.9814), (0.02, 0.9831), (0.05, 0.9947), (0.1, 0.9991),
                    (0.2, 0.9996))),
}


@dataclass
class Decided:
    """The outcome of the rule over a collection."""

    gallery: Gallery  # references, confirmed and expanded faces (with their distances)
    thresholds: dict[str, float]  # person -> cutoff
    expanded: dict[str, int]  # person -> faces added by expansion


def person_thresholds(rule: RuleSpec, gallery: Gallery, vectors: np.ndarray,
                      distance: np.ndarray | None = None) -> np.ndarray:
    """(P,) cutoffs from how many of ``vectors`` fall in each person's impostor band
    (``distance``: their (F, P) distances to the gallery, when already known)."""
    if not len(gallery.people):
        return np.zeros(0, np.float32)
    if not len(vectors):
        return np.full(len(gallery.people), rule.cap, np.float32)
    if distance is None:
        distance = _nearest(gallery, vectors)
    low, high = rule.band
    crowd = ((distance >= low) & (distance < high)).sum(axis=0)
    return np.clip(rule.c0 - rule.slope * np.log10(1.0 + crowd), rule.floor, rule.cap)


BLOCK_VALUES = 1 << 24  # floats in one temporary distance matrix (64 MB)


def _nearest(gallery: Gallery, vectors: np.ndarray) -> np.ndarray:
    """(F, P) distances in blocks, so a million faces never make one huge matrix."""
    rows = max(1, BLOCK_VALUES // max(1, len(gallery.vectors)))
    parts = [gallery.nearest(vectors[i:i + rows]) for i in range(0, len(vectors), rows)]
    return np.concatenate(parts) if parts else np.zeros((0, len(gallery.people)), np.float32)


def _min_to(vectors: np.ndarray, joined: list[int]) -> np.ndarray:
    """(F,) distance of every face to the nearest of faces ``joined``, each face leaving
    itself out - in blocks of bounded size."""
    best = np.full(len(vectors), np.inf, np.float32)
    columns = max(1, min(len(joined), 4096))
    rows = max(1, BLOCK_VALUES // columns)
    for c in range(0, len(joined), columns):
        part = np.asarray(joined[c:c + columns])
        targets = vectors[part].T
        for r in range(0, len(vectors), rows):
            block = 1.0 - vectors[r:r + rows] @ targets
            own = np.flatnonzero((part >= r) & (part < r + rows))
            block[part[own] - r, own] = np.inf
            np.minimum(best[r:r + rows], block.min(axis=1), out=best[r:r + rows])
    return best


def expand(rule: RuleSpec, gallery: Gallery, vectors: np.ndarray, photo: np.ndarray,
           vetoed: Callable[[int, int], bool] | None = None,
           names: Sequence[tuple[str, int]] | None = None,
           occupied: set[tuple[int, int]] | None = None,
           distance: np.ndarray | None = None) -> tuple[Gallery, dict[str, int]]:
    """The gallery with confident faces added to their person, round after round.

    ``photo[i]`` says which file face i is in: a person takes at most one face per photo,
    over all rounds (``occupied``: (photo, person) slots already taken, by confirmed
    faces). ``vetoed(i, p)`` is True when face i must not join person p (the user said
    no, or said it is someone else). ``distance``: the faces' (F, P) distances to the
    gallery, when known. Each round compares every face only with the faces that just
    joined, so a round costs faces x newcomers, not faces x gallery.

    The returned gallery carries every face's final distance to each person
    (``Gallery.known``, keyed by ``names[i]`` = (file path, face number)); a face that
    joined is measured to its person's *other* faces, never to itself.
    """
    people = list(gallery.people)
    if not people or not len(vectors):
        return gallery, {}
    current = (_nearest(gallery, vectors) if distance is None else distance).copy()
    added = np.zeros(len(vectors), bool)
    extra: dict[int, list[int]] = {p: [] for p in range(len(people))}
    taken = set(occupied or ())
    for _ in range(rule.rounds):
        best = current.argmin(axis=1)
        close = current[np.arange(len(vectors)), best]
        chosen: dict[tuple[int, int], int] = {}
        for i in np.flatnonzero((close < rule.expand_below) & ~added):
            p = int(best[i])
            slot = (int(photo[i]), p)
            if slot in taken or (vetoed is not None and vetoed(int(i), p)):
                continue
            if slot not in chosen or close[i] < close[chosen[slot]]:
                chosen[slot] = int(i)
        if not chosen:
            break
        newcomers: dict[int, list[int]] = {}
        for slot, i in chosen.items():
            taken.add(slot)
            added[i] = True
            newcomers.setdefault(slot[1], []).append(i)
        for p, joined in newcomers.items():
            extra[p].extend(joined)
            np.minimum(current[:, p], _min_to(vectors, joined), out=current[:, p])
    grown = Gallery.build({
        name: [*gallery.vectors[gallery.owner == p], *vectors[extra[p]]]
        for p, name in enumerate(people)})
    if names is not None:
        grown.known = {name: current[i] for i, name in enumerate(names)}
    return grown, {people[p]: len(v) for p, v in extra.items() if v}


def confidence(rule: RuleSpec | None, margin: float) -> float | None:
    """The calibrated share of right matches at this margin under the cutoff."""
    if rule is None or not rule.confidence:
        return None
    value = rule.confidence[0][1]
    for edge, share in rule.confidence:
        if margin >= edge:
            value = share
    return value


def decide(files: Sequence[FileResult], gallery: Gallery, rule: RuleSpec | None,
           threshold: float | None, verdicts: Verdicts | None) -> Decided:
    """The final gallery and per-person cutoffs for a collection's ``files``.

    ``threshold`` given (the user's ``--threshold``): that cutoff for everyone, with
    expansion under the smaller of it and the rule's expansion cutoff; ``rule`` None (a
    model not calibrated for the rule): the plain ``threshold``, no expansion.
    """
    if rule is None:
        assert threshold is not None
        return Decided(gallery, {p: float(threshold) for p in gallery.people}, {})
    vectors, photo, faces = _collection_faces(files)
    folded = {name_key(p): i for i, p in enumerate(gallery.people)}
    occupied: set[tuple[int, int]] = set()
    if verdicts is not None:
        for i, (file, n) in enumerate(faces):
            yes, _ = verdicts.verdict(file.key, n)
            if yes is not None and name_key(yes) in folded:
                occupied.add((int(photo[i]), folded[name_key(yes)]))

    def vetoed(i: int, p: int) -> bool:
        file, n = faces[i]
        if verdicts is None or file.key is None:
            return False
        yes, no = verdicts.verdict(file.key, n)
        return yes is not None or name_key(gallery.people[p]) in no

    distance = _nearest(gallery, vectors) if len(vectors) else None
    if threshold is None:
        cuts = person_thresholds(rule, gallery, vectors, distance)
    else:
        cuts = np.full(len(gallery.people), threshold, np.float32)
    below = min(rule.expand_below, float(cuts.min()) if len(cuts) else rule.floor)
    local = RuleSpec(rule.floor, rule.cap, rule.band, rule.c0, rule.slope, below,
                     rule.rounds, rule.confidence)
    expanded, added = expand(local, gallery, vectors, photo, vetoed,
                             [(f.rel, n) for f, n in faces], occupied, distance)
    return Decided(expanded, {p: float(c) for p, c in zip(gallery.people, cuts, strict=True)},
                   added)


def _collection_faces(files: Sequence[FileResult]
                      ) -> tuple[np.ndarray, np.ndarray, list[tuple[FileResult, int]]]:
    """Embedded faces of the collection's photos: vectors, file number, (file, face number).

    Faces in videos are left out: a clip of one stranger would count as hundreds of
    impostors, and its sampled frames are too alike to be expansion steps.
    """
    rows: list[np.ndarray] = []
    photo: list[int] = []
    faces: list[tuple[FileResult, int]] = []
    for i, file in enumerate(files):
        if file.kind != "image":
            continue
        for n, face in enumerate(file.faces):
            if face.embedding is not None:
                rows.append(face.embedding)
                photo.append(i)
                faces.append((file, n))
    vectors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
    return vectors, np.array(photo, np.int64), faces


def with_confidence(matches: list[Match], rule: RuleSpec | None,
                    thresholds: dict[str, float]) -> list[Match]:
    """Fill in each match's confidence (1.0 for faces the user confirmed)."""
    for match in matches:
        if match.confirmed:
            match.confidence = 1.0
        else:
            cut = thresholds.get(match.person)
            match.confidence = None if cut is None else confidence(rule, cut - match.distance)
    return matches
