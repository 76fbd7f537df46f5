"""Who is in a video: per-frame matches, kept only when a person is seen long enough.

A crowd video sampled at one frame a second offers hundreds of face observations; at the
finder's threshold a stranger occasionally lands within it, for one frame. A person who
is really in the clip stays on screen, so a video names a person only when they are
matched in two sampled frames at most MAX_GAP_SAMPLES sampling steps apart (with the
default 1 frame/s: seen at least twice within 2.5 s). A clip so short that only one frame
was sampled needs that one frame. The report then gives the first and last time the
person is seen and in how many sampled frames.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np

from facefinder.decisions import Verdicts
from facefinder.match import FaceTable, Gallery, cutoffs
from facefinder.records import FileResult, Match, face_id

MIN_FRAMES = 2
MAX_GAP_SAMPLES = 2.5  # sampling steps between two sightings that confirm each other


def confirmed(times: list[float], sampled: int, fps: float) -> bool:
    """Whether frame times of one person's sightings are enough to name them."""
    if sampled <= 1:
        return len(times) >= 1
    if len(times) < MIN_FRAMES:
        return False
    gap = MAX_GAP_SAMPLES / fps
    ordered = sorted(times)
    return any(b - a <= gap for a, b in itertools.pairwise(ordered))


def match_video(result: FileResult, gallery: Gallery, threshold: float | np.ndarray,
                fps: float, verdicts: Verdicts | None = None) -> list[Match]:
    """The people seen in one analysed video, each with their closest face and time span.

    A sampled face the user confirmed counts as a sighting whatever its distance, and one
    they rejected for a person never does.
    """
    table = FaceTable.of(result, gallery, verdicts)
    if not table.faces:
        return []
    cut = cutoffs(threshold, len(gallery.people))
    assert cut is not None
    best_person = table.distance.argmin(axis=1)
    seen: dict[int, set[float]] = defaultdict(set)
    best: dict[int, tuple[float, int]] = {}
    sure: set[int] = set()
    for row, person in enumerate(best_person):
        if table.confirmed[row] >= 0:
            person, distance = int(table.confirmed[row]), 0.0
            sure.add(person)
        else:
            distance = float(table.distance[row, person])
            if distance >= cut[person]:
                continue
        person = int(person)
        seen[person].add(float(table.faces[row][1].time or 0.0))
        if person not in best or distance < best[person][0]:
            best[person] = (distance, row)
    matches = []
    for person in sorted(best):
        times = sorted(seen[person])
        if person not in sure and not confirmed(times, result.frames, fps):
            continue
        distance, row = best[person]
        n, face = table.faces[row]
        matches.append(Match(result.rel, gallery.people[person], distance, face.box,
                             taken=result.taken,
                             taken_from=result.taken_from, first=times[0], last=times[-1],
                             frames=len(times),
                             face=None if result.key is None else face_id(result.key, n),
                             confirmed=person in sure and distance == 0.0,
                             threshold=float(cut[person])))
    return matches
