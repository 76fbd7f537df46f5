"""Benchmark the finder on a labelled album: speed, peak memory, precision/recall/F1.

Usage:
    python benchmarks/album.py ALBUM [--jobs 2] [--model Facenet] [--sweep]
    python benchmarks/album.py ALBUM --cluster tcp://127.0.0.1:8786   (on a Dask cluster)

ALBUM is laid out like the project's devset: ``reference/<Person>/*``, ``collection/``
(any nesting), and ``truth.csv`` with columns path, people (';'-separated), kind.
The finder runs as a user would run it (a subprocess of ``finder.py``, JSON report), while
a sampler adds up the resident memory of it and all its worker processes.

Accuracy is over (file, person) pairs. Because each face's best person does not depend on
the threshold, one run at a generous threshold gives the figures for every lower one:
``--sweep`` prints them, which is how the default thresholds were calibrated.

Recall is also given by ``kind`` (truth.csv's column) and by its group (the part before
'/'), and the precision-recall curve's operating points are printed: the thresholds where
precision first drops below 1, 0.995 and 0.99, the best F1, and the most recall with
precision >= 0.995. The curve is exact (every distance of the run is a point; thresholds
are midpoints between two distances) but reaches only the run's threshold: the default
one, or 0.60 with ``--sweep`` (use it for the whole curve).

The face index is measured with three runs on a fresh index in a temporary folder (the
user's own index is never touched): a cold run with every person but one (the album is
read), a warm re-run with the same people and another threshold, and a re-run with the
held-out person added (only that person's reference photos are read). Each is reported in
files/s, wall clock including start-up. Peak memory and photos/s come from the cold run,
accuracy from the last one (all people; the index gives exactly what a fresh run gives).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
VIDEO = {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp"}


@dataclass
class Scores:
    """Precision, recall and F1 over (file, person) pairs."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


class PeakRss:
    """Samples the summed RSS of a process and its children every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                for proc in [self.root, *self.root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def read_truth(album: Path) -> dict[str, tuple[set[str], str]]:
    """{path: (people, kind)} from truth.csv."""
    with (album / "truth.csv").open(encoding="utf-8", newline="") as handle:
        return {
            row["path"]: ({p for p in row["people"].split(";") if p}, row["kind"])
            for row in csv.DictReader(handle)
        }


def score(truth: dict, found: set[tuple[str, str]], only_kind: str | None = None) -> Scores:
    """Scores of the found (path, person) pairs against the truth."""
    expected = {
        (path, person)
        for path, (people, kind) in truth.items()
        if only_kind is None or kind.startswith(only_kind)
        for person in people
    }
    if only_kind is not None:
        found = {pair for pair in found if truth.get(pair[0], (set(), ""))[1].startswith(only_kind)}
    return Scores(len(found & expected), len(found - expected), len(expected - found))


def by_kind(truth: dict, found: set[tuple[str, str]]) -> dict[str, Scores]:
    """Scores per truth.csv ``kind`` that holds positives (recall by kind)."""
    kinds = sorted({kind for people, kind in truth.values() if people})
    return {kind: score(truth, found, kind) for kind in kinds}


def kind_groups(truth: dict) -> list[str]:
    """The groups of truth.csv's kinds (``lfw-single/heic`` -> ``lfw-single``) that hold
    positives."""
    return sorted({kind.split("/")[0] for people, kind in truth.values() if people})


def pr_curve(truth: dict, pairs: list[tuple[str, str, float]], up_to: float
             ) -> list[tuple[float, Scores]]:
    """(threshold, scores) at every point of the precision-recall curve below ``up_to``.

    Each threshold is the midpoint between two consecutive distances of ``pairs`` (the
    last is ``up_to``), so each point adds the (file, person) pairs of one distance.
    """
    distances = sorted({d for _, _, d in pairs if d < up_to})
    cuts = [(a + b) / 2 for a, b in itertools.pairwise(distances)] + [up_to]
    ordered = sorted(pairs, key=lambda pair: pair[2])
    curve, found, i = [], set(), 0
    for t in cuts:
        while i < len(ordered) and ordered[i][2] < t:
            found.add(ordered[i][:2])
            i += 1
        curve.append((t, score(truth, found)))
    return curve


def operating_points(curve: list[tuple[float, Scores]]) -> dict:
    """Where precision first drops below 1, 0.995, 0.99 (with the point just before), the
    best F1, and the highest recall with precision >= 0.995."""

    def point(t: float, s: Scores) -> dict:
        return {"threshold": round(t, 4), "precision": s.precision, "recall": s.recall,
                "f1": s.f1, "fp": s.fp, "fn": s.fn}

    points: dict = {}
    for level in (1.0, 0.995, 0.99):
        drop = next((i for i, (_, s) in enumerate(curve) if s.precision < level), None)
        points[f"precision_below_{level:g}"] = None if drop is None else {
            "first": point(*curve[drop]),
            "before": point(*curve[drop - 1]) if drop else None}
    if curve:
        points["max_f1"] = point(*max(curve, key=lambda ts: (ts[1].f1, -ts[0])))
        ok = [ts for ts in curve if ts[1].precision >= 0.995]
        points["recall_at_precision_0.995"] = (
            point(*max(ok, key=lambda ts: (ts[1].recall, -ts[0]))) if ok else None)
    return points


def print_operating_points(points: dict, up_to: float) -> None:
    def text(p: dict) -> str:
        return (f"threshold {p['threshold']:.4f}  P {p['precision']:.4f}  "
                f"R {p['recall']:.4f}  F1 {p['f1']:.4f}  (fp {p['fp']}, fn {p['fn']})")

    print(f"precision-recall operating points (curve up to threshold {up_to:.2f}):")
    for level in (1.0, 0.995, 0.99):
        p = points.get(f"precision_below_{level:g}")
        label = f"  precision < {level:<5g} first at"
        if p is None:
            print(f"{label} -: not below {level:g} up to {up_to:.2f}")
            continue
        print(f"{label} {text(p['first'])}")
        if p["before"]:
            print(f"  {'':>24} just before: {text(p['before'])}")
    if points.get("max_f1"):
        print(f"  max F1 at                {text(points['max_f1'])}")
    p = points.get("recall_at_precision_0.995")
    print(f"  recall at P >= 0.995:    {text(p) if p else '-'}")


def run_finder(
    album: Path, jobs: int, model: str, threshold: float | None,
    reference: Path | None = None, index: Path | None = None, cluster: str | None = None,
    extra: tuple[str, ...] = (),
) -> tuple[dict, float, int]:
    """Run finder.py on the album; returns (JSON report, seconds, peak RSS bytes).

    ``index`` None runs without the face index (--no-index). ``cluster``: the analysis
    on that Dask scheduler's workers instead of ``jobs`` local ones (their memory is not
    in the peak, which then counts the main process alone). ``extra``: more options.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, str(ROOT / "finder.py"), str(album / "collection"),
            "--reference", str(reference or album / "reference"),
            *(["--cluster", cluster] if cluster else ["--jobs", str(jobs)]),
            "--model", model, "--json", str(report), "--no-progress", *extra,
        ]
        command += ["--index", str(index)] if index is not None else ["--no-index"]
        if threshold is not None:
            command += ["--threshold", str(threshold)]
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=finder_env())
        sampler = PeakRss(proc.pid)
        _, err = proc.communicate()
        seconds = time.perf_counter() - started
        peak = sampler.stop()
        if proc.returncode != 0:
            raise SystemExit(f"finder failed ({proc.returncode}):\n{err.decode(errors='replace')}")
        return json.loads(report.read_text(encoding="utf-8")), seconds, peak


def finder_env() -> dict[str, str]:
    """The environment a timed finder run gets: as a user's runs after the first, the
    finder keeps its compiled modules in <program>/cache/pycache (stick.py); a
    PYTHONDONTWRITEBYTECODE left in the shell by a sandbox or CI would make every timed
    run compile them again (~0.7 s)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def api_matches(album: Path, jobs: int, model: str, threshold: float | None
                ) -> set[tuple[str, str, float]]:
    """(path, person, distance) of a cold in-process run of the Python API."""
    from facefinder import Finder

    finder = Finder(album / "reference", model=model, jobs=jobs)
    result = finder.find(album / "collection", threshold=threshold, keep_files=False)
    return {(m.rel, m.person, round(float(m.distance), 4)) for m in result.matches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("album", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="run the finder with --cluster ADDRESS (a Dask scheduler) "
                             "instead of --jobs")
    parser.add_argument("--model", default="Facenet")
    parser.add_argument("--threshold", type=float, help="default: the model's own")
    parser.add_argument("--sweep", action="store_true",
                        help="also print scores for a range of thresholds (runs at 0.60)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--api-check", action="store_true",
                        help="also run the Python API (facefinder.Finder, no index) on the "
                             "album and check it gives the CLI's matches exactly")
    args = parser.parse_args()

    truth = read_truth(args.album)
    files = sum(1 for p in (args.album / "collection").rglob("*") if p.is_file())
    images = sum(1 for p in truth if Path(p).suffix.lower() not in VIDEO)
    run_threshold = 0.60 if args.sweep else args.threshold
    with tempfile.TemporaryDirectory() as tmp:
        people = sorted(p.name for p in (args.album / "reference").iterdir() if p.is_dir())
        held_out = people[-1]
        fewer = Path(tmp) / "reference"
        shutil.copytree(args.album / "reference", fewer,
                        ignore=lambda folder, names: [held_out] if Path(folder) == (
                            args.album / "reference") else [])
        index = Path(tmp) / "index.sqlite"
        _, seconds, peak = run_finder(args.album, args.jobs, args.model, run_threshold,
                                      fewer, index, args.cluster)
        from facefinder.vision.registry import model_spec

        base = run_threshold if run_threshold is not None else (
            model_spec(args.model).default_threshold)
        other = base + 0.01  # "loosen the threshold a little": the warm re-run's question
        warm, warm_seconds, _ = run_finder(args.album, args.jobs, args.model, other,
                                           fewer, index, args.cluster)
        report, person_seconds, _ = run_finder(args.album, args.jobs, args.model,
                                               run_threshold, None, index, args.cluster)
        index_mib = sum(os.path.getsize(p) for p in Path(tmp).glob("index.sqlite*")) / 2**20
    decoded = (warm["summary"].get("files_decoded"), report["summary"].get("files_decoded"))
    threshold = args.threshold if args.threshold is not None else None
    if threshold is None:
        from facefinder.vision.registry import model_spec

        threshold = model_spec(args.model).default_threshold
    pairs = [(m["path"], m["person"], m["distance"]) for m in report["matches"]]
    own_rule = run_threshold is None  # the finder's decision rule: each person's cutoff
    found = {(p, person) for p, person, d in pairs if own_rule or d < threshold}
    cutoffs = sorted({m["threshold"] for m in report["matches"] if "threshold" in m})
    overall = score(truth, found)
    negatives = {p for p, (people, kind) in truth.items() if kind.startswith(("no-face", "broken"))}
    false_on_negatives = sum(1 for p, _ in found if p in negatives)

    print(f"album: {args.album}  ({len(truth)} files, {images} images)")
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}")
    shown = (f"each person's own ({cutoffs[0]:g}-{cutoffs[-1]:g}; decision rule)"
             if own_rule and cutoffs else f"{threshold}")
    where = f"cluster: {args.cluster}" if args.cluster else f"jobs: {args.jobs}"
    print(f"model: {report['model']}  threshold: {shown}  {where}")
    print(f"time: {seconds:.1f} s  ->  {images / seconds:.1f} photos/s "
          "(wall clock, including start-up)")
    print(f"peak memory (RSS, all processes): {peak / 2**20:.0f} MiB")
    print(f"face index ({files} files, {index_mib:.1f} MiB):")
    print(f"  cold run, {len(people) - 1} people:        {files / seconds:8.1f} files/s "
          f"({seconds:.1f} s)")
    print(f"  warm re-run, threshold {other:.2f}:  {files / warm_seconds:8.1f} files/s "
          f"({warm_seconds:.2f} s, {decoded[0]} files decoded)")
    print(f"  re-run adding {held_out}: {files / person_seconds:8.1f} files/s "
          f"({person_seconds:.2f} s, {decoded[1]} collection files decoded)")
    print(f"precision {overall.precision:.4f}  recall {overall.recall:.4f}  F1 {overall.f1:.4f}"
          f"  (tp {overall.tp}, fp {overall.fp}, fn {overall.fn})")
    print(f"false matches on no-face/broken files: {false_on_negatives}")
    print(f"unreadable files reported: {len(report['unreadable'])}")
    print("recall by kind:")
    recall_by_kind = {}
    for kind, s in by_kind(truth, found).items():
        recall_by_kind[kind] = {"recall": s.recall, "positives": s.tp + s.fn, "false": s.fp}
        print(f"  {kind:28s} {s.recall:.3f}  ({s.tp}/{s.tp + s.fn}, {s.fp} false)")
    print("recall by kind group:")
    by_group = {}
    for group in kind_groups(truth):
        part = {p: v for p, v in truth.items() if v[1].split("/")[0] == group}
        s = score(part, {pair for pair in found if pair[0] in part})
        by_group[group] = {"recall": s.recall, "positives": s.tp + s.fn, "false": s.fp}
        print(f"  {group:28s} {s.recall:.3f}  ({s.tp}/{s.tp + s.fn}, {s.fp} false)")
    curve_end = run_threshold if run_threshold is not None else (
        max((d for *_, d in pairs), default=threshold) + 1e-4 if own_rule else threshold)
    points = operating_points(pr_curve(truth, pairs, curve_end))
    print_operating_points(points, curve_end)
    if args.api_check:
        same = api_matches(args.album, args.jobs, args.model, run_threshold) == {
            (m["path"], m["person"], round(m["distance"], 4)) for m in report["matches"]}
        print(f"Python API (Finder.find, no index) gives the CLI's matches: "
              f"{'identical' if same else 'DIFFERENT'}")
    sweep = {}
    if args.sweep:
        print("threshold sweep:")
        for t in [x / 100 for x in range(28, 61, 2)]:
            s = score(truth, {(p, person) for p, person, d in pairs if d < t})
            sweep[t] = {"precision": s.precision, "recall": s.recall, "f1": s.f1}
            print(f"  {t:.2f}  P {s.precision:.4f}  R {s.recall:.4f}  F1 {s.f1:.4f}"
                  f"  (fp {s.fp}, fn {s.fn})")
    if args.out:
        args.out.write_text(json.dumps({
            "album": str(args.album), "files": len(truth), "images": images,
            "model": report["model"], "threshold": threshold, "jobs": args.jobs,
            "cluster": args.cluster,
            "seconds": seconds, "photos_per_s": images / seconds, "peak_rss_mib": peak / 2**20,
            "index": {"files": files, "cold_files_per_s": files / seconds,
                      "warm_files_per_s": files / warm_seconds,
                      "new_person_files_per_s": files / person_seconds,
                      "held_out": held_out, "decoded_warm": decoded[0],
                      "decoded_new_person": decoded[1], "index_mib": index_mib},
            "precision": overall.precision, "recall": overall.recall, "f1": overall.f1,
            "false_on_negatives": false_on_negatives, "recall_by_kind": recall_by_kind,
            "sweep": sweep, "date": time.strftime("%Y-%m-%d"),
            "recall_by_kind_group": by_group, "pr_curve_up_to": curve_end,
            "operating_points": points,
        }, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
