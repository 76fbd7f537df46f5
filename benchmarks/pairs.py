"""Benchmark the embedding on face-verification pair sets: accuracy, TPR at low FPR, misses.

Usage:
    python benchmarks/pairs.py [--sets lfw,cfp_fp,cfp_ff] [--model Facenet] [--jobs 2]
                               [--cache DIR] [--pairs DIR] [--out FILE.json]

The pair sets are ``../shared/pairs/<set>.tsv`` (columns image1, image2, same, fold; folds
0-4, each with as many same as different pairs; see that folder's README). Every image is
read through the project's own library: ``Finder.find`` over the set's image folder with a
face index in ``--cache`` (never the user's own index), so a second run reads no image.
The finder needs a reference, so a copy of the set's first image serves as a dummy one.

An image's face is the detected face that is largest and most central (LFW centres the
face; CFP shows one person). A pair whose image has no face, or whose main face the finder
would not use (too small, too blurry), is a miss: its distance is ``MISS`` (2.0, the
largest cosine distance), so it is never accepted; misses are counted and reported.

Figures per set, per fold and overall (distance = cosine distance, accepted when below
the threshold, exactly as the finder decides):
* accuracy, TPR and FPR at the model's default threshold;
* best-threshold accuracy by 5-fold cross-validation: the threshold that maximises
  accuracy on four folds is scored on the fifth (mean +- sd over the five);
* TPR at FPR 0.1% and 0.01%: the threshold is the largest that keeps the false accepts of
  the four training folds within the target, reported on the held-out fold (its FPR too);
  "pooled" chooses the threshold on all five folds and reports on them (not held out).
  With ~1,500 impostor pairs, 0.01% allows no false accept at all, and 0.1% one.

As a library (later decision-rule experiments reuse the cached embeddings)::

    from benchmarks.pairs import load_pairs
    distances, same, folds, emb1, emb2 = load_pairs("lfw")   # emb rows are nan on a miss
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PAIRS_DIR = ROOT.parent / "shared" / "pairs"
CACHE_DIR = Path(tempfile.gettempdir()) / "facefinder-pairs"
SETS = ("lfw", "cfp_fp", "cfp_ff")
MISS = 2.0  # distance given to a pair with a miss: never accepted
FPR_TARGETS = (1e-3, 1e-4)


class Pairs(NamedTuple):
    """One pair set: per-pair cosine distance, label, fold and both images' embeddings."""

    distances: np.ndarray  # (N,) float64; MISS where either image has no usable face
    same: np.ndarray  # (N,) bool
    folds: np.ndarray  # (N,) int
    embeddings1: np.ndarray  # (N, D) float32; nan rows for a miss
    embeddings2: np.ndarray


@dataclass
class ImageFace:
    """The face of one pair-set image, or why there is none."""

    embedding: np.ndarray | None
    miss: str | None = None  # "no face", "too small", "too blurry", "unreadable: ..."


# --------------------------------------------------------------------------- reading


def read_tsv(name: str, pairs_dir: Path = PAIRS_DIR) -> list[tuple[str, str, bool, int]]:
    """(image1, image2, same, fold) rows of ``<pairs_dir>/<name>.tsv``."""
    with (pairs_dir / f"{name}.tsv").open(encoding="utf-8", newline="") as handle:
        return [(r["image1"], r["image2"], r["same"] == "1", int(r["fold"]))
                for r in csv.DictReader(handle, delimiter="\t")]


def main_face(faces: list, size: tuple[int, int] | None):
    """The largest, most central face (area weighted down by the distance of its centre
    from the image's centre, relative to half the diagonal); None if there is none."""
    if not faces:
        return None
    width, height = size or (0, 0)
    half_diagonal = max(1.0, (width**2 + height**2) ** 0.5 / 2)

    def weight(face) -> float:
        x, y, w, h = face.box
        off = ((x + w / 2 - width / 2) ** 2 + (y + h / 2 - height / 2) ** 2) ** 0.5
        return w * h * max(0.05, 1.0 - off / half_diagonal) if size else w * h

    return max(faces, key=weight)


def embed_folders(folders: list[str], model: str = "Facenet", jobs: int = 2,
                  cache: Path = CACHE_DIR, pairs_dir: Path = PAIRS_DIR,
                  dummy: str | None = None, progress: bool = False) -> dict[str, ImageFace]:
    """{path relative to ``pairs_dir``: its face} of every image under the folders.

    Runs ``Finder.find`` with a face index in ``cache``: a re-run reads no image.
    ``dummy`` (a path relative to ``pairs_dir``) is copied as the one reference photo.
    """
    from facefinder import Finder
    from facefinder.api import FileDone, FinderError

    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, ImageFace] = {}
    with tempfile.TemporaryDirectory() as tmp, Finder(
            Path(tmp) / "reference", index=cache / "pairs.sqlite", model=model,
            jobs=jobs) as finder:
        person = Path(tmp) / "reference" / "Dummy"
        person.mkdir(parents=True)
        shutil.copy(pairs_dir / (dummy or _first_image(folders[0], pairs_dir)),
                    person / "dummy.jpg")

        def tell(event) -> None:
            if progress and isinstance(event, FileDone) and event.done % 500 == 0:
                print(f"  ... {event.done} images", file=sys.stderr, flush=True)

        for folder in folders:
            try:
                result = finder.find(pairs_dir / folder, on_event=tell)
            except FinderError as exc:
                raise SystemExit(f"pairs: {exc}") from None
            for file in result.files:
                rel = f"{folder}/{file.rel}"
                if file.error:
                    out[rel] = ImageFace(None, f"unreadable: {file.error}")
                    continue
                face = main_face(file.faces, file.size)
                if face is None:
                    out[rel] = ImageFace(None, "no face")
                elif face.embedding is None:
                    out[rel] = ImageFace(None, face.skipped or "not embedded")
                else:
                    out[rel] = ImageFace(np.asarray(face.embedding, np.float32))
    return out


def _first_image(folder: str, pairs_dir: Path) -> str:
    return str(next(p for p in sorted((pairs_dir / folder).rglob("*.jpg"))).relative_to(
        pairs_dir))


def build_pairs(rows: list[tuple[str, str, bool, int]], faces: dict[str, ImageFace]
                ) -> Pairs:
    """Distances, labels, folds and embeddings of ``rows`` from the images' faces."""
    dim = next(f.embedding.shape[0] for f in faces.values() if f.embedding is not None)
    nan = np.full(dim, np.nan, np.float32)

    def vector(rel: str) -> np.ndarray:
        face = faces.get(rel)
        return nan if face is None or face.embedding is None else face.embedding

    e1 = np.stack([vector(r[0]) for r in rows])
    e2 = np.stack([vector(r[1]) for r in rows])
    distances = 1.0 - np.sum(e1.astype(np.float64) * e2, axis=1)
    distances[np.isnan(distances)] = MISS
    return Pairs(distances, np.array([r[2] for r in rows]), np.array([r[3] for r in rows]),
                 e1, e2)


def load_pairs(name: str, model: str = "Facenet", jobs: int = 2, cache: Path = CACHE_DIR,
               pairs_dir: Path = PAIRS_DIR) -> Pairs:
    """One pair set's distances, labels, folds and embeddings (embedded once, then cached)."""
    rows = read_tsv(name, pairs_dir)
    folders = sorted({r[i].split("/")[0] for r in rows for i in (0, 1)})
    faces = embed_folders(folders, model, jobs, cache, pairs_dir, dummy=rows[0][0])
    return build_pairs(rows, faces)


# --------------------------------------------------------------------------- figures


def rates(distances: np.ndarray, same: np.ndarray, threshold: float
          ) -> tuple[float, float, float]:
    """(accuracy, TPR, FPR) when pairs under ``threshold`` are called the same person."""
    accept = distances < threshold
    tpr = float(accept[same].mean()) if same.any() else float("nan")
    fpr = float(accept[~same].mean()) if (~same).any() else float("nan")
    return float((accept == same).mean()), tpr, fpr


def best_accuracy_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The threshold (a midpoint between two distances) with the highest accuracy."""
    values = np.unique(np.minimum(distances, MISS))
    candidates = np.concatenate([[0.0], (values[:-1] + values[1:]) / 2, [MISS]])
    pos, neg = np.sort(distances[same]), np.sort(distances[~same])
    correct = (np.searchsorted(pos, candidates, "left")
               + len(neg) - np.searchsorted(neg, candidates, "left"))
    return float(candidates[int(np.argmax(correct))])


def threshold_at_fpr(distances: np.ndarray, same: np.ndarray, target: float) -> float:
    """The largest threshold whose false accepts stay within ``target`` of the impostors."""
    neg = np.sort(distances[~same])
    allowed = int(np.floor(target * len(neg) + 1e-9))
    return float(neg[allowed]) if allowed < len(neg) else MISS


def evaluate(pairs: Pairs, default: float) -> dict:
    """Every figure of one set (see the module's docstring)."""
    d, same, folds = pairs.distances, pairs.same, pairs.folds
    fold_ids = sorted(set(folds.tolist()))
    per_fold = []
    cv_acc, cv_thr = [], []
    at_fpr: dict[str, dict] = {f"{t:g}": {"tpr": [], "fpr": [], "threshold": []}
                               for t in FPR_TARGETS}
    for k in fold_ids:
        test, train = folds == k, folds != k
        acc, tpr, fpr = rates(d[test], same[test], default)
        best = best_accuracy_threshold(d[train], same[train])
        cv_acc.append(rates(d[test], same[test], best)[0])
        cv_thr.append(best)
        row = {"fold": k, "pairs": int(test.sum()), "accuracy": acc, "tpr": tpr, "fpr": fpr,
               "cv_threshold": best, "cv_accuracy": cv_acc[-1],
               "misses": int((d[test] >= MISS).sum())}
        for target in FPR_TARGETS:
            t = threshold_at_fpr(d[train], same[train], target)
            _, tpr_t, fpr_t = rates(d[test], same[test], t)
            entry = at_fpr[f"{target:g}"]
            entry["tpr"].append(tpr_t)
            entry["fpr"].append(fpr_t)
            entry["threshold"].append(t)
            row[f"tpr_at_fpr_{target:g}"] = tpr_t
        per_fold.append(row)
    acc, tpr, fpr = rates(d, same, default)
    overall = {
        "pairs": len(d), "same_pairs": int(same.sum()), "accuracy": acc, "tpr": tpr,
        "fpr": fpr, "cv_accuracy_mean": float(np.mean(cv_acc)),
        "cv_accuracy_sd": float(np.std(cv_acc, ddof=1)) if len(cv_acc) > 1 else 0.0,
        "cv_threshold_mean": float(np.mean(cv_thr)),
        "pooled_best_threshold": best_accuracy_threshold(d, same),
        "pairs_with_miss": int((d >= MISS).sum()),
        "same_pairs_with_miss": int(((d >= MISS) & same).sum()),
    }
    for target in FPR_TARGETS:
        entry = at_fpr[f"{target:g}"]
        t = threshold_at_fpr(d, same, target)
        overall[f"tpr_at_fpr_{target:g}"] = {
            "held_out_mean": float(np.mean(entry["tpr"])),
            "held_out_sd": float(np.std(entry["tpr"], ddof=1)) if len(entry["tpr"]) > 1
            else 0.0,
            "held_out_fpr_mean": float(np.mean(entry["fpr"])),
            "threshold_mean": float(np.mean(entry["threshold"])),
            "pooled": rates(d, same, t)[1], "pooled_threshold": t,
        }
    return {"default_threshold": default, "folds": per_fold, "overall": overall}


# --------------------------------------------------------------------------- printing


def misses_by_reason(rows, faces: dict[str, ImageFace]) -> dict[str, int]:
    """{reason: images} over the distinct images of ``rows`` without a usable face."""
    images = {r[i] for r in rows for i in (0, 1)}
    reasons: dict[str, int] = {}
    for rel in images:
        face = faces.get(rel)
        why = "not found on disk" if face is None else face.miss
        if why:
            key = why.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    return dict(sorted(reasons.items()))


def print_set(name: str, figures: dict, images: int, misses: dict[str, int]) -> None:
    o = figures["overall"]
    t = figures["default_threshold"]
    print(f"\n== {name}: {o['pairs']} pairs ({o['same_pairs']} same), {images} images; "
          f"default threshold {t:g}")
    print(f"images without a usable face: {sum(misses.values())} "
          f"({', '.join(f'{k} {v}' for k, v in misses.items()) or 'none'}); pairs with a miss: "
          f"{o['pairs_with_miss']} ({o['same_pairs_with_miss']} same)")
    print("fold  pairs  acc@def  TPR@def  FPR@def   CV thr  CV acc  TPR@1e-3  TPR@1e-4  misses")
    for r in figures["folds"]:
        print(f"{r['fold']:4d}  {r['pairs']:5d}  {r['accuracy']:7.4f}  {r['tpr']:7.4f}  "
              f"{r['fpr']:7.4f}  {r['cv_threshold']:7.4f}  {r['cv_accuracy']:6.4f}  "
              f"{r['tpr_at_fpr_0.001']:8.4f}  {r['tpr_at_fpr_0.0001']:8.4f}  {r['misses']:6d}")
    print(f" all  {o['pairs']:5d}  {o['accuracy']:7.4f}  {o['tpr']:7.4f}  {o['fpr']:7.4f}  "
          f"{o['cv_threshold_mean']:7.4f}  {o['cv_accuracy_mean']:6.4f}  "
          f"{o['tpr_at_fpr_0.001']['held_out_mean']:8.4f}  "
          f"{o['tpr_at_fpr_0.0001']['held_out_mean']:8.4f}  {o['pairs_with_miss']:6d}")
    print(f"5-fold CV accuracy {o['cv_accuracy_mean']:.4f} +- {o['cv_accuracy_sd']:.4f} "
          f"(threshold {o['cv_threshold_mean']:.3f}; pooled best {o['pooled_best_threshold']:.3f})")
    for target in FPR_TARGETS:
        e = o[f"tpr_at_fpr_{target:g}"]
        print(f"TPR at FPR {target * 100:g}%: held out {e['held_out_mean']:.4f} +- "
              f"{e['held_out_sd']:.4f} (their FPR {e['held_out_fpr_mean'] * 100:.3f}%, "
              f"threshold {e['threshold_mean']:.3f}); pooled {e['pooled']:.4f} "
              f"(threshold {e['pooled_threshold']:.3f})")


def rule_operating_point(pairs: Pairs, model: str) -> dict | None:
    """TPR/FPR under the finder's own decision rule (``facefinder.decide``).

    A pair is searched as a person with one reference photo (image 1) in a collection of
    one photo (image 2): the collection holds no crowd of look-alikes, so the rule gives
    that person its loosest cutoff - exactly what ``Finder.find`` would do.
    """
    from facefinder.decide import RULES, person_thresholds
    from facefinder.match import Gallery

    rule = RULES.get(model.lower())
    if rule is None:
        return None
    cuts = np.empty(len(pairs.distances))
    for i, (a, b) in enumerate(zip(pairs.embeddings1, pairs.embeddings2, strict=True)):
        if np.isnan(a).any() or np.isnan(b).any():
            cuts[i] = rule.floor
            continue
        cuts[i] = person_thresholds(rule, Gallery.build({"p": [a]}), b[None])[0]
    accept = pairs.distances < cuts
    same = pairs.same
    return {"tpr": float(accept[same].mean()), "fpr": float(accept[~same].mean()),
            "false_accepts": int(accept[~same].sum()), "impostors": int((~same).sum()),
            "cutoff_min": float(cuts.min()), "cutoff_max": float(cuts.max())}


def print_summary(results: dict[str, dict]) -> None:
    print("\n== summary (held-out figures: mean over the 5 folds)")
    print("set      acc@def  TPR@def  FPR@def  CV acc (sd)       CV thr  "
          "TPR@FPR0.1%  TPR@FPR0.01%  images missed")
    for name, f in results.items():
        o = f["overall"]
        print(f"{name:7s}  {o['accuracy']:7.4f}  {o['tpr']:7.4f}  {o['fpr']:7.4f}  "
              f"{o['cv_accuracy_mean']:.4f} ({o['cv_accuracy_sd']:.4f})  "
              f"{o['cv_threshold_mean']:6.3f}  {o['tpr_at_fpr_0.001']['held_out_mean']:11.4f}  "
              f"{o['tpr_at_fpr_0.0001']['held_out_mean']:12.4f}  {f['images_missed']:6d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS),
                        help=f"comma-separated pair sets (default {','.join(SETS)})")
    parser.add_argument("--model", default="Facenet")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=CACHE_DIR,
                        help=f"folder of the face index that caches the faces "
                             f"(default {CACHE_DIR})")
    parser.add_argument("--pairs", type=Path, default=PAIRS_DIR,
                        help=f"folder of the pair sets (default {PAIRS_DIR})")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    from facefinder.vision.registry import model_spec

    default = model_spec(args.model).default_threshold
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [n for n in names if not (args.pairs / f"{n}.tsv").is_file()]
    if unknown:
        raise SystemExit(f"pairs: no {', '.join(unknown)} in {args.pairs}")
    rows = {n: read_tsv(n, args.pairs) for n in names}
    folders = sorted({r[i].split("/")[0] for n in names for r in rows[n] for i in (0, 1)})
    started = time.perf_counter()
    faces = embed_folders(folders, args.model, args.jobs, args.cache, args.pairs,
                          dummy=rows[names[0]][0][0], progress=True)
    seconds = time.perf_counter() - started
    print(f"model {args.model}, {len(faces)} images of {', '.join(folders)} "
          f"in {seconds:.1f} s (face index {args.cache / 'pairs.sqlite'})")
    results = {}
    for name in names:
        figures = evaluate(build_pairs(rows[name], faces), default)
        misses = misses_by_reason(rows[name], faces)
        images = len({r[i] for r in rows[name] for i in (0, 1)})
        figures.update(images=images, images_missed=sum(misses.values()),
                       misses_by_reason=misses)
        results[name] = figures
        print_set(name, figures, images, misses)
    print_summary(results)
    print("\n== at the finder's default operating point (its decision rule; a pair is a "
          "person with one reference photo, searched in a collection of one photo)")
    print("set      TPR      FPR      false accepts  cutoff")
    for name in names:
        point = rule_operating_point(build_pairs(rows[name], faces), args.model)
        results[name]["rule"] = point
        if point is None:
            print(f"{name:7s}  (no calibrated rule for {args.model}: plain threshold)")
            continue
        print(f"{name:7s}  {point['tpr']:.4f}   {point['fpr']:.4f}   "
              f"{point['false_accepts']:4d} of {point['impostors']:<5d}  "
              f"{point['cutoff_min']:.3f}-{point['cutoff_max']:.3f}")
    if args.out:
        args.out.write_text(json.dumps({
            "model": args.model, "default_threshold": default, "sets": results,
            "seconds": seconds, "date": time.strftime("%Y-%m-%d"),
        }, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
