"""How the machine itself scales: the elementary passes a warm match is made of, timed
alone at two collection sizes, with their growth exponent.

Usage:
    python benchmarks/passes.py [--sizes 100000,1000000] [--people 100] [--repeat 5]

Why: ``benchmarks/scale.py`` measures the warm match growing a little faster than
linearly from 100,000 to 1,000,000 faces. This script asks how much of that is the
machine rather than the code, by timing passes that do exactly linear work - the same
number of operations per face at every size, no Python-level algorithm around them - on
data laid out as the decision's:

* *sequential scan*: one pass over the (F, P) distances (a sum);
* *random gather*: four entries a face read at random spots of the (F, P) distances
  (what expansion along the neighbour graph does when it lowers a distance);
* *graph lookup*: each face's 20 neighbour rows looked up in a one-byte-a-face table
  (expansion's "which person joined among my neighbours");
* *per-file records, in order*: one attribute read from each of F/2 Python objects, in
  the order they were made (every pass the decision makes over the files);
* *per-file records, scattered*: the same objects visited in a shuffled order;
* *full garbage collection* with those objects alive;
* *fresh memory*: a new (F, P) float32 array filled once (pages the process has not
  touched before), and the same array filled again (pages it has).

Each pass is timed ``--repeat`` times, best kept (the fresh-memory pass once per size,
as a run meets it; the garbage collection half as often). The gathers write into arrays
made beforehand, so they time the scattered reads, not fresh memory for their answers.
Every pass does the same work per face at both sizes, so an exponent above 1 is what the
memory hierarchy (caches, TLB, a VM host providing pages) charges for a working set ten
times as big, not the code. (The collection also walks the interpreter's own objects,
the same at both sizes: its exponent, if anything, understates the growth.)
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import platform
import time
from collections.abc import Callable

import numpy as np

NEIGHBOURS = 20
SPOTS_PER_FACE = 4


class _Record:
    """A stand-in for a file's record: a few attributes, as ``FileResult`` has."""

    __slots__ = ("faces", "key", "kind")

    def __init__(self, i: int) -> None:
        self.kind = "image"
        self.faces = (i,)
        self.key = str(i)


def _best(step: Callable[[], object], repeat: int) -> float:
    """The shortest of ``repeat`` timings of ``step`` (seconds)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(faces: int, people: int, repeat: int) -> dict[str, float]:
    """Every pass at one size: name -> seconds."""
    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    start = time.perf_counter()
    distance = np.empty((faces, people), np.float32)
    distance.fill(1.0)  # first touch of every page
    out["fresh memory: new (F, P) array filled"] = time.perf_counter() - start
    out["touched memory: same array filled again"] = _best(lambda: distance.fill(0.5), repeat)
    flat = distance.reshape(-1)
    spots = rng.integers(0, flat.size, faces * SPOTS_PER_FACE)
    rows = rng.integers(0, faces, (faces, NEIGHBOURS)).astype(np.int32)
    owner = np.full(faces + 1, -1, np.int8)
    owner[rng.integers(0, faces, faces // 5)] = 3
    records = [_Record(i) for i in range(faces // 2)]
    scattered = list(records)
    rng.shuffle(scattered)
    out["sequential scan of (F, P)"] = _best(lambda: distance.sum(), repeat)
    gathered = np.empty(len(spots), np.float32)
    looked_up = np.empty(rows.shape, np.int8)
    out["random gather from (F, P)"] = _best(
        lambda: np.take(flat, spots, out=gathered), repeat)
    out["graph lookup (F, 20)"] = _best(lambda: np.take(owner, rows, out=looked_up), repeat)
    out["per-file records, in order"] = _best(lambda: [r.kind for r in records], repeat)
    out["per-file records, scattered"] = _best(lambda: [r.kind for r in scattered], repeat)
    gc.collect()
    out["full garbage collection"] = _best(gc.collect, max(1, repeat // 2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000",
                        help="two or more face counts, comma-separated")
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if len(sizes) < 2 or any(s < 1000 for s in sizes):
        parser.error("--sizes: two or more sizes of 1,000 faces or more")
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{args.people} people; best of {args.repeat} (fresh memory: once)")
    results = {}
    for faces in sizes:
        results[faces] = measure(faces, args.people, args.repeat)
        gc.collect()
    width = max(map(len, results[sizes[0]]))
    steps = list(itertools.pairwise(sizes))
    labels = [f"  e {a // 1000}k-{b // 1000}k" for a, b in steps]
    print(f"{'pass (seconds)':<{width}}" + "".join(f"{f:>12,}" for f in sizes)
          + "".join(labels))
    for name in results[sizes[0]]:
        line = f"{name:<{width}}" + "".join(f"{results[f][name]:>12.5f}" for f in sizes)
        for (a, b), label in zip(steps, labels, strict=True):
            ta, tb = results[a][name], results[b][name]
            e = math.log(tb / ta) / math.log(b / a) if ta > 0 and tb > 0 else float("nan")
            line += f"{e:>{len(label)}.2f}"
        print(line)
    print("e: growth exponent (time ~ faces^e); each pass does the same work per face at "
          "every size, so e > 1 is the machine's memory hierarchy, not the code")


if __name__ == "__main__":
    main()
