"""Benchmark the face index at scale: 10,000 to 1,000,000 faces, 100 people.

Usage:
    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--people 100]
        [--queries 1000] [--keep DIR] [--out FILE.json]

Each size runs in a child process (so its peak memory is its own) on a synthetic face
index written through ``FaceIndex`` (the same ``store``/``set_path`` a run uses) in a
temporary folder, never beside the user's data. The embeddings are synthetic: 100
people (5 reference faces each; 20% of the collection's faces are theirs) and strangers
in groups of 20 (one group per 20 faces), each face its identity's centre plus Gaussian
noise (sigma 0.05 per dimension, renormalised), 1 to 3 faces to a photo.

Printed per size (every time is wall-clock on this machine, with the load average):

* index size: the SQLite file, and the neighbour graph kept beside it, per face;
* graph: building the neighbour graph from the index (cold), opening it again (warm);
  with ``--keep`` a later run reuses both (its "build" is then the opening);
* warm matching against 100 people, in two parts: *load* - every photo's faces from
  the index as a warm run gets them (``FaceIndex.paths`` + ``FaceIndex.load`` in chunks
  of 256 files, as ``cached.Analyser`` does; the one ``os.stat`` per file a real run adds
  is measured apart, on real files, and multiplied out) - and *decide* - the decision
  rule and the matches of every photo (``Finder._decide``, which ``find`` and the review
  page call), neighbour graph included;
* an answer on the review page: the same decision again with one more verdict
  (``Finder.rematch`` does exactly this);
* k-nearest query latency ("faces like this one", k = 10): p50 and p99 of single
  queries against the graph;
* clustering update: 1,000 new faces clustered into the earlier clusters
  (``cluster_faces`` with ``previous``, reusing the graph);
* ``--index-info`` (``api.index_info``: counts and SQLite's quick check);
* peak memory (RSS) of the child process;

and the growth exponent between sizes (time ~ size^e: 1 is linear).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facefinder.api import (  # noqa: E402
    SETTLE_EVERY,
    Finder,
    RunResult,
    Summary,
    index_info,
    open_index,
    settle,
)
from facefinder.cached import SCAN_CHUNK  # noqa: E402 - chunks as a run looks them up
from facefinder.clusters import cluster_faces  # noqa: E402
from facefinder.decisions import Verdicts  # noqa: E402
from facefinder.match import Gallery  # noqa: E402
from facefinder.neighbours import FaceGraph  # noqa: E402
from facefinder.records import Decision, Face, FileResult  # noqa: E402
from facefinder.vision.facenet import l2_normalise as unit  # noqa: E402

DIM = 128
SIGMA = 0.05
PEOPLE_SHARE = 0.2
STRANGER_GROUP = 20
UPDATE = 1_000


def synthetic(n: int, people: int, seed: int = 0):
    """(vectors (n, D), identity (n,), photo (n,), references {name: (5, D)})."""
    rng = np.random.default_rng(seed)
    strangers = max(1, n // STRANGER_GROUP)
    centres = unit(rng.normal(size=(people + strangers, DIM)))
    mine = rng.random(n) < PEOPLE_SHARE
    identity = np.where(mine, rng.integers(0, people, n), people + rng.integers(0, strangers, n))
    vectors = np.empty((n, DIM), np.float32)
    for s in range(0, n, 100_000):
        part = identity[s:s + 100_000]
        noise = rng.normal(scale=SIGMA, size=(len(part), DIM))
        vectors[s:s + len(part)] = unit(centres[part] + noise)
    photo = np.cumsum(np.r_[0, rng.random(n - 1) < 0.5])  # about 2 faces to a photo
    references = {f"Person {p:03d}": unit(centres[p] + rng.normal(scale=SIGMA, size=(5, DIM)))
                  for p in range(people)}
    return vectors, identity, photo, references


def build_index(path: Path, vectors: np.ndarray, photo: np.ndarray) -> float:
    """Write the faces through FaceIndex, 5,000 photos per transaction."""
    started = time.perf_counter()
    index = open_index(path)
    settings = index.settings_id("synthetic Facenet")
    root = index.root_id("/synthetic")
    marks = np.zeros((5, 2), np.float32)
    bounds = np.flatnonzero(np.r_[True, photo[1:] != photo[:-1], True])
    index.begin()
    for f, (a, b) in enumerate(itertools.pairwise(bounds)):
        faces = [Face((10 + 60 * i, 10, 50, 50), marks, 0.99, vectors[j])
                 for i, j in enumerate(range(a, b))]
        result = FileResult(rel=f"{f // 1000:04d}/{f:07d}.jpg", kind="image", size=(1600, 1200),
                            faces=faces, taken="2020-01-01 12:00:00", taken_from="exif")
        content = index.store(settings, f.to_bytes(16, "little"), 2_000_000 + f, result)
        index.set_path(root, result.rel, 2_000_000 + f, 1_600_000_000_000_000_000, content)
        if f % 5000 == 4999:
            index.conn.execute("COMMIT")
            index.begin()
    index.conn.execute("COMMIT")
    index.close()
    return time.perf_counter() - started


def load_like_a_run(path: Path) -> tuple[list[FileResult], float]:
    """Every file's faces as the warm run gets them from the index."""
    with open_index(path) as index:
        settings = index.settings_id("synthetic Facenet")
        root = index.root_id("/synthetic")
        rels = [bytes(r).decode() for (r,) in index.conn.execute(
            "SELECT rel FROM paths WHERE root = ? ORDER BY rel", (root,))]
        started = time.perf_counter()
        files: list[FileResult] = []
        for s in range(0, len(rels), SCAN_CHUNK):
            known = index.paths(root, rels[s:s + SCAN_CHUNK])
            stored = index.load(settings, [v[2] for v in known.values()])
            for rel, (_size, _mtime, content) in known.items():
                result = stored[content]
                result.rel = rel
                files.append(result)
            if (s // SCAN_CHUNK + 1) % (SETTLE_EVERY // SCAN_CHUNK) == 0:
                settle()  # as Finder._search does every SETTLE_EVERY files
        return files, time.perf_counter() - started


def stat_cost(count: int = 2000) -> float:
    """Seconds per os.stat of a real file (what a warm run adds per file)."""
    with tempfile.TemporaryDirectory(prefix="facefinder-stat-") as folder:
        paths = [os.path.join(folder, f"{i}.jpg") for i in range(count)]
        for p in paths:
            Path(p).write_bytes(b"x")
        best = math.inf
        for _ in range(5):
            started = time.perf_counter()
            for p in paths:
                os.stat(p)
            best = min(best, time.perf_counter() - started)
        return best / count


class _Finder(Finder):
    """The library's Finder on a given index, without models or workers: only its
    decision step is used here."""

    def __init__(self, index: Path) -> None:  # no models, no workers
        from facefinder.vision.registry import model_spec

        self.spec = model_spec("Facenet")
        self.index_path = index
        self.index_read_only = False
        self._graph = None
        self._graph_rows = None

        class _Settings:
            video_fps = 1.0

        self.settings = _Settings()

    def settings_ids(self, index):
        return {"image": index.settings_id("synthetic Facenet"), "video": None}


def run_size(n: int, people: int, queries: int, keep: Path | None,
             review_up_to: int) -> dict:
    folder = keep if keep is not None else Path(tempfile.mkdtemp(prefix="facefinder-scale-"))
    path = folder / f"faces-{n}.sqlite"
    out: dict = {"faces": n, "people": people}
    try:
        vectors, identity, photo, references = synthetic(n, people)
        out["files"] = int(photo[-1]) + 1
        reused = path.exists()  # kept from an earlier run (--keep): same faces, same seed
        out["build_index_s"] = None if reused else round(build_index(path, vectors, photo), 2)
        out["index_bytes"] = path.stat().st_size
        del vectors

        started = time.perf_counter()
        with open_index(path) as index:
            graph = FaceGraph.open(index, index.settings_id("synthetic Facenet"),
                                   progress=lambda text: print(
                                       f"{time.perf_counter() - started:7.1f} s  {text}",
                                       file=sys.stderr, flush=True))
        out["graph_build_s"] = round(time.perf_counter() - started, 2)
        out["graph_reused"] = reused and out["graph_build_s"] < 60
        out["peak_rss_mb_after_graph"] = _peak_mb()
        graph_files = FaceGraph.paths(path)
        out["graph_bytes"] = sum(p.stat().st_size for p in graph_files)
        started = time.perf_counter()
        with open_index(path) as index:
            graph = FaceGraph.open(index, index.settings_id("synthetic Facenet"))
        out["graph_open_s"] = round(time.perf_counter() - started, 2)

        files, out["load_s"] = load_like_a_run(path)
        out["load_s"] = round(out["load_s"], 2)
        out["peak_rss_mb_after_load"] = _peak_mb()
        out["stat_s_estimate"] = round(stat_cost() * len(files), 2)

        finder = _Finder(path)
        gallery = Gallery.build({name: list(v) for name, v in references.items()})
        result = RunResult(Path("/synthetic"), Path("/reference"), list(gallery.people),
                           "Facenet", 0.32, [], Summary(), files=files)
        started = time.perf_counter()
        finder._decide(result, files, gallery, Verdicts(), None, None, None)
        out["decide_s"] = round(time.perf_counter() - started, 2)
        out["warm_matching_s"] = round(out["load_s"] + out["decide_s"], 2)
        out["peak_rss_mb_after_decide"] = _peak_mb()
        out["matches"] = len(result.matches)
        out["maybes"] = len(result.maybes)
        out["expanded"] = sum(result.expanded_faces.values())

        # an answer on the review page: one more verdict, the collection decided again
        wrong = result.matches[0]
        file = next(f for f in files if f.rel == wrong.rel)
        verdicts = Verdicts([Decision(file.key, 0, wrong.person, "no", file.faces[0].box)])
        started = time.perf_counter()
        finder._decide(result, files, gallery, verdicts, None, None, None)
        out["answer_s"] = round(time.perf_counter() - started, 2)

        if n <= review_up_to:
            out.update(review_answer(finder, path, files, references))

        rng = np.random.default_rng(1)
        asked = graph.vectors[rng.integers(0, len(graph), queries)]
        latency = []
        for vector in asked:
            started = time.perf_counter()
            graph.nearest(vector[None, :], 10)
            latency.append(time.perf_counter() - started)
        out["query_p50_ms"] = round(float(np.percentile(latency, 50)) * 1e3, 3)
        out["query_p99_ms"] = round(float(np.percentile(latency, 99)) * 1e3, 3)

        # clustering update: the earlier clusters (the true identities here) kept, the
        # last 1,000 faces new; the graph already holds every face
        previous = identity.copy()
        previous[-UPDATE:] = -1
        neighbours = graph.neighbours  # (loads the mapped graph: not timed)
        started = time.perf_counter()
        labels = cluster_faces(neighbours.vectors, photo, previous=previous,
                               neighbours=neighbours)
        out["cluster_update_s"] = round(time.perf_counter() - started, 2)
        joined = labels[-UPDATE:] < previous.max() + 1
        out["cluster_update_joined_earlier"] = int(joined.sum())

        started = time.perf_counter()
        _info, check = index_info(path)
        out["index_info_s"] = round(time.perf_counter() - started, 2)
        out["index_info_check"] = check
        out["peak_rss_mb"] = _peak_mb()
        return out
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def _peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def review_answer(finder: Finder, path: Path, files: list[FileResult],
                  references: dict[str, np.ndarray]) -> dict:
    """One answer on the review page, the whole of it (``Review.decide``: the verdict
    stored in the index, the collection decided again, the unknown faces clustered
    again, their labels stored), on a Review over these files (made without a search:
    the files are synthetic)."""
    import threading

    from facefinder.references import ReferenceFace
    from facefinder.review import Review

    review = Review.__new__(Review)
    review.finder, review.photos, review.threshold = finder, Path("/synthetic"), None
    review._lock = threading.RLock()
    review.result = RunResult(Path("/synthetic"), Path("/reference"), sorted(references),
                              "Facenet", 0.32, [], Summary(), files=files)
    review.result.reference_faces = {name: [ReferenceFace(name, f"{name}/{i}.jpg", (0, 0, 9, 9), v)
                                            for i, v in enumerate(vs)]
                                     for name, vs in references.items()}
    with open_index(path) as index:
        review._settings = finder.settings_ids(index)
    review.verdicts, review._hidden = Verdicts(), set()
    review._next_cluster = 0  # as Review.refresh sets it: no cluster stored yet
    started = time.perf_counter()
    review._index_faces(files)
    finder.rematch(review.result, review.verdicts)
    review._recluster()
    first = round(time.perf_counter() - started, 2)
    match = review.result.matches[len(review.result.matches) // 2]
    started = time.perf_counter()
    review.decide(match.face, match.person, "no")
    answer = round(time.perf_counter() - started, 2)
    gone = all(m.face != match.face or m.person != match.person
               for m in review.result.matches)
    # taken back (not timed): a kept index (--keep) is then the same for the next run
    review.decide(match.face, match.person, "undo")
    return {"review_open_s": first, "review_answer_s": answer,
            "review_unknown_faces": sum(c.size for c in review._clusters.values()),
            "review_answer_applied": gone}


def exponent(a: dict, b: dict, key: str) -> float | None:
    if not a.get(key) or not b.get(key):
        return None
    return round(math.log(b[key] / a[key]) / math.log(b["faces"] / a["faces"]), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--keep", type=Path,
                        help="keep the indexes (and their graphs) here; a later run with "
                             "the same folder reuses them instead of building them again")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    parser.add_argument("--review-up-to", type=int, default=100_000, metavar="N",
                        help="also time a whole answer on the review page up to N faces "
                             "(it clusters the unknown faces first: minutes at 1M)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_size(args.child, args.people, args.queries, args.keep,
                                  args.review_up_to)))
        return
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        load = os.getloadavg()[0]
        command = [sys.executable, __file__, "--child", str(n), "--people", str(args.people),
                   "--queries", str(args.queries), "--review-up-to", str(args.review_up_to)]
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            command += ["--keep", str(args.keep)]
        # the child's stderr passes through: a graph build's progress lines, or its error
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        if done.returncode:
            sys.exit(f"size {n} failed (its error above)")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["load_average_at_start"] = round(load, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(f"{'faces':>9} {'index MB':>8} {'B/face':>7} {'graph B/face':>12} {'graph build s':>13} "
          f"{'load s':>6} {'decide s':>8} {'warm match s':>12} {'answer s':>8} "
          f"{'k-NN p50 ms':>11} {'p99 ms':>7} {'cluster upd s':>13} {'info s':>6} "
          f"{'peak MB':>7} {'stat s (est.)':>13}")
    for r in rows:
        print(f"{r['faces']:>9,} {r['index_bytes'] / 2**20:>8.1f} "
              f"{r['index_bytes'] / r['faces']:>7.0f} {r['graph_bytes'] / r['faces']:>12.0f} "
              f"{r['graph_build_s']:>13} {r['load_s']:>6} {r['decide_s']:>8} "
              f"{r['warm_matching_s']:>12} {r['answer_s']:>8} {r['query_p50_ms']:>11} "
              f"{r['query_p99_ms']:>7} {r['cluster_update_s']:>13} {r['index_info_s']:>6} "
              f"{r['peak_rss_mb']:>7} {r['stat_s_estimate']:>13}")
    for a, b in itertools.pairwise(rows):
        print(f"growth {a['faces']:,} -> {b['faces']:,}: " + ", ".join(
            f"{key} {exponent(a, b, key)}" for key in (
                "warm_matching_s", "decide_s", "load_s", "query_p50_ms", "query_p99_ms",
                "cluster_update_s", "answer_s", "index_info_s")))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
