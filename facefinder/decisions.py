"""The user's verdicts on faces, in the form matching needs them.

A decision (``records.Decision``) says a face is, or is not, a person. Matching honours
them everywhere - runs, reports, copies, the review page: a face confirmed for a person
is that person's (and nobody else's) whatever the threshold, a face rejected for a
person is never theirs again, and confirmed faces join the person's references, so the
next search finds more of their photos with no new reference photo. A name given on the
review page becomes a person even with no reference folder.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from facefinder.records import Decision, name_key

MAX_NAME = 100
_FORBIDDEN = set('<>:"/\\|?*')  # also folder names on Windows: the name becomes one in copies


def check_name(name: str) -> str:
    """``name`` tidied (spaces trimmed, Unicode NFC), or ValueError saying why not.

    The name becomes a folder in ``--copy`` and ``--export-references``, so it must be one
    on Windows, macOS and Linux alike.
    """
    tidy = unicodedata.normalize("NFC", " ".join(str(name).split()))
    if not tidy:
        raise ValueError("a name is needed")
    if len(tidy) > MAX_NAME:
        raise ValueError(f"a name is at most {MAX_NAME} characters")
    bad = sorted({c for c in tidy if c in _FORBIDDEN or unicodedata.category(c)[0] == "C"})
    if bad:
        raise ValueError(f"a name cannot contain {' '.join(repr(c) for c in bad)}")
    if tidy.strip(".") == "" or tidy.endswith("."):
        raise ValueError("a name cannot end with a dot")
    return tidy


class Verdicts:
    """All decisions of one face index (for the analyses in use), looked up per face.

    ``names`` maps a name's key (``name_key``) to how it is shown (a reference folder's spelling
    wins), so "anna" decided on the page and the folder "Anna" are one person.
    """

    def __init__(self, decisions: Iterable[Decision] = (),
                 names: Iterable[str] = ()) -> None:
        self.names: dict[str, str] = {}
        for name in names:
            self.names.setdefault(name_key(name), name)
        self.yes: dict[tuple[bytes, int], str] = {}
        self.no: dict[tuple[bytes, int], set[str]] = defaultdict(set)
        self._confirmed: dict[str, list[Decision]] = defaultdict(list)
        for decision in decisions:  # oldest first: a later verdict wins
            self.add(decision)

    def add(self, decision: Decision) -> None:
        """Take one more verdict into account (the review page, as the user answers)."""
        face = (decision.key, decision.n)
        name = self.names.setdefault(name_key(decision.person), decision.person)
        folded = name_key(name)
        if decision.verdict == "yes":
            old = self.yes.get(face)
            if old is not None:
                self._confirmed[name_key(old)] = [
                    d for d in self._confirmed[name_key(old)] if (d.key, d.n) != face]
            self.yes[face] = name
            self.no[face].discard(folded)
            if decision.embedding is not None:
                self._confirmed[folded].append(decision)
        else:
            self.no[face].add(folded)
            if name_key(self.yes.get(face, "")) == folded:
                del self.yes[face]
                self._confirmed[folded] = [d for d in self._confirmed[folded]
                                           if (d.key, d.n) != face]

    def remove(self, key: bytes, n: int, person: str) -> None:
        """Forget the verdict on one face for ``person`` (undo)."""
        face, folded = (key, n), name_key(person)
        self.no.get(face, set()).discard(folded)
        if name_key(self.yes.get(face, "")) == folded:
            del self.yes[face]
            self._confirmed[folded] = [d for d in self._confirmed[folded]
                                       if (d.key, d.n) != face]

    def people(self) -> list[str]:
        """Everyone with at least one confirmed face, as shown."""
        return sorted((self.names[p] for p, faces in self._confirmed.items() if faces),
                      key=str.casefold)

    def confirmed(self, person: str) -> list[Decision]:
        """The faces the user confirmed for ``person`` (with their embeddings)."""
        return list(self._confirmed.get(name_key(person), ()))

    def confirmed_vectors(self, person: str) -> list[np.ndarray]:
        return [d.embedding for d in self.confirmed(person) if d.embedding is not None]

    def verdict(self, key: bytes | None, n: int) -> tuple[str | None, set[str]]:
        """(the person this face was confirmed as or None, name keys of those it is not)."""
        if key is None:
            return None, set()
        face = (key, n)
        return self.yes.get(face), self.no.get(face, set())

    def __len__(self) -> int:
        return len(self.yes) + sum(len(v) for v in self.no.values())
