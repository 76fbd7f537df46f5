"""Small JPEG previews of photos and video frames, for reports and pages.

A report of 50,000 matches needs 50,000 previews, so a preview must be cheap: a photo
is decoded with the project's own safe decoder (:func:`facefinder.decode.load_image`),
asked for a long side of only the thumbnail's size, which lets libjpeg decode a 12 MP
JPEG at 1/8 scale (DCT scaling, ``Image.draft``) instead of decoding 12 million pixels
to keep 50,000. The same decoder means the same guarantees as the search itself: EXIF
orientation applied (boxes are in the upright image), HEIC through pillow-heif, the
decompression-bomb guard, and every broken file turned into a one-line reason - which
here becomes ``None``: a missing preview must never cost the report.

Boxes are *not* burned into the pixels. A photo matched for three people has one
preview and three boxes; the page draws each box as an overlay scaled to the image
(percentages of the original size), so one preview serves every match of the file, the
box stays exact data, and outlines stay crisp whatever the preview's size. Callers that
want a face close-up pass ``crop=box`` instead.

Pixels already decoded (by a caller holding them) are turned into a preview with
:func:`from_pixels` without reading the file again.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # x, y, w, h in the upright original image

SIDE = 224  # default long side of a preview, in pixels
QUALITY = 72  # default JPEG quality: faces stay recognisable, a preview stays ~8 KB
MIN_SIDE = 64  # never shrunk below this to meet a byte cap: it would show nothing
CROP_MARGIN = 0.6  # context kept around a box when cropping, as a share of its size


@dataclass(frozen=True)
class Thumbnail:
    """A JPEG preview and the size of what it shows, for scaling a box onto it."""

    jpeg: bytes
    width: int  # of the preview
    height: int
    orig_width: int  # of the upright original (photo) or the stored frame (video)
    orig_height: int


def _encode(image: Image.Image, quality: int, max_bytes: int | None) -> bytes:
    """JPEG bytes of ``image``; when over ``max_bytes``, lower quality, then size.

    The cap is what bounds a huge report's file size whatever the photos hold (noise,
    confetti and foliage compress badly); re-encoding a preview costs a fraction of a
    millisecond, far less than its decode.
    """
    while True:
        for q in (quality, max(30, quality - 15), 30) if max_bytes else (quality,):
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=q, optimize=True, progressive=False)
            data = buffer.getvalue()
            if max_bytes is None or len(data) <= max_bytes:
                return data
        long_side = max(image.size)
        if long_side <= MIN_SIDE:
            return data  # as small as is still worth showing; the cap yields here
        ratio = max(MIN_SIDE / long_side, 0.75)
        image = image.resize((max(1, round(image.width * ratio)),
                              max(1, round(image.height * ratio))), Image.Resampling.BILINEAR)


def _crop_region(box: Box, scale: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The pixel region (left, top, right, bottom) around ``box`` plus a margin, in an
    image of ``size`` that is ``scale`` times the original."""
    x, y, w, h = box
    margin = CROP_MARGIN * max(w, h)
    left = max(0, math.floor((x - margin) * scale))
    top = max(0, math.floor((y - margin) * scale))
    right = min(size[0], math.ceil((x + w + margin) * scale))
    bottom = min(size[1], math.ceil((y + h + margin) * scale))
    if right <= left or bottom <= top:
        return (0, 0, size[0], size[1])
    return (left, top, right, bottom)


def from_pixels(rgb: np.ndarray, orig_size: tuple[int, int], *, side: int = SIDE,
                quality: int = QUALITY, crop: Box | None = None,
                max_bytes: int | None = None) -> Thumbnail:
    """A preview of pixels already decoded (``rgb`` HxWx3, the upright original scaled
    to ``rgb``'s width / ``orig_size[0]``); ``crop`` shows only the region around that
    box (original coordinates). No file is read."""
    image = Image.fromarray(np.ascontiguousarray(rgb))
    orig_w, orig_h = orig_size
    if crop is not None:
        scale = image.width / max(1, orig_w)
        left, top, right, bottom = _crop_region(crop, scale, image.size)
        image = image.crop((left, top, right, bottom))
        # A crop shows a region of the original: box overlays use that region's size.
        orig_w, orig_h = round((right - left) / scale), round((bottom - top) / scale)
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    data = _encode(image, quality, max_bytes)
    with Image.open(io.BytesIO(data)) as encoded:  # the cap may have shrunk it
        width, height = encoded.size
    return Thumbnail(data, width, height, orig_w, orig_h)


def photo(path: Path, *, side: int = SIDE, quality: int = QUALITY, crop: Box | None = None,
          max_bytes: int | None = None) -> Thumbnail | None:
    """A preview of the photo at ``path`` (long side ``side``), or None if it cannot be read.

    Decoded at about the preview's size: a JPEG through DCT scaling (1/2, 1/4, 1/8), so a
    12 MP photo costs a few milliseconds. With ``crop`` the region around that face is
    decoded at a size that keeps the face sharp (up to 8x ``side``), then cut out.
    """
    from facefinder.decode import DecodeError, load_image

    decode_side = side
    if crop is not None:  # enough pixels that the cut-out region is still ``side`` wide
        region = (1 + 2 * CROP_MARGIN) * max(crop[2], crop[3], 1)
        decode_side = min(side * 8, max(side, math.ceil(side * _long_side(path) / region)))
    try:
        decoded = load_image(Path(path), decode_side)
        return from_pixels(decoded.rgb, decoded.orig_size, side=side, quality=quality,
                           crop=crop, max_bytes=max_bytes)
    except (DecodeError, OSError, ValueError, MemoryError):
        return None


def _long_side(path: Path) -> int:
    """The long side of a photo from its header alone (0 when it cannot be read)."""
    from facefinder.decode import _open_formats

    try:
        with Image.open(path, formats=_open_formats()) as image:
            return max(image.size)
    except Exception:  # load_image says why, if it matters
        return 0


def video_frame(path: Path, at: float, *, side: int = SIDE, quality: int = QUALITY,
                max_bytes: int | None = None) -> Thumbnail | None:
    """A preview of the video frame ``at`` seconds after its first frame, or None.

    ``at`` counts like the search's sampling (:mod:`facefinder.video`): from the first
    frame's timestamp, so the span a report gives and the frame it shows agree. Seeks to
    the keyframe before ``at`` instead of decoding the whole clip up to it, and falls
    back to :func:`facefinder.video.sample_frames` (decoding from the start) when the
    container cannot seek. Boxes of a video are in the upright frame's pixels, hence the
    ``orig`` size given is the upright full-size frame's.
    """
    from facefinder.video import VideoError, sample_frames

    try:
        found = _seek_frame(path, at, side)
    except Exception:  # any container trouble: try the plain way
        found = None
    try:
        if found is None:
            info, frames = sample_frames(Path(path), 1.0, side)
            try:
                for frame in frames:
                    if frame.time + 0.5 >= at:
                        found = (frame.rgb, info.size)
                        break
            finally:
                frames.close()  # type: ignore[attr-defined]
        if found is None:
            return None
        rgb, size = found
        return from_pixels(rgb, size, side=side, quality=quality, max_bytes=max_bytes)
    except (VideoError, OSError, ValueError, MemoryError):
        return None


def _seek_frame(path: Path, at: float, side: int) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The first frame at or after ``at`` (seconds from the first frame), found by
    seeking to the keyframe before it; None when there is none."""
    import av

    from facefinder.video import upright_pixels

    with av.open(str(path), mode="r") as container:
        stream = container.streams.video[0]
        base = stream.time_base
        start = float((stream.start_time or 0) * base) if base is not None else 0.0
        if base is not None and at > 0:
            container.seek(int((start + at) / base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.time is None or frame.time - start + 1e-3 >= at:
                rgb, _scale, size = upright_pixels(frame, side)
                return rgb, size
    return None


def data_uri(jpeg: bytes) -> str:
    """``data:image/jpeg;base64,...`` for an ``<img src>`` that needs no file beside it."""
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


__all__ = ["SIDE", "Thumbnail", "data_uri", "from_pixels", "photo", "video_frame"]
