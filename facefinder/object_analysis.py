"""Objects in photos and sampled video frames (``--objects``): the per-file object pass.

Runs where the face analysis runs (in executors), from a small hook in
``analyse.analyse_files``: when faces are analysed in the same pass, the detector sees
the pixels already decoded for them (no second decode); when the face index already
knows a file's faces, only this pass runs on it (``objects_only``), so asking for objects
over a warm index never detects a face again. Like faces, objects are reported in the
coordinates of the upright (EXIF-rotated) original.

Objects have an index key of their own (:func:`object_key`: the detector's spec, its
weights' fingerprint, the decode size, the video sampling rate), kept apart from the
faces' key, so changing the face model keeps the objects and vice versa.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from facefinder.messages import one_line
from facefinder.models.catalog import weights_fingerprint
from facefinder.records import FileKind, FileResult, ObjectBox

if TYPE_CHECKING:
    from facefinder.vision.objects import ObjectDetector, ObjectSpec


class AnalysisSettings(Protocol):
    """What the object pass needs of ``analyse.AnalysisSettings`` (a protocol, so this
    module does not import the face analysis that calls it)."""

    decode_side: int
    video_fps: float


class AnalysisJob(Protocol):
    """What the object pass needs of ``analyse.AnalysisJob``."""

    objects: ObjectJob | None
    threads: int
    settings: AnalysisSettings


@dataclass(frozen=True)
class ObjectJob:
    """The object detector to run beside (or instead of) the face analysis."""

    spec: ObjectSpec
    models_dir: Path


def object_key(job: ObjectJob, settings: AnalysisSettings, kind: FileKind) -> str:
    """What the objects of a ``kind`` file depend on, as canonical JSON (the index key).

    Every field of the detector's spec, its weights' fingerprint and the size photos are
    decoded at (the detector is given those pixels); the sampling rate only for videos.
    """
    key: dict[str, object] = {
        "objects": dataclasses.asdict(job.spec),
        "weights": weights_fingerprint(job.models_dir, (job.spec.file,)),
        "decode_side": settings.decode_side,
    }
    if kind == "video":
        key["video_fps"] = settings.video_fps
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


class _Detectors:
    """Loaded object detectors, keyed by (spec, models folder, threads), a few at most.

    One per process, like ``analyse.WORKER_MODELS``: a worker loads the detector once,
    and a second Finder with another detector gets its own entry.
    """

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._loaded: OrderedDict[tuple[ObjectSpec, Path, int], ObjectDetector] = OrderedDict()

    def get(self, job: ObjectJob, threads: int) -> ObjectDetector:
        from facefinder.vision.objects import load_object_detector

        key = (job.spec, Path(job.models_dir), threads)
        if key in self._loaded:
            self._loaded.move_to_end(key)
        else:
            self._loaded[key] = load_object_detector(job.spec, Path(job.models_dir), threads)
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
        return self._loaded[key]


DETECTORS = _Detectors()


def detect_objects(job: AnalysisJob, rgb: np.ndarray, scale: float,
                   when: float | None) -> list[ObjectBox]:
    """Objects in decoded pixels (``scale`` = decoded / original size), best first, as
    whole-pixel boxes of the upright original."""
    assert job.objects is not None
    detector = DETECTORS.get(job.objects, job.threads)
    back = 1.0 / scale
    found: list[ObjectBox] = []
    for det in detector.detect(rgb):
        x1, y1, x2, y2 = (float(v) * back for v in det.box)
        box = (round(x1), round(y1), max(1, round(x2 - x1)), max(1, round(y2 - y1)))
        found.append(ObjectBox(det.label, round(float(det.score), 4), box, when))
    return found


def objects_only(items: list[tuple[Path, str, FileKind]], job: AnalysisJob
                 ) -> list[FileResult]:
    """The objects of files whose faces are already known: decode, detect objects only.

    The results carry only what the object pass learned (``objects``, or ``error``);
    the caller joins them to the faces it has from the index.
    """
    results: list[FileResult] = []
    for path, rel, kind in items:
        if kind == "other":
            results.append(FileResult(rel=rel, kind=kind))
            continue
        try:
            results.append(_objects_of(path, rel, kind, job))
        except Exception as exc:  # one strange file must never end the run
            results.append(FileResult(rel=rel, kind=kind,
                                      error=f"unexpected error: {one_line(exc, 160)}"))
    return results


def _objects_of(path: Path, rel: str, kind: FileKind, job: AnalysisJob) -> FileResult:
    from facefinder.decode import DecodeError, load_image

    settings = job.settings
    if kind == "image":
        try:
            image = load_image(path, settings.decode_side)
        except DecodeError as exc:
            return FileResult(rel=rel, kind=kind, error=str(exc))
        return FileResult(rel=rel, kind=kind, size=image.orig_size,
                          objects=detect_objects(job, image.rgb, image.scale, None))
    from facefinder.video import VideoError, sample_frames

    objects: list[ObjectBox] = []
    try:
        info, frames = sample_frames(path, settings.video_fps, settings.decode_side)
        for frame in frames:
            objects.extend(detect_objects(job, frame.rgb, frame.scale, frame.time))
    except VideoError as exc:
        return FileResult(rel=rel, kind=kind, error=str(exc))
    return FileResult(rel=rel, kind=kind, size=info.size, objects=objects)
