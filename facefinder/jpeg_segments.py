"""A JPEG's segments in plain bytes: its XMP segment (find it, hash a file without it),
and how its first scan is laid out (what decoding it will hold in memory).

Kept apart from :mod:`facefinder.xmp` (which needs exiv2) because copying needs it on
every run, with or without ``--xmp`` and without exiv2 installed: a JPEG copy that
``--xmp embed`` annotated is, apart from its XMP segment (which carries the finder's
namespace), byte for byte the original, and a re-run must recognise it as "already
there" instead of copying the original again as ``name (2).jpg``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import BinaryIO

NAMESPACE = "https://facefinder.invalid/ns/xmp/1.0/"  # the finder's; .invalid: no real site
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
EXT_XMP_HEADER = b"http://ns.adobe.com/xmp/extension/\x00"
CHUNK = 1 << 20


class NotJpeg(Exception):
    """Not a JPEG, or one whose segments this module cannot follow."""


def segments(handle: BinaryIO) -> list[tuple[int, int, int, bytes]]:
    """(marker, start, end, first payload bytes) of each segment before the image data."""
    return _header(handle)[0]


def first_scan_components(handle: BinaryIO) -> int | None:
    """How many colour components a JPEG's first scan carries (None: no scan found).

    Fewer than the frame has means the scans are separate (a "non-interleaved" baseline
    JPEG): libjpeg then keeps the whole image's coefficients until the last scan, at any
    draft scale, as it does for a progressive JPEG. ``decode`` counts that memory."""
    try:
        _found, scan = _header(handle)
    except NotJpeg:
        return None
    if scan is None:
        return None
    handle.seek(scan + 4)  # the marker, the segment's length, then the component count
    count = handle.read(1)
    return count[0] if count else None


def scan_count(handle: BinaryIO, most: int) -> int:
    """How many scans the main image of a JPEG has (from its first scan to its end of
    image), counting stops past ``most``; 0 when it is not a JPEG or has no scan.

    A scan starts with the marker FF DA, which image data cannot hold (an FF there is
    followed by 00 or a restart number), and an Exif thumbnail's scans lie before the
    main image's first one."""
    try:
        _found, first = _header(handle)
    except NotJpeg:
        return 0
    if first is None:
        return 0
    handle.seek(first)
    count, carry = 0, b""
    while count <= most:
        block = handle.read(1 << 20)
        if not block:
            break
        data = carry + block
        end = data.find(b"\xff\xd9")
        count += data.count(b"\xff\xda", 0, end if end >= 0 else len(data))
        if end >= 0:
            break
        carry = data[-1:]  # a marker cut between two blocks
    return count


def _header(handle: BinaryIO) -> tuple[list[tuple[int, int, int, bytes]], int | None]:
    """The segments before the image data, and where the first scan starts (None when
    the image ends first)."""
    handle.seek(0)
    if handle.read(2) != b"\xff\xd8":
        raise NotJpeg("not a JPEG")
    out: list[tuple[int, int, int, bytes]] = []
    pos = 2
    while True:
        handle.seek(pos)
        head = handle.read(4)
        if len(head) < 2 or head[0] != 0xFF:
            raise NotJpeg("JPEG segment structure not understood")
        marker = head[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan
            return out, pos
        if marker == 0xD9:  # end of image
            return out, None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if len(head) < 4 or int.from_bytes(head[2:4], "big") < 2:
            raise NotJpeg("JPEG ends before its image data")
        end = pos + 2 + int.from_bytes(head[2:4], "big")
        out.append((marker, pos, end, handle.read(min(end - pos - 4, len(EXT_XMP_HEADER)))))
        pos = end


def xmp_segment(found: Sequence[tuple[int, int, int, bytes]]) -> tuple[int, int] | None:
    """(start, end) of the standard XMP APP1 segment among ``found``, if there is one."""
    for marker, start, end, head in found:
        if marker == 0xE1 and head.startswith(XMP_HEADER):
            return start, end
    return None


def xmp_span(handle: BinaryIO) -> tuple[tuple[int, int] | None, bool] | None:
    """(start, end) of a JPEG's XMP segment (None: it has none) and whether that XMP is
    the finder's (its namespace is in it); None when it is no JPEG understood here."""
    try:
        span = xmp_segment(segments(handle))
    except (NotJpeg, OSError):
        return None
    if span is None:
        return None, False
    handle.seek(span[0])
    return span, NAMESPACE.encode("ascii") in handle.read(span[1] - span[0])


def digest_without_xmp(handle: BinaryIO, *, only_ours: bool = False
                         ) -> tuple[str, bool] | None:
    """sha256 of a JPEG with its standard XMP segment left out, and whether that XMP is
    the finder's; None when it is no JPEG this module understands (or, with
    ``only_ours``, when its XMP is not the finder's: then nothing is hashed).

    Two files with the same digest differ at most in their XMP: how a copy annotated by
    ``--xmp embed`` is known to be the original's copy. Read in chunks (big photos).
    """
    found = xmp_span(handle)
    if found is None or (only_ours and not found[1]):
        return None
    (start, end), ours = found[0] or (0, 0), found[1]
    digest = hashlib.sha256()
    handle.seek(0)
    remaining = start
    while remaining > 0 and (block := handle.read(min(CHUNK, remaining))):
        digest.update(block)
        remaining -= len(block)
    handle.seek(end)
    while block := handle.read(CHUNK):
        digest.update(block)
    return digest.hexdigest(), ours


def without_xmp(data: bytes) -> bytes | None:
    """A JPEG's bytes without its XMP segment (None: not a JPEG understood here)."""
    try:
        span = xmp_segment(segments(io.BytesIO(data)))
    except NotJpeg:
        return None
    return data if span is None else data[:span[0]] + data[span[1]:]
