"""Read ``reference/<Person Name>/*`` into one embedding per usable reference photo.

A reference photo may be a tight crop or a whole photo. With several faces we take the
largest (the person the photo is about, almost always) and say so; with none we say so.
A person left with no usable photo is an error that names the folder, because searching
without them would silently find nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facefinder.records import FileResult
from facefinder.walk import scan


class ReferenceError(ValueError):
    """The reference folder cannot be used as it is (message says what to fix)."""


@dataclass
class Person:
    """One subfolder of the reference folder."""

    name: str
    folder: Path
    photos: list[tuple[Path, str]] = field(default_factory=list)  # (path, rel to reference/)


def find_people(reference: Path, only: Sequence[str] = ()) -> list[Person]:
    """People (subfolders) of ``reference`` with their image files, filtered by ``only``."""
    if not reference.is_dir():
        raise ReferenceError(
            f"reference folder not found: {reference} "
            "(make one subfolder per person, e.g. reference/Grandma/photo1.jpg)"
        )
    people: dict[str, Person] = {}
    for path, rel, kind in scan(reference):
        if "/" not in rel or kind != "image":
            continue
        name = rel.split("/", 1)[0]
        person = people.setdefault(name, Person(name, reference / name))
        person.photos.append((path, rel))
    for entry in sorted(reference.iterdir()):
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in people:
            people[entry.name] = Person(entry.name, entry)
    if not people:
        raise ReferenceError(
            f"no people in {reference}: make one subfolder per person holding their photos"
        )
    if only:
        wanted = {name.casefold(): name for name in only}
        chosen = [p for p in people.values() if p.name.casefold() in wanted]
        missing = set(wanted) - {p.name.casefold() for p in chosen}
        if missing:
            names = ", ".join(wanted[m] for m in sorted(missing))
            raise ReferenceError(
                f"--person {names}: no such folder in {reference} "
                f"(people there: {', '.join(sorted(people))})"
            )
        return sorted(chosen, key=lambda p: p.name.casefold())
    return sorted(people.values(), key=lambda p: p.name.casefold())


def choose_embeddings(
    people: Sequence[Person],
    results: dict[str, FileResult],
    say: Callable[[str], None],
) -> dict[str, list[np.ndarray]]:
    """One embedding per usable reference photo, per person; notes what was left out.

    ``results`` maps each photo's path relative to the reference folder to its analysis.
    """
    chosen: dict[str, list[np.ndarray]] = {}
    for person in people:
        vectors: list[np.ndarray] = []
        for _, rel in person.photos:
            result = results[rel]
            if result.error:
                say(f"reference {rel}: cannot read it ({result.error}); skipped")
                continue
            usable = [f for f in result.faces if f.embedding is not None]
            if not usable:
                why = "no face found" if not result.faces else "face too small or blurry"
                say(f"reference {rel}: {why}; skipped")
                continue
            largest = max(usable, key=lambda f: f.box[2] * f.box[3])
            if len(result.faces) > 1:
                say(f"reference {rel}: {len(result.faces)} faces, using the largest")
            vectors.append(largest.embedding)
        if not vectors:
            tried = len(person.photos)
            raise ReferenceError(
                f"no usable reference face for {person.name!r} in {person.folder} "
                f"({tried} image file{'s' if tried != 1 else ''} tried): add a photo where "
                "their face is clear and at least 40 pixels wide"
            )
        chosen[person.name] = vectors
    return chosen


