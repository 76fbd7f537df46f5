"""Turn files into faces with embeddings: decode -> detect -> align -> embed.

This is the part that runs in worker processes. It knows nothing of people or thresholds:
it only reports what is in each file, so that matching (and later a face index) can work
from these records without decoding a photo again.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facefinder.align import sharpness
from facefinder.decode import DecodeError, load_image
from facefinder.recognizers import Recognizer, recognizer_class
from facefinder.records import Face, FileKind, FileResult


@dataclass(frozen=True)
class Settings:
    """Knobs of the analysis; the same settings must be used for references and photos."""

    model: str = "Facenet"
    models_dir: Path = Path("models")
    threads: int = 1
    decode_side: int = 1600  # long side the photo is decoded at (JPEG draft makes it cheap)
    detect_side: int = 800  # long side the detector sees; faces under ~12 px there are lost
    min_face: int = 40  # faces smaller than this (original pixels) are not trusted
    # Laplacian variance of the crop below which it is too blurry to trust. On the devset
    # 14 detections of 40 px or more fell under 3 (smears, flat regions); no true match
    # was under 5. Sharpness did not separate look-alikes from true matches, so this is
    # only a floor, not a precision tool.
    min_sharpness: float = 3.0
    video_fps: float = 1.0  # video frames sampled per second


# Bump when a change in this pipeline (decode, detect, crop, embed) changes the faces or
# embeddings it produces: the face index then re-reads every file instead of mixing old
# and new vectors. Settings that change them are part of the index key too.
PIPELINE_VERSION = 1
EMBED_CHUNK = 64  # crops per embedding call for videos (bounded memory)


@functools.lru_cache(maxsize=8)
def _weights_fingerprint(models_dir: Path, sources: tuple[str, ...]) -> str:
    """12 hex digits naming the exact model files (from the models manifest's sha256s).

    A model keeps its name when its weights change (e.g. a quantised FaceNet replacing the
    float one), so the name alone would let the index mix old and new embeddings.
    """
    from facefinder.models import catalog

    try:
        data = json.loads((models_dir / catalog.MANIFEST).read_text(encoding="utf-8"))
        files = data.get("files", {})
    except (OSError, ValueError, AttributeError):
        files = {}
    names = [name for source in sources for name in catalog.SOURCES[source].produces]
    digest = hashlib.sha256("|".join(f"{n}={files.get(n, '?')}" for n in names).encode())
    return digest.hexdigest()[:12]


def analysis_key(settings: Settings, kind: FileKind) -> str:
    """What an analysis of a ``kind`` file depends on, as a short stable string.

    Two runs with equal keys would compute the same faces and embeddings, so the index
    answers one from the other. The recogniser's crop geometry (margin, rotation) is
    included because it changes embeddings without changing the model's name; the video
    sampling rate only matters for videos, so changing --video-fps re-reads no photo.
    """
    cls = recognizer_class(settings.model)
    crop = f"{getattr(cls, 'margin', '-')}/{getattr(cls, 'rotate', '-')}"
    weights = _weights_fingerprint(settings.models_dir, tuple(cls.sources))
    key = (f"v{PIPELINE_VERSION} {cls.name} weights={weights} crop={crop} "
           f"decode={settings.decode_side} "
           f"detect={settings.detect_side} minface={settings.min_face} "
           f"sharp={settings.min_sharpness:g}")
    if kind == "video":
        key += f" fps={settings.video_fps:g}"
    return key


_cache: dict[Settings, Recognizer] = {}


def recognizer_for(settings: Settings) -> Recognizer:
    """The loaded recogniser for these settings; loaded once per process and kept."""
    if settings not in _cache:
        _cache.clear()
        _cache[settings] = recognizer_class(settings.model)(settings.models_dir, settings.threads)
    return _cache[settings]


def _detect(rec: Recognizer, rgb: np.ndarray, pil: Image.Image, detect_side: int):
    """Detections in ``rgb`` coordinates, found on a copy no larger than ``detect_side``.

    ``pil`` is the same pixels as a Pillow image, made once by the caller (who also crops
    from it), so a big photo is not copied twice.
    """
    h, w = rgb.shape[:2]
    factor = min(1.0, detect_side / max(h, w))
    if factor >= 1.0:
        return rec.detect(rgb)
    small = np.asarray(
        pil.resize(
            (max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BILINEAR
        )
    )
    found = rec.detect(small)
    for det in found:
        det.box = det.box / factor
        det.landmarks = det.landmarks / factor
    return found


def _faces_in(
    rec: Recognizer, rgb: np.ndarray, scale: float, settings: Settings, when: float | None
) -> tuple[list[Face], list[np.ndarray]]:
    """Detect faces in decoded pixels; returns them (original coordinates) and the crops
    of those trusted enough to embed, in the same order as the unskipped faces."""
    pil = Image.fromarray(rgb)
    faces: list[Face] = []
    crops: list[np.ndarray] = []
    back = 1.0 / scale
    for det in _detect(rec, rgb, pil, settings.detect_side):
        x1, y1, x2, y2 = (float(v) * back for v in det.box)
        box = (round(x1), round(y1), round(x2 - x1), round(y2 - y1))
        face = Face(box=box, landmarks=det.landmarks * back, score=det.score, time=when)
        if min(box[2], box[3]) < settings.min_face:
            face.skipped = "too small"
        else:
            crop = rec.crop(pil, det)
            if settings.min_sharpness and sharpness(crop) < settings.min_sharpness:
                face.skipped = "too blurry"
            else:
                crops.append(crop)
        faces.append(face)
    return faces, crops


def file_time(path: Path) -> str | None:
    """The file's modification time as local "YYYY-MM-DD HH:MM:SS" (fallback capture time)."""
    try:
        stamp = os.stat(path).st_mtime
        return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")
    except (OSError, ValueError, OverflowError):
        return None


def analyse_image(path: Path, rel: str, settings: Settings) -> tuple[FileResult, list[np.ndarray]]:
    """Decode and detect one image; returns its record and the crops still to be embedded.

    The record's faces appear in the same order as the crops for those faces that are
    trusted (not skipped), so the caller can fill in embeddings after one batched call.
    The capture time is read from EXIF while the file is open for decoding anyway.
    """
    rec = recognizer_for(settings)
    try:
        image = load_image(path, settings.decode_side)
    except DecodeError as exc:
        return FileResult(rel=rel, kind="image", error=str(exc)), []
    taken, source = (image.taken, "exif") if image.taken else (file_time(path), "file time")
    result = FileResult(rel=rel, kind="image", size=image.orig_size, taken=taken,
                        taken_from=source)
    result.faces, crops = _faces_in(rec, image.rgb, image.scale, settings, None)
    return result, crops


def _embed_into(rec: Recognizer, faces: list[Face], crops: list[np.ndarray]) -> None:
    """Fill in the embeddings of the unskipped ``faces`` from their ``crops`` (same order)."""
    if not crops:
        return
    vectors = rec.embed(np.stack(crops))
    trusted = [face for face in faces if face.skipped is None]
    for face, vector in zip(trusted, vectors, strict=True):
        face.embedding = vector


def analyse_video(path: Path, rel: str, settings: Settings) -> FileResult:
    """Sample a video's frames and detect and embed faces in each, like photos.

    Crops are embedded in chunks of EMBED_CHUNK so a two-hour film does not hold
    thousands of crops in memory at once.
    """
    from facefinder.video import VideoError, sample_frames

    rec = recognizer_for(settings)
    try:
        info, frames = sample_frames(path, settings.video_fps, settings.decode_side)
        created = info.created
        result = FileResult(
            rel=rel, kind="video", size=info.size, duration=info.duration,
            taken=created or file_time(path), taken_from="video" if created else "file time",
        )
        faces: list[Face] = []
        crops: list[np.ndarray] = []
        for frame in frames:
            result.frames += 1
            found, found_crops = _faces_in(rec, frame.rgb, frame.scale, settings, frame.time)
            faces.extend(found)
            crops.extend(found_crops)
            if len(crops) >= EMBED_CHUNK:
                _embed_into(rec, faces, crops)
                result.faces.extend(faces)
                faces, crops = [], []
        _embed_into(rec, faces, crops)
        result.faces.extend(faces)
    except VideoError as exc:
        return FileResult(rel=rel, kind="video", error=str(exc))
    if result.frames == 0:
        return FileResult(rel=rel, kind="video", error="video has no frames")
    return result


def analyse_files(items: list[tuple[Path, str, FileKind]], settings: Settings) -> list[FileResult]:
    """Analyse a batch of files; all their faces go through the embedding net in one call."""
    rec = recognizer_for(settings)
    results: list[FileResult] = []
    pending: list[tuple[FileResult, list[np.ndarray]]] = []
    for path, rel, kind in items:
        if kind == "other":
            results.append(FileResult(rel=rel, kind=kind))
            continue
        try:
            if kind == "video":
                results.append(analyse_video(path, rel, settings))
                continue
            result, crops = analyse_image(path, rel, settings)
        except Exception as exc:  # one strange file must never end the run
            result, crops = FileResult(rel=rel, kind=kind, error=_one_line(exc)), []
        results.append(result)
        pending.append((result, crops))
    all_crops = [crop for _, crops in pending for crop in crops]
    if all_crops:
        vectors = rec.embed(np.stack(all_crops))
        at = 0
        for result, crops in pending:
            trusted = [face for face in result.faces if face.skipped is None]
            for face, vector in zip(trusted, vectors[at:at + len(crops)], strict=True):
                face.embedding = vector
            at += len(crops)
    return results


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"unexpected error: {text[:160]}"
