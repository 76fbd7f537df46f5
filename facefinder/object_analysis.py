"""Objects in photos and sampled video frames (``--objects``): the per-file object pass.

Runs where the face analysis runs (in executors), from a small hook in
``analyse.analyse_files``: when faces are analysed in the same pass, the detector sees
the pixels already decoded for them (no second decode); when the face index already
knows a file's faces, only this pass runs on it (``objects_only``), so asking for objects
over a warm index never detects a face again. Like faces, objects are reported in the
coordinates of the upright (EXIF-rotated) original.

Both passes give the detector the same pixels: photos decoded coarsely (``load_image``'s
``coarse``, what the face analysis decodes), so one index key means one set of pixels.

Objects have an index key of their own (:func:`object_key`: the detector's spec, its
weights' fingerprint, the decode size and kind, the video sampling rate), kept apart from
the faces' key, so changing the face model keeps the objects and vice versa.

A detector that fails on a file costs only that file's objects: its faces are kept and
stored, ``FileResult.objects_error`` says in one line why the objects were not read, and
as no objects are stored for it, the next run's objects-only pass looks at it again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from facefinder.loaded import Loaded
from facefinder.messages import one_line
from facefinder.models.catalog import weights_fingerprint
from facefinder.records import FileKind, FileResult, ObjectBox
from facefinder.video import VIDEO_REVISION

if TYPE_CHECKING:
    from facefinder.vision.objects import ObjectDetector, ObjectSpec


# Photos reach the detector from the coarse decode in both passes (recorded in the key:
# object rows stored from exactly resampled pixels, before both passes agreed, are not
# mixed with these).
PHOTO_DECODE = "coarse"


class _SettingsLike(Protocol):
    """What the object pass needs of ``analyse.AnalysisSettings`` (a protocol, so this
    module does not import the face analysis that calls it)."""

    decode_side: int
    video_fps: float


class _JobLike(Protocol):
    """What the object pass needs of ``analyse.AnalysisJob``."""

    objects: ObjectJob | None
    threads: int
    settings: _SettingsLike


@dataclass(frozen=True)
class ObjectJob:
    """The object detector to run beside (or instead of) the face analysis."""

    spec: ObjectSpec
    models_dir: Path


def object_key(job: ObjectJob, settings: _SettingsLike, kind: FileKind) -> str:
    """What the objects of a ``kind`` file depend on, as canonical JSON (the index key).

    Every field of the detector's spec, its weights' fingerprint and the size photos are
    decoded at (the detector is given those pixels), and for photos how they are decoded;
    the sampling rate only for videos.
    """
    key: dict[str, object] = {
        "objects": dataclasses.asdict(job.spec),
        "weights": weights_fingerprint(job.models_dir, (job.spec.file,)),
        "decode_side": settings.decode_side,
    }
    if kind == "image":
        key["decode"] = PHOTO_DECODE
    if kind == "video":
        key["video_fps"] = settings.video_fps
        key["video_revision"] = VIDEO_REVISION  # (frames upright, as for faces)
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _load_detector(key: tuple[ObjectSpec, Path, int]) -> ObjectDetector:
    from facefinder.vision.objects import load_object_detector

    return load_object_detector(*key)


# One per process, like ``analyse.WORKER_MODELS``: a worker loads the detector once.
DETECTORS: Loaded[tuple[ObjectSpec, Path, int], ObjectDetector] = Loaded(_load_detector, 2)


def detect_objects(job: _JobLike, rgb: np.ndarray, scale: float,
                   when: float | None) -> list[ObjectBox]:
    """Objects in decoded pixels (``scale`` = decoded / original size), best first, as
    whole-pixel boxes of the upright original."""
    assert job.objects is not None
    detector = DETECTORS.get((job.objects.spec, Path(job.objects.models_dir), job.threads))
    back = 1.0 / scale
    found: list[ObjectBox] = []
    for det in detector.detect(rgb):
        x1, y1, x2, y2 = (float(v) * back for v in det.box)
        box = (round(x1), round(y1), max(1, round(x2 - x1)), max(1, round(y2 - y1)))
        found.append(ObjectBox(det.label, round(float(det.score), 4), box, when))
    return found


def add_objects(job: _JobLike, result: FileResult, rgb: np.ndarray, scale: float,
                when: float | None) -> None:
    """Add the objects in decoded pixels (a photo, or one frame of a video) to ``result``.

    The hook the face analysis calls. A detector that raises leaves the faces alone: the
    file's objects become unread (``objects`` None, ``objects_error`` one line), so the
    faces are stored without them and the next run looks for them again; later frames
    of a video are then not looked at for objects either.
    """
    if result.objects_error is not None:
        return
    try:
        found = detect_objects(job, rgb, scale, when)
    except Exception as exc:  # the detector's failure must not cost the file its faces
        result.objects, result.objects_error = None, _unread(exc)
        return
    if result.objects is None:
        result.objects = found
    else:  # the frames of a video, one after another
        result.objects.extend(found)


def _unread(exc: BaseException) -> str:
    """The one line that says why a file's objects were not read."""
    return f"objects not read: {one_line(exc, 160)}"


def objects_only(items: list[tuple[Path, str, FileKind]], job: _JobLike
                 ) -> list[FileResult]:
    """The objects of files whose faces are already known: decode, detect objects only.

    The results carry only what the object pass learned (``objects``, or why not in
    ``objects_error``); the caller joins them to the faces it has from the index.
    """
    results: list[FileResult] = []
    for path, rel, kind in items:
        if kind == "other":
            results.append(FileResult(rel=rel, kind=kind))
            continue
        try:
            results.append(_objects_of(path, rel, kind, job))
        except Exception as exc:  # one strange file must never end the run
            results.append(FileResult(rel=rel, kind=kind, objects_error=_unread(exc)))
    return results


def _objects_of(path: Path, rel: str, kind: FileKind, job: _JobLike) -> FileResult:
    """One file's objects alone, decoded as the face analysis decodes it."""
    from facefinder.decode import DecodeError, load_image

    settings = job.settings
    if kind == "image":
        try:
            image = load_image(path, settings.decode_side, coarse=True)  # PHOTO_DECODE
        except DecodeError as exc:
            return FileResult(rel=rel, kind=kind, objects_error=_unread(exc))
        return FileResult(rel=rel, kind=kind, size=image.orig_size,
                          objects=detect_objects(job, image.rgb, image.scale, None))
    from facefinder.video import VideoError, sample_frames

    objects: list[ObjectBox] = []
    try:
        info, frames = sample_frames(path, settings.video_fps, settings.decode_side)
        for frame in frames:
            objects.extend(detect_objects(job, frame.rgb, frame.scale, frame.time))
    except VideoError as exc:
        return FileResult(rel=rel, kind=kind, objects_error=_unread(exc))
    return FileResult(rel=rel, kind=kind, size=info.size, objects=objects)
