"""Read ``reference/<Person Name>/*`` into one reference face per usable photo.

A reference photo may be a tight crop or a whole photo. With several faces, the face that
agrees with the person's other (single-face) reference photos is taken; with no such
photo to compare with, the largest is taken and the note says which (box), so the user
can check it. The same face given for two people is an error naming both folders: one
of them would otherwise silently be searched with the other's face. A person left with
no usable photo is an error that names the folder, because searching without them would
silently find nothing. Files lying directly in reference/ are reported, not ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facefinder.records import Face, FileResult
from facefinder.walk import scan

SAME_FACE = 0.02  # cosine distance under which two reference faces are the same face


class ReferenceError(ValueError):
    """The reference folder cannot be used as it is (message says what to fix)."""


@dataclass
class Person:
    """One subfolder of the reference folder."""

    name: str
    folder: Path
    photos: list[tuple[Path, str]] = field(default_factory=list)  # (path, rel to reference/)


@dataclass(frozen=True)
class ReferenceNote:
    """Something the user should know about one reference photo (or stray file)."""

    rel: str  # path relative to the reference folder
    text: str  # one line, without the path
    box: tuple[int, int, int, int] | None = None  # the face taken, when worth checking


@dataclass(frozen=True)
class ReferenceFace:
    """A face searched for: whose, from which photo, where in it."""

    person: str
    rel: str
    box: tuple[int, int, int, int]
    embedding: np.ndarray


def find_people(reference: Path, *, allow_empty: bool = False
                ) -> tuple[list[Person], list[ReferenceNote]]:
    """People (subfolders) of ``reference`` with their image files, and notes on files
    that are not in a person's folder or are not photos.

    ``allow_empty``: the face index knows people by name already (named on the review
    page), so a missing or empty reference folder is no error.
    """
    if not reference.is_dir():
        if allow_empty:
            return [], []
        raise ReferenceError(
            f"reference folder not found: {reference} "
            "(make one subfolder per person, e.g. reference/Grandma/photo1.jpg)"
        )
    people: dict[str, Person] = {}
    notes: list[ReferenceNote] = []
    for path, rel, kind in scan(reference, follow_links=True):  # links: the user's choice
        if "/" not in rel:
            notes.append(ReferenceNote(rel, "not in a person's folder, so not used (move it "
                                            "into reference/<Name>/)"))
            continue
        if kind != "image":
            notes.append(ReferenceNote(rel, "not a photo; ignored"))
            continue
        name = rel.split("/", 1)[0]
        person = people.setdefault(name, Person(name, reference / name))
        person.photos.append((path, rel))
    for entry in sorted(reference.iterdir()):
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in people:
            people[entry.name] = Person(entry.name, entry)
    if not people and not allow_empty:
        raise ReferenceError(
            f"no people in {reference}: make one subfolder per person holding their photos"
        )
    return sorted(people.values(), key=lambda p: p.name.casefold()), notes


def _box_text(box: tuple[int, int, int, int]) -> str:
    x, y, w, h = box
    return f"at x={x}, y={y}, {w}x{h} px"


def choose_faces(people: Sequence[Person], results: dict[str, FileResult], *,
                 agree_below: float) -> tuple[dict[str, list[ReferenceFace]],
                                              list[ReferenceNote]]:
    """One reference face per usable photo, per person, and notes on what was decided.

    ``results`` maps each photo's path relative to the reference folder to its analysis.
    In a several-face photo, a face "agrees" with the person's single-face photos when
    its mean distance to them is under ``agree_below`` (the search threshold).
    """
    chosen: dict[str, list[ReferenceFace]] = {}
    notes: list[ReferenceNote] = []
    for person in people:
        faces: list[ReferenceFace] = []
        crowded: list[tuple[str, list[Face]]] = []
        for _, rel in person.photos:
            result = results[rel]
            if result.error:
                notes.append(ReferenceNote(rel, f"cannot read it ({result.error}); skipped"))
                continue
            usable = [f for f in result.faces if f.embedding is not None]
            if not usable:
                why = "no face found" if not result.faces else "face too small or blurry"
                notes.append(ReferenceNote(rel, f"{why}; skipped"))
            elif len(usable) == 1:
                faces.append(ReferenceFace(person.name, rel, usable[0].box, usable[0].embedding))
            else:
                crowded.append((rel, usable))
        anchors = np.stack([f.embedding for f in faces]) if faces else None
        for rel, usable in crowded:
            face, note = _pick(person.name, rel, usable, anchors, agree_below)
            faces.append(face)
            notes.append(note)
        if not faces:
            tried = len(person.photos)
            why = "; ".join(f"{n.rel}: {n.text}" for n in notes
                            if n.rel.split("/", 1)[0] == person.name)
            raise ReferenceError(
                f"no usable reference face for {person.name!r} in {person.folder} "
                f"({tried} image file{'s' if tried != 1 else ''} tried"
                + (f" - {why}" if why else "") + "): add a photo where "
                "their face is clear and at least 40 pixels wide"
            )
        chosen[person.name] = faces
        notes += _odd_ones_out(person.name, faces)
        notes += _coverage(person.name, faces, results)
    _refuse_shared_faces(people, chosen)
    return chosen, notes


UNLIKE = 0.6  # median distance to a person's other references that no photo of them reaches
#               in the calibration albums (their references: 0.09-0.38; strangers ~0.9)
MIN_FOR_COVERAGE = 2


def _odd_ones_out(name: str, faces: list[ReferenceFace]) -> list[ReferenceNote]:
    """Reference photos whose face is unlike all the person's others: a wrong photo in the
    folder would make the finder search for someone else too."""
    if len(faces) < 3:
        return []
    vectors = np.stack([f.embedding for f in faces])
    distance = 1.0 - vectors @ vectors.T
    notes = []
    for i, face in enumerate(faces):
        median = float(np.median(np.delete(distance[i], i)))
        if median > UNLIKE:
            notes.append(ReferenceNote(face.rel, (
                f"this face is unlike {name}'s other reference photos (distance "
                f"{median:.2f}): check it is {name}; if it is (a photo from long ago, say), "
                "keep it"), box=face.box))
    return notes


def yaw_of(landmarks: np.ndarray) -> float:
    """How far a face is turned: the nose's offset from between the eyes, in eye widths
    (0 facing the camera, about 0.3 half-turned, 0.5 and more in profile)."""
    left, right, nose = landmarks[0], landmarks[1], landmarks[2]
    eyes = float(np.linalg.norm(right - left)) or 1.0
    return abs(float(nose[0] - (left[0] + right[0]) / 2)) / eyes


def _coverage(name: str, faces: list[ReferenceFace], results: dict[str, FileResult]
              ) -> list[ReferenceNote]:
    """What the reference photos cover (years, angles), so the user knows what to add."""
    if len(faces) < MIN_FOR_COVERAGE:
        return []
    years = sorted({r.taken[:4] for f in faces
                    if (r := results.get(f.rel)) is not None and r.taken
                    and r.taken_from == "exif"})
    turned = 0
    for face in faces:
        result = results.get(face.rel)
        found = [g for g in (result.faces if result else []) if g.box == face.box]
        if found and yaw_of(np.asarray(found[0].landmarks)) > 0.2:
            turned += 1
    when = (f"taken {years[0]}" if len(years) == 1 else
            f"taken {years[0]}-{years[-1]}" if years else "no camera dates")
    angles = ("all facing the camera" if not turned else
              f"{turned} of them turned to the side")
    advice = []
    if len(years) < 2:
        advice.append("photos from other years")
    if not turned:
        advice.append("a half-turned face")
    text = f"{len(faces)} reference faces, {when}, {angles}"
    if advice:
        text += f"; to find more of {name}'s photos, add " + " and ".join(advice)
    return [ReferenceNote(name, text)]


def _pick(name: str, rel: str, usable: list[Face], anchors: np.ndarray | None,
          agree_below: float) -> tuple[ReferenceFace, ReferenceNote]:
    """The face of a several-face reference photo that is ``name``, and a note saying how."""
    if anchors is not None:
        vectors = np.stack([f.embedding for f in usable])
        spread = (1.0 - vectors @ anchors.T).mean(axis=1)
        best = int(spread.argmin())
        if spread[best] < agree_below:
            face = usable[best]
            text = (f"{len(usable)} faces; used the one most like {name}'s other reference "
                    f"photos ({_box_text(face.box)})")
            return ReferenceFace(name, rel, face.box, face.embedding), ReferenceNote(rel, text)
        why = f"none of its {len(usable)} faces is like {name}'s other reference photos"
    else:
        why = f"{len(usable)} faces and no single-face photo of {name} to tell which is them"
    face = max(usable, key=lambda f: f.box[2] * f.box[3])
    text = f"{why}; took the largest ({_box_text(face.box)}) - check it, or add a portrait"
    return (ReferenceFace(name, rel, face.box, face.embedding),
            ReferenceNote(rel, text, box=face.box))


def _refuse_shared_faces(people: Sequence[Person], chosen: dict[str, list[ReferenceFace]]
                         ) -> None:
    """ReferenceError when one face is a reference for two people."""
    folders = {p.name: p.folder for p in people}
    names = list(chosen)
    for i, first in enumerate(names):
        a = np.stack([f.embedding for f in chosen[first]])
        for second in names[i + 1:]:
            b = np.stack([f.embedding for f in chosen[second]])
            distance = 1.0 - a @ b.T
            at = np.unravel_index(int(distance.argmin()), distance.shape)
            if distance[at] < SAME_FACE:
                one, two = chosen[first][at[0]], chosen[second][at[1]]
                raise ReferenceError(
                    f"the same face is a reference for two people: {one.rel} in "
                    f"{folders[first]} and {two.rel} in {folders[second]}; remove it from "
                    "the folder of the one it is not (or crop the photo to their face)"
                )
