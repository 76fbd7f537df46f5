"""Nearest neighbours of face embeddings by cosine distance: clustering, expansion, lookups.

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

``FaceGraph`` keeps such a graph of every photo face of a face index on disk, beside the
index, with each face's 20 nearest: what the decision rule's expansion follows and what
"faces like this one" asks once a collection is big (docs/index.md, "The neighbour graph
beside the index").
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import secrets
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

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


def usearch_index() -> type:
    """usearch's ``Index`` class, imported only after onnxruntime.

    Why: with the wheels of today (onnxruntime 1.32, usearch 2.26, Linux x86_64), importing
    onnxruntime *after* usearch crashes the process
    (a segmentation fault in onnxruntime's static initialisers, inside libstdc++'s codecvt:
    the two extension modules disagree about the C++ runtime loaded first). The other order
    is safe. A finder process can need both (the review page opens the neighbour graph and
    later embeds an uploaded photo; a search falls back to analysing a file in-process after
    the graph was read), so every use of usearch goes through here.
    """
    import onnxruntime  # noqa: F401  (loaded first on purpose, see above)
    from usearch.index import Index

    return Index


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

    def reserve(self, total: int) -> None:
        """Room for ``total`` vectors in all, made now: a caller adding a known number
        in steps then never copies them into a doubled buffer."""
        if total > len(self._data):
            grown = np.empty((total, self.dim), np.float32)
            grown[:self._size] = self._data[:self._size]
            self._data = grown

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Store more unit vectors; returns their ids. The graph, if built, grows too."""
        vectors = self._check(vectors)
        start = self._size
        need = start + len(vectors)
        if need > len(self._data):  # grow by doubling: adding one face at a time stays cheap
            self.reserve(max(need, 2 * len(self._data), 1024))
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

    @property
    def graph(self):
        """The usearch index (None until a query or ``ensure_graph`` needed it)."""
        return self._graph

    def ensure_graph(self) -> None:
        """Build the graph now (or add what it lacks), e.g. before keeping it on disk."""
        self._sync_graph()

    def adopt(self, vectors: np.ndarray, graph) -> None:
        """Take ``vectors`` (not copied when already contiguous float32: never written
        to, an ``add`` moves them to a buffer of its own) with a usearch index already
        holding them (keys 0..N-1, as read back from disk), so nothing is indexed again;
        or with ``graph`` None, none yet (built on first need, as for ``add``)."""
        self._data = self._check(vectors)
        self._size = len(self._data)
        self._graph = graph
        self._in_graph = self._size if graph is not None else 0

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
        return _as_arrays(self._graph.search(queries, k, threads=self.threads),
                          len(queries), k)

    def _sync_graph(self) -> None:
        """Build the graph, or add to it the vectors stored since it was last synced."""
        if self._graph is None:
            Index = usearch_index()
            # Inner product on unit vectors is cosine distance without normalising them
            # again ("cos" measured 3-5x slower); connectivity 16 and expansion 64/64 gave
            # 0.997 recall@20 on face-like data at a quarter of the default build time.
            self._graph = Index(ndim=self.dim, metric="ip", dtype="f32", connectivity=16,
                                expansion_add=64, expansion_search=64)
        if self._in_graph < self._size:
            self._graph.add(np.arange(self._in_graph, self._size, dtype=np.int64),
                            self._data[self._in_graph:self._size], threads=self.build_threads)
            self._in_graph = self._size


# ---------------------------------------------------------------------- kept on disk

GRAPH_K = 20  # neighbours kept per face (as the clustering's k): what expansion follows
_FORMAT = 1  # bumped when what is kept beside the index changes


class FaceGraph:
    """Every photo face of one analysis in a face index, searchable, kept beside it.

    Two files next to the index the user named (``faces.sqlite`` ->
    ``faces.sqlite.neighbours.usearch`` and ``faces.sqlite.neighbours.npz``): the HNSW
    graph (usearch, keys = positions, the vectors kept once, in it) and, per face, its
    content key, face number and ``GRAPH_K`` nearest faces with their distances. They are
    keyed by a fingerprint of what they were built from (format, analysis id and the
    index's face generation counter, ``FaceIndex.faces_generation``) and never trusted
    when it does not match: then they are built again (when faces were only added, the
    new ones are added to the graph, not the lot). Deleting them costs only that rebuild.
    Both files are memory-mapped when read back (the table's arrays read-only, see
    ``_mapped_members``; on Windows the table is read), so opening them costs no time at
    a million faces; the vectors are read from the graph only when asked for.
    """

    def __init__(self, keys: np.ndarray, numbers: np.ndarray, near: np.ndarray,
                 far: np.ndarray, fingerprint: dict, *, graph=None,
                 neighbours: Neighbours | None = None, threads: int | None = None) -> None:
        self.keys = keys  # (F, 16) uint8 content keys
        self.numbers = numbers  # (F,) face numbers
        self.near = near  # (F, GRAPH_K) int32 positions of each face's nearest, -1: none
        self.far = far  # (F, GRAPH_K) float32 their cosine distances (inf: none)
        self.fingerprint = fingerprint
        self.threads = threads or os.cpu_count() or 1
        self._graph = graph if neighbours is None else neighbours.graph  # usearch Index
        self._neighbours = neighbours  # made from the graph when it must grow
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # face keys, their order
        self._starts: dict[bytes, int] | None = None  # content key -> its first position
        self.source: Path | None = None  # the graph file it was read from or written to

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def vectors(self) -> np.ndarray:
        """(F, D) float32, in position order (read from the graph on first use)."""
        if self._neighbours is not None:
            return self._neighbours.vectors
        return np.asarray(self._graph.get(np.arange(len(self)), dtype="f32"),
                          np.float32).reshape(len(self), -1)

    @property
    def neighbours(self) -> Neighbours:
        """The faces as a ``Neighbours`` that can grow (the graph loaded, not mapped)."""
        if self._neighbours is None:
            Index = usearch_index()
            vectors = self.vectors
            graph = (Index.restore(str(self.source), view=False)
                     if self.source is not None else self._graph)
            self._neighbours = Neighbours(dim=vectors.shape[1], threads=self.threads,
                                          reproducible=False)
            self._neighbours.adopt(vectors, graph)
            self._graph = graph
        return self._neighbours

    @staticmethod
    def paths(index_path: Path) -> tuple[Path, Path]:
        """The two files kept beside ``index_path`` (named from its file name)."""
        base = f"{index_path.name}.neighbours"
        return index_path.with_name(base + ".usearch"), index_path.with_name(base + ".npz")

    @classmethod
    def open(cls, index, settings: int, *, threads: int | None = None, save: bool = True,
             held: FaceGraph | None = None,
             progress: Callable[[str], None] | None = None) -> FaceGraph:
        """The graph of ``index``'s photo faces under ``settings``: ``held`` (one already
        in memory) or the one beside the index when its fingerprint matches, else
        (re)built and, if ``save``, kept beside the index. ``progress`` gets a line now
        and then while a big graph is built (minutes at a million faces)."""
        fingerprint = {"format": _FORMAT, "settings": int(settings),
                       "generation": index.faces_generation()}
        graph_file, table_file = cls.paths(Path(index.path))
        if (held is not None and held.fingerprint == fingerprint
                and held.source == graph_file):
            return held
        old = cls._read(graph_file, table_file, threads)
        if old is None or old.fingerprint != fingerprint:
            keys, numbers, vectors = index.photo_embeddings(settings)
            big = len(vectors) - (0 if old is None else len(old)) >= PROGRESS_FROM
            old = cls._build(keys, numbers, vectors, fingerprint, old, threads,
                             progress=progress if big else None)
            if save and not index.read_only:
                # disk full, folder not writable: the graph serves from memory, and the
                # next run builds it again
                with contextlib.suppress(OSError, RuntimeError):
                    old.save(graph_file, table_file)
        old.source = graph_file
        return old

    @classmethod
    def _build(cls, keys: np.ndarray, numbers: np.ndarray, vectors: np.ndarray,
               fingerprint: dict, old: FaceGraph | None, threads: int | None, *,
               progress: Callable[[str], None] | None = None) -> FaceGraph:
        """Index the vectors; when ``old`` (same format and analysis) holds the first of
        them, the very same faces and vectors (faces were only added), only the rest are
        added and looked up. ``progress``: told after each ``PROGRESS_STEP`` faces."""
        dim = vectors.shape[1] if vectors.size else 128
        start = 0
        if (old is not None and len(old) <= len(vectors)
                and {k: v for k, v in old.fingerprint.items() if k != "generation"}
                == {k: v for k, v in fingerprint.items() if k != "generation"}
                and np.array_equal(old.keys, keys[:len(old)])
                and np.array_equal(old.numbers, numbers[:len(old)])
                and np.array_equal(old.vectors, vectors[:len(old)])):
            neighbours, start = old.neighbours, len(old)
            more = len(vectors) - start
            near = np.concatenate([old.near, np.full((more, GRAPH_K), -1, np.int32)])
            far = np.concatenate([old.far, np.full((more, GRAPH_K), np.inf, np.float32)])
        else:
            neighbours = Neighbours(dim=dim, threads=threads, reproducible=False)
            near = np.full((len(vectors), GRAPH_K), -1, np.int32)
            far = np.full((len(vectors), GRAPH_K), np.inf, np.float32)
        tell = progress
        if tell is None:
            neighbours.add(vectors[start:])
        else:  # a big build: the graph grown a step at a time, each step told
            neighbours.reserve(len(vectors))  # (not doubled step after step: 800 MB at 1M)
            for a in range(start, len(vectors), PROGRESS_STEP):
                neighbours.add(vectors[a:a + PROGRESS_STEP])
                neighbours.ensure_graph()
                tell(f"Neighbour graph: {len(neighbours):,} of {len(vectors):,} faces "
                     "indexed")
        step = PROGRESS_STEP if tell is not None else max(1, len(vectors))
        for a in range(start, len(vectors), step):
            b = min(len(vectors), a + step)
            ids, dists = neighbours.query(vectors[a:b], GRAPH_K + 1)
            # leave each face itself out: its own entries sort last in a stable sort
            own = ids == np.arange(a, b)[:, None]
            keep = np.argsort(own, axis=1, kind="stable")[:, :GRAPH_K]
            near[a:b] = np.take_along_axis(ids, keep, axis=1)
            far[a:b] = np.take_along_axis(dists, keep, axis=1)
            if tell is not None:
                tell(f"Neighbour graph: nearest faces of {b:,} of {len(vectors):,} found")
        neighbours.ensure_graph()
        return cls(keys, numbers, near, far, fingerprint, neighbours=neighbours,
                   threads=threads)

    def save(self, graph_file: Path, table_file: Path) -> None:
        """Write both files (each through a temporary name, so a kill leaves the old ones
        or none, never half of one); the fingerprint goes last, in the table."""
        graph = self._graph
        for target, write in ((graph_file, lambda tmp: graph.save(str(tmp))),
                              (table_file, lambda tmp: self._save_table(tmp))):
            # A name of this writer's own: two runs saving at once (the review page and a
            # search) never publish each other's half-written file.
            tmp = target.with_name(f"{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
            try:
                write(tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)

    def _save_table(self, path: Path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, keys=self.keys, numbers=self.numbers, near=self.near,
                     far=self.far, fingerprint=np.array(json.dumps(self.fingerprint)))

    @classmethod
    def _read(cls, graph_file: Path, table_file: Path, threads: int | None
              ) -> FaceGraph | None:
        """What is kept beside the index, or None when missing or unreadable."""
        if not graph_file.exists() or not table_file.exists():
            return None
        try:
            # one handle for all of it: a table replaced meanwhile (another run saving)
            # is then read whole from one file or the other, never mixed
            with open(table_file, "rb") as handle, np.load(handle, allow_pickle=False) as table:
                fingerprint = json.loads(str(table["fingerprint"]))
                mapped = _mapped_members(handle, table.zip.infolist(),
                                         ("keys", "numbers", "near", "far"))
                keys, numbers, near, far = (mapped[name] if name in mapped else table[name]
                                            for name in ("keys", "numbers", "near", "far"))
            Index = usearch_index()
            graph = Index.restore(str(graph_file), view=True)
        except (OSError, ValueError, KeyError, RuntimeError, EOFError, zipfile.BadZipFile,
                zlib.error):  # a damaged cache (a cut-off or emptied file): built again
            return None
        if graph is None or len(graph) != len(numbers):
            return None
        found = cls(keys, numbers, near, far, fingerprint, graph=graph, threads=threads)
        found.source = graph_file
        return found

    # ------------------------------------------------------------------ questions

    def positions(self, keys: Sequence[bytes], numbers: np.ndarray) -> np.ndarray:
        """Position of each (content key, face number) in the graph, -1 if not in it."""
        if not len(self) or not len(numbers):
            return np.full(len(numbers), -1, np.int64)
        if self._sorted is None:
            mine = _face_keys(self.keys.tobytes(), self.keys.shape[1], self.numbers)
            self._sorted = mine, np.argsort(mine)
        mine, order = self._sorted
        asked = _face_keys(b"".join(keys), self.keys.shape[1], np.asarray(numbers))
        found = np.searchsorted(mine, asked, sorter=order)
        found = np.minimum(found, len(mine) - 1)
        at = order[found]
        return np.where(mine[at] == asked, at, -1).astype(np.int64)

    def locate(self, file_keys: Sequence[bytes | None], file: np.ndarray,
               numbers: np.ndarray) -> np.ndarray:
        """``positions`` of faces given as (their file's content key, by ``file``, an
        index into ``file_keys``; their number), found a file at a time.

        The graph keeps a file's faces together, numbers ascending, and so do the
        decision's faces (``match.PhotoFaces``): a face's position is where its file
        starts in the graph plus its rank among the file's faces. One dictionary lookup
        per file, then every answer checked against the graph's own keys and numbers;
        the few that do not agree (a file whose faces differ) are looked up one by one.
        At a million faces this takes a fraction of the second the per-face search
        took."""
        file = np.asarray(file, np.int64)
        numbers = np.asarray(numbers, np.int64)
        count, width = len(numbers), self.keys.shape[1]
        if not len(self) or not count:
            return np.full(count, -1, np.int64)
        # a file without a key of the graph's width (none: not from the index) is asked
        # as zeros (a content key is a hash), on the fast path and the fallback alike
        given = (file_keys if all(k is not None and len(k) == width for k in file_keys)
                 else [k if k is not None and len(k) == width else bytes(width)
                       for k in file_keys])
        # keys compared as whole 16-byte values (a quarter of the time of byte columns)
        asked = np.frombuffer(b"".join(given), f"V{width}")
        mine = np.ascontiguousarray(self.keys).view(f"V{width}").ravel()
        if (count == len(self) and np.array_equal(self.numbers, numbers)
                and np.array_equal(mine, asked[file])):
            # the graph's own faces in its order (a warm run over the folder the index
            # was filled from): no dictionary of half a million files to make and ask
            return np.arange(count, dtype=np.int64)
        starts = self._file_starts()
        first = np.array(list(map(starts.get, file_keys, itertools.repeat(-1))), np.int64)
        # rank of each face among its file's faces (rows of one file are consecutive)
        head = np.flatnonzero(np.r_[True, file[1:] != file[:-1]])
        rank = np.arange(count) - np.repeat(head, np.diff(np.r_[head, count]))
        found = first[file] + rank
        inside = (first[file] >= 0) & (found < len(self))
        spot = np.where(inside, found, 0)
        good = inside & (self.numbers[spot] == numbers) & (mine[spot] == asked[file])
        found = np.where(good, found, -1)
        wrong = np.flatnonzero(~good)
        if len(wrong):  # not where the file's run says: the plain search
            found[wrong] = self.positions([given[i] for i in file[wrong]], numbers[wrong])
        return found

    def _file_starts(self) -> dict[bytes, int]:
        """{content key: position of its file's first face}, made once per graph."""
        if self._starts is None:
            keys = self.keys
            head = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)])
            # each key as bytes, all of it (an "S" type would drop trailing zero bytes)
            names = np.ascontiguousarray(keys[head]).view(f"V{keys.shape[1]}").ravel()
            self._starts = dict(zip(names.tolist(), head.tolist(), strict=True))
        return self._starts

    def rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F, GRAPH_K) neighbours of the faces at ``positions`` (graph positions, -1 for
        a face not in the graph), given as rows of ``positions`` itself (-1: a neighbour
        that is not one of them), and their distances. What ``decide.expand`` follows.

        When the faces are the graph's own, in its order (a warm run over the folder the
        index was filled from), the answer is the graph's arrays themselves, not a copy:
        read them, never write them."""
        if len(positions) == len(self) and np.array_equal(
                positions, np.arange(len(self), dtype=positions.dtype)):
            return self.near, self.far
        # int32 where it fits: a million faces' rows are then 80 MB to write, not 160
        kind = np.int32 if len(positions) < 2**31 else np.int64
        row_of = np.full(len(self) + 1, -1, kind)  # the last slot answers -1
        inside = positions >= 0
        if inside.all():  # every face in the graph (the usual case): one gather each
            row_of[positions] = np.arange(len(positions), dtype=kind)
            near, far = self.near[positions], self.far[positions]
        else:
            row_of[positions[inside]] = np.flatnonzero(inside)
            near = np.full((len(positions), GRAPH_K), -1, np.int64)
            near[inside] = self.near[positions[inside]]
            far = np.full((len(positions), GRAPH_K), np.inf, np.float32)
            far[inside] = self.far[positions[inside]]
        rows = row_of[near]
        far[rows < 0] = np.inf
        return rows, far

    def nearest(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (Q, k) and cosine distances of the stored faces nearest each vector,
        nearest first (-1 and inf where fewer were found)."""
        queries = np.ascontiguousarray(vectors, dtype=np.float32)
        if not len(self) or not len(queries):
            return (np.full((len(queries), k), -1, np.int64),
                    np.full((len(queries), k), np.inf, np.float32))
        return _as_arrays(self._graph.search(queries, min(k, len(self)),
                                             threads=self.threads), len(queries), k)


# A graph build that adds this many faces tells its progress (when asked to), every
# PROGRESS_STEP faces: a million faces take minutes on 2 cores.
PROGRESS_FROM = 200_000
PROGRESS_STEP = 100_000


def _mapped_members(handle: BinaryIO, infos: Sequence[zipfile.ZipInfo],
                    names: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays ``names`` of the ``.npz`` open as ``handle`` (``infos``: its members, as
    ``np.load`` already read them), as read-only views of one
    memory map of that file instead of read into memory; a member that cannot be mapped
    (compressed, Fortran order, objects, an unknown header) is left out, for the caller
    to read as usual. Nothing is mapped on Windows, where a mapped file cannot be
    replaced: a graph that grows while the review page holds the old one could then
    never be saved.

    Why: at a million faces the table is 184 MB, and reading it cost 0.2-0.5 s and as much
    fresh memory on every warm run, while the decision looks at its rows once (expansion,
    in the page cache's pages). ``np.savez`` stores each member uncompressed, an ``.npy``
    after its ZIP entry's local header, so each array is a plain region of the file.
    """
    import mmap
    import struct

    found: dict[str, np.ndarray] = {}
    if os.name == "nt":
        return found
    try:
        whole = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return found
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if name not in names or info.compress_type != zipfile.ZIP_STORED:
            continue
        try:
            header = whole[info.header_offset:info.header_offset + 30]  # local header
            if len(header) < 30 or header[:4] != b"PK\x03\x04":
                continue
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            begin = info.header_offset + 30 + name_length + extra_length
            member = io.BytesIO(whole[begin:begin + min(info.file_size, 1 << 16)])
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                continue
            start = begin + member.tell()
            count = int(np.prod(shape))
            if (fortran or dtype.hasobject or not count
                    or member.tell() + count * dtype.itemsize > info.file_size):
                continue
            found[name] = np.frombuffer(whole, dtype, count, start).reshape(shape)
        except (OSError, ValueError, struct.error):
            continue
    return found


def _as_arrays(found, queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """usearch's answer as (Q, k) ids and distances, -1 and inf where none was found
    (one query answers a Matches, without counts; several a BatchMatches)."""
    ids = np.full((queries, k), -1, np.int64)
    dists = np.full((queries, k), np.inf, np.float32)
    keys = np.asarray(found.keys, dtype=np.int64).reshape(queries, -1)[:, :k]
    far = np.asarray(found.distances, dtype=np.float32).reshape(queries, -1)[:, :k]
    counts = np.asarray(getattr(found, "counts", [keys.shape[1]])).reshape(-1)
    valid = np.arange(keys.shape[1])[None, :] < counts[:, None]
    ids[:, :keys.shape[1]] = np.where(valid, keys, -1)
    dists[:, :far.shape[1]] = np.where(valid, np.clip(far, 0.0, 2.0), np.inf)
    return ids, dists


def _face_keys(keys: bytes, width: int, numbers: np.ndarray) -> np.ndarray:
    """One comparable value per (content key, face number): the key's bytes and the
    number, as a fixed-width byte string."""
    count = len(numbers)
    table = np.empty((count, width + 4), np.uint8)
    table[:, :width] = np.frombuffer(keys, np.uint8).reshape(count, width)
    table[:, width:] = np.asarray(numbers, ">u4").view(np.uint8).reshape(count, 4)
    return table.view(f"S{width + 4}").reshape(count)
