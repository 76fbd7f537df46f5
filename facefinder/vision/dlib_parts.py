"""dlib's 5-point aligner and ResNet-34 (the ``face_recognition`` model) as two parts.

dlib aligns each face with its own 5-landmark predictor (the alignment its network was
trained with) inside the CenterFace box. Needs the optional ``dlib-bin`` wheel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from facefinder.vision.centerface import Detection
from facefinder.vision.facenet import l2_normalise


def _dlib():
    try:
        import dlib
    except ImportError as exc:
        raise RuntimeError(
            "--model dlib needs the dlib-bin package: "
            "python -m pip install -r requirements-dlib.txt"
        ) from exc
    return dlib


class DlibChip:
    """dlib's own face chip: 5 landmarks inside the detector's box, then an aligned crop."""

    def __init__(self, landmarks_file: Path, size: int, padding: float) -> None:
        self._dlib = _dlib()
        self.shapes = self._dlib.shape_predictor(str(landmarks_file))
        self.size, self.padding = size, padding

    def crop(self, image: Image.Image, det: Detection) -> np.ndarray:
        rgb = np.asarray(image)
        x1, y1, x2, y2 = (round(float(v)) for v in det.box)
        shape = self.shapes(rgb, self._dlib.rectangle(x1, y1, x2, y2))
        return np.asarray(self._dlib.get_face_chip(rgb, shape, size=self.size,
                                                   padding=self.padding))


class DlibResNet:
    """dlib's ResNet-34 face descriptor, L2-normalised so distances are cosine."""

    def __init__(self, resnet_file: Path) -> None:
        self.net = _dlib().face_recognition_model_v1(str(resnet_file))

    def embed(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, 128), dtype=np.float32)
        vectors = self.net.compute_face_descriptor(list(crops))
        return l2_normalise(np.asarray([np.asarray(v) for v in vectors], dtype=np.float32))
