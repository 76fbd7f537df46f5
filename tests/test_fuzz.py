"""Fuzz: the finder, run as a user runs it, over an album built to break it.

:func:`make_hostile_album` writes real files: decompression bombs, broken and truncated
media, images in odd modes, a FIFO, sockets and symlink loops, names with control
characters, formula prefixes, undecodable bytes and Windows device names, plus a few real
face photos (some under the nastiest names) and a reference folder. It returns what it
made and what the finder should make of each file. ``finder.py`` then runs over it twice
as a subprocess (the second run answered from the face index), and each test checks one
promise: no hang, no traceback, every file accounted for, no raw control character on
the terminal, no formula in a CSV cell, the right people found, the originals untouched.

For a manual run, write the album somewhere and point the finder at it::

    python tests/test_fuzz.py /tmp/hostile
    python finder.py /tmp/hostile/collection --reference /tmp/hostile/reference \\
        --index /tmp/hostile/index.sqlite --json /tmp/hostile/out.json

(``/tmp/hostile/expected.json`` lists what should become of every file.)

POSIX only: FIFOs, sockets and file names that are not valid UTF-8 do not exist on Windows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, copy_references
from PIL import Image

from facefinder.walk import COPIES_NOTE

pytestmark = pytest.mark.skipif(
    not hasattr(os, "mkfifo") or sys.platform == "win32",
    reason="FIFOs, sockets and undecodable file names are POSIX things")

RUN_TIMEOUT = 90  # seconds per finder run; a hang (a FIFO opened for reading) fails here
PEOPLE = ("madonna", "ben_afflek")
FORMULA_PERSON = "=elton_john"  # elton_john's references, in a folder named like a formula
FORMULA_STARTS = ("=", "+", "-", "@")
# Copy failures that are the destination file system's fault, not the finder's: a name it
# cannot take. Any other failed copy makes exit status 3 a failure of this test.
LEGIT_COPY_FAILURES = ("File name too long", "Invalid argument", "Illegal byte sequence",
                       "Invalid or incomplete multibyte or wide character")


# --------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Expect:
    """What should become of one regular file the walker yields.

    ``outcome``:
      "match"      read, and every one of ``people`` found in it;
      "read"       read without error (listed in no "unreadable"); a face may or may not
                   be found (a degraded copy of a face, or no face at all);
      "unreadable" listed in the JSON report's "unreadable" with a one-line reason;
      "other"      not an image or video by its name: counted as an other file only;
      "any"        read or reported unreadable, either is fine (a bomb within the pixel
                   limit, a cut-off video) - but it must be accounted for.
    ``people``: whose face the file shows. A match for anyone else, or any match in a file
    without a face, is a wrong match.
    """

    outcome: str
    people: tuple[str, ...] = ()


@dataclass
class Album:
    """What :func:`make_hostile_album` made (``rel``: '/'-separated, as the walker says it,
    undecodable bytes as surrogate escapes, like ``os.fsdecode``)."""

    collection: Path
    reference: Path
    files: dict[str, Expect] = field(default_factory=dict)  # regular files the walk yields
    skipped: dict[str, str] = field(default_factory=dict)  # regular files skipped on purpose
    walk_errors: dict[str, str] = field(default_factory=dict)  # must be in "unreadable"
    not_files: dict[str, str] = field(default_factory=dict)  # FIFOs, sockets, folder links
    locked: list[Path] = field(default_factory=list)  # chmod 000; restored by unlock()

    def as_dict(self) -> dict:
        return {
            "collection": str(self.collection), "reference": str(self.reference),
            "files": {rel: asdict(e) for rel, e in self.files.items()},
            "skipped": self.skipped, "walk_errors": self.walk_errors,
            "not_files": self.not_files,
        }

    def unlock(self) -> None:
        for path in self.locked:
            if os.path.lexists(path):
                os.chmod(path, 0o700)


# --------------------------------------------------------------------------- crafting


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def png_bytes(width: int, height: int, idat: bytes, *, bit_depth: int = 8,
              color_type: int = 6) -> bytes:
    """A PNG with exactly this header and IDAT payload (color type 6: RGBA, 2: RGB)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def zero_rows(row_bytes: int, rows: int) -> bytes:
    """A complete zlib stream of ``rows`` zero-filled PNG rows (filter byte 0 each)."""
    packer = zlib.compressobj(9)
    block = bytes((row_bytes + 1) * 256)
    parts = []
    for start in range(0, rows, 256):
        parts.append(packer.compress(block[: (row_bytes + 1) * min(256, rows - start)]))
    parts.append(packer.flush())
    return b"".join(parts)


def png_16bit_rgb(image: Image.Image) -> bytes:
    """``image`` as a 16-bit-per-channel RGB PNG (Pillow cannot write those itself)."""
    pixels = np.asarray(image.convert("RGB"), dtype=">u2") * 257
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return png_bytes(image.width, image.height, zlib.compress(rows), bit_depth=16,
                     color_type=2)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """``jpeg`` with an APP1 segment holding ``payload`` right after SOI (pixels untouched)."""
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _ifd(entries: list[tuple[int, int, int, bytes]], next_ifd: int = 0) -> bytes:
    """A little-endian TIFF IFD; each entry (tag, type, count, 4-byte value or offset)."""
    body = b"".join(struct.pack("<HHI", t, k, n) + v.ljust(4, b"\x00") for t, k, n, v in entries)
    return struct.pack("<H", len(entries)) + body + struct.pack("<I", next_ifd)


def exif_orientation(value: int) -> bytes:
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + _ifd(
        [(0x0112, 3, 1, struct.pack("<H", value))])


def exif_dates(original: bytes, digitized: bytes) -> bytes:
    """EXIF whose DateTimeOriginal/Digitized hold the given (garbage) bytes."""
    sub_at = 8 + 2 + 12 + 4
    data_at = sub_at + 2 + 2 * 12 + 4
    tiff = b"II*\x00" + struct.pack("<I", 8)
    tiff += _ifd([(0x8769, 4, 1, struct.pack("<I", sub_at))])
    tiff += _ifd([(0x9003, 2, len(original), struct.pack("<I", data_at)),
                  (0x9004, 2, len(digitized), struct.pack("<I", data_at + len(original)))])
    return b"Exif\x00\x00" + tiff + original + digitized


def exif_huge_counts() -> bytes:
    """EXIF entries claiming gigabytes of values, at offsets far past the end."""
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + _ifd([
        (0x010F, 2, 0x7FFFFFFF, struct.pack("<I", 0x100)),
        (0x0112, 4, 0x40000000, struct.pack("<I", 0xFFFFFFF0)),
        (0x8769, 4, 1, struct.pack("<I", 0xFFFFFF00)),
    ], next_ifd=8)  # and IFD0 names itself as the next IFD: a loop


def exif_corrupt(rng: random.Random) -> bytes:
    """An EXIF header whose first IFD lies past the end, followed by noise."""
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 0xFFFFFF00) + rng.randbytes(300)


def patch_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF0-3) claiming ``width`` x ``height``."""
    at = 2
    while at + 4 <= len(jpeg):
        marker, length = jpeg[at + 1], struct.unpack(">H", jpeg[at + 2:at + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3):
            return (jpeg[:at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:])
        at += 2 + length
    raise ValueError("no frame header")


def gif_huge_screen() -> bytes:
    """A 1x1 GIF whose logical screen claims 65535 x 65535 (4.3 gigapixels)."""
    data = bytearray(encoded(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def video_of(image: Image.Image, seconds: int = 3, fps: int = 5) -> bytes:
    """A small real MP4 (MPEG-4 part 2) showing ``image`` for ``seconds``."""
    import av

    picture = image.convert("RGB").resize((image.width // 2 * 2, image.height // 2 * 2))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = picture.width, picture.height, "yuv420p"
        for number in range(seconds * fps):
            frame = av.VideoFrame.from_image(picture)
            frame.pts = number
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


# --------------------------------------------------------------------------- the album


class _Maker:
    """Writes files under the collection and records what should become of each."""

    def __init__(self, album: Album) -> None:
        self.album = album
        self.top = os.fsencode(album.collection)

    def path(self, rel: str | bytes) -> bytes:
        return self.top + b"/" + (rel if isinstance(rel, bytes) else os.fsencode(rel))

    def write(self, rel: str | bytes, data: bytes) -> str:
        path = self.path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return os.fsdecode(rel)

    def file(self, rel: str | bytes, data: bytes, outcome: str, *people: str) -> None:
        self.album.files[self.write(rel, data)] = Expect(outcome, tuple(people))

    def skipped(self, rel: str, data: bytes, why: str) -> None:
        self.album.skipped[self.write(rel, data)] = why

    def folder(self, rel: str) -> bytes:
        path = self.path(rel)
        os.makedirs(path, exist_ok=True)
        return path


def make_hostile_album(root: Path, celebrities: Path | None = None) -> Album:
    """Write ``root/collection`` (the hostile files) and ``root/reference`` (madonna,
    ben_afflek and elton_john as "=elton_john", 3 photos each); return what was made and
    what the finder should make of it. ``celebrities``: the 5-celebrity set (fetched
    into tests/.data when not given)."""
    if celebrities is None:
        from testdata import celebrity_dataset

        celebrities = celebrity_dataset()
    root = Path(root)
    (root / "collection").mkdir(parents=True)
    reference = copy_references(celebrities, root, PEOPLE, 3)
    # A person whose folder name a spreadsheet would run: the CSV's person cell.
    staging = copy_references(celebrities, root / "staging", ["elton_john"], 3)
    (staging / "elton_john").rename(reference / FORMULA_PERSON)
    shutil.rmtree(root / "staging")
    # One reference photo with a terminal escape in its name: notes about it are printed.
    first = sorted((reference / "madonna").iterdir())[0]
    first.rename(first.with_name("\x1b[31mred\x07 reference.jpg"))
    # A FIFO among the references must not block reading them; a broken one is a note.
    os.mkfifo(reference / "madonna" / "fifo.jpg")
    (reference / "ben_afflek" / "\x1b]2;broken\x07.jpg").write_bytes(b"not a photo\n")
    album = Album(root / "collection", reference)
    make = _Maker(album)
    rng = random.Random(20240229)

    def val(person: str, number: int) -> bytes:
        return sorted((celebrities / "val" / person).glob("*.jpg"))[number].read_bytes()

    # The held-out photos the first 3 references find at the default threshold (see
    # tests/test_cli.py); byte-exact copies (or the same pixels) must be found again.
    madonna0, madonna2 = val("madonna", 0), val("madonna", 2)
    ben0, ben1, ben4 = val("ben_afflek", 0), val("ben_afflek", 1), val("ben_afflek", 4)
    elton0 = val("elton_john", 0)
    m, b, e = "madonna", "ben_afflek", FORMULA_PERSON

    def pixels(jpeg: bytes) -> Image.Image:
        return Image.open(io.BytesIO(jpeg)).convert("RGB")

    def synthetic(fmt: str = "JPEG", size: tuple[int, int] = (64, 48)) -> bytes:
        return encoded(Image.new("RGB", size, (rng.randrange(256), 90, 160)), fmt)

    # ---- decompression bombs and lying headers
    make.file("bombs/png 13000x13000 zeros.png",  # 676 MB of RGBA in 650 KB, under 250 MP
              png_bytes(13000, 13000, zero_rows(13000 * 4, 13000)), "any")
    make.file("bombs/png 13000x13000 truncated.png",
              png_bytes(13000, 13000, zero_rows(13000 * 4, 64)), "unreadable")
    make.file("bombs/png 100000x100000.png",
              png_bytes(100000, 100000, zero_rows(64, 4)), "unreadable")
    make.file("bombs/jpeg 60000x60000 truncated.jpg",
              patch_jpeg_size(ben0, 60000, 60000)[: len(ben0) // 2], "unreadable")
    make.file("bombs/gif 65535x65535 screen.gif", gif_huge_screen(), "unreadable")
    # Small enough to decode, but the pixel data stops early: a complete zlib stream that
    # holds 64 of 2000 rows, and a stream cut off mid-way. A stream cut off is reported;
    # a *complete* stream that is too short is taken by Pillow's PNG decoder as the end of
    # the image (missing rows left blank) and is, knowingly, not caught here: checking it
    # would mean inflating every PNG twice. The run must still not crash or hang on it.
    make.file("broken/png short stream.png", png_bytes(2000, 2000, zero_rows(8000, 64)),
              "any")
    make.file("broken/png cut stream.png",
              png_bytes(2000, 2000, zero_rows(8000, 2000)[:200]), "unreadable")

    # ---- broken media, odd modes, EXIF garbage
    make.file("broken/1x1.png", encoded(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), "read")
    make.file("broken/1x1.jpg", encoded(Image.new("RGB", (1, 1), (1, 2, 3)), "JPEG"), "read")
    make.file("broken/empty.jpg", b"", "unreadable")
    for cut, label in ((2, "2 bytes"), (300, "300 bytes"), (len(madonna0) // 2, "half")):
        make.file(f"broken/truncated at {label}.jpg", madonna0[:cut], "unreadable")
    make.file("broken/truncated before EOI.jpg", madonna0[:-2], "any", m)
    for suffix in ("jpg", "png", "heic", "webp", "mp4"):
        make.file(f"broken/random.{suffix}", rng.randbytes(4096), "unreadable")
    make.file("broken/fake ftyp.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
              + rng.randbytes(2048), "unreadable")
    make.file("broken/fake ftyp.mp4", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
              + rng.randbytes(2048), "unreadable")
    make.file("broken/text.jpg", b"This is not a photo, just words.\n" * 20, "unreadable")
    make.file("broken/html.png", b"<!DOCTYPE html>\n<html><body><img src=x onerror=alert(1)>"
              b"</body></html>\n", "unreadable")
    make.file("broken/png named.jpg", encoded(pixels(madonna0), "PNG"), "match", m)
    make.file("broken/exif corrupt.jpg", with_app1(madonna0, exif_corrupt(rng)), "match", m)
    make.file("broken/exif orientation 99.jpg", with_app1(ben0, exif_orientation(99)),
              "match", b)
    make.file("broken/exif date garbage.jpg", with_app1(
        ben1, exif_dates(b"garbage\xff\xfe\x00", b"2019:13:45 25:61:61\x00")), "match", b)
    make.file("broken/exif huge counts.jpg", with_app1(ben4, exif_huge_counts()), "match", b)
    make.file("broken/cmyk.jpg", encoded(pixels(madonna2).convert("CMYK"), "JPEG",
                                         quality=95), "read", m)
    make.file("broken/16-bit rgb.png", png_16bit_rgb(pixels(ben0)), "match", b)
    grey = np.asarray(pixels(madonna0).convert("L"), dtype=np.uint16) * 257
    make.file("broken/16-bit grey.png", encoded(Image.fromarray(grey), "PNG"), "read", m)
    make.file("broken/palette transparent.png", encoded(
        pixels(madonna2).convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
        "read", m)
    frames = [pixels(madonna0), Image.new("RGB", (200, 200)), pixels(ben0).resize((200, 200))]
    make.file("broken/multi-frame.gif", encoded(frames[0], "GIF", save_all=True,
                                                append_images=frames[1:], duration=100,
                                                loop=0), "read", m, b)
    make.file("broken/multi-page.tif", encoded(pixels(ben1), "TIFF", save_all=True,
                                               append_images=[pixels(ben4)]), "match", b)
    movie = video_of(pixels(madonna0))
    make.file("broken/face.mp4", movie, "read", m)
    make.file("broken/truncated.mp4", movie[: len(movie) // 2], "any", m)
    make.file("broken/empty.mov", b"", "unreadable")
    make.file("broken/notes.txt", b"not a photo\n", "other")

    # ---- formula injection: at the top, so the CSV's path cell starts with the prefix
    make.file('=HYPERLINK("evil.example","click").jpg', madonna0, "match", m)
    make.file("+1.jpg", madonna2, "match", m)
    make.file("-cmd.jpg", ben0, "match", b)
    make.file("@x.jpg", ben1, "match", b)
    make.file("=1+2.png", synthetic("PNG"), "read")
    make.file("+folder/inside.jpg", madonna2, "match", m)
    make.file("names/elton.jpg", elton0, "match", e)
    # Broken files whose names drive the terminal, at the top so they are among the first
    # unreadable files the console lists (a reason that quotes the path must escape it).
    make.file("\x1b]0;pwned\x07.mp4", rng.randbytes(4096), "unreadable")
    make.file("\x1b[5mblink\r.jpg", rng.randbytes(4096), "unreadable")
    make.file("names/new\nline broken.mov", b"", "unreadable")

    # ---- control characters and other hostile names
    make.file("names/\x1b]0;title\x07.jpg", ben4, "match", b)  # sets the terminal title
    make.file("names/\x1b[2J clear.jpg", madonna0, "match", m)  # clears the screen
    make.file("names/new\nline.jpg", ben0, "match", b)
    make.file("names/carriage\rreturn.jpg", madonna2, "match", m)
    make.file("names/tab\there.jpg", ben1, "match", b)
    make.file("names/\x9b31m c1 csi.jpg", synthetic(), "read")  # the 8-bit CSI
    make.file("names/del\x7f.jpg", synthetic(), "read")
    make.file("names/\x1b[31mred folder/inside.jpg", ben0, "match", b)
    make.file(b"names/caf\xe9.jpg", madonna0, "match", m)  # Latin-1, not UTF-8
    make.file(b"names/\xff\xfe bytes.jpg", ben4, "match", b)
    make.file("names/" + "L" * (250 - len(" ben.jpg")) + " ben.jpg", ben0, "match", b)
    make.file("names/" + "\u00fc" * 123 + ".jpg", madonna2, "match", m)  # 250 bytes
    make.file("names/ leading space.jpg", ben1, "match", b)
    make.file("names/trailing dot.jpg.", madonna0, "other")  # no suffix: not a photo
    make.file("names/trailing space.jpg ", madonna0, "other")
    make.file("names/CON.jpg", madonna0, "match", m)
    make.file("names/nul.png", encoded(pixels(ben4), "PNG"), "match", b)
    make.file("names/COM1.jpg", synthetic(), "read")
    make.file('names/comma, "quote".jpg', ben4, "match", b)
    make.file("names/rlo\u202egpj.exe.jpg", synthetic(), "read")
    deep = "/".join(f"level {n:02d}" for n in range(1, 31))
    make.file(f"names/deep/{deep}/deep.jpg", ben1, "match", b)

    # ---- skipped on purpose (facefinder/walk.py): hidden, system folders, metadata files
    make.skipped("names/..jpg", madonna0, "hidden (starts with a dot)")
    make.skipped("skipped/.hidden.jpg", madonna0, "hidden")
    make.skipped("skipped/.hidden folder/photo.jpg", ben0, "in a hidden folder")
    make.skipped("skipped/._IMG_0001.jpg", rng.randbytes(512), "AppleDouble")
    make.skipped("skipped/Thumbs.db", rng.randbytes(512), "thumbnail cache")
    make.skipped("skipped/desktop.ini", b"[.ShellClassInfo]\n", "folder settings")
    make.skipped("skipped/@eaDir/photo.jpg", madonna0, "Synology thumbnail folder")
    make.skipped("skipped/$RECYCLE.BIN/photo.jpg", ben0, "Windows recycle bin")
    make.skipped("skipped/#recycle/photo.jpg", madonna0, "NAS recycle bin")

    # ---- special files. Rule (facefinder/walk.py): only regular files (and links to
    # them) are files; FIFOs, sockets and links to them are not counted in files_scanned
    # and must never be opened (a FIFO blocks the reader forever). The report names those
    # with a photo's or video's name in "unreadable" (not read). Broken links and link
    # loops must be reported.
    special = make.folder("special")
    os.mkfifo(special + b"/photo.jpg")
    album.not_files["special/photo.jpg"] = "FIFO"
    os.mkfifo(special + b"/fifo\x1b[2J.mp4")
    album.not_files["special/fifo\x1b[2J.mp4"] = "FIFO with a control character"
    os.symlink("photo.jpg", special + b"/link to fifo.jpg")
    album.not_files["special/link to fifo.jpg"] = "link to a FIFO"
    try:
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(os.fsdecode(special + b"/socket.jpg"))
        album.not_files["special/socket.jpg"] = "socket"
    except OSError:  # a path too long for AF_UNIX: no socket then
        pass
    os.symlink("..", special + b"/back to the top")  # a folder loop: walked once only
    album.not_files["special/back to the top"] = "link to a folder already walked"
    os.symlink("loop b.jpg", special + b"/loop a.jpg")
    os.symlink("loop a.jpg", special + b"/loop b.jpg")
    os.symlink("itself.jpg", special + b"/itself.jpg")
    os.symlink("does not exist.jpg", special + b"/dangling.jpg")
    os.symlink("does not exist", special + b"/dangling folder")
    for rel in ("loop a.jpg", "loop b.jpg", "itself.jpg", "dangling.jpg", "dangling folder"):
        album.walk_errors[f"special/{rel}"] = "broken link"

    # ---- no permission (ignored when running as root: then they are read like any other)
    make.file("locked/plain.jpg", synthetic(), "read")
    locked_file = Path(os.fsdecode(make.path("locked/locked file.jpg")))
    locked_file.write_bytes(synthetic())
    locked_file.chmod(0)
    album.locked.append(locked_file)
    album.files["locked/locked file.jpg"] = Expect(
        "read" if os.access(locked_file, os.R_OK) else "unreadable")
    locked_folder = Path(os.fsdecode(make.folder("locked/locked folder")))
    (locked_folder / "inside.jpg").write_bytes(synthetic())
    locked_folder.chmod(0)
    album.locked.append(locked_folder)
    try:
        os.listdir(locked_folder)
    except PermissionError:
        album.walk_errors["locked/locked folder"] = "cannot open folder"
    else:
        album.files["locked/locked folder/inside.jpg"] = Expect("read")
    return album


# --------------------------------------------------------------------------- running it


@dataclass
class Run:
    """One finder run: its exit status, raw output and reports."""

    code: int | None  # None: killed after RUN_TIMEOUT
    stdout: bytes
    stderr: bytes
    seconds: float
    json_path: Path
    csv_path: Path

    def __repr__(self) -> str:  # shown in failures: not the whole output
        return f"<Run {self.json_path.stem}: exit {self.code} after {self.seconds:.1f} s>"

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).decode("utf-8", "replace")

    def tail(self) -> str:
        return self.stderr.decode("utf-8", "replace")[-3000:]

    def report(self) -> dict:
        assert self.json_path.is_file(), f"no JSON report was written:\n{self.tail()}"
        with open(self.json_path, encoding="utf-8") as handle:
            return json.load(handle)

    def rows(self) -> list[dict[str, str]]:
        assert self.csv_path.is_file(), f"no CSV report was written:\n{self.tail()}"
        with open(self.csv_path, encoding="utf-8-sig", newline="") as handle:
            return list(csv.DictReader(handle))


def run_finder(album: Album, models_dir: Path, out: Path, name: str) -> Run:
    """``python finder.py COLLECTION ...`` as a user types it; killed (with its workers,
    its own process group) if it has not ended after RUN_TIMEOUT seconds."""
    report, table = out / f"{name}.json", out / f"{name}.csv"
    command = [sys.executable, str(ROOT / "finder.py"), str(album.collection),
               "--reference", str(album.reference), "--models", str(models_dir),
               "--index", str(out / "index.sqlite"), "--json", str(report), "--csv", str(table),
               "--copy", str(out / "copies"), "--no-progress", "--jobs", "2", "--list", "all"]
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=out,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        code = None
    return Run(code, stdout, stderr, time.monotonic() - started, report, table)


def snapshot(top: Path) -> dict[str, tuple]:
    """Every entry under ``top`` (links not followed): type, mode, size, mtime, sha256."""
    found: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(os.fsencode(top)):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.fsdecode(os.path.relpath(path, os.fsencode(top)))
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                try:
                    with open(path, "rb") as handle:
                        digest = hashlib.sha256(handle.read()).hexdigest()
                except PermissionError:
                    digest = "unreadable"
                found[rel] = ("file", info.st_mode, info.st_size, info.st_mtime_ns, digest)
            else:
                found[rel] = (stat.S_IFMT(info.st_mode), info.st_mode)
    return found


@dataclass
class Fuzz:
    """The album, the two runs over it and snapshots of the album before and after."""

    album: Album
    runs: list[Run]
    before: dict[str, tuple]
    after: dict[str, tuple]
    copies: Path

    def __repr__(self) -> str:  # pytest shows fixtures in failures: keep that short
        return f"<Fuzz over {self.album.collection}>"


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory, celebrities: Path, models_dir: Path):
    """Build the album and run the finder over it twice (the second answered from the
    index); the files made unreadable are made readable again afterwards."""
    base = tmp_path_factory.mktemp("fuzz")
    album = make_hostile_album(base / "album", celebrities)
    out = base / "out"
    out.mkdir()
    try:
        before = snapshot(base / "album")
        runs = [run_finder(album, models_dir, out, name) for name in ("first", "second")]
        yield Fuzz(album, runs, before, snapshot(base / "album"), out / "copies")
    finally:
        album.unlock()


RUNS = pytest.mark.parametrize("number", [0, 1], ids=["first run", "second run"])


# --------------------------------------------------------------------------- helpers


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 and C1 control characters, DEL


def _controls(text: str) -> list[str]:
    """The C0/C1 control characters in ``text``, except the newline."""
    return [ch for ch in text if (ord(ch) < 0x20 and ch != "\n") or 0x7F <= ord(ch) <= 0x9F]


def _copy_failures(run: Run) -> list[tuple[str, str]]:
    """(line, reason) of every copy the finder says it could not make."""
    failures = []
    for line in run.stderr.decode("utf-8", "replace").splitlines():
        if "could not copy" in line.lower():
            failures.append((line, line.rsplit(": ", 1)[-1].strip()))
    return failures


def _fail(problems: list[str], what: str) -> None:
    if problems:
        shown = "\n  ".join(problems[:60])
        more = f"\n  ... and {len(problems) - 60} more" if len(problems) > 60 else ""
        pytest.fail(f"{len(problems)} {what}:\n  {shown}{more}")


# --------------------------------------------------------------------------- the tests


@RUNS
def test_ends_in_time_with_a_clean_status(fuzz: Fuzz, number: int) -> None:
    """No hang (the FIFO is never opened), no traceback, exit 0 - or 3 only for a copy the
    destination file system could not take."""
    run: Run = fuzz.runs[number]
    assert run.code is not None, (
        f"the finder hung: killed after {RUN_TIMEOUT} s. stderr so far:\n{run.tail()}")
    assert b"Traceback" not in run.stderr + run.stdout, run.tail()
    assert run.code in (0, 3), f"exit status {run.code}:\n{run.tail()}"
    if run.code == 3:
        failures = _copy_failures(run)
        assert failures, f"exit status 3 without a failed copy:\n{run.tail()}"
        wrong = [line for line, reason in failures if reason not in LEGIT_COPY_FAILURES]
        assert not wrong, "exit status 3 for copies that should have worked:\n" + "\n".join(
            repr(line) for line in wrong)


@RUNS
def test_reports_load(fuzz: Fuzz, number: int) -> None:
    run: Run = fuzz.runs[number]
    report = run.report()
    assert report["facefinder"] == "report"
    for key in ("matches", "unreadable", "summary"):
        assert key in report, key
    rows = run.rows()
    assert rows and {"path", "person"} <= set(rows[0]), rows[:1]
    assert len(rows) == len(report["matches"]), "the CSV and the JSON list different matches"


@RUNS
def test_every_file_is_accounted_for(fuzz: Fuzz, number: int) -> None:
    """files_scanned counts exactly the regular files the walker should yield; each broken
    or hostile file is listed as unreadable with one plain line, each good one is not;
    skipped, special and missing paths appear nowhere they should not."""
    album: Album = fuzz.album
    run: Run = fuzz.runs[number]
    report = run.report()
    summary = report["summary"]
    problems: list[str] = []

    unreadable: dict[str, str] = {}
    for entry in report["unreadable"]:
        path, reason = entry.get("path"), entry.get("reason")
        if not isinstance(path, str) or not isinstance(reason, str):
            problems.append(f"malformed unreadable entry {entry!r}")
            continue
        if path in unreadable:
            problems.append(f"listed twice as unreadable: {path!r}")
        unreadable[path] = reason
        if not reason.strip() or len(reason) > 300 or _controls(reason):
            problems.append(f"reason for {path!r} is not one plain line: {reason!r}")
        if "Traceback" in reason or reason.startswith("unexpected error"):
            problems.append(f"{path!r}: an exception nobody expected: {reason!r}")
        known = path in album.files or path in album.walk_errors or path in album.not_files
        if not known:
            problems.append(f"unreadable entry for a path that is no file of the album: "
                            f"{path!r} ({reason!r})")

    for rel, expect in album.files.items():
        listed = rel in unreadable
        if expect.outcome == "unreadable" and not listed:
            problems.append(f"{rel!r} should be listed as unreadable but is not")
        if expect.outcome in ("match", "read", "other") and listed:
            problems.append(f"{rel!r} should be read but is unreadable: {unreadable[rel]!r}")
    for rel, why in album.walk_errors.items():
        if rel not in unreadable:
            problems.append(f"{rel!r} ({why}) should be listed as unreadable but is not")
    for rel, why in album.skipped.items():
        if rel in unreadable:
            problems.append(f"{rel!r} is skipped on purpose ({why}) but listed as unreadable")

    files_unreadable = sum(1 for rel in unreadable if rel in album.files)
    expected_other = sum(1 for e in album.files.values() if e.outcome == "other")
    if summary.get("files_scanned") != len(album.files):
        problems.append(f"files_scanned is {summary.get('files_scanned')}, the album has "
                        f"{len(album.files)} regular files the walker should see")
    if summary.get("other_files") != expected_other:
        problems.append(f"other_files is {summary.get('other_files')}, expected "
                        f"{expected_other}")
    counted = (summary.get("images_read", 0) + summary.get("videos_read", 0)
               + summary.get("other_files", 0) + files_unreadable)
    if counted != summary.get("files_scanned"):
        problems.append(f"images_read + videos_read + other_files + unreadable files = "
                        f"{counted}, but files_scanned = {summary.get('files_scanned')}")
    if summary.get("interrupted"):
        problems.append("the summary says the run was interrupted")
    _fail(problems, "files not accounted for as expected")


@RUNS
def test_faces_found_despite_hostile_names(fuzz: Fuzz, number: int) -> None:
    """Every copy of a found face is found again, whatever its name; nothing else is."""
    album: Album = fuzz.album
    report = fuzz.runs[number].report()
    found: dict[str, set[str]] = {}
    for match in report["matches"]:
        found.setdefault(match["path"], set()).add(match["person"])
    problems = []
    for rel, expect in album.files.items():
        people = found.get(rel, set())
        if expect.outcome == "match":
            missing = set(expect.people) - people
            if missing:
                problems.append(f"{rel!r}: {sorted(missing)} not found")
        wrong = people - set(expect.people)
        if wrong:
            problems.append(f"{rel!r}: wrong match {sorted(wrong)} (shows {expect.people})")
    for rel in set(found) - set(album.files):
        problems.append(f"match for a path that is no file the walker should yield: {rel!r}")
    _fail(problems, "wrong or missing matches")


@RUNS
def test_output_has_no_raw_control_characters(fuzz: Fuzz, number: int) -> None:
    """File names reach the terminal escaped: no ESC, BEL, CR, C1 codes from a name; each
    found file with a control character in its name is listed on one line."""
    album: Album = fuzz.album
    run: Run = fuzz.runs[number]
    problems = [f"raw {''.join(sorted(set(_controls(line))))!r} in output line {line!r}"
                for line in run.output.split("\n") if _controls(line)]
    stdout_lines = run.stdout.decode("utf-8", "replace").split("\n")
    matched = {m["path"] for m in run.report()["matches"]} if run.json_path.is_file() else set()
    for rel in album.files:
        parts = [p for p in CONTROL.split(rel.rsplit("/", 1)[-1]) if p]
        if rel not in matched or not CONTROL.search(rel):
            continue
        pattern = ".*".join(map(re.escape, parts))
        if not any(re.search(pattern, line) for line in stdout_lines):
            problems.append(f"{rel!r} is not listed on one line of stdout")
    _fail(problems, "problems with control characters on the terminal")


@RUNS
def test_no_python_warnings_on_the_terminal(fuzz: Fuzz, number: int) -> None:
    """A broken file costs one line in the summary, not a library's warning with its
    source path and code line (the user cannot act on those)."""
    run: Run = fuzz.runs[number]
    problems = [line for line in run.stderr.decode("utf-8", "replace").splitlines()
                if re.search(r"\b[A-Z]\w*Warning: ", line)]
    _fail(problems, "Python warnings on stderr")


@RUNS
def test_csv_cells_cannot_be_formulas(fuzz: Fuzz, number: int) -> None:
    """A spreadsheet must not run a file name: no path or person cell starts with = + - @."""
    run: Run = fuzz.runs[number]
    report = run.report()
    for column in ("path", "person"):
        assert any(m[column].startswith(FORMULA_STARTS) for m in report["matches"]), (
            f"no match has a formula-like {column}, so this test checks nothing")
    problems = [f"{column} cell {row[column]!r}" for row in run.rows()
                for column in ("path", "person") if row[column].startswith(FORMULA_STARTS)]
    _fail(problems, "CSV cells a spreadsheet would read as formulas")


def test_second_run_is_answered_from_the_index(fuzz: Fuzz) -> None:
    first, second = (run.report() for run in fuzz.runs)
    pairs = [{(m["path"], m["person"]) for m in r["matches"]} for r in (first, second)]
    assert pairs[0] == pairs[1], f"found differently: {pairs[0] ^ pairs[1]}"
    assert ({u["path"] for u in first["unreadable"]}
            == {u["path"] for u in second["unreadable"]})
    io_errors = sum(1 for u in first["unreadable"]
                    if u["reason"].startswith("cannot read file"))  # not remembered
    summary = second["summary"]
    assert summary["files_decoded"] == io_errors, summary
    assert summary["from_index"] == (summary["files_scanned"] - summary["other_files"]
                                     - io_errors), summary


def test_originals_are_unchanged(fuzz: Fuzz) -> None:
    """Not a byte, mode or time of the collection and references changed; nothing added."""
    before, after = fuzz.before, fuzz.after
    problems = [f"{rel!r}: {before.get(rel)} -> {after.get(rel)}"
                for rel in sorted(set(before) | set(after)) if before.get(rel) != after.get(rel)]
    _fail(problems, "changes to the user's files")


def test_copies_are_complete_and_safely_named(fuzz: Fuzz) -> None:
    """Each (file, person) match is copied once (the second run finds it there) under a
    name any file system takes: no control characters, no undecodable bytes."""
    runs: list[Run] = fuzz.runs
    report = runs[0].report()
    pairs = {(m["path"], m["person"]) for m in report["matches"]}
    failed = len(_copy_failures(runs[0]))
    copies = [path for path in fuzz.copies.rglob("*")
              if path.is_file() and path.name != COPIES_NOTE]  # (the finder's note)
    assert (fuzz.copies / COPIES_NOTE).is_file()  # later searches around it leave it out
    assert len(copies) == len(pairs) - failed, (len(copies), len(pairs), failed)
    bad = [str(path) for path in copies
           if _controls(str(path)) or re.search("[\udc80-\udcff]", str(path))]
    assert not bad, bad
    assert not [p for p in fuzz.copies.rglob(".*partial*")], "temporary files left behind"


# --------------------------------------------------------------------------- standalone


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/test_fuzz.py DIR   (writes the hostile album into DIR)")
        return 2
    target = Path(argv[0])
    if target.exists() and any(target.iterdir()):
        print(f"{target} is not empty; give a new or empty folder")
        return 2
    album = make_hostile_album(target)
    (target / "expected.json").write_text(json.dumps(album.as_dict(), indent=1) + "\n",
                                          encoding="utf-8")
    print(f"Wrote {len(album.files)} files the finder should see, {len(album.skipped)} it "
          f"should skip, {len(album.walk_errors)} broken links/folders and "
          f"{len(album.not_files)} special entries to {target / 'collection'}; references in "
          f"{album.reference}; expectations in {target / 'expected.json'}.\n"
          f"Try: python finder.py {target / 'collection'} --reference {album.reference} "
          f"--index {target / 'index.sqlite'} --json {target / 'out.json'} --csv "
          f"{target / 'out.csv'} --copy {target / 'copies'} --jobs 2 --list all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
