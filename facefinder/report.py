"""What the user reads (console listing and summary) and what machines read (CSV, JSON).

Report files are written atomically (temporary file in the same folder, fsync, replace), so
a crash or a pulled USB stick leaves either the old report or the new one, never half of
one. Because the finder must never damage a photo, an existing file is only replaced if it
looks like a report of the same kind (or is empty): pointing ``--csv`` at a photo by
mistake raises FileExistsError instead of destroying it.

Summary dict accepted by :func:`format_summary` (and stored as-is in the JSON report);
every key is optional and a missing one just leaves its line out:

``files_scanned``       int, every file seen under PHOTOS_DIR
``images_read``         int, images decoded successfully
``faces_found``         int, faces detected in those images
``faces_skipped``       int, faces too small or too blurry to trust (not matched)
``matches_per_person``  dict person -> int, photos in which that person was found
                        (kept in the JSON; the console listing shows the counts)
``videos_read``         int, videos whose frames were sampled and searched
``files_decoded``       int, files analysed in this run (not answered by the face index)
``from_index``          int, files answered from the face index without decoding
``other_files``         int, files that are neither images nor videos
``unreadable``          list of (path, reason), files that could not be read
``elapsed_s``           float, wall-clock seconds of the search
``interrupted``         bool, stopped by Ctrl-C before every file was looked at
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from facefinder import partials
from facefinder.index import IndexInfo
from facefinder.records import FileResult, Match
from facefinder.walk import printable

CSV_COLUMNS = ("path", "person", "distance", "box", "model", "threshold", "taken", "taken_from",
               "confidence")
# Added after CSV_COLUMNS only when some match is in a video: seconds of the first and last
# sampled frame showing the person, and how many sampled frames show them.
CSV_VIDEO_COLUMNS = ("first_s", "last_s", "frames")
MAX_UNREADABLE_LINES = 20  # beyond this the console summary points to --json
FILE_DATE_NOTE = "* no camera date in the file: the date is the file's own (copying may change it)"
LIST_LINES = 10  # paths shown per person on the console unless --list says otherwise

# How an existing report starts; anything else (a photo!) is never replaced.
# The first six columns: reports of earlier versions (without ``taken``) are ours too.
_CSV_SIGNATURE = ",".join(CSV_COLUMNS[:6]).encode("ascii")
_UTF8_BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------- atomic writes


def _looks_like(path: Path, is_ours: Callable[[bytes], bool]) -> bool:
    """True if path is missing, empty, or starts the way our report of this kind starts.

    Anything but a regular file (a folder, a FIFO that would block the read, a device)
    is never ours.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return False
        with open(path, "rb") as handle:
            head = handle.read(256)
    except FileNotFoundError:
        return True
    except IsADirectoryError:
        return False
    # empty: nothing but a few blanks (a file just made); blank lines ahead of a user's
    # text do not make it empty
    return (info.st_size <= len(head) and not head.strip()) or is_ours(head)


def _is_our_csv(head: bytes) -> bool:
    return head.removeprefix(_UTF8_BOM).startswith(_CSV_SIGNATURE)


def _is_our_json(head: bytes) -> bool:
    """Our JSON report: the marker first, or (earlier versions, without one) exactly
    their start: the model, the threshold, then the matches."""
    text = b" ".join(head.split())
    return text.startswith(b'{ "facefinder": "report"') or bool(_OLD_JSON.match(text))


# How reports before the marker started (indent=2, as they were written), blanks folded
_OLD_JSON = re.compile(rb'\{ "model": "[^"]*", "threshold": (?:[-0-9.eE]+|null), "matches": \[')


# What makes an HTML file ours to replace (``html_report`` writes it first).
HTML_MARKER = b"<!DOCTYPE html>\n<!-- facefinder report -->"


def _is_our_html(head: bytes) -> bool:
    return head.startswith(HTML_MARKER)


# Each kind of report and how to recognise one of ours.
SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "csv": _is_our_csv, "json": _is_our_json, "html": _is_our_html}


def _atomic_write(
    path: Path,
    write: Callable[[TextIO], None],
    *,
    encoding: str,
    newline: str,
    errors: str,
    is_ours: Callable[[bytes], bool],
) -> None:
    """Write via a hidden temp file in the same folder, fsync, then os.replace into place.

    The temp file lives next to the target so the final replace is a same-filesystem
    rename, which is atomic on Windows, macOS and Linux. On Windows the replace fails with
    PermissionError while the old report is open in Excel; that error is passed on (the
    temp file is removed) so the caller can tell the user to close it.
    """
    path = Path(path)
    if not _looks_like(path, is_ours):
        raise FileExistsError(
            errno.EEXIST, "refusing to replace a file that is not a facefinder report", str(path)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partials.sweep(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(partials.temp_name(path.name))
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline=newline, errors=errors) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def by_date(match: Match) -> tuple[str, str, str, str]:
    """The one order of every listing and report: capture time (oldest first; unknown
    first), then path as file managers sort it, then person - so reports read like an
    album, the console and the CSV agree, and runs diff cleanly."""
    return (match.taken or "", match.rel.casefold(), match.rel, match.person)


def _sorted_matches(matches: Sequence[Match]) -> list[Match]:
    return sorted(matches, key=by_date)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{float(value):.1f}"


def _number(value: float) -> float:
    """A plain Python float (numpy scalars break json and print as 'np.float32(...)')."""
    return round(float(value), 6)


# --------------------------------------------------------------------------- CSV


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would run it as a formula.

    A file or person folder named ``=HYPERLINK(...)`` or ``+1.jpg`` would otherwise be
    live in Excel or LibreOffice when the CSV is opened there, as the README suggests
    (CSV injection). The apostrophe is what spreadsheets themselves use to mark text;
    a script reading the CSV strips it with ``removeprefix("'")`` for these cells only.
    """
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(path: Path, matches: Sequence[Match], *, model: str, threshold: float,
              object_files: Sequence[FileResult] | None = None) -> None:
    """Write one row per (file, person) match:
    ``path,person,distance,box,model,threshold,taken,taken_from,confidence``.

    ``threshold`` is the cutoff this person was decided with (each person has their own,
    see ``decide``); ``confidence`` the share of matches this far under it that were right
    on the calibration albums (1 for a face you confirmed; empty when not calibrated).

    ``taken`` is the capture time used for sorting and --since/--until, and
    ``taken_from`` says where it comes from: ``exif`` (the camera), ``video`` (the
    video's creation time) or ``file time`` (no camera date: the file's modification
    time, which a copy or an edit may have changed).

    Encoding is UTF-8 *with* a BOM (``utf-8-sig``): without the BOM, Excel on Windows
    decodes CSV files in the legacy ANSI code page and garbles every non-ASCII name and
    path; with it Excel shows them correctly. Python reads it cleanly with
    ``open(path, encoding="utf-8-sig", newline="")`` + ``csv.DictReader``, and pandas'
    ``read_csv`` skips the BOM by itself. No ``sep=,`` hint line is written because it
    breaks every CSV parser and makes Excel ignore the BOM; in locales whose list separator
    is ';' use Excel's Data > From Text/CSV import instead.

    Rows use the csv module's default Excel dialect (comma, CRLF, quoting only when
    needed), so ``box`` = ``"x,y,w,h"`` is one quoted field. ``path`` is the
    '/'-separated path relative to PHOTOS_DIR; a ``path`` or ``person`` that a
    spreadsheet would take for a formula gets a leading ``'`` (:func:`spreadsheet_safe`);
    the JSON report always has the exact path. Names that are not valid Unicode
    (possible on Linux) are written with ``\\udcXX`` escapes instead of crashing.

    With ``object_files`` (``--objects``) a last column ``objects`` lists each file's
    objects (``dog 0.91; cat 0.80``), and a file with objects but no person matched gets
    a row of its own with ``person`` empty.
    """
    from facefinder.object_report import objects_text

    videos = any(match.frames is not None for match in matches)
    objects = None if object_files is None else {f.rel: f for f in object_files}

    def write(handle: TextIO) -> None:
        writer = csv.writer(handle)
        header = CSV_COLUMNS + CSV_VIDEO_COLUMNS if videos else CSV_COLUMNS
        writer.writerow((*header, "objects") if objects is not None else header)
        for match in _sorted_matches(matches):
            row = [
                spreadsheet_safe(match.rel),
                spreadsheet_safe(match.person),
                f"{float(match.distance):.4f}",
                ",".join(str(int(v)) for v in match.box),
                model,
                repr(_number(threshold if match.threshold is None else match.threshold)),
                match.taken or "",
                match.taken_from or "",
                "" if match.confidence is None else f"{match.confidence:.4f}",
            ]
            if videos:
                row += [_seconds(match.first), _seconds(match.last),
                        "" if match.frames is None else str(match.frames)]
            if objects is not None:
                found = objects.get(match.rel)
                row.append(objects_text(found.objects or ()) if found else "")
            writer.writerow(row)
        matched = {match.rel for match in matches}
        for file in sorted((objects or {}).values(), key=lambda f: f.rel):
            if file.rel not in matched:  # by column name: no second copy of the layout
                known = {"path": spreadsheet_safe(file.rel), "model": model,
                         "taken": file.taken or "", "taken_from": file.taken_from or ""}
                writer.writerow([*(known.get(column, "") for column in header),
                                 objects_text(file.objects or ())])

    _atomic_write(
        path,
        write,
        encoding="utf-8-sig",
        newline="",  # the csv module writes its own CRLF line ends
        errors="backslashreplace",
        is_ours=_is_our_csv,
    )


# --------------------------------------------------------------------------- JSON


def _json_default(value: Any) -> Any:
    """Make numpy scalars/arrays, paths and sets in the summary serialisable."""
    if hasattr(value, "tolist"):  # numpy scalar or array
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def _json_match(match: Match) -> dict:
    entry: dict[str, Any] = {
        "path": match.rel,
        "person": match.person,
        "distance": round(float(match.distance), 4),
        "box": [int(v) for v in match.box],
    }
    if match.taken is not None:
        entry["taken"] = match.taken
        entry["taken_from"] = match.taken_from
    if match.threshold is not None:  # this person's own cutoff
        entry["threshold"] = round(float(match.threshold), 4)
    if match.confidence is not None:
        entry["confidence"] = round(float(match.confidence), 4)
    if match.face is not None:  # with a face index: the face's id on the review page
        entry["face"] = match.face
    if match.confirmed:
        entry["confirmed"] = True  # the user said yes to this face on the review page
    if match.frames is not None:
        entry["first_s"] = None if match.first is None else round(float(match.first), 3)
        entry["last_s"] = None if match.last is None else round(float(match.last), 3)
        entry["frames"] = int(match.frames)
    return entry


def write_json(
    path: Path,
    *,
    matches: Sequence[Match],
    unreadable: Sequence[tuple[str, str]],
    summary: dict,
    model: str,
    threshold: float,
    object_files: Sequence[FileResult] | None = None,
) -> None:
    """Write the machine-readable report, UTF-8 without BOM (JSON forbids one), indent=2.

    Layout: ``{"facefinder": "report", "model", "threshold", "matches": [{"path",
    "person", "distance", "box": [x, y, w, h]}], "unreadable": [{"path", "reason"}],
    "summary": {...}}``; the ``"facefinder"`` marker is what lets a later run replace
    the file. A match also has ``"taken"`` (capture time) and ``"taken_from"`` (its
    source) when known, ``"face"`` (the face's id, with a face index) and
    ``"confirmed": true`` when the user confirmed it on the review page, and for a video
    ``"first_s"``, ``"last_s"`` and ``"frames"`` (when and in how many sampled frames).
    ``ensure_ascii=False`` keeps names readable; the only characters UTF-8 cannot encode
    (lone surrogates from undecodable Linux file names) are written as ``\\udcXX`` JSON
    escapes, so the file stays valid JSON and Python's json.load gives back the exact str
    that os.listdir returned. With ``object_files`` (``--objects``), ``"objects"`` lists
    ``{"path", "objects": [{"class", "score", "box": [x, y, w, h]}]}`` per file (and
    ``"time_s"`` for an object seen in a video frame).
    """
    document = {
        "facefinder": "report",  # the marker that lets a later run replace this file
        "model": model,
        "threshold": _number(threshold),
        "matches": [_json_match(match) for match in _sorted_matches(matches)],
        "unreadable": [{"path": rel, "reason": reason} for rel, reason in unreadable],
        "summary": summary,
    }
    if object_files is not None:
        from facefinder.object_report import json_objects

        document["objects"] = json_objects(object_files)

    def write(handle: TextIO) -> None:
        json.dump(document, handle, ensure_ascii=False, indent=2, default=_json_default)
        handle.write("\n")

    _atomic_write(
        path,
        write,
        encoding="utf-8",
        newline="\n",  # identical bytes on every OS
        errors="backslashreplace",  # inside a JSON string this *is* a valid \\uXXXX escape
        is_ours=_is_our_json,
    )


# --------------------------------------------------------------------------- before the run


def check_writable(path: Path, kind: str) -> str | None:
    """Why a report cannot be written to ``path`` (one line), or None when it can.

    Checked before any photo is read, so a typo costs seconds, not a whole run: the
    folder must exist and take a new file, and an existing file must be one of our own
    reports (never a photo or another program's file). ``kind``: "csv", "json", "html".
    """
    path = Path(path)
    folder = path.parent
    try:
        if path.is_dir():
            return f"{path} is a folder; give a file name, e.g. {path / 'found.csv'}"
        if not folder.is_dir():
            return f"the folder {folder} does not exist"
        if path.exists() and not path.is_file():
            return f"{path} is not a regular file (a pipe or device); give a file name"
        if path.exists() and not is_our_report(path, kind):
            return f"{path} exists and is not a report of this finder; it is left untouched"
    except OSError as exc:  # a name too long for the file system, for one
        return f"cannot use {path}: {exc.strerror or exc}"
    try:
        probe = folder / partials.temp_name(path.name)  # swept like any leftover if killed
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write in {folder}: {exc.strerror or exc}"
    return None


def is_our_report(path: Path, kind: str) -> bool:
    """Whether ``path`` is (or may safely replace) a ``kind`` report of ours."""
    return _looks_like(Path(path), SIGNATURES[kind])


def partial_path(path: Path) -> Path:
    """Where the report of an interrupted run goes: ``found.partial.csv`` beside it, so a
    partial report never replaces a complete one."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


# --------------------------------------------------------------------------- console text


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _date(taken: str | None, taken_from: str | None) -> str:
    """The capture date for a listing; marked when it is only the file's own date."""
    if not taken:
        return "(no date)  "
    day = taken[:10]
    return f"{day}*" if taken_from == "file time" else f"{day} "


def _when_seen(match: Match) -> str:
    return (f"  [seen {_clock(match.first)}-{_clock(match.last)}, "
            f"{_plural(match.frames or 0, 'frame')}]")


def _how_sure(match: Match) -> str:
    """Distance, the person's cutoff and the calibrated confidence, as shown on request."""
    text = f"{match.distance:.3f}"
    if match.threshold is not None:
        text += f" < {match.threshold:.2f}"
    if match.confirmed:
        text += ", confirmed by you"
    elif match.confidence is not None:
        text += f", {match.confidence:.2%} sure"
    return text


def format_results(matches: Sequence[Match], people: Sequence[str], *, show_distance: bool,
                   limit: int | None = LIST_LINES) -> str:
    """The per-person listing printed after a run: a count and the first ``limit`` paths.

    Every person in ``people`` gets a heading with a count, even with zero matches, so the
    user can see that "Grandma: 0 photos" was searched for rather than forgotten. Paths
    are sorted by capture date (oldest first; a date read from the file rather than the
    camera is marked), then by name; ``limit`` None lists them all. With show_distance
    each line ends with the distance (lower = more alike); a video line says when the
    person is seen, e.g. ``[seen 0:03-0:07, 5 frames]``.
    """
    best: dict[str, dict[str, Match]] = {person: {} for person in people}
    for match in matches:
        per_person = best.setdefault(match.person, {})
        if match.rel not in per_person or match.distance < per_person[match.rel].distance:
            per_person[match.rel] = match
    blocks = []
    for person, found in best.items():
        lines = [f"{person}: {_plural(len(found), 'photo')}"]
        ordered = sorted(found.values(), key=by_date)
        for match in ordered[:limit]:
            line = f"  {_date(match.taken, match.taken_from)}  {printable(match.rel)}"
            if show_distance:
                line += f"  ({_how_sure(match)})"
            if match.frames is not None:
                line += _when_seen(match)
            lines.append(line)
        if limit is not None and len(ordered) > limit:
            lines.append(f"  ... and {len(ordered) - limit} more (--list all shows every one; "
                         "--csv writes them all)")
        if not found:
            lines.append("  (not found in any photo)")
        blocks.append("\n".join(lines))
    if any(m.taken_from == "file time" for m in matches):
        blocks.append(FILE_DATE_NOTE)
    return "\n\n".join(blocks)


def format_answer(matches: Sequence[Match], question: str, *, show_distance: bool) -> str:
    """The answer to a question (--all/--any/--without): each file once, oldest first,
    with everyone searched for who is in it."""
    files: dict[str, list[Match]] = {}
    for match in matches:
        files.setdefault(match.rel, []).append(match)
    lines = [f"{question}: {_plural(len(files), 'file')}"]
    for rel, found in sorted(files.items(), key=lambda item: by_date(item[1][0])):
        first = found[0]
        people = ", ".join(
            f"{m.person} ({_how_sure(m)})" if show_distance else m.person
            for m in sorted(found, key=lambda m: m.person.casefold()))
        line = f"  {_date(first.taken, first.taken_from)}  {printable(rel)}  - {people}"
        if first.frames is not None:
            line += _when_seen(first)
        lines.append(line)
    if not files:
        lines.append("  (no file matches)")
    if any(m.taken_from == "file time" for m in matches):
        lines.append(FILE_DATE_NOTE)
    return "\n".join(lines)


def _clock(seconds: float | None) -> str:
    """Seconds into a video as m:ss (or h:mm:ss), cut (not rounded) like video players."""
    whole = int(float(seconds or 0.0))
    if whole >= 3600:
        return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    return f"{whole // 60}:{whole % 60:02d}"


def _duration(seconds: float) -> str:
    """'42.1 s', '3 min 05 s' or '2 h 07 min': precise when short, readable when long."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def format_summary(summary: dict, *, wall_s: float | None = None) -> str:
    """A short end-of-run block; see the module docstring for the keys (all optional).

    Unreadable files are listed as ``  path: reason`` up to MAX_UNREADABLE_LINES, then
    ``  ... and N more (see --json)`` so one broken folder cannot scroll everything else off
    the screen. Time is wall clock (``wall_s``, the whole command, when given); the speed
    is given only for files actually read in this run, never for index answers.
    """
    lines: list[str] = []

    def count(key: str, label: str) -> None:
        if summary.get(key) is not None:
            lines.append(f"{label}: {summary[key]}")

    count("files_scanned", "Files scanned")
    count("images_read", "Images")
    count("faces_found", "Faces found")
    count("faces_skipped", "Faces too small/blurry to trust")
    count("videos_read", "Videos searched")
    count("from_index", "Files answered from the face index")
    count("files_decoded", "Files read and analysed in this run")
    if summary.get("objects_found") or summary.get("objects_read"):
        count("objects_found", "Objects found")
        count("objects_read", "Files read again for their objects only")
    count("other_files", "Other files ignored")
    if summary.get("not_kept_in_index"):
        count("not_kept_in_index", "Results the face index could not keep")

    unreadable = summary.get("unreadable")
    if unreadable is not None:
        unreadable = list(unreadable)
        lines.append(f"Files that could not be read: {len(unreadable)}")
        for rel, reason in unreadable[:MAX_UNREADABLE_LINES]:
            lines.append(f"  {printable(rel)}: {' '.join(str(reason).split())}")
        if len(unreadable) > MAX_UNREADABLE_LINES:
            lines.append(f"  ... and {len(unreadable) - MAX_UNREADABLE_LINES} more (see --json)")

    elapsed = wall_s if wall_s is not None else summary.get("elapsed_s")
    if elapsed is not None:
        elapsed = float(elapsed)
        text = f"Time: {_duration(elapsed)} (wall clock)"
        read = summary.get("files_decoded")
        if read and elapsed > 0:
            text += f"; {read} files read at {read / elapsed:.1f} files/s"
        lines.append(text)
    return "\n".join(lines)


def format_index_info(info: IndexInfo, check: str, describe: Callable[[str], str]) -> str:
    """``--index-info`` in plain words (``describe`` turns an analysis key into words)."""
    lines = [f"Face index: {info.path}",
             f"Size on disk: {info.bytes_on_disk / 2**20:.1f} MB, created {info.created or '?'}",
             "Integrity check: " + ("passed" if check == "ok" else f"FAILED ({check})"),
             f"Files it knows (by content): {info.contents}, of which "
             f"{info.unreadable} could not be read",
             "Folders searched:"]
    lines += [f"  {printable(root)}  ({count} files)" for root, count in info.roots] or [
        "  (none yet)"]
    lines.append("How files were analysed:")
    lines += [f"  {describe(key)}: {_plural(files, 'file')}, {_plural(faces, 'face')}"
              for key, files, faces in info.settings] or ["  (nothing yet)"]
    if info.decisions:
        yes, no, named = info.decisions
        lines.append(f"Your decisions (review page): {_plural(yes, 'face')} confirmed "
                     f"for {named} {'person' if named == 1 else 'people'}, {no} rejected")
    for detector, looked, labels in info.objects or []:
        shown = ", ".join(f"{printable(label)} ({_plural(files, 'file')})"
                          for label, files in labels[:12])
        more = f" and {len(labels) - 12} more classes" if len(labels) > 12 else ""
        lines.append(f"Objects ({printable(detector)}): {_plural(looked, 'file')} looked at; "
                     f"{shown or 'nothing found'}{more}")
    run = info.last_run
    if run:
        lines.append(
            f"Last search: {run.get('date')} in {printable(str(run.get('folder')))}: "
            f"{run.get('files')} files ({run.get('decoded')} read, "
            f"{run.get('from_index')} answered from the index) in {run.get('seconds')} s"
            + (", interrupted" if run.get("interrupted") else ""))
    return "\n".join(lines)


def safe_print(text: str, stream: TextIO | None = None) -> None:
    """print() that cannot crash on a legacy Windows code page (or a surrogate in a name).

    Python writes Unicode to a real Windows console, but when output is redirected, or the
    console uses cp437/cp1252 via some wrapper, encoding "Zoë/写真.jpg" raises
    UnicodeEncodeError - and a report must never kill the run at the very end. Then the
    text is re-encoded with errors="replace" ('?' for what cannot be shown). stream
    defaults to sys.stdout *at call time*, so redirection and test capture work; with no
    stream at all (pythonw.exe) nothing is printed.
    """
    if stream is None:
        stream = sys.stdout
    if stream is None:
        return
    line = text + "\n"
    try:
        stream.write(line)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(line.encode(encoding, errors="replace").decode(encoding, errors="replace"))
    with contextlib.suppress(OSError, ValueError, AttributeError):
        stream.flush()


__all__ = [
    "CSV_COLUMNS",
    "MAX_UNREADABLE_LINES",
    "check_writable",
    "format_answer",
    "format_index_info",
    "format_results",
    "format_summary",
    "partial_path",
    "safe_print",
    "write_csv",
    "write_json",
]
