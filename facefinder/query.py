"""Questions across people, dates and face counts: which matched files to show.

The finder answers "who is in which file" (from the index, in seconds once it is warm);
these filters then keep the files the user asked about. Semantics, also in ``--help``:

* ``--any A B``: only files that show at least one of A and B (without names, or by
  default: a file is listed under each person searched for that it shows).
* ``--all A B``: only files that show every one of A and B.
* ``--without C``: files that show C are left out (C is searched for, never listed).
* ``--since`` / ``--until``: capture time (EXIF DateTimeOriginal, a video's creation time,
  else the file's modification time), inclusive, at the precision given: ``2004``,
  ``2004-06`` or ``2004-06-30``.
* ``--min-faces`` / ``--max-faces``: faces detected in the file (for a video: in its
  fullest sampled frame), counting faces too small to match.
* ``--with dog``: only files where the object detector saw a dog (for a video: in any
  sampled frame); repeated, every one of them (``object_names`` says which words count).

People named in ``--all``/``--any``/``--without`` are searched for in addition to any
``--person``; without ``--person`` (or ``--any`` names) everyone in reference/ is listed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from facefinder.records import FileResult, Match, name_key

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


class QueryError(ValueError):
    """A filter the user must fix (bad date, unknown combination)."""


def parse_date(text: str, option: str) -> str:
    """``2004``, ``2004-06`` or ``2004-06-30`` checked and returned as given (a prefix of
    the stored "YYYY-MM-DD HH:MM:SS", so comparing prefixes gives inclusive bounds)."""
    found = _DATE.match(text.strip())
    if not found:
        raise QueryError(f"{option} {text!r}: use a date like 2004, 2004-06 or 2004-06-30")
    _year, month, day = found.groups()
    if (month and not 1 <= int(month) <= 12) or (day and not 1 <= int(day) <= 31):
        raise QueryError(f"{option} {text!r}: no such month or day")
    return text.strip()


@dataclass
class Query:
    """The filters of one run; an empty Query keeps every matched file."""

    all_of: list[str] = field(default_factory=list)
    any_of: list[str] = field(default_factory=list)
    without: list[str] = field(default_factory=list)
    since: str | None = None
    until: str | None = None
    min_faces: int | None = None
    max_faces: int | None = None
    with_objects: list[str] = field(default_factory=list)  # words, as the user gave them
    # The classes each --with word means (``object_names.resolve``), and how words that
    # are no class name were understood ("--with puppy: looking for dog").
    object_classes: list[tuple[str, ...]] = field(default_factory=list, init=False,
                                                  compare=False, repr=False)
    object_notes: list[str] = field(default_factory=list, init=False, compare=False,
                                    repr=False)

    def __post_init__(self) -> None:
        if self.with_objects:
            from facefinder.object_names import UnknownObject, explain, resolve

            try:
                self.object_classes = [resolve(word) for word in self.with_objects]
            except UnknownObject as exc:
                raise QueryError(str(exc)) from None
            self.object_notes = [note for word, classes in zip(
                self.with_objects, self.object_classes, strict=True)
                if (note := explain(word, classes))]
        if self.since and self.until and self.until < self.since[: len(self.until)]:
            raise QueryError(f"--until {self.until} is before --since {self.since}")
        if (self.min_faces is not None and self.max_faces is not None
                and self.max_faces < self.min_faces):
            raise QueryError("--max-faces is smaller than --min-faces")

    def asks(self) -> bool:
        """Whether any filter is set (an empty Query keeps everything)."""
        return self != Query()

    def keep(self, result: FileResult, matches: Sequence[Match]) -> list[Match]:
        """The matches of one file to report: all of them, or none when it is filtered out."""
        if not matches:
            return []
        shown = {name_key(m.person) for m in matches}
        if any(name_key(name) not in shown for name in self.all_of):
            return []
        if self.any_of and not any(name_key(name) in shown for name in self.any_of):
            return []
        if any(name_key(name) in shown for name in self.without):
            return []
        return list(matches) if self.keeps_file(result) else []

    def keeps_file(self, result: FileResult) -> bool:
        """Whether the file passes the filters that are not about people: dates, face
        counts, objects (what a ``--with dog`` question asks of every file)."""
        taken = result.taken or ""
        if self.since and taken[: len(self.since)] < self.since:
            return False
        if self.until and (not taken or taken[: len(self.until)] > self.until):
            return False
        faces = face_count(result)
        if self.min_faces is not None and faces < self.min_faces:
            return False
        if self.max_faces is not None and faces > self.max_faces:
            return False
        if self.object_classes:
            seen = {o.label for o in result.objects or ()}
            return all(seen.intersection(classes) for classes in self.object_classes)
        return True


def face_count(result: FileResult) -> int:
    """Faces in a photo; for a video, the most faces seen in one sampled frame."""
    if result.kind != "video":
        return len(result.faces)
    per_frame = Counter(face.time for face in result.faces)
    return max(per_frame.values(), default=0)
