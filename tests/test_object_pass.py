"""The object pass on its own terms: a detector failure costs only the objects, and both
passes (beside the faces, and objects alone) give the detector the same pixels.

Real models and real photos (the insightface wheel's group photo, scikit-image's cat).
The one thing made up is a failure: the real detector's ``detect`` is wrapped to raise
for the group photo's pixels only, as a detector crashing on one file would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from facefinder.analyse import AnalysisJob, AnalysisSettings, ModelCache, analyse_files
from facefinder.api import open_index
from facefinder.cached import Analyser
from facefinder.decode import load_image
from facefinder.executors import InlineExecutor
from facefinder.models.fetch import ensure_object_model
from facefinder.object_analysis import ObjectJob, object_key, objects_only
from facefinder.records import FileKind, FileResult
from facefinder.vision.objects import OBJECT_MODEL, ObjectDetection, ObjectDetector
from facefinder.vision.registry import MODELS

# Below the group photo's 1280 px, so the coarse decode (1280 px) and an exact one
# (800 px) would give the detector different pixels.
SETTINGS = AnalysisSettings(decode_side=800, detect_side=800)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """group.jpg (six faces, people) and cat.png (a cat, no face)."""
    from testdata import group_photo, skimage_photo

    root = tmp_path_factory.mktemp("object-pass")
    shutil.copy(group_photo(), root / "group.jpg")
    shutil.copy(skimage_photo("chelsea"), root / "cat.png")
    return root


@pytest.fixture(scope="module")
def job(models_dir: Path) -> AnalysisJob:
    ensure_object_model(models_dir, allow_fetch=True, say=lambda _text: None)
    return AnalysisJob(MODELS["facenet"], models_dir, SETTINGS,
                       objects=ObjectJob(OBJECT_MODEL, models_dir))


def _items(photos: Path) -> list[tuple[Path, str, FileKind]]:
    return [(photos / "group.jpg", "group.jpg", "image"), (photos / "cat.png", "cat.png", "image")]


def _break_detector(photos: Path, monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    """The real detector from now on raises ``message`` for the group photo's pixels (as
    decoded for the faces), and only for those."""
    shape = load_image(photos / "group.jpg", SETTINGS.decode_side, coarse=True).rgb.shape
    real = ObjectDetector.detect

    def detect(self: ObjectDetector, rgb: np.ndarray) -> list[ObjectDetection]:
        if rgb.shape == shape:
            raise RuntimeError(message)
        return real(self, rgb)

    monkeypatch.setattr(ObjectDetector, "detect", detect)


def test_a_detector_failure_keeps_the_faces_and_says_why_in_one_line(
    photos: Path, job: AnalysisJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    _break_detector(photos, monkeypatch, "onnxruntime: simulated kernel failure\non two lines")
    group, cat = analyse_files(_items(photos), job, ModelCache())
    assert group.error is None
    assert len(group.faces) >= 3
    assert all(f.embedding is not None for f in group.faces if f.skipped is None)
    assert group.objects is None  # not looked at: not "no objects"
    assert group.objects_error is not None and "\n" not in group.objects_error
    assert group.objects_error.startswith("objects not read:")
    assert "simulated kernel failure" in group.objects_error
    assert cat.objects_error is None
    assert "cat" in {o.label for o in cat.objects or ()}


def test_objects_that_failed_are_not_stored_and_are_read_next_run(
    photos: Path, job: AnalysisJob, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = ModelCache()
    inline = InlineExecutor(models)

    def run() -> tuple[Analyser, dict[str, FileResult]]:
        with open_index(tmp_path / "index.sqlite") as index:
            analyser = Analyser(index, job, inline, inline)
            found = {r.rel: r for r in analyser.results(photos, _items(photos))}
        return analyser, found

    real = ObjectDetector.detect
    _break_detector(photos, monkeypatch, "simulated failure")
    first, found = run()  # faces and objects together; the group photo's objects fail
    assert first.decoded == 2
    assert found["group.jpg"].faces and found["group.jpg"].objects_error

    second, found = run()  # faces from the index; the objects-only pass fails again
    assert second.decoded == 0 and second.objects_read == 1
    assert found["group.jpg"].faces and found["group.jpg"].objects is None
    assert found["group.jpg"].objects_error == "objects not read: simulated failure"
    assert "cat" in {o.label for o in found["cat.png"].objects or ()}

    monkeypatch.setattr(ObjectDetector, "detect", real)
    third, found = run()  # the detector works again: only the group photo's objects
    assert third.decoded == 0 and third.objects_read == 1
    assert found["group.jpg"].objects_error is None
    assert "person" in {o.label for o in found["group.jpg"].objects or ()}

    fourth, found = run()  # now everything is known
    assert fourth.decoded == 0 and fourth.objects_read == 0
    assert "person" in {o.label for o in found["group.jpg"].objects or ()}


def test_both_passes_give_the_detector_the_same_pixels(photos: Path, job: AnalysisJob) -> None:
    items = _items(photos)[:1]
    beside_faces = analyse_files(items, job, ModelCache())[0].objects
    alone = objects_only(items, job)[0].objects
    assert beside_faces and alone == beside_faces


def test_the_object_key_names_how_photos_are_decoded(job: AnalysisJob) -> None:
    assert job.objects is not None
    photo, video = (object_key(job.objects, SETTINGS, kind) for kind in ("image", "video"))
    assert '"decode":"coarse"' in photo
    assert '"decode"' not in video and '"video_fps":1.0' in video
