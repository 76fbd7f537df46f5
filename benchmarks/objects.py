"""Benchmark the object detector: per-class photo-level precision/recall, mAP@0.5, cost.

Usage:
    python benchmarks/objects.py ALBUM [--devset ../shared/devset] [--sides 512,256]
        [--detector centernet-mobilenetv3,yolov8n]

ALBUM has ``truth.csv`` with columns path, labels (';'-separated COCO names present) and
boxes (JSON ``[[class, x, y, w, h], ...]`` in pixels), as ../shared/objects does.

Photos are decoded as the finder decodes them (``facefinder.decode``), then each network
input side in ``--sides`` is run once with a low threshold; every figure at a higher
threshold comes from the same detections. Printed per side:

* "photo contains class X", for every class present in the truth: precision and recall at
  the detector's threshold, counting a photo as saying X when a detection of X scores at
  least the threshold;
* for cat, dog and person, the thresholds where precision and recall are both >= 0.9;
* mAP@0.5 over the classes present (all-point interpolated AP per class, boxes matched
  greedily by score at IoU >= 0.5, as PASCAL VOC does);
* the detector's ms/photo (one thread);
* when the album's photos sit in ``train2017/`` and ``val2017/`` folders (COCO's own
  splits, as in ../shared/objects), mAP and the cat/dog/person figures of each half
  apart: both detectors were trained on COCO train2017, so the train half flatters them.

``--detector`` names one or more detectors (``vision.objects.OBJECT_MODELS``), each
evaluated in turn with the same photos and the same scoring; ``--sides`` applies to each.

Cost of ``--objects``: with ``--devset``, ``finder.py --no-index --reference
DEVSET/reference DEVSET/collection`` runs with and without ``--objects`` in the same
invocation of this script (same machine state, wall clock including start-up, default
worker count), and the ratio is printed, for each ``--detector`` (given to the finder
as ``--object-detector``, as a user picks it).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facefinder.decode import load_image  # noqa: E402
from facefinder.vision.objects import (  # noqa: E402
    OBJECT_MODEL,
    OBJECT_MODELS,
    ObjectDetection,
    ObjectSpec,
    load_object_detector,
)
from facefinder.vision.objects import _iou as iou  # noqa: E402 - the detector's own

sys.path.insert(0, str(ROOT / "benchmarks"))
from album import finder_env  # noqa: E402 - timed as album.py times the finder

FLOOR = 0.05  # lowest score kept: enough for the whole precision-recall curve
PETS_AND_PEOPLE = ("cat", "dog", "person")


def read_truth(album: Path) -> list[tuple[str, set[str], list[tuple[str, np.ndarray]]]]:
    """[(path, labels, [(class, x1 y1 x2 y2)])] from the album's truth.csv."""
    rows = []
    with (album / "truth.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            labels = {x for x in row["labels"].split(";") if x}
            boxes = [(c, np.array([x, y, x + w, y + h], np.float32))
                     for c, x, y, w, h in json.loads(row["boxes"] or "[]")]
            rows.append((row["path"], labels, boxes))
    return rows


def average_precision(cls: str, truth, found: list[list[ObjectDetection]]) -> float:
    """All-point interpolated AP of ``cls`` at IoU 0.5."""
    gt = {i: np.array([b for c, b in boxes if c == cls]) for i, (_, _, boxes) in enumerate(truth)}
    total = sum(len(v) for v in gt.values())
    dets = sorted(((d.score, i, d.box) for i, ds in enumerate(found) for d in ds if d.label == cls),
                  key=lambda t: -t[0])
    used = {i: np.zeros(len(v), bool) for i, v in gt.items()}
    hits = []
    for _, i, box in dets:
        if len(gt[i]):
            overlaps = iou(box, gt[i])
            best = int(np.argmax(overlaps))
            if overlaps[best] >= 0.5 and not used[i][best]:
                used[i][best] = True
                hits.append(1)
                continue
        hits.append(0)
    if total == 0:
        return float("nan")
    tp = np.cumsum(hits)
    recall = tp / total
    precision = tp / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(np.concatenate([precision, [0]])[::-1])[::-1]
    steps = np.diff(np.concatenate([[0], recall]))
    return float(np.sum(steps * envelope[:-1]))


def photo_scores(found: list[list[ObjectDetection]], cls: str) -> np.ndarray:
    """Best score of ``cls`` per photo (0 when absent)."""
    return np.array([max((d.score for d in ds if d.label == cls), default=0.0) for ds in found])


def precision_recall(scores: np.ndarray, present: np.ndarray, threshold: float) -> tuple:
    said = scores >= threshold
    tp = int(np.sum(said & present))
    precision = tp / max(int(said.sum()), 1) if said.any() else float("nan")
    return precision, tp / max(int(present.sum()), 1), tp, int(said.sum()), int(present.sum())


def good_thresholds(scores: np.ndarray, present: np.ndarray) -> str:
    """The range of thresholds where precision and recall are both >= 0.9."""
    ok = [t for t in np.arange(0.05, 0.951, 0.01)
          if (pr := precision_recall(scores, present, t))[0] >= 0.9 and pr[1] >= 0.9]
    return f"{min(ok):.2f}-{max(ok):.2f}" if ok else "none"


def evaluate(album: Path, models: Path, model: ObjectSpec, side: int, threshold: float,
             second: bool = False) -> None:
    from dataclasses import replace

    truth = read_truth(album)
    spec = replace(model, input_side=side, score_threshold=FLOOR)
    detector = load_object_detector(spec, models, threads=1)
    images = [load_image(album / path).rgb for path, _, _ in truth]
    detector.detect(images[0])  # warm-up: the first run allocates
    found, elapsed = [], 0.0
    for rgb in images:
        start = time.perf_counter()
        found.append(detector.detect(rgb))
        elapsed += time.perf_counter() - start
    classes = sorted({c for _, labels, _ in truth for c in labels},
                     key=lambda c: (-sum(c in labels for _, labels, _ in truth), c))
    print(f"\n== {model.name}, input side {side}: {len(truth)} photos, threshold {threshold}, "
          f"{1000 * elapsed / len(truth):.1f} ms/photo (1 thread) ==")
    print(f"{'class':<15} {'photos':>6} {'said':>5} {'P':>6} {'R':>6} {'AP@.5':>6}  P,R>=0.9 at")
    aps = []
    for cls in classes:
        present = np.array([cls in labels for _, labels, _ in truth])
        scores = photo_scores(found, cls)
        p, r, _, said, n = precision_recall(scores, present, threshold)
        ap = average_precision(cls, truth, found)
        aps.append(ap)
        extra = good_thresholds(scores, present) if cls in PETS_AND_PEOPLE else ""
        print(f"{cls:<15} {n:>6} {said:>5} {p:>6.2f} {r:>6.2f} {ap:>6.3f}  {extra}")
    print(f"mAP@0.5 over {len(aps)} classes present: {np.nanmean(aps):.3f}")
    for split in ("val2017", "train2017"):
        keep = [i for i, (path, _, _) in enumerate(truth) if f"{split}/" in path]
        if keep:
            halves(split, [truth[i] for i in keep], [found[i] for i in keep], threshold)
    if second:
        second_look(detector, images, truth, found, threshold)


ANIMALS = ("cat", "dog")
GATE = 0.05  # a first-pass cat or dog score from here up (below the threshold) asks again


def tiles(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Four overlapping quarters (y, x, h, w): each 4/7 of a side, so they overlap by 1/7."""
    th, tw = max(1, height * 4 // 7), max(1, width * 4 // 7)
    return [(y, x, th, tw) for y in (0, height - th) for x in (0, width - tw)]


def second_look(detector, images: list[np.ndarray], truth, found: list[list[ObjectDetection]],
                threshold: float) -> None:
    """Does a second, closer look at photos with a doubtful animal find more pets?

    Only photos whose first pass saw a cat or dog scoring GATE..threshold are looked at
    again: each quarter (overlapping) enlarged 2x, so a small animal gets 4x the pixels.
    A photo's animal score is then the best of both looks. Reported: what it costs, and
    photo-level P/R per class with the threshold chosen on one half of the album (every
    other photo) and applied to the other, both ways (so it is not tuned on the photos
    it is scored on).
    """
    again: list[dict[str, float]] = []
    asked, elapsed = 0, 0.0
    for rgb, first in zip(images, found, strict=True):
        best = {c: max((d.score for d in first if d.label == c), default=0.0) for c in ANIMALS}
        closer = dict.fromkeys(ANIMALS, 0.0)
        if any(GATE <= best[c] < threshold for c in ANIMALS):
            asked += 1
            start = time.perf_counter()
            for y, x, th, tw in tiles(*rgb.shape[:2]):
                crop = np.repeat(np.repeat(rgb[y:y + th, x:x + tw], 2, axis=0), 2, axis=1)
                for d in detector.detect(crop):
                    if d.label in closer:
                        closer[d.label] = max(closer[d.label], d.score)
            elapsed += time.perf_counter() - start
        again.append({c: max(best[c], closer[c]) for c in ANIMALS})
    print(f"  second look: {asked} of {len(images)} photos looked at again, "
          f"+{1000 * elapsed / len(images):.1f} ms/photo on average")
    for cls in ANIMALS:
        present = np.array([cls in labels for _, labels, _ in truth])
        for label, scores in (("first look", photo_scores(found, cls)),
                              ("with second", np.array([a[cls] for a in again]))):
            held = cross_validated(scores, present)
            print(f"  {cls:<4} {label:<12} at {threshold}: "
                  f"{_pr(scores, present, threshold)}; threshold from the other half: {held}")


def _pr(scores: np.ndarray, present: np.ndarray, threshold: float) -> str:
    p, r, tp, said, n = precision_recall(scores, present, threshold)
    return f"P {p:.2f} R {r:.2f} ({tp}/{n}, {said - tp} false)"


def cross_validated(scores: np.ndarray, present: np.ndarray) -> str:
    """P/R over all photos when each half's threshold is chosen on the other half (the
    threshold giving the best F1 there, the highest of equals)."""
    half = np.arange(len(scores)) % 2 == 0
    said = np.zeros(len(scores), bool)
    chosen = []
    for fit in (half, ~half):
        candidates = np.unique(np.concatenate([scores[fit & present], [0.95]]))
        f1 = []
        for t in candidates:
            p, r = precision_recall(scores[fit], present[fit], t)[:2]
            f1.append(0.0 if not p or np.isnan(p) or not r else 2 * p * r / (p + r))
        t = candidates[len(f1) - 1 - int(np.argmax(f1[::-1]))]
        chosen.append(float(t))
        said[~fit] = scores[~fit] >= t
    tp = int(np.sum(said & present))
    return (f"P {tp / max(int(said.sum()), 1):.2f} R {tp / max(int(present.sum()), 1):.2f} "
            f"({tp}/{int(present.sum())}, {int(said.sum()) - tp} false; thresholds "
            f"{chosen[0]:.2f} / {chosen[1]:.2f})")


def halves(split: str, truth, found: list[list[ObjectDetection]], threshold: float) -> None:
    """mAP and the cat/dog/person photo figures of one COCO split of the album."""
    classes = {c for _, labels, _ in truth for c in labels}
    m = np.nanmean([average_precision(c, truth, found) for c in classes])
    parts = []
    for cls in PETS_AND_PEOPLE:
        present = np.array([cls in labels for _, labels, _ in truth])
        _, _, tp, said, n = precision_recall(photo_scores(found, cls), present, threshold)
        parts.append(f"{cls} {tp}/{n} found, {said - tp} false")
    print(f"  {split} half ({len(truth)} photos): mAP@0.5 {m:.3f}; " + "; ".join(parts))


def finder_seconds(devset: Path, objects: bool, detector: str = OBJECT_MODEL.name
                   ) -> tuple[float, float]:
    """(wall clock, CPU) seconds of ``finder.py --no-index`` on the devset (opt. --objects).

    CPU is user + system time of the finder and its worker processes: unlike the wall
    clock it hardly moves when something else runs on the machine.
    """
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="objects-bench-") as tmp:
        command = [sys.executable, str(ROOT / "finder.py"), "--no-index",
                   "--reference", str(devset / "reference"), str(devset / "collection"),
                   "--csv", str(Path(tmp) / "out.csv")]
        if objects:
            command += ["--objects", "--object-detector", detector]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp,
                              env=finder_env())
        seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"finder.py failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def cost(devset: Path, repeat: int, detector: str) -> None:
    """Faces-only and --objects runs, interleaved ``repeat`` times; the fastest of each."""
    photos = devset / "collection"
    count = sum(1 for p in photos.rglob("*") if p.is_file())
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(repeat):
        for objects in (False, True):
            runs[objects].append(finder_seconds(devset, objects, detector))
    (wall0, cpu0), (wall1, cpu1) = min(runs[False]), min(runs[True])
    print(f"\n== cost of {detector} on {photos} ({count} files, finder.py --no-index, "
          f"default jobs, best of {repeat}) ==")
    for label, wall, cpu in (("faces only", wall0, cpu0), ("with --objects", wall1, cpu1)):
        print(f"{label:<15} {wall:6.1f} s wall {1000 * wall / count:6.1f} ms/photo; "
              f"CPU {cpu:6.1f} s {1000 * cpu / count:6.1f} ms/photo")
    print(f"--objects: x{wall1 / wall0:.2f} wall clock, x{cpu1 / cpu0:.2f} CPU, "
          f"+{1000 * (cpu1 - cpu0) / count:.1f} ms of CPU per photo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("album", type=Path)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--detector", default=OBJECT_MODEL.name,
                        help=f"comma-separated detectors of {', '.join(OBJECT_MODELS)}")
    parser.add_argument("--sides", help="comma-separated network input sides to evaluate "
                        "(default: each detector's own)")
    parser.add_argument("--threshold", type=float,
                        help="photo-level threshold (default: each detector's own)")
    parser.add_argument("--devset", type=Path, help="also time finder.py with/without --objects")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each (best kept)")
    parser.add_argument("--second-look", action="store_true",
                        help="also try a closer second look at photos with a doubtful cat/dog")
    args = parser.parse_args()
    if args.devset:  # the finder runs in a temporary folder: relative paths would miss
        args.devset = args.devset.resolve()
    from facefinder.models.fetch import ensure_object_model

    models = [OBJECT_MODELS[name] for name in args.detector.split(",")]
    for model in models:
        ensure_object_model(args.models, allow_fetch=True, file=model.file)
        sides = args.sides.split(",") if args.sides else [model.input_side]
        for side in (int(s) for s in sides):
            evaluate(args.album, args.models, model, side,
                     model.score_threshold if args.threshold is None else args.threshold,
                     args.second_look)
    if args.devset:
        for model in models:
            cost(args.devset, args.repeat, model.name)


if __name__ == "__main__":
    main()
