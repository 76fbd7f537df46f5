"""Plain data passed between pipeline stages.

Workers return these (they must pickle cheaply), the main process matches and reports.
Keeping detection/embedding results separate from matching means the face index can
store exactly these records and answer new questions without decoding a photo again.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

FileKind = Literal["image", "video", "other"]


@dataclass
class Face:
    """One detected face, in the coordinates of the upright (EXIF-rotated) original image."""

    box: tuple[int, int, int, int]  # x, y, w, h
    landmarks: np.ndarray  # (5, 2) float32: left eye, right eye, nose, mouth left, mouth right
    score: float  # detector confidence 0..1
    embedding: np.ndarray | None = None  # L2-normalised float32 vector; None when skipped
    skipped: str | None = None  # why not embedded: "too small", "too blurry"
    time: float | None = None  # seconds into a video (the sampled frame); None for photos


@dataclass
class ObjectBox:
    """One detected object (``--objects``): a COCO class, in upright original coordinates.

    Kept apart from ``Face``: objects are never matched or embedded, only listed, asked
    about (``--with dog``) and drawn, so they carry no landmarks or vectors.
    """

    label: str  # a COCO class name: "dog", "cat", "person", ...
    score: float  # detector confidence 0..1
    box: tuple[int, int, int, int]  # x, y, w, h
    time: float | None = None  # seconds into a video (the sampled frame); None for photos


@dataclass
class FileResult:
    """What the pipeline learned about one file under PHOTOS_DIR."""

    rel: str  # path relative to PHOTOS_DIR, '/'-separated
    kind: FileKind
    size: tuple[int, int] | None = None  # upright width, height of the original image
    faces: list[Face] = field(default_factory=list)
    error: str | None = None  # one-line reason the file could not be read
    # When it was taken, "YYYY-MM-DD HH:MM:SS" local time: EXIF DateTimeOriginal (or a
    # video's creation time) when the file has one, else the file's modification time.
    taken: str | None = None
    taken_from: str | None = None  # "exif", "video" or "file time"
    frames: int = 0  # video frames sampled (0 for photos)
    duration: float | None = None  # video length in seconds
    from_index: bool = False  # answered from the face index, not decoded in this run
    # The content key (``index.content_key``) when a face index is used: with a face's
    # number it names the face for decisions and the review page (see ``face_id``).
    key: bytes | None = None
    # Objects found (``--objects``): None when the file was not looked at for objects
    # (the index then knows its faces but not yet its objects), [] when none were found.
    objects: list[ObjectBox] | None = None
    # Why the objects were not read (one line) while the faces were: the detector failed
    # on this file, or it could not be read again for objects. Not stored: retried.
    objects_error: str | None = None


@dataclass
class Match:
    """A (file, person) pair: the person's best-matching face in that file."""

    rel: str
    person: str
    distance: float
    box: tuple[int, int, int, int]
    taken: str | None = None  # capture time of the file, for sorting by date
    taken_from: str | None = None  # where ``taken`` comes from: "exif", "video", "file time"
    # Videos only: when the person is seen (seconds) and in how many sampled frames.
    first: float | None = None
    last: float | None = None
    frames: int | None = None
    face: str | None = None  # the face's id (``face_id``) when a face index is used
    confirmed: bool = False  # the user said yes to this face for this person
    threshold: float | None = None  # the person's cutoff this match was decided with
    # Share of matches at least this far under the cutoff that were right on the
    # calibration albums (``decide.CONFIDENCE``); 1.0 for a face the user confirmed.
    confidence: float | None = None


def name_key(name: str) -> str:
    """What makes two spellings of a name one person: case, and Unicode composition (a
    folder copied from a Mac spells "José" with a separate accent)."""
    return unicodedata.normalize("NFC", name).casefold()


def face_id(key: bytes, n: int) -> str:
    """A face's stable name: its file's content key and its number in that file.

    The same photo on another drive, or moved, keeps its faces' ids, so a decision made
    once (yes/no on the review page) holds wherever the photo turns up.
    """
    return f"{key.hex()}-{n}"


def parse_face_id(text: str) -> tuple[bytes, int]:
    """The (content key, face number) of a face id; ValueError if it is not one."""
    key, sep, n = text.partition("-")
    if not sep or len(key) != 32 or not n.isdigit() or len(n) > 6:
        raise ValueError(f"not a face id: {text[:80]!r}")
    return bytes.fromhex(key), int(n)


@dataclass(frozen=True)
class Decision:
    """What the user said of one face: it is (``yes``) or is not (``no``) ``person``.

    The box, frame time and embedding are kept with the verdict, so a confirmed face
    keeps serving as a reference for its person even after its photo is gone.
    """

    key: bytes  # the file's content key
    n: int  # the face's number in that file
    person: str
    verdict: Literal["yes", "no"]
    box: tuple[int, int, int, int]
    time: float | None = None
    embedding: np.ndarray | None = None

    @property
    def face(self) -> str:
        return face_id(self.key, self.n)
