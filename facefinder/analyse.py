"""Turn files into faces with embeddings: decode -> detect -> align -> embed.

This is the part that runs in executors (worker processes, or a cluster). It knows
nothing of people or thresholds: it only reports what is in each file, so that matching
(and the face index) can work from these records without decoding a photo again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facefinder.decode import DecodeError, load_image
from facefinder.loaded import Loaded
from facefinder.messages import one_line
from facefinder.models.catalog import weights_fingerprint
from facefinder.object_analysis import ObjectJob, add_objects, objects_only
from facefinder.records import Face, FileKind, FileResult
from facefinder.video import VIDEO_REVISION
from facefinder.vision.align import sharpness
from facefinder.vision.centerface import STRIDE, Detection, nms
from facefinder.vision.registry import MODELS, FacePipeline, ModelSpec, load_pipeline

EMBED_CHUNK = 64  # crops per embedding call for videos (bounded memory)


@dataclass(frozen=True)
class AnalysisSettings:
    """Knobs of the analysis that change its results (so they are part of the index key).

    The same settings must be used for references and photos.
    """

    decode_side: int = 1600  # long side the photo is decoded at (JPEG draft makes it cheap)
    detect_side: int = 800  # long side the detector sees; faces under ~12 px there are lost
    min_face: int = 40  # faces smaller than this (original pixels) are not trusted
    # Laplacian variance of the crop below which it is too blurry to trust. On the devset
    # 14 detections of 40 px or more fell under 3 (smears, flat regions); no true match
    # was under 5. Sharpness did not separate look-alikes from true matches, so this is
    # only a floor, not a precision tool.
    min_sharpness: float = 3.0
    video_fps: float = 1.0  # video frames sampled per second
    # Bumped when this module's own code changes what it computes (not a knob). 2: photos
    # are decoded only as far as JPEG DCT scaling goes (faces are cut from those pixels),
    # the detector's copy is box-reduced, and a photo with no face is looked at again
    # with a border (tight face crops). 3: a second, closer look where the detector's
    # heatmap hints at faces too small for its copy of a large photo (CLOSER_HINT).
    # 4: that closer look runs on the detector's faster (INT8) copy (``detect_part``),
    # around each hinted cell rather than on 64 px squares, from a lower hint.
    revision: int = 4

    def __post_init__(self) -> None:
        # Decoding is never smaller than what the detector is asked to see: a
        # --detect-size above the decode size would otherwise change nothing.
        if self.decode_side < self.detect_side:
            object.__setattr__(self, "decode_side", self.detect_side)


@dataclass(frozen=True)
class AnalysisJob:
    """Everything an executor needs to analyse files exactly as the main process would."""

    model: ModelSpec
    models_dir: Path
    settings: AnalysisSettings = AnalysisSettings()
    threads: int = 1  # onnxruntime threads per model (1 when several workers share cores)
    # --objects: the object detector to run on the same decoded pixels (None: faces only);
    # ``faces`` False runs only the object pass (the index already knows the faces).
    objects: ObjectJob | None = None
    faces: bool = True


# --------------------------------------------------------------------------- index key


def analysis_key(job: AnalysisJob, kind: FileKind) -> str:
    """What an analysis of a ``kind`` file depends on, as canonical JSON.

    Two runs with equal keys compute the same faces and embeddings, so the index answers
    one from the other. The key is made of the model's part specs (every field of each),
    the weight files' fingerprint and the analysis settings; the video sampling rate only
    for videos, so changing --video-fps re-reads no photo.
    """
    weights = weights_fingerprint(job.models_dir, job.model.files)
    return _key(job.model, weights, job.settings, video=kind == "video")


def _key(spec: ModelSpec, weights: str, settings: AnalysisSettings, *, video: bool) -> str:
    values = dataclasses.asdict(settings)
    fps = values.pop("video_fps")
    key: dict[str, object] = {
        "model": spec.name,
        "detector": dataclasses.asdict(spec.detector),
        "crop": dataclasses.asdict(spec.crop),
        "embedder": dataclasses.asdict(spec.embedder),
        "weights": weights,
        **values,
    }
    if video:
        key["video_fps"] = fps
        key["video_revision"] = VIDEO_REVISION  # (what the video code computes)
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def upgrade_v1_key(old: str) -> str | None:
    """The current key for an analysis key written by index schema 1, or None.

    Schema 1 keys read ``v1 Facenet weights=89349... crop=0.1/True decode=1600 detect=800
    minface=40 sharp=3 [fps=1]``. The pipeline has not changed since (revision 1 of
    every part), so such an analysis is the same as one under today's key when the
    model's crop geometry is still the one recorded.
    """
    fields = dict(part.split("=", 1) for part in old.split()[2:] if "=" in part)
    words = old.split()
    if len(words) < 2 or words[0] != "v1" or words[1].lower() not in MODELS:
        return None
    spec = MODELS[words[1].lower()]
    crop = f"{spec.crop.margin:g}/{spec.crop.rotate}" if spec.name == "Facenet" else "-/-"
    if fields.get("crop") != crop:
        return None
    try:
        settings = AnalysisSettings(
            decode_side=int(fields["decode"]), detect_side=int(fields["detect"]),
            min_face=int(fields["minface"]), min_sharpness=float(fields["sharp"]),
            video_fps=float(fields.get("fps", 1.0)), revision=1,
        )
    except (KeyError, ValueError):
        return None
    return _key(spec, fields.get("weights", "?"), settings, video="fps" in fields)


def describe_key(key: str) -> str:
    """An analysis key in plain words, for ``--index-info``."""
    try:
        data = json.loads(key)
        crop, embedder = data["crop"], data["embedder"]
        text = (f"{data['model']}: {data['detector']['name']} detector at "
                f"{data['detect_side']} px on photos read at up to {data['decode_side']} px, "
                f"faces from {data['min_face']} px, {crop['size']} px crops "
                f"({crop['name']}), {embedder['name']} embeddings")
        if "video_fps" in data:
            text += f", videos at {data['video_fps']:g} frame/s"
        return text
    except (ValueError, KeyError, TypeError):
        return f"older settings no longer used ({key[:60]})"


# --------------------------------------------------------------------------- loaded models


class ModelCache:
    """Loaded pipelines, keyed explicitly by (model spec, models folder, threads), in a
    ``loaded.Loaded`` (the object detector is kept the same way)."""

    def __init__(self, size: int = 4) -> None:
        self._loaded: Loaded[tuple[ModelSpec, Path, int], FacePipeline] = Loaded(
            lambda key: load_pipeline(*key), size)

    def get(self, job: AnalysisJob) -> FacePipeline:
        """The pipeline of ``job``'s model, loaded on first use."""
        return self._loaded.get((job.model, Path(job.models_dir), job.threads))


# One per worker process: executors' workers live across batches, and this is what lets
# them load each model once. The main process's Finder owns its own ModelCache.
WORKER_MODELS = ModelCache()


# --------------------------------------------------------------------------- the analysis

# Seconds spent per stage ("decode", "detect", "crop", "embed"), added up by the analysis
# when the caller passes one: how benchmarks/phone.py sees where a photo's time goes
# without a second, hand-assembled copy of the pipeline that could drift from this one.
StageClock = dict[str, float]


@contextlib.contextmanager
def _stage(clock: StageClock | None, name: str) -> Iterator[None]:
    if clock is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        clock[name] = clock.get(name, 0.0) + time.perf_counter() - started


# When nothing is found, the photo may be a face and little else (a reference cut to the
# face, a passport photo): the detector needs some context around a face to see it. Such
# a photo is shown again inside a grey border, as (border, as a share of the photo's long
# side; long side of the photo inside it, None: as it is but at most RETRY_SIDE). On the
# 118 faces of the 5-celebrity set cut to their boxes, 113 were found as they are, 117
# with the first border and all with the second; each retry costs one detection on at
# most 512x512 pixels, and only photos where nothing was found pay it.
RETRIES: tuple[tuple[float, int | None], ...] = ((0.25, None), (0.35, 94))
RETRY_SIDE = 340  # 512 px with its border
RETRY_GREY = (128, 128, 128)


def _resized(pil: Image.Image, side: int, *, enlarge: bool = False) -> Image.Image:
    """``pil`` with its long side ``side`` (never enlarged unless ``enlarge``): a
    whole-number box reduction first (cheap, no aliasing), then one bilinear resize."""
    long_side = max(pil.size)
    if long_side <= side and not enlarge:
        return pil
    factor = long_side // side
    if factor >= 2:
        pil = pil.reduce(factor)
    ratio = side / max(pil.size)
    if ratio != 1.0:
        pil = pil.resize((max(1, round(pil.width * ratio)), max(1, round(pil.height * ratio))),
                         Image.Resampling.BILINEAR)
    return pil


def _mapped(found: list[Detection], shown: Image.Image, size: tuple[int, int],
            pad: int = 0) -> list[Detection]:
    """Detections in ``shown`` (offset by a border of ``pad``) -> a picture of ``size``."""
    fx, fy = size[0] / shown.width, size[1] / shown.height
    scale = np.array([fx, fy], dtype=np.float32)
    for det in found:
        box = (det.box.reshape(2, 2) - pad) * scale
        det.box = np.clip(box, 0, size).reshape(4).astype(np.float32)
        det.landmarks = ((det.landmarks - pad) * scale).astype(np.float32)
    return found


# A 12 MP photo is shown to the detector at 800 px, five times smaller: a 40 px face (the
# --min-face default) is 8 px there, under what the detector finds (~12 px), but it still
# lights its heatmap faintly. Where heatmap cells away from the faces found score over
# CLOSER_HINT, the detector looks again at those places in the decoded pixels (2.5x
# larger for a 12 MP JPEG), on its faster copy (``detect_part``): each hinted cell with
# CLOSER_REACH px of the detector's copy around it (a face small enough to be missed is
# at most ~24 px there, centred on its cell), cells whose surroundings touch looked at
# as one region. Only when the decoded pixels are at least CLOSER_FROM times the
# detector's copy (nothing to gain otherwise). Measured on benchmarks/phone.py's 60
# JPEGs (85 of their 305 faces 40-120 px wide), small faces found and detection ms per
# photo on one core (runs vary ~10%): no closer look 38 ms, 23/85; 64 px squares of the
# copy around the hinted cells (revision 3: hint 0.05, 24 px margin, float file) 52 ms,
# 64/85; the same on the INT8 file 51 ms, 66/85; cells with 20 px around them, INT8,
# hint 0.05: 35 ms, 66/85; 0.03: 44 ms, 71/85; 0.02: 51 ms, 77/85; 0.015: 77 ms, 78/85;
# 0.01: 109 ms, 79/85 (faint hints multiply on textures). 16 px around a cell found
# fewer (75), 24 or 28 px no more and cost more. On the earlier set of 60 photos (72
# small faces): 62 -> 68 found at 0.02, 50 -> 56 ms. Faces over 120 px: 220/220 (218
# without a closer look). The faces still missed light no cell over 0.02, or are under
# ~24 px in the decoded pixels too. Leaving out half a found face's side around it
# (instead of a quarter) lost a small face beside a big one.
CLOSER_HINT = 0.02
CLOSER_REACH = 20
CLOSER_FROM = 1.5
CLOSER_AROUND = 0.25  # share of a found face's side around it whose hints are its own


def _hinted_cells(heat: np.ndarray, found: list[Detection]) -> np.ndarray:
    """Heatmap cells over ``CLOSER_HINT`` not near a face already found, as a mask: a
    found face lights its neighbourhood too, so its box widened by ``CLOSER_AROUND`` of
    its side on every edge is left out."""
    hot = heat > CLOSER_HINT
    for det in found:
        x1, y1, x2, y2 = (float(v) / STRIDE for v in det.box)
        half = max(x2 - x1, y2 - y1) * CLOSER_AROUND
        hot[max(0, int(y1 - half)):int(y2 + half) + 1,
            max(0, int(x1 - half)):int(x2 + half) + 1] = False
    return hot


def _grown(mask: np.ndarray, cells: int) -> np.ndarray:
    """``mask`` with every set cell widened by ``cells`` in each direction (a square)."""
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        length = src.shape[axis]
        for shift in range(1, min(cells, length - 1) + 1):
            ahead = [slice(None), slice(None)]
            behind = [slice(None), slice(None)]
            ahead[axis], behind[axis] = slice(shift, None), slice(None, length - shift)
            out[tuple(ahead)] |= src[tuple(behind)]
            out[tuple(behind)] |= src[tuple(ahead)]
    return out


def _clusters(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (row1, col1, row2, col2; ends exclusive) of the 8-connected groups
    of set cells, from runs along each row joined to the runs they touch in the row
    above (a union-find over runs: a few hundred at most, not one per cell)."""
    parent: list[int] = []
    boxes: list[list[int]] = []

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    above: list[tuple[int, int, int]] = []
    last = -2
    for row in np.flatnonzero(mask.any(axis=1)).tolist():
        if row != last + 1:
            above = []
        last = row
        edges = np.flatnonzero(np.diff(np.r_[False, mask[row], False].astype(np.int8)))
        runs = []
        for start, end in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
            run = len(parent)
            parent.append(run)
            boxes.append([row, start, row + 1, end])
            for a_start, a_end, a_run in above:
                if a_start <= end and start <= a_end:  # overlapping or touching corners
                    parent[root(a_run)] = run
            runs.append((start, end, run))
        above = runs
    merged: dict[int, list[int]] = {}
    for run, box in enumerate(boxes):
        group = merged.setdefault(root(run), list(box))
        group[0], group[1] = min(group[0], box[0]), min(group[1], box[1])
        group[2], group[3] = max(group[2], box[2]), max(group[3], box[3])
    return [(r1, c1, r2, c2) for r1, c1, r2, c2 in merged.values()]


def _closer_regions(hot: np.ndarray, shown: Image.Image, size: tuple[int, int]
                    ) -> list[tuple[int, int, int, int]]:
    """Boxes in a picture of ``size`` around the ``hot`` cells of ``shown``'s heatmap:
    each cell's centre with ``CLOSER_REACH`` px of ``shown`` around it, cells whose
    surroundings touch in one box."""
    if not hot.any():
        return []
    reach = round(CLOSER_REACH / STRIDE)
    trim = reach * STRIDE + STRIDE / 2 - CLOSER_REACH  # grown cells' edges -> the reach
    fx, fy = size[0] / shown.width, size[1] / shown.height
    rows, cols = hot.shape
    regions = []
    for r1, c1, r2, c2 in _clusters(_grown(hot, reach)):  # cut at the heatmap's edges
        regions.append((0 if c1 == 0 else round((c1 * STRIDE + trim) * fx),
                        0 if r1 == 0 else round((r1 * STRIDE + trim) * fy),
                        size[0] if c2 == cols else min(size[0], round((c2 * STRIDE - trim) * fx)),
                        size[1] if r2 == rows else min(size[1], round((r2 * STRIDE - trim) * fy))))
    return regions


def _closer_look(pipe: FacePipeline, pil: Image.Image, shown: Image.Image,
                 heat: np.ndarray, found: list[Detection]) -> list[Detection]:
    """Faces in ``pil``'s coordinates that the look at ``shown`` was too coarse for:
    found in the hinted regions at ``pil``'s own scale, none overlapping ``found``
    (which must already be in ``pil``'s coordinates)."""
    hot = _hinted_cells(heat, [_shown_box(det, pil, shown) for det in found])
    more: list[Detection] = []
    for x1, y1, x2, y2 in _closer_regions(hot, shown, pil.size):
        for det in pipe.detector.detect_part(np.asarray(pil.crop((x1, y1, x2, y2)))):
            det.box = det.box + np.array([x1, y1, x1, y1], dtype=np.float32)
            det.landmarks = det.landmarks + np.array([x1, y1], dtype=np.float32)
            more.append(det)
    if not more:
        return []
    # A face at the seam of two regions is found twice; one found at the first look is
    # left as it was.
    every = found + more
    boxes = np.stack([det.box for det in every])
    scores = np.array([det.score + (1.0 if i < len(found) else 0.0)
                       for i, det in enumerate(every)])
    return [every[i] for i in nms(boxes, scores, 0.3) if i >= len(found)]


def _shown_box(det: Detection, pil: Image.Image, shown: Image.Image) -> Detection:
    """``det`` (in ``pil``'s coordinates) with its box in ``shown``'s."""
    fx, fy = shown.width / pil.width, shown.height / pil.height
    box = det.box * np.array([fx, fy, fx, fy], dtype=np.float32)
    return Detection(box, det.score, det.landmarks)


def _detect(pipe: FacePipeline, pil: Image.Image, detect_side: int) -> list[Detection]:
    """Detections in ``pil``'s coordinates, found on a copy no larger than ``detect_side``,
    then closer where its heatmap hints at faces too small for it (``CLOSER_HINT``), and,
    if none, in the photo shown inside a border (``RETRIES``)."""
    shown = _resized(pil, detect_side)
    found, heat = pipe.detector.detect_with_heat(np.asarray(shown))
    found = _mapped(found, shown, pil.size)
    if max(pil.size) >= CLOSER_FROM * max(shown.size):
        found += _closer_look(pipe, pil, shown, heat, found)
    for border, inner in RETRIES:
        if found:
            break
        shown = _resized(pil, inner or min(RETRY_SIDE, max(pil.size)), enlarge=bool(inner))
        pad = max(1, round(max(shown.size) * border))
        canvas = Image.new("RGB", (shown.width + 2 * pad, shown.height + 2 * pad), RETRY_GREY)
        canvas.paste(shown, (pad, pad))
        found = _mapped(pipe.detector.detect(np.asarray(canvas)), shown, pil.size, pad)
    return found


def _faces_in(
    pipe: FacePipeline, rgb: np.ndarray, scale: float, settings: AnalysisSettings,
    when: float | None, clock: StageClock | None = None,
) -> tuple[list[Face], list[np.ndarray]]:
    """Detect faces in decoded pixels; returns them (original coordinates) and the crops
    of those trusted enough to embed, in the same order as the unskipped faces."""
    pil = Image.fromarray(rgb)
    faces: list[Face] = []
    crops: list[np.ndarray] = []
    back = 1.0 / scale
    with _stage(clock, "detect"):
        found = _detect(pipe, pil, settings.detect_side)
    for det in found:
        x1, y1, x2, y2 = (float(v) * back for v in det.box)
        box = (round(x1), round(y1), round(x2 - x1), round(y2 - y1))
        face = Face(box=box, landmarks=det.landmarks * back, score=det.score, time=when)
        if min(box[2], box[3]) < settings.min_face:
            face.skipped = "too small"
        else:
            with _stage(clock, "crop"):
                crop = pipe.cropper.crop(pil, det)
            if settings.min_sharpness and sharpness(crop) < settings.min_sharpness:
                face.skipped = "too blurry"
            else:
                crops.append(crop)
        faces.append(face)
    return faces, crops


def file_time(path: Path) -> str | None:
    """The file's modification time as local "YYYY-MM-DD HH:MM:SS" (fallback capture time)."""
    try:
        return local_time(os.stat(path).st_mtime)
    except OSError:
        return None


def local_time(stamp: float) -> str | None:
    """A POSIX timestamp as local "YYYY-MM-DD HH:MM:SS" (None when out of range)."""
    try:
        return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")
    except (OSError, ValueError, OverflowError):
        return None


def analyse_image(path: Path, rel: str, job: AnalysisJob, pipe: FacePipeline,
                  clock: StageClock | None = None) -> tuple[FileResult, list[np.ndarray]]:
    """Decode and detect one image; returns its record and the crops still to be embedded.

    The record's faces appear in the same order as the crops for those faces that are
    trusted (not skipped), so the caller can fill in embeddings after one batched call.
    The capture time is read from EXIF while the file is open for decoding anyway.
    """
    try:
        with _stage(clock, "decode"):
            image = load_image(path, job.settings.decode_side, coarse=True)
    except DecodeError as exc:
        return FileResult(rel=rel, kind="image", error=str(exc)), []
    taken, source = (image.taken, "exif") if image.taken else (file_time(path), "file time")
    result = FileResult(rel=rel, kind="image", size=image.orig_size, taken=taken,
                        taken_from=source)
    result.faces, crops = _faces_in(pipe, image.rgb, image.scale, job.settings, None, clock)
    if job.objects is not None:  # the pixels decoded for the faces serve the objects too
        with _stage(clock, "objects"):
            add_objects(job, result, image.rgb, image.scale, None)
    return result, crops


def analyse_bytes(data: bytes, job: AnalysisJob, pipe: FacePipeline) -> FileResult:
    """The faces of a photo given as bytes (an upload): same decoder, same pipeline."""
    try:
        image = load_image(data, job.settings.decode_side, coarse=True)
    except DecodeError as exc:
        return FileResult(rel="upload", kind="image", error=str(exc))
    result = FileResult(rel="upload", kind="image", size=image.orig_size, taken=image.taken,
                        taken_from="exif" if image.taken else None)
    faces, crops = _faces_in(pipe, image.rgb, image.scale, job.settings, None)
    _embed_into(pipe, faces, crops)
    result.faces = faces
    return result


def _embed_into(pipe: FacePipeline, faces: list[Face], crops: list[np.ndarray]) -> None:
    """Fill in the embeddings of the unskipped ``faces`` from their ``crops`` (same order)."""
    if not crops:
        return
    vectors = pipe.embedder.embed(np.stack(crops))
    trusted = [face for face in faces if face.skipped is None]
    for face, vector in zip(trusted, vectors, strict=True):
        face.embedding = vector


def analyse_video(path: Path, rel: str, job: AnalysisJob, pipe: FacePipeline) -> FileResult:
    """Sample a video's frames and detect and embed faces in each, like photos.

    Crops are embedded in chunks of EMBED_CHUNK so a two-hour film does not hold
    thousands of crops in memory at once.
    """
    from facefinder.video import VideoError, sample_frames

    settings = job.settings
    try:
        info, frames = sample_frames(path, settings.video_fps, settings.decode_side)
        created = info.created
        result = FileResult(
            rel=rel, kind="video", size=info.size, duration=info.duration,
            taken=created or file_time(path), taken_from="video" if created else "file time",
        )
        faces: list[Face] = []
        crops: list[np.ndarray] = []
        result.objects = None if job.objects is None else []
        for frame in frames:
            result.frames += 1
            if result.objects is not None:
                add_objects(job, result, frame.rgb, frame.scale, frame.time)
            found, found_crops = _faces_in(pipe, frame.rgb, frame.scale, settings, frame.time)
            faces.extend(found)
            crops.extend(found_crops)
            if len(crops) >= EMBED_CHUNK:
                _embed_into(pipe, faces, crops)
                result.faces.extend(faces)
                faces, crops = [], []
        _embed_into(pipe, faces, crops)
        result.faces.extend(faces)
        result.size = info.size  # as shown: a portrait video's frames are stored turned
    except VideoError as exc:
        return FileResult(rel=rel, kind="video", error=str(exc))
    if result.frames == 0:
        return FileResult(rel=rel, kind="video", error="video has no frames")
    return result


def analyse_files(items: list[tuple[Path, str, FileKind]], job: AnalysisJob,
                  models: ModelCache | None = None, clock: StageClock | None = None
                  ) -> list[FileResult]:
    """Analyse a batch of files; all their faces go through the embedding net in one call.

    ``models`` is the caller's cache of loaded models (a worker process uses its own);
    ``clock``, when given, collects the seconds spent per stage of photos.
    """
    if not job.faces:  # the faces are known (face index): objects only
        return objects_only(items, job)
    pipe = (models or WORKER_MODELS).get(job)
    results: list[FileResult] = []
    pending: list[tuple[FileResult, list[np.ndarray]]] = []
    for path, rel, kind in items:
        if kind == "other":
            results.append(FileResult(rel=rel, kind=kind))
            continue
        try:
            if kind == "video":
                results.append(analyse_video(path, rel, job, pipe))
                continue
            result, crops = analyse_image(path, rel, job, pipe, clock)
        except Exception as exc:  # one strange file must never end the run
            reason = f"unexpected error: {one_line(exc, 160)}"
            result, crops = FileResult(rel=rel, kind=kind, error=reason), []
        results.append(result)
        pending.append((result, crops))
    all_crops = [crop for _, crops in pending for crop in crops]
    if all_crops:
        with _stage(clock, "embed"):
            vectors = pipe.embedder.embed(np.stack(all_crops))
        at = 0
        for result, crops in pending:
            trusted = [face for face in result.faces if face.skipped is None]
            for face, vector in zip(trusted, vectors[at:at + len(crops)], strict=True):
                face.embedding = vector
            at += len(crops)
    return results
