"""The review page's JSON API over HTTP: a real uvicorn server started by ``serve``.

Every test gets its own Review over its own copy of one face index, built once per
session from an album of real faces (two people with reference photos, three unknown
ones), so a test that says yes, no or names a group cannot change what another sees,
and no test decodes a photo again. Requests go through urllib (http.client where a
test must send a path or header urllib would not send as it is).

The round trips check what a user relies on: an answer changes what is found, at once
and in every later search over the same index. The security tests each check one of
the guards a local server needs (Host, token, Origin, paths, upload size and content,
loopback only, the CSP).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from testdata import celebrity_dataset

from facefinder import Finder
from facefinder.review import Review
from facefinder.web import server
from facefinder.web.server import CSP, bind_loopback, serve

# A file name that is markup: the page must show it as text (never run it). Windows
# forbids < > " in names: there, entities that must not be decoded.
HOSTILE_NAME = ('<img src=x onerror=alert(1)> & "quoted".jpg' if os.name != "nt"
                else "&lt;img src=x onerror=alert(1)&gt; &amp; 'quoted'.jpg")
KNOWN = {"ben_afflek": "Ben", "elton_john": "Elton"}  # reference folders (4 photos each)
UNKNOWN = ("madonna", "mindy_kaling", "jerry_seinfeld")  # only in the collection


# --------------------------------------------------------------------------- the album


@dataclass
class Album:
    """Photos, references and a face index holding all their faces (the template)."""

    root: Path
    photos: Path
    reference: Path
    index: Path  # the template: tests use copies of it
    models: Path
    truth: dict[str, str]  # collection path -> celebrity folder name

    def who(self, rel: str) -> str:
        return self.truth[rel]


_ALBUM: list[Album] = []


def build_album(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Album:
    """The session's album and its face index (searched once: about 3 s on 2 cores).

    Cached at module level so that the page tests, which import this, share it."""
    if _ALBUM:
        return _ALBUM[0]
    celebrities = celebrity_dataset()
    root = tmp_path_factory.mktemp("review_album")
    truth: dict[str, str] = {}
    for folder, name in KNOWN.items():
        target = root / "reference" / name
        target.mkdir(parents=True)
        for photo in sorted((celebrities / "train" / folder).glob("*.jpg"))[:4]:
            shutil.copy(photo, target / photo.name)
    photos = root / "photos"
    for folder in (*KNOWN, *UNKNOWN):
        place = photos / ("Família 2019" if folder in KNOWN else "party")
        place.mkdir(parents=True, exist_ok=True)
        chosen = sorted((celebrities / "val" / folder).glob("*.jpg"))
        if folder == "madonna":  # the largest unknown group
            chosen += sorted((celebrities / "train" / folder).glob("*.jpg"))[:3]
        for n, photo in enumerate(chosen):
            rel = f"{place.name}/{folder[:3]}_{n}.jpg"
            shutil.copy(photo, photos / rel)
            truth[rel] = folder
    hostile = sorted((celebrities / "train" / "madonna").glob("*.jpg"))[3]
    shutil.copy(hostile, photos / "party" / HOSTILE_NAME)
    truth[f"party/{HOSTILE_NAME}"] = "madonna"
    index = root / "template" / "index.sqlite"
    index.parent.mkdir()
    with Finder(root / "reference", models=models_dir, index=index, jobs=2) as finder:
        result = finder.find(photos)
    assert result.complete and len(result.files) == len(truth)
    _ALBUM.append(Album(root, photos, root / "reference", index, models_dir, truth))
    return _ALBUM[0]


def copy_index(album: Album, folder: Path) -> Path:
    """A private copy of the album's face index (with any WAL beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in album.index.parent.glob(album.index.name + "*"):
        shutil.copy(part, folder / part.name)
    return folder / album.index.name


# One cutoff for everyone: these tests are about the page's mechanics, and the album was
# built so that some faces sit just over the model's default threshold (maybes).
THRESHOLD = 0.32


@contextlib.contextmanager
def open_review(album: Album, index: Path) -> Iterator[Review]:
    """A Review of the album over ``index``; its finder is closed afterwards."""
    with Finder(album.reference, models=album.models, index=index, jobs=1) as finder:
        yield Review(finder, album.photos, threshold=THRESHOLD)


def fresh_find(album: Album, index: Path):
    """What a new search over the same index reports (a new Finder, nothing shared)."""
    with Finder(album.reference, models=album.models, index=index, jobs=1) as finder:
        return finder.find(album.photos, threshold=THRESHOLD)


# --------------------------------------------------------------------------- the server


@dataclass
class Served:
    """A running review server: the address ``serve`` printed, and how to reach it."""

    printed: str  # http://127.0.0.1:PORT/s/TOKEN/ (the page's own address)
    token: str
    base: str  # http://127.0.0.1:PORT
    port: int
    uvicorn: object  # the uvicorn.Server (to check its socket)

    def call(self, method: str, path: str, body: bytes | dict | None = None,
             headers: dict[str, str] | None = None, token: bool = True
             ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request through urllib; errors are answers."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        sent = {"X-Finder-Token": self.token} if token else {}
        if isinstance(body, dict):
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers=sent)
        try:
            with _NO_REDIRECT.open(request, timeout=60) as response:
                return response.status, _lower(response.headers.items()), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _lower(error.headers.items()), error.read()

    def json(self, method: str, path: str, body: bytes | dict | None = None) -> dict:
        """The JSON answer of a request that must succeed."""
        status, _headers, data = self.call(method, path, body)
        assert status == 200, (method, path, status, data[:300])
        return json.loads(data)

    def raw(self, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """A request sent exactly as written (path and Host untouched), via http.client."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.putrequest(method, path, skip_host="Host" in (headers or {}),
                                  skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, _lower(response.getheaders()), response.read()
        finally:
            connection.close()


def _lower(headers) -> dict[str, str]:
    """Header names are case-insensitive: compared in lower case here."""
    return {name.lower(): value for name, value in headers}


class _Keep(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a 303 is an answer to look at here
        return None


_NO_REDIRECT = urllib.request.build_opener(_Keep())


@contextlib.contextmanager
def served(review: Review) -> Iterator[Served]:
    """``serve(review)`` in a thread, as ``finder.py --review`` runs it; stopped after.

    The uvicorn.Server it makes is recorded (to stop it and look at its socket)."""
    import uvicorn

    made: list = []
    lines: list[str] = []

    class Recorded(uvicorn.Server):
        def __init__(self, config) -> None:
            super().__init__(config)
            made.append(self)

    with mock.patch.object(uvicorn, "Server", Recorded):
        thread = threading.Thread(target=serve, args=(review,), daemon=True,
                                  kwargs={"open_browser": False, "say": lines.append})
        thread.start()
        deadline = time.monotonic() + 20
        while not (made and made[0].started):
            assert thread.is_alive() and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.01)
    try:
        found = re.search(r"(http://127\.0\.0\.1:(\d+))/s/([\w-]+)/", lines[0])
        assert found, lines
        yield Served(found.group(0), found.group(3), found.group(1), int(found.group(2)),
                     made[0])
    finally:
        made[0].should_exit = True
        thread.join(timeout=10)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def album(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Album:
    """Searched once per session: every later Review answers from the index."""
    return build_album(tmp_path_factory, models_dir)


@pytest.fixture
def index(album: Album, tmp_path: Path) -> Path:
    """This test's own index: its answers cannot reach another test."""
    return copy_index(album, tmp_path / "index")


@pytest.fixture
def review(album: Album, index: Path) -> Iterator[Review]:
    """A Review as ``finder.py --review`` makes it (tens of ms: nothing is decoded)."""
    with open_review(album, index) as opened:
        yield opened


@pytest.fixture
def api(review: Review) -> Iterator[Served]:
    """The review served over HTTP by ``serve`` itself, not a test double of it."""
    with served(review) as running:
        yield running


def people_of(api: Served) -> dict[str, dict]:
    """{name: counts} from the People page's request."""
    return {p["name"]: p for p in api.json("GET", "/api/people")["people"]}


def cluster_of(api: Served, album: Album, celebrity: str) -> dict:
    """The group holding most faces of ``celebrity`` (an unknown one)."""
    clusters = api.json("GET", "/api/clusters?faces=1000")["clusters"]

    def share(cluster: dict) -> int:
        return sum(album.who(api.json("GET", f"/api/photos/{f.split('-')[0]}")["path"])
                   == celebrity for f in cluster["faces"])

    best = max(clusters, key=share)
    assert share(best) >= 2, clusters
    return best


# --------------------------------------------------------------------------- round trips


def test_people_matches_and_suggestions(api: Served, album: Album) -> None:
    """What the People and Maybe pages show: everyone with counts, their photos best
    first with the face's box in the photo's size, and the faces worth asking about."""
    summary = api.json("GET", "/api/summary")
    assert summary["files"] == len(album.truth) and summary["decisions"] == 0
    people = people_of(api)
    assert set(people) == {"Ben", "Elton"}
    assert all(p["references"] >= 2 and p["confirmed"] == 0 for p in people.values())
    for name, folder in (("Ben", "ben_afflek"), ("Elton", "elton_john")):
        found = api.json("GET", f"/api/matches?person={name.lower()}")
        assert found["total"] == people[name]["photos"] == len(found["matches"]) >= 3
        assert [album.who(m["path"]) for m in found["matches"]] == [folder] * found["total"]
        distances = [m["distance"] for m in found["matches"]]
        assert distances == sorted(distances) and max(distances) < summary["threshold"]
        for m in found["matches"]:
            x, y, w, h = m["box"]
            assert m["size"] and min(x, y) >= 0
            assert x + w <= m["size"][0] + 1 and y + h <= m["size"][1] + 1
            assert m["face"].startswith(m["file"] + "-") and m["person"] == name
    maybe = api.json("GET", "/api/suggestions?person=Ben&kind=maybe")["suggestions"]
    assert maybe and len(maybe) == people["Ben"]["maybe"]
    assert all(summary["threshold"] <= m["distance"] < summary["maybe_below"] for m in maybe)
    both = api.json("GET", "/api/suggestions?person=Ben&kind=both")["suggestions"]
    check = api.json("GET", "/api/suggestions?person=Ben&kind=check")["suggestions"]
    assert {m["face"] for m in both} == {m["face"] for m in maybe + check}
    gaps = [abs(m["distance"] - summary["threshold"]) for m in both]
    assert gaps == sorted(gaps)  # the answers that teach the most first
    status, _h, body = api.call("GET", "/api/suggestions?person=Ben&kind=everything")
    assert status == 400 and "kind must be one of" in json.loads(body)["error"]
    status, _h, body = api.call("GET", "/api/matches?person=Nobody")
    assert status == 400 and json.loads(body)["error"] == "no such person: 'Nobody'"


def test_a_no_removes_the_match_for_good(api: Served, album: Album, review: Review,
                                         index: Path) -> None:
    """No: gone at once, after a refresh, and from a new search over the same index."""
    worst = api.json("GET", "/api/matches?person=Elton")["matches"][-1]
    answer = api.json("POST", "/api/decisions",
                      {"face": worst["face"], "person": "Elton", "verdict": "no"})
    assert answer["ok"] and answer["decided"] == 1
    left = api.json("GET", "/api/matches?person=Elton")["matches"]
    assert worst["file"] not in {m["file"] for m in left}
    photo = api.json("GET", f"/api/photos/{worst['file']}")
    assert photo["faces"][0]["rejected"] == ["Elton"] and photo["faces"][0]["person"] != "Elton"
    refreshed = api.json("POST", "/api/refresh")
    assert refreshed["decisions"] == 1
    assert worst["file"] not in {m["file"] for m in
                                 api.json("GET", "/api/matches?person=Elton")["matches"]}
    again = fresh_find(album, index)
    assert worst["path"] not in {m.rel for m in again.matches if m.person == "Elton"}
    assert {m.rel for m in again.matches if m.person == "Elton"} == {m["path"] for m in left}


def test_a_yes_on_a_maybe_adds_the_photo(api: Served, album: Album, index: Path) -> None:
    """Yes on a maybe: the photo is found (confirmed), the maybe is gone, the person
    has one confirmed face more, and a new search finds it too."""
    before = people_of(api)["Ben"]
    maybe = api.json("GET", "/api/suggestions?person=Ben&kind=maybe")["suggestions"][0]
    api.json("POST", "/api/decisions", {"decisions": [
        {"face": maybe["face"], "person": "ben", "verdict": "yes"}]})
    found = {m["file"]: m for m in api.json("GET", "/api/matches?person=Ben")["matches"]}
    assert found[maybe["file"]]["confirmed"] and found[maybe["file"]]["distance"] == 0
    after = people_of(api)["Ben"]
    assert after["photos"] == before["photos"] + 1 and after["confirmed"] == 1
    assert maybe["face"] not in {m["face"] for m in api.json(
        "GET", "/api/suggestions?person=Ben&kind=both")["suggestions"]}
    again = fresh_find(album, index)
    assert any(m.rel == maybe["path"] and m.person == "Ben" and m.confirmed
               for m in again.matches)


def test_naming_a_group_makes_a_person(api: Served, album: Album, index: Path) -> None:
    """Name a group: a new person with those photos, here and in any new search."""
    group = cluster_of(api, album, "madonna")
    api.json("POST", f"/api/clusters/{group['id']}/name", {"name": "  Madonna  "})
    people = people_of(api)
    assert people["Madonna"]["confirmed"] == group["size"]
    assert people["Madonna"]["photos"] >= group["photos"]
    named = {m["file"] for m in api.json("GET", "/api/matches?person=Madonna")["matches"]}
    assert {f.split("-")[0] for f in group["faces"]} <= named
    assert group["id"] not in {c["id"] for c in api.json("GET", "/api/clusters")["clusters"]}
    again = fresh_find(album, index)
    assert "Madonna" in again.people
    found = {m.rel for m in again.matches if m.person == "Madonna"}
    assert len(found) >= group["photos"]
    assert all(album.who(rel) == "madonna" for rel in found)
    status, _h, body = api.call("POST", f"/api/clusters/{group['id']}/name", {"name": "x"})
    assert status == 400 and "no such cluster" in json.loads(body)["error"]
    other = api.json("GET", "/api/clusters")["clusters"][0]
    status, _h, body = api.call("POST", f"/api/clusters/{other['id']}/name", {"name": "a/b"})
    assert status == 400 and "cannot contain" in json.loads(body)["error"]


def test_merge_and_hide_groups_are_kept(api: Served, album: Album, index: Path) -> None:
    """Merge two groups, hide one: both stay so when the index is opened again."""
    clusters = api.json("GET", "/api/clusters")["clusters"]
    assert len(clusters) >= 2, clusters
    first, second = clusters[0], clusters[1]
    api.json("POST", f"/api/clusters/{first['id']}/merge", {"other": second["id"]})
    merged = {c["id"]: c for c in api.json("GET", "/api/clusters?faces=1000")["clusters"]}
    assert second["id"] not in merged
    assert merged[first["id"]]["size"] == first["size"] + second["size"]
    status, _h, _b = api.call("POST", f"/api/clusters/{first['id']}/merge", {"other": "1"})
    assert status == 400
    api.json("POST", f"/api/clusters/{first['id']}/hide", {"hidden": True})
    assert first["id"] not in {c["id"] for c in api.json("GET", "/api/clusters")["clusters"]}
    hidden = {c["id"]: c for c in api.json("GET", "/api/clusters?hidden=1")["clusters"]}
    assert hidden[first["id"]]["hidden"]
    with open_review(album, index) as reopened:
        kept = {c.id: c for c in reopened.clusters(hidden=True)}
        assert kept[first["id"]].hidden and kept[first["id"]].size == merged[first["id"]]["size"]
        assert first["id"] not in {c.id for c in reopened.clusters()}


def test_a_review_of_one_folder_leaves_other_folders_groups_alone(
        album: Album, index: Path, tmp_path: Path) -> None:
    """Two folders in one index, each reviewed on its own: a group hidden in one stays
    hidden with its faces, and the other folder's new groups never take its id (a hidden
    flag or a name is per group id, so a shared id would leak between folders)."""
    from PIL import Image, ImageOps

    from facefinder.api import open_index
    from facefinder.records import parse_face_id

    party = album.photos / "party"
    elsewhere = tmp_path / "elsewhere"  # other faces: mirrored copies are other files
    elsewhere.mkdir()
    for rel, who in album.truth.items():
        if who in ("mindy_kaling", "jerry_seinfeld"):
            with Image.open(album.photos / rel) as photo:
                ImageOps.mirror(photo.convert("RGB")).save(elsewhere / Path(rel).name)
    with Finder(album.reference, models=album.models, index=index, jobs=1) as finder:
        first = Review(finder, party, threshold=THRESHOLD)
        hidden = first.clusters()[0]
        first.hide_cluster(hidden.id)
        with open_index(index) as opened:
            settings = first._settings["image"] or 0
            party_labels = opened.cluster_labels(settings)
        assert party_labels and hidden.id in set(party_labels.values())

        other = Review(finder, elsewhere, threshold=THRESHOLD)
        theirs = other.clusters(hidden=True)
        assert theirs, "the mirrored faces form groups of their own"
        assert not {c.id for c in theirs} & set(party_labels.values())
        assert not any(c.hidden for c in theirs)
        with open_index(index) as opened:
            stored = opened.cluster_labels(settings)
            assert {k: v for k, v in stored.items() if k in party_labels} == party_labels
            assert hidden.id in opened.hidden_clusters(settings)

        # a merge there writes its moved faces, and nothing of the other folder
        other_groups = other.clusters(hidden=True, min_size=1)
        assert len(other_groups) >= 2
        into, moved = other_groups[0], other_groups[1]
        other.merge_clusters(into.id, moved.id)
        with open_index(index) as opened:
            stored = opened.cluster_labels(settings)
        assert {k: v for k, v in stored.items() if k in party_labels} == party_labels
        assert {stored[parse_face_id(f)] for f in moved.faces} == {into.id}

        again = Review(finder, party, threshold=THRESHOLD)
        kept = {c.id: c for c in again.clusters(hidden=True)}
        assert kept[hidden.id].hidden and sorted(kept[hidden.id].faces) == sorted(hidden.faces)


def test_two_reviews_open_at_once_never_give_two_groups_one_id(
        album: Album, index: Path, tmp_path: Path) -> None:
    """Two folders of one index reviewed at the same time (two windows): the first page
    numbered its groups when it opened, the second stored groups after that, and then an
    answer on the first makes a new group: it takes an id no group of the other folder
    has (a hidden flag is per id, so a shared id would hide or show the other's group)."""
    from PIL import Image, ImageOps

    from facefinder.api import open_index
    from facefinder.records import parse_face_id

    elsewhere = tmp_path / "elsewhere"  # other faces: mirrored copies are other files
    elsewhere.mkdir()
    for rel, who in album.truth.items():
        if who in ("mindy_kaling", "jerry_seinfeld", "madonna") and "<" not in rel:
            with Image.open(album.photos / rel) as photo:
                ImageOps.mirror(photo.convert("RGB")).save(elsewhere / Path(rel).name)
    with Finder(album.reference, models=album.models, index=index, jobs=1) as finder:
        first = Review(finder, album.photos, threshold=THRESHOLD)
        other = Review(finder, elsewhere, threshold=THRESHOLD)  # opened after the first
        settings = first._settings["image"] or 0
        theirs = {c.id for c in other.clusters(hidden=True, min_size=1)}
        assert theirs, "the mirrored faces form groups of their own"
        mine = {c.id for c in first.clusters(hidden=True, min_size=1)}
        assert not mine & theirs
        wrong = next(m for m in first.result.matches if m.person == "Ben")
        first.decide(wrong.face, "Ben", "no")  # a face of nobody now: a new group
        group = next(c for c in first.clusters(hidden=True, min_size=1)
                     if wrong.face in c.faces)
        assert group.id not in mine  # new
        assert group.id not in theirs
        with open_index(index) as opened:
            stored = opened.cluster_labels(settings)
        assert stored[parse_face_id(wrong.face)] == group.id
        other_keys = {parse_face_id(f) for c in other.clusters(hidden=True, min_size=1)
                      for f in c.faces}
        assert group.id not in {stored[k] for k in other_keys}
        first.hide_cluster(group.id)
        assert not any(c.hidden for c in Review(finder, elsewhere, threshold=THRESHOLD)
                       .clusters(hidden=True, min_size=1))


def test_an_answer_the_index_cannot_keep_is_one_line_and_changes_nothing(
        api: Served, index: Path, monkeypatch) -> None:
    """Another run holds the index (or the disk is full): the answer is refused with one
    line the page shows, not a bare 500, and the page still shows what the index holds."""
    from facefinder import index as index_module

    monkeypatch.setattr(index_module, "BUSY_TIMEOUT_S", 0.2)
    before = api.json("GET", "/api/matches?person=Elton")["matches"]
    holder = sqlite3.connect(index, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another finder writing, for longer than the wait
    try:
        status, _headers, body = api.call("POST", "/api/decisions", {
            "face": before[-1]["face"], "person": "Elton", "verdict": "no"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    error = json.loads(body)["error"]
    assert status == 503 and "\n" not in error and "cannot keep answers now" in error
    assert api.json("GET", "/api/matches?person=Elton")["matches"] == before
    assert api.json("GET", "/api/summary")["decisions"] == 0
    answer = api.json("POST", "/api/decisions",  # once the other run is done: kept
                      {"face": before[-1]["face"], "person": "Elton", "verdict": "no"})
    assert answer["ok"] and len(api.json("GET", "/api/matches?person=Elton")["matches"]) == (
        len(before) - 1)


def test_a_review_over_an_index_it_cannot_write_is_one_line(
        album: Album, index: Path, monkeypatch, capsys) -> None:
    """``--review`` keeps answers in the index: one it cannot write (held by another
    run, a read-only stick) ends the start-up with one line and exit status 2."""
    from facefinder import index as index_module
    from facefinder.cli import EXIT_USAGE, main

    monkeypatch.setattr(index_module, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(index, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        code = main([str(album.photos), "--reference", str(album.reference), "--models",
                     str(album.models), "--index", str(index), "--review", "--no-browser",
                     "--no-progress", "--jobs", "1"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE
    assert "cannot keep answers now" in err[-1] and "Traceback" not in "\n".join(err)


def test_decisions_survive_reopening_the_index(api: Served, album: Album,
                                               index: Path) -> None:
    """Every answer is in the index: a new Review over it shows them all."""
    ben = api.json("GET", "/api/matches?person=Ben")["matches"]
    group = cluster_of(api, album, "mindy_kaling")
    api.json("POST", "/api/decisions", {"decisions": [
        {"face": ben[0]["face"], "person": "Ben", "verdict": "yes"},
        {"face": ben[-1]["face"], "person": "Ben", "verdict": "no"}]})
    api.json("POST", f"/api/clusters/{group['id']}/name", {"name": "Mindy"})
    with open_review(album, index) as reopened:
        assert {p["name"]: p["confirmed"] for p in reopened.people()} == {
            "Ben": 1, "Elton": 0, "Mindy": group["size"]}
        first = reopened.photo(ben[0]["file"])["faces"][0]
        assert first["decided"] == "Ben" and first["confirmed"]
        assert reopened.photo(ben[-1]["file"])["faces"][0]["rejected"] == ["Ben"]
        assert len(reopened.verdicts) == 2 + group["size"]
    undo = api.json("POST", "/api/decisions",
                    {"face": ben[0]["face"], "person": "Ben", "verdict": "undo"})
    assert undo["ok"]
    with open_review(album, index) as reopened:
        assert reopened.photo(ben[0]["file"])["faces"][0]["decided"] is None


def test_photo_and_images(api: Served, album: Album) -> None:
    """A photo with each face's person or group; its preview and face crops as JPEG."""
    ben = api.json("GET", "/api/matches?person=Ben")["matches"][0]
    photo = api.json("GET", f"/api/photos/{ben['file']}")
    assert photo["path"] == ben["path"] and photo["kind"] == "image" and photo["size"]
    assert [f["person"] for f in photo["faces"]] == ["Ben"]
    group = api.json("GET", "/api/clusters")["clusters"][0]
    stranger = api.json("GET", f"/api/photos/{group['faces'][0].split('-')[0]}")
    assert stranger["faces"][0]["cluster"] == group["id"]
    assert stranger["faces"][0]["person"] is None
    status, headers, jpeg = api.call("GET", f"/api/files/{ben['file']}/image?side=300")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert jpeg[:2] == b"\xff\xd8"
    status, headers, crop = api.call("GET", f"/api/faces/{ben['face']}/image")
    assert status == 200 and crop[:2] == b"\xff\xd8" and len(crop) < len(jpeg) * 2
    status, _h, body = api.call("GET", "/api/photos/" + "0" * 32)
    assert status == 400 and "no such file" in json.loads(body)["error"]


def test_search_by_photo(api: Served, album: Album) -> None:
    """An uploaded photo: its face, the nearest people, the nearest faces."""
    celebrities = celebrity_dataset()
    elton = sorted((celebrities / "train" / "elton_john").glob("*.jpg"))[-1]  # not a reference
    faces = api.json("POST", "/api/search", elton.read_bytes())["faces"]
    assert len(faces) == 1
    nearest = faces[0]["people"][0]
    assert nearest["name"] == "Elton" and nearest["match"] == (nearest["distance"] < 0.32)
    near = faces[0]["faces"]
    assert len(near) == 5 and album.who(near[0]["path"]) == "elton_john"
    assert [n["distance"] for n in near] == sorted(n["distance"] for n in near)
    inside = next(rel for rel, who in album.truth.items() if who == "mindy_kaling")
    faces = api.json("POST", "/api/search?k=2", (album.photos / inside).read_bytes())["faces"]
    assert faces[0]["faces"][0]["path"] == inside and faces[0]["faces"][0]["distance"] < 0.01
    assert len(faces[0]["faces"]) == 2 and not faces[0]["people"][0]["match"]


# --------------------------------------------------------------------------- security


def test_a_foreign_host_is_refused(api: Served) -> None:
    """DNS rebinding: a page of another site whose name now points at 127.0.0.1 sends its
    own Host; refused even with the token, before any route runs."""
    for host in ("evil.example", f"evil.example:{api.port}", f"127.0.0.1:{api.port + 1}",
                 f"0.0.0.0:{api.port}", ""):
        status, _headers, body = api.raw("GET", "/api/people",
                                         {"Host": host, "X-Finder-Token": api.token})
        assert status == 421, (host, status)
        assert "loopback" in json.loads(body)["error"]
    status, _h, _b = api.raw("GET", "/api/people",
                             {"Host": f"localhost:{api.port}", "X-Finder-Token": api.token})
    assert status == 200


def test_the_token_is_needed(api: Served) -> None:
    """No token, a wrong one (header or address): 401. The page lives under the printed
    address and asks for everything relative to it; no cookie is set or accepted (a
    browser would send a cookie of 127.0.0.1 to every server on 127.0.0.1, whatever its
    port: any other local program the browser visits would be given the token)."""
    for path in ("/", "/api/people", "/static/app.js", "/api/faces/x/image"):
        status, _h, body = api.call("GET", path, token=False)
        assert status == 401, path
        text = body.decode() if path == "/" else json.loads(body)["error"]  # "/": a page
        assert "open the address the finder printed" in text, path
    wrong = api.token[:-1] + ("a" if api.token[-1] != "a" else "b")
    for headers in ({"X-Finder-Token": wrong}, {"X-Finder-Token": ""},
                    {"Cookie": f"finder_token={api.token}"}):
        assert api.call("GET", "/api/people", headers=headers, token=False)[0] == 401
    for path in (f"/s/{wrong}/", f"/s/{wrong}/api/people", f"/?token={api.token}",
                 f"/s//{api.token}/api/people", f"/s/{api.token[:-1]}/api/people"):
        assert api.call("GET", path, token=False)[0] == 401, path
    assert api.call("POST", "/api/refresh", token=False)[0] == 401
    own = f"/s/{api.token}/"
    assert api.printed == api.base + own
    status, headers, page = api.call("GET", own, token=False)
    assert status == 200 and "set-cookie" not in headers
    assert b'src="static/app.js"' in page and b'href="static/style.css"' in page
    assert b'"/api' not in api.call("GET", own + "static/app.js", token=False)[2]
    assert api.call("GET", own + "static/style.css", token=False)[0] == 200
    assert api.call("GET", own + "api/people", token=False)[0] == 200
    status, headers, _b = api.call("GET", own[:-1], token=False)  # without its last slash
    assert status == 308 and headers["location"] == own
    status, headers, _b = api.call("GET", own + "api/people/", token=False)  # one too many:
    assert status == 404 and "location" not in headers  # no redirect out of the address


def test_another_sites_origin_is_refused(api: Served) -> None:
    """A form or fetch from another site (even with the cookie sent along): 403, and
    nothing is decided."""
    face = api.json("GET", "/api/matches?person=Ben")["matches"][0]["face"]
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{api.port + 1}",
                   f"https://127.0.0.1:{api.port}"):
        status, _h, body = api.call(
            "POST", "/api/decisions", {"face": face, "person": "Ben", "verdict": "no"},
            headers={"Origin": origin})
        assert status == 403, origin
        assert json.loads(body)["error"] == "requests from other sites are refused"
    assert api.json("GET", "/api/summary")["decisions"] == 0
    status, _h, _b = api.call("POST", "/api/decisions",
                              {"face": face, "person": "Ben", "verdict": "no"},
                              headers={"Origin": api.base})
    assert status == 200


def test_a_path_in_a_request_never_reads_a_file(api: Served, album: Album) -> None:
    """Files and faces are ids: paths (raw or encoded) get 404 or 400, and no image
    reader is ever called for them."""
    face = api.json("GET", "/api/matches?person=Ben")["matches"][0]["face"]
    outside = album.reference / "Ben"
    probes = [
        "/api/files/..%2F..%2Fetc%2Fpasswd/image",
        "/api/files/../../etc/passwd/image",
        "/api/files/%2Fetc%2Fpasswd/image",
        f"/api/files/{'..%2F' * 3}reference%2FBen%2F{next(outside.iterdir()).name}/image",
        "/static/../review.py",
        "/static/..%2Freview.py",
        "/static/%2e%2e",
        "/static/index.html",
        "/static/server.py",
        "/api/faces/..%2F..%2Fetc%2Fpasswd/image",
        f"/api/faces/{face}%2F..%2F..%2Fetc%2Fpasswd/image",
        f"/api/faces/{face[:-1]}99/image",
        "/api/faces/" + "a" * 32 + "-0/image",
        "/api/photos/..%2F..%2Fetc%2Fpasswd",
        "/api/photos/C:%5CWindows%5Cwin.ini",
        "/etc/passwd",
    ]
    with mock.patch("facefinder.thumbs.photo") as photo, \
            mock.patch("facefinder.thumbs.video_frame") as frame, \
            mock.patch("facefinder.decode.load_image") as load:
        for path in probes:
            status, headers, body = api.raw("GET", path, {"Host": f"127.0.0.1:{api.port}",
                                                          "X-Finder-Token": api.token})
            assert status in (400, 404), (path, status)
            assert b"root:" not in body and b"import" not in body, path
            assert headers["content-security-policy"] == CSP
        assert not photo.called and not frame.called and not load.called


def test_an_oversized_upload_is_refused(api: Served, monkeypatch) -> None:
    """Past the limit: 413, whether the size is declared or the body just keeps coming."""
    monkeypatch.setattr(server, "MAX_UPLOAD", 16 * 1024)
    big = b"\xff\xd8" + b"\0" * 40 * 1024
    status, _h, body = api.call("POST", "/api/search", big)
    assert status == 413 and "upload too large" in json.loads(body)["error"]
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
    try:  # chunked: no Content-Length to refuse it by, so it is counted as it comes
        connection.request("POST", "/api/search", body=iter([big[:8192]] * 5),
                           headers={"X-Finder-Token": api.token}, encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413 and b"upload too large" in response.read()
    finally:
        connection.close()
    assert api.call("POST", "/api/search", b"x" * (16 * 1024 + 1),
                    headers={"Content-Type": "image/jpeg"})[0] == 413


def test_a_hostile_upload_is_a_one_line_400(api: Served, album: Album) -> None:
    """Garbage, a truncated JPEG, a PNG claiming 2 billion pixels, nothing: each one
    line of error with status 400, and the server keeps answering."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000,
                                                              8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100000)) + chunk(b"IEND", b""))
    truncated = (album.photos / next(iter(album.truth))).read_bytes()[:1500]
    for upload in (b"not a photo at all" * 100, b"\xff\xd8\xff\xe0" + b"\0" * 3000,
                   truncated, bomb, b"GIF89a" + b"\xff" * 50, b"\0"):
        status, _h, body = api.call("POST", "/api/search", upload)
        assert status == 400, (upload[:20], status, body[:200])
        error = json.loads(body)["error"]
        assert error.startswith("cannot read the uploaded photo") and "\n" not in error
        assert len(error) < 300
    status, _h, body = api.call("POST", "/api/search", b"")
    assert status == 400 and "\n" not in json.loads(body)["error"]
    assert api.json("GET", "/api/summary")["files"] > 0


def test_a_hostile_json_body_is_a_one_line_400(api: Served) -> None:
    """Bodies that are not what a route expects: nested past Python's recursion limit,
    not UTF-8, the wrong shape, the wrong types - one line of 400, never a 500."""
    for body in (b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe{", b"[]", b'"x"', b"[1, 2]",
                 b'{"face": [], "person": {}, "verdict": "yes"}',
                 b'{"face": "x", "person": "Ben", "verdict": "maybe"}'):
        status, _h, data = api.call("POST", "/api/decisions", body,
                                    headers={"Content-Type": "application/json"})
        assert status == 400, (body[:30], status, data[:200])
        assert "\n" not in json.loads(data)["error"]
    status, _h, data = api.call("POST", "/api/clusters/0/merge", b"{" * 50_000)
    assert status == 400 and json.loads(data)["error"] == "the request body is not JSON"
    assert api.json("GET", "/api/summary")["decisions"] == 0


def test_a_value_of_the_wrong_type_is_refused_not_turned_into_text(api: Served) -> None:
    """A null, a number or a list where a name or an answer is expected: 400, and no
    person "None" or "123" is made; "hidden": "false" does not hide a group, "other":
    true does not merge with group 1."""
    face = api.json("GET", "/api/matches?person=Ben")["matches"][0]["face"]
    for bad in ({"person": None}, {"person": 123}, {"person": ["Ben"]}, {"person": True},
                {"verdict": None}, {"face": 7}):
        status, _h, data = api.call("POST", "/api/decisions",
                                    {"face": face, "person": "Ben", "verdict": "yes", **bad})
        assert status == 400, bad
        assert json.loads(data)["error"].endswith("must be text"), bad
    group = api.json("GET", "/api/clusters")["clusters"][0]["id"]
    for action, body, error in (("name", {"name": None}, "name must be text"),
                                ("hide", {"hidden": "false"}, "hidden must be true or false"),
                                ("hide", {"hidden": 0}, "hidden must be true or false"),
                                ("merge", {"other": True}, "merge needs {other: cluster id}")):
        status, _h, data = api.call("POST", f"/api/clusters/{group}/{action}", body)
        assert status == 400 and json.loads(data)["error"] == error, (action, body)
    assert api.json("GET", "/api/summary")["decisions"] == 0
    names = {p["name"] for p in api.json("GET", "/api/people")["people"]}
    assert not names & {"None", "123", "True", "['Ben']"}
    assert not any(c["hidden"] for c in api.json("GET", "/api/clusters?hidden=1")["clusters"])


def test_a_photo_replaced_by_a_link_to_elsewhere_is_not_shown(album: Album,
                                                               tmp_path: Path) -> None:
    """The search leaves out links that lead out of the folder; a photo replaced by one
    after the search is not read through the page either (400, nothing decoded), while
    the other photos still are."""
    photos = tmp_path / "photos"
    shutil.copytree(album.photos, photos, symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    with Finder(album.reference, models=album.models, index=copy_index(album, tmp_path / "i"),
                jobs=1) as finder:
        review = Review(finder, photos, threshold=THRESHOLD)
        ben, other = sorted({m.rel: m for m in review.matches("Ben")}.values(),
                            key=lambda m: m.rel)[:2]
        shutil.copy(photos / ben.rel, outside / "secret.jpg")
        (photos / ben.rel).unlink()
        (photos / ben.rel).symlink_to(outside / "secret.jpg")
        file, kept = (review.face(m.face)[0].key.hex() for m in (ben, other))
        with served(review) as api:
            with mock.patch("facefinder.thumbs.photo") as photo:
                for path in (f"/api/files/{file}/image", f"/api/faces/{ben.face}/image"):
                    status, _h, data = api.call("GET", path)
                    assert status == 400, path
                    assert "is no longer a photo in the collection" in json.loads(data)["error"]
                assert not photo.called
            assert api.call("GET", f"/api/files/{kept}/image")[0] == 200
            shutil.rmtree(photos)  # the drive is unplugged: its mount point is left, empty
            photos.mkdir()
            status, _h, data = api.call("POST", "/api/refresh")
            assert status == 400 and "the photos folder is empty" in json.loads(data)["error"]


def test_the_server_listens_on_loopback_only(api: Served) -> None:
    """bind_loopback, as serve uses it: 127.0.0.1 only; this PC's other addresses (when it
    has one) are refused."""
    sock = bind_loopback(0)
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()
    listening = [s.getsockname() for srv in api.uvicorn.servers for s in srv.sockets]
    assert listening == [("127.0.0.1", api.port)]
    assert api.printed.startswith(f"http://127.0.0.1:{api.port}/s/")
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # the address this PC would use towards a network: no packet is sent
        probe.connect(("10.255.255.255", 1))
        own = probe.getsockname()[0]
    except OSError:
        own = None
    finally:
        probe.close()
    if own and not own.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((own, api.port), timeout=5).close()


def test_every_answer_carries_the_csp(api: Served) -> None:
    """The CSP (only this server's scripts and styles, no framing) on pages, assets,
    JSON, images and refusals alike."""
    ben = api.json("GET", "/api/matches?person=Ben")["matches"][0]
    for path, token in (("/", True), ("/static/app.js", True), ("/static/style.css", True),
                        ("/api/people", True), (f"/api/faces/{ben['face']}/image", True),
                        ("/api/people", False), ("/nowhere", True)):
        _status, headers, _body = api.call("GET", path, token=token)
        assert headers["content-security-policy"] == CSP, path
        assert "script-src 'self'" in CSP and "unsafe" not in CSP
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
