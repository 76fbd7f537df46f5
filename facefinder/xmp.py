"""``--xmp``: the people found in a copied photo, as XMP that photo apps read.

Why XMP: digiKam, Immich, PhotoPrism, darktable, Lightroom and ExifTool all read face
regions (Metadata Working Group "mwg-rs" regions) and keywords from XMP, so writing them
next to each copy hands the finder's work over to the app the user already has. Only
copies are annotated (``--copy`` is required): the originals are opened for reading
only, and nothing is ever written beside them.

What is written, for each copy (one ``rdf:Description``):

* ``mwg-rs:Regions``: AppliedToDimensions (the image *as stored*) and one region per
  person found in the photo, Type ``Face``, Name, normalised centre/size;
* ``dc:subject`` NAME, ``digiKam:TagsList`` ``People/NAME``, ``lr:hierarchicalSubject``
  ``People|NAME`` (keywords: what apps without face support still show and search);
* in sidecars ``tiff:Orientation`` (the copy's own value, for sidecar-only readers);
* ``facefinder:ForFile``: the copy's file name. It marks the XMP as the finder's, so a
  re-run replaces its own sidecar (to follow later yes/no answers) and never a file
  somebody else wrote, and recognises its own annotated copy (see ``--xmp embed``).

Where: ``COPY.ext.xmp`` (``IMG_1.jpg.xmp``), the name digiKam, darktable, Immich and
PhotoPrism look for; ``IMG_1.xmp`` would be shared by ``IMG_1.jpg`` and ``IMG_1.heic``.
Videos get a sidecar with keywords and a ``dc:description`` saying when each person is
seen (MWG regions are for stills). ``--xmp embed`` puts the XMP into JPEG copies
instead, in their standard XMP APP1 segment, and leaves every other byte of the copy as
it was (exiv2's own JPEG writer re-laid a comment segment when measured, so the one
segment is spliced here; exiv2 builds, serialises and parses the XMP itself).

Coordinates. The finder's boxes are (x, y, w, h) in the *upright* image (EXIF
orientation applied). The MWG Guidelines 2.0 (sec. 5.9 with 5.4) say regions apply to
the image *as stored* and that a reader applying the Exif orientation must turn the
regions with the pixels, so each box is mapped back through the inverse orientation,
normalised by the stored size, and AppliedToDimensions is the stored width/height. The
orientation used is the one a reader finds in the copy: for HEIC the Exif tag, with the
stored size from ``ispe`` (pillow-heif hides both: it applies ``irot`` and resets the
tag to 1), which is why geometry is read from the copy with exiv2 rather than taken
from the decoder.

Library: python-exiv2 (PyPI ``exiv2``, GPL-3.0-or-later, libexiv2 0.28 inside; wheels
for Windows x64, macOS 14+ and Linux x86_64/aarch64). It is imported only when XMP is
written, so the finder runs without it; :func:`unavailable` says how to install it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from facefinder import partials
from facefinder.jpeg_segments import (
    EXT_XMP_HEADER,
    NAMESPACE,
    XMP_HEADER,
    NotJpeg,
    segments,
    without_xmp,
    xmp_segment,
    xmp_span,
)
from facefinder.messages import one_line
from facefinder.records import Match
from facefinder.walk import printable

Mode = Literal["sidecar", "embed"]
Box = tuple[float, float, float, float]  # x, y, w, h in pixels
Size = tuple[int, int]  # width, height

NEEDS_EXIV2 = "--xmp needs the exiv2 package: python -m pip install -r requirements.txt"
PREFIX = "facefinder"
PEOPLE_ROOT = "People"
_MAX_PACKET = 65533 - len(XMP_HEADER)  # one APP1 segment: 64 KB minus length and header
_MAX_SIDECAR = 16 << 20  # a bigger "sidecar" is not one of ours; not read into memory


class XmpUnavailable(RuntimeError):
    """The exiv2 package cannot be imported (the message says how to install it)."""


class SidecarTaken(Exception):
    """The sidecar's name is used by a file the finder did not write for this copy."""


class CannotEmbed(Exception):
    """The XMP cannot go into this copy (not a JPEG, Extended XMP, too big)."""


# ----------------------------------------------------------------------------- exiv2


@functools.cache
def _exiv2() -> Any:
    """The exiv2 module, set up once: our namespace registered, its log muted.

    Imported here rather than at the top so that the finder starts (and searches, copies,
    reports) on a machine without exiv2; only ``--xmp`` needs it. exiv2 would print its
    warnings about odd files on stderr, which would break the finder's one-line reports.
    """
    try:
        import exiv2
    except ImportError as error:
        raise XmpUnavailable(NEEDS_EXIV2) from error
    try:
        exiv2.XmpProperties.ns(PREFIX)
    except exiv2.Exiv2Error:
        exiv2.XmpProperties.registerNs(NAMESPACE, PREFIX)
    exiv2.LogMsg.setLevel(exiv2.LogMsg.Level.mute)
    return exiv2


def unavailable() -> str | None:
    """Why XMP cannot be written here (one line), or None when it can."""
    try:
        _exiv2()
    except XmpUnavailable as error:
        return str(error)
    return None


# ----------------------------------------------------------------------------- geometry


def stored_size(upright: Size, orientation: int) -> Size:
    """(width, height) of the pixels as stored, from the upright size and the orientation."""
    w, h = upright
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def upright_point_to_stored(u: float, v: float, upright: Size,
                            orientation: int) -> tuple[float, float]:
    """Map a point of the upright image to the stored image (inverse of Exif Orientation).

    Orientation n says where stored row 0 / column 0 are seen (Exif 2.3, tag 0x0112); e.g.
    6: stored row 0 is the visual right side, stored column 0 the visual top.
    """
    wu, hu = upright
    return {
        1: (u, v), 2: (wu - u, v), 3: (wu - u, hu - v), 4: (u, hu - v),
        5: (v, u), 6: (v, wu - u), 7: (hu - v, wu - u), 8: (hu - v, u),
    }.get(orientation, (u, v))


def mwg_area(box: Sequence[float], *, upright: Size, orientation: int) -> Box:
    """The MWG ``stArea`` (centre x, centre y, w, h; normalised, stored image) of a box.

    The box is clipped to the image first: detectors may reach over the border.
    """
    wu, hu = upright
    x, y, w, h = map(float, box)
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(wu), x + w), min(float(hu), y + h)
    (ax, ay), (bx, by) = (upright_point_to_stored(x0, y0, upright, orientation),
                          upright_point_to_stored(max(x0, x1), max(y0, y1), upright,
                                                  orientation))
    sx, sy, sw, sh = min(ax, bx), min(ay, by), abs(bx - ax), abs(by - ay)
    ws, hs = stored_size(upright, orientation)
    return (sx + sw / 2) / ws, (sy + sh / 2) / hs, sw / ws, sh / hs


def read_geometry(path: Path) -> tuple[Size, int]:
    """The stored (width, height) of an image and the Exif Orientation a reader finds (1..8).

    exiv2 first: for HEIC it reports the ``ispe`` size (before ``irot``) and the Exif tag,
    as ExifTool and the photo apps do. Pillow where exiv2 cannot size the image (BMP, ...);
    pillow-heif, if it opened the file, has already turned the pixels, so the size is
    turned back with the orientation it kept aside.
    """
    exiv2 = _exiv2()
    with open(_fs(path), "rb") as handle:  # bytes, not a path: exiv2 and non-ASCII paths
        data = handle.read()
    try:
        image = exiv2.ImageFactory.open(data)  # ``data`` must outlive ``image``
        image.readMetadata()
        width, height = image.pixelWidth(), image.pixelHeight()
        orientation = 1
        exif = image.exifData()
        pos = exif.findKey(exiv2.ExifKey("Exif.Image.Orientation"))
        if pos != exif.end():
            orientation = int(pos.toInt64())
        if width > 0 and height > 0:
            return (width, height), orientation if 1 <= orientation <= 8 else 1
    except exiv2.Exiv2Error:
        pass
    from PIL import Image

    with Image.open(_fs(path)) as im:
        orientation = int(im.info.get("original_orientation") or 0)
        if orientation:  # pillow-heif applied it already
            size = stored_size(im.size, orientation)
        else:
            orientation = int(im.getexif().get(0x0112, 1) or 1)
            size = im.size
    return size, orientation if 1 <= orientation <= 8 else 1


# ----------------------------------------------------------------------------- XMP model


def _bag(items: Iterable[str]) -> Any:
    value = _exiv2().XmpArrayValue(_exiv2().TypeId.xmpBag)
    for item in items:
        value.read(item)
    return value


def _text(value: str) -> str:
    """A text value as exiv2 must be given it: exiv2 reads a leading ``type=X `` as the
    value's XMP type, so a name that starts that way goes behind an empty type. (exiv2's
    own parser trips over such a name when it reads the file back: the finder then treats
    that sidecar as not its own and says so; other readers, ExifTool included, read it.)"""
    return f'type="" {value}' if value.startswith("type=") else value


def _declare_bag(xmp: Any, key: str) -> None:
    """Declare ``key`` an (empty) rdf:Bag so that ``key[1]/...`` items can be set."""
    value = _exiv2().XmpTextValue()
    value.setXmpArrayType(_exiv2().XmpValue.XmpArrayType.xaBag)
    xmp[key] = value


def _keyword_part(name: str) -> str:
    """A name as one level of a hierarchical keyword: '/' and '|' would split it."""
    return name.replace("/", "-").replace("|", "-").strip() or "?"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _existing_list(xmp: Any, key: str) -> list[str]:
    pos = xmp.findKey(_exiv2().XmpKey(key))
    if pos == xmp.end():
        return []
    value = pos.getValue()
    return [value.toString(i) for i in range(value.count())]


def _set_keywords(xmp: Any, names: Sequence[str]) -> None:
    """Add person keywords, keeping the keywords already there (union, order kept)."""
    people = _unique(names)
    for key, items in (
        ("Xmp.dc.subject", people),
        ("Xmp.digiKam.TagsList", [f"{PEOPLE_ROOT}/{_keyword_part(n)}" for n in people]),
        ("Xmp.lr.hierarchicalSubject", [f"{PEOPLE_ROOT}|{_keyword_part(n)}" for n in people]),
    ):
        merged = _unique([*_existing_list(xmp, key), *items])
        if merged:
            xmp[key] = _bag(merged)


def _set_regions(xmp: Any, people: Sequence[tuple[str, Sequence[float]]], *,
                 upright: Size, orientation: int) -> None:
    """Write mwg-rs:Regions, replacing any there (the photo's faces are ours to name)."""
    exiv2 = _exiv2()
    for key in [d.key() for d in xmp if d.key().startswith("Xmp.mwg-rs.Regions")]:
        xmp.erase(xmp.findKey(exiv2.XmpKey(key)))
    areas = [(name, mwg_area(box, upright=upright, orientation=orientation))
             for name, box in people]
    areas = [(name, area) for name, area in areas if area[2] > 0 and area[3] > 0]
    if not areas:
        return
    ws, hs = stored_size(upright, orientation)
    base = "Xmp.mwg-rs.Regions"
    xmp[f"{base}/mwg-rs:AppliedToDimensions/stDim:w"] = str(ws)
    xmp[f"{base}/mwg-rs:AppliedToDimensions/stDim:h"] = str(hs)
    xmp[f"{base}/mwg-rs:AppliedToDimensions/stDim:unit"] = "pixel"
    _declare_bag(xmp, f"{base}/mwg-rs:RegionList")
    for i, (name, (cx, cy, w, h)) in enumerate(areas, start=1):
        item = f"{base}/mwg-rs:RegionList[{i}]"
        xmp[f"{item}/mwg-rs:Area/stArea:x"] = f"{cx:.6f}"
        xmp[f"{item}/mwg-rs:Area/stArea:y"] = f"{cy:.6f}"
        xmp[f"{item}/mwg-rs:Area/stArea:w"] = f"{w:.6f}"
        xmp[f"{item}/mwg-rs:Area/stArea:h"] = f"{h:.6f}"
        xmp[f"{item}/mwg-rs:Area/stArea:unit"] = "normalized"
        xmp[f"{item}/mwg-rs:Type"] = "Face"
        xmp[f"{item}/mwg-rs:Name"] = _text(name)


def _forget_our_names(xmp: Any) -> None:
    """Take out the person keywords an earlier run wrote (``facefinder:Names``), so a
    name the user has since rejected goes, while every keyword an app or the user added
    stays."""
    ours = _existing_list(xmp, f"Xmp.{PREFIX}.Names")
    if not ours:
        return
    forms = {
        "Xmp.dc.subject": set(ours),
        "Xmp.digiKam.TagsList": {f"{PEOPLE_ROOT}/{_keyword_part(n)}" for n in ours},
        "Xmp.lr.hierarchicalSubject": {f"{PEOPLE_ROOT}|{_keyword_part(n)}" for n in ours},
    }
    for key, drop in forms.items():
        kept = [item for item in _existing_list(xmp, key) if item not in drop]
        pos = xmp.findKey(_exiv2().XmpKey(key))
        if pos != xmp.end():
            xmp.erase(pos)
        if kept:
            xmp[key] = _bag(kept)


def build_xmp(people: Sequence[tuple[str, Sequence[float]]], *, upright: Size,
              orientation: int, for_file: str, sidecar: bool, base: Any = None,
              regions: bool = True) -> Any:
    """The XMP for one photo: regions, keywords and our marker.

    ``people``: (name, box in the upright image). ``base``: XMP already there (the photo's
    own, or what an app made of our earlier XMP), kept: its keywords extended (ours from
    an earlier run replaced), its regions replaced. ``sidecar`` adds tiff:Orientation.
    ``regions`` False: keywords only (the geometry could not be made sure of).
    """
    if not 1 <= orientation <= 8:
        orientation = 1
    xmp = base if base is not None else _exiv2().XmpData()
    _forget_our_names(xmp)
    if regions:
        _set_regions(xmp, people, upright=upright, orientation=orientation)
    _set_keywords(xmp, [name for name, _ in people])
    names = _unique(name for name, _ in people)
    pos = xmp.findKey(_exiv2().XmpKey(f"Xmp.{PREFIX}.Names"))
    if pos != xmp.end():
        xmp.erase(pos)
    if names:
        xmp[f"Xmp.{PREFIX}.Names"] = _bag(names)
    if sidecar:
        xmp["Xmp.tiff.Orientation"] = str(orientation)
    xmp[f"Xmp.{PREFIX}.ForFile"] = _marker(for_file)
    return xmp


def serialise(xmp: Any) -> bytes:
    """The XMP packet as UTF-8 (exiv2's Adobe XMP toolkit; same input, same bytes)."""
    flags = _exiv2().XmpParser.XmpFormatFlags.useCompactFormat
    rc, packet = _exiv2().XmpParser.encode(xmp, flags, 0)
    if rc != 0:
        raise CannotEmbed(f"exiv2 could not serialise the XMP (code {rc})")
    return packet.encode("utf-8")


def read_xmp(data: bytes) -> Any:
    """The XMP of an image or sidecar given as bytes (exiv2 finds the format)."""
    exiv2 = _exiv2()
    image = exiv2.ImageFactory.open(data)
    image.readMetadata()
    out = exiv2.XmpData()
    for datum in image.xmpData():
        out[datum.key()] = datum.getValue()
    return out


def _marker(file_name: str) -> str:
    """Our marker's value for a copy: its name behind "./" (a file name holds no "/"), so
    it never starts with "type=", which exiv2's parser would take for a value type."""
    return f"./{file_name}"


def _for_file(xmp: Any) -> str | None:
    pos = xmp.findKey(_exiv2().XmpKey(f"Xmp.{PREFIX}.ForFile"))
    return None if pos == xmp.end() else pos.toString().removeprefix("./")


# ----------------------------------------------------------------------------- embedding


def embed_bytes(original: bytes, people: Sequence[tuple[str, Sequence[float]]], *,
                upright: Size, orientation: int, for_file: str, regions: bool = True,
                base_from: bytes | None = None) -> bytes:
    """The JPEG ``original`` with our XMP in its standard XMP APP1 segment.

    The original's own XMP is kept (keywords extended, regions replaced); every other
    segment and the image data are copied byte for byte. Built from the *original*, not
    from the copy, so that a re-run gives the same bytes and a later "no" removes a name.
    Raises CannotEmbed for non-JPEGs, Extended XMP or a packet over one segment's 64 KB.
    """
    try:
        found = segments(io.BytesIO(original))
    except NotJpeg as error:
        raise CannotEmbed(str(error)) from None
    if any(m == 0xE1 and head.startswith(EXT_XMP_HEADER) for m, _s, _e, head in found):
        raise CannotEmbed("the photo has Extended XMP")
    span = xmp_segment(found)
    try:
        if base_from is not None:  # the copy, carrying our earlier XMP
            base = read_xmp(base_from)
        else:
            base = read_xmp(original) if span else None
    except _exiv2().Exiv2Error as error:
        raise CannotEmbed(f"its metadata cannot be read ({error})") from None
    if (span or base_from is not None) and base is not None and not len(base):
        raise CannotEmbed("its own XMP cannot be read, and would be lost")
    packet = serialise(build_xmp(people, upright=upright, orientation=orientation,
                                 for_file=for_file, sidecar=False, base=base,
                                 regions=regions))
    if len(packet) > _MAX_PACKET:
        raise CannotEmbed("the XMP would not fit one JPEG segment")
    segment = (b"\xff\xe1" + (2 + len(XMP_HEADER) + len(packet)).to_bytes(2, "big")
               + XMP_HEADER + packet)
    if span:
        return original[:span[0]] + segment + original[span[1]:]
    at = 2  # a new segment goes after the leading APP0/APP1 (JFIF, Exif), as writers do
    for marker, _start, end, _head in found:
        if marker not in (0xE0, 0xE1):
            break
        at = end
    return original[:at] + segment + original[at:]


# ----------------------------------------------------------------------------- writing


def _fs(path: Path) -> str:
    from facefinder.copying import long_path  # Windows' long-path prefix, one place

    return long_path(path)


def _write(target: Path, data: bytes, *, replace: bool, like: os.stat_result | None = None
           ) -> None:
    """Write ``target`` through a hidden temp file; atomically, never half a file.

    ``replace`` False: the name must be free, and a file that appears meanwhile is left
    (SidecarTaken). ``like``: the file being replaced, whose permission bits and times the
    new one keeps (a copy keeps its original's date, which photo apps may show).
    """
    from facefinder.copying import place

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tmp = target.parent / partials.temp_name(target.name)  # swept if the run is killed
    fd = os.open(_fs(tmp), flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if like is not None:
            with contextlib.suppress(OSError):
                os.chmod(_fs(tmp), stat.S_IMODE(like.st_mode))
                os.utime(_fs(tmp), ns=(like.st_atime_ns, like.st_mtime_ns))
        if replace:
            os.replace(_fs(tmp), _fs(target))
        elif not place(tmp, target):
            raise SidecarTaken(f"{target.name} appeared while it was being written")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(_fs(tmp))


def sidecar_path(copy: Path) -> Path:
    """``IMG.jpg`` -> ``IMG.jpg.xmp``: the name digiKam, darktable, Immich, PhotoPrism read."""
    return copy.with_name(copy.name + ".xmp")


def _sidecar_state(sidecar: Path, for_file: str) -> bytes | None:
    """The bytes of our existing sidecar for ``for_file``, b"" if there is none; raise
    SidecarTaken if the name is used by anything else."""
    try:
        info = os.stat(_fs(sidecar), follow_symlinks=False)
    except FileNotFoundError:
        return b""
    taken = SidecarTaken(f"{sidecar.name} is already there and is not the finder's")
    if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_SIDECAR:
        raise taken
    with open(_fs(sidecar), "rb") as handle:
        data = handle.read()
    try:
        if _for_file(read_xmp(data)) == for_file:
            return data
    except _exiv2().Exiv2Error:
        pass
    raise taken


def _own_sidecar(sidecar: Path, for_file: str) -> bool:
    """Whether our sidecar for ``for_file`` is there (anybody else's is no concern here)."""
    try:
        return bool(_sidecar_state(sidecar, for_file))
    except (SidecarTaken, OSError):
        return False


def same_xmp(first: bytes, second: bytes) -> bool:
    """Whether two XMP packets (or two images' XMP) say the same, in whatever order - so
    a re-run that starts from what is there does not rewrite an unchanged file."""
    def content(data: bytes) -> dict[str, str]:
        return {d.key(): d.toString() for d in read_xmp(data)}

    try:
        return content(first) == content(second)
    except _exiv2().Exiv2Error:
        return False


def write_sidecar(sidecar: Path, data: bytes, for_file: str) -> bool:
    """Write our sidecar unless what is there says the same; True if written."""
    existing = _sidecar_state(sidecar, for_file)
    if existing == data or (existing and same_xmp(existing, data)):
        return False
    _write(sidecar, data, replace=bool(existing))
    return True


def _geometry(copy: Path) -> tuple[Size, int, bool]:
    """(upright size, orientation, whether the boxes can be placed): the orientation apps
    read must turn the stored image into the upright one the finder's boxes are in.

    They disagree for a HEIC turned by its ``irot`` box with no Exif orientation, or a
    JPEG whose only orientation is an XMP ``tiff:Orientation`` that the decoder honoured:
    then no region is written (a wrong box is worse than none), the names still are.
    """
    from PIL import Image

    from facefinder.decode import _orientation

    stored, orientation = read_geometry(copy)
    upright = stored_size(stored, orientation)  # the same swap both ways
    try:
        with Image.open(_fs(copy)) as image:
            if "original_orientation" in image.info:  # pillow-heif turned it already
                decoded = image.size
            else:
                turn = _orientation(image)
                decoded = image.size[::-1] if turn in (5, 6, 7, 8) else image.size
    except Exception:  # unreadable here: trust the metadata reader
        decoded = upright
    return upright, orientation, tuple(decoded) == tuple(upright)


def image_sidecar(copy: Path, people: Sequence[tuple[str, Sequence[float]]]) -> bytes:
    """The sidecar packet for a still copy (geometry read from the copy itself); an
    earlier sidecar of ours is the base, so what an app added to it stays."""
    upright, orientation, placed = _geometry(copy)
    try:
        existing = _sidecar_state(sidecar_path(copy), copy.name)
    except (SidecarTaken, OSError):
        existing = b""
    base = read_xmp(existing) if existing else None
    return serialise(build_xmp(people, upright=upright, orientation=orientation,
                               for_file=copy.name, sidecar=True, base=base, regions=placed))


def _clock(seconds: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour on."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def video_sidecar(copy: Path, spans: Sequence[tuple[str, float, float]]) -> bytes:
    """The sidecar packet for a copied video: person keywords and who is seen when.

    ``spans``: (name, first second, last second); the description reads like
    "Ana 0:12-1:05; Bob 1:00:00-1:02:05" (x-default language).
    """
    exiv2 = _exiv2()
    xmp = exiv2.XmpData()
    _set_keywords(xmp, [name for name, _, _ in spans])
    text = "; ".join(f"{name} {_clock(first)}-{_clock(last)}" for name, first, last in spans)
    description = exiv2.LangAltValue()
    description.read(f'lang="x-default" {text}')
    xmp["Xmp.dc.description"] = description
    xmp[f"Xmp.{PREFIX}.ForFile"] = _marker(copy.name)
    return serialise(xmp)


def embed(copy: Path, original: Path, people: Sequence[tuple[str, Sequence[float]]]) -> bool:
    """``--xmp embed``: our XMP into the JPEG *copy*; True if it changed.

    The copy must still be the original's copy (the same bytes apart from the XMP
    segment): checked here again, right before writing, so nothing but a verified copy is
    ever annotated. The copy is replaced atomically and keeps its date and permissions.
    Raises CannotEmbed when the XMP cannot go in (the caller writes a sidecar instead).
    """
    info = os.stat(_fs(copy))
    with open(_fs(original), "rb") as handle:  # read only, ever
        held = os.fstat(handle.fileno())
        if (held.st_dev, held.st_ino) == (info.st_dev, info.st_ino):
            raise CannotEmbed("the copy is the original itself")
        source = handle.read()
    with open(_fs(copy), "rb") as handle:
        current = handle.read()
    upright, orientation, placed = _geometry(copy)
    # The copy's own XMP is the base once it carries ours: what an app wrote into it
    # since (a rating, a keyword) stays; the first time, the original's XMP is.
    ours = carries_our_xmp(copy)
    new = embed_bytes(source, people, upright=upright, orientation=orientation,
                      for_file=copy.name, regions=placed,
                      base_from=current if ours else None)
    if new == current or (without_xmp(new) == without_xmp(current)
                           and same_xmp(new, current)):
        return False
    if without_xmp(current) != without_xmp(source):
        raise CannotEmbed("the copy no longer matches the original")
    _write(copy, new, replace=True, like=info)
    return True


def _is_jpeg(path: Path) -> bool:
    with open(_fs(path), "rb") as handle:
        return handle.read(2) == b"\xff\xd8"


def carries_our_xmp(copy: Path) -> bool:
    """Whether a copy has XMP embedded by the finder (an earlier ``--xmp embed``)."""
    try:
        with open(_fs(copy), "rb") as handle:
            found = xmp_span(handle)
    except OSError:
        return False
    return bool(found and found[1])


# ----------------------------------------------------------------------------- the run


@dataclass
class XmpSummary:
    """What ``annotate`` did; ``failed`` holds ("<person>/<rel>", reason) pairs."""

    written: int = 0  # sidecars written or updated
    embedded: int = 0  # copies whose embedded XMP was written or updated
    unchanged: int = 0  # copies whose XMP already said just this
    instead: list[str] = field(default_factory=list)  # embed asked, sidecar written: why
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    not_done: int = 0


def people_by_file(matches: Iterable[Match]) -> dict[str, list[Match]]:
    """Each file's matches, one per person, left to right: everyone found in the photo.

    The core has applied the review page's answers already (a "no" face is not a match, a
    "yes" face is), so what is written follows them.
    """
    out: dict[str, dict[str, Match]] = {}
    for match in matches:
        out.setdefault(match.rel, {}).setdefault(match.person, match)
    return {rel: sorted(found.values(), key=lambda m: (m.box[0], m.box[1], m.person))
            for rel, found in out.items()}


def annotate(copies: Mapping[tuple[str, str], Path], matches: Iterable[Match],
             photos_root: Path, mode: Mode, *, dest: Path | None = None,
             on_event: Callable[[str], None] | None = None) -> XmpSummary:
    """Write the XMP of every copy in ``copies`` ((rel, person) -> the copy's path).

    A photo copied into two people's folders gets both names in both copies' XMP. A
    failure (a sidecar name taken by a file that is not the finder's, an unreadable copy)
    is recorded with a one-line reason and the others go on.
    """
    summary = XmpSummary()
    found = people_by_file(matches)
    items = sorted(copies.items())
    for done, ((rel, person), copy) in enumerate(items):
        label = f"{person}/{rel}"
        try:
            outcome = _annotate_one(copy, photos_root.joinpath(*rel.split("/")),
                                    found.get(rel, []), mode)
        except KeyboardInterrupt:
            summary.interrupted = True
            summary.not_done = len(items) - done
            break
        except SidecarTaken as error:
            summary.failed.append((label, f"{error}: left as it was, no names written"))
            continue
        except (OSError, ValueError, CannotEmbed, _exiv2().Exiv2Error) as error:
            summary.failed.append((label, one_line(error)))
            continue
        kind, changed, why = outcome
        if why:
            where = copy.relative_to(dest) if dest else copy
            summary.instead.append(f"{printable(where.as_posix())}: {why}")
            if on_event is not None:
                on_event(f"{printable(where.as_posix())}: {why}; the names went into "
                         f"{printable(sidecar_path(copy).name)}")
        if not changed:
            summary.unchanged += 1
        elif kind == "embedded":
            summary.embedded += 1
        else:
            summary.written += 1
    return summary


def _annotate_one(copy: Path, original: Path, found: Sequence[Match], mode: Mode
                  ) -> tuple[str, bool, str | None]:
    """(what was written, whether anything changed, why a sidecar stood in for embed)."""
    sidecar = sidecar_path(copy)
    if any(m.first is not None for m in found):  # a video
        spans = [(m.person, m.first or 0.0, m.last if m.last is not None else m.first or 0.0)
                 for m in sorted(found, key=lambda m: (m.first or 0.0, m.person))]
        return "sidecar", write_sidecar(sidecar, video_sidecar(copy, spans), copy.name), None
    people = [(m.person, m.box) for m in found]
    why, changed = None, False
    if (mode == "embed" and _is_jpeg(copy)) or carries_our_xmp(copy):
        try:  # (an earlier run's embedded XMP is kept up to date whatever the mode)
            changed = embed(copy, original, people)
        except CannotEmbed as error:
            if mode == "embed":
                why = f"XMP not embedded ({error})"
        else:
            if mode == "embed":
                if _own_sidecar(sidecar, copy.name):  # an earlier run's: kept in step
                    changed |= write_sidecar(sidecar, image_sidecar(copy, people), copy.name)
                return "embedded", changed, None
    written = write_sidecar(sidecar, image_sidecar(copy, people), copy.name)
    return "sidecar", written or changed, why


__all__ = ["NEEDS_EXIV2", "CannotEmbed", "SidecarTaken", "XmpSummary", "XmpUnavailable",
           "annotate", "embed_bytes", "mwg_area", "read_geometry", "sidecar_path",
           "unavailable"]
