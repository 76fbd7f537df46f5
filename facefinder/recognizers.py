"""The face models a user can pick with ``--model``: one class per model, same interface.

A recogniser = a detector (finds faces and landmarks) + a way to cut each face out
+ an embedding network. Both models share the CenterFace detector, which found every face
of the 5-celebrity set and is 2-4x faster than dlib's detectors; they differ in how they
crop and which network turns a crop into a vector.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from facefinder.align import face_crop
from facefinder.models import catalog
from facefinder.models.centerface import CenterFace, Detection


class Recognizer:
    """Detects faces and embeds them; subclasses pick the embedding network."""

    name: ClassVar[str]
    sources: ClassVar[tuple[str, ...]]
    default_threshold: ClassVar[float]  # cosine distance; calibrated on the devset
    description: ClassVar[str]

    def __init__(self, models: Path, threads: int = 1) -> None:
        files = catalog.ensure_models(models, list(self.sources), allow_fetch=False)
        self.detector = CenterFace(files[catalog.CENTERFACE_FILE], threads)
        self._load(files, threads)

    def _load(self, files: dict[str, Path], threads: int) -> None:
        raise NotImplementedError

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB image, in that image's pixel coordinates."""
        return self.detector.detect(rgb)

    def crop(self, image: Image.Image, det: Detection) -> np.ndarray:
        """The model's input crop for one detection in ``image``."""
        raise NotImplementedError

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Crops (N, S, S, 3) uint8 -> L2-normalised embeddings (N, D) float32."""
        raise NotImplementedError


class FacenetRecognizer(Recognizer):
    """CenterFace + the 128-d Keras FaceNet (deepface's "Facenet"), via onnxruntime."""

    name = "Facenet"
    sources = ("centerface", "facenet")
    default_threshold = 0.32
    description = "CenterFace detector + 128-d Keras FaceNet (default; fast and accurate)"
    # Measured with benchmarks/album.py --sweep: the detector's box widened by 10% beat 5%,
    # 15% and 20% and square boxes on the devset; turning the crop so the eyes are level
    # tied on the devset (whose LFW photos are pre-aligned) and found 3-5% more of the
    # unaligned 5-celebrity photos at the same precision, so it is on. The threshold is one
    # sweep step (0.02) below where devset precision first drops under 0.99.
    margin = 0.1
    rotate = True

    def _load(self, files: dict[str, Path], threads: int) -> None:
        from facefinder.models.facenet import FaceNet

        self.net = FaceNet(files[catalog.FACENET_FILE], threads)

    def crop(self, image: Image.Image, det: Detection) -> np.ndarray:
        return face_crop(
            image, tuple(det.box), det.landmarks, 160, margin=self.margin, rotate=self.rotate
        )

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return self.net.embed(crops)


class DlibRecognizer(Recognizer):
    """CenterFace + dlib's 5-point aligner and ResNet-34 (the ``face_recognition`` model).

    dlib aligns each face with its own 5-landmark predictor (the alignment its network was
    trained with) inside the CenterFace box. Needs the optional ``dlib-bin`` wheel.
    """

    name = "dlib"
    sources = ("centerface", "dlib")
    # Devset sweep: 0.052 gives precision 0.996 / recall 0.927; 0.060 already lets 10
    # strangers through. (face_recognition's euclidean 0.6 is cosine 0.18: precision 0.12.)
    default_threshold = 0.052
    description = "CenterFace + dlib ResNet-34 (face_recognition's model; needs dlib-bin)"

    def _load(self, files: dict[str, Path], threads: int) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise RuntimeError(
                "--model dlib needs the dlib-bin package: "
                "python -m pip install -r requirements-dlib.txt"
            ) from exc
        self._dlib = dlib
        self.shapes = dlib.shape_predictor(str(files[catalog.DLIB_LANDMARKS_FILE]))
        self.net = dlib.face_recognition_model_v1(str(files[catalog.DLIB_RESNET_FILE]))

    def crop(self, image: Image.Image, det: Detection) -> np.ndarray:
        rgb = np.asarray(image)
        x1, y1, x2, y2 = (round(float(v)) for v in det.box)
        shape = self.shapes(rgb, self._dlib.rectangle(x1, y1, x2, y2))
        return np.asarray(self._dlib.get_face_chip(rgb, shape, size=150, padding=0.25))

    def embed(self, crops: np.ndarray) -> np.ndarray:
        from facefinder.models.facenet import l2_normalise

        if len(crops) == 0:
            return np.zeros((0, 128), dtype=np.float32)
        vectors = self.net.compute_face_descriptor(list(crops))
        return l2_normalise(np.asarray([np.asarray(v) for v in vectors], dtype=np.float32))


RECOGNIZERS: dict[str, type[Recognizer]] = {
    cls.name.lower(): cls for cls in (FacenetRecognizer, DlibRecognizer)
}


def recognizer_class(name: str) -> type[Recognizer]:
    """The class for a ``--model`` name (case-insensitive)."""
    try:
        return RECOGNIZERS[name.lower()]
    except KeyError:
        known = ", ".join(cls.name for cls in RECOGNIZERS.values())
        raise ValueError(f"unknown model {name!r}; choose one of: {known}") from None
