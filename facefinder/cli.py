"""Command line: ``python finder.py PHOTOS_DIR`` - options in, the API's answer out.

A thin layer over :mod:`facefinder.api`: check what can be checked before any photo is read
(report files, the copy folder, the threshold), run ``Finder.find`` with a progress bar,
print the answer, write reports and copies, and map the outcome to an exit status:
0 everything delivered, 1 models could not be fetched or the index is locked, 2 bad input
(one line says what), 3 the search ran but a report or copy could not be delivered,
130 interrupted (what was found is still printed and written, as a partial report).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from facefinder.api import PROGRAM_DIR, Finder, FinderError
from facefinder.cli_options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNDELIVERED,
    EXIT_USAGE,
    build_parser,
)
from facefinder.console import say
from facefinder.executors import ClusterError, Executor
from facefinder.index import IndexFileError, IndexLockedError
from facefinder.models.catalog import DEMO_ALBUM
from facefinder.pypi import FetchError
from facefinder.report import safe_print

INDEX_ENV = "FACEFINDER_INDEX"  # overrides the default index path (shared setups)


def main(argv: Sequence[str] | None = None, *, started: float | None = None) -> int:
    """Entry point; returns the process exit status. ``started``: when the program
    started (``time.monotonic()``), so the reported time includes start-up."""
    started = time.monotonic() if started is None else started
    args = build_parser().parse_args(argv)
    args.objects = bool(args.objects or args.object_detector)  # a detector named: --objects
    try:
        return _run(args, started)
    except (FinderError, IndexFileError) as exc:
        say(f"finder: error: {exc}")
        return EXIT_USAGE
    except (IndexLockedError, FetchError, ClusterError) as exc:
        say(f"finder: error: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:  # outside the search itself (fetching, copying, ...)
        say("Interrupted.")
        return EXIT_INTERRUPTED
    except sqlite3.DatabaseError as exc:  # damage SQLite only noticed mid-run
        say(f"finder: error: the face index {_index_path(args)} cannot be used ({exc}); "
            "move it away or run with --no-index")
        return EXIT_USAGE


def _run(args: argparse.Namespace, started: float) -> int:
    from facefinder import api

    _check_xmp(args)
    if args.index_info:
        return _index_info(args)
    if args.prune:
        if args.photos is None:
            raise FinderError("--prune needs the folder to tidy up, e.g. finder.py D:\\Photos "
                              "--prune")
        paths, contents, unsure = api.prune(_index_path(args), args.photos)
        say(f"Pruned {_index_path(args)}: {paths} paths under {args.photos.resolve()} no longer "
            f"exist; {contents} files no longer referenced anywhere were removed"
            + (f"; {unsure} could not be checked (kept)." if unsure else "."))
        return EXIT_OK
    from facefinder.console import Console
    from facefinder.deliver import deliver

    if args.export_references:
        return _export_references(args)
    api.check_threshold(args.model, args.threshold)
    console = Console(args)  # checks --since/--until/--min-faces... before any work
    _preflight(args)
    with _finder(args) as finder:
        if args.jobs and finder.jobs < args.jobs:
            say(f"--jobs {args.jobs}: using {finder.jobs} worker processes, as many as this "
                "PC's cores and free memory carry")
        if args.fetch_models:
            finder.verify_models()
            say(f"Models for {finder.spec.name} are present and verified in "
                f"{finder.models_dir}")
            return EXIT_OK
        photos, demo = args.photos, None
        if photos is None:
            demo = finder.ensure_demo()
            photos = demo / "photos"
            say(f"No PHOTOS_DIR given: running the demo on {photos}\n"
                "(usage: python finder.py PHOTOS_DIR; see --help)")
        if args.review:
            return _review(args, finder, photos, console)
        with _second_ctrl_c_waits():
            result = finder.find(photos, people=args.person, threshold=args.threshold,
                                 query=console.query, exclude=console.exclude,
                                 on_event=console.on_event, count_files=not args.no_progress,
                                 keep_files=bool(args.annotate),  # sidecars list every face
                                 follow_links=args.follow_links)
            console.close()
            console.print_result(result, finder, wall_s=time.monotonic() - started, demo=demo)
            return deliver(args, result, say)


@contextlib.contextmanager
def _second_ctrl_c_waits():
    """The first Ctrl-C stops the search, as always (``KeyboardInterrupt``); a second one
    while the search winds down and its partial report is written is only told to wait
    (pressed twice in a hurry, it cost that report); a third quits at once. Only where
    Python lets a handler be set (the main thread) and Ctrl-C has a Python handler (a
    run in the background, started with Ctrl-C ignored, stays so); elsewhere nothing
    changes. The handler before is put back after."""
    pressed = 0

    def on_ctrl_c(signum: int, frame: object) -> None:
        nonlocal pressed
        pressed += 1
        if pressed == 2:  # straight to the descriptor: the main thread may be mid-print
            with contextlib.suppress(OSError):
                os.write(2, b"\nWriting what was found so far (Ctrl-C once more to quit "
                            b"without it) ...\n")
            return
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)
    if not callable(before):  # ignored (a run in the background), or not Python's to set
        yield
        return
    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)  # (finder.py's own, or Python's)


def _review(args: argparse.Namespace, finder: Finder, photos: Path, console) -> int:
    """Search, then serve the review page until Ctrl-C."""
    from facefinder.review import Review
    from facefinder.web.server import serve

    if not 0 <= args.port <= 65535:
        raise FinderError("--port must be 0 (any free port) to 65535")
    ignored = [name for name, given in (
        ("--csv", args.csv), ("--json", args.json), ("--html", args.html),
        ("--copy", args.copy), ("--person", args.person)) if given]
    if ignored or console.query.asks():
        raise FinderError(f"--review shows everyone and every photo; "
                          f"{', '.join(ignored) or 'questions'} belong to a search run "
                          "(run again without --review: your answers are used there)")
    review = Review(finder, photos, threshold=args.threshold, on_event=console.on_event)
    console.close()
    s = review.result.summary
    say(f"Searched {s.files_scanned} files: {len(review.result.matches)} photos found, "
        f"{len(review.result.maybes)} maybes, {len(review.clusters())} groups of unknown "
        "faces.")
    try:
        serve(review, port=args.port, open_browser=not args.no_browser, say=say)
    except OSError as exc:
        raise FinderError(f"--port {args.port}: cannot listen there ({exc.strerror or exc})"
                          ) from None
    except KeyboardInterrupt:
        pass
    say("Review page stopped; every answer is kept in the face index.")
    return EXIT_OK


def _export_references(args: argparse.Namespace) -> int:
    """Write every confirmed face as a reference photo, then exit."""
    from facefinder.review import export_references

    if args.no_index:
        raise FinderError("--export-references reads the face index; drop --no-index")
    written, kept, missing = export_references(_index_path(args), args.export_references)
    say(f"Exported {written} confirmed faces to {args.export_references.resolve()}"
        + (f" ({kept} were there already)" if kept else "")
        + (f"; {missing} could not be written: their photos are not reachable now"
           if missing else "") + ".")
    return EXIT_UNDELIVERED if missing else EXIT_OK


def _finder(args: argparse.Namespace) -> Finder:
    from facefinder.analyse import AnalysisSettings
    from facefinder.stick import stick_status

    status = stick_status()
    on_stick = args.index is None and not os.environ.get(INDEX_ENV)
    reference = args.reference
    if args.photos is None and reference is None:
        reference = (args.models or PROGRAM_DIR / "models") / DEMO_ALBUM / "reference"
    executor = _cluster(args)
    try:
        return Finder(
            reference, models=args.models, model=args.model, jobs=args.jobs,
            index=None if args.no_index else _index_path(args),
            index_read_only=bool(status and on_stick and not status.writable),
            settings=AnalysisSettings(min_face=args.min_face, detect_side=args.detect_size,
                                      video_fps=args.video_fps),
            on_fetch=say,
            objects=args.object_detector or bool(args.objects or args.with_objects),
            executor=executor,
        )
    except BaseException:
        if executor is not None:
            executor.close()
        raise


def _cluster(args: argparse.Namespace) -> Executor | None:
    """``--cluster ADDRESS``: the Dask executor (connected, workers present), else None."""
    if not args.cluster:
        if args.cluster_root_map or args.send_files:
            raise FinderError("--cluster-root-map and --send-files say how a cluster reads "
                              "the photos: give --cluster ADDRESS too")
        return None
    if args.jobs:
        raise FinderError("--jobs counts worker processes on this PC; with --cluster the "
                          "cluster's workers do the work (drop --jobs)")
    try:
        from facefinder.dask_executor import ClusterExecutor, parse_root_map
    except ImportError:
        raise FinderError("--cluster needs Dask: python -m pip install -r requirements.txt"
                          ) from None
    try:
        root_map = parse_root_map(args.cluster_root_map)
    except ValueError as exc:
        raise FinderError(str(exc)) from None
    return ClusterExecutor(args.cluster, root_map, send_files=args.send_files)


def _preflight(args: argparse.Namespace) -> None:
    """Refuse, before anything is read or written, options and outputs that cannot work."""
    from facefinder.copying import check_destination
    from facefinder.report import check_writable

    if not 0 < args.video_fps <= 30:
        raise FinderError("--video-fps must be more than 0 and at most 30")
    if args.min_face < 1 or args.detect_size < 32:
        raise FinderError("--min-face must be 1 or more and --detect-size 32 or more")
    reports = [(o, p) for o, p in (("--csv", args.csv), ("--json", args.json),
                                   ("--html", args.html)) if p]
    for n, (option, path) in enumerate(reports):
        for other, other_path in reports[n + 1:]:
            if path.resolve() == other_path.resolve():
                raise FinderError(f"{option} and {other} name the same file ({path}); "
                                  "give two names")
    for option, path in reports:
        problem = check_writable(path, option[2:])
        if problem:
            raise FinderError(f"{option} {path}: {problem}")
    for option, folder in (("--copy", args.copy), ("--annotate", args.annotate)):
        if folder and args.photos and _holds(folder.resolve(), photos := args.photos.resolve()):
            raise FinderError(f"{option} {folder}: that folder holds the photos searched, so "
                              "every run would read what it wrote there again; give a folder "
                              f"outside it, or a subfolder such as {photos / 'found'}")
        problem = folder and check_destination(folder)
        if problem:
            raise FinderError(f"{option} {folder}: {problem}")
    if args.copy and args.annotate and args.copy.resolve() == args.annotate.resolve():
        raise FinderError("--copy and --annotate name the same folder; give two folders")
    if args.list != "all" and not (args.list.isdigit() and int(args.list) >= 0):
        raise FinderError(f"--list {args.list}: give a number of paths, or all")


XMP_MODES = ("sidecar", "embed")


def _check_xmp(args: argparse.Namespace) -> None:
    """``--xmp [sidecar|embed]``: valid only with --copy, and only where exiv2 imports.

    ``--xmp`` takes an optional word, so ``finder.py --xmp Photos`` reads the folder as
    that word; a word that is no mode is taken back as PHOTOS_DIR when none was given.
    """
    mode = getattr(args, "xmp", None)
    if mode is None:
        return
    if mode not in XMP_MODES:
        if args.photos is not None:
            raise FinderError(f"--xmp {mode}: say sidecar or embed (or just --xmp)")
        args.photos, args.xmp = Path(mode), "sidecar"
    if not args.copy:
        raise FinderError("--xmp writes the names beside the copies: it needs --copy DIR, "
                          "e.g. --copy E:\\found --xmp")
    from facefinder.xmp import unavailable

    problem = unavailable()
    if problem:
        raise FinderError(problem)


def _holds(folder: Path, inner: Path) -> bool:
    """Whether ``folder`` is ``inner`` or one of its parents - by identity on disk too,
    so ``~/photos`` is caught on a file system that ignores case."""
    if folder == inner or inner.is_relative_to(folder):
        return True
    for candidate in (inner, *inner.parents):
        with contextlib.suppress(OSError):
            if os.path.samefile(folder, candidate):
                return True
    return False


def _index_path(args: argparse.Namespace) -> Path:
    if args.index is not None:
        return args.index.resolve()
    if os.environ.get(INDEX_ENV):
        return Path(os.environ[INDEX_ENV]).resolve()
    return PROGRAM_DIR / "index.sqlite"


def _index_info(args: argparse.Namespace) -> int:
    from facefinder import api
    from facefinder.analyse import describe_key
    from facefinder.report import format_index_info

    found = api.index_info(_index_path(args))
    if found is None:
        safe_print(f"No face index at {_index_path(args)} yet: the first search creates it.")
    else:
        safe_print(format_index_info(*found, describe_key))
    return EXIT_OK


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNDELIVERED", "EXIT_USAGE",
           "main"]
