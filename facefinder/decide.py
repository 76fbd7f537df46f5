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

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from facefinder.decisions import Verdicts, name_key
from facefinder.match import BLOCK_VALUES, Gallery, KnownDistances, MatchedPhotos, PhotoFaces
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
    faces: PhotoFaces | None = None  # the collection's photo faces, rows of ``distance``
    distance: np.ndarray | None = None  # (F, P) final distances (None: not computed)
    # What the next decision over the same files can reuse (``decide(earlier=...)``):
    # the files, the gallery it started from and the faces' distances to it.
    files: Sequence[FileResult] = ()
    start: Gallery | None = None
    base: np.ndarray | None = None
    # Instead of ``base``, for a big collection whose expansion lowered ``distance`` in
    # place (no second (F, P) copy): the entries it changed, (flat positions in
    # ``distance``, values before), in the order they were changed; ``base_column``
    # undoes them a column at a time.
    changed: tuple[np.ndarray, np.ndarray] | None = None
    # each face's nearest person in ``distance`` and that distance, when the rule found
    # them on its way (``match.match_photos`` then does not look for them again)
    nearest: tuple[np.ndarray, np.ndarray] | None = None
    # the rows of the faces of files with a verdict (``PhotoFaces.rows_with_verdict``),
    # when the rule asked for them: matching asks the same (a pass over every file)
    verdict_rows: list[int] | None = None
    # what matching made of this decision (``api`` keeps it here): the next decision
    # over the same faces makes ``Match`` objects only for the photos that changed
    matched: MatchedPhotos | None = field(default=None, repr=False)
    _by_column: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def base_column(self, p: int) -> np.ndarray | None:
        """Person ``p``'s column of the faces' distances to the gallery the decision
        started from (before expansion), or None when not kept."""
        if self.base is not None:
            return self.base[:, p]
        if self.changed is None or self.distance is None:
            return None
        spots, before = self.changed
        people = self.distance.shape[1]
        if self._by_column is None:  # the changes grouped by column once, in their order
            order = np.argsort(spots % people, kind="stable")
            bounds = np.searchsorted(spots[order] % people, np.arange(people + 1))
            self._by_column = order, bounds
        order, bounds = self._by_column
        mine = order[bounds[p]:bounds[p + 1]]  # this column's changes, in their order
        # a face lowered twice: its first change holds the value before expansion (chosen
        # explicitly; numpy does not promise which of repeated assignments wins)
        rows, first = np.unique(spots[mine] // people, return_index=True)
        column = self.distance[:, p].copy()
        column[rows] = before[mine[first]]
        return column

    def before_expansion(self, *, give_up: bool = False) -> np.ndarray | None:
        """A fresh copy of the faces' (F, P) distances to the gallery the decision
        started from, or None when not kept.

        From ``changed`` without sorting it: expansion only ever lowers an entry, so the
        value an entry had before it is the largest of its logged values (and of its
        final one). At a million faces this takes a copy and one pass over the log,
        where putting the 100 columns back one at a time took a second.

        ``give_up``: this decision is being dropped (the next one replaces it), so its
        own final distances are put back in place and handed over instead of copied:
        400 MB of fresh memory at a million faces, most of a second on a machine that
        has to provide it anew. The decision keeps nothing to be reused after that."""
        if self.base is not None:
            base = self.base if give_up else self.base.copy()
        elif self.changed is None or self.distance is None:
            return None
        else:
            spots, before = self.changed
            base = self.distance if give_up else self.distance.copy()
            np.maximum.at(base.reshape(-1), spots, before)
        if give_up:
            self.distance = self.changed = self.base = None
            self._by_column = None
        return base


def person_thresholds(rule: RuleSpec, gallery: Gallery, vectors: np.ndarray,
                      distance: np.ndarray | None = None, *,
                      crowd: np.ndarray | None = None) -> np.ndarray:
    """(P,) cutoffs from how many of ``vectors`` fall in each person's impostor band
    (``distance``: their (F, P) distances to the gallery, when already known;
    ``crowd``: those counts, when already counted, see ``_Survey``)."""
    if not len(gallery.people):
        return np.zeros(0, np.float32)
    if not len(vectors):
        return np.full(len(gallery.people), rule.cap, np.float32)
    if crowd is None:
        if distance is None:
            distance = gallery.nearest_all(vectors)
        survey = _Survey(rule.band, len(distance), distance.shape[1])
        # counted a block of faces at a time: two (F, P) temporaries would be 200 MB each
        step = max(1, BLOCK_VALUES // 8 // max(1, distance.shape[1]))
        for a in range(0, len(distance), step):
            survey.count(distance[a:a + step])
        crowd = survey.crowd
    return np.clip(rule.c0 - rule.slope * np.log10(1.0 + crowd), rule.floor, rule.cap)


class _Survey:
    """What the rule needs to know of the (F, P) distances, gathered a block of faces at
    a time while the block is still in the cache (``Gallery.nearest_all``'s ``each``):
    how many faces fall in each person's impostor band, and each face's nearest person
    and distance. At a million faces each pass over the 400 MB of distances costs a
    tenth of a second or more."""

    def __init__(self, band: tuple[float, float], faces: int, people: int) -> None:
        self.low, self.high = band
        self.crowd = np.zeros(people, np.int64)
        self.best = np.empty(faces, np.int64)
        self.close = np.empty(faces, np.float32)
        self._adding = threading.Lock()  # two blocks may be surveyed at once

    def count(self, block: np.ndarray) -> None:
        counted = ((block >= self.low) & (block < self.high)).sum(axis=0)
        with self._adding:
            self.crowd += counted

    def __call__(self, start: int, block: np.ndarray) -> None:
        self.count(block)
        best = block.argmin(axis=1)
        self.best[start:start + len(block)] = best
        self.close[start:start + len(block)] = block[np.arange(len(block)), best]


_TILE_ROWS = 8192  # rows of the (F, P) distances gathered at once (3 MB at 100 people)
_GRAPH_ROWS = 1 << 16  # faces whose graph rows are read at once (5 MB at 20 neighbours)
_EDGES = 1 << 18  # edges lowered at a time (2 MB for each 64-bit temporary)

# From this many photo faces on, expansion follows the neighbour graph (when the caller
# has one) instead of comparing every face with every newcomer: below it the exact way
# takes under a second, above it its cost grows with the square of the collection.
GRAPH_FROM = 50_000


def _min_to(vectors: np.ndarray, joined: np.ndarray, person: np.ndarray,
            current: np.ndarray) -> None:
    """Lower ``current[:, person[j]]`` to each face's distance to newcomer ``joined[j]``,
    every face leaving itself out: one pass over the faces for all newcomers of a round
    (``joined`` sorted by person), in blocks of bounded size."""
    columns = max(1, min(len(joined), 4096))
    rows = max(1, BLOCK_VALUES // columns)
    for c in range(0, len(joined), columns):
        part, owner = joined[c:c + columns], person[c:c + columns]
        heads = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        targets = vectors[part].T
        for r in range(0, len(vectors), rows):
            block = 1.0 - vectors[r:r + rows] @ targets
            own = np.flatnonzero((part >= r) & (part < r + rows))
            block[part[own] - r, own] = np.inf
            near = np.minimum.reduceat(block, heads, axis=1)
            view = current[r:r + rows]
            view[:, owner[heads]] = np.minimum(view[:, owner[heads]], near)


def _min_to_graph(joined: np.ndarray, person: np.ndarray, current: np.ndarray,
                  graph: tuple[np.ndarray, np.ndarray],
                  log: list[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """Like ``_min_to``, over the neighbour graph only: a face is measured to a newcomer
    when one is among the other's neighbours (either way round), at the distance the
    graph keeps. Linear in the faces, where ``_min_to`` costs faces x newcomers; used for
    big collections. ``log``: gets (flat positions in ``current``, values before) of the
    entries it lowers, so the distances before expansion can be had back without a copy.
    Returns the faces whose distances went down (the others keep their nearest person).
    """
    near, dist = graph
    k, people = near.shape[1], current.shape[1]
    flat = current.reshape(-1)  # a view: written through
    # each face's newcomer's person, -1 for none; the last slot is what -1 (no
    # neighbour) reads. Gathered over the (F, K) rows a block of faces at a time, in
    # their own small type: 100 MB of temporaries at a million faces otherwise, and
    # fresh memory is what costs. (The result is the same in any order: each entry
    # ends at the smallest distance offered; the log keeps the order things happened.)
    # The smallest type the people fit: the 20 million lookups of a million faces' rows
    # land anywhere in it, and at a byte a face it stays in the core's own cache (a
    # third of the round's time, from four bytes a face).
    kind = next(t for t in (np.int8, np.int16, np.int32, np.int64)
                if people <= np.iinfo(t).max)
    of = np.full(len(current) + 1, -1, kind)
    of[joined] = person
    moved = np.zeros(len(current), bool)

    for a in range(0, len(near), _GRAPH_ROWS):
        rows, far = near[a:a + _GRAPH_ROWS], dist[a:a + _GRAPH_ROWS]
        owner = of[rows]
        at = np.flatnonzero(owner >= 0)  # faces with a newcomer among their neighbours
        if len(at):
            _lower(flat, people, a + at // k, rows.reshape(-1)[at], owner.reshape(-1)[at],
                   far.reshape(-1)[at], log, moved)
    # the newcomers' own neighbours, a block of newcomers at a time (their (J, K) rows,
    # never repeated out to J x K 64-bit temporaries)
    step = max(1, _EDGES // max(1, k))
    for c in range(0, len(joined), step):
        newcomer, whose = joined[c:c + step], person[c:c + step]
        theirs, far = near[newcomer], dist[newcomer]
        other = np.broadcast_to(newcomer[:, None], theirs.shape)
        column = np.broadcast_to(whose[:, None], theirs.shape)
        at = theirs >= 0  # (the usual case: every face has its K neighbours)
        if at.all():
            theirs, other, column, far = (x.reshape(-1) for x in (theirs, other, column, far))
        else:
            theirs, other, column, far = theirs[at], other[at], column[at], far[at]
        _lower(flat, people, theirs, other, column, far, log, moved)
    return np.flatnonzero(moved)


def _lower(flat: np.ndarray, people: int, face: np.ndarray, other: np.ndarray,
           column: np.ndarray, far: np.ndarray,
           log: list[tuple[np.ndarray, np.ndarray]] | None, moved: np.ndarray) -> None:
    """Lower ``flat[face * people + column]`` to ``far`` (edges from ``face`` to
    ``other``, never a face to itself), the smallest winning where several meet; the
    faces whose distances went down are set in ``moved``.

    Only the edges that lower something are written (read before any of a block is, so
    several edges to one entry still meet in np.minimum.at): random writes into the
    (F, P) array, in flat positions, are what costs at a million faces. In blocks of
    ``_EDGES`` edges: a million faces' newcomers bring four million edges, whose 64-bit
    temporaries (32 MB each) would be fresh memory every time, where a block's are
    reused, and in the cache. (An entry lowered by two blocks is logged twice, the
    first time with its value before: what ``Decided`` reads back.)"""
    for a in range(0, len(face), _EDGES):
        mine = face[a:a + _EDGES] != other[a:a + _EDGES]
        spot = face[a:a + _EDGES].astype(np.int64)
        spot *= people
        spot += column[a:a + _EDGES]
        near = far[a:a + _EDGES].astype(flat.dtype, copy=False)
        if not mine.all():
            spot, near = spot[mine], near[mine]
        before = flat[spot]
        down = near < before
        spot, near = spot[down], near[down]
        if log is not None:
            log.append((spot, before[down]))
        np.minimum.at(flat, spot, near)
        moved[spot // people] = True


def expand(rule: RuleSpec, gallery: Gallery, vectors: np.ndarray, photo: np.ndarray,
           vetoed: Callable[[int, int], bool] | None = None,
           names: Sequence[tuple[str, int]] | None = None,
           occupied: set[tuple[int, int]] | None = None,
           distance: np.ndarray | None = None, *,
           vetoable: np.ndarray | None = None,
           graph: tuple[np.ndarray, np.ndarray] | None = None
           ) -> tuple[Gallery, dict[str, int]]:
    """The gallery with confident faces added to their person, round after round.

    ``photo[i]`` says which file face i is in: a person takes at most one face per photo,
    over all rounds (``occupied``: (photo, person) slots already taken, by confirmed
    faces). ``vetoed(i, p)`` is True when face i must not join person p (the user said
    no, or said it is someone else); ``vetoable``: the only faces it can be True for
    (the faces with a verdict), so it is not asked a million times. ``distance``: the
    faces' (F, P) distances to the gallery, when known. Each round compares every face
    only with the faces that just joined, so a round costs faces x newcomers, not faces x
    gallery; with ``graph`` ((F, K) neighbour rows, -1 for none, and their (F, K)
    distances) only with the newcomers among its neighbours, which keeps a million
    faces linear.

    The returned gallery carries every face's final distance to each person
    (``Gallery.known``, keyed by ``names[i]`` = (file path, face number)); a face that
    joined is measured to its person's *other* faces, never to itself.
    """
    grown, added, current, _, _ = _expand(rule, gallery, vectors, photo, vetoed, occupied,
                                          distance, vetoable, graph)
    if names is not None and current is not None:
        grown.known = {name: current[i] for i, name in enumerate(names)}
    return grown, added


def _expand(rule: RuleSpec, gallery: Gallery, vectors: np.ndarray, photo: np.ndarray,
            vetoed: Callable[[int, int], bool] | None,
            occupied: set[tuple[int, int]] | None, distance: np.ndarray | None,
            vetoable: np.ndarray | None, graph: tuple[np.ndarray, np.ndarray] | None,
            in_place: bool = False, nearest: tuple[np.ndarray, np.ndarray] | None = None
            ) -> tuple[Gallery, dict[str, int], np.ndarray | None,
                       tuple[np.ndarray, np.ndarray] | None,
                       tuple[np.ndarray, np.ndarray] | None]:
    """``expand``, also returning the (F, P) final distances (None when nothing to do);
    with ``in_place`` and the graph, the entries of ``distance`` it lowered in place
    instead of copying it (see ``Decided.changed``); each face's nearest person and
    distance in the final distances. ``nearest``: each face's nearest person and
    distance in ``distance``, when already known (written to as they change)."""
    people = list(gallery.people)
    if not people or not len(vectors):
        return gallery, {}, None, None, None
    span = len(people)
    log: list[tuple[np.ndarray, np.ndarray]] | None = None
    if distance is None:
        current = gallery.nearest_all(vectors)
    elif in_place and graph is not None:  # 400 MB not copied at a million faces
        current, log = distance, []
    else:
        current = distance.copy()
    added = np.zeros(len(vectors), bool)
    extra: list[np.ndarray] = []
    photo = np.asarray(photo, np.int64)
    taken = np.array(sorted(int(f) * span + int(p) for f, p in occupied or ()), np.int64)
    askable = None
    if vetoed is not None and vetoable is not None:
        askable = np.zeros(len(vectors), bool)
        askable[np.asarray(vetoable, np.int64)] = True
    # each face's nearest person and distance, kept up to date below (along the graph
    # only the faces an expansion round moved are looked at again: a pass over the
    # (F, P) distances less per round)
    if nearest is not None and distance is not None:
        best, close = nearest
    else:
        best = current.argmin(axis=1)
        close = current[np.arange(len(vectors)), best]
    for _ in range(rule.rounds):
        candidate = np.flatnonzero((close < rule.expand_below) & ~added)
        slot = photo[candidate] * span + best[candidate]
        free = ~_sorted_has(taken, slot)
        candidate, slot = candidate[free], slot[free]
        if vetoed is not None:
            ask = (np.ones(len(candidate), bool) if askable is None
                   else askable[candidate])
            allowed = np.ones(len(candidate), bool)
            for j in np.flatnonzero(ask):
                allowed[j] = not vetoed(int(candidate[j]), int(best[candidate[j]]))
            candidate, slot = candidate[allowed], slot[allowed]
        if not len(candidate):
            break
        # one face per (photo, person): the closest, the first one on a tie
        order = np.lexsort((candidate, close[candidate], slot))
        heads = np.flatnonzero(np.r_[True, slot[order][1:] != slot[order][:-1]])
        chosen = candidate[order[heads]]
        taken = np.sort(np.concatenate([taken, slot[order[heads]]]))  # new slots: free ones
        added[chosen] = True
        # newcomers per person in the order their photo's first candidate came
        seen_first = np.minimum.reduceat(candidate[order], heads)
        chosen = chosen[np.argsort(seen_first, kind="stable")]
        owner = best[chosen]
        order = np.argsort(owner, kind="stable")
        chosen, owner = chosen[order], owner[order]
        extra.append(np.stack([chosen, owner]))
        if graph is None:
            _min_to(vectors, chosen, owner, current)
            best = current.argmin(axis=1)
            close = current[np.arange(len(vectors)), best]
        else:
            moved = _min_to_graph(chosen, owner, current, graph, log)
            for a in range(0, len(moved), _TILE_ROWS):  # rows gathered a tile at a time
                rows = moved[a:a + _TILE_ROWS]
                tile = current[rows]
                best[rows] = tile.argmin(axis=1)
                close[rows] = tile[np.arange(len(rows)), best[rows]]
    joined = np.concatenate(extra, axis=1) if extra else np.zeros((2, 0), np.int64)
    grown = gallery.with_added(vectors, joined[1], joined[0])  # in the order they came
    counts = np.bincount(joined[1], minlength=span)
    changed = None
    if log is not None:
        changed = ((np.concatenate([spot for spot, _ in log]),
                    np.concatenate([value for _, value in log])) if log else
                   (np.zeros(0, np.int64), np.zeros(0, current.dtype)))
    return (grown, {people[p]: int(counts[p]) for p in range(span) if counts[p]}, current,
            changed, (best, close))


def _sorted_has(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which ``values`` are in the sorted ``table`` (np.isin sorts both every round)."""
    if not len(table):
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(table, values), len(table) - 1)
    return table[at] == values


def confidence(rule: RuleSpec | None, margin: float) -> float | None:
    """The calibrated share of right matches at this margin under the cutoff."""
    if rule is None or not rule.confidence:
        return None
    return _shares(rule.confidence, [margin])[0]


def _shares(table: Sequence[tuple[float, float]], margins: Sequence[float]) -> list[float]:
    """The share of each margin in ``table`` (edges ascending): that of the last edge at
    or under it, the first share under the first edge; all margins in one search."""
    edges = np.array([edge for edge, _ in table], np.float64)
    at = np.maximum(np.searchsorted(edges, np.asarray(margins, np.float64), side="right") - 1,
                    0)
    return [table[i][1] for i in at.tolist()]


def decide(files: Sequence[FileResult], gallery: Gallery, rule: RuleSpec | None,
           threshold: float | None, verdicts: Verdicts | None, *,
           graph: Callable[[Sequence[FileResult], PhotoFaces],
                           tuple[np.ndarray, np.ndarray] | None] | None = None,
           earlier: Decided | None = None, give_up_earlier: bool = False) -> Decided:
    """The final gallery and per-person cutoffs for a collection's ``files``.

    ``threshold`` given (the user's ``--threshold``): that cutoff for everyone, with
    expansion under the smaller of it and the rule's expansion cutoff; ``rule`` None (a
    model not calibrated for the rule): the plain ``threshold``, no expansion.
    ``graph``: gives the photo faces' neighbour rows and distances (see ``expand``) when the
    collection is big enough to need them (``GRAPH_FROM`` faces), or None.
    ``earlier``: the decision before this one over the very same files (the review page
    decides again after every answer): its faces and their distances to each person
    whose reference faces did not change are reused, so an answer costs a pass over the
    faces for the one person it changed rather than the whole comparison.
    ``give_up_earlier``: the caller drops ``earlier`` once this returns (or raises), so
    its distances become this decision's instead of being copied; it is not to be used
    again either way.
    """
    same = (earlier is not None and earlier.faces is not None and len(earlier.files) == len(files)
            and all(a is b for a, b in zip(earlier.files, files, strict=True)))
    faces = earlier.faces if same and earlier is not None else PhotoFaces.of(files)
    if rule is None:
        assert threshold is not None
        return Decided(gallery, {p: float(threshold) for p in gallery.people}, {}, faces)
    vectors = faces.vectors
    photo = faces.file
    folded = {name_key(p): i for i, p in enumerate(gallery.people)}
    occupied: set[tuple[int, int]] = set()
    vetoable: list[int] = []
    if verdicts is not None and len(verdicts):
        vetoable = faces.rows_with_verdict(files, verdicts)
        for i in vetoable:
            yes, _ = verdicts.verdict(files[photo[i]].key, int(faces.n[i]))
            if yes is not None and name_key(yes) in folded:
                occupied.add((int(photo[i]), folded[name_key(yes)]))

    def vetoed(i: int, p: int) -> bool:
        file = files[photo[i]]
        if verdicts is None or file.key is None:
            return False
        yes, no = verdicts.verdict(file.key, int(faces.n[i]))
        return yes is not None or name_key(gallery.people[p]) in no

    survey = None
    if same:
        distance = _reuse(earlier, gallery, vectors, give_up_earlier)
    elif len(vectors):
        survey = _Survey(rule.band, len(vectors), len(gallery.people))
        distance = gallery.nearest_all(vectors, each=survey)
    else:
        distance = None
    if threshold is None:
        cuts = person_thresholds(rule, gallery, vectors, distance,
                                 crowd=None if survey is None else survey.crowd)
    else:
        cuts = np.full(len(gallery.people), threshold, np.float32)
    below = min(rule.expand_below, float(cuts.min()) if len(cuts) else rule.floor)
    local = RuleSpec(rule.floor, rule.cap, rule.band, rule.c0, rule.slope, below,
                     rule.rounds, rule.confidence)
    neighbours = (graph(files, faces) if graph is not None and len(faces) >= GRAPH_FROM
                  else None)
    expanded, added, current, changed, nearest = _expand(
        local, gallery, vectors, photo, vetoed, occupied, distance,
        np.array(vetoable, np.int64), neighbours, in_place=True,
        nearest=None if survey is None else (survey.best, survey.close))
    if current is not None:
        expanded.known = KnownDistances(files, faces, current)
    return Decided(expanded, {p: float(c) for p, c in zip(gallery.people, cuts, strict=True)},
                   added, faces, current, files, gallery,
                   None if changed is not None else distance, changed, nearest,
                   vetoable if verdicts is not None and len(verdicts) else None)


def _reuse(earlier: Decided, gallery: Gallery, vectors: np.ndarray,
           give_up: bool = False) -> np.ndarray | None:
    """The faces' (F, P) distances to ``gallery``, taking each person's column from
    ``earlier`` when their reference faces are the same, computing only the others
    (``give_up``: ``earlier`` is dropped after this, its arrays may be taken over)."""
    if not len(vectors):
        return None
    old = earlier.start
    if old is not None and list(old.people) == list(gallery.people):
        # the usual answer on the review page: the same people, one of them changed
        distance = earlier.before_expansion(give_up=give_up)
        if distance is not None:
            for p, name in enumerate(gallery.people):
                mine = gallery.vectors[gallery.owner == p]
                if not np.array_equal(old.vectors[old.owner == p], mine):
                    distance[:, p] = Gallery([name], mine, np.zeros(len(mine), np.int64)
                                             ).nearest_all(vectors)[:, 0]
            return distance
    column = {} if old is None or (earlier.base is None and earlier.changed is None) else {
        name: p for p, name in enumerate(old.people)}
    distance = np.empty((len(vectors), len(gallery.people)), np.float32)
    for p, name in enumerate(gallery.people):
        mine = gallery.vectors[gallery.owner == p]
        q = column.get(name)
        before = (earlier.base_column(q) if q is not None and old is not None
                  and np.array_equal(old.vectors[old.owner == q], mine) else None)
        if before is not None:
            distance[:, p] = before
        else:
            distance[:, p] = Gallery([name], mine, np.zeros(len(mine), np.int64)
                                     ).nearest_all(vectors)[:, 0]
    return distance


def with_confidence(matches: list[Match], rule: RuleSpec | None,
                    thresholds: dict[str, float]) -> list[Match]:
    """Fill in each match's confidence (1.0 for faces the user confirmed): ``confidence``
    for all of them at once (a million faces' matches are 200,000 calls otherwise)."""
    table = rule.confidence if rule is not None else ()
    shares = _shares(table, [thresholds.get(m.person, np.nan) - m.distance
                             for m in matches]) if table else []
    for i, match in enumerate(matches):
        if match.confirmed:
            match.confidence = 1.0
        elif match.person not in thresholds or not table:
            match.confidence = None
        else:
            match.confidence = shares[i]
    return matches
