"""Pick the clustering's edge threshold by cross-validation on public face-pair folds.

Usage:
    python benchmarks/cluster_threshold.py PAIRS_DIR [--jobs 2] [--far 1e-5] [--cache F.npz]

PAIRS_DIR is laid out like ../shared/pairs: ``lfw.tsv``, ``cfp_ff.tsv``, ``cfp_fp.tsv``
(columns image1, image2, same, fold) and the images they name. Every image goes through
the finder's own pipeline (library API, a face index in a temporary folder); the face
nearest the image centre is taken (LFW and CFP centre the face). An image with no face
found is left out and counted.

The listed pairs have too few different-person pairs (5,000) to see the rates that matter
for clustering: each face meets thousands of strangers, and one false edge can merge two
of them. So besides the listed pairs (printed for reference), every two images of one set
(LFW; CFP, frontal and profile) are compared: 13 million different-person pairs, and
every same-person pair. The rule: the largest threshold at which the different-person
pairs of the training folds have a false-accept rate of at most ``--far`` (default 1e-5:
a face among 5,000 strangers' faces gets a false edge with a chance of about 5%). For each
fold f in turn the rule is applied to the other folds (pairs with both images outside f)
and scored on fold f (pairs with both images in f); those held-out figures are what to
expect. The default threshold is the rule applied to all folds, rounded down to 0.01.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SETS = ("lfw", "cfp_ff", "cfp_fp")


def read_pairs(pairs_dir: Path) -> dict[str, list[tuple[str, str, int, int]]]:
    out = {}
    for name in SETS:
        with (pairs_dir / f"{name}.tsv").open(encoding="utf-8", newline="") as handle:
            out[name] = [(r["image1"], r["image2"], int(r["same"]), int(r["fold"]))
                         for r in csv.DictReader(handle, delimiter="\t")]
    return out


def embed(pairs_dir: Path, images: set[str], jobs: int, reference: Path
          ) -> dict[str, np.ndarray]:
    """{image path: embedding of its most central face} through the library API."""
    from facefinder import Finder

    folders = sorted({path.split("/")[0] for path in images})
    found: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp, Finder(
            reference=reference, index=Path(tmp) / "index.db", jobs=jobs) as finder:
        for folder in folders:
            result = finder.find(pairs_dir / folder)
            for file in result.files:
                rel = f"{folder}/{file.rel}"
                faces = [f for f in file.faces if f.embedding is not None]
                if rel not in images or not faces or file.size is None:
                    continue
                w, h = file.size
                central = min(faces, key=lambda f: math.hypot(
                    f.box[0] + f.box[2] / 2 - w / 2, f.box[1] + f.box[3] / 2 - h / 2))
                found[rel] = central.embedding
    return found


def largest_safe(dist: np.ndarray, same: np.ndarray, far: float) -> float:
    """Largest threshold (distance < t accepted) with at most ``far`` false accepts."""
    negatives = np.sort(dist[~same])
    allowed = math.floor(far * len(negatives))
    return float(negatives[allowed]) if allowed < len(negatives) else 2.0


def identity(image: str) -> str:
    """lfw/NAME/NAME_0001.jpg -> lfw:NAME; cfp/train/NNN/frontal/01.jpg -> cfp:NNN."""
    parts = image.split("/")
    return f"lfw:{parts[1]}" if parts[0] == "lfw" else f"cfp:{parts[2]}"


def all_pairs(vectors: dict[str, np.ndarray], folds: dict[str, int]
              ) -> tuple[np.ndarray, ...]:
    """Every pair of images within one set: (distance, same person, fold a, fold b, set)."""
    out = []
    for number, prefix in enumerate(("lfw/", "cfp/")):
        names = sorted(n for n in vectors if n.startswith(prefix) and n in folds)
        x = np.stack([vectors[n] for n in names])
        who = np.array([identity(n) for n in names])
        fold = np.array([folds[n] for n in names], dtype=np.int8)
        a, b = np.triu_indices(len(names), 1)
        dist = (1.0 - np.einsum("ij,ij->i", x[a], x[b])).astype(np.float32)
        out.append((dist, who[a] == who[b], fold[a], fold[b],
                    np.full(len(a), number, dtype=np.int8)))
    return tuple(np.concatenate(parts) for parts in zip(*out, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--far", type=float, default=1e-5)
    parser.add_argument("--cache", type=Path, help="keep the embeddings here (npz)")
    parser.add_argument("--reference", type=Path,
                        default=ROOT.parent / "shared" / "devset" / "reference",
                        help="any reference folder (the search needs one; its people "
                             "do not matter here)")
    args = parser.parse_args()
    for path, what in ((args.pairs, "pair sets"), (args.reference, "--reference folder")):
        if not path.is_dir():
            parser.error(f"{what} not found: {path} (see ../shared/pairs/README or pass "
                         "another)")
    pairs = read_pairs(args.pairs)
    images = {p for rows in pairs.values() for row in rows for p in row[:2]}
    if args.cache and args.cache.exists():
        data = np.load(args.cache)
        vectors = dict(zip(data["names"].tolist(), data["vectors"], strict=True))
    else:
        vectors = embed(args.pairs, images, args.jobs, args.reference)
        if args.cache:
            names = sorted(vectors)
            np.savez(args.cache, names=np.array(names),
                     vectors=np.stack([vectors[n] for n in names]))
    print(f"{len(images):,} images, {len(images) - len(vectors):,} with no face found "
          "(left out)")
    folds: dict[str, int] = {}
    print("\nthe listed pairs (standard protocol):")
    for name, set_rows in pairs.items():
        dist = np.array([1.0 - float(vectors[a] @ vectors[b]) for a, b, _, _ in set_rows
                         if a in vectors and b in vectors])
        same = np.array([s == 1 for a, b, s, _ in set_rows if a in vectors and b in vectors])
        for a, b, _, fold in set_rows:
            folds[a] = folds[b] = fold
        cells = [f"at {t:.2f} FAR {np.mean(dist[~same] < t):.4f} TAR "
                 f"{np.mean(dist[same] < t):.3f}" for t in (0.25, 0.30, 0.32, 0.40)]
        print(f"  {name:<7} {len(dist):,} pairs with faces; " + "; ".join(cells))

    dist, same, fa, fb, which = all_pairs(vectors, folds)
    print(f"\nall pairs within LFW and within CFP: {int((~same).sum()):,} different-person, "
          f"{int(same.sum()):,} same-person")
    print(f"rule: largest threshold with false-accept rate <= {args.far:g} on the training "
          "folds")
    print(f"{'held out':>8} {'threshold':>9} {'FAR':>9} {'TAR':>6} {'TAR lfw':>8} "
          f"{'TAR cfp':>8}")
    chosen = []
    for fold in sorted(set(folds.values())):
        train = (fa != fold) & (fb != fold)
        test = (fa == fold) & (fb == fold)
        t = largest_safe(dist[train], same[train], args.far)
        chosen.append(t)
        accept = dist < t
        tar = [np.mean(accept[test & same & (which == w)]) for w in (0, 1)]
        print(f"{fold:>8} {t:9.4f} {np.mean(accept[test & ~same]):9.2e} "
              f"{np.mean(accept[test & same]):6.3f} {tar[0]:8.3f} {tar[1]:8.3f}")
    final = largest_safe(dist, same, args.far)
    print(f"threshold per held-out fold: min {min(chosen):.4f}, mean {np.mean(chosen):.4f}; "
          f"on all folds {final:.4f} -> default {math.floor(final * 100) / 100:.2f}")
    print("\nfor reference, all folds:")
    for t in (0.20, 0.25, 0.28, 0.30, 0.32, 0.35, 0.40):
        accept = dist < t
        print(f"  at {t:.2f}: FAR {np.mean(accept[~same]):.2e} (lfw "
              f"{np.mean(accept[~same & (which == 0)]):.2e}, cfp "
              f"{np.mean(accept[~same & (which == 1)]):.2e}), TAR "
              f"{np.mean(accept[same]):.3f} (lfw {np.mean(accept[same & (which == 0)]):.3f}, "
              f"cfp {np.mean(accept[same & (which == 1)]):.3f})")


if __name__ == "__main__":
    main()
