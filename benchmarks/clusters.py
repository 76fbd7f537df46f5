"""Benchmark the clustering of unknown faces ("who else is here?"): quality and scale.

Usage:
    python benchmarks/clusters.py ALBUM [--jobs 2] [--synthetic 100000] [--out F.json]
        [--threshold T] [--k K] [--cache F.npz] [--save-embeddings F.npy]

ALBUM is laid out like ../shared/devset: ``reference/<Person>/*``, ``collection/`` and
``truth.csv`` whose ``source`` column names where each photo came from. The album's faces
come from the library API (``Finder(...).find``, a face index in a temporary folder); a
face is unknown when no match of its file has its box.

Quality: the unknown faces are clustered, and so (for information) are all faces. Scored
are the faces of files with exactly one detected face whose truth row has an LFW source
(identity = the LFW folder name in that path), against those identities: pairwise
precision/recall (over pairs of faces put together / truly together) and BCubed
precision/recall/F1 (per face: the share of its cluster that is its person, and of its
person that is in its cluster), with the number of clusters and singletons.

Scale: ``--synthetic N`` faces made from the album's embeddings plus Gaussian noise
(renormalised), one to four faces per photo, clustered from scratch (neighbour index
included) and then updated with 1,000 new faces; time and peak memory of each, measured
in a child process so the album run's memory does not count.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facefinder.clusters import (  # noqa: E402
    DEFAULT_K,
    DEFAULT_THRESHOLD,
    cluster_faces,
    cluster_sizes,
)
from facefinder.neighbours import Neighbours  # noqa: E402

NOISE = 0.04  # per dimension: a synthetic face lies ~0.1 cosine distance from its source
NEW_FACES = 1_000


# ---------------------------------------------------------------------- the album's faces


def album_faces(album: Path, jobs: int) -> dict[str, np.ndarray]:
    """Every embedded face of the collection: vectors, file, box, matched, faces in file."""
    from facefinder import Finder

    with tempfile.TemporaryDirectory() as tmp, Finder(
            reference=album / "reference", index=Path(tmp) / "index.db", jobs=jobs) as finder:
        result = finder.find(album / "collection")
    matched = {(m.rel, tuple(m.box)) for m in result.matches}
    vectors, rels, photos, known, detected = [], [], [], [], []
    for file in result.files:
        for face in file.faces:
            if face.embedding is None:
                continue
            vectors.append(face.embedding)
            rels.append(file.rel)
            # A video's frames are different pictures; faces of one frame are one photo.
            photos.append(file.rel if face.time is None else f"{file.rel}@{face.time}")
            known.append((file.rel, tuple(face.box)) in matched)
            detected.append(len(file.faces))
    return {"vectors": np.array(vectors, dtype=np.float32).reshape(-1, 128),
            "rels": np.array(rels), "photos": np.array(photos),
            "known": np.array(known, dtype=bool), "detected": np.array(detected)}


def identities(album: Path) -> dict[str, str]:
    """{collection path: LFW identity} for truth rows whose source is an LFW photo."""
    out = {}
    with (album / "truth.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            parts = (row.get("source") or "").split("/")
            if len(parts) >= 3 and parts[0].lower().startswith("lfw"):
                out[row["path"]] = parts[-2]
    return out


# ---------------------------------------------------------------------- scores


def scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float | None]:
    """Pairwise and BCubed precision/recall of ``labels`` against ``truth`` (same length);
    a pairwise figure with no pair to judge (no faces put together, or no two faces of
    one person) is None, printed as "-", not a perfect score."""
    n = len(labels)
    if n == 0:
        return {}
    both = Counter(zip(labels.tolist(), truth.tolist(), strict=True))
    per_label = Counter(labels.tolist())
    per_truth = Counter(truth.tolist())

    def pairs(counts: Counter) -> int:
        return sum(c * (c - 1) // 2 for c in counts.values())

    together, found, real = pairs(both), pairs(per_label), pairs(per_truth)
    # BCubed: each face weighs its cluster/person overlap; sum over faces = sum c^2 / size.
    bp = sum(c * c / per_label[lab] for (lab, _), c in both.items()) / n
    br = sum(c * c / per_truth[who] for (_, who), c in both.items()) / n
    return {
        "faces": n,
        "identities": len(per_truth),
        "clusters": len(per_label),
        "singletons": sum(1 for c in per_label.values() if c == 1),
        "pair_precision": together / found if found else None,
        "pair_recall": together / real if real else None,
        "bcubed_precision": bp,
        "bcubed_recall": br,
        "bcubed_f1": 2 * bp * br / (bp + br),
    }


def score_album(faces: dict[str, np.ndarray], who: dict[str, str], subset: np.ndarray,
                threshold: float, k: int) -> tuple[dict, float]:
    """Cluster the faces in ``subset`` and score the ones with an identity."""
    start = time.perf_counter()
    labels = cluster_faces(faces["vectors"][subset], faces["photos"][subset],
                           threshold=threshold, k=k)
    elapsed = time.perf_counter() - start
    rels = faces["rels"][subset]
    scored = np.array([faces["detected"][i] == 1 and rel in who
                       for i, rel in zip(np.flatnonzero(subset), rels, strict=True)],
                      dtype=bool)
    truth = np.array([who[rel] for rel in rels[scored]])
    result = scores(labels[scored], truth)
    sizes = cluster_sizes(labels)
    result["all_clusters"] = len(sizes)
    result["all_singletons"] = sum(1 for c in sizes.values() if c == 1)
    result["clustered_faces"] = int(subset.sum())
    return result, elapsed


# ---------------------------------------------------------------------- scale


class PeakRss:
    """Peak resident memory of this process, sampled every 20 ms."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.02)

    def stop(self) -> tuple[int, int]:
        """(peak, increase over the start), bytes."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        return self.peak, self.peak - self.start


def synthetic(real: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n noisy copies of real embeddings, and photo ids grouping them 1-4 to a photo."""
    rng = np.random.default_rng(seed)
    vectors = real[rng.integers(0, len(real), n)]
    vectors = vectors + rng.normal(0, NOISE, vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    photos = np.cumsum(rng.random(n) < 0.7)  # ~1.4 faces per photo
    return vectors.astype(np.float32), photos


def scale_child(embeddings: Path, n: int, threshold: float, k: int) -> dict:
    """Full clustering of n synthetic faces, then an update with 1,000 more (this process
    does nothing else, so its memory is the clustering's)."""
    real = np.load(embeddings)
    vectors, photos = synthetic(real, n + NEW_FACES, seed=0)
    old, new_photos = vectors[:n], photos + 0
    out: dict = {"faces": n, "new_faces": NEW_FACES}

    meter = PeakRss()
    start = time.perf_counter()
    index = Neighbours(old)
    labels = cluster_faces(old, photos[:n], threshold=threshold, k=k, neighbours=index)
    out["full_s"] = time.perf_counter() - start
    out["full_peak_mb"], out["full_added_mb"] = (b / 2**20 for b in meter.stop())
    sizes = cluster_sizes(labels)
    out["clusters"] = len(sizes)
    out["singletons"] = sum(1 for c in sizes.values() if c == 1)

    previous = np.concatenate([labels, np.full(NEW_FACES, -1)])
    meter = PeakRss()
    start = time.perf_counter()
    updated = cluster_faces(vectors, new_photos, threshold=threshold, k=k,
                            previous=previous, neighbours=index)
    out["update_s"] = time.perf_counter() - start
    out["update_peak_mb"], out["update_added_mb"] = (b / 2**20 for b in meter.stop())
    out["kept_ids"] = bool((updated[:n] == labels).all())
    joined = updated[n:] <= labels.max()
    out["new_joined_existing"] = int(joined.sum())
    out["new_clusters"] = len(set(updated[n:][~joined].tolist()))
    return out


def run_scale(real: np.ndarray, n: int, threshold: float, k: int, jobs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "real.npy"
        np.save(path, real)
        env = dict(os.environ, OMP_NUM_THREADS=str(jobs), OPENBLAS_NUM_THREADS=str(jobs))
        cmd = [sys.executable, __file__, "--scale-child", str(path), "--synthetic", str(n),
               "--threshold", str(threshold), "--k", str(k)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("album", type=Path, nargs="?")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--synthetic", type=int, default=100_000,
                        help="faces for the scale test (0: skip it)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--k", type=int, default=DEFAULT_K)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    parser.add_argument("--cache", type=Path,
                        help="keep the album's faces in this .npz (re-runs skip the finder)")
    parser.add_argument("--save-embeddings", type=Path,
                        help="write the album's embeddings (N, 128) to this .npy")
    parser.add_argument("--scale-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_child:
        print(json.dumps(scale_child(args.scale_child, args.synthetic, args.threshold,
                                     args.k)))
        return
    if args.album is None:
        parser.error("ALBUM is required")
    album = args.album.resolve()

    if args.cache and args.cache.exists():
        faces = dict(np.load(args.cache))
    else:
        start = time.perf_counter()
        faces = album_faces(album, args.jobs)
        print(f"faces from the finder: {len(faces['vectors'])} in "
              f"{time.perf_counter() - start:.0f} s")
        if args.cache:
            np.savez(args.cache, **faces)
    if args.save_embeddings:
        np.save(args.save_embeddings, faces["vectors"])
    who = identities(album)
    report: dict = {"album": str(album), "threshold": args.threshold, "k": args.k,
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                               f"Python {platform.python_version()}",
                    "date": time.strftime("%Y-%m-%d")}
    unknown, every = ~faces["known"], np.ones(len(faces["known"]), dtype=bool)
    for name, subset in (("unknown faces", unknown), ("all faces", every)):
        result, elapsed = score_album(faces, who, subset, args.threshold, args.k)
        result["seconds"] = elapsed
        report[name] = result

    print(f"\nClusters on {album.name} (threshold {args.threshold}, k {args.k}); scored: "
          "files with one detected face and an LFW source, against its identity")
    rows = [("faces clustered", "clustered_faces", "d"), ("  clusters", "all_clusters", "d"),
            ("  singletons", "all_singletons", "d"), ("faces scored", "faces", "d"),
            ("  identities", "identities", "d"), ("  clusters", "clusters", "d"),
            ("  singletons", "singletons", "d"), ("pairwise precision", "pair_precision", "f"),
            ("pairwise recall", "pair_recall", "f"),
            ("BCubed precision", "bcubed_precision", "f"),
            ("BCubed recall", "bcubed_recall", "f"), ("BCubed F1", "bcubed_f1", "f"),
            ("time, s", "seconds", "f")]
    print(f"{'':<20} {'unknown faces':>14} {'all faces':>14}")
    for label, key, kind in rows:
        cells = [report[name][key] for name in ("unknown faces", "all faces")]
        print(f"{label:<20} " + " ".join(f"{'-':>14}" if c is None else
                                         f"{c:>14.3f}" if kind == "f" else f"{c:>14,}"
                                         for c in cells))

    if args.synthetic:
        scale = run_scale(faces["vectors"], args.synthetic, args.threshold, args.k, args.jobs)
        report["synthetic"] = scale
        print(f"\nScale: {scale['faces']:,} synthetic faces (album embeddings + noise "
              f"{NOISE}/dim, renormalised), {os.cpu_count()} cores")
        print(f"{'':<34} {'time s':>8} {'peak RSS MB':>12} {'added MB':>9}")
        print(f"{'full clustering (index included)':<34} {scale['full_s']:8.1f} "
              f"{scale['full_peak_mb']:12.0f} {scale['full_added_mb']:9.0f}")
        print(f"{f'update: +{NEW_FACES:,} new faces':<34} {scale['update_s']:8.1f} "
              f"{scale['update_peak_mb']:12.0f} {scale['update_added_mb']:9.0f}")
        print(f"clusters {scale['clusters']:,} ({scale['singletons']:,} singletons); "
              f"update kept every earlier id: {scale['kept_ids']}; new faces joining an "
              f"existing cluster: {scale['new_joined_existing']:,}, new clusters: "
              f"{scale['new_clusters']:,}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
