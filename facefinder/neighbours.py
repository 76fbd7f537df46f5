"""Nearest neighbours of face embeddings by cosine distance, for clustering.

Faces are L2-normalised vectors, so cosine distance is ``1 - dot``. Two ways to answer a
k-nearest query, chosen per query by the amount of work:

- exact, with numpy: one matrix product per block of queries. It costs queries x stored
  x dim; for the first ~20,000 faces of a collection, or for a few hundred new faces
  against any number of stored ones, that is cheaper than building a graph index, and it
  is exact and deterministic.
- approximate, with usearch's HNSW graph (see docs/clusters.md for why usearch: wheels
  for every OS and Python we support, the fastest build + query measured here at 0.998
  recall). The graph is built the first time a big query needs it and then grows with
  ``add``, so adding 1,000 faces to 100,000 never rebuilds it.

The vectors themselves are kept in one numpy array (100,000 faces x 128 float32 = 51 MB)
because the exact path, and a graph built late, both need them.
"""

from __future__ import annotations

import os

import numpy as np

# Below this many stored vectors every query is exact: numpy's k-NN of all 20,000 against
# all 20,000 takes about as long as building the graph and querying it (docs/clusters.md).
EXACT_BELOW = 20_000
# Above it, queries x stored pairs up to this are still answered exactly: 1,000 new faces
# against 100,000 stored ones is 1e8 dot products, a fraction of a second.
EXACT_WORK = 5e8
# Similarities held at once by the exact path (queries x stored): 64 MB of float32, so
# 1,000 new faces against 100,000 go in a few blocks, not one 400 MB matrix.
_BLOCK_ELEMENTS = 1 << 24


class Neighbours:
    """k-nearest-neighbour search over unit vectors that can grow (ids are 0, 1, 2, ...
    in the order vectors were added).

    ``threads``: for searching the graph (default: every core). ``reproducible``: the
    graph is built by one thread, so the same vectors added in the same order give the
    same answers on every run (a graph built by several threads depends on their timing:
    0.4% of neighbours differed between two runs). It costs build time: 100,000 faces
    take 7.0 s instead of 2.8 s on 2 cores. Exact answers are always reproducible.
    """

    def __init__(self, vectors: np.ndarray | None = None, *, dim: int | None = None,
                 threads: int | None = None, reproducible: bool = True,
                 exact_below: int = EXACT_BELOW, exact_work: float = EXACT_WORK) -> None:
        if vectors is None and dim is None:
            raise ValueError("give the vectors or their dimension")
        self.dim = int(dim if dim is not None else np.asarray(vectors).shape[1])
        self.threads = threads or os.cpu_count() or 1
        self.build_threads = 1 if reproducible else self.threads
        self.exact_below = exact_below
        self.exact_work = exact_work
        self._data = np.empty((0, self.dim), dtype=np.float32)
        self._size = 0
        self._graph = None  # usearch.index.Index, made on first need
        self._in_graph = 0  # how many of the vectors the graph holds (a prefix)
        if vectors is not None:
            self.add(vectors)

    def __len__(self) -> int:
        return self._size

    @property
    def vectors(self) -> np.ndarray:
        """The stored vectors (a view: do not change it)."""
        return self._data[: self._size]

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Store more unit vectors; returns their ids. The graph, if built, grows too."""
        vectors = self._check(vectors)
        start = self._size
        need = start + len(vectors)
        if need > len(self._data):  # grow by doubling: adding one face at a time stays cheap
            grown = np.empty((max(need, 2 * len(self._data), 1024), self.dim), np.float32)
            grown[:start] = self._data[:start]
            self._data = grown
        self._data[start:need] = vectors
        self._size = need
        if self._graph is not None:
            self._sync_graph()
        return np.arange(start, need, dtype=np.int64)

    def query(self, vectors: np.ndarray, k: int, *, exact: bool | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """The k stored vectors nearest each query vector, nearest first.

        Returns ids (Q, k) int64 and cosine distances (Q, k) float32. Where fewer than k
        vectors are stored the row is padded with id -1 and distance inf. A stored vector
        queried with itself finds itself (distance ~0) among its neighbours. ``exact``
        forces one way (default: by the amount of work, see the module's doc).
        """
        queries = self._check(vectors)
        q, n = len(queries), self._size
        ids = np.full((q, k), -1, dtype=np.int64)
        dists = np.full((q, k), np.inf, dtype=np.float32)
        if q == 0 or n == 0 or k <= 0:
            return ids, dists
        if exact is None:
            exact = n < self.exact_below or q * n <= self.exact_work
        found_ids, found = (self._exact(queries, min(k, n)) if exact
                            else self._approximate(queries, min(k, n)))
        ids[:, : found_ids.shape[1]] = found_ids
        dists[:, : found.shape[1]] = found
        return ids, dists

    # ------------------------------------------------------------------ internals

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim == 1 and vectors.size == 0:
            vectors = vectors.reshape(0, self.dim)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (N, {self.dim}), got {vectors.shape}")
        return vectors

    def _exact(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        stored = self.vectors
        n = len(stored)
        ids = np.empty((len(queries), k), dtype=np.int64)
        dists = np.empty((len(queries), k), dtype=np.float32)
        block = max(1, min(len(queries), _BLOCK_ELEMENTS // n))
        for start in range(0, len(queries), block):
            sims = queries[start:start + block] @ stored.T
            # The k largest similarities, in no order, then sorted: nearest first, equal
            # distances by id, so the answer never depends on the partition.
            part = (np.argpartition(sims, n - k, axis=1)[:, n - k:] if k < n
                    else np.broadcast_to(np.arange(k), sims.shape).copy())
            part_sims = np.take_along_axis(sims, part, axis=1)
            order = np.lexsort((part, -part_sims), axis=1)
            ids[start:start + block] = np.take_along_axis(part, order, axis=1)
            dists[start:start + block] = 1.0 - np.take_along_axis(part_sims, order, axis=1)
        np.clip(dists, 0.0, 2.0, out=dists)
        return ids, dists

    def _approximate(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._sync_graph()
        found = self._graph.search(queries, k, threads=self.threads)
        ids = np.asarray(found.keys, dtype=np.int64).reshape(len(queries), -1)[:, :k]
        dists = np.asarray(found.distances, dtype=np.float32).reshape(len(queries), -1)[:, :k]
        counts = np.asarray(found.counts).reshape(-1)
        missing = np.arange(ids.shape[1])[None, :] >= counts[:, None]
        ids[missing] = -1
        dists[missing] = np.inf
        np.clip(dists, 0.0, 2.0, out=dists)
        return ids, dists

    def _sync_graph(self) -> None:
        """Build the graph, or add to it the vectors stored since it was last synced."""
        if self._graph is None:
            from usearch.index import Index

            # Inner product on unit vectors is cosine distance without normalising them
            # again ("cos" measured 3-5x slower); connectivity 16 and expansion 64/64 gave
            # 0.997 recall@20 on face-like data at a quarter of the default build time.
            self._graph = Index(ndim=self.dim, metric="ip", dtype="f32", connectivity=16,
                                expansion_add=64, expansion_search=64)
        if self._in_graph < self._size:
            self._graph.add(np.arange(self._in_graph, self._size, dtype=np.int64),
                            self._data[self._in_graph:self._size], threads=self.build_threads)
            self._in_graph = self._size
