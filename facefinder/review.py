"""Review one collection: see what was found, say yes or no, name the people nobody knows.

The use cases behind the review page and its JSON API (``facefinder.web``), written over
:class:`facefinder.api.Finder` so that the page, the CLI and the benchmarks get the same
answers. A :class:`Review` runs one search of the collection (answered from the face
index after the first time), keeps every file's faces in memory, and then:

* ``decide`` stores the user's yes/no in the index at once and matches again with it
  (``Finder.rematch``): a confirmed face joins its person's references, so the next
  suggestions already use it; a rejected face never comes back for that person;
* ``suggestions`` are the faces worth asking about for a person: their unconfirmed
  matches and their "maybes" (nearest to them, just over the threshold), ordered by how
  close they are to the threshold - the answers that teach the most come first;
* ``clusters`` group the faces that match nobody ("who else is here?"); naming a
  cluster confirms its faces for that name, which makes it a person;
* ``search`` takes an uploaded photo's bytes: its faces, each with the nearest people
  and the k nearest faces of the collection.

Files are only ever named by their content key (``file`` ids) and faces by face ids;
paths come from the index and the search, never from a caller, so a request cannot make
this module open a file that is not a photo of the collection.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from facefinder.api import (
    Event,
    Finder,
    FinderError,
    RunResult,
    maybe_limit,
    open_index,
    reference_gallery,
)
from facefinder.decisions import Verdicts, check_name, name_key
from facefinder.index import FaceIndex, IndexFileError, IndexLockedError
from facefinder.messages import one_line
from facefinder.object_report import object_entry
from facefinder.records import Decision, Face, FileResult, Match, face_id, parse_face_id

SUGGESTION_KINDS = ("both", "maybe", "check")
MAX_LIMIT = 500
SEARCH_K = 5


class ReviewError(ValueError):
    """A request that cannot be answered (unknown face, bad name); ``str()`` is one line."""


class IndexUnavailable(ReviewError, FinderError):
    """The face index cannot keep answers now (read-only, held by another run, a full
    disk): the page says so in one line, and at start-up the finder does."""


@dataclass
class _FaceRow:
    file: int  # index into ``result.files``
    n: int  # number of the face in its file
    face: Face


class Cluster:
    """A group of faces that match nobody, likely one person.

    Made of the review's rows (``rows``: largest faces first); its face ids and files
    are worked out when first asked for. An answer on the page re-clusters every unknown
    face, which at a million faces makes 100,000 clusters, and the page shows a few
    dozen of them."""

    def __init__(self, id: int, rows: np.ndarray, review: Review, hidden: bool = False
                 ) -> None:
        self.id, self.rows, self.hidden = id, rows, hidden
        # the review's lists as they are now: a refresh replaces them (never edits them),
        # so rows and ids agree even when asked after one, outside the review's lock
        self._ids, self._names = review._ids, review._file_hex

    @property
    def size(self) -> int:
        return len(self.rows)

    @cached_property
    def faces(self) -> list[str]:
        """Face ids, best first (largest faces first)."""
        ids = self._ids
        return [ids[i] for i in self.rows.tolist()]

    @cached_property
    def files(self) -> set[str]:
        """The files (content keys, hex) the faces are in."""
        names = self._names
        return {names[i] for i in self.rows.tolist()}


class Review:
    """The review of one collection with one finder (which must use a face index)."""

    def __init__(self, finder: Finder, photos: str | Path, *,
                 threshold: float | None = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        if finder.index_path is None:
            raise FinderError("the review page needs the face index (drop --no-index): "
                              "decisions are kept there")
        self.finder = finder
        self.photos = Path(photos).resolve()
        self.threshold = threshold
        self._lock = threading.RLock()
        self.result: RunResult
        self.refresh(on_event)

    # ------------------------------------------------------------------ searching

    @contextlib.contextmanager
    def _index(self) -> Iterator[FaceIndex]:
        """The face index, opened to keep answers and groups; one that cannot take them
        now is one clear line (``IndexUnavailable``), not a traceback and a bare error
        page. What was written before the failure stays written."""
        try:
            with open_index(self.finder.index_path) as index:
                yield index
        except (IndexLockedError, IndexFileError, sqlite3.Error, OSError) as exc:
            raise IndexUnavailable(
                f"the face index {self.finder.index_path} cannot keep answers now "
                f"({one_line(exc)}); what was kept before stays kept: try again (a "
                "read-only index: copy it where it can be written and pass --index)"
            ) from None

    def refresh(self, on_event: Callable[[Event], None] | None = None) -> RunResult:
        """Search the collection again (new photos, new reference photos) and re-cluster."""
        with self._lock:
            result = self.finder.find(self.photos, threshold=self.threshold, keep_files=True,
                                      on_event=on_event, count_files=on_event is not None)
            with self._index() as index:
                self._settings = self.finder.settings_ids(index)
                # the search's own verdicts: on a full disk some were carried to its new
                # analyses in memory only, and the index alone would drop them
                self.verdicts = (result.verdicts if result.verdicts is not None
                                 else self.finder.verdicts(index))
                stored_clusters = index.cluster_labels(self._settings["image"] or 0)
                # new cluster ids start above every id stored for any folder of the index
                self._next_cluster = max(stored_clusters.values(), default=-1) + 1
                self._hidden = index.hidden_clusters(self._settings["image"] or 0)
            self.result = result
            self._index_faces(result.files)
            self._label = np.array([stored_clusters.get(key, -1) for key in self._keys],
                                   np.int64)
            self.finder.rematch(self.result, self.verdicts)
            self._recluster()
            return result

    def _index_faces(self, files: list[FileResult]) -> None:
        """Every embedded face of the collection, by face id, and files by content key."""
        self._rows: list[_FaceRow] = []
        self._by_face: dict[str, int] = {}
        self._by_file: dict[str, int] = {}
        for i, file in enumerate(files):
            if file.key is None or file.kind == "other":
                continue
            self._by_file[file.key.hex()] = i
            for n, face in enumerate(file.faces):
                if face.embedding is not None:
                    self._by_face[face_id(file.key, n)] = len(self._rows)
                    self._rows.append(_FaceRow(i, n, face))
        self._vectors = (np.stack([r.face.embedding for r in self._rows]).astype(np.float32)
                         if self._rows else np.zeros((0, 128), np.float32))
        # per row, worked out once: re-clustering after every answer looks them all up
        self._keys = [(files[r.file].key or b"", r.n) for r in self._rows]
        self._ids = [face_id(key, n) for key, n in self._keys]
        self._file_hex = [key.hex() for key, _ in self._keys]
        self._photo = np.array([files[r.file].kind == "image" for r in self._rows], bool)
        self._file_of = np.array([r.file for r in self._rows], np.int64)
        # the row ``_by_face`` gives for each row's face: a file found twice (two copies of
        # one photo) has its faces in two rows, and what is said of a face holds for both
        self._same = np.array([self._by_face[f] for f in self._ids], np.int64)
        self._first = self._same == np.arange(len(self._rows))  # one row of each face
        self._area = np.array([r.face.box[2] * r.face.box[3] for r in self._rows], np.int64)
        # each row's cluster as the index holds it (-1: none), kept by ``_recluster``
        # and merges: what an answer re-clusters from
        self._label = np.full(len(self._rows), -1, np.int64)
        self._graph_at: tuple[object, np.ndarray] | None = None  # (graph, row positions)

    # ------------------------------------------------------------------ people

    def people(self) -> list[dict]:
        """Everyone searched for, with counts (reference photos, confirmed, found, maybe)."""
        with self._lock:
            result = self.result
            found = Counter(m.person for m in result.matches)
            maybe = Counter(m.person for m in result.maybes)
            return [{
                "name": name,
                "references": len(result.reference_faces.get(name, ())),
                "confirmed": result.confirmed_faces.get(name, 0),
                "photos": found.get(name, 0),
                "maybe": maybe.get(name, 0),
            } for name in result.people]

    def matches(self, person: str | None = None) -> list[Match]:
        """The photos found (best first), for one person or everyone."""
        with self._lock:
            name = self._person(person) if person is not None else None
            chosen = [m for m in self.result.matches if name is None or m.person == name]
            return sorted(chosen, key=lambda m: (not m.confirmed, m.distance, m.rel))

    def suggestions(self, person: str, limit: int = 20, kind: str = "both") -> list[Match]:
        """Unconfirmed faces worth asking about for ``person``.

        ``maybe``: faces just over the threshold, best first; ``check``: faces matched
        but not confirmed, least sure first; ``both`` (the default): either, those whose
        distance is nearest the threshold first - where an answer changes the most.
        """
        if kind not in SUGGESTION_KINDS:
            raise ReviewError(f"kind must be one of {', '.join(SUGGESTION_KINDS)}")
        limit = max(0, min(int(limit), MAX_LIMIT))
        with self._lock:
            name = self._person(person)
            threshold = self.result.threshold
            check = [m for m in self.result.matches
                     if m.person == name and not m.confirmed and m.face]
            maybe = [m for m in self.result.maybes if m.person == name and m.face]
            if kind == "maybe":
                chosen = sorted(maybe, key=lambda m: m.distance)
            elif kind == "check":
                chosen = sorted(check, key=lambda m: -m.distance)
            else:  # each face against its person's own cutoff
                chosen = sorted([*check, *maybe], key=lambda m: abs(
                    m.distance - (threshold if m.threshold is None else m.threshold)))
            return chosen[:limit]

    def _person(self, person: str | None) -> str:
        folded = name_key(str(person or ""))
        for name in self.result.people:
            if name_key(name) == folded:
                return name
        raise ReviewError(f"no such person: {str(person)[:100]!r}")

    # ------------------------------------------------------------------ decisions

    def decide(self, face: str, person: str, verdict: str) -> None:
        """Store the user's ``yes``/``no`` (or ``undo``) on ``face`` for ``person``."""
        self.decide_all([(face, person, verdict)])

    def decide_many(self, faces: Iterable[str], person: str, verdict: str) -> None:
        """One verdict for several faces (naming a cluster), stored and applied at once."""
        self.decide_all([(face, person, verdict) for face in faces])

    def decide_all(self, answers: Iterable[tuple[str, str, str]]) -> None:
        """Several answers (face, person, verdict): all checked first, then stored, then
        the collection decided again once."""
        with self._lock:
            known = {name_key(p): p for p in self.result.people}
            checked = []
            for face, person, verdict in answers:
                if verdict not in ("yes", "no", "undo"):
                    raise ReviewError("verdict must be yes, no or undo")
                try:
                    name = check_name(person)
                except ValueError as exc:
                    raise ReviewError(f"person: {exc}") from None
                checked.append((self._row(face), known.get(name_key(name), name), verdict))
            if not checked:
                return
            kept = 0
            try:
                with self._index() as index:
                    for row, name, verdict in checked:
                        file = self.result.files[row.file]
                        settings = self._settings[file.kind] or 0
                        assert file.key is not None
                        if verdict == "undo":
                            index.undecide(settings, file.key, row.n, name,
                                           row.face.box, row.face.time)
                            self.verdicts.remove(file.key, row.n, name)
                        else:
                            decision = Decision(file.key, row.n, name, verdict,  # type: ignore[arg-type]
                                                row.face.box, row.face.time,
                                                row.face.embedding)
                            index.decide(settings, decision)
                            self.verdicts.add(decision)
                        kept += 1
            finally:  # the answers kept count at once, even when a later one was not
                if kept:
                    self.finder.rematch(self.result, self.verdicts)
                    self._recluster()

    def _row(self, face: str) -> _FaceRow:
        try:
            parse_face_id(str(face))
            return self._rows[self._by_face[str(face)]]
        except (ValueError, KeyError):
            raise ReviewError(f"no such face in this collection: {str(face)[:80]!r}") from None

    # ------------------------------------------------------------------ clusters

    def _unknown(self) -> np.ndarray:
        """Rows of photo faces that match nobody and nobody was confirmed for, one row
        per face (found from the matches and the confirmed faces, not by asking every
        face about them)."""
        said = np.zeros(len(self._rows), bool)
        rows = [self._by_face.get(m.face, -1) for m in self.result.matches]
        # (key, n) -> the person it was confirmed as
        rows += [self._by_face.get(face_id(key, n), -1) for key, n in self.verdicts.yes]
        said[[r for r in rows if r >= 0]] = True
        # each face once: its copies (the same photo twice) take its label in _recluster
        return np.flatnonzero(self._photo & ~said[self._same] & self._first)

    def _face_id(self, row: _FaceRow) -> str:
        key = self.result.files[row.file].key
        assert key is not None
        return face_id(key, row.n)

    def _labels(self) -> dict[tuple[bytes, int], int]:
        """This collection's cluster labels, {(content key, face number): cluster}."""
        return {self._keys[i]: int(self._label[i]) for i in np.flatnonzero(self._label >= 0)}

    def _recluster(self) -> None:
        """Cluster the unknown faces, keeping earlier cluster ids (``_label``, as the
        index holds them), and store the labels that changed."""
        from facefinder.clusters import cluster_faces

        rows = self._unknown()
        earlier = self._label[rows]
        first_new = self._next_cluster
        labels = np.asarray(cluster_faces(
            self._vectors[rows], self._file_of[rows], previous=earlier,
            first_new=first_new,
            nearest=self._graph_rows(rows, int((earlier < 0).sum()))
        ) if len(rows) else np.zeros(0), np.int64)
        if len(labels):
            self._next_cluster = max(self._next_cluster, int(labels.max()) + 1)
        now = np.full(len(self._rows), -1, np.int64)
        now[rows] = labels
        # only what changed is written (an answer moves a few faces), and only this
        # collection's faces: the index may hold other folders' clusters, never touched here
        moved = rows[earlier != labels].tolist()  # (-1: not labelled before)
        gone = np.flatnonzero((self._label >= 0) & (now < 0) & self._first).tolist()
        now = now[self._same]  # a face's copies (the same photo twice) share its label
        if moved or gone:
            with self._index() as index:
                # (new groups moved past ids another review stored meanwhile, if any)
                shift = index.change_cluster_labels(
                    self._settings["image"] or 0,
                    [(*self._keys[i], int(now[i])) for i in moved],
                    [self._keys[i] for i in gone], new_from=first_new)
            if shift:
                now[now >= first_new] += shift
                self._next_cluster += shift
        self._label = now  # as the index now holds them
        self._group()

    def _group(self) -> None:
        """``_clusters`` from ``_label``: each cluster's rows, largest faces first (one
        sort for all of them, each cluster a slice of it)."""
        self._clusters: dict[int, Cluster] = {}
        at = np.flatnonzero((self._label >= 0) & self._first)
        if not len(at):
            return
        labels = self._label[at]
        order = np.lexsort((at, -self._area[at], labels))
        at, labels = at[order], labels[order]
        cuts = np.r_[0, np.flatnonzero(labels[1:] != labels[:-1]) + 1, len(at)].tolist()
        hidden = self._hidden
        for label, start, end in zip(labels[cuts[:-1]].tolist(), cuts[:-1], cuts[1:],
                                     strict=True):
            self._clusters[label] = Cluster(label, at[start:end], self, label in hidden)

    def _graph_rows(self, rows: np.ndarray, moving: int
                    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The faces ``keys``' nearest faces among themselves, as rows of ``keys`` (-1:
        none) and distances, from the neighbour graph kept beside the face index
        (``Finder.face_graph``); None when it is not worth it or cannot answer for all.

        Only for ``EXACT_BELOW`` faces to cluster or more: there the search built a graph
        of its own over every unknown face, which took 9 minutes for 800,000 of them,
        while the index's graph already holds each face's 20 nearest. Its neighbours are
        the nearest among *all* photo faces of the index; those that are not among
        ``rows`` (a face someone was found in, another folder's) are left out, so a face
        may get fewer edges than the search would find among the unknown faces alone.
        Every row's place in the graph is looked up once per graph, not on each answer.
        """
        from facefinder.neighbours import EXACT_BELOW

        if moving < EXACT_BELOW:
            return None
        graph = self.finder.face_graph()
        if graph is None or not len(graph):
            return None
        if self._graph_at is None or self._graph_at[0] is not graph:
            self._graph_at = graph, graph.positions(
                [key for key, _ in self._keys], np.array([n for _, n in self._keys], np.int64))
        at = self._graph_at[1][rows]
        if (at < 0).any():  # a face the graph does not hold: search them all as before
            return None
        return graph.rows(at)  # (neighbours as indices into ``rows``, as clustering takes them)

    def _store_labels(self, moved: np.ndarray, cluster: int) -> None:
        """Store that the rows ``moved`` now belong to ``cluster`` (a merge); every other
        stored label, this folder's or another's, stays as it is."""
        with self._index() as index:
            index.change_cluster_labels(self._settings["image"] or 0,
                                        [(*self._keys[i], cluster) for i in moved.tolist()],
                                        [])
        self._label[np.isin(self._same, moved)] = cluster  # with the faces' copies

    def clusters(self, *, hidden: bool = False, min_size: int = 2) -> list[Cluster]:
        """Clusters of unknown faces, largest first (hidden ones only when asked)."""
        with self._lock:
            chosen = [c for c in self._clusters.values()
                      if c.size >= min_size and (hidden or not c.hidden)]
            return sorted(chosen, key=lambda c: (-c.size, c.id))

    def _cluster(self, cluster: int) -> Cluster:
        try:
            return self._clusters[int(cluster)]
        except (KeyError, ValueError, TypeError):
            raise ReviewError(f"no such cluster: {str(cluster)[:40]!r}") from None

    def name_cluster(self, cluster: int, name: str) -> None:
        """Every face of the cluster is ``name`` (a new person, or one already known) -
        except a face the user already said is not ``name``: that answer stands."""
        with self._lock:
            key = name_key(name)
            faces = []
            for face in self._cluster(cluster).faces:
                file_key, n = parse_face_id(face)
                if key not in self.verdicts.verdict(file_key, n)[1]:
                    faces.append(face)
            self.decide_many(faces, name, "yes")

    def merge_clusters(self, into: int, other: int) -> None:
        """The faces of ``other`` join ``into`` (same person, split by the clustering)."""
        with self._lock:
            target, source = self._cluster(into), self._cluster(other)
            if target.id == source.id:
                return
            self._store_labels(source.rows, target.id)
            self._clusters[target.id] = Cluster(target.id, np.r_[target.rows, source.rows],
                                                self, target.hidden)
            del self._clusters[source.id]

    def hide_cluster(self, cluster: int, hidden: bool = True) -> None:
        """Strangers: not shown among "who else is here" (until un-hidden)."""
        with self._lock:
            found = self._cluster(cluster)
            found.hidden = hidden
            (self._hidden.add if hidden else self._hidden.discard)(found.id)
            with self._index() as index:
                index.hide_cluster(self._settings["image"] or 0, found.id, hidden)

    # ------------------------------------------------------------------ files and faces

    def file(self, file: str) -> FileResult:
        """A file of the collection by its id (content key, hex)."""
        with self._lock:
            try:
                return self.result.files[self._by_file[str(file)]]
            except KeyError:
                raise ReviewError(
                    f"no such file in this collection: {str(file)[:80]!r}") from None

    def path_of(self, file: str) -> Path:
        """Where the file is: the search's own path for it, never one from a request, and
        only while it still lies inside the collection. The search leaves out links to
        elsewhere; a photo replaced by such a link since then is refused here too, so the
        page never shows a file from outside the folder searched."""
        rel = self.file(file).rel
        path = self.photos / rel
        try:
            inside = path.resolve(strict=True).is_relative_to(self.photos)
        except (OSError, RuntimeError):  # gone, unreadable, a link loop
            inside = False
        if not inside:
            raise ReviewError(f"{rel[:200]!r} is no longer a photo in the collection")
        return path

    def face(self, face: str) -> tuple[FileResult, int, Face]:
        """(file, number, face) of a face id."""
        with self._lock:
            row = self._row(face)
            return self.result.files[row.file], row.n, row.face

    def photo(self, file: str) -> dict:
        """One photo with every face: its person (and whether confirmed), or its cluster."""
        with self._lock:
            result = self.file(file)
            assert result.key is not None
            named = {m.face: m for m in self.result.matches if m.rel == result.rel}
            maybes = {m.face: m for m in self.result.maybes if m.rel == result.rel}
            faces = []
            for n, face in enumerate(result.faces):
                fid = face_id(result.key, n)
                row = self._by_face.get(fid)
                label = -1 if row is None else int(self._label[row])
                match, maybe = named.get(fid), maybes.get(fid)
                yes, no = self.verdicts.verdict(result.key, n)
                faces.append({
                    "face": fid, "box": list(face.box), "time": face.time,
                    "person": match.person if match else None,
                    "distance": None if match is None else round(match.distance, 4),
                    "confirmed": bool(match and match.confirmed),
                    "maybe": None if maybe is None else maybe.person,
                    "cluster": label if label >= 0 else None,
                    "rejected": sorted(self.verdicts.names.get(n, n) for n in no),
                    "skipped": face.skipped,
                    "decided": yes,
                })
            return {"file": file, "path": result.rel, "kind": result.kind,
                    "size": list(result.size) if result.size else None,
                    "taken": result.taken, "taken_from": result.taken_from, "faces": faces,
                    # --objects: class, score, box (and a video's frame time) of each
                    "objects": [object_entry(o) for o in result.objects or ()]}

    # ------------------------------------------------------------------ lookup by photo

    def search(self, data: bytes, k: int = SEARCH_K) -> list[dict]:
        """The faces of an uploaded photo, each with the nearest people and the ``k``
        nearest faces of the collection (file, face, distance, person if found)."""
        k = max(1, min(int(k), 50))
        found = self.finder.faces_in_bytes(data)
        if found.error:
            raise ReviewError(f"cannot read the uploaded photo: {found.error}")
        with self._lock:
            gallery = reference_gallery(self.result.reference_faces, self.verdicts)
            person_of = {m.face: m.person for m in self.result.matches}
            answers = []
            for face in found.faces:
                entry: dict = {"box": list(face.box), "skipped": face.skipped,
                               "people": [], "faces": []}
                if face.embedding is not None:
                    vector = face.embedding[None, :]
                    if gallery.people:
                        near = gallery.nearest(vector)[0]
                        order = np.argsort(near)[:3]
                        entry["people"] = [
                            {"name": gallery.people[i], "distance": round(float(near[i]), 4),
                             "match": bool(near[i] < self.result.thresholds.get(
                                 gallery.people[i], self.result.threshold))}
                            for i in order]
                    if len(self._vectors):
                        nearest, distance = self._nearest_rows(face.embedding, k)
                        for i in nearest:
                            row = self._rows[int(i)]
                            fid = self._face_id(row)
                            file = self.result.files[row.file]
                            entry["faces"].append({
                                "face": fid, "file": (file.key or b"").hex(), "path": file.rel,
                                "box": list(row.face.box),
                                "distance": round(float(distance[i]), 4),
                                "person": person_of.get(fid)})
                answers.append(entry)
            return answers

    def _nearest_rows(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the ``k`` faces of the collection nearest ``vector`` (nearest first),
        and every row's distance by row (only those rows are filled in).

        Exact below ``EXACT_BELOW`` faces. Above, along the neighbour graph kept beside
        the face index (``Finder.face_graph``): it answers in a fraction of a
        millisecond at a million faces, where comparing with every face takes a tenth of
        a second. The graph holds every photo face of the index, so its answers are
        narrowed to this collection (video frames are not in it); when too few are left,
        the exact way answers.
        """
        from facefinder.neighbours import EXACT_BELOW

        if len(self._vectors) >= EXACT_BELOW:
            graph = self.finder.face_graph()
            if graph is not None and len(graph):
                ids, _ = graph.nearest(vector[None, :], min(len(graph), 4 * k))
                rows = [self._by_face.get(face_id(bytes(graph.keys[i]), int(graph.numbers[i])))
                        for i in ids[0].tolist() if i >= 0]
                found = np.array([r for r in rows if r is not None], np.int64)
                if len(found) >= min(k, len(self._vectors)):
                    distance = np.full(len(self._vectors), np.inf, np.float32)
                    distance[found] = 1.0 - self._vectors[found] @ vector
                    return found[np.argsort(distance[found], kind="stable")][:k], distance
        distance = 1.0 - self._vectors @ vector
        top = np.argpartition(distance, min(k, len(distance)) - 1)[:k]
        return top[np.argsort(distance[top])], distance

    @property
    def maybe_below(self) -> float:
        return maybe_limit(self.result.threshold)


# --------------------------------------------------------------------------- export


EXPORT_SIDE = 480  # long side of an exported face photo: enough for any detector


def export_references(index_path: str | Path, dest: str | Path) -> tuple[int, int, int]:
    """Write every confirmed face as a photo to ``dest/<Person>/<face id>.jpg``.

    The face is cut from its photo (wherever the index last saw it) with some margin, so
    the folder works as a ``reference/`` folder on another PC. Nothing is overwritten: a
    face already exported is left as it is. Faces seen only in videos are not exported.
    Returns (written, already there, not reachable now).
    """
    from facefinder import thumbs

    dest = Path(dest)
    index_path = Path(index_path)
    if not index_path.exists():
        raise FinderError(f"no face index at {index_path}: nothing has been confirmed yet")
    with open_index(index_path, read_only=True) as index:
        chosen = Verdicts(index.decisions(None))
        faces = {name: chosen.confirmed(name) for name in chosen.people()}
        where = {d.key: index.paths_of(d.key) for found in faces.values() for d in found}
    written = kept = missing = 0
    for name, found in faces.items():
        folder = dest / check_name(name)
        for decision in found:
            if decision.time is not None:  # a video frame: not a reference photo
                continue
            target = folder / f"{decision.face}.jpg"
            if target.exists():
                kept += 1
                continue
            thumb = None
            for root, rel in where.get(decision.key, []):
                thumb = thumbs.photo(Path(root) / rel, side=EXPORT_SIDE, crop=decision.box,
                                     quality=92)
                if thumb is not None:
                    break
            if thumb is None:
                missing += 1
                continue
            folder.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as handle:  # never overwrite
                handle.write(thumb.jpeg)
            written += 1
    return written, kept, missing
