"""Objects in words and fields: the console listing, the CSV cell, the JSON entries.

One place for how an object is written down, so the console, the CSV and JSON reports,
the HTML report, the review page and the annotated copies' sidecars say the same thing
("dog 0.91", class/score/box).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from facefinder.records import FileResult, ObjectBox
from facefinder.walk import printable


def best_per_class(objects: Iterable[ObjectBox]) -> list[ObjectBox]:
    """Each class once, at its best score, best first: what a listing line shows (a
    video's 40 sampled frames of one dog are one dog)."""
    best: dict[str, ObjectBox] = {}
    for found in objects:
        if found.label not in best or found.score > best[found.label].score:
            best[found.label] = found
    return sorted(best.values(), key=lambda o: (-o.score, o.label))


def objects_text(objects: Iterable[ObjectBox]) -> str:
    """``dog 0.91; cat 0.80``: each class once, best score first (the CSV cell)."""
    return "; ".join(f"{o.label} {o.score:.2f}" for o in best_per_class(objects))


def object_entry(found: ObjectBox) -> dict[str, Any]:
    """One object as the JSON report and the sidecars store it."""
    entry: dict[str, Any] = {"class": found.label, "score": round(float(found.score), 4),
                             "box": [int(v) for v in found.box]}
    if found.time is not None:
        entry["time_s"] = round(float(found.time), 3)
    return entry


def json_objects(files: Sequence[FileResult]) -> list[dict[str, Any]]:
    """The JSON report's ``objects``: one entry per file, its objects as found."""
    return [{"path": f.rel, "objects": [object_entry(o) for o in f.objects or ()]}
            for f in files]


def format_objects(files: Sequence[FileResult], title: str, *, limit: int | None = None
                   ) -> str:
    """The console listing: ``title: N files`` and a line per file with its objects."""
    lines = [f"{title}: {len(files)} file{'s' * (len(files) != 1)}"]
    for file in files[:limit]:
        lines.append(f"  {printable(file.rel)}  - {objects_text(file.objects or ())}")
    if limit is not None and len(files) > limit:
        lines.append(f"  ... and {len(files) - limit} more (--list all shows every one; "
                     "--csv writes them all)")
    if not files:
        lines.append("  (no file matches)")
    return "\n".join(lines)
