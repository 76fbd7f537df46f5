"""Deliver what the user asked for after a search: reports, copies, reference crops.

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
from facefinder.report import partial_path

EXIT_OK, EXIT_UNDELIVERED, EXIT_INTERRUPTED = 0, 3, 130


def deliver(args: argparse.Namespace, result: RunResult, say: Callable[[str], None]) -> int:
    """Write the reports and copies ``args`` asks for; returns the exit status."""
    failed = _reports(args, result, say)
    failed |= _reference_crops(args, result, say)
    if args.copy and result.interrupted:
        say(f"Not copied: the search was interrupted, so the {len(result.matches)} matches "
            f"found so far were not copied to {args.copy}; run again to finish.")
    elif args.copy:
        failed |= _copies(args, result, say)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_UNDELIVERED if failed else EXIT_OK


def _reports(args: argparse.Namespace, result: RunResult, say: Callable[[str], None]) -> bool:
    from facefinder.report import write_csv, write_json

    failed = False
    for path, kind in ((args.csv, "csv"), (args.json, "json")):
        if path is None:
            continue
        target = partial_path(path) if result.interrupted else path
        try:
            if kind == "csv":
                write_csv(target, result.matches, model=result.model,
                          threshold=result.threshold)
            else:
                write_json(target, matches=result.matches, unreadable=result.unreadable,
                           summary=result.summary.as_dict(), model=result.model,
                           threshold=result.threshold)
        except OSError as exc:
            say(f"finder: error: cannot write {target}: {exc.strerror or exc}")
            failed = True
            continue
        if result.interrupted:
            say(f"Partial {kind.upper()} written: {target} ({path} left as it was)")
        else:
            say(f"{kind.upper()} written: {target}")
    return failed


def _reference_crops(args: argparse.Namespace, result: RunResult,
                     say: Callable[[str], None]) -> bool:
    """Save the face taken from a several-face reference photo, for the user to check.

    Written next to the report (or into the copy folder) as ``reference-faces/``.
    """
    notes = [n for n in result.reference_notes if n.box is not None]
    places = [p.parent for p in (args.csv, args.json) if p is not None]
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
            say(f"finder: error: cannot save the face taken from {note.rel}: {exc}")
            return True
        say(f"The face taken from reference {note.rel} is saved as {folder / Path(name).stem}.jpg")
    return False


def _copies(args: argparse.Namespace, result: RunResult, say: Callable[[str], None]) -> bool:
    from facefinder.copying import copy_matches

    dest = args.copy.resolve()
    done = copy_matches(result.matches, result.photos, dest, on_event=say)
    say(f"Copies in {dest}: {done.copied} new, {done.already_there} already there"
        + (f", {len(done.failed)} FAILED" if done.failed else ""))
    for rel, reason in done.failed:
        say(f"  could not copy {rel}: {reason}")
    return bool(done.failed)
