"""Benchmark the finder on 12-megapixel phone photos (JPEG and HEIC) with known faces.

Usage:
    python benchmarks/phone.py [--album ../shared/devset] [--count 60] [--heic 20]
                               [--jobs 2] [--work /tmp/facefinder-phone] [--out FILE.json]
                               [--formats jpeg,heic] [--detect-size PX]

The README's album figures are measured on 250x250 press photos; a family's photos are
4032x3024 phone shots. This benchmark makes such photos from an album laid out like the
devset (``reference/<Person>/``, ``collection/``, ``truth.csv``): a no-face photo of the
album, upscaled to 4032x3024 with film-grain noise, gets 2-8 faces pasted in (the middle
of single-person and stranger photos of the album, each dealt once before any comes
again, feathered, 130-650 px wide; a
``--small`` share of them 40-120 px wide, the size a face at the back of a group photo
has, down to the finder's --min-face), and is saved as a JPEG at quality 90 (~2-3 MB)
and, for the first ``--heic`` of them, as an iPhone-like HEIC (512 px grid tiles, a 320 px
thumbnail). The set is made once per seed
and kept in ``--work``; the album's reference photos are the references.

Printed per format (JPEG, HEIC):
* photos/s of ``finder.py --jobs N`` (a subprocess, as a user runs it, bytecode cached as
  on a user's second run): the headline is the finder's own clock (its summary's
  ``elapsed_s``: from the scan on, workers' start included), with the start-up in it
  stated; also the process's wall clock, and after start-up: the photos beyond the
  first ``jobs x 8`` (one batch per worker) over the difference between the finder's
  time for all of them and for those first ones alone (workers' start and model loading
  cancel out: the rate 50,000 photos see);
* per-stage ms/photo on one core, in this process through the finder's own
  ``analyse_files`` (decode, detect, crop, embed, and overhead = the rest);
* the floor measured in the same run on the same photos, one core: the image codec alone
  at the scale the detector needs (JPEG DCT scaling; HEIC has none), the detector alone on
  its input, the embedder alone on the crops; the floor in photos/s on N cores is
  N / (sum of those), and the ratio floor / measured (1.0 = at the floor), measured by
  the finder's clock and after start-up;
* recall over pasted (photo, person) pairs and false matches (a person reported in a photo
  they were not pasted into), with the finder's decision rule; faces detected (a pasted
  face with a trusted detection over it) out of those pasted; both also for the small
  faces alone (40-120 px) and for the others; each missed pair with why: not detected,
  detected but not trusted (too small, too blurry), or its distance to the person's
  references against the cutoff the run gave them (and who is nearer, if anyone);
* peak memory of the finder and its workers (RSS).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
SIZE = (4032, 3024)  # a 12 MP phone photo, landscape
PATCH = 180  # side of the middle square taken from a 250x250 album photo (face ~60% of it)
FACE_SHARE = 0.6  # the face box's share of a pasted patch's side
SMALL_FACES = (40, 120)  # face widths (px) of the faces pasted small


# --------------------------------------------------------------------------- the photo set


def _album_rows(album: Path) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(path, person) of single-person 250 px photos, stranger photos, no-face photos."""
    with (album / "truth.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    people = {p.name for p in (album / "reference").iterdir() if p.is_dir()}
    singles, strangers, backgrounds = [], [], []
    for row in rows:
        path = album / "collection" / row["path"]
        if row["kind"] == "lfw-single/original" and row["people"] in people:
            singles.append((row["path"], row["people"]))
        elif row["kind"] == "lfw-stranger/original":
            strangers.append(row["path"])
        elif row["kind"] == "no-face/original":
            with Image.open(path) as image:
                if min(image.size) >= 240:
                    backgrounds.append(row["path"])
    return singles, strangers, backgrounds


def _feather() -> Image.Image:
    """An elliptical mask with a soft edge, so a pasted face has no hard square border."""
    mask = Image.new("L", (PATCH, PATCH), 0)
    ImageDraw.Draw(mask).ellipse((8, 4, PATCH - 8, PATCH - 4), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(8))


def _make_photo(task: tuple) -> dict:
    """Make one phone photo; returns its truth (people, pasted face boxes)."""
    album, work, name, seed, background, faces, heic, small = task
    rng = np.random.default_rng(seed)
    with Image.open(album / "collection" / background) as bg:
        canvas = bg.convert("RGB").resize(SIZE, Image.Resampling.BICUBIC)
    grain = rng.normal(0.0, 6.0, (SIZE[1], SIZE[0], 1)).astype(np.float32)
    pixels = np.clip(np.asarray(canvas, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    canvas = Image.fromarray(pixels)
    # Faces on a grid of cells (no overlaps), each of a random size and place in its cell.
    cols = 4 if len(faces) > 4 else len(faces)
    rows = -(-len(faces) // cols)
    cell_w, cell_h = SIZE[0] // cols, SIZE[1] // rows
    mask = _feather()
    boxes = []
    for i, (source, person) in enumerate(faces):
        side = int(rng.uniform(220, min(1080, cell_w, cell_h)))
        if i in small:
            side = int(rng.uniform(*SMALL_FACES) / FACE_SHARE)
        col, row = i % cols, i // cols
        x = col * cell_w + int(rng.uniform(0, cell_w - side))
        y = row * cell_h + int(rng.uniform(0, cell_h - side))
        with Image.open(album / "collection" / source) as face:
            left = (face.width - PATCH) // 2
            top = (face.height - PATCH) // 2
            patch = face.convert("RGB").crop((left, top, left + PATCH, top + PATCH))
        patch = patch.resize((side, side), Image.Resampling.BICUBIC)
        canvas.paste(patch, (x, y), mask.resize((side, side), Image.Resampling.BILINEAR))
        face_side = side * FACE_SHARE
        offset = (side - face_side) / 2
        boxes.append({"box": [round(x + offset), round(y + offset), round(face_side),
                              round(face_side)], "person": person, "small": i in small,
                      "source": source})
    jpeg = work / "jpeg" / "collection" / f"{name}.jpg"
    canvas.save(jpeg, quality=90)
    if heic:
        canvas.save(work / "heic" / "collection" / f"{name}.heic", quality=80,
                    thumbnails=[320], tile_size=512)
    return {"name": name, "faces": boxes}


class _Deck:
    """Album photos dealt like cards: each once before any comes again (reshuffled then).

    Drawn with replacement, one seed pasted the same hard photo of Tony Blair (one of
    the two the devset itself misses) 5 times into 60 photos, 3% of all the pairs from
    one 250 px photo; a family's album does not hold the same shot five times either.
    """

    def __init__(self, cards: list[tuple[str, str]], rng: np.random.Generator) -> None:
        self.cards, self.rng = cards, rng
        self.left: list[int] = []

    def draw(self, taken: set[str]) -> tuple[str, str]:
        """The next card whose person is not in ``taken`` (the people already in the
        photo; strangers have none), reshuffling the deck when it runs out."""
        for _ in range(2):
            for at, card in enumerate(self.left):
                if not self.cards[card][1] or self.cards[card][1] not in taken:
                    return self.cards[self.left.pop(at)]
            self.left += [int(c) for c in self.rng.permutation(len(self.cards))]
        raise ValueError("every person of the album is already in this photo")


def generate(album: Path, work: Path, count: int, heic: int, seed: int, jobs: int,
             small: float) -> Path:
    """Make the photo set in ``work`` (once per album, count, heic, seed and small share)."""
    tag = work / "made.json"
    wanted = {"album": str(album.resolve()), "count": count, "heic": heic, "seed": seed,
              "small": small, "draw": "deck"}
    if tag.exists():
        made = json.loads(tag.read_text())
        jpegs = work / "jpeg" / "collection"
        if made["params"] == wanted and all((jpegs / f"{m['name']}.jpg").is_file()
                                            for m in made["photos"]):
            return work
    singles, strangers, backgrounds = _album_rows(album)  # a wrong album fails here
    import pillow_heif

    pillow_heif.register_heif_opener()
    tag.unlink(missing_ok=True)  # written again last: an interrupted set is made again
    for fmt in ("jpeg", "heic"):
        folder = work / fmt / "collection"
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
    rng = np.random.default_rng(seed)
    people = _Deck(singles, rng)
    others = _Deck([(path, "") for path in strangers], rng)
    tasks = []
    for i in range(count):
        n_faces = int(rng.integers(2, 9))
        known = int(rng.integers(1, n_faces + 1))  # at least one person to find per photo
        chosen: dict[str, str] = {}
        while len(chosen) < known:  # distinct people per photo
            path, person = people.draw(set(chosen))
            chosen[person] = path
        faces = [(path, person) for person, path in chosen.items()]
        faces += [others.draw(set()) for _ in range(n_faces - known)]
        order = rng.permutation(len(faces))
        faces = [faces[j] for j in order]
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        tiny = {j for j in range(len(faces)) if rng.random() < small}
        tasks.append((album, work, f"IMG_{1000 + i}", seed * 1000 + i, background, faces,
                      i < heic, tiny))
    with ProcessPoolExecutor(max(1, jobs)) as pool:
        made = list(pool.map(_make_photo, tasks))
    tag.write_text(json.dumps({"params": wanted, "photos": made}, indent=1))
    return work


def truth_of(work: Path, fmt: str) -> dict[str, list[dict]]:
    """{file name: pasted faces} of the photos made in ``fmt``."""
    made = json.loads((work / "made.json").read_text())["photos"]
    suffix = ".jpg" if fmt == "jpeg" else ".heic"
    present = {p.name for p in (work / fmt / "collection").iterdir()}
    return {m["name"] + suffix: m["faces"] for m in made if m["name"] + suffix in present}


# --------------------------------------------------------------------------- measuring


def finder_run(collection: Path, reference: Path, jobs: int, index: Path,
               detect_size: int | None = None) -> tuple[dict, float, int]:
    """``finder.py`` over ``collection`` with an index in a temp folder (album.run_finder);
    ``detect_size``: its ``--detect-size`` (None: the finder's default)."""
    from benchmarks.album import run_finder

    album = collection.parent
    extra = ("--detect-size", str(detect_size)) if detect_size else ()
    return run_finder(album, jobs, "Facenet", None, reference, index, extra=extra)


def in_process(files: list[Path], truth: dict[str, list[dict]], batch: int,
               missed: list[tuple[str, str]], cutoffs: dict[str, float],
               reference: Path, detect_size: int | None = None) -> dict:
    """Per-stage ms/photo through ``analyse_files`` and the floor, on one core.

    libheif decodes with several threads by default; here it gets one, so that "one core"
    holds for HEIC too (with every core busy, as in a run with one worker per core, a
    photo's decode costs its single-thread time).
    """
    import pillow_heif

    threads = pillow_heif.options.DECODE_THREADS
    pillow_heif.options.DECODE_THREADS = 1
    try:
        return _in_process(files, truth, batch, missed, cutoffs, reference, detect_size)
    finally:
        pillow_heif.options.DECODE_THREADS = threads


def _in_process(files: list[Path], truth: dict[str, list[dict]], batch: int,
                missed: list[tuple[str, str]], cutoffs: dict[str, float],
                reference: Path, detect_size: int | None) -> dict:
    from facefinder.analyse import AnalysisJob, AnalysisSettings, ModelCache, analyse_files
    from facefinder.vision.registry import MODELS

    settings = (AnalysisSettings(detect_side=detect_size) if detect_size
                else AnalysisSettings())
    job = AnalysisJob(MODELS["facenet"], ROOT / "models", settings=settings, threads=1)
    models = ModelCache()
    pipe = models.get(job)
    analyse_files([(files[0], files[0].name, "image")], job, models)  # warm-up
    clock: dict[str, float] = {}
    results = []
    started = time.perf_counter()
    for at in range(0, len(files), batch):
        items = [(path, path.name, "image") for path in files[at:at + batch]]
        results += analyse_files(items, job, models, clock)
    total = time.perf_counter() - started
    n = len(files)
    stages = {name: clock.get(name, 0.0) * 1000 / n for name in ("decode", "detect", "crop",
                                                                  "embed")}
    stages["overhead"] = total * 1000 / n - sum(stages.values())
    stages["total"] = total * 1000 / n

    # The floor: each part alone on the same inputs.
    side = job.settings.detect_side
    codec = 0.0
    detector_inputs = []
    for path in files:
        t = time.perf_counter()
        with Image.open(path) as image:
            image.draft("RGB", (side, side))  # JPEG: the DCT scale just >= the detector's
            image.load()
            codec += time.perf_counter() - t
            factor = side / max(image.size)
            small = image.convert("RGB").resize(
                (round(image.width * factor), round(image.height * factor)))
        detector_inputs.append(np.asarray(small))
    t = time.perf_counter()
    for rgb in detector_inputs:
        pipe.detector.detect(rgb)
    detect = time.perf_counter() - t
    crops = []
    for result in results:
        for face in result.faces:
            if face.embedding is not None:
                crops.append(face)
    n_crops = len(crops)
    dummy = np.stack([np.asarray(Image.new("RGB", (160, 160), (128, 100, 90)))] * batch)
    embed_ms = 0.0
    if n_crops:
        pipe.embedder.embed(dummy[:1])
        t = time.perf_counter()
        left = n_crops
        while left > 0:
            take = min(left, 8 * batch)
            pipe.embedder.embed(np.repeat(dummy[:1], take, axis=0))
            left -= take
        embed_ms = (time.perf_counter() - t) * 1000 / n
    floor = {"decode": codec * 1000 / n, "detect": detect * 1000 / n, "embed": embed_ms}
    floor["total"] = sum(floor.values())

    # Faces detected: a pasted face with a trusted detection whose centre lies in its box.
    found = {True: 0, False: 0}
    pasted = {True: 0, False: 0}
    for result in results:
        for face in truth[result.rel]:
            small = bool(face.get("small"))
            pasted[small] += 1
            x, y, w, h = face["box"]
            if any(f.skipped is None
                   and x <= f.box[0] + f.box[2] / 2 <= x + w
                   and y <= f.box[1] + f.box[3] / 2 <= y + h for f in result.faces):
                found[small] += 1
    why = _why_missed(results, truth, missed, cutoffs, _references(reference, job, models))
    return {"stages_ms": stages, "floor_ms": floor, "why_missed": why,
            "faces_pasted": pasted[True] + pasted[False],
            "faces_detected": found[True] + found[False],
            "small_faces_pasted": pasted[True], "small_faces_detected": found[True],
            "crops_per_photo": n_crops / n}


def _references(reference: Path, job, models) -> dict[str, np.ndarray]:
    """Each person's reference embeddings (the largest face of each reference photo)."""
    from facefinder.analyse import analyse_files

    out = {}
    for folder in sorted(p for p in reference.iterdir() if p.is_dir()):
        items = [(f, f.name, "image") for f in sorted(folder.iterdir()) if f.is_file()]
        vectors = []
        for result in analyse_files(items, job, models):
            faces = [f for f in result.faces if f.embedding is not None]
            if faces:
                vectors.append(max(faces, key=lambda f: f.box[2] * f.box[3]).embedding)
        if vectors:
            out[folder.name] = np.stack(vectors)
    return out


def _why_missed(results: list, truth: dict[str, list[dict]], missed: list[tuple[str, str]],
                cutoffs: dict[str, float], refs: dict[str, np.ndarray]) -> list[str]:
    """For each missed (photo, person): was the pasted face detected (a face whose centre
    is in its box), trusted, and how far from the person's references is it, against
    the cutoff the run gave that person (when it matched them anywhere)."""
    faces_of = {r.rel: r.faces for r in results}
    reasons = []
    for name, person in missed:
        pasted = next(f for f in truth[name] if f["person"] == person)
        x, y, w, h = pasted["box"]
        over = [f for f in faces_of.get(name, [])
                if x <= f.box[0] + f.box[2] / 2 <= x + w
                and y <= f.box[1] + f.box[3] / 2 <= y + h]
        text = f"{name}:{person} ({w} px): "
        if not over:
            reasons.append(text + "not detected")
            continue
        face = max(over, key=lambda f: f.score)
        if face.skipped is not None:
            reasons.append(text + f"detected ({face.box[2]} px box), skipped: {face.skipped}")
            continue
        near = {p: float(1.0 - (v @ face.embedding).max()) for p, v in refs.items()}
        cut = cutoffs.get(person)
        text += (f"distance {near[person]:.3f} to the references, cutoff "
                 f"{'?' if cut is None else f'{cut:.3f}'}")
        nearest = min(near, key=near.__getitem__)
        if nearest != person:
            text += f", nearer to {nearest} ({near[nearest]:.3f})"
        reasons.append(text)
    return reasons


def measure(work: Path, fmt: str, reference: Path, jobs: int, batch: int,
            detect_size: int | None = None) -> dict:
    """Every figure for one format (``detect_size``: the finder's ``--detect-size``)."""
    truth = truth_of(work, fmt)
    collection = work / fmt / "collection"
    files = sorted(collection / name for name in truth)
    with tempfile.TemporaryDirectory() as tmp:
        # the references are read into the index by a run over one photo with no face
        # (an empty folder is refused: it may be an unplugged drive's mount point)
        blank = Path(tmp) / "blank" / "collection"
        blank.mkdir(parents=True)
        Image.new("RGB", (64, 48), (120, 130, 140)).save(blank / "blank.jpg")
        first = Path(tmp) / "first" / "collection"
        first.mkdir(parents=True)
        head = files[:jobs * 8]  # one batch per worker (executors.BATCH_SIZE)
        for path in head:
            shutil.copy(path, first / path.name)
        index = Path(tmp) / "index.sqlite"
        # The references go into the index first, so neither timed run reads them.
        refs = Path(tmp) / "refs.sqlite"
        finder_run(blank, reference, jobs, refs, detect_size)
        shutil.copy(refs, index)
        single, _, _ = finder_run(first, reference, jobs, index, detect_size)
        shutil.copy(refs, index)
        report, seconds, peak = finder_run(collection, reference, jobs, index, detect_size)
        startup = single["summary"]["elapsed_s"]
        elapsed = report["summary"]["elapsed_s"]
    expected = {(name, face["person"]) for name, faces in truth.items() for face in faces
                if face["person"]}
    small = {(name, face["person"]) for name, faces in truth.items() for face in faces
             if face["person"] and face.get("small")}
    found = {(m["path"], m["person"]) for m in report["matches"]}
    n = len(files)
    figures = {
        "photos": n, "seconds": seconds, "finder_seconds": elapsed,
        "first_photos": len(head), "first_seconds": startup,
        "photos_per_s_process": n / seconds, "photos_per_s": n / elapsed,
        "photos_per_s_after_startup": (n - len(head)) / max(elapsed - startup, 1e-9),
        "peak_rss_mib": peak / 2**20,
        "recall": len(found & expected) / len(expected), "positives": len(expected),
        "recall_small": len(found & small) / max(len(small), 1), "positives_small": len(small),
        "recall_others": len(found & (expected - small)) / max(len(expected - small), 1),
        "false_matches": len(found - expected),
        "missed": sorted(expected - found), "false": sorted(found - expected),
    }
    cutoffs = {m["person"]: m["threshold"] for m in report["matches"] if "threshold" in m}
    figures.update(in_process(files, truth, batch, figures["missed"], cutoffs, reference,
                              detect_size))
    floor_rate = jobs * 1000 / figures["floor_ms"]["total"]
    figures["floor_photos_per_s"] = floor_rate
    figures["ratio_to_floor"] = floor_rate / figures["photos_per_s"]
    figures["ratio_to_floor_after_startup"] = (floor_rate
                                               / figures["photos_per_s_after_startup"])
    # start-up: the first photos' time beyond what they cost at the after-start-up rate
    figures["startup_seconds"] = max(0.0, startup - len(head)
                                     / figures["photos_per_s_after_startup"])
    return figures


def show(fmt: str, f: dict, jobs: int) -> None:
    s, fl = f["stages_ms"], f["floor_ms"]
    print(f"{fmt.upper()}: {f['photos']} photos, 12 MP")
    print(f"  finder --jobs {jobs}: {f['photos_per_s']:.1f} photos/s by its own clock, "
          f"start-up included ({f['photos']} photos in {f['finder_seconds']:.1f} s, of which "
          f"~{f['startup_seconds']:.1f} s start-up; the process {f['seconds']:.1f} s)")
    print(f"  after start-up: {f['photos_per_s_after_startup']:.1f} photos/s (the first "
          f"{f['first_photos']} alone: {f['first_seconds']:.1f} s)")
    print(f"  per photo, one core: decode {s['decode']:.0f}  detect {s['detect']:.0f}  "
          f"crop {s['crop']:.0f}  embed {s['embed']:.0f} ({f['crops_per_photo']:.1f} faces)  "
          f"overhead {s['overhead']:.0f}  = {s['total']:.0f} ms")
    print(f"  floor, one core: codec {fl['decode']:.0f}  detector {fl['detect']:.0f}  "
          f"embedder {fl['embed']:.0f}  = {fl['total']:.0f} ms -> "
          f"{f['floor_photos_per_s']:.1f} photos/s on {jobs} cores; the finder's clock "
          f"is {f['ratio_to_floor']:.2f}x the floor ({f['ratio_to_floor_after_startup']:.2f}x "
          "after start-up)")
    print(f"  recall {f['recall']:.3f} ({f['positives']} pasted (photo, person) pairs), "
          f"false matches {f['false_matches']}; faces detected {f['faces_detected']}/"
          f"{f['faces_pasted']}")
    print(f"  small faces (40-120 px): recall {f['recall_small']:.3f} "
          f"({f['positives_small']} pairs), detected {f['small_faces_detected']}/"
          f"{f['small_faces_pasted']}; the others: recall {f['recall_others']:.3f}, "
          f"detected {f['faces_detected'] - f['small_faces_detected']}/"
          f"{f['faces_pasted'] - f['small_faces_pasted']}")
    if f["missed"]:
        print("  missed, and why:")
        for line in f["why_missed"]:
            print(f"    {line}")
    if f["false"]:
        print(f"  false: {', '.join(f'{p}:{q}' for p, q in f['false'][:12])}")
    print(f"  peak memory (RSS, all processes): {f['peak_rss_mib']:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--album", type=Path, default=ROOT.parent / "shared" / "devset")
    parser.add_argument("--count", type=int, default=60, help="JPEG photos to make")
    parser.add_argument("--heic", type=int, default=20,
                        help="how many of them also as HEIC (x265 encoding is slow)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="photos per analyse_files call")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--small", type=float, default=0.25,
                        help="share of the pasted faces made 40-120 px wide")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir())
                        / "facefinder-phone")
    parser.add_argument("--formats", default="jpeg,heic")
    parser.add_argument("--detect-size", type=int, metavar="PX",
                        help="the finder's --detect-size (default: its own, 800): how much "
                             "a bigger look at each photo finds, and what it costs")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    generate(args.album, args.work, args.count, args.heic, args.seed, args.jobs, args.small)
    print(f"photos: {args.work} (from {args.album})")
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    figures = {}
    for fmt in args.formats.split(","):
        figures[fmt] = measure(args.work, fmt, args.album / "reference", args.jobs, args.batch,
                               args.detect_size)
        show(fmt, figures[fmt], args.jobs)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2, default=list), encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
