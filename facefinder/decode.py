"""Read one image file into upright RGB pixels, small enough for face detection.

This runs for every photo (about 2,000 a minute), so it decodes JPEGs at reduced size
(libjpeg's DCT scaling via ``Image.draft``) instead of decoding 24 megapixels and then
throwing most of them away. It is also the place where broken files surface, so every
failure becomes a :class:`DecodeError` whose text is one short line for the user.

Files are opened read-only and only read; Pillow's global switches
(``LOAD_TRUNCATED_IMAGES``, ``MAX_IMAGE_PIXELS``) are left as they are, so a truncated
photo is reported instead of silently half-decoded.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from facefinder.jpeg_segments import first_scan_components, scan_count
from facefinder.messages import one_line

# Memory one decode may take (per worker process): the pixels as decoded (after JPEG DCT
# scaling) plus one converted copy. A 13000x13000 RGBA PNG (657 KB on disk) would need
# 1.35 GB and is refused with a reason instead of being left to the OOM killer; a 200 MP
# JPEG decodes at 1/8 scale (3 MP) and is fine. ``executors.resolve_jobs`` counts this
# budget when it picks how many workers fit in the PC's free memory.
DECODE_BUDGET_BYTES = 1 << 30

# Formats photos come in, each recognised by a signature. Letting Pillow try all of its
# formats means magic-less ones (TGA, for example) "recognise" random bytes and decode
# garbage instead of saying "not an image".
_WANTED_FORMATS = (
    "JPEG", "MPO", "PNG", "WEBP", "BMP", "DIB", "TIFF", "GIF", "HEIF", "AVIF", "JPEG2000",
)

# ISO-BMFF brands (bytes 8..12 after "ftyp") that mean HEIF/HEIC or AVIF.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}

# EXIF Orientation value -> transpose that makes the stored pixels upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112
_EXIF_IFD = 0x8769
_DATE_TAGS = (0x9003, 0x9004)  # DateTimeOriginal, then DateTimeDigitized
_EXIF_DATE = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")

# We enforce our own pixel limit, so Pillow's "possible decompression bomb" warning for
# 90-180 MP images would only be noise in the user's console.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Pillow warns about broken metadata ("Corrupt EXIF data", "Tag data larger than file")
# and still decodes the pixels; the photo is fine and a warning on the terminal is noise.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


class DecodeError(Exception):
    """A file that cannot be turned into pixels; ``str()`` is the one-line user reason."""


@dataclass
class DecodedImage:
    """Pixels for detection plus what is needed to map boxes back to the original."""

    rgb: np.ndarray  # HxWx3 uint8, C-contiguous, upright (EXIF orientation applied); read-only
    orig_size: tuple[int, int]  # upright (w, h) of the full-resolution image
    scale: float  # rgb width / orig width (<= 1)
    taken: str | None = None  # EXIF capture time "YYYY-MM-DD HH:MM:SS" (camera's local time)


@functools.cache
def _open_formats() -> tuple[str, ...]:
    """Register pillow-heif once, then the wanted formats this Pillow can actually open.

    Done lazily on the first decode rather than at import, so importing this module (in
    the main process, or to read ``DecodeError``) stays cheap. Registering an opener is
    Pillow's own process-wide state and the same for every caller, hence one cache.
    """
    if _heif_available():
        import pillow_heif

        pillow_heif.register_heif_opener()
        if "AVIF" not in Image.OPEN and hasattr(pillow_heif, "register_avif_opener"):
            pillow_heif.register_avif_opener()  # older Pillow: AVIF via pillow-heif
    Image.init()
    return tuple(name for name in _WANTED_FORMATS if name in Image.OPEN)


@functools.cache
def _heif_available() -> bool:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


def _unreadable_reason(handle: object) -> str:
    """Why Pillow did not recognise the file: a missing HEIF/AVIF plugin, or not an image."""
    try:
        handle.seek(0)  # type: ignore[attr-defined]
        head = handle.read(12)  # type: ignore[attr-defined]
    except OSError:
        head = b""
    if len(head) == 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS and not _heif_available():
            return "HEIC support not installed (pillow-heif)"
        if brand in _AVIF_BRANDS and "AVIF" not in Image.OPEN:
            return "AVIF support not installed (needs Pillow 11.2 or newer)"
    return "not an image (or an unsupported format)"


def _too_large(pixels: int, needed: int) -> DecodeError:
    return DecodeError(f"image too large to decode in the memory one worker may use "
                       f"({round(pixels / 1e6)} megapixels, ~{needed / 2**30:.1f} GB)")


def _decode_bytes(image: Image.Image, size: tuple[int, int]) -> int:
    """Bytes to decode ``image`` at ``size``: its buffer in its own mode, plus a copy;
    more where the way to RGB takes more (measured peaks, 2026-11-30: a lossless WebP
    is decoded into a buffer of libwebp's, then copied, then composited, 16-21 bytes a
    pixel; a palette image with transparency goes through RGBA, about 9)."""
    bands = len(image.getbands()) if image.mode else 4
    depth = 2 if image.mode in ("I;16", "I;16B", "I;16L", "I") or "16" in image.mode else 1
    if image.mode in ("I", "F"):
        depth = 4
    per_pixel = max(bands, 3) * depth * 2
    if image.format == "WEBP":
        per_pixel = max(per_pixel, 21)
    elif image.mode in ("P", "PA") and (image.mode == "PA" or "transparency" in image.info):
        per_pixel = max(per_pixel, 9)
    return size[0] * size[1] * per_pixel


def _coefficient_bytes(image: Image.Image, width: int, height: int) -> int:
    """What a JPEG of ``width`` x ``height`` in several scans needs besides its pixels
    (a progressive one, or a baseline one whose first scan does not carry every colour
    component): libjpeg keeps every DCT coefficient of the whole image (2 bytes each, a
    component's share set by its sampling) until the last scan, at any draft scale. A
    9 KB progressive file claiming 30000x30000 pixels took 2.85 GB that way while its
    1/8-scale pixels looked harmless; a 12 MP phone photo needs 36 MB. 0 for images
    decoded in one scan."""
    if image.format not in ("JPEG", "MPO"):
        return 0
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * 3
    if not image.info.get("progressive"):
        scan = _first_scan_components(image)
        if scan is not None and scan >= len(layers):
            return 0  # one interleaved scan: decoded a band at a time
    h_max = max(h for _id, h, _v, _q in layers) or 1
    v_max = max(v for _id, _h, v, _q in layers) or 1
    share = sum(h * v for _id, h, v, _q in layers) / (h_max * v_max)
    return int(width * height * share * 2)


# Scans a JPEG in several scans may have: a progressive photo has about ten (libjpeg's
# default script), the most aggressive encoders a few dozen; each scan is a pass over
# the whole image's coefficients, so a file repeating one 95-byte scan 20,000 times kept
# a worker busy for over a minute.
MAX_SCANS = 500


def _scans(image: Image.Image) -> int:
    """``jpeg_segments.scan_count`` of the file ``image`` was opened from, counted to
    just past ``MAX_SCANS``; 0 when it cannot be read again."""
    return _read_again(image, lambda handle: scan_count(handle, MAX_SCANS)) or 0


def _first_scan_components(image: Image.Image) -> int | None:
    """``jpeg_segments.first_scan_components`` of the file ``image`` was opened from;
    None when it cannot be read again."""
    return _read_again(image, first_scan_components)


def _read_again(image: Image.Image, read: Callable[[BinaryIO], int | None]) -> int | None:
    """``read`` of the file ``image`` was opened from, its position kept for Pillow;
    None when the file cannot be read again."""
    handle = getattr(image, "fp", None)
    if handle is None:
        return None
    try:
        at = handle.tell()
        try:
            return read(handle)
        finally:
            handle.seek(at)
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _our_bomb_check() -> Iterator[None]:
    """Open without Pillow's pixel-count limit: ours (``DECODE_BUDGET_BYTES``) looks at
    the size actually decoded, so a huge JPEG that draft mode shrinks is not refused."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8; anything missing, odd or unparsable counts as upright."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # broken EXIF must not cost the photo itself
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def capture_time(image: Image.Image) -> str | None:
    """EXIF DateTimeOriginal (or DateTimeDigitized) as "YYYY-MM-DD HH:MM:SS", else None.

    Read while the file is open for decoding anyway, so knowing when a photo was taken
    costs no extra read. Cameras write local time without a zone, and that is what a user
    means by "photos from 2004", so it is kept as written. Placeholder dates
    ("0000:00:00 00:00:00") and unparsable values count as missing.
    """
    try:
        exif = image.getexif().get_ifd(_EXIF_IFD)
    except Exception:  # broken EXIF must not cost the photo itself
        return None
    for tag in _DATE_TAGS:
        value = exif.get(tag)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        found = _EXIF_DATE.match(value.strip()) if isinstance(value, str) else None
        if found and found.group(1) != "0000" and found.group(2) != "00":
            y, mo, d, h, mi, sec = found.groups()
            return f"{y}-{mo}-{d} {h}:{mi}:{sec}"
    return None


def _scale_high_depth(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale -> 8-bit ``L``.

    ``convert("L")`` clips rather than scales these (a 16-bit PNG would come out almost
    white), so the value range is mapped explicitly: full 16-bit range for integer data
    that exceeds 8 bits, 0..1 for floats that fit it, else the data's own min..max.
    """
    values = np.asarray(image)
    if values.ndim != 2:
        return image.convert("L")
    # one float copy, worked on in place: a 9000 x 9000 scan took 1.7 GB through the
    # temporaries of a chain of whole-array expressions, twice the decode budget
    data = values.astype(np.float32)
    del values
    if image.mode == "F":  # only float pixels can be NaN or infinite
        finite = np.where(np.isfinite(data), data, np.nan)  # made once, for both ends
        with np.errstate(invalid="ignore"):
            low, high = float(np.nanmin(finite)), float(np.nanmax(finite))
        del finite
        if not (np.isfinite(low) and np.isfinite(high)):
            return Image.new("L", image.size, 0)
    else:
        low, high = float(data.min()), float(data.max())
    if image.mode == "F":
        if low >= 0.0 and high <= 1.0:
            low, high = 0.0, 1.0
        elif low >= 0.0 and high <= 255.0:
            low, high = 0.0, 255.0
    elif low >= 0.0 and high <= 255.0:
        low, high = 0.0, 255.0
    elif low >= 0.0 and high <= 65535.0:
        low, high = 0.0, 65535.0
    span = high - low or 1.0
    np.subtract(data, low, out=data)
    np.multiply(data, 255.0 / span, out=data)
    np.nan_to_num(data, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.add(data, 0.5, out=data)
    np.clip(data, 0, 255, out=data)
    return Image.fromarray(data.astype(np.uint8), "L")


def _working_mode(image: Image.Image) -> Image.Image:
    """Convert to RGB, RGBA or L — the modes that resize well and map simply to RGB.

    Alpha is kept through the resize (Pillow resizes RGBA premultiplied) and composited
    on white afterwards on the smaller image.
    """
    mode = image.mode
    if mode in ("RGB", "RGBA", "L"):
        return image
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode in ("LA", "La", "RGBa", "RGBX"):
        return image.convert("RGB" if mode == "RGBX" else "RGBA")
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I") or mode == "F":
        return _scale_high_depth(image)
    return image.convert("RGB")  # CMYK, YCbCr, HSV, ...


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _decode(image: Image.Image, max_side: int, coarse: bool = False) -> DecodedImage:
    width, height = image.size  # as stored, before any EXIF rotation
    if width <= 0 or height <= 0:
        raise DecodeError("image has no pixels")

    long_side = max(width, height)
    target = (width, height)
    if long_side > max_side:
        ratio = max_side / long_side
        target = (max(1, round(width * ratio)), max(1, round(height * ratio)))
        if image.format in ("JPEG", "MPO"):
            # Ask for at least the target size: draft picks the largest power-of-2 DCT
            # reduction that still gives >= this, so only a small resize remains.
            image.draft("RGB", (max(1, -(-width * max_side // long_side)),
                                max(1, -(-height * max_side // long_side))))
    # the size draft mode settled on, and what libjpeg keeps at full size whatever it
    coefficients = _coefficient_bytes(image, width, height)
    needed = _decode_bytes(image, image.size) + coefficients
    if coefficients and _scans(image) > MAX_SCANS:
        raise DecodeError(f"a JPEG in over {MAX_SCANS} scans (a progressive photo has about "
                          "ten; each scan is decoded over the whole image): not decoded")
    if needed > DECODE_BUDGET_BYTES:
        raise _too_large(width * height, needed)
    image.load()
    orientation = _orientation(image)
    taken = capture_time(image)

    image = _working_mode(image)
    if coarse:
        # Stop at the codec's own reduction (JPEG DCT scaling) or a whole-number box
        # reduction: the long side ends between max_side and twice that. Resampling a
        # 12 MP photo's 2016 px draft to exactly 1600 px cost as much as decoding it.
        factor = max(image.size) // max_side
        if factor >= 2:
            image = image.reduce(factor)
    elif image.size != target:
        image = image.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
    transpose = _UPRIGHT.get(orientation)
    if transpose is not None:
        image = image.transpose(transpose)
    image = _to_rgb(image)

    upright = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    rgb = np.asarray(image)
    return DecodedImage(
        rgb=rgb, orig_size=upright, scale=rgb.shape[1] / upright[0], taken=taken
    )


def _allow_big_png_metadata() -> None:
    """Let a PNG carry metadata over Pillow's 1 MB text-chunk guard (a 3 MB ICC profile,
    a photo app's compressed XMP): the photo was refused as corrupt. A compressed chunk
    may unpack to more than the file holds, so a bound stays: 64 MB a chunk and 256 MB in
    all, well inside a worker's memory; the pixels keep their own budget
    (``_our_bomb_check``)."""
    from PIL import PngImagePlugin

    PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, 64 * 2**20)
    PngImagePlugin.MAX_TEXT_MEMORY = max(PngImagePlugin.MAX_TEXT_MEMORY, 256 * 2**20)


_allow_big_png_metadata()


def open_regular(path: Path | str) -> BinaryIO:
    """``path`` opened for reading, refused (OSError) unless it is a regular file.

    Why: the walk lists a photo, and by the time a worker reads it, it may have been
    replaced by a FIFO (reading one waits for a writer forever: the run would hang) or a
    device. Opened without waiting (``O_NONBLOCK``, which changes nothing for a file),
    then asked what it is."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO or device): not read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def load_image(path: Path | bytes, max_side: int = 1600, *, coarse: bool = False
               ) -> DecodedImage:
    """Decode ``path`` by content (not by its suffix), upright, long side <= ``max_side``.

    ``coarse``: only reduce as far as is cheap, so the long side is at least ``max_side``
    and under twice that (JPEG DCT scaling, else a whole-number box reduction) instead
    of resampled to exactly ``max_side``: what the face analysis wants, as it cuts faces
    from these pixels and makes its own smaller copy for the detector anyway.

    ``path`` may also be the file's bytes (a photo uploaded to the review page): the same
    checks apply, nothing is written anywhere.

    Raises :class:`DecodeError` with a one-line reason for anything that is not a fully
    readable image: empty, unreadable, not an image, truncated/corrupt, or too large.
    Multi-frame files (GIF, TIFF, WebP, MPO) give their first frame.
    """
    formats = _open_formats()
    try:
        handle: BinaryIO = (io.BytesIO(path) if isinstance(path, bytes)
                            else open_regular(path))  # closed below
    except OSError as error:
        raise DecodeError(f"cannot read file: {error.strerror or one_line(error)}") from None
    try:
        empty = (not path) if isinstance(path, bytes) else (
            os.fstat(handle.fileno()).st_size == 0)
        if empty:
            raise DecodeError("empty file")
        try:
            with _our_bomb_check():
                image = Image.open(handle, formats=formats)
        except UnidentifiedImageError:
            raise DecodeError(_unreadable_reason(handle)) from None
        try:
            return _decode(image, max_side, coarse)
        finally:
            image.close()
    except DecodeError:
        raise
    except MemoryError:
        raise DecodeError("not enough memory to decode this image") from None
    except OSError as error:
        if error.errno is not None:  # a real I/O failure (bad sector, stick pulled out)
            raise DecodeError(f"cannot read file: {error.strerror or one_line(error)}") from None
        # Pillow signals bad data with errno-less OSErrors ("image file is truncated",
        # "broken data stream", "decoder error -2").
        raise DecodeError("truncated or corrupt image data") from None
    except (SyntaxError, EOFError, ValueError, IndexError, TypeError, KeyError) as error:
        raise DecodeError(f"corrupt image data ({one_line(error, 80)})") from None
    except Exception as error:
        raise DecodeError(f"cannot decode image: {one_line(error)}") from None
    finally:
        handle.close()
