"""Group faces that show the same person: "who else is here?".

Faces are the nodes of a graph; each face is joined to its k nearest faces (cosine
distance) closer than ``threshold``, weighted by how close they are. Chinese whispers
(Biemann 2006; dlib's face clustering) then lets every face take, over and over in a
random order, the cluster its neighbours pull hardest towards. It needs no number of
clusters, leaves a face with no close neighbour alone, and is linear in the edges.
Leiden, HDBSCAN and plain connected components were measured against it
(docs/clusters.md).

Rules the face data adds:

- Two faces of one photo are two people: a face never takes a cluster that another face of
  its photo holds, so such faces never end in one cluster, even when their vectors agree.
- Incremental: with ``previous`` labels, faces clustered before keep their cluster ids;
  only new faces move. They join an existing cluster or form new ones, numbered above
  every earlier id, so a cluster someone has named is never renamed behind their back.
  ``carry_labels`` maps a full re-clustering onto earlier ids the same way.
- Optionally (``mean_threshold``) a face joins a cluster only if it is, on average, that
  close to the cluster's faces: an average-linkage guard against chains of look-alikes
  (A near B near C ...), worth having when ``threshold`` is loosened.

Deterministic: the visiting order comes from a seeded generator, ties go to the face's
current cluster, then to the lowest id, and the neighbour search is reproducible (exact
below 20,000 faces, a graph built by one thread above).

The defaults are for the Facenet model's cosine distances; another model needs its own.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from facefinder.neighbours import Neighbours

# Edge threshold (cosine distance, Facenet): the largest distance at which different people
# of the LFW and CFP folds meet with a rate of at most 1e-5 per pair (cross-validated over
# the folds, benchmarks/cluster_threshold.py, docs/clusters.md). Stricter than the 0.32
# that matches a reference person: a face meets thousands of strangers, and one false
# edge can merge two of them, where a false match costs one photo.
DEFAULT_THRESHOLD = 0.23
DEFAULT_K = 20  # neighbours per face; more adds time, not quality (docs/clusters.md)
MAX_SWEEPS = 40  # it settled in 5 sweeps on the devset, 9 on 100,000 synthetic faces
BATCHES = 8  # faces moved at once = N / BATCHES: numpy per batch, not Python per face


def cluster_faces(
    vectors: np.ndarray,
    photos: Sequence[Hashable] | np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    previous: Sequence[int] | np.ndarray | None = None,
    k: int = DEFAULT_K,
    seed: int = 0,
    neighbours: Neighbours | None = None,
    mean_threshold: float | None = None,
    first_new: int = 0,
    nearest: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Cluster labels (int64, one per face) for L2-normalised face ``vectors`` (N, D).

    ``photos``: one value per face naming its photo (file id, or (file, video frame));
    faces with equal values are never put in one cluster. ``previous``: each face's
    earlier label (>= 0) or -1 for a face not clustered before; earlier labels are kept
    and only the -1 faces are clustered (joining earlier clusters or forming new ones with
    ids above every earlier one). Without it labels are first_new, first_new + 1, ... in
    order of each cluster's first face. ``neighbours``: an index already holding the first
    rows of ``vectors`` (the faces clustered before), so an update does not index them again.
    ``mean_threshold``: if given, the largest mean distance from a face to the faces of a
    cluster it joins (see ``_whispers``; e.g. 0.32 with a threshold of 0.30).
    ``first_new``: new clusters get ids from at least this value, so that a caller whose
    index also holds other folders' clusters never reuses one of their ids (a hidden flag
    or a name given there would otherwise spill over to this folder's new cluster).
    ``nearest``: each face's nearest faces when already known, as (N, K) rows of
    ``vectors`` (-1: none) and their distances (the neighbour graph kept beside the face
    index, ``neighbours.FaceGraph``): the edges are taken from them instead of searched
    (800,000 faces took minutes building a graph of their own for that search).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if len(photos) != n:
        raise ValueError(f"{n} vectors but {len(photos)} photos")
    if previous is None:
        old = np.full(n, -1, dtype=np.int64)
    else:
        old = np.asarray(previous, dtype=np.int64).reshape(-1)
        if len(old) != n:
            raise ValueError(f"{n} vectors but {len(old)} previous labels")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if vectors.ndim != 2:
        raise ValueError(f"expected vectors of shape (N, D), got {vectors.shape}")
    photo = _factorize(photos)
    moving = np.flatnonzero(old < 0)
    if previous is not None and (old >= 0).any():
        first_new = max(first_new, int(old.max()) + 1)
    labels = old.copy()
    labels[moving] = first_new + np.arange(len(moving))  # each new face alone at first
    if len(moving) == 0:
        return labels
    src, dst, weight = _edges(vectors, photo, moving, threshold, k, neighbours, nearest)
    _whispers(labels, vectors, photo, moving, src, dst, weight, mean_threshold,
              np.random.default_rng(seed))
    return _renumber(labels, first_new)


def carry_labels(previous: Sequence[int] | np.ndarray, fresh: Sequence[int] | np.ndarray
                 ) -> np.ndarray:
    """``fresh`` labels (a full re-clustering) renamed to keep ``previous`` ids.

    ``previous[i]`` is face i's earlier label or -1. Each fresh cluster takes the earlier
    id it shares most faces with (largest overlaps first, each earlier id used once); the
    rest get new ids above every earlier one, in order of their first face. So a cluster
    that grew, or lost a few faces, keeps its id (and its name), and a split leaves the id
    with the larger part.
    """
    old = np.asarray(previous, dtype=np.int64).reshape(-1)
    new = np.asarray(fresh, dtype=np.int64).reshape(-1)
    if len(old) != len(new):
        raise ValueError(f"{len(old)} previous labels but {len(new)} fresh ones")
    both = (old >= 0) & (new >= 0)
    pairs, overlap = np.unique(np.stack([new[both], old[both]], axis=1), axis=0,
                               return_counts=True)
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -overlap))  # biggest overlap first
    mapping: dict[int, int] = {}
    taken: set[int] = set()
    for fresh_id, old_id in pairs[order].tolist():
        if fresh_id not in mapping and old_id not in taken:
            mapping[fresh_id] = old_id
            taken.add(old_id)
    next_id = int(old.max()) + 1 if (old >= 0).any() else 0
    out = np.full(len(new), -1, dtype=np.int64)
    for i, fresh_id in enumerate(new.tolist()):
        if fresh_id < 0:
            continue
        if fresh_id not in mapping:
            mapping[fresh_id] = next_id
            next_id += 1
        out[i] = mapping[fresh_id]
    return out


def cluster_sizes(labels: Sequence[int] | np.ndarray) -> dict[int, int]:
    """{label: number of faces}, largest clusters first (ties by label); -1 is left out."""
    values, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    keep = values >= 0
    order = np.lexsort((values[keep], -counts[keep]))
    return dict(zip(values[keep][order].tolist(), counts[keep][order].tolist(), strict=True))


# ---------------------------------------------------------------------- the graph


def _factorize(photos: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Photo values -> small ints (equal values, equal ints), numbered in the order each
    value first comes (the order of faces sharing a photo follows these numbers)."""
    if isinstance(photos, np.ndarray) and photos.ndim == 1 and photos.dtype.kind in "iu":
        # file numbers (the review page's 800,000 faces): in arrays, not a dict of them
        return _first_seen_ids(photos)
    ids: dict[Hashable, int] = {}
    return np.fromiter((ids.setdefault(p, len(ids)) for p in _hashable(photos)),
                       dtype=np.int64, count=len(photos))


def _hashable(photos: Sequence[Hashable] | np.ndarray):
    if isinstance(photos, np.ndarray):
        return (tuple(p) if isinstance(p, np.ndarray) else p for p in photos.tolist())
    return iter(photos)


def _edges(vectors: np.ndarray, photo: np.ndarray, moving: np.ndarray, threshold: float,
           k: int, neighbours: Neighbours | None,
           nearest: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
    """Weighted edges (src, dst, weight) with src a moving face, sorted by src.

    Each moving face's k nearest faces closer than ``threshold`` (not of its own photo:
    such an edge could never be used), made symmetric among moving faces (if a is among
    b's nearest, b hears a too). Faces that keep their label need no edges of their own.
    ``nearest``: those faces already known (see ``cluster_faces``), not searched.
    """
    n = len(vectors)
    if nearest is not None:
        ids, dists = nearest[0][moving, :k], nearest[1][moving, :k]
    else:
        if neighbours is None:  # the faces as they are (a copy of 800,000 took a second)
            neighbours = Neighbours(dim=vectors.shape[1])
            neighbours.adopt(vectors, None)
        elif len(neighbours) < n:
            neighbours.add(vectors[len(neighbours):])
        ids, dists = neighbours.query(vectors[moving], k + 1)  # +1: a face finds itself
    src = np.repeat(moving, ids.shape[1])
    dst, dist = ids.reshape(-1), dists.reshape(-1)
    keep = (dst >= 0) & (dst != src) & (dist < threshold)
    src, dst, dist = src[keep], dst[keep], dist[keep]
    keep = photo[src] != photo[dst]
    src, dst, dist = src[keep], dst[keep], dist[keep]
    is_moving = np.zeros(n, dtype=bool)
    is_moving[moving] = True
    back = is_moving[dst]  # the reverse of edges between two moving faces
    src, dst = np.concatenate([src, dst[back]]), np.concatenate([dst, src[back]])
    dist = np.concatenate([dist, dist[back]])
    # An edge found from both ends appears twice: keep one (sorted by src, then dst).
    keys, first = np.unique(src * n + dst, return_index=True)
    return keys // n, keys % n, _weight(dist[first], threshold)


def _weight(dist: np.ndarray, threshold: float) -> np.ndarray:
    """How hard an edge pulls: 1 for identical faces, falling to 0 at the threshold, so a
    few very close faces outvote many borderline ones."""
    return (1.0 - dist / threshold).astype(np.float64)


# ---------------------------------------------------------------------- Chinese whispers


def _whispers(labels: np.ndarray, vectors: np.ndarray, photo: np.ndarray,
              moving: np.ndarray, src: np.ndarray, dst: np.ndarray, weight: np.ndarray,
              mean_threshold: float | None, rng: np.random.Generator) -> None:
    """Chinese whispers on the moving faces, in place.

    Faces move in random batches (vectorised: each batch is a few sorts over its edges).
    Within a batch at most one face per photo moves, and a face never takes a label held
    by another face of its photo, so the same-photo rule holds after every batch. A face
    keeps its label unless another one pulls strictly harder. With ``mean_threshold`` it
    only joins a cluster whose faces are, on average, closer to it than that: Chinese
    whispers can chain look-alikes (A near B near C ...) into one cluster of strangers,
    and this average-linkage guard stops a chain where it drifts (on the devset at a
    threshold of 0.30 it lifted pairwise precision from 0.89 to 0.95; at the default 0.23
    there is no chain left for it to stop). The loop ends when a sweep over all moving
    faces changes nothing.
    """
    n = len(labels)
    ids, compact = np.unique(labels, return_inverse=True)  # work on labels 0..L-1
    compact = compact.reshape(-1)
    state = _State(compact, vectors, photo, len(ids),
                   None if mean_threshold is None else 1.0 - mean_threshold)
    starts = np.searchsorted(src, np.arange(n + 1))  # src is sorted: CSR row pointers
    batches = max(1, min(BATCHES, len(moving)))
    for _ in range(MAX_SWEEPS):
        order = rng.permutation(moving)
        changed = 0
        for batch in np.array_split(order, batches):
            # One face per photo per batch; the others wait for the next sweep.
            _, first = np.unique(photo[batch], return_index=True)
            batch = batch[np.sort(first)] if len(first) < len(batch) else batch
            changed += _move(state, batch, starts, dst, weight)
        if changed == 0:
            break
    labels[:] = ids[state.labels]


class _State:
    """Labels (0..L-1); with the guard, per label the sum of its vectors and its size."""

    def __init__(self, labels: np.ndarray, vectors: np.ndarray, photo: np.ndarray,
                 span: int, min_mean_similarity: float | None) -> None:
        self.labels = labels
        self.vectors = vectors
        self.photo = photo
        self.span = span
        self.min_mean_similarity = min_mean_similarity
        self.shared = _faces_sharing_a_photo(photo)
        if min_mean_similarity is not None:
            self.sums = np.zeros((span, vectors.shape[1]), dtype=np.float64)
            np.add.at(self.sums, labels, vectors)
            self.sizes = np.bincount(labels, minlength=span).astype(np.float64)


def _move(state: _State, batch: np.ndarray, starts: np.ndarray, dst: np.ndarray,
          weight: np.ndarray) -> int:
    """Move each face of ``batch`` to the allowed label its edges weigh most; returns how
    many changed."""
    labels = state.labels
    lengths = starts[batch + 1] - starts[batch]
    if lengths.sum() == 0:
        return 0
    owner = np.repeat(np.arange(len(batch)), lengths)
    edge = np.repeat(starts[batch] - np.cumsum(lengths) + lengths, lengths) + np.arange(
        lengths.sum())
    span = state.span
    # Sum the weights per (face, label).
    groups, inverse = np.unique(owner * span + labels[dst[edge]], return_inverse=True)
    score = np.bincount(inverse.reshape(-1), weights=weight[edge])
    g_owner, g_label = groups // span, groups % span
    face = batch[g_owner]
    current = g_label == labels[face]
    own_score = np.zeros(len(batch))
    own_score[g_owner[current]] = score[current]
    # Only labels that pull harder than the face's own are worth checking.
    candidate = np.flatnonzero(score > own_score[g_owner])
    if len(candidate) == 0:
        return 0
    c_face, c_label = face[candidate], g_label[candidate]
    allowed = ~_held_by_photo_mate(labels, state.photo, c_face, c_label, state.shared)
    if state.min_mean_similarity is not None:
        # Mean similarity of the face to the label's faces (it is not one of them).
        mean = np.einsum("ij,ij->i", state.sums[c_label], state.vectors[c_face]
                         ) / np.maximum(state.sizes[c_label], 1.0)
        allowed &= mean >= state.min_mean_similarity
    candidate = candidate[allowed]
    if len(candidate) == 0:
        return 0
    # Best allowed label per face: highest score, then lowest id.
    c_owner = g_owner[candidate]
    order = np.lexsort((g_label[candidate], -score[candidate], c_owner))
    best = candidate[order[np.r_[True, c_owner[order][1:] != c_owner[order][:-1]]]]
    movers, to = batch[g_owner[best]], g_label[best]
    if state.min_mean_similarity is not None:
        was = labels[movers]
        np.add.at(state.sums, was, -state.vectors[movers])
        np.add.at(state.sums, to, state.vectors[movers])
        np.add.at(state.sizes, was, -1.0)
        np.add.at(state.sizes, to, 1.0)
    labels[movers] = to
    return len(best)


def _faces_sharing_a_photo(photo: np.ndarray) -> np.ndarray:
    """Indices of faces whose photo has another face, sorted by photo."""
    _, inverse, counts = np.unique(photo, return_inverse=True, return_counts=True)
    faces = np.flatnonzero(counts[inverse] > 1)
    return faces[np.argsort(photo[faces], kind="stable")]


def _held_by_photo_mate(labels: np.ndarray, photo: np.ndarray, face: np.ndarray,
                        label: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """For each (face, label): does another face of the face's photo hold that label?"""
    out = np.zeros(len(face), dtype=bool)
    if len(shared) == 0:
        return out
    span = int(labels.max()) + 1
    held = photo[shared] * span + labels[shared]  # (photo, label) of every such face
    held_keys, held_counts = np.unique(held, return_counts=True)
    asked = photo[face] * span + label
    pos = np.searchsorted(held_keys, asked)
    pos_ok = pos < len(held_keys)
    found = np.zeros(len(face), dtype=bool)
    found[pos_ok] = held_keys[pos[pos_ok]] == asked[pos_ok]
    count = np.zeros(len(face), dtype=np.int64)
    count[found] = held_counts[pos[found]]
    # The face itself counts when it holds the label; a photo mate is anyone else.
    count -= (labels[face] == label).astype(np.int64) * found
    out[:] = count > 0
    return out


def _renumber(labels: np.ndarray, first_new: int) -> np.ndarray:
    """New clusters numbered from ``first_new`` in order of their first face; earlier ids
    (labels below ``first_new``) unchanged."""
    fresh = labels >= first_new
    if not fresh.any():
        return labels
    out = labels.copy()
    out[fresh] = first_new + _first_seen_ids(labels[fresh])
    return out


def _first_seen_ids(values: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... for the distinct ``values`` (1-d integers), in the order each first
    comes; one per value."""
    _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]
