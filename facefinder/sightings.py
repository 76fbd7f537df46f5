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

from facefinder.match import Gallery
from facefinder.records import FileResult, Match

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


def match_video(result: FileResult, gallery: Gallery, threshold: float, fps: float
                ) -> list[Match]:
    """The people seen in one analysed video, each with their closest face and time span."""
    faces = [f for f in result.faces if f.embedding is not None]
    if not faces or not gallery.people:
        return []
    per_person = gallery.nearest(np.stack([f.embedding for f in faces]))
    best_person = per_person.argmin(axis=1)
    seen: dict[int, set[float]] = defaultdict(set)
    best: dict[int, tuple[float, int]] = {}
    for i, person in enumerate(best_person):
        distance = float(per_person[i, person])
        if distance >= threshold:
            continue
        person = int(person)
        seen[person].add(float(faces[i].time or 0.0))
        if person not in best or distance < best[person][0]:
            best[person] = (distance, i)
    matches = []
    for person in sorted(best):
        times = sorted(seen[person])
        if not confirmed(times, result.frames, fps):
            continue
        distance, i = best[person]
        matches.append(Match(result.rel, gallery.people[person], distance, faces[i].box,
                             taken=result.taken,
                             taken_from=result.taken_from, first=times[0], last=times[-1],
                             frames=len(times)))
    return matches
