"""The decision rule (``facefinder.decide``) on vectors placed at known distances.

Per-person cutoffs follow how crowded a person's neighbourhood is; expansion reaches a
person's faces through their other faces, never through a face the user rejected, and
adds a person at most once per photo. The figures on real albums are the benchmarks'
(``benchmarks/album.py``, ``benchmarks/pairs.py``); these tests pin the behaviour.
"""

from __future__ import annotations

import numpy as np

from facefinder.decide import RULES, RuleSpec, confidence, decide, expand, person_thresholds
from facefinder.decisions import Verdicts
from facefinder.match import Gallery
from facefinder.records import Decision, Face, FileResult

RULE = RULES["facenet"]
DIM = 128


def _basis(seed: int, count: int) -> np.ndarray:
    """``count`` orthonormal unit vectors."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(DIM, count)))
    return q.T.astype(np.float32)


def _at(anchor: np.ndarray, away: np.ndarray, distance: float) -> np.ndarray:
    """A unit vector at cosine ``distance`` from ``anchor`` (``away`` orthogonal to it)."""
    cos = 1.0 - distance
    return (cos * anchor + np.sqrt(1 - cos**2) * away).astype(np.float32)


def _photo(i: int, *vectors: np.ndarray) -> FileResult:
    faces = [Face((10 * n, 0, 50, 50), np.zeros((5, 2), np.float32), 0.9, v)
             for n, v in enumerate(vectors)]
    return FileResult(f"p{i}.jpg", "image", (640, 480), faces, key=bytes([i]) * 16)


def test_a_crowded_person_gets_the_floor_and_a_lonely_one_the_cap() -> None:
    e = _basis(1, 80)
    gallery = Gallery.build({"Crowded": [e[0]], "Lonely": [e[1]]})
    # 60 faces in Crowded's impostor band (0.55-0.75 away), none near Lonely
    crowd = np.stack([_at(e[0], e[2 + i], 0.65) for i in range(60)])
    cuts = person_thresholds(RULE, gallery, crowd)
    assert cuts[0] == RULE.floor
    assert abs(cuts[1] - RULE.cap) < 1e-6
    # a few look-alikes: in between
    few = person_thresholds(RULE, gallery, crowd[:3])
    assert RULE.floor < few[0] < RULE.cap


def test_expansion_reaches_an_older_photo_through_a_newer_one() -> None:
    e = _basis(2, 6)
    now = e[0]
    then = _at(now, e[1], 0.2)  # 1995: close to today's reference
    step = np.arccos(0.8)  # the angle of a 0.2 distance
    long_ago = (np.cos(2 * step) * now + np.sin(2 * step) * e[1]).astype(np.float32)  # 1985
    far = 1 - float(long_ago @ now)
    assert far > RULE.cap and 1 - float(long_ago @ then) < RULE.expand_below
    gallery = Gallery.build({"Grandma": [now]})
    vectors = np.stack([then, long_ago])
    grown, added = expand(RULE, gallery, vectors, np.array([0, 1]))
    assert added == {"Grandma": 2}
    assert grown.nearest(long_ago[None])[0, 0] < 1e-5


def test_expansion_never_takes_a_rejected_face_and_one_face_per_photo() -> None:
    e = _basis(3, 6)
    gallery = Gallery.build({"Anna": [e[0]]})
    twins = np.stack([_at(e[0], e[1], 0.1), _at(e[0], e[2], 0.12)])  # both in photo 0
    _, added = expand(RULE, gallery, twins, np.array([0, 0]))
    assert added == {"Anna": 1}  # one face per photo, over all rounds (a twin, a poster)
    _, added = expand(RULE, gallery, twins, np.array([0, 1]))
    assert added == {"Anna": 2}
    _, added = expand(RULE, gallery, twins, np.array([0, 1]), occupied={(0, 0)})
    assert added == {"Anna": 1}  # photo 0 already has a face confirmed as Anna
    _, added = expand(RULE, gallery, twins, np.array([0, 0]),
                      vetoed=lambda i, p: True)
    assert added == {}


def test_decide_honours_the_users_no_and_a_given_threshold() -> None:
    e = _basis(4, 8)
    gallery = Gallery.build({"Anna": [e[0]]})
    near = _photo(1, _at(e[0], e[1], 0.1))
    no = Verdicts([Decision(near.key, 0, "Anna", "no", (0, 0, 50, 50))])
    decided = decide([near], gallery, RULE, None, no)
    assert decided.expanded == {}
    decided = decide([near], gallery, RULE, None, None)
    assert decided.expanded == {"Anna": 1}
    fixed = decide([near], gallery, RULE, 0.25, None)
    assert fixed.thresholds == {"Anna": 0.25}
    plain = decide([near], gallery, None, 0.3, None)  # a model without a calibrated rule
    assert plain.thresholds == {"Anna": 0.3} and plain.expanded == {}


def test_confidence_grows_with_the_margin() -> None:
    rule = RuleSpec(0.32, 0.5, (0.55, 0.75), 0.55, 0.14, 0.28,
                    confidence=((0.0, 0.9), (0.05, 0.97), (0.1, 0.995)))
    assert confidence(rule, 0.0) == 0.9
    assert confidence(rule, 0.07) == 0.97
    assert confidence(rule, 0.3) == 0.995
    assert confidence(rule, -0.01) == 0.9
    assert confidence(None, 0.1) is None
    values = [confidence(RULE, m) for m in np.linspace(0, 0.5, 11)]
    assert all(v is None for v in values) or values == sorted(values)


def test_a_face_that_joined_by_expansion_is_not_judged_by_itself() -> None:
    """Its reported distance (and so its confidence) is to its person's other faces."""
    from facefinder.match import match_file

    e = _basis(5, 6)
    gallery = Gallery.build({"Anna": [e[0]]})
    photo = _photo(1, _at(e[0], e[1], 0.2))
    decided = decide([photo], gallery, RULE, None, None)
    assert decided.expanded == {"Anna": 1}
    matches, _ = match_file(photo, decided.gallery, 0.32)
    assert abs(matches[0].distance - 0.2) < 1e-4  # not 0: its own row is left out


def test_faces_added_to_a_gallery_are_laid_out_as_build_lays_them_out() -> None:
    """``Gallery.with_added`` (how expansion grows the gallery, in array operations)
    gives what ``Gallery.build`` gives for the same people: each person's references,
    then their added faces in the order given, people without any left out as ``build``
    leaves them."""
    rng = np.random.default_rng(5)
    refs = {"Ann": list(rng.normal(size=(2, 4)).astype(np.float32)),
            "Bob": list(rng.normal(size=(3, 4)).astype(np.float32)),
            "Cy": list(rng.normal(size=(1, 4)).astype(np.float32))}
    gallery = Gallery.build(refs)
    added = rng.normal(size=(5, 4)).astype(np.float32)
    owner = np.array([2, 0, 2, 0, 2])  # Cy, Ann, Cy, Ann, Cy
    grown = gallery.with_added(added, owner)
    expected = Gallery.build({"Ann": [*refs["Ann"], added[1], added[3]],
                              "Bob": refs["Bob"],
                              "Cy": [*refs["Cy"], added[0], added[2], added[4]]})
    assert grown.people == expected.people
    assert np.array_equal(grown.owner, expected.owner)
    assert np.array_equal(grown.vectors, expected.vectors)
    source = np.concatenate([rng.normal(size=(3, 4)), added[::-1]]).astype(np.float32)
    taken = gallery.with_added(source, owner, np.arange(7, 2, -1))  # rows of a bigger array
    assert np.array_equal(taken.vectors, expected.vectors)
    assert np.array_equal(taken.owner, expected.owner)
    as_doubles = gallery.with_added(added.astype(np.float64), owner)
    assert np.array_equal(as_doubles.vectors, expected.vectors)
    assert as_doubles.vectors.dtype == np.float32
    nothing = gallery.with_added(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    assert np.array_equal(nothing.vectors, gallery.vectors)
    assert np.array_equal(nothing.owner, gallery.owner)
