"""How fast ``--html`` writes its report and how big the file gets, for N matches.

    python benchmarks/html_report.py --matches 2000 --source tests/.data/celebrity
    python benchmarks/html_report.py --matches 50000 --source tests/.data/celebrity
    python benchmarks/html_report.py --matches 200 --big     # 4000x3000 JPEGs (12 MP)

Makes N photos in a temporary folder (hard links to the real photos under ``--source``,
cycled, so every match has a file of its own and the report makes N previews, as for a
collection of N different photos), a RunResult with one match per photo spread over 5
people, and writes the report with the real preview maker. Prints photos/s, the file
size and bytes per match. ``--big`` uses a 12 MP JPEG made from the first photo instead,
to time the decode at 1/8 scale; ``--thumb-ms`` times single previews of it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facefinder import thumbs
from facefinder.api import RunResult, Summary
from facefinder.html_report import write_html
from facefinder.records import Match


def big_jpeg(source: Path, target: Path) -> Path:
    """A 4000x3000 photo-like JPEG (a real photo enlarged, with sensor-like noise)."""
    import numpy as np
    from PIL import Image

    with Image.open(source) as image:
        big = image.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(0).normal(0, 6, (3000, 4000, 3)).astype(np.int16)
    pixels = np.clip(np.asarray(big, np.int16) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(target, quality=92)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matches", type=int, default=2000)
    parser.add_argument("--source", type=Path, default=Path("tests/.data/celebrity"))
    parser.add_argument("--big", action="store_true", help="12 MP JPEGs instead")
    parser.add_argument("--thumb-ms", action="store_true", help="time one 12 MP preview")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, help="keep the report here (to open it)")
    args = parser.parse_args()
    sources = sorted(p for p in args.source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not sources:
        sys.exit(f"no JPEG under {args.source}")
    work = Path(tempfile.mkdtemp(prefix="html-bench-"))
    try:
        if args.big or args.thumb_ms:
            sources = [big_jpeg(sources[0], work / "12mp.jpg")]
        if args.thumb_ms:
            thumbs.photo(sources[0])
            started = time.perf_counter()
            for _ in range(20):
                made = thumbs.photo(sources[0])
            ms = (time.perf_counter() - started) / 20 * 1000
            assert made is not None
            print(f"12 MP JPEG ({sources[0].stat().st_size:,} bytes) -> {made.width}x"
                  f"{made.height} preview ({len(made.jpeg):,} bytes): {ms:.1f} ms")
            return
        photos = work / "photos"
        people = ["Anna", "Ben", "Carla", "Dario", "Eve"]
        matches = []
        for n in range(args.matches):
            rel = f"folder {n // 1000:03d}/IMG_{n:06d}.jpg"
            target = photos / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(sources[n % len(sources)], target)
            matches.append(Match(rel, people[n % 5], 0.1 + (n % 997) / 5000, (40, 30, 80, 90),
                                 taken=f"20{n % 25:02d}-06-01 12:00:00", taken_from="exif"))
        summary = Summary(files_scanned=args.matches, images_read=args.matches)
        result = RunResult(photos, work / "reference", people, "Facenet", 0.32, matches,
                           summary, searched=True, complete=True)
        out = args.out or work / "report.html"
        started = time.perf_counter()
        write_html(result, out, workers=args.workers)
        seconds = time.perf_counter() - started
        size = out.stat().st_size
        print(f"{args.matches:,} matches, {os.cpu_count()} cores: {seconds:.1f} s, "
              f"{args.matches / seconds:.0f} photos/s; file {size / 1e6:.1f} MB, "
              f"{size / args.matches:,.0f} bytes per match")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
