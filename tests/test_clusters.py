"""Clustering of faces and the nearest-neighbour index, on synthetic embeddings.

No model and no photo: well separated blobs on the 128-d sphere stand in for people, so
these run on a fresh clone in a second. (Quality on real faces: benchmarks/clusters.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from facefinder.clusters import carry_labels, cluster_faces, cluster_sizes
from facefinder.neighbours import Neighbours

DIM = 128


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def blobs(people: int, per_person: int, noise: float = 0.03, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Faces of ``people`` people (random centres, ~0.1 cosine distance between two faces
    of one person, ~1.0 between people) and who each face is."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((people, DIM)))
    who = np.repeat(np.arange(people), per_person)
    return unit(centres[who] + rng.normal(0, noise, (len(who), DIM))), who


def same_partition(labels: np.ndarray, truth: np.ndarray) -> bool:
    """Do the two labelings group the faces the same way (whatever the ids)?"""
    pairs = set(zip(labels.tolist(), truth.tolist(), strict=True))
    return len(pairs) == len(set(labels.tolist())) == len(set(truth.tolist()))


def own_photos(n: int) -> list[int]:
    return list(range(n))


# ---------------------------------------------------------------------- neighbours


def brute(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    dist = 1.0 - queries @ vectors.T
    ids = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(dist, ids, axis=1)


def test_exact_neighbours_equal_brute_force():
    vectors, _ = blobs(10, 30, noise=0.2)
    ids, dists = Neighbours(vectors).query(vectors[:50], 7)
    want_ids, want_dists = brute(vectors, vectors[:50], 7)
    assert ids.dtype == np.int64 and dists.dtype == np.float32
    assert ids.shape == dists.shape == (50, 7)
    np.testing.assert_allclose(dists, want_dists, atol=1e-5)
    # Ids agree wherever the distance is not tied with the next one.
    assert (ids[:, 0] == np.arange(50)).all()
    assert (ids == want_ids).mean() > 0.99


def test_graph_neighbours_match_brute_force_and_grow():
    vectors, _ = blobs(40, 50, noise=0.2, seed=1)
    index = Neighbours(vectors[:1500], threads=1)
    ids, _ = index.query(vectors[:300], 10, exact=False)  # builds the graph
    index.add(vectors[1500:])  # the graph grows; nothing is rebuilt
    assert len(index) == 2000
    ids, dists = index.query(vectors, 10, exact=False)
    want_ids, _ = brute(vectors, vectors, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want_ids, strict=True)])
    assert recall > 0.97
    np.testing.assert_allclose(dists[:, 0], 0.0, atol=1e-5)
    assert (ids[1500:, 0] == np.arange(1500, 2000)).mean() > 0.97  # added ones are found


def test_neighbours_pad_when_fewer_than_k():
    vectors, _ = blobs(1, 3)
    ids, dists = Neighbours(vectors).query(vectors, 5)
    assert (ids[:, 3:] == -1).all() and np.isinf(dists[:, 3:]).all()
    assert (ids[:, :3] >= 0).all()
    empty = Neighbours(dim=DIM)
    ids, dists = empty.query(vectors, 2)
    assert ids.shape == (3, 2) and (ids == -1).all()
    with pytest.raises(ValueError):
        empty.add(np.zeros((2, 5), np.float32))


# ---------------------------------------------------------------------- clustering


def test_blobs_are_recovered():
    vectors, who = blobs(25, 12)
    labels = cluster_faces(vectors, own_photos(len(who)))
    assert labels.dtype == np.int64 and labels.shape == who.shape
    assert same_partition(labels, who)
    assert sorted(set(labels.tolist())) == list(range(25))  # 0..C-1
    assert labels[0] == 0  # numbered in order of each cluster's first face


def test_strangers_stay_alone():
    rng = np.random.default_rng(3)
    vectors = unit(rng.standard_normal((40, DIM)))  # nobody near anybody
    labels = cluster_faces(vectors, own_photos(40))
    assert len(set(labels.tolist())) == 40


def test_faces_of_one_photo_never_share_a_cluster():
    vectors, who = blobs(3, 10)
    # Photo 0 holds faces 0 and 1 (one person, so the same vector), photo 1 faces 2, 3, 4.
    vectors[1] = vectors[0]
    vectors[3] = vectors[4] = vectors[2]
    photos = [0, 0, 1, 1, 1, *range(2, 2 + len(who) - 5)]
    labels = cluster_faces(vectors, photos)
    assert labels[0] != labels[1]
    assert len({labels[2], labels[3], labels[4]}) == 3
    for photo in set(photos):
        faces = [i for i, p in enumerate(photos) if p == photo]
        assert len({labels[i] for i in faces}) == len(faces)
    # Everyone else of person 0 is in one of the clusters of faces 0 and 1.
    assert {labels[i] for i in range(5, 10)} <= {labels[0], labels[1]}


def test_photo_values_can_be_any_hashable():
    vectors, _ = blobs(2, 4)
    vectors[1] = vectors[0]
    photos = [("a.jpg", None), ("a.jpg", None), ("b.jpg", 1.0), ("b.jpg", 2.0),
              ("c", None), ("d", None), ("e", None), ("f", None)]
    labels = cluster_faces(vectors, photos)
    assert labels[0] != labels[1]
    assert labels[2] == labels[3]  # two frames of one video are two pictures


def test_incremental_keeps_ids_and_new_faces_join():
    vectors, who = blobs(6, 10, seed=4)
    old = who < 5  # person 5 is new; so are the last 2 faces of every other person
    old[[8, 9, 18, 19, 28, 29, 38, 39, 48, 49]] = False
    first = cluster_faces(vectors[old], own_photos(int(old.sum())))
    # Earlier ids need not be 0..C-1: a user may have deleted or merged some.
    earlier = first * 10 + 7
    previous = np.full(len(who), -1)
    previous[old] = earlier
    labels = cluster_faces(vectors, own_photos(len(who)), previous=previous)
    assert (labels[old] == earlier).all()  # nobody renamed
    for person in range(5):  # new faces of known people joined their cluster
        assert len(set(labels[who == person].tolist())) == 1
    newcomer = labels[who == 5]
    assert len(set(newcomer.tolist())) == 1 and newcomer[0] > earlier.max()
    # Nothing new: labels come back as they were.
    again = cluster_faces(vectors, own_photos(len(who)), previous=labels)
    assert (again == labels).all()


def test_incremental_respects_photos_of_earlier_faces():
    vectors, _ = blobs(1, 6)
    vectors[5] = vectors[0]
    photos = [0, 1, 2, 3, 4, 0]  # face 5 is new, in face 0's photo
    previous = [0, 0, 0, 0, 0, -1]
    labels = cluster_faces(vectors, photos, previous=previous)
    assert labels[5] != 0 and labels[5] > 0


def test_reusing_the_neighbour_index():
    vectors, who = blobs(8, 20, seed=5)
    index = Neighbours(vectors[:100])
    first = cluster_faces(vectors[:100], own_photos(100), neighbours=index)
    previous = np.concatenate([first, np.full(60, -1)])
    labels = cluster_faces(vectors, own_photos(160), previous=previous, neighbours=index)
    assert len(index) == 160
    assert same_partition(labels, who)


def test_known_nearest_faces_cluster_as_the_search_does():
    """Given each face's nearest faces (the neighbour graph kept beside the index), the
    clusters are the ones the search would make when those are the true nearest, and
    nothing is searched; a face whose neighbours are unknown (-1) stays alone."""
    vectors, _ = blobs(40, 8, noise=0.06, seed=8)
    photos = np.arange(len(vectors)) // 2
    ids, dists = brute(vectors, vectors, 21)
    near, far = ids[:, 1:], dists[:, 1:]  # each face itself left out, as the graph does
    assert (ids[:, 0] == np.arange(len(vectors))).all()
    searched = cluster_faces(vectors, photos)

    class NoSearch(Neighbours):
        def query(self, *args, **kwargs):
            raise AssertionError("searched although the nearest faces were given")

    given = cluster_faces(vectors, photos, nearest=(near, far),
                          neighbours=NoSearch(vectors))
    assert (given == searched).all()
    alone = near.copy()
    alone[0] = -1
    far_alone = far.copy()
    far_alone[0] = np.inf
    alone[alone == 0] = -1  # and no other face points at it
    labels = cluster_faces(vectors, photos, nearest=(alone, far_alone))
    assert (labels == labels[0]).sum() == 1


def test_photos_are_numbered_in_the_order_they_first_come():
    """File numbers (an array) are numbered as any other photo values are, in the order
    each first comes: the faces sharing a photo are visited in that order."""
    from facefinder.clusters import _factorize

    for photos in (np.array([7, -3, 7, 2, -3], np.int64),
                   np.array([2**64 - 1, 5, 2**64 - 1, 0], np.uint64),
                   np.array([], np.int32)):
        first_seen: dict = {}
        expected = [first_seen.setdefault(p, len(first_seen)) for p in photos.tolist()]
        assert _factorize(photos).tolist() == expected
        assert _factorize(list(photos.tolist())).tolist() == expected


def test_deterministic():
    vectors, _ = blobs(30, 8, noise=0.06, seed=6)
    photos = np.arange(len(vectors)) // 3  # three faces per photo
    a = cluster_faces(vectors, photos, seed=1)
    b = cluster_faces(vectors.copy(), photos.copy(), seed=1)
    assert (a == b).all()


def test_empty_and_single_face():
    assert cluster_faces(np.zeros((0, DIM), np.float32), []).shape == (0,)
    one, _ = blobs(1, 1)
    assert cluster_faces(one, ["x"]).tolist() == [0]
    assert cluster_faces(one, ["x"], previous=[4]).tolist() == [4]
    assert cluster_faces(one, ["x"], previous=[-1]).tolist() == [0]
    with pytest.raises(ValueError):
        cluster_faces(one, ["x", "y"])


def test_threshold_decides_what_is_close_enough():
    vectors, _ = blobs(4, 10, noise=0.03)
    strict = cluster_faces(vectors, own_photos(40), threshold=0.02)
    assert len(set(strict.tolist())) == 40  # ~0.1 apart: nothing is close enough


def test_carry_labels_and_sizes():
    previous = np.array([5, 5, 5, 9, 9, -1, -1])
    fresh = np.array([0, 0, 1, 1, 1, 2, 2])  # 5 split (2 + 1), 9 grew, a new cluster
    carried = carry_labels(previous, fresh)
    assert carried.tolist() == [5, 5, 9, 9, 9, 10, 10]
    assert cluster_sizes(carried) == {9: 3, 5: 2, 10: 2}
    assert cluster_sizes([-1, -1, 3]) == {3: 1}


def test_mean_threshold_stops_chains():
    # Faces on an arc, each 0.005 from the next: a chain of look-alikes, ends far apart.
    angle = np.arange(60) * 0.1
    vectors = np.zeros((60, DIM), np.float32)
    vectors[:, 0], vectors[:, 1] = np.cos(angle), np.sin(angle)

    def widest(labels: np.ndarray) -> float:
        """Largest mean distance from a face to the other faces of its cluster."""
        worst = 0.0
        for label in set(labels.tolist()):
            faces = np.flatnonzero(labels == label)
            if len(faces) > 1:
                dist = 1.0 - vectors[faces] @ vectors[faces].T
                worst = max(worst, float((dist.sum(axis=1) / (len(faces) - 1)).max()))
        return worst

    plain = cluster_faces(vectors, own_photos(60), threshold=0.02)
    guarded = cluster_faces(vectors, own_photos(60), threshold=0.02, mean_threshold=0.02)
    assert widest(plain) > 0.05
    assert widest(guarded) < 0.03  # a face may drift a little after it joined
    assert len(set(guarded.tolist())) > len(set(plain.tolist()))


def test_the_models_load_after_the_neighbour_graph_in_one_process(tmp_path) -> None:
    """The review page may search the neighbour graph (usearch) and then embed an uploaded
    photo (onnxruntime) in the same process: that order once crashed the process outright
    (a segmentation fault on importing onnxruntime after usearch). A fresh interpreter
    does both, in that order, and must end normally."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = textwrap.dedent("""
        import numpy as np
        from facefinder.neighbours import Neighbours

        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(2000, 16)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        graph = Neighbours(dim=16)
        graph.add(vectors)
        ids, _ = graph.query(vectors[:3], 2, exact=False)  # the usearch graph answers
        assert graph.graph is not None and (ids[:, 0] == np.arange(3)).all()

        import onnxruntime
        print("loaded", onnxruntime.get_device())
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "loaded CPU" in done.stdout
