"""Deliver what the user asked for after a search: reports, copies (and their XMP, --xmp),
reference crops.

Each delivery that fails is said in one line and makes the exit status 3, so a script
(or a user coming back after hours) knows that something asked for is missing. After an
interruption a report goes to ``NAME.partial.ext`` (a complete earlier report is never
replaced by a partial one) and no copies are made, and the finder says so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from facefinder.api import RunResult
from facefinder.cli_options import EXIT_INTERRUPTED, EXIT_OK, EXIT_UNDELIVERED
from facefinder.report import partial_path
from facefinder.walk import printable


def deliver(args: argparse.Namespace, result: RunResult, say: Callable[[str], None]) -> int:
    """Write the reports and copies ``args`` asks for; returns the exit status."""
    if not result.searched:  # stopped while reading the references: nothing to deliver
        if args.csv or args.json or _html(args) or args.copy or _annotate(args):
            say("No report written and nothing copied: the search had not started.")
        return EXIT_INTERRUPTED
    failed = _reports(args, result, say)
    failed |= _reference_crops(args, result, say)
    if args.copy and result.interrupted:
        say(f"Not copied: the search was interrupted, so the {len(result.matches)} matches "
            f"found so far were not copied to {args.copy}; run again to finish.")
    elif args.copy:
        copy_failed, stopped = _copies(args, result, say)
        if stopped:
            return EXIT_INTERRUPTED
        failed |= copy_failed
    if _annotate(args) and result.interrupted:
        say(f"Not annotated: the search was interrupted, so nothing was drawn in "
            f"{_annotate(args)}; run again to finish.")
    elif _annotate(args):
        annotate_failed, stopped = _annotations(args, result, say)
        if stopped:
            return EXIT_INTERRUPTED
        failed |= annotate_failed
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_UNDELIVERED if failed else EXIT_OK


def _html(args: argparse.Namespace) -> Path | None:
    """``--html`` (absent from namespaces made before the option existed)."""
    return getattr(args, "html", None)


def _annotate(args: argparse.Namespace) -> Path | None:
    """``--annotate`` (absent from namespaces made before the option existed)."""
    return getattr(args, "annotate", None)


def _object_files(args: argparse.Namespace, result: RunResult) -> list | None:
    """The files with objects for the reports, when objects were asked for (else None:
    the reports keep their usual columns)."""
    asked = getattr(args, "objects", False) or getattr(args, "with_objects", None)
    return result.object_files if asked else None


def _annotations(args: argparse.Namespace, result: RunResult, say: Callable[[str], None]
                 ) -> tuple[bool, bool]:
    """``--annotate``: the drawings; returns (some failed, Ctrl-C stopped them)."""
    from facefinder.annotate import annotate_all, targets
    from facefinder.object_names import resolve

    dest = args.annotate.resolve()
    people = args.person or args.all_of or args.any_of
    words = [w.strip() for w in getattr(args, "with_objects", None) or []]
    folder = " + ".join(words) if words and not people else None  # all of them were asked
    classes = {c for word in words for c in resolve(word)}  # (the question resolved them)
    done = annotate_all(targets(result.matches, result.object_files, result.files, folder,
                                classes), result.photos, dest, on_event=say)
    say(f"Annotated copies in {dest}: {done.written} new, {done.already_there} already there"
        + (f", {len(done.failed)} FAILED" if done.failed else "")
        + (f"; interrupted: {done.not_done} not drawn (run again to finish)"
           if done.interrupted else ""))
    for rel in done.renamed:
        say(f"  a different file already had the name: saved as {printable(rel)}")
    return bool(done.failed), done.interrupted


def _reports(args: argparse.Namespace, result: RunResult, say: Callable[[str], None]) -> bool:
    from facefinder.report import write_csv, write_json

    failed = False
    for path, kind in ((args.csv, "csv"), (args.json, "json"), (_html(args), "html")):
        if path is None:
            continue
        target = partial_path(path) if result.interrupted else path
        try:
            if kind == "csv":
                write_csv(target, result.matches, model=result.model,
                          threshold=result.threshold,
                          object_files=_object_files(args, result))
            elif kind == "html":
                from facefinder.html_report import write_html

                write_html(result, target, say=say)
            else:
                write_json(target, matches=result.matches, unreadable=result.unreadable,
                           summary=result.summary.as_dict(), model=result.model,
                           threshold=result.threshold,
                           object_files=_object_files(args, result))
        except OSError as exc:
            say(f"finder: error: cannot write {target}: {exc.strerror or exc}")
            failed = True
            continue
        if result.interrupted:
            kept = f" ({path} left as it was)" if path.exists() else ""
            say(f"Partial {kind.upper()} written: {target}{kept}")
        else:
            say(f"{kind.upper()} written: {target}")
            _remove_stale_partial(partial_path(path), kind)
    return failed


def _remove_stale_partial(path: Path, kind: str) -> None:
    """A complete report supersedes the partial one of an earlier interrupted run."""
    from facefinder.report import is_our_report

    try:
        if path.is_file() and is_our_report(path, kind):
            path.unlink()
    except OSError:
        pass  # a leftover that cannot be removed does no harm


def _reference_crops(args: argparse.Namespace, result: RunResult,
                     say: Callable[[str], None]) -> bool:
    """Save the face taken from a several-face reference photo, for the user to check.

    Written next to the report (or into the copy folder) as ``reference-faces/``.
    """
    notes = [n for n in result.reference_notes if n.box is not None]
    places = [p.parent for p in (args.csv, args.json, _html(args)) if p is not None]
    places += [args.copy] if args.copy else []
    if not notes or not places:
        return False
    from PIL import Image

    from facefinder.copying import safe_component
    from facefinder.decode import DecodeError, load_image

    folder = Path(places[0]) / "reference-faces"
    for note in notes:
        x, y, w, h = note.box
        name = safe_component(note.rel.replace("/", " - "))
        try:
            image = load_image(result.reference / note.rel, 1600)
            s = image.scale
            crop = Image.fromarray(image.rgb).crop(
                (round(x * s), round(y * s), round((x + w) * s), round((y + h) * s)))
            folder.mkdir(parents=True, exist_ok=True)
            crop.save(folder / f"{Path(name).stem}.jpg", quality=90)
        except (OSError, DecodeError, ValueError) as exc:
            say(f"finder: error: cannot save the face taken from {printable(note.rel)}: {exc}")
            return True
        say(f"The face taken from reference {printable(note.rel)} is saved as "
            f"{folder / Path(name).stem}.jpg")
    return False


def _copies(args: argparse.Namespace, result: RunResult, say: Callable[[str], None]
            ) -> tuple[bool, bool]:
    """Copy the matches; returns (some copy failed, Ctrl-C stopped the copying)."""
    from facefinder.copying import copy_matches

    dest = args.copy.resolve()
    done = copy_matches(result.matches, result.photos, dest, on_event=say)
    say(f"Copies in {dest}: {done.copied} new, {done.already_there} already there"
        + (f", {len(done.failed)} FAILED" if done.failed else "")
        + (f"; interrupted: {done.not_copied} not copied (run again to finish)"
           if done.interrupted else ""))
    for rel, reason in done.failed:
        say(f"  could not copy {printable(rel)}: {reason}")
    mode = getattr(args, "xmp", None)
    if not mode or done.interrupted or not done.copies:
        return bool(done.failed), done.interrupted
    xmp_failed, stopped = _xmp(mode, result, done.copies, dest, say)
    return bool(done.failed) or xmp_failed, stopped


def _xmp(mode: str, result: RunResult, copies: dict, dest: Path,
         say: Callable[[str], None]) -> tuple[bool, bool]:
    """``--xmp``: the people of each copy (new or already there) as XMP; returns (some
    copy could not be annotated, Ctrl-C stopped it)."""
    from facefinder.xmp import annotate

    done = annotate(copies, result.matches, result.photos, mode, dest=dest, on_event=say)
    parts = [f"{done.written} sidecar{'' if done.written == 1 else 's'} written"]
    if mode == "embed" or done.embedded:
        parts.append(f"{done.embedded} JPEG cop{'y' if done.embedded == 1 else 'ies'} "
                     "annotated")
    parts.append(f"{done.unchanged} unchanged")
    say("Names for photo apps (XMP): " + ", ".join(parts)
        + (f", {len(done.failed)} FAILED" if done.failed else "")
        + (f"; interrupted: {done.not_done} not written (run again to finish)"
           if done.interrupted else ""))
    for rel, reason in done.failed:
        say(f"  no XMP for {printable(rel)}: {reason}")
    return bool(done.failed), done.interrupted
