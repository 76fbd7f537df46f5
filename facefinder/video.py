"""Sample a video's frames at a fixed rate (default one per second) as upright-size RGB.

Why sampling: a face that matters stays on screen for seconds, so one frame a second finds
it while costing a 25-60 fps clip only a few percent of its frames in detection and
embedding (decoding every frame is still needed, but that is cheap next to the networks).
Frames are taken on a fixed time grid (0 s, 1 s, 2 s, ... for 1 fps) measured from the
first frame, so two runs sample the same frames and the index stays reproducible.

PyAV (FFmpeg's libraries in a wheel for Windows, macOS and Linux) does the decoding; it is
imported lazily so photo-only runs never load it. Everything it can raise becomes a
:class:`VideoError` with one short line for the user, and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefinder.decode import DECODE_BUDGET_BYTES, open_regular
from facefinder.messages import one_line


class VideoError(Exception):
    """A video that cannot be decoded; ``str()`` is the one-line reason for the user."""


# Bumped when this module changes what a video's analysis computes (part of its key in
# the face index, so videos are read again once). 2: frames turned upright by the
# video's display matrix (a phone's portrait video), boxes in that frame.
VIDEO_REVISION = 2


# What decoding a video takes per pixel of its frame: the decoder's reference frames
# and those in flight on its threads (a 62 KB file of 16000 x 16000 H.264 frames took
# 2.07 GB, 8 bytes a pixel); an 8K video (33 megapixels) stays far inside the budget.
VIDEO_BYTES_PER_PIXEL = 8


@dataclass
class VideoInfo:
    """What is known about a video before its frames are read."""

    size: tuple[int, int]  # width, height of the frames as shown (upright once read)
    duration: float | None  # seconds, when the container says
    created: str | None  # "YYYY-MM-DD HH:MM:SS" local time, from the container's metadata


@dataclass
class Frame:
    """One sampled frame, scaled so its long side is at most the decode size."""

    time: float  # seconds from the start of the video
    rgb: np.ndarray  # HxWx3 uint8
    scale: float  # rgb width / stored width (<= 1)


def _created(metadata: dict) -> str | None:
    """The container's creation_time (UTC, ISO 8601) as local "YYYY-MM-DD HH:MM:SS".

    Phones write UTC here while EXIF in photos is local time; converting keeps videos and
    photos of one afternoon together when the output is sorted by date. Cameras without a
    clock write 1904-01-01 (the QuickTime epoch) or 1970; those count as missing.
    """
    value = metadata.get("creation_time") or metadata.get("date")
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.year < 1980:
        return None
    if when.tzinfo is not None:
        when = when.astimezone().replace(tzinfo=None)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def sample_frames(
    path: Path, fps: float, max_side: int
) -> tuple[VideoInfo, Iterator[Frame]]:
    """Open ``path`` and return its info and a generator of frames sampled at ``fps``.

    Raises VideoError when the file cannot be opened or has no video track; the generator
    raises VideoError if decoding fails before any frame was produced (a partly broken
    video keeps the frames read before the damage).
    """
    try:
        import av
    except ImportError as exc:
        raise VideoError("video support not installed (pip install av)") from exc
    try:
        open_regular(path).close()  # (a FIFO put in its place would hang the reading)
        container = av.open(str(path), mode="r")
    except OSError as exc:
        raise VideoError(f"cannot read file: {exc.strerror or one_line(exc)}") from None
    except Exception as exc:  # av raises its own FFmpegError subclasses
        raise VideoError(f"cannot open video: {one_line(exc)}") from None
    try:
        streams = container.streams.video
        if not streams:
            raise VideoError("no video track")
        stream = streams[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoError("video track has no picture size")
        if width * height * VIDEO_BYTES_PER_PIXEL > DECODE_BUDGET_BYTES:
            raise VideoError(f"video frames too large to decode in the memory one worker "
                             f"may use ({width}x{height})")
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        created = _created({**dict(stream.metadata), **dict(container.metadata)})
    except VideoError:
        container.close()
        raise
    except Exception as exc:
        container.close()
        raise VideoError(f"cannot read video: {one_line(exc)}") from None
    info = VideoInfo(size=(width, height), duration=duration, created=created)
    return info, _frames(container, stream, fps, max_side, info)


def upright_pixels(frame, max_side: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """A decoded frame's RGB pixels, long side <= ``max_side``, turned upright as the
    video's display matrix says (a phone stores a portrait video's frames sideways, an
    upside-down one turned over, and says how to show them), with the scale from the
    upright full-size frame and that frame's size (width, height): the faces are found
    in the picture as it is watched, and their boxes are in its pixels."""
    factor = min(1.0, max_side / max(frame.width, frame.height))
    width = max(2, round(frame.width * factor))
    height = max(2, round(frame.height * factor))
    rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
    # counter-clockwise degrees to show it (FFmpeg's display matrix): np.rot90's sense
    turns = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4
    size = (frame.width, frame.height) if turns % 2 == 0 else (frame.height, frame.width)
    if turns:
        rgb = np.rot90(rgb, k=turns)
    return np.ascontiguousarray(rgb), width / frame.width, size


# Damaged packets a video may have before the rest of it is given up: a damaged spot
# costs a packet or two (the frames after it come back at the next keyframe), while a
# file of random bytes fails on every one.
MAX_BAD_PACKETS = 50


def _decoded(container, stream) -> Iterator:
    """The video's frames, packet by packet: a damaged packet (a bad sector, a copy
    that went wrong) is passed over, so one damaged spot no longer ends the video and
    loses every frame after it; after ``MAX_BAD_PACKETS`` the error stands."""
    import av

    bad = 0
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            bad += 1
            if bad > MAX_BAD_PACKETS:
                raise


def _frames(container, stream, fps: float, max_side: int,
            info: VideoInfo | None = None) -> Iterator[Frame]:
    """Decode every frame, keep the first at or after each tick of the 1/fps grid
    (upright: ``upright_pixels``, and ``info.size`` made the upright size)."""
    step = 1.0 / fps
    next_tick = 0.0
    start: float | None = None
    produced = 0
    try:
        stream.thread_type = "AUTO"  # frame threads; the pictures come out the same
        for index, frame in enumerate(_decoded(container, stream)):
            stamp = frame.time
            if stamp is None:  # no timestamps (some AVI): count frames instead
                rate = float(stream.average_rate or 25)
                stamp = index / rate
            if start is None:
                start = stamp
            when = max(0.0, stamp - start)
            if when + 1e-6 < next_tick:
                continue
            next_tick = (math.floor(when / step + 1e-6) + 1) * step
            rgb, scale, size = upright_pixels(frame, max_side)
            if info is not None:
                info.size = size  # (a phone's portrait video: its frames stored turned)
            produced += 1
            yield Frame(time=round(when, 3), rgb=rgb, scale=scale)
    except VideoError:
        raise
    except Exception as exc:
        if produced == 0:
            raise VideoError(f"cannot decode video: {one_line(exc)}") from None
        # Damage after some frames: keep what was read (a cut-off download, typically).
    finally:
        container.close()
