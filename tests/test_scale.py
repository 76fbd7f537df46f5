"""Scale: the decision over a whole collection in arrays, the neighbour graph kept beside
the face index, and k-nearest questions against it.

The vectors are synthetic (people and strangers as noisy copies of random centres), made
in each test: what is checked is that the fast paths give the answers of the plain ones
(``match_photos`` against ``match_file`` file by file; expansion along the graph against
the exact one) and that the graph beside the index is trusted only when it matches the
index. The figures at 10,000 to 1,000,000 faces are ``benchmarks/scale.py``'s.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from facefinder import decide as decide_module
from facefinder.api import Finder, RunResult, Summary, open_index
from facefinder.decide import RULES, decide
from facefinder.decisions import Verdicts
from facefinder.match import (
    Gallery,
    PhotoFaces,
    match_collection,
    match_file,
    match_photos,
)
from facefinder.neighbours import GRAPH_K, FaceGraph
from facefinder.records import Decision, Face, FileResult, face_id
from facefinder.vision.registry import model_spec

DIM = 128
RULE = RULES["facenet"]
SETTINGS_KEY = "synthetic test"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _collection(n: int, people: int, seed: int = 0, share: float = 0.3
                ) -> tuple[list[FileResult], Gallery]:
    """``n`` faces in photos of 1-3 faces: ``share`` of them of ``people`` people (whose
    5 reference faces make the gallery), the rest strangers in groups of about 10; each
    its identity's centre plus noise of 0.03-0.09 per dimension."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(people + n // 10 + 1, DIM)))
    identity = np.where(rng.random(n) < share, rng.integers(0, people, n),
                        people + rng.integers(0, n // 10 + 1, n))
    spread = rng.uniform(0.03, 0.09, size=(n, 1))  # some faces are borderline: maybes
    vectors = _unit(centres[identity] + spread * rng.normal(size=(n, DIM)))
    files: list[FileResult] = []
    marks = np.zeros((5, 2), np.float32)
    i = 0
    while i < n:
        count = int(rng.integers(1, 4))
        faces = [Face((60 * k, 0, 50, 50), marks, 0.9, vectors[j])
                 for k, j in enumerate(range(i, min(n, i + count)))]
        f = len(files)
        files.append(FileResult(f"{f // 100}/{f}.jpg", "image", (640, 480), faces,
                                key=f.to_bytes(16, "little")))
        i += count
    gallery = Gallery.build({f"P{p:02d}": list(_unit(centres[p] + rng.normal(
        scale=0.05, size=(5, DIM)))) for p in range(people)})
    return files, gallery


def _store(path: Path, files: list[FileResult]) -> None:
    """Write the files' faces into a face index through its API."""
    with open_index(path) as index:
        settings = index.settings_id(SETTINGS_KEY)
        root = index.root_id("/photos")
        index.begin()
        for f, result in enumerate(files):
            assert result.key is not None
            content = index.store(settings, result.key, 1000 + f, result)
            index.set_path(root, result.rel, 1000 + f, 1, content)
        index.conn.execute("COMMIT")


def test_paths_are_found_whatever_lies_between_them(tmp_path: Path) -> None:
    """``FaceIndex.paths`` reads a chunk of a walk's files as one range of the index
    when they are neighbours there, and file by file when that range holds many other
    rows (a folder's files around a big subfolder's, in the index's byte order): the
    answer is the same either way, absent files absent, odd names included."""
    rels = ([f"a/{i:03d}.jpg" for i in range(30)] + [f"a/b/{i:04d}.jpg" for i in range(900)]
            + ["a/z.jpg", "a/\udcff bad name.jpg", "c/é.jpg"])
    files = [FileResult(rel=rel, kind="image", key=i.to_bytes(16, "little"))
             for i, rel in enumerate(rels)]
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    wanted = {f"a/{i:03d}.jpg" for i in range(30)} | {"a/z.jpg", "a/\udcff bad name.jpg",
                                                      "c/é.jpg", "a/missing.jpg"}
    neighbours = [f"a/b/{i:04d}.jpg" for i in range(100, 140)]  # one range, nothing else
    with open_index(path) as index:
        root = index.root_id("/photos")
        around = index.paths(root, sorted(wanted))  # their range holds the 900 others
        along = index.paths(root, neighbours)
    assert set(around) == wanted - {"a/missing.jpg"}
    assert set(along) == set(neighbours)
    number = {rel: i for i, rel in enumerate(rels)}
    assert all(found[:2] == (1000 + number[rel], 1)
               for rel, found in {**around, **along}.items())


def _graph_of(path: Path):
    """The ``graph`` callable of ``decide``, over the graph kept beside ``path``."""
    def rows(files, faces: PhotoFaces):
        with open_index(path) as index:
            graph = FaceGraph.open(index, index.settings_id(SETTINGS_KEY))
        return graph.rows(graph.positions([files[i].key for i in faces.file], faces.n))
    return rows


def test_match_photos_gives_the_answers_of_match_file() -> None:
    files, gallery = _collection(4000, 12, seed=1)
    said = []
    for i in range(0, 600, 7):  # yes, no, a yes for a name nobody searches for
        verdict = ("yes", "no", "yes")[i % 3]
        person = f"P{i % 12:02d}" if i % 3 < 2 else "Nobody"
        said.append(Decision(files[i].key, 0, person, verdict, (0, 0, 50, 50), None,
                             files[i].faces[0].embedding))
    for verdicts in (None, Verdicts(said)):
        decided = decide(files, gallery, RULE, None, verdicts)
        assert decided.expanded, "the collection must exercise expansion"
        final = decided.gallery
        cuts = np.array([decided.thresholds[p] for p in final.people], np.float32)
        maybe = np.maximum(cuts, np.minimum(cuts + 0.16, RULE.band[0]))
        fast = match_photos(files, decided.faces, decided.distance, final, cuts, verdicts,
                            maybe)
        found = maybes = 0
        for i, file in enumerate(files):
            assert fast.get(i, ([], [])) == match_file(file, final, cuts, verdicts, maybe)
            found += len(fast.get(i, ([], []))[0])
            maybes += len(fast.get(i, ([], []))[1])
        assert found > 500 and maybes > 0


def test_matching_again_remakes_only_the_photos_that_changed() -> None:
    """The review page decides again after each answer: what comes out is what matching
    from scratch gives, and most photos keep their matches (the very lists), where an
    answer changed something the photos get new ones."""
    files, gallery = _collection(4000, 12, seed=3)
    said: list[Decision] = []
    before = None
    for step in range(4):
        verdicts = Verdicts(list(said))
        decided = decide(files, gallery, RULE, None, verdicts, earlier=before)
        final = decided.gallery
        cuts = np.array([decided.thresholds[p] for p in final.people], np.float32)
        maybe = np.maximum(cuts, np.minimum(cuts + 0.16, RULE.band[0]))
        again = match_collection(files, decided.faces, decided.distance, final, cuts,
                                 verdicts, maybe, nearest=decided.nearest,
                                 verdict_rows=decided.verdict_rows,
                                 earlier=None if before is None else before.matched)
        fresh = match_photos(files, PhotoFaces.of(files), decided.distance, final, cuts,
                             verdicts, maybe)
        assert again.by_file == fresh
        if before is not None:
            earlier = before.matched.by_file
            kept = [i for i, lists in again.by_file.items() if lists is earlier.get(i)]
            assert len(kept) > 0.9 * len(again.by_file), "an answer changes a few photos"
            assert len(kept) < len(again.by_file), "this answer changed some photo"
        decided.matched = again  # as the finder keeps it for the next answer
        before = decided
        # the next answer: a no to a matched face, then a yes for someone else
        i, (found, _) = sorted(again.by_file.items())[step * 17 % len(again.by_file)]
        match = found[0]
        other = final.people[(final.people.index(match.person) + 1) % len(final.people)]
        n = int(match.face.rsplit("-", 1)[1])
        said.append(Decision(files[i].key, n, match.person if step % 2 == 0 else other,
                             "no" if step % 2 == 0 else "yes", match.box))


def test_expansion_along_the_graph_agrees_with_the_exact_one(tmp_path: Path,
                                                            monkeypatch) -> None:
    files, gallery = _collection(10_000, 20, seed=2)
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    exact = decide(files, gallery, RULE, None, None)
    monkeypatch.setattr(decide_module, "GRAPH_FROM", 0)
    along = decide(files, gallery, RULE, None, None, graph=_graph_of(path))
    assert FaceGraph.paths(path)[0].exists()  # the graph was built beside the index
    assert exact.thresholds == along.thresholds
    joined = sum(exact.expanded.values())
    assert joined > 1000
    assert abs(sum(along.expanded.values()) - joined) <= 0.01 * joined

    def matched(decided) -> set[tuple[int, str]]:
        cuts = np.array([decided.thresholds[p] for p in decided.gallery.people], np.float32)
        found = match_photos(files, decided.faces, decided.distance, decided.gallery, cuts)
        return {(i, m.person) for i, (ms, _) in found.items() for m in ms}

    a, b = matched(exact), matched(along)
    assert len(a ^ b) <= 0.01 * len(a)


def test_expansion_reaches_an_older_photo_along_the_graph() -> None:
    """Grandma's 1985 photo is too far from today's portrait, close to her 1995 one."""
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(DIM, 3)))
    now, side = q.T[0].astype(np.float32), q.T[1].astype(np.float32)
    step = np.arccos(0.8)  # a 0.2 distance
    then = (np.cos(step) * now + np.sin(step) * side).astype(np.float32)
    long_ago = (np.cos(2 * step) * now + np.sin(2 * step) * side).astype(np.float32)
    gallery = Gallery.build({"Grandma": [now]})
    vectors = np.stack([then, long_ago])
    near = np.array([[1], [0]])
    far = (1 - np.array([[then @ long_ago], [then @ long_ago]])).astype(np.float32)
    _, added = decide_module.expand(RULE, gallery, vectors, np.array([0, 1]),
                                    graph=(near, far))
    assert added == {"Grandma": 2}
    _, none = decide_module.expand(RULE, gallery, vectors, np.array([0, 1]),
                                   graph=(np.full((2, 1), -1), np.full((2, 1), np.inf)))
    assert none == {"Grandma": 1}  # no edge, no second step


def test_the_graph_is_kept_beside_the_index_and_trusted_only_when_it_matches(
        tmp_path: Path, monkeypatch) -> None:
    files, _ = _collection(3000, 5, seed=4)
    path = tmp_path / "faces.sqlite"
    _store(path, files[:-10])
    graph_file, table_file = FaceGraph.paths(path)
    assert graph_file.name == "faces.sqlite.neighbours.usearch"
    assert table_file.name == "faces.sqlite.neighbours.npz"
    with open_index(path) as index:
        settings = index.settings_id(SETTINGS_KEY)
        first = FaceGraph.open(index, settings)
    assert graph_file.exists() and table_file.exists()
    assert first.near.shape == (len(first), GRAPH_K)
    assert not (first.near == np.arange(len(first))[:, None]).any()  # never itself

    built = []
    real_build = FaceGraph._build.__func__

    def counting(cls, keys, numbers, vectors, fingerprint, old, threads, **options):
        made = real_build(cls, keys, numbers, vectors, fingerprint, old, threads, **options)
        built.append(old is not None and made.neighbours is old.neighbours)  # grown?
        return made

    monkeypatch.setattr(FaceGraph, "_build", classmethod(counting))
    with open_index(path) as index:  # unchanged index: read back, not built
        again = FaceGraph.open(index, settings)
    assert built == [] and np.array_equal(again.near, first.near)
    assert np.array_equal(again.vectors, first.vectors)

    _store(path, files[-10:])  # ten more photos: the generation moves on
    with open_index(path) as index:
        grown = FaceGraph.open(index, settings)
    assert built == [True]  # the old graph grew; nothing was indexed twice
    assert len(grown) == len(first) + sum(len(f.faces) for f in files[-10:])
    assert np.array_equal(grown.near[:len(first)], first.near)
    last = files[-1]
    where = grown.positions([last.key], np.array([0]))
    assert where[0] == len(grown) - len(last.faces)
    ids, dists = grown.nearest(last.faces[0].embedding[None, :], 1)
    assert ids[0, 0] == where[0] and dists[0, 0] < 1e-4

    np.savez(table_file, keys=grown.keys, numbers=grown.numbers, near=grown.near,
             far=grown.far, fingerprint=np.array('{"format": 1, "settings": 99}'))
    with open_index(path) as index:  # a fingerprint that does not match: rebuilt
        FaceGraph.open(index, settings)
    assert built == [True, False]
    graph_file.unlink()  # deleting it only costs a rebuild
    with open_index(path) as index:
        FaceGraph.open(index, settings)
    assert built == [True, False, False] and graph_file.exists()
    for damage in (lambda data: data[:len(data) // 2], lambda data: b""):  # cut off, emptied
        table_file.write_bytes(damage(table_file.read_bytes()))
        with open_index(path) as index:  # a damaged cache is built again, not an error
            assert len(FaceGraph.open(index, settings)) == len(grown)
    assert built == [True, False, False, False, False]

    before = {p: p.stat().st_mtime_ns for p in (graph_file, table_file)}
    _store(path, [FileResult("more.jpg", "image", (10, 10), [Face(
        (0, 0, 5, 5), np.zeros((5, 2), np.float32), 0.9, files[0].faces[0].embedding)],
        key=b"m" * 16)])
    with open_index(path, read_only=True) as index:  # read-only: used, never written
        FaceGraph.open(index, settings)
    assert {p: p.stat().st_mtime_ns for p in (graph_file, table_file)} == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _mapped(array: np.ndarray) -> bool:
    """Whether ``array`` is a view of a memory map (not memory of its own)."""
    import mmap

    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):  # (np.frombuffer keeps the exporter's view)
        base = base.obj
    return isinstance(base, mmap.mmap)


def test_the_graph_table_is_mapped_from_its_file_and_read_when_it_cannot_be(
        tmp_path: Path, monkeypatch) -> None:
    """A warm run maps the table's arrays from the file (no copy, read-only); a table
    written compressed (by hand, another tool) is read as before, and trusted alike."""
    files, _ = _collection(600, 4, seed=6)
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    _, table_file = FaceGraph.paths(path)
    with open_index(path) as index:
        settings = index.settings_id(SETTINGS_KEY)
        first = FaceGraph.open(index, settings)
    with open_index(path) as index:
        again = FaceGraph.open(index, settings)
    for name in ("keys", "numbers", "near", "far"):
        mine, stored = getattr(again, name), getattr(first, name)
        assert np.array_equal(mine, stored) and mine.dtype == stored.dtype
        assert os.name == "nt" or (_mapped(mine) and not mine.flags.writeable)
    assert again.rows(np.arange(len(again)))[0] is again.near  # the graph's own faces

    np.savez_compressed(table_file, keys=first.keys, numbers=first.numbers, near=first.near,
                        far=first.far, fingerprint=np.array(json.dumps(first.fingerprint)))
    monkeypatch.setattr(FaceGraph, "_build", classmethod(
        lambda *a, **k: pytest.fail("a compressed table is rebuilt")))
    with open_index(path) as index:
        packed = FaceGraph.open(index, settings)
    assert np.array_equal(packed.near, first.near) and packed.near.flags.writeable


def test_k_nearest_questions_find_the_true_neighbours(tmp_path: Path) -> None:
    files, _ = _collection(10_000, 10, seed=5)
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    with open_index(path) as index:
        graph = FaceGraph.open(index, index.settings_id(SETTINGS_KEY))
    rng = np.random.default_rng(6)
    asked = _unit(graph.vectors[rng.integers(0, len(graph), 100)]
                  + rng.normal(scale=0.02, size=(100, DIM)))
    ids, dists = graph.nearest(asked, 10)
    truth = np.argsort(-(asked @ graph.vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
    assert recall >= 0.95
    assert (np.diff(dists, axis=1) >= 0).all()
    # every graph list holds each face's true nearest (its own left out) at this size
    sims = graph.vectors[:200] @ graph.vectors.T
    sims[np.arange(200), np.arange(200)] = -np.inf
    assert (graph.near[:200, 0] == sims.argmax(axis=1)).mean() >= 0.95


def test_the_finder_decides_along_the_graph_it_keeps(tmp_path: Path, models_dir: Path,
                                                     monkeypatch) -> None:
    """``Finder._decide`` (what ``find`` and the review page run) builds the graph beside
    its index once, keeps it in memory between answers, and decides as the exact way."""
    files, gallery = _collection(6000, 10, seed=7)
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    (tmp_path / "reference").mkdir()
    finder = Finder(tmp_path / "reference", models=models_dir, index=path, jobs=1,
                    fetch=False)
    monkeypatch.setattr(finder, "settings_ids", lambda index: {
        "image": index.settings_id(SETTINGS_KEY), "video": None})
    try:
        plain = RunResult(tmp_path, tmp_path, list(gallery.people), "Facenet", 0.32, [],
                          Summary(), files=files)
        finder._decide(plain, files, gallery, Verdicts(), None, None, None)
        assert not FaceGraph.paths(path)[0].exists()  # small: no graph needed
        monkeypatch.setattr(decide_module, "GRAPH_FROM", 0)
        from facefinder import neighbours as neighbours_module

        monkeypatch.setattr(neighbours_module, "PROGRESS_FROM", 1000)  # a "big" build
        monkeypatch.setattr(neighbours_module, "PROGRESS_STEP", 4000)
        along = RunResult(tmp_path, tmp_path, list(gallery.people), "Facenet", 0.32, [],
                          Summary(), files=files)
        lines: list[str] = []
        finder._decide(along, files, gallery, Verdicts(), None, None, None,
                       progress=lines.append)
        assert lines and all(line.startswith("Neighbour graph: ") for line in lines)
        kept = finder._graph
        assert kept is not None and FaceGraph.paths(path)[0].exists()
        a = {(m.rel, m.person) for m in plain.matches}
        b = {(m.rel, m.person) for m in along.matches}
        assert len(a) > 1000 and len(a ^ b) <= 0.01 * len(a)
        wrong = along.matches[0]
        file = next(f for f in files if f.rel == wrong.rel)
        n = next(i for i, f in enumerate(file.faces) if f.box == wrong.box)
        answer = Verdicts([Decision(file.key, n, wrong.person, "no", wrong.box)])
        finder._decide(along, files, gallery, answer, None, None, None)
        assert finder._graph is kept  # the same graph: not read again
        assert (wrong.rel, wrong.person) not in {(m.rel, m.person) for m in along.matches}
    finally:
        finder.close()
    assert os.listdir(tmp_path) and all(
        p.parent == tmp_path for p in tmp_path.glob("faces.sqlite*"))


@pytest.mark.parametrize("count", [0, 1])
def test_tiny_collections(count: int) -> None:
    files, gallery = _collection(max(count, 1), 2, seed=8)
    files = files[:count]
    decided = decide(files, gallery, RULE, None, None)
    cuts = np.array([decided.thresholds[p] for p in decided.gallery.people], np.float32)
    found = match_photos(files, decided.faces, decided.distance, decided.gallery, cuts)
    assert set(found) <= set(range(count))


def _review_over(tmp_path: Path, models_dir: Path, files: list[FileResult],
                 gallery: Gallery):
    """A Review of synthetic files (no photos to search: the files are given), over an
    index that holds them."""
    import threading

    from facefinder.references import ReferenceFace
    from facefinder.review import Review

    path = tmp_path / "faces.sqlite"
    _store(path, files)
    (tmp_path / "reference").mkdir(exist_ok=True)
    finder = Finder(tmp_path / "reference", models=models_dir, index=path, jobs=1,
                    fetch=False)
    finder.settings_ids = lambda index: {  # type: ignore[method-assign]
        "image": index.settings_id(SETTINGS_KEY), "video": None}
    review = Review.__new__(Review)
    review.finder, review.photos, review.threshold = finder, tmp_path, None
    review._lock = threading.RLock()
    review.result = RunResult(tmp_path, tmp_path, list(gallery.people), "Facenet", 0.32, [],
                              Summary(), files=files)
    review.result.reference_faces = {
        name: [ReferenceFace(name, f"{name}/{i}.jpg", (0, 0, 9, 9), v)
               for i, v in enumerate(gallery.vectors[gallery.owner == p])]
        for p, name in enumerate(gallery.people)}
    with open_index(path) as index:
        review._settings = finder.settings_ids(index)
    review.verdicts, review._hidden = Verdicts(), set()
    review._next_cluster = 0  # as Review.refresh sets it: no cluster stored yet
    review._index_faces(files)
    finder.rematch(review.result, review.verdicts)
    review._recluster()
    return review, path


def _shown_labels(review) -> dict:
    """The labels the page's clusters show, face by face (what the index must hold)."""
    return {review._keys[review._by_face[f]]: c.id
            for c in review._clusters.values() for f in c.faces}


def test_an_answer_on_the_page_changes_only_what_it_must(tmp_path: Path, models_dir: Path,
                                                         monkeypatch) -> None:
    """After a no the match is gone, the faces that became unknown are clustered, and
    the labels kept in the index are the page's; "faces like this one" along the graph
    gives the exact answer's nearest."""
    from facefinder import neighbours

    files, gallery = _collection(3000, 8, seed=9)
    review, path = _review_over(tmp_path, models_dir, files, gallery)
    try:
        match = review.result.matches[5]
        assert review.result.decided is not None
        review.decide(match.face, match.person, "no")
        assert all((m.face, m.person) != (match.face, match.person)
                   for m in review.result.matches)
        with open_index(path) as index:
            stored = index.cluster_labels(review._settings["image"])
        assert stored == review._labels() == _shown_labels(review) and stored
        big = sorted(review._clusters.values(), key=lambda c: -c.size)[:2]
        review.merge_clusters(big[0].id, big[1].id)  # the labels kept follow a merge too
        with open_index(path) as index:
            stored = index.cluster_labels(review._settings["image"])
        assert stored == review._labels() == _shown_labels(review)
        review.decide(review.result.matches[6].face, review.result.matches[6].person, "no")
        with open_index(path) as index:
            stored = index.cluster_labels(review._settings["image"])
        assert stored == review._labels() == _shown_labels(review)
        unknown = {f for c in review._clusters.values() for f in c.faces}
        assert not unknown & {m.face for m in review.result.matches}

        asked = files[7].faces[0].embedding
        exact, _ = review._nearest_rows(asked, 5)
        monkeypatch.setattr(neighbours, "EXACT_BELOW", 0)
        along, distance = review._nearest_rows(asked, 5)
        assert FaceGraph.paths(path)[0].exists()
        assert along[0] == exact[0] and len(set(along) & set(exact)) >= 4
        assert (np.diff(distance[along]) >= 0).all()
    finally:
        review.finder.close()


def test_two_copies_of_a_photo_are_one_face_in_the_groups(tmp_path: Path,
                                                           models_dir: Path) -> None:
    """A photo found twice (a copy in another folder) has its faces in two rows: each
    face is grouped once, both copies show its group, a merge moves both, and the labels
    kept in the index are the page's."""
    from dataclasses import replace

    files, gallery = _collection(600, 4, seed=21)
    files += [replace(f, rel=f"copies/{f.rel}") for f in files[::7]]
    review, path = _review_over(tmp_path, models_dir, files, gallery)
    try:
        shown = [f for c in review._clusters.values() for f in c.faces]
        assert len(shown) == len(set(shown)) and len(shown) > 100
        twice = [i for i in range(len(review._rows)) if not review._first[i]]
        assert twice and all(review._label[i] == review._label[review._same[i]]
                             for i in twice)
        big = sorted(review._clusters.values(), key=lambda c: -c.size)[:2]
        review.merge_clusters(big[0].id, big[1].id)
        assert all(review._label[i] == review._label[review._same[i]] for i in twice)
        review.decide(review.result.matches[3].face, review.result.matches[3].person, "no")
        with open_index(path) as index:
            stored = index.cluster_labels(review._settings["image"])
        assert stored == review._labels() == _shown_labels(review)
        copy = next(f for f in files if f.rel.startswith("copies/") and any(
            review._label[review._by_face[face_id(f.key, n)]] >= 0
            for n in range(len(f.faces))))
        for face in review.photo(copy.key.hex())["faces"]:
            row = review._by_face[face["face"]]
            assert face["cluster"] == (review._label[row] if review._label[row] >= 0
                                       else None)
    finally:
        review.finder.close()


def test_a_big_review_clusters_along_the_graph_beside_the_index(
        tmp_path: Path, models_dir: Path, monkeypatch) -> None:
    """From ``EXACT_BELOW`` unknown faces on, the page's clustering takes each face's
    nearest faces from the neighbour graph kept beside the index instead of searching
    them (9 minutes at 800,000 faces): nothing is searched, and the groups are nearly the
    ones the search makes (the graph's nearest are among all faces, the search's among
    the unknown ones)."""
    from facefinder import clusters, neighbours

    files, gallery = _collection(3000, 8, seed=12)
    review, _path = _review_over(tmp_path, models_dir, files, gallery)
    try:
        review._label[:] = -1  # clustered afresh, by the search
        review._recluster()
        searched = review._labels()
        monkeypatch.setattr(neighbours, "EXACT_BELOW", 0)
        assert review.finder.face_graph() is not None  # built (and kept) before

        def no_search(*args, **kwargs):
            raise AssertionError("searched although the graph holds every face")

        monkeypatch.setattr(clusters.Neighbours, "query", no_search)
        review._next_cluster = 0
        review._label[:] = -1  # and afresh again, along the graph
        review._recluster()
        along = review._labels()
    finally:
        review.finder.close()
    assert len(searched) > 1000  # (the same unknown faces either way)

    def pairs(labels: dict) -> set:
        groups: dict[int, list] = {}
        for face, label in labels.items():
            groups.setdefault(label, []).append(face)
        return {(a, b) for faces in groups.values() for a in faces for b in faces if a < b}

    mine, theirs = pairs(along), pairs(searched)
    assert theirs and len(mine & theirs) >= 0.95 * len(theirs)
    assert len(mine & theirs) >= 0.95 * len(mine)


def test_a_new_index_in_place_of_a_moved_one_never_trusts_its_graph(tmp_path: Path) -> None:
    """Review fix: the fingerprint held no identity of the index file, so an index made
    anew at the same path (the old one moved away) with as many stores and the same
    settings id matched the old graph's fingerprint: another index's faces trusted."""
    path = tmp_path / "faces.sqlite"
    old_files, _ = _collection(400, 3, seed=1)
    _store(path, old_files)
    with open_index(path) as index:
        FaceGraph.open(index, index.settings_id(SETTINGS_KEY))
    for name in ("faces.sqlite", "faces.sqlite-wal", "faces.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)  # "move it away": the graph stays
    new_files = [FileResult(f.rel, f.kind, f.size, f.faces, key=bytes([7]) * 8 + f.key[:8])
                 for f in old_files]  # as many photos, other contents
    _store(path, new_files)
    with open_index(path) as index:
        graph = FaceGraph.open(index, index.settings_id(SETTINGS_KEY))
    assert bytes(graph.keys[0]) == new_files[0].key


def test_two_copies_of_an_index_never_share_a_graph(tmp_path: Path) -> None:
    """Two copies of one index (a backup put back beside the graph of the newer one) that
    each store as many other files must not reach one generation: the graph of the one
    is then never trusted for the other."""
    base_files, _ = _collection(1200, 3, seed=5)
    third = len(base_files) // 3
    one, two = tmp_path / "one.sqlite", tmp_path / "two.sqlite"
    _store(one, base_files[:third])
    for name in ("", "-wal", "-shm"):
        if Path(f"{one}{name}").exists():
            shutil.copy(f"{one}{name}", f"{two}{name}")
    _store(one, base_files[third:2 * third])
    _store(two, [FileResult(f.rel, f.kind, f.size, f.faces, key=bytes([9]) * 8 + f.key[:8])
                 for f in base_files[2 * third:3 * third]])  # as many stores, other photos
    with open_index(one) as a, open_index(two) as b:
        assert a.faces_generation() != b.faces_generation()
        FaceGraph.open(a, a.settings_id(SETTINGS_KEY))
    for graph_one, graph_two in zip(FaceGraph.paths(one), FaceGraph.paths(two), strict=True):
        shutil.copy(graph_one, graph_two)  # the newer copy's graph beside the other
    with open_index(two) as index:
        graph = FaceGraph.open(index, index.settings_id(SETTINGS_KEY))
    stored = {bytes(k) for k in graph.keys}
    assert bytes([9]) * 8 + base_files[2 * third].key[:8] in stored
    assert base_files[third].key not in stored


def test_a_graph_that_cannot_be_kept_is_still_used(tmp_path: Path, monkeypatch) -> None:
    """Review fix: a failed write beside the index (disk full, folder not writable) ended
    the run instead of leaving the graph in memory only."""
    path = tmp_path / "faces.sqlite"
    files, _ = _collection(300, 3, seed=2)
    _store(path, files)

    def full(self, graph_file, table_file):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FaceGraph, "save", full)
    with open_index(path) as index:
        graph = FaceGraph.open(index, index.settings_id(SETTINGS_KEY))
    assert len(graph) == sum(len(f.faces) for f in files)


def test_the_finder_reads_the_graph_of_an_index_it_cannot_write(
        tmp_path: Path, models_dir: Path, monkeypatch) -> None:
    """Review fix: ``Finder.face_graph`` opened the index for writing even when the run
    had fallen back to reading it (locked by another run, read-only disk): the run ended
    with that error after its whole analysis."""
    from facefinder import api

    path = tmp_path / "faces.sqlite"
    files, _ = _collection(300, 3, seed=3)
    _store(path, files)
    real = api.open_index

    def read_only_disk(where, *, read_only=False):
        if not read_only:
            raise OSError(f"cannot use {where} here: attempt to write a readonly database")
        return real(where, read_only=True)

    monkeypatch.setattr(api, "open_index", read_only_disk)
    monkeypatch.setattr(api.Finder, "settings_ids",
                        lambda self, index: {"image": index.settings_id(SETTINGS_KEY)})
    finder = Finder(models=models_dir, index=path)
    graph = finder.face_graph()
    assert graph is not None and len(graph) == sum(len(f.faces) for f in files)
    assert not FaceGraph.paths(path)[0].exists()  # read-only: nothing written beside it


def test_the_index_gives_back_every_face_as_it_was_stored(tmp_path: Path) -> None:
    """``FaceIndex.load`` reads a chunk's faces column by column: each file gets its own
    faces, in order, with every field, also beside a file without faces and a face that
    was not embedded (its vector None, the others still read as one block)."""
    files, _ = _collection(700, 5, seed=3)
    files[10].faces = []
    files[20].faces[0] = Face((1, 2, 3, 4), np.arange(10, dtype=np.float32).reshape(5, 2),
                              0.5, None, "too small")
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    with open_index(path) as index:
        settings = index.settings_id(SETTINGS_KEY)
        known = index.paths(index.root_id("/photos"), [f.rel for f in files])
        loaded = index.load(settings, [known[f.rel][2] for f in files])
        for f in files:
            got = loaded[known[f.rel][2]]
            assert got.key == f.key and len(got.faces) == len(f.faces)
            for a, b in zip(got.faces, f.faces, strict=True):
                assert a.box == b.box and a.score == pytest.approx(b.score)
                assert a.skipped == b.skipped and a.time == b.time
                assert np.array_equal(a.landmarks, b.landmarks)
                assert (a.embedding is None) == (b.embedding is None)
                if b.embedding is not None:
                    assert np.array_equal(a.embedding, b.embedding)


@pytest.mark.parametrize("faces", [0, 1, 2047, 2049, 70_000])
def test_distances_in_blocks_are_the_plain_ones(faces: int) -> None:
    """``Gallery.nearest_all`` (blocks of faces, each turned to (F, P) a tile at a time)
    gives each face's distance to each person's nearest reference, people with any number
    of reference faces."""
    rng = np.random.default_rng(faces)
    counts = [5, 1, 3, 7]
    gallery = Gallery.build({f"P{p}": list(_unit(rng.normal(size=(c, DIM))))
                             for p, c in enumerate(counts)})
    vectors = _unit(rng.normal(size=(faces, DIM)))
    got = gallery.nearest_all(vectors)
    similar = vectors @ gallery.vectors.T
    plain = np.stack([1.0 - similar[:, gallery.owner == p].max(axis=1)
                      for p in range(len(counts))], axis=1) if faces else np.zeros((0, 4))
    assert got.shape == (faces, len(counts))
    assert np.allclose(got, plain, atol=1e-5)


def test_distances_are_the_same_numbers_on_any_number_of_cores(monkeypatch) -> None:
    """``nearest_all`` computes its blocks on threads of its own, each with a one-thread
    BLAS, so a face's distances are bit for bit the same whether the PC has one core or
    two, and whatever the BLAS library would have chosen: each block is what a
    one-thread product of that block gives. (A two-thread BLAS product of the same block
    differs in the last bits, which is what this guards against.) The BLAS threads are
    given back afterwards."""
    from threadpoolctl import threadpool_info

    from facefinder import match

    rng = np.random.default_rng(7)
    gallery = Gallery.build({f"P{p}": list(_unit(rng.normal(size=(5, DIM))))
                             for p in range(100)})
    vectors = _unit(rng.normal(size=(3 * gallery.block_rows() + 11, DIM)))
    before = [i["num_threads"] for i in threadpool_info()]
    on_two = gallery.nearest_all(vectors)
    assert [i["num_threads"] for i in threadpool_info()] == before
    monkeypatch.setattr(match, "available_cores", lambda: 1)
    on_one = gallery.nearest_all(vectors)
    assert np.array_equal(on_one, on_two)
    rows = gallery.block_rows()
    with match.one_blas_thread():
        by_block = np.concatenate([gallery.nearest(vectors[a:a + rows])
                                   for a in range(0, len(vectors), rows)])
    assert np.array_equal(by_block, on_two)


def test_decisions_at_once_give_the_blas_threads_back() -> None:
    """The one-thread limit is the whole process's: holders that overlap (two decisions
    on the review page's threads) keep it while any holds it, and the last to leave
    gives the library's own thread count back (set and restored by each, overlapping
    holders would leave it at one thread for good)."""
    from threadpoolctl import threadpool_info

    from facefinder.match import one_blas_thread

    def threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = threads()
    first, second = one_blas_thread(), one_blas_thread()
    with first:
        with second:
            assert all(t == 1 for t in threads())
        assert all(t == 1 for t in threads())  # the first still holds it
    assert threads() == before
    rng = np.random.default_rng(3)
    gallery = Gallery.build({f"P{p}": list(_unit(rng.normal(size=(5, DIM))))
                             for p in range(20)})
    vectors = _unit(rng.normal(size=(20_000, DIM)))
    alone = gallery.nearest_all(vectors)
    answers: list[np.ndarray] = []
    runs = [threading.Thread(target=lambda: answers.append(gallery.nearest_all(vectors)))
            for _ in range(3)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert len(answers) == 3 and all(np.array_equal(a, alone) for a in answers)
    assert threads() == before


def test_distances_over_several_blocks_and_what_each_block_is_told() -> None:
    """Blocks of ``block_rows`` faces (8 MB of similarities): over several blocks, with
    a last shorter one, the distances are the plain ones, and ``each`` is told every
    block once (two threads: in any order) with the very rows written."""
    rng = np.random.default_rng(21)
    gallery = Gallery.build({f"P{p}": list(_unit(rng.normal(size=(5, DIM))))
                             for p in range(100)})
    rows = gallery.block_rows()
    vectors = _unit(rng.normal(size=(2 * rows + 17, DIM)))
    told: list[tuple[int, np.ndarray]] = []
    got = gallery.nearest_all(vectors, each=lambda start, block: told.append(
        (start, block.copy())))
    similar = vectors @ gallery.vectors.T
    plain = np.stack([1.0 - similar[:, gallery.owner == p].max(axis=1)
                      for p in range(100)], axis=1)
    assert np.allclose(got, plain, atol=1e-5)
    told.sort(key=lambda pair: pair[0])
    assert [start for start, _ in told] == [0, rows, 2 * rows]
    assert [len(block) for _, block in told] == [rows, rows, 17]
    assert all(np.array_equal(block, got[start:start + len(block)]) for start, block in told)


def test_a_graph_built_in_steps_keeps_one_buffer() -> None:
    """A big build adds its faces a step at a time; with the room reserved first the
    vectors go into one buffer of their own size, never copied into a doubled one (at a
    million faces the doubling kept 1.6 million rows and copied 1.5 million)."""
    from facefinder.neighbours import Neighbours

    rng = np.random.default_rng(4)
    vectors = _unit(rng.normal(size=(5000, 8)))
    store = Neighbours(dim=8)
    store.reserve(len(vectors))
    buffer = store._data
    for a in range(0, len(vectors), 700):
        store.add(vectors[a:a + 700])
    assert store._data is buffer and len(buffer) == len(vectors)
    assert np.array_equal(store.vectors, vectors)
    store.add(vectors[:1])  # beyond the room: grows as before
    assert len(store) == len(vectors) + 1 and np.array_equal(store.vectors[-1], vectors[0])


def test_a_decision_leaves_the_garbage_collector_on() -> None:
    """The decision pauses the cyclic collector (hundreds of thousands of matches), and
    turns it on again, also when it fails."""
    import gc

    from facefinder.api import paused_gc

    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        assert not gc.isenabled()
        raise RuntimeError("stop")
    assert gc.isenabled()


def _loaded(path: Path, files: list[FileResult], order: list[int]) -> list[FileResult]:
    """``files`` as a warm run gets them back from the index at ``path`` (lazy stored
    faces, chunks of 256 files), in ``order``."""
    with open_index(path) as index:
        settings = index.settings_id(SETTINGS_KEY)
        rels = [files[i].rel for i in order]
        out: list[FileResult] = []
        for s in range(0, len(rels), 256):
            known = index.paths(index.root_id("/photos"), rels[s:s + 256])
            stored = index.load(settings, [known[r][2] for r in rels[s:s + 256]])
            for rel in rels[s:s + 256]:
                result = stored[known[rel][2]]
                result.rel = rel
                out.append(result)
    return out


def _as_objects(files: list[FileResult]) -> list[FileResult]:
    """The same files with their faces as plain lists of ``Face`` objects (the per-object
    path: what a file read in this run, not from the index, holds)."""
    from dataclasses import replace

    return [replace(f, faces=list(f.faces)) for f in files]


def test_faces_from_the_index_decide_as_face_objects_do(tmp_path: Path,
                                                        monkeypatch) -> None:
    """The fast path (decision arrays straight from the index's blocks, no ``Face``
    object made, graph rows found a file at a time) gives the very matches, maybes,
    distances and thresholds of the per-object path, with verdicts, along the graph, for
    files in the index's order, shuffled, and mixed with files read in this run."""
    from facefinder.stored_faces import StoredFaces

    files, gallery = _collection(4000, 12, seed=11)
    files[3].faces = []  # a file without faces, and faces that were not embedded
    files[9].faces[0] = Face((1, 2, 3, 4), np.zeros((5, 2), np.float32), 0.5, None,
                             "too small")
    files[40].faces.insert(0, Face((5, 6, 7, 8), np.zeros((5, 2), np.float32), 0.4, None,
                                   "too blurry"))
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    said = [Decision(files[i].key, 0, f"P{i % 12:02d}", ("yes", "no")[i % 2],
                     (0, 0, 50, 50), None, files[i].faces[0].embedding)
            for i in range(100, 700, 11)]
    monkeypatch.setattr(decide_module, "GRAPH_FROM", 0)
    rng = np.random.default_rng(12)
    shuffled = [int(i) for i in rng.permutation(len(files))]
    for order in (list(range(len(files))), shuffled):
        warm = _loaded(path, files, order)
        assert all(type(f.faces) is StoredFaces for f in warm if f.faces)
        fast = PhotoFaces.of(warm)
        assert not any(f.faces.made for f in warm if f.faces)  # no Face object made
        plain = _as_objects(_loaded(path, files, order))
        mixed = [f if i % 3 else plain[i] for i, f in enumerate(_loaded(path, files, order))]
        slow = PhotoFaces.of(plain)
        assert np.array_equal(fast.vectors, slow.vectors)
        assert np.array_equal(fast.file, slow.file) and np.array_equal(fast.n, slow.n)
        both = PhotoFaces.of(mixed)
        assert np.array_equal(both.vectors, slow.vectors)
        assert np.array_equal(both.file, slow.file) and np.array_equal(both.n, slow.n)
        for verdicts in (None, Verdicts(said)):
            answers = []
            for group in (warm, plain, mixed):
                decided = decide(group, gallery, RULE, None, verdicts, graph=_graph_of(path))
                final = decided.gallery
                cuts = np.array([decided.thresholds[p] for p in final.people], np.float32)
                found = match_photos(group, decided.faces, decided.distance, final, cuts,
                                     verdicts, cuts + 0.05)
                assert found == match_photos(group, decided.faces, decided.distance, final,
                                             cuts, verdicts, cuts + 0.05,
                                             nearest=decided.nearest)
                answers.append((decided.thresholds, decided.expanded,
                                decided.distance.tobytes(),
                                {i: found[i] for i in sorted(found)}))
            assert answers[0] == answers[1] == answers[2]
            assert sum(len(m) for m, _ in answers[0][3].values()) > 500
            assert any(maybes for _, maybes in answers[0][3].values())


def test_stored_faces_behave_as_the_list_they_stand_for(tmp_path: Path) -> None:
    """A file's faces from the index: a list of ``Face`` objects to whoever looks (the
    same objects each time, equal to the stored ones, pickled as a plain list), its
    length, boxes and skipped count answered without making them."""
    import pickle

    from facefinder.stored_faces import StoredFaces, skipped_count

    files, _ = _collection(600, 4, seed=13)
    files[5].faces[1:] = [Face((1, 2, 3, 4), np.zeros((5, 2), np.float32), 0.5, None,
                               "too small")]
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    warm = _loaded(path, files, list(range(len(files))))
    got = warm[5].faces
    assert type(got) is StoredFaces and len(got) == len(files[5].faces) and got
    assert skipped_count(got) == 1 and not got.made
    assert [got.box(n) for n in range(len(got))] == [f.box for f in files[5].faces]
    assert not got.made
    assert got[0] is got[0] and got.made and list(got) == got.faces()
    assert got[1].embedding is None and got[1].skipped == "too small"
    assert [f.box for f in got[0:2]] == [f.box for f in files[5].faces[:2]]
    again = pickle.loads(pickle.dumps(got))
    assert type(again) is list and [f.box for f in again] == [f.box for f in got]
    assert got == list(got) and list(got) == got and got != [] and got != "faces"
    with pytest.raises(IndexError):
        warm[6].faces.box(99)


def test_graph_rows_found_a_file_at_a_time_are_the_per_face_ones(tmp_path: Path) -> None:
    """``FaceGraph.locate`` (a lookup per file) gives ``positions`` (a lookup per face),
    for faces in the graph's order, shuffled, missing from it, or with unknown keys; the
    graph's own order gives its rows as they are."""
    files, _ = _collection(3000, 5, seed=14)
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    with open_index(path) as index:
        graph = FaceGraph.open(index, index.settings_id(SETTINGS_KEY))
    faces = PhotoFaces.of(files)
    keys = [f.key for f in files]
    here = graph.locate(keys, faces.file, faces.n)
    assert np.array_equal(here, np.arange(len(graph)))
    near, far = graph.rows(here)
    assert near is graph.near and far is graph.far
    swapped = list(files)  # as many faces, two files (of one face each) changed places
    one = [i for i, f in enumerate(files) if len(f.faces) == 1][:2]
    swapped[one[0]], swapped[one[1]] = files[one[1]], files[one[0]]
    moved = PhotoFaces.of(swapped)
    keys_moved = [f.key for f in swapped]
    assert np.array_equal(moved.n, faces.n)  # (only the keys tell them apart)
    assert np.array_equal(graph.locate(keys_moved, moved.file, moved.n),
                          graph.positions([keys_moved[i] for i in moved.file], moved.n))
    general = graph.rows(here[::-1].copy())  # the same faces in another order
    assert np.array_equal(general[0][::-1], np.where(near >= 0, len(here) - 1 - near, -1))
    rng = np.random.default_rng(15)
    order = rng.permutation(len(files))
    mixed = [files[i] for i in order]
    mixed[7] = FileResult("new.jpg", "image", (9, 9), mixed[7].faces, key=b"n" * 16)
    mixed[8] = FileResult("nokey.jpg", "image", (9, 9), mixed[8].faces, key=None)
    mixed[10] = FileResult("short.jpg", "image", (9, 9), mixed[10].faces, key=b"k")
    some = PhotoFaces.of(mixed)
    keys = [f.key for f in mixed]
    def asked(i: int) -> bytes:  # a file's key, zeros when it has none of 16 bytes
        return keys[i] if keys[i] is not None and len(keys[i]) == 16 else bytes(16)

    expected = graph.positions([asked(i) for i in some.file], some.n)
    got = graph.locate(keys, some.file, some.n)
    assert np.array_equal(got, expected)
    assert (got[some.file == 7] == -1).all() and (got >= 0).sum() > 0.99 * len(got)
    some.n[some.file == 9] += 1  # face numbers the graph does not have for that file
    assert np.array_equal(graph.locate(keys, some.file, some.n),
                          graph.positions([asked(i) for i in some.file], some.n))


def test_expansion_in_place_keeps_the_distances_before_it(tmp_path: Path,
                                                          monkeypatch) -> None:
    """Along the graph the decision lowers the distances in place (no copy of an (F, P)
    array) and keeps what it changed: each person's column before expansion comes back
    exactly, and an answer that reuses it decides as a fresh decision does."""
    files, gallery = _collection(5000, 8, seed=16)
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    monkeypatch.setattr(decide_module, "GRAPH_FROM", 0)
    decided = decide(files, gallery, RULE, None, None, graph=_graph_of(path))
    assert decided.changed is not None and decided.base is None
    assert len(decided.changed[0]) > 0
    before = gallery.nearest_all(decided.faces.vectors)
    for p in range(len(gallery.people)):
        assert np.array_equal(decided.base_column(p), before[:, p])
    assert np.array_equal(decided.before_expansion(), before)  # all at once, a copy
    assert decided.before_expansion() is not decided.distance
    said = Verdicts([Decision(files[2].key, 0, "P01", "no", (0, 0, 50, 50))])
    again = decide(files, gallery, RULE, None, said, graph=_graph_of(path), earlier=decided)
    fresh = decide(files, gallery, RULE, None, said, graph=_graph_of(path))
    assert again.thresholds == fresh.thresholds and again.expanded == fresh.expanded
    assert np.array_equal(again.distance, fresh.distance)
    # the page's way: the earlier decision given up, its distances taken over, not copied
    kept = again.distance
    taken = decide(files, gallery, RULE, None, said, graph=_graph_of(path), earlier=again,
                   give_up_earlier=True)
    assert taken.distance is kept and again.distance is None and again.changed is None
    assert taken.thresholds == fresh.thresholds and taken.expanded == fresh.expanded
    assert np.array_equal(taken.distance, fresh.distance)


def test_expansion_in_blocks_of_edges_decides_exactly_as_in_one(tmp_path: Path,
                                                                monkeypatch) -> None:
    """Expansion lowers the distances a bounded block of graph edges at a time (a million
    faces' newcomers bring millions of edges): with blocks of a few edges, so that one
    entry is lowered by several blocks, the decision, the distances before expansion
    and each column of them are exactly those of one block."""
    files, gallery = _collection(5000, 8, seed=18)
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    monkeypatch.setattr(decide_module, "GRAPH_FROM", 0)
    whole = decide(files, gallery, RULE, None, None, graph=_graph_of(path))
    monkeypatch.setattr(decide_module, "_EDGES", 7)
    blocks = decide(files, gallery, RULE, None, None, graph=_graph_of(path))
    assert blocks.thresholds == whole.thresholds and blocks.expanded == whole.expanded
    assert sum(whole.expanded.values()) > 0
    assert np.array_equal(blocks.distance, whole.distance)
    assert blocks.changed is not None and whole.changed is not None
    assert len(blocks.changed[0]) > 0 and len(whole.changed[0]) > 0
    assert np.array_equal(blocks.before_expansion(), whole.before_expansion())
    for p in range(len(gallery.people)):
        assert np.array_equal(blocks.base_column(p), whole.base_column(p))


def test_a_decision_that_fails_midway_leaves_none_to_reuse(tmp_path: Path,
                                                           monkeypatch) -> None:
    """The finder gives the earlier decision up before deciding again (its distances are
    taken over in place): a decision that fails midway leaves nothing half-restored to be
    reused, and the next one decides afresh, as a new run would."""
    files, gallery = _collection(5000, 8, seed=17)
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    monkeypatch.setattr(decide_module, "GRAPH_FROM", 0)
    finder = Finder.__new__(Finder)
    finder.spec = model_spec("Facenet")
    finder.index_path, finder.index_read_only = path, False
    finder._graph = finder._graph_rows = None
    result = RunResult(Path("/p"), Path("/r"), list(gallery.people), "Facenet", 0.32, [],
                       Summary(), files=files)
    monkeypatch.setattr(Finder, "_neighbour_rows", lambda self, f, faces, progress=None:
                        _graph_of(path)(f, faces))
    finder._decide(result, files, gallery, Verdicts(), None, None, None)
    said = Verdicts([Decision(files[2].key, 0, "P01", "no", (0, 0, 50, 50))])

    def broken(*args, **kwargs):
        raise MemoryError("the PC ran out of memory midway")

    with monkeypatch.context() as patch:
        patch.setattr(decide_module, "_min_to_graph", broken)
        with pytest.raises(MemoryError):
            finder._decide(result, files, gallery, said, None, None, None)
    assert result.decided is None
    finder._decide(result, files, gallery, said, None, None, None)
    fresh = decide(files, gallery, RULE, None, said, graph=_graph_of(path))
    assert result.thresholds == fresh.thresholds
    assert np.array_equal(result.decided.distance, fresh.distance)


def test_a_big_graph_build_tells_its_progress(tmp_path: Path, monkeypatch) -> None:
    """A graph build of many faces (minutes at a million) tells how far it is, a step at
    a time, and the graph it builds that way is as good; a small one says nothing."""
    from facefinder import neighbours as neighbours_module

    files, _ = _collection(3000, 5, seed=17)
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    lines: list[str] = []
    with open_index(path) as index:
        FaceGraph.open(index, index.settings_id(SETTINGS_KEY), save=False,
                       progress=lines.append)
    assert lines == []
    monkeypatch.setattr(neighbours_module, "PROGRESS_FROM", 1000)
    monkeypatch.setattr(neighbours_module, "PROGRESS_STEP", 1000)
    with open_index(path) as index:
        graph = FaceGraph.open(index, index.settings_id(SETTINGS_KEY), progress=lines.append)
    assert lines[0] == "Neighbour graph: 1,000 of 3,000 faces indexed"
    assert lines[-1] == "Neighbour graph: nearest faces of 3,000 of 3,000 found"
    assert len(lines) == 6
    sims = graph.vectors @ graph.vectors.T
    np.fill_diagonal(sims, -np.inf)
    assert (graph.near[:, 0] == sims.argmax(axis=1)).mean() >= 0.95
    assert not (graph.near == np.arange(len(graph))[:, None]).any()


def test_photos_and_videos_loaded_in_turn_keep_the_photos_in_one_block(
        tmp_path: Path) -> None:
    """A warm run loads each chunk's photos, then its videos (``cached.Analyser``): the
    photos' vectors still end up one after the other in one array the decision takes as
    is, and no second array with room for every photo face is made."""
    from dataclasses import replace

    files, _ = _collection(3000, 5, seed=18)
    for file in files[::7]:  # every seventh file a video, its faces on frames
        file.kind = "video"
        for face in file.faces:
            face.time = 1.5
    path = tmp_path / "faces.sqlite"
    with open_index(path) as index:
        photo, video = index.settings_id(SETTINGS_KEY), index.settings_id("synthetic video")
        root = index.root_id("/photos")
        index.begin()
        for f, result in enumerate(files):
            assert result.key is not None
            content = index.store(video if result.kind == "video" else photo, result.key,
                                  1000 + f, result)
            index.set_path(root, result.rel, 1000 + f, 1, content)
        index.conn.execute("COMMIT")
    warm: list[FileResult] = []
    with open_index(path) as index:
        known = index.paths(index.root_id("/photos"), [f.rel for f in files])
        for a in range(0, len(files), 256):  # as the Analyser does: photos, then videos
            batch = files[a:a + 256]
            loaded = {kind: index.load(settings, [known[f.rel][2] for f in batch
                                                  if f.kind == kind])
                      for kind, settings in (("image", photo), ("video", video))}
            warm += [replace(loaded[f.kind][known[f.rel][2]], rel=f.rel) for f in batch]
    photos = [f for f in warm if f.kind == "image" and f.faces]
    arenas = {id(f.faces.columns.arena): f.faces.columns.arena for f in photos}
    assert len(arenas) == 1
    (arena,) = arenas.values()
    fast = PhotoFaces.of(warm)
    assert np.shares_memory(fast.vectors, arena.rows)  # taken as is, not joined again
    slow = PhotoFaces.of([replace(f, faces=list(f.faces)) for f in warm])
    assert np.array_equal(fast.vectors, slow.vectors) and np.array_equal(fast.n, slow.n)
    assert np.array_equal(fast.file, slow.file)


def test_stored_embeddings_cannot_be_written_through(tmp_path: Path) -> None:
    """A face's embedding from the index and the decision's array of them are one piece
    of memory: neither can be written (as the index's bytes never could), so no consumer
    (the page, a report, a later answer reusing the decision) changes what another
    sees."""
    files, _ = _collection(600, 4, seed=19)
    path = tmp_path / "faces.sqlite"
    _store(path, files)
    warm = _loaded(path, files, list(range(len(files))))
    faces = PhotoFaces.of(warm)
    assert np.array_equal(faces.vectors, PhotoFaces.of(files).vectors)
    with pytest.raises(ValueError):
        faces.vectors[0, 0] = 1.0
    embedding = warm[0].faces[0].embedding
    assert embedding is not None and np.shares_memory(embedding, faces.vectors)
    with pytest.raises(ValueError):
        embedding *= 2.0
    assert np.array_equal(faces.vectors, PhotoFaces.of(files).vectors)


@pytest.mark.parametrize("edges", [1, 7, 1 << 18])
def test_expansion_along_the_graph_lowers_exactly_what_its_edges_offer(monkeypatch,
                                                                       edges: int) -> None:
    """``_min_to_graph`` against a face-by-face minimum over the graph's edges, on a made-up
    graph with missing neighbours (-1), faces among their own neighbours and more people
    than one byte holds, in blocks of one edge, of seven and of all of them: the lowered
    distances, the faces that moved and the log that gives the values before back."""
    rng = np.random.default_rng(edges)
    faces, people, k = 80, 300, 3
    near = rng.integers(-1, faces, (faces, k)).astype(np.int32)
    near[::7, 0] = np.arange(0, faces, 7)  # a face among its own neighbours
    dist = rng.random((faces, k)).astype(np.float16)
    start = (rng.random((faces, people)) + 0.5).astype(np.float32)
    joined = np.sort(rng.choice(faces, 25, replace=False))
    person = rng.integers(0, people, len(joined))
    order = np.argsort(person, kind="stable")
    joined, person = joined[order], person[order]

    expected = start.copy()
    newcomer = dict(zip(joined.tolist(), person.tolist(), strict=True))
    for i in range(faces):  # a face measured to the newcomers among its neighbours
        for t in range(k):
            j = int(near[i, t])
            if j >= 0 and j != i and j in newcomer:
                expected[i, newcomer[j]] = min(expected[i, newcomer[j]], dist[i, t])
    for j, p in newcomer.items():  # and a newcomer to its own neighbours
        for t in range(k):
            i = int(near[j, t])
            if i >= 0 and i != j:
                expected[i, p] = min(expected[i, p], dist[j, t])

    monkeypatch.setattr(decide_module, "_EDGES", edges)
    current, log = start.copy(), []
    moved = decide_module._min_to_graph(joined, person, current, (near, dist), log)
    assert np.array_equal(current, expected)
    assert moved.tolist() == np.flatnonzero((expected < start).any(axis=1)).tolist()
    spots = np.concatenate([s for s, _ in log])
    before = np.concatenate([b for _, b in log])
    back = current.copy()
    np.maximum.at(back.reshape(-1), spots, before)  # as ``Decided.before_expansion``
    assert np.array_equal(back, start)
    first = np.unique(spots, return_index=True)[1]  # as ``Decided.base_column``
    assert np.array_equal(before[first], start.reshape(-1)[spots[first]])
