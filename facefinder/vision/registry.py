"""The face models a user can pick with ``--model``, each built from three separate parts.

A model = a detector (finds faces and 5 landmarks) + a crop (cuts each face out the way
the embedder was trained) + an embedder (turns a crop into a unit vector). Each part is
described by a frozen spec; everything that changes what a part computes is a field of
its spec, so the face index keys its analyses by the specs themselves (see
``analyse.analysis_key``) and a new crop parameter cannot slip past it. ``revision``
is bumped only when a part's *code* changes what it computes.

Specs are data; :func:`load_pipeline` turns one into loaded parts. Adding a model means
adding a spec here and, for a new kind of part, one loader below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from facefinder.models.catalog import (
    CENTERFACE_FILE,
    CENTERFACE_INT8_FILE,
    DLIB_LANDMARKS_FILE,
    DLIB_RESNET_FILE,
    FACENET_FILE,
    model_paths,
)
from facefinder.vision.centerface import Detection


@dataclass(frozen=True)
class DetectorSpec:
    """A face detector: which network, its files and its score cut-off.

    ``fast_from``: inputs of more pixels than this run on the second file (a faster,
    quantised copy of the first); 0 = the first file always.
    """

    name: str
    files: tuple[str, ...]
    score_threshold: float = 0.5
    fast_from: int = 0
    revision: int = 1


@dataclass(frozen=True)
class CropSpec:
    """How a face is cut out: ``size`` px square, box widened by ``margin``, eyes levelled
    when ``rotate``; ``files`` for crops that need their own landmark model (dlib)."""

    name: str
    size: int
    margin: float = 0.0
    rotate: bool = False
    files: tuple[str, ...] = ()
    revision: int = 1


@dataclass(frozen=True)
class EmbedderSpec:
    """An embedding network: ``dim``-d unit vectors; ``flip`` averages with the mirror crop."""

    name: str
    files: tuple[str, ...]
    dim: int
    flip: bool = False
    revision: int = 1


@dataclass(frozen=True)
class ModelSpec:
    """What ``--model NAME`` means: three parts and how to read their distances."""

    name: str
    description: str
    sources: tuple[str, ...]  # catalog sources to fetch for it
    detector: DetectorSpec
    crop: CropSpec
    embedder: EmbedderSpec
    default_threshold: float  # cosine distance; calibrated on the devset
    threshold_range: tuple[float, float]  # values that can make sense for this model
    threshold_hint: str  # what to try, in words
    requires: tuple[str, ...] = ()  # Python modules the parts need beyond requirements.txt

    @property
    def files(self) -> tuple[str, ...]:
        """Every weight file the parts load, in a fixed order (detector, crop, embedder)."""
        names = self.detector.files + self.crop.files + self.embedder.files
        return tuple(dict.fromkeys(names))


# Big photos' 800 px copies run on the INT8 file (models/build/quantize.py): 2.6x faster
# there (73 -> 29 ms), the same faces found. Small photos (press photos, references, LFW)
# keep the float file, where it costs ~7 ms: on them INT8's boxes moved enough to cost
# 2 false matches on the devset and 0.3% of LFW's true pairs at the default rule.
CENTERFACE = DetectorSpec("CenterFace", (CENTERFACE_FILE, CENTERFACE_INT8_FILE),
                          fast_from=250_000)

MODELS: dict[str, ModelSpec] = {
    spec.name.lower(): spec for spec in (
        ModelSpec(
            name="Facenet",
            description="CenterFace detector + 128-d Keras FaceNet (default; fast and accurate)",
            sources=("centerface", "facenet", "centerface-int8"),
            detector=CENTERFACE,
            # Measured with benchmarks/album.py --sweep: the detector's box widened by 10%
            # beat 5%, 15% and 20% and square boxes; levelling the eyes tied on the devset
            # and found 3-5% more of the unaligned 5-celebrity photos; averaging with the
            # mirror image cut missed matches by a third at the same precision.
            crop=CropSpec("box+margin, eyes level", size=160, margin=0.1, rotate=True),
            embedder=EmbedderSpec("FaceNet INT8", (FACENET_FILE,), dim=128, flip=True),
            # One sweep step (0.02) below where devset precision first drops under 0.99.
            default_threshold=0.32,
            threshold_range=(0.05, 0.8),
            threshold_hint="0.28 (stricter) to 0.40 (finds more, check with --show-distance)",
        ),
        ModelSpec(
            name="dlib",
            description="CenterFace + dlib ResNet-34 (face_recognition's model; needs dlib-bin)",
            sources=("centerface", "dlib", "centerface-int8"),
            detector=CENTERFACE,
            crop=CropSpec("dlib 5-point chip", size=150, margin=0.25,
                          files=(DLIB_LANDMARKS_FILE,)),
            embedder=EmbedderSpec("dlib ResNet-34", (DLIB_RESNET_FILE,), dim=128),
            # Devset sweep: 0.052 gives precision 0.996 / recall 0.927; 0.060 already lets
            # 10 strangers through. (face_recognition's euclidean 0.6 is cosine 0.18.)
            default_threshold=0.052,
            threshold_range=(0.01, 0.3),
            threshold_hint="0.045 (stricter) to 0.06 (finds more, check with --show-distance)",
            requires=("dlib",),
        ),
    )
}


def model_spec(name: str) -> ModelSpec:
    """The spec for a ``--model`` name (case-insensitive); ValueError names the choices."""
    try:
        return MODELS[name.lower()]
    except KeyError:
        known = ", ".join(spec.name for spec in MODELS.values())
        raise ValueError(f"unknown model {name!r}; choose one of: {known}") from None


# --------------------------------------------------------------------------- loaded parts


class Detector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB image, in that image's pixel coordinates, best first."""

    def detect_with_heat(self, rgb: np.ndarray) -> tuple[list[Detection], np.ndarray]:
        """``detect``'s faces and its face-centre scores, one cell per 4 px of ``rgb``."""

    def detect_part(self, rgb: np.ndarray) -> list[Detection]:
        """``detect`` on a part cut from a big photo (the closer look at small faces)."""


class Cropper(Protocol):
    def crop(self, image: Image.Image, det: Detection) -> np.ndarray:
        """The embedder's input crop (S, S, 3) uint8 for one detection in ``image``."""


class Embedder(Protocol):
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Crops (N, S, S, 3) uint8 -> L2-normalised embeddings (N, D) float32."""


@dataclass
class FacePipeline:
    """The three loaded parts of one model."""

    spec: ModelSpec
    detector: Detector
    cropper: Cropper
    embedder: Embedder


class AlignedCrop:
    """Box + margin, optionally turned so the eyes are level (``vision.align``)."""

    def __init__(self, spec: CropSpec) -> None:
        self.spec = spec

    def crop(self, image: Image.Image, det: Detection) -> np.ndarray:
        from facefinder.vision.align import face_crop

        return face_crop(image, tuple(det.box), det.landmarks, self.spec.size,
                         margin=self.spec.margin, rotate=self.spec.rotate)


class SizedDetector:
    """One detector for small inputs, its faster copy for inputs over ``fast_from`` px."""

    def __init__(self, exact: Detector, fast: Detector, fast_from: int) -> None:
        self.exact, self.fast, self.fast_from = exact, fast, fast_from

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self._for(rgb).detect(rgb)

    def detect_with_heat(self, rgb: np.ndarray) -> tuple[list[Detection], np.ndarray]:
        return self._for(rgb).detect_with_heat(rgb)

    def detect_part(self, rgb: np.ndarray) -> list[Detection]:
        """The faster copy, whatever the part's size: a part of a big photo is what that
        copy was made for. Measured on benchmarks/phone.py's earlier 60 JPEGs (72 faces
        40-120 px wide), the closer look of analysis revision 3 on the float file / the
        INT8 file: 58 / 62 small faces found, 57 / 50 ms of detection a photo on one
        core, no other face lost or added. (The float file stays on small *photos*,
        where INT8's boxes cost matches.)"""
        return self.fast.detect(rgb)

    def _for(self, rgb: np.ndarray) -> Detector:
        return self.fast if rgb.shape[0] * rgb.shape[1] > self.fast_from else self.exact


def _centerface(spec: DetectorSpec, files: dict[str, Path], threads: int) -> Detector:
    from facefinder.vision.centerface import CenterFace

    exact = CenterFace(files[spec.files[0]], threads, spec.score_threshold)
    if not spec.fast_from:
        return exact
    fast = CenterFace(files[spec.files[1]], threads, spec.score_threshold)
    return SizedDetector(exact, fast, spec.fast_from)


def _aligned(spec: CropSpec, files: dict[str, Path], threads: int) -> Cropper:
    return AlignedCrop(spec)


def _dlib_chip(spec: CropSpec, files: dict[str, Path], threads: int) -> Cropper:
    from facefinder.vision.dlib_parts import DlibChip

    return DlibChip(files[spec.files[0]], spec.size, spec.margin)


def _facenet(spec: EmbedderSpec, files: dict[str, Path], threads: int) -> Embedder:
    from facefinder.vision.facenet import FaceNet

    return FaceNet(files[spec.files[0]], threads, flip=spec.flip)


def _dlib_resnet(spec: EmbedderSpec, files: dict[str, Path], threads: int) -> Embedder:
    from facefinder.vision.dlib_parts import DlibResNet

    return DlibResNet(files[spec.files[0]])


DETECTORS: dict[str, Callable[[DetectorSpec, dict[str, Path], int], Detector]] = {
    "CenterFace": _centerface,
}
CROPPERS: dict[str, Callable[[CropSpec, dict[str, Path], int], Cropper]] = {
    "box+margin, eyes level": _aligned,
    "dlib 5-point chip": _dlib_chip,
}
EMBEDDERS: dict[str, Callable[[EmbedderSpec, dict[str, Path], int], Embedder]] = {
    "FaceNet INT8": _facenet,
    "dlib ResNet-34": _dlib_resnet,
}


def load_pipeline(spec: ModelSpec, models: Path, threads: int = 1) -> FacePipeline:
    """Load the three parts of ``spec`` from ``models`` (ModelsMissing if not fetched)."""
    files = model_paths(models, spec.files)
    return FacePipeline(
        spec,
        DETECTORS[spec.detector.name](spec.detector, files, threads),
        CROPPERS[spec.crop.name](spec.crop, files, threads),
        EMBEDDERS[spec.embedder.name](spec.embedder, files, threads),
    )
