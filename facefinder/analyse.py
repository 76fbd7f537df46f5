"""Turn files into faces with embeddings: decode -> detect -> align -> embed.

This is the part that runs in worker processes. It knows nothing of people or thresholds:
it only reports what is in each file, so that matching (and later a face index) can work
from these records without decoding a photo again.
"""

from __future__ import annotations

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
    min_sharpness: float = 0.0  # Laplacian variance of the crop below which it is too blurry


_cache: dict[Settings, Recognizer] = {}


def recognizer_for(settings: Settings) -> Recognizer:
    """The loaded recogniser for these settings; loaded once per process and kept."""
    if settings not in _cache:
        _cache.clear()
        _cache[settings] = recognizer_class(settings.model)(settings.models_dir, settings.threads)
    return _cache[settings]


def _detect(rec: Recognizer, rgb: np.ndarray, detect_side: int):
    """Detections in ``rgb`` coordinates, found on a copy no larger than ``detect_side``."""
    h, w = rgb.shape[:2]
    factor = min(1.0, detect_side / max(h, w))
    if factor >= 1.0:
        return rec.detect(rgb)
    small = np.asarray(
        Image.fromarray(rgb).resize(
            (max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BILINEAR
        )
    )
    found = rec.detect(small)
    for det in found:
        det.box = det.box / factor
        det.landmarks = det.landmarks / factor
    return found


def analyse_image(path: Path, rel: str, settings: Settings) -> tuple[FileResult, list[np.ndarray]]:
    """Decode and detect one image; returns its record and the crops still to be embedded.

    The record's faces appear in the same order as the crops for those faces that are
    trusted (not skipped), so the caller can fill in embeddings after one batched call.
    """
    rec = recognizer_for(settings)
    try:
        image = load_image(path, settings.decode_side)
    except DecodeError as exc:
        return FileResult(rel=rel, kind="image", error=str(exc)), []
    result = FileResult(rel=rel, kind="image", size=image.orig_size)
    pil = Image.fromarray(image.rgb)
    crops: list[np.ndarray] = []
    back = 1.0 / image.scale
    for det in _detect(rec, image.rgb, settings.detect_side):
        x1, y1, x2, y2 = (float(v) * back for v in det.box)
        box = (round(x1), round(y1), round(x2 - x1), round(y2 - y1))
        face = Face(box=box, landmarks=det.landmarks * back, score=det.score)
        if min(box[2], box[3]) < settings.min_face:
            face.skipped = "too small"
        else:
            crop = rec.crop(pil, det)
            if settings.min_sharpness and sharpness(crop) < settings.min_sharpness:
                face.skipped = "too blurry"
            else:
                crops.append(crop)
        result.faces.append(face)
    return result, crops


def analyse_files(items: list[tuple[Path, str, FileKind]], settings: Settings) -> list[FileResult]:
    """Analyse a batch of files; all their faces go through the embedding net in one call."""
    rec = recognizer_for(settings)
    results: list[FileResult] = []
    pending: list[tuple[FileResult, int]] = []  # (result, number of crops it contributed)
    all_crops: list[np.ndarray] = []
    for path, rel, kind in items:
        if kind != "image":
            results.append(FileResult(rel=rel, kind=kind))
            continue
        try:
            result, crops = analyse_image(path, rel, settings)
        except Exception as exc:  # one strange file must never end the run
            result, crops = FileResult(rel=rel, kind="image", error=_one_line(exc)), []
        results.append(result)
        pending.append((result, len(crops)))
        all_crops.extend(crops)
    if all_crops:
        vectors = rec.embed(np.stack(all_crops))
        at = 0
        for result, count in pending:
            trusted = [face for face in result.faces if face.skipped is None]
            for face, vector in zip(trusted, vectors[at:at + count], strict=True):
                face.embedding = vector
            at += count
    return results


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"unexpected error: {text[:160]}"
