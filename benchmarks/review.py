"""Benchmark the review page: a user answers yes/no through its HTTP API, then re-searches.

Usage:
    python benchmarks/review.py ALBUM [--answers 100] [--jobs 2] [--index-from FILE]
        [--out FILE.json]

ALBUM is laid out like the project's devset: ``reference/<Person>/*``, ``collection/``
and ``truth.csv`` (path, people ';'-separated, kind). The finder is started as a user
would start it (``finder.py ALBUM/collection --review --no-browser``) on a fresh face
index in a temporary folder (``--index-from`` starts from a copy of an existing index, to
skip the cold analysis; make one with ``finder.py ALBUM/collection --reference
ALBUM/reference --index FILE --no-progress``). The user's own index is never touched.
Only the page's JSON API is used, with the token of the printed address.

Accuracy is over (file, person) pairs, scored as ``benchmarks/album.py`` scores them:
before any answer (``/api/matches``), and after the answers and ``/api/refresh``.
The simulated user answers up to N suggestions truthfully: each time, every person's
suggestions (``kind=both``) are fetched again, the one whose distance is nearest its
threshold across all people is asked, and the answer is yes when the person is in the
file's truth and no other face of the file is already matched to them, else no.

At the end the server is stopped (Ctrl-C) and a plain search with the same index must
report exactly the page's matches: the answers are honoured by every later run. The
misses left are listed with what the page's photo search (``/api/search``) sees in each
file, so a developer can tell the ones no answer can fix.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from album import by_kind, read_truth, score

ROOT = Path(__file__).resolve().parent.parent
FINDER = ROOT / "finder.py"  # the program started, as a user starts it
VIDEO = {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp"}
SUGGESTIONS_PER_PERSON = 5  # only the first unanswered one of each person is used
START_TIMEOUT_S = 3 * 3600  # a cold analysis of a big album before the address is printed


# --------------------------------------------------------------------------- the server


class Server:
    """``finder.py --review --no-browser`` as a subprocess, and its JSON API."""

    def __init__(self, command: list[str]) -> None:
        flags = 0
        if os.name == "nt":  # Ctrl-C cannot be sent to a child there: Ctrl-Break its group
            flags = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, encoding="utf-8", errors="replace",
                                     creationflags=flags)
        self.lines: list[str] = []
        self._address = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.base, self.token = self._wait_for_address()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("Review page: "):
                self._address.set()
        self._address.set()  # the process ended: stop waiting

    def _wait_for_address(self) -> tuple[str, str]:
        self._address.wait(START_TIMEOUT_S)
        for line in self.lines:
            if line.startswith("Review page: "):
                url = urllib.parse.urlsplit(line.split(": ", 1)[1].strip())
                token = url.path.strip("/").split("/")[-1]  # the address is /s/<token>/
                return f"{url.scheme}://{url.netloc}", token
        self.stop()
        raise SystemExit("the finder printed no review address:\n" + "\n".join(self.lines))

    def call(self, method: str, path: str, body: object = None, data: bytes | None = None,
             **params: object) -> dict:
        """One API request with the run's token (the header the page's API accepts)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        headers = {"X-Finder-Token": self.token}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path + query, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=3600) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None

    def get(self, path: str, **params: object) -> dict:
        return self.call("GET", path, **params)

    def post(self, path: str, body: object = None, data: bytes | None = None) -> dict:
        return self.call("POST", path, body if body is not None or data else {}, data)

    def stop(self) -> int:
        """Ctrl-C, as the user stops it (Ctrl-Break on Windows); killed if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.CTRL_BREAK_EVENT if os.name == "nt"  # type: ignore[attr-defined]
                                  else signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return self.proc.returncode


# --------------------------------------------------------------------------- the user


def pairs_of(matches: list[dict]) -> set[tuple[str, str]]:
    return {(m["path"], m["person"]) for m in matches}


def all_matches(server: Server) -> list[dict]:
    return server.get("/api/matches")["matches"]


def play_user(server: Server, truth: dict, answers: int) -> list[dict]:
    """Answer up to ``answers`` suggestions truthfully, the most uncertain first."""
    people = [p["name"] for p in server.get("/api/people")["people"]]
    asked: set[tuple[str, str]] = set()
    log: list[dict] = []
    while len(log) < answers:
        best: tuple[float, str, str, dict, float] | None = None
        for person in people:
            answer = server.get("/api/suggestions", person=person,
                                limit=SUGGESTIONS_PER_PERSON, kind="both")
            threshold = answer["threshold"]
            for s in answer["suggestions"]:
                if (s["face"], s["person"]) in asked:
                    continue
                own = s.get("threshold") or threshold  # each person has their own cutoff
                key = (abs(s["distance"] - own), s["path"], s["person"], s, own)
                if best is None or key[:3] < best[:3]:
                    best = key
                break
        if best is None:
            break
        _, path, person, s, threshold = best
        photo = server.get(f"/api/photos/{s['file']}")
        taken = any(f["person"] == person and f["face"] != s["face"] for f in photo["faces"])
        truly = person in truth.get(path, (set(), ""))[0]
        verdict = "yes" if truly and not taken else "no"
        started = time.perf_counter()
        server.post("/api/decisions", {"face": s["face"], "person": person,
                                       "verdict": verdict})
        ms = (time.perf_counter() - started) * 1000
        asked.add((s["face"], person))
        log.append({"path": path, "person": person, "face": s["face"],
                    "distance": s["distance"], "threshold": threshold,
                    "suggested_as": "check" if s["distance"] < threshold else "maybe",
                    "verdict": verdict, "in_truth": truly, "ms": round(ms, 1)})
    return log


def diagnose(server: Server, album: Path, path: str, person: str) -> str:
    """What the page's photo search sees in a missed file (its faces, nearest people)."""
    if Path(path).suffix.lower() in VIDEO:
        return "video (not searchable by upload)"
    try:
        data = (album / "collection" / path).read_bytes()
    except OSError as exc:
        return f"cannot read: {exc}"
    faces = server.post("/api/search", data=data)["faces"]
    usable = [f for f in faces if f["people"]]
    if not faces:
        return "no face detected"
    if not usable:
        return f"{len(faces)} face(s), none usable (skipped: {faces[0]['skipped']})"
    parts = []
    for face in usable:
        near = face["people"]
        mine = next((p["distance"] for p in near if p["name"] == person), None)
        text = f"nearest {near[0]['name']} {near[0]['distance']:.3f}"
        if near[0]["name"] != person:
            text += f", {person} " + (f"{mine:.3f}" if mine is not None else "not in top 3")
        parts.append(text)
    return f"{len(faces)} face(s): " + "; ".join(parts)


# --------------------------------------------------------------------------- figures


def figures(truth: dict, found: set[tuple[str, str]]) -> dict:
    overall = score(truth, found)
    kinds = {kind: {"recall": s.recall, "tp": s.tp, "fn": s.fn, "fp": s.fp}
             for kind, s in by_kind(truth, found).items()}
    return {"precision": overall.precision, "recall": overall.recall, "f1": overall.f1,
            "tp": overall.tp, "fp": overall.fp, "fn": overall.fn, "by_kind": kinds}


def print_table(before: dict, after: dict) -> None:
    print(f"{'':30s} {'before':>10s} {'after':>10s}")
    for name in ("precision", "recall", "f1"):
        print(f"{name:30s} {before[name]:10.4f} {after[name]:10.4f}")
    print(f"{'tp / fp / fn':30s} {before['tp']:>4d}/{before['fp']}/{before['fn']:<3d} "
          f"{after['tp']:>5d}/{after['fp']}/{after['fn']}")
    print("recall by kind (tp/positives, false):")
    for kind, b in before["by_kind"].items():
        a = after["by_kind"][kind]
        print(f"  {kind:28s} {b['recall']:.3f} ({b['tp']}/{b['tp'] + b['fn']}, {b['fp']})"
              f"  ->  {a['recall']:.3f} ({a['tp']}/{a['tp'] + a['fn']}, {a['fp']})")


def plain_search(album: Path, index: Path, jobs: int, model: str,
                 threshold: float | None, tmp: Path) -> set[tuple[str, str, float]]:
    """(path, person, distance) of a plain search with the benchmark's index."""
    report = tmp / "plain.json"
    command = [sys.executable, str(FINDER), str(album / "collection"),
               "--reference", str(album / "reference"), "--index", str(index),
               "--jobs", str(jobs), "--model", model, "--json", str(report), "--no-progress"]
    if threshold is not None:
        command += ["--threshold", str(threshold)]
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"plain search failed ({proc.returncode}):\n{proc.stderr}")
    found = json.loads(report.read_text(encoding="utf-8"))["matches"]
    return {(m["path"], m["person"], round(m["distance"], 4)) for m in found}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("album", type=Path)
    parser.add_argument("--answers", type=int, default=100, metavar="N",
                        help="answer at most N suggestions (default 100)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--model", default="Facenet")
    parser.add_argument("--threshold", type=float, help="default: the model's own")
    parser.add_argument("--index-from", type=Path, metavar="FILE",
                        help="start from a copy of this face index (it is only read)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if args.answers < 0:
        parser.error("--answers must be 0 or more")

    album = args.album.resolve()
    truth = read_truth(album)
    with tempfile.TemporaryDirectory(prefix="review-bench-") as folder:
        tmp = Path(folder)
        index = tmp / "index.sqlite"
        if args.index_from is not None:
            for suffix in ("", "-wal"):
                source = Path(f"{args.index_from}{suffix}")
                if source.exists():
                    shutil.copyfile(source, f"{index}{suffix}")
        command = [sys.executable, str(FINDER), str(album / "collection"),
                   "--reference", str(album / "reference"), "--review", "--no-browser",
                   "--index", str(index), "--jobs", str(args.jobs), "--model", args.model,
                   "--no-progress"]
        if args.threshold is not None:
            command += ["--threshold", str(args.threshold)]
        started = time.perf_counter()
        server = Server(command)
        try:
            start_s = time.perf_counter() - started
            summary = server.get("/api/summary")
            earlier = summary["decisions"]
            before_matches = all_matches(server)
            loop_started = time.perf_counter()
            log = play_user(server, truth, args.answers)
            loop_s = time.perf_counter() - loop_started
            refresh_started = time.perf_counter()
            server.post("/api/refresh")
            refresh_s = time.perf_counter() - refresh_started
            after_matches = all_matches(server)
            before_pairs, after_pairs = pairs_of(before_matches), pairs_of(after_matches)
            expected = {(p, person) for p, (people, _) in truth.items() for person in people}
            misses = sorted(expected - after_pairs)
            false = sorted(after_pairs - expected)
            why = {pair: diagnose(server, album, *pair) for pair in misses}
        finally:
            status = server.stop()
        plain = plain_search(album, index, args.jobs, args.model, args.threshold, tmp)
    page = {(m["path"], m["person"], m["distance"]) for m in after_matches}

    before, after = figures(truth, before_pairs), figures(truth, after_pairs)
    yes = sum(1 for a in log if a["verdict"] == "yes")
    ms = [a["ms"] for a in log]
    cuts = list((summary.get("thresholds") or {}).values())
    shown = (f"each person's own ({min(cuts):.2f}-{max(cuts):.2f}; decision rule)"
             if args.threshold is None and cuts else f"{summary['threshold']}")
    print(f"album: {album}  ({len(truth)} files)  model: {summary['model']}  "
          f"threshold: {shown}  jobs: {args.jobs}")
    print(f"review page ready in {start_s:.1f} s"
          + (f" (from a copy of {args.index_from})" if args.index_from else " (fresh index)")
          + (f"; WARNING: the index held {earlier} decisions already" if earlier else ""))
    print_table(before, after)
    print(f"answers used: {len(log)} of {args.answers} ({yes} yes, {len(log) - yes} no)"
          + ("; no suggestions left" if len(log) < args.answers else ""))
    if log:
        print(f"time per answer (POST /api/decisions): p50 {percentile(ms, 0.5):.0f} ms, "
              f"p95 {percentile(ms, 0.95):.0f} ms, mean {statistics.fmean(ms):.0f} ms; "
              f"whole loop {loop_s:.1f} s (with suggestion requests)")
    print(f"re-search (POST /api/refresh): {refresh_s:.1f} s")
    print(f"matches before and after: "
          f"{'identical' if before_pairs == after_pairs else 'changed'} "
          f"(+{len(after_pairs - before_pairs)} pairs, -{len(before_pairs - after_pairs)})")
    print(f"misses left ({len(misses)}):")
    for path, person in misses:
        print(f"  {path}  {person}  [{truth[path][1]}]  {why[(path, person)]}")
    print(f"false matches left ({len(false)}):")
    for path, person in false:
        print(f"  {path}  {person}  [{truth.get(path, (set(), '?'))[1]}]  truth: "
              f"{';'.join(sorted(truth.get(path, (set(), ''))[0])) or '-'}")
    same = plain == page
    print(f"server stopped with Ctrl-C (exit status {status})")
    print(f"a plain search with the same index gives the page's matches: "
          f"{'identical' if same else 'DIFFERENT'}"
          + ("" if same else f" (page only {sorted(page - plain)[:5]}, "
                             f"search only {sorted(plain - page)[:5]})"))
    if args.out:
        args.out.write_text(json.dumps({
            "album": str(album), "files": len(truth), "model": summary["model"],
            "threshold": summary["threshold"], "jobs": args.jobs,
            "answers_asked": args.answers, "answers_used": len(log), "yes": yes,
            "no": len(log) - yes, "before": before, "after": after,
            "answer_ms": {"p50": percentile(ms, 0.5), "p95": percentile(ms, 0.95)},
            "loop_s": loop_s, "refresh_s": refresh_s, "start_s": start_s,
            "plain_search_identical": same, "server_exit_status": status,
            "misses": [{"path": p, "person": n, "kind": truth[p][1], "why": why[(p, n)]}
                       for p, n in misses],
            "false": [{"path": p, "person": n} for p, n in false],
            "answers": log, "date": time.strftime("%Y-%m-%d"),
        }, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
