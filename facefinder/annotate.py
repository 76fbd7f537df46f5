"""``--annotate DIR``: for every photo found, a copy with boxes and names drawn on it.

People get their name and distance, objects their class and score, other faces a thin
grey outline. The copy is decoded at full size and upright (EXIF orientation applied,
as the boxes are), drawn with Pillow and written as a new file; the original is only
read. Layout and safety are ``--copy``'s (its helpers, not a second copy of them):
``DIR/<Person>/<folder path>/<name>``, names made safe for every file system, written to
a hidden temporary file, verified, and given its name only where no file has it - a
different file already there keeps its name and the drawing becomes ``name (2).jpg``,
the same drawing already there is left alone. Beside each drawing a ``NAME.json`` holds
everything found in the file. A video gets a contact sheet: frames from where its
people are seen, each labelled with who and when.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from facefinder import partials
from facefinder.copying import (
    CopyError,
    choose_name,
    create_temp,
    folder_inside,
    long_path,
    mark_as_copies,
    place,
    rel_parts,
    remove_quietly,
    safe_component,
    sha256_file,
)
from facefinder.messages import one_line
from facefinder.object_report import object_entry
from facefinder.records import Face, FileResult, Match, ObjectBox
from facefinder.walk import printable

PERSON_COLOUR = (255, 0, 255)  # magenta: stands out on skin, sky and grass alike
OBJECT_COLOUR = (255, 170, 0)  # amber
OTHER_FACE_COLOUR = (160, 160, 160)  # faces of nobody searched for
FULL_SIZE = 1 << 15  # decode side: the photo's own size (the decoder's budget still holds)
QUALITY = 92  # JPEG quality of a drawing: the photo stays a photo
SHEET_FRAMES = 6  # frames on a video's contact sheet
SHEET_SIDE = 480  # long side of each frame on the sheet
_KEEP_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


@dataclass
class AnnotateSummary:
    """What an ``--annotate`` run did; ``failed`` holds ``("<folder>/<rel>", reason)``."""

    written: int = 0
    already_there: int = 0
    renamed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    not_done: int = 0
    drawings: dict[tuple[str, str], Path] = field(default_factory=dict, repr=False)


@dataclass
class _Target:
    """One drawing to make: a file of the collection, under one folder of DIR."""

    rel: str
    folder: str  # a person's name, or the object asked for (``--with dog``)
    kind: str  # "image" or "video"
    people: list[Match]
    objects: list[ObjectBox]
    faces: list[Face]  # every face found (for the other faces' outlines), when known
    # a file found for objects alone: the classes asked for (what ``--with`` words mean)
    classes: frozenset[str] = frozenset()


def targets(matches: Sequence[Match], object_files: Sequence[FileResult],
            files: Sequence[FileResult], object_folder: str | None,
            object_classes: Iterable[str] = ()) -> list[_Target]:
    """The drawings to make: each matched (file, person), and with ``object_folder``
    (``--with dog`` asked without people) each object hit not already matched, its
    video's sheet showing the frames with ``object_classes`` (the classes asked for,
    as the question resolved its words)."""
    asked = frozenset(object_classes)
    by_rel = {f.rel: f for f in files}
    objects_of = {f.rel: f.objects or [] for f in object_files}
    people_of: dict[str, list[Match]] = {}
    for match in matches:
        people_of.setdefault(match.rel, []).append(match)
    found: list[_Target] = []
    seen: set[tuple[str, str]] = set()

    def add(rel: str, folder: str, kind: str, classes: frozenset[str] = frozenset()) -> None:
        if (rel, folder) in seen:
            return
        seen.add((rel, folder))
        file = by_rel.get(rel)
        objects = objects_of.get(rel, file.objects or [] if file is not None else [])
        found.append(_Target(rel, folder, kind, people_of.get(rel, []), list(objects),
                             list(file.faces) if file is not None else [], classes))

    for match in matches:
        add(match.rel, match.person, "video" if match.frames is not None else "image")
    if object_folder is not None:
        for file in object_files:
            add(file.rel, object_folder, file.kind, asked)
    return found


def annotate_all(found: Iterable[_Target], photos_root: Path, dest: Path, *,
                 on_event: Callable[[str], None] | None = None) -> AnnotateSummary:
    """Make every drawing of ``found`` under ``dest``; Ctrl-C stops between files."""
    summary = AnnotateSummary()
    swept: set[Path] = set()
    todo = list(found)
    if todo:
        mark_as_copies(Path(dest), "drawings of photos")
    for done, target in enumerate(todo):
        try:
            _one(target, Path(photos_root), Path(dest), summary, on_event, swept)
        except KeyboardInterrupt:
            summary.interrupted = True
            summary.not_done = len(todo) - done
            break
    return summary


def _one(target: _Target, photos_root: Path, dest: Path, summary: AnnotateSummary,
         on_event: Callable[[str], None] | None, swept: set[Path]) -> None:
    label = f"{target.folder}/{target.rel}"
    try:
        parts = rel_parts(target.rel)
        source = photos_root.joinpath(*parts)
        folder = folder_inside(dest, [safe_component(target.folder),
                                      *(safe_component(p) for p in parts[:-1])])
        if folder not in swept:  # a run killed mid-way left its temporary file here
            swept.add(folder)
            partials.sweep(folder)
        if target.kind == "video":
            data, name = _contact_sheet(source, target), f"{parts[-1]}.sheet.jpg"
        else:
            data, name = _drawing(source, target)
        name = safe_component(name, room=len(".json"))
        outcome, final = _place_new(data, folder, name)
        _sidecar(folder / f"{final}.json", target, source, final)
    except (OSError, ValueError, CopyError) as exc:
        reason = one_line(exc)
        summary.failed.append((label, reason))
        if on_event is not None:
            on_event(f"Could not annotate {printable(target.rel)} for "
                     f"{printable(target.folder)}: {reason}")
        return
    summary.drawings[(target.rel, target.folder)] = folder / final
    if outcome == "already":
        summary.already_there += 1
        return
    summary.written += 1
    if outcome == "renamed":
        summary.renamed.append("/".join([target.folder, *parts[:-1], final]))


# --------------------------------------------------------------------------- drawing


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own font at ``size`` pixels (no font file needed on any OS)."""
    return ImageFont.load_default(size=max(10, size))


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str,
           colour: tuple[int, int, int], size: int) -> None:
    """``text`` on a filled band of ``colour`` just above ``xy`` (inside the image)."""
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 6, bottom - top + 6
    x = max(0.0, xy[0])
    y = xy[1] - h if xy[1] - h >= 0 else xy[1]
    draw.rectangle((x, y, x + w, y + h), fill=colour)
    draw.text((x + 3 - left, y + 3 - top), text, fill=(0, 0, 0), font=font)


def draw_boxes(image: Image.Image, scale: float, people: Sequence[Match],
               objects: Sequence[ObjectBox], faces: Sequence[Face]) -> Image.Image:
    """``image`` (the upright photo at ``scale`` x its original size) with every box
    drawn: other faces first, then objects, then people, so names stay on top."""
    image = image.convert("RGB")
    draw = ImageDraw.Draw(image)
    line = max(3, round(max(image.size) / 400))
    text = max(12, round(max(image.size) / 60))

    def rect(box: Sequence[float]) -> tuple[float, float, float, float]:
        x, y, w, h = (float(v) * scale for v in box)
        return (x, y, x + w, y + h)

    named = {tuple(int(v) for v in m.box) for m in people}
    for face in faces:
        if tuple(int(v) for v in face.box) not in named and face.time is None:
            draw.rectangle(rect(face.box), outline=OTHER_FACE_COLOUR, width=max(1, line // 2))
    for found in objects:
        if found.time is not None:
            continue  # a video's objects belong to its frames, not to a photo
        box = rect(found.box)
        draw.rectangle(box, outline=OBJECT_COLOUR, width=line)
        _label(draw, (box[0], box[1]), f"{found.label} {found.score:.2f}", OBJECT_COLOUR, text)
    for match in people:
        box = rect(match.box)
        draw.rectangle(box, outline=PERSON_COLOUR, width=line)
        _label(draw, (box[0], box[1]), f"{match.person} {match.distance:.2f}", PERSON_COLOUR,
               text)
    return image


def _drawing(source: Path, target: _Target) -> tuple[bytes, str]:
    """The annotated photo's bytes and file name (a JPEG or PNG keeps its own
    format and name; anything else, e.g. HEIC, becomes ``NAME.jpg``)."""
    from facefinder.decode import DecodeError, load_image

    try:
        decoded = load_image(source, FULL_SIZE)
    except DecodeError as exc:
        raise CopyError(str(exc)) from None
    image = draw_boxes(Image.fromarray(decoded.rgb), decoded.scale, target.people,
                       target.objects, target.faces)
    name = source.name
    fmt = _KEEP_FORMAT.get(source.suffix.lower())
    if fmt is None:
        fmt, name = "JPEG", f"{name}.jpg"
    return _encode(image, fmt), name


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        # 4:4:4: with the usual halved colour resolution a thin coloured outline smears
        # into its neighbours and the box's colour is lost on small photos.
        image.save(out, "JPEG", quality=QUALITY, subsampling=0)
    else:
        image.save(out, fmt)
    return out.getvalue()


def _spread(times: Sequence[float], count: int) -> list[float]:
    """Up to ``count`` of ``times`` (sorted, distinct), first and last among them."""
    times = sorted(set(times))
    if len(times) <= count:
        return times
    step = (len(times) - 1) / (count - 1) if count > 1 else 0
    return [times[round(i * step)] for i in range(count)]


def _moments(target: _Target) -> list[tuple[float, str]]:
    """(time, caption) of the frames to show: for each person, up to three sampled frames
    where their face was found (first, middle, last), or their span's ends when the
    faces of the file are not at hand; for a video found for an object alone (``--with
    dog``), frames where the detector saw it, captioned with the classes seen there."""
    if not target.people:
        wanted = [o for o in target.objects if o.time is not None and o.label in target.classes]
        seen = wanted or [o for o in target.objects if o.time is not None]
        return [(t, ", ".join(sorted({o.label for o in seen if abs(o.time - t) < 1e-3})))
                for t in _spread([float(o.time) for o in seen], SHEET_FRAMES)] or [(0.0, "")]
    per_person = max(1, min(3, SHEET_FRAMES // max(1, len(target.people))))
    moments: list[tuple[float, str]] = []
    for match in target.people:
        first = float(match.first or 0.0)
        last = float(match.last if match.last is not None else first)
        times = [float(f.time) for f in target.faces
                 if f.time is not None and first - 1e-3 <= f.time <= last + 1e-3]
        moments.extend((t, match.person) for t in _spread(times or [first, last], per_person))
    return sorted(moments)[:SHEET_FRAMES]


def _objects_at(objects: Sequence[ObjectBox], at: float) -> list[ObjectBox]:
    """The objects of the sampled frame at ``at``. Objects and faces are sampled on the
    same time grid (``video.sample_frames``, times rounded to the millisecond), so every
    moment shown is a sampled frame: one where the detector found nothing shows no box,
    never a neighbouring frame's (a second away at 1 frame/s, where the things moved)."""
    return [o for o in objects if o.time is not None and abs(float(o.time) - at) < 1e-3]


def _contact_sheet(source: Path, target: _Target) -> bytes:
    """Up to SHEET_FRAMES frames from where the video's people (or the object asked for)
    are seen, in a grid, each labelled with who is seen and when, the faces and the
    objects (``--objects``) of that frame outlined as on a photo's drawing."""
    from facefinder.report import _clock
    from facefinder.thumbs import video_frame

    tiles: list[Image.Image] = []
    for at, person in _moments(target):
        thumb = video_frame(source, at, side=SHEET_SIDE, quality=QUALITY)
        if thumb is None:
            continue
        tile = Image.open(io.BytesIO(thumb.jpeg)).convert("RGB")
        draw = ImageDraw.Draw(tile)
        scale = thumb.width / max(1, thumb.orig_width)
        for found in _objects_at(target.objects, at):
            x, y, w, h = (float(v) * scale for v in found.box)
            draw.rectangle((x, y, x + w, y + h), outline=OBJECT_COLOUR, width=2)
            _label(draw, (x, y), f"{found.label} {found.score:.2f}", OBJECT_COLOUR, 14)
        for face in target.faces:
            if face.time is not None and abs(face.time - at) < 1e-3:
                x, y, w, h = (float(v) * scale for v in face.box)
                draw.rectangle((x, y, x + w, y + h), outline=PERSON_COLOUR, width=3)
        _label(draw, (0, tile.height), f"{person} {_clock(at)}".strip(),
               PERSON_COLOUR if target.people else OBJECT_COLOUR, 16)
        tiles.append(tile)
    if not tiles:
        raise CopyError("no frame of the video could be read for the contact sheet")
    columns = min(3, len(tiles))
    rows = -(-len(tiles) // columns)
    w = max(t.width for t in tiles)
    h = max(t.height for t in tiles)
    sheet = Image.new("RGB", (columns * w, rows * h), (24, 24, 24))
    for n, tile in enumerate(tiles):
        sheet.paste(tile, ((n % columns) * w, (n // columns) * h))
    return _encode(sheet, "JPEG")


# --------------------------------------------------------------------------- writing


def _write_temp(data: bytes, folder: Path, name: str) -> Path:
    """``data`` in a new hidden temporary file of ``folder``, synced and read back."""
    fd, tmp = create_temp(folder, name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if sha256_file(tmp) != hashlib.sha256(data).hexdigest():
            raise CopyError("verification failed: the written file differs")
    except BaseException:
        remove_quietly(tmp)
        raise
    return tmp


def _place_new(data: bytes, folder: Path, name: str) -> tuple[str, str]:
    """Give ``data`` the first free name of ``name``, ``name (2)``, ...; an identical
    file already there is "already" (``copying.choose_name``). Returns (outcome, final
    name); never overwrites."""
    digest = hashlib.sha256(data).hexdigest()
    tmp: Path | None = None
    try:
        for _ in range(3):  # (a race lost three times is not worth a fourth look)
            final, already = choose_name(folder, name, lambda c: _holds(c, digest),
                                         room=len(".json"))
            if already:
                return "already", final
            if tmp is None:
                tmp = _write_temp(data, folder, name)
            if place(tmp, folder / final):
                tmp = None
                return ("written" if final == name else "renamed"), final
        raise CopyError(f"{name!r}: other files kept taking its name")
    finally:
        if tmp is not None:
            remove_quietly(tmp)


def _holds(candidate: Path, digest: str) -> bool:
    """Whether ``candidate`` is a regular file (not a link) with this sha256."""
    try:
        return stat.S_ISREG(os.lstat(long_path(candidate)).st_mode) and (
            sha256_file(candidate) == digest)
    except OSError:
        return False


def sidecar_document(target: _Target, source: Path, drawing: str) -> dict[str, Any]:
    """Everything found in the file, as the sidecar holds it."""
    return {
        "facefinder": "annotation",
        "source": target.rel,
        "drawing": drawing,
        "people": [{"person": m.person, "distance": round(float(m.distance), 4),
                    "box": [int(v) for v in m.box],
                    **({"first_s": m.first, "last_s": m.last, "frames": m.frames}
                       if m.frames is not None else {}),
                    **({"face": m.face} if m.face else {})} for m in target.people],
        "faces": [{"box": [int(v) for v in f.box], "score": round(float(f.score), 4),
                   **({"time_s": round(float(f.time), 3)} if f.time is not None else {}),
                   **({"skipped": f.skipped} if f.skipped else {})} for f in target.faces],
        "objects": [object_entry(o) for o in target.objects],
    }


def _sidecar(path: Path, target: _Target, source: Path, drawing: str) -> None:
    """``NAME.json`` beside the drawing; one already there is never replaced."""
    if os.path.lexists(long_path(path)):
        return
    text = json.dumps(sidecar_document(target, source, drawing), ensure_ascii=False,
                      indent=2) + "\n"
    # a name that is not valid Unicode (Linux allows any bytes) holds lone surrogates:
    # written as JSON's \udcXX escapes, as the JSON report does (json.load gives the
    # name back as os.listdir gave it)
    tmp = _write_temp(text.encode("utf-8", "backslashreplace"), path.parent, path.name)
    if not place(tmp, path):
        remove_quietly(tmp)


__all__ = ["AnnotateSummary", "annotate_all", "draw_boxes", "sidecar_document", "targets"]
