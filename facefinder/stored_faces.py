"""A file's faces as the face index hands them back: a chunk's faces kept as columns,
``Face`` objects made only when someone looks at them.

Why: a warm run over a million faces made a million ``Face`` objects (and two numpy
views each) that the decision rule never looks at: it works on the embeddings as one
array (``match.PhotoFaces``), and a match needs only its face's box. ``FaceIndex.load``
therefore reads a chunk of files' face rows into one ``FaceColumns`` (the boxes, scores
and times as the rows' columns, the landmarks and embeddings each one array over the
joined blobs) and gives each file a ``StoredFaces``: a read-only sequence of its run of
rows that makes the ``Face`` objects the first time it is iterated or indexed, and
answers its length, a face's box and the embeddings' block without making any.
(docs/index.md, "A warm run at a million faces".)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

from facefinder.records import Face


class VectorArena:
    """One array the embeddings of consecutive chunks are written into, one after the
    other, so that the decision can take a whole warm run's vectors as one view of it
    instead of joining a copy (512 MB at a million faces; fresh memory is what costs on
    a busy machine). Made with room for every face the index holds under the analysis
    (``capacity``): the pages not written are never touched. When it is full (or the
    vectors' length changes) the caller makes another; a run then joins the pieces as
    before."""

    __slots__ = ("rows", "used")

    def __init__(self, capacity: int, dim: int) -> None:
        self.rows = np.empty((capacity, dim), np.float32)
        self.used = 0

    def fits(self, block: np.ndarray) -> bool:
        return block.shape[1] == self.rows.shape[1] and self.used + len(block) <= len(self.rows)

    def take(self, block: np.ndarray) -> tuple[np.ndarray, int]:
        """``block`` copied in after what is there: its view, and where it starts.

        The view is read-only (as the index's bytes were): every ``Face.embedding`` made
        from it and the decision's array of them (``match.PhotoFaces``, reused by the
        page's next answer) are this memory, so a consumer writing to one would change
        what all the others see."""
        start = self.used
        self.rows[start:start + len(block)] = block
        self.used += len(block)
        view = self.rows[start:self.used]
        view.flags.writeable = False
        return view, start


class FaceColumns:
    """The faces of a chunk of files, one entry per face row, in the rows' order.

    ``vectors`` holds the embedded faces' vectors as one (E, D) block (``vector_row[i]``:
    face i's row in it, -1 when it has none); ``None`` when their lengths differ (not
    seen under one analysis), and then ``vector_list`` holds each face's vector or None.
    """

    __slots__ = ("arena", "arena_start", "h", "landmarks", "score", "skipped", "time",
                 "vector_list", "vector_row", "vectors", "w", "x", "y")

    def __init__(self, box: tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int]],
                 landmarks: Sequence[np.ndarray], score: Sequence[float],
                 vectors: np.ndarray | None, vector_row: np.ndarray,
                 vector_list: Sequence[np.ndarray | None] | None,
                 skipped: Sequence[str | None], time: Sequence[float | None],
                 arena: VectorArena | None = None, arena_start: int = 0) -> None:
        self.x, self.y, self.w, self.h = box  # the boxes' columns, made into tuples on use
        self.landmarks, self.score = landmarks, score
        self.vectors, self.vector_row, self.vector_list = vectors, vector_row, vector_list
        self.skipped, self.time = skipped, time
        self.arena, self.arena_start = arena, arena_start  # where ``vectors`` lives, if so

    def __len__(self) -> int:
        return len(self.score)

    def embedding(self, i: int) -> np.ndarray | None:
        if self.vectors is None:
            assert self.vector_list is not None
            return self.vector_list[i]
        row = int(self.vector_row[i])
        return None if row < 0 else self.vectors[row]

    def box(self, i: int) -> tuple[int, int, int, int]:
        return (self.x[i], self.y[i], self.w[i], self.h[i])

    def face(self, i: int) -> Face:
        return Face(self.box(i), self.landmarks[i], self.score[i], self.embedding(i),
                    self.skipped[i], self.time[i])


class StoredFaces(Sequence[Face]):
    """One file's faces: rows ``start`` to ``end`` of a chunk's ``FaceColumns``.

    It behaves as the list of ``Face`` objects it stands for (iteration, indexing,
    length, equality with a list; pickled, it is that list), made once, on first use.
    It cannot be changed in place: a caller that wants other faces assigns a new list.
    """

    __slots__ = ("columns", "end", "objects", "start")

    def __init__(self, columns: FaceColumns, start: int, end: int) -> None:
        self.columns, self.start, self.end = columns, start, end
        self.objects: list[Face] | None = None  # the Face objects, once made

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def made(self) -> bool:
        """Whether the ``Face`` objects exist (someone looked at them: the columns may
        then no longer be what they hold, so the decision reads the objects)."""
        return self.objects is not None

    def faces(self) -> list[Face]:
        """The ``Face`` objects (made on the first call, the same ones after)."""
        if self.objects is None:
            face = self.columns.face
            self.objects = [face(i) for i in range(self.start, self.end)]
        return self.objects

    @overload
    def __getitem__(self, i: int) -> Face: ...

    @overload
    def __getitem__(self, i: slice) -> list[Face]: ...

    def __getitem__(self, i: int | slice) -> Face | list[Face]:
        return self.faces()[i]

    def __iter__(self) -> Iterator[Face]:
        return iter(self.faces())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StoredFaces):
            return self.faces() == other.faces()
        if isinstance(other, list):
            return self.faces() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # as a list's

    def __repr__(self) -> str:
        return repr(self.faces())

    def __reduce__(self):
        return (list, (self.faces(),))  # pickled (sent to a worker): a plain list

    def box(self, n: int) -> tuple[int, int, int, int]:
        """Face ``n``'s box, without making the faces."""
        if self.objects is not None:
            return self.objects[n].box
        if not 0 <= n < len(self):
            raise IndexError(n)
        return self.columns.box(self.start + n)


def skipped_count(faces: Sequence[Face]) -> int:
    """How many of ``faces`` were not embedded (too small, too blurry), without making
    stored faces' objects."""
    if isinstance(faces, StoredFaces) and not faces.made:
        return sum(1 for s in faces.columns.skipped[faces.start:faces.end] if s)
    return sum(1 for f in faces if f.skipped)
