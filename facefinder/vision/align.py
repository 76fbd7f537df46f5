"""Cut each detected face out of the image as the square crop an embedding model expects.

One mechanism serves both ways of cropping: an affine map from the output crop back into
the image. ``rotate=False`` takes the detector's box widened by a margin (what FaceNet's
published LFW figure used); ``rotate=True`` additionally turns the crop so the eyes are
level, which helps tilted heads. The devset decides which is the default.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def face_crop(
    image: Image.Image,
    box: tuple[float, float, float, float],
    landmarks: np.ndarray,
    size: int = 160,
    margin: float = 0.2,
    rotate: bool = False,
    square: bool = False,
) -> np.ndarray:
    """Return a ``size`` x ``size`` RGB uint8 crop of the face in ``image``.

    ``box`` is (x1, y1, x2, y2) in ``image`` pixels; ``margin`` widens it by that fraction
    of its size in total (half on each side). Parts of the crop that fall outside the
    image are black, as in the crops the model was trained on.
    """
    x1, y1, x2, y2 = box
    bw, bh = (x2 - x1) * (1 + margin), (y2 - y1) * (1 + margin)
    if square:
        bw = bh = max(bw, bh)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    angle = 0.0
    if rotate:
        (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
        angle = math.atan2(ry - ly, rx - lx)
    cos, sin = math.cos(angle), math.sin(angle)
    sx, sy = bw / size, bh / size
    # Output pixel (u, v) -> centred, scaled, rotated -> image pixel (x, y).
    a, b = cos * sx, -sin * sy
    d, e = sin * sx, cos * sy
    c = cx - a * size / 2 - b * size / 2
    f = cy - d * size / 2 - e * size / 2
    crop = image.transform(
        (size, size), Image.Transform.AFFINE, (a, b, c, d, e, f),
        resample=Image.Resampling.BILINEAR,
    )
    return np.asarray(crop)


def sharpness(crop: np.ndarray) -> float:
    """Variance of a 4-neighbour Laplacian of the crop's grey levels (low = blurry)."""
    grey = crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = (
        grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1]
        - 4 * grey[1:-1, 1:-1]
    )
    return float(lap.var())
