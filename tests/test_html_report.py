"""``--html``: the self-contained report, read back the way a browser would get it.

The page's data is one JSON block and its previews are text blocks of base64 JPEGs; the
tests parse both out of the written file (and the markup with html.parser) and check
what a user sees: a section per person, closest first, hostile names shown as text,
the maybes, the unreadable files, videos with their span and a frame, the partial name
after Ctrl-C, a bounded size for 50,000 matches, and a real run of ``finder.py``. The
last test opens a report in headless Chromium (tests/browser.py) and pages through it.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, copy_references
from PIL import Image, ImageDraw

from facefinder import thumbs
from facefinder.api import RunResult, Summary
from facefinder.deliver import deliver
from facefinder.html_report import (
    MARKER,
    PAGE,
    PreviewJob,
    preview_settings,
    write_html,
)
from facefinder.records import Face, FileResult, Match
from facefinder.report import check_writable
from facefinder.walk import printable

HOSTILE = "<script>alert('x')</script> & \"quotes\" \x1b[31m\nline.jpg"
OUR_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "p", "nav",
            "ul", "li", "a", "span", "noscript", "main", "script"}


# --------------------------------------------------------------------------- helpers


def photo(path: Path, size: tuple[int, int] = (640, 480), colour: tuple = (90, 140, 200),
          box: tuple[int, int, int, int] | None = (200, 120, 160, 200)) -> Path:
    """A JPEG with a light 'face' rectangle at ``box`` (x, y, w, h) on a plain colour."""
    image = Image.new("RGB", size, colour)
    if box:
        x, y, w, h = box
        ImageDraw.Draw(image).ellipse((x, y, x + w, y + h), fill=(235, 200, 170))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)
    return path


def result_for(photos: Path, matches: list[Match], **fields) -> RunResult:
    people = fields.pop("people", sorted({m.person for m in matches}))
    summary = fields.pop("summary", Summary(files_scanned=len(matches),
                                            images_read=len(matches)))
    return RunResult(photos, photos.parent / "reference", people, "Facenet", 0.32, matches,
                     summary, searched=True, complete=True, **fields)


class Report:
    """A written report taken apart: its markup, its data, its previews."""

    def __init__(self, path: Path) -> None:
        self.text = path.read_text(encoding="utf-8")
        found = re.search(r'<script type="application/json" id="ff-data">(.*?)</script>',
                          self.text, re.S)
        assert found, "no data block"
        self.data = json.loads(found.group(1))
        self.blocks = {int(n): body.split("\n") for n, body in re.findall(
            r'<script type="text/plain" id="ff-t(\d+)">(.*?)</script>', self.text, re.S)}
        self.tags: list[str] = []
        self.texts: list[str] = []
        report = self

        class Tags(HTMLParser):
            def handle_starttag(self, tag, attrs):
                report.tags.append(tag)

            def handle_data(self, data):
                report.texts.append(data)

        Tags().feed(self.text)

    def section(self, person: str) -> dict:
        return next(p for p in self.data["people"] if p["n"] == person)

    def preview(self, index: int) -> tuple[int, int, Image.Image] | None:
        """(original width, height, the decoded preview) of preview ``index``."""
        entry = self.blocks[index // self.data["chunk"]][index % self.data["chunk"]]
        if not entry:
            return None
        ow, oh, w, h, b64 = entry.split(",")
        image = Image.open(io.BytesIO(base64.b64decode(b64)))
        image.load()
        assert image.size == (int(w), int(h))
        return int(ow), int(oh), image


def make_video(path: Path, seconds: int, fps: int = 5) -> None:
    """A clip whose frames are red in second 0, green in second 1, blue in second 2..."""
    import av

    colours = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (220, 220, 30)]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.gop_size = fps  # a keyframe a second, so a seek has somewhere to land
        for n in range(seconds * fps):
            pixels = np.full((240, 320, 3), colours[(n // fps) % len(colours)], np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = n
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# --------------------------------------------------------------------------- the page


def test_a_section_per_person_closest_first_confirmed_marked(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        photo(photos / name)
    matches = [Match("a.jpg", "Anna", 0.25, (200, 120, 160, 200), taken="2019-05-01 10:00:00",
                     taken_from="exif"),
               Match("b.jpg", "Anna", 0.12, (200, 120, 160, 200)),
               Match("c.jpg", "Anna", 0.0, (200, 120, 160, 200), confirmed=True),
               Match("d.jpg", "Anna", 0.30, (200, 120, 160, 200), taken="2001-01-01 00:00:00",
                     taken_from="file time"),
               Match("a.jpg", "Ben", 0.2, (10, 10, 50, 50))]
    out = tmp_path / "found.html"
    write_html(result_for(photos, matches, people=["Anna", "Ben", "Carla"]), out, workers=2)

    report = Report(out)
    assert report.text.startswith(MARKER.decode())
    assert [p["n"] for p in report.data["people"]] == ["Anna", "Ben", "Carla"]
    anna = report.section("Anna")["m"]
    assert [c["p"] for c in anna] == ["c.jpg", "b.jpg", "a.jpg", "d.jpg"]
    assert anna[0].get("c") == 1 and all("c" not in c for c in anna[1:])
    assert (anna[2]["t"], anna[2]["s"]) == ("2019-05-01 10:00:00", "camera")
    assert anna[3]["s"] == "file date"
    assert report.section("Carla")["m"] == []  # searched for, not found: still listed
    # a.jpg serves Anna and Ben: one preview, two boxes drawn by the page.
    ben = report.section("Ben")["m"][0]
    assert ben["i"] == anna[2]["i"] and ben["b"] == [10, 10, 50, 50]
    ow, oh, image = report.preview(ben["i"])
    assert (ow, oh) == (640, 480) and max(image.size) == preview_settings(4)[0]
    # The summary line and the table of contents are in the markup itself.
    assert "Facenet, threshold 0.32" in report.text and "4 matches" not in report.text
    assert "5 matches" in report.text
    assert 'href="#person-2">Carla</a>' in report.text
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', report.text)
    assert policy and "default-src 'none'" in policy.group(1)
    assert "http:" not in report.text and "https:" not in report.text


def test_a_hostile_file_name_is_shown_as_text_never_run(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photo(photos / "sub" / HOSTILE)
    rels = [f"sub/{HOSTILE}"]
    if sys.platform.startswith("linux"):  # a name that is not UTF-8 at all
        raw = os.fsdecode(b"caf\xe9 <b>.jpg")
        photo(photos / raw)
        rels.append(raw)
    person = "<img src=x onerror=alert(1)>"
    matches = [Match(rel, person, 0.2, (200, 120, 160, 200)) for rel in rels]
    out = tmp_path / "found.html"
    write_html(result_for(photos, matches,
                          summary=Summary(unreadable=[("</script><script>x.jpg", "bad\nline")])),
               out, workers=1)

    report = Report(out)
    assert set(report.tags) <= OUR_TAGS, set(report.tags) - OUR_TAGS
    assert "<script>alert" not in report.text and "</script><script>x" not in report.text
    assert "<img" not in report.text
    cards = report.section(printable(person))["m"]
    shown = {c["p"] for c in cards}
    assert shown == {printable(rel) for rel in rels}
    assert printable(rels[0]).endswith("\\x1b[31m\\x0aline.jpg")
    if len(rels) > 1:
        assert "caf\ufffd <b>.jpg" in shown
        assert next(c for c in cards if c["p"].startswith("caf")).get("x") == 1  # no link
    assert all(report.preview(c["i"]) is not None for c in cards)  # the files were read
    assert report.data["unreadable"] == [["</script><script>x.jpg", "bad\\x0aline"]]
    assert "&lt;img src=x onerror=alert(1)&gt;" in report.text  # the table of contents


def test_maybes_and_unreadable_files_have_their_sections(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for name in ("m1.jpg", "m2.jpg", "x.jpg"):
        photo(photos / name)
    matches = [Match("x.jpg", "Anna", 0.2, (200, 120, 160, 200))]
    maybes = [Match("m2.jpg", "Anna", 0.41, (1, 2, 30, 40)),
              Match("m1.jpg", "Anna", 0.35, (200, 120, 160, 200)),
              Match("m1.jpg", "Ben", 0.45, (5, 5, 30, 30))]
    unreadable = [("broken.jpg", "truncated or corrupt image data"), ("gone.png", "empty file")]
    out = tmp_path / "found.html"
    write_html(result_for(photos, matches, people=["Anna", "Ben"], maybes=maybes,
                          summary=Summary(files_scanned=5, unreadable=unreadable)), out)

    report = Report(out)
    anna = report.section("Anna")
    assert [c["p"] for c in anna["y"]] == ["m1.jpg", "m2.jpg"]  # closest first
    assert [c["d"] for c in anna["y"]] == [0.35, 0.41]
    assert report.section("Ben")["m"] == [] and report.section("Ben")["y"][0]["p"] == "m1.jpg"
    assert report.data["unreadable"] == [list(u) for u in unreadable]
    assert "3 maybes" in report.text and "2 unreadable" in report.text
    assert 'href="#unreadable"' in report.text


def test_video_has_its_span_and_a_frame_from_its_time(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    make_video(photos / "clip.mp4", seconds=4)
    box = (100, 60, 80, 100)
    match = Match("clip.mp4", "Anna", 0.2, box, taken="2020-01-01 12:00:00",
                  taken_from="video", first=1.0, last=2.0, frames=2)
    out = tmp_path / "found.html"
    write_html(result_for(photos, [match]), out)
    card = Report(out).section("Anna")["m"][0]
    assert card["v"] == [1.0, 2.0, 2, 1.0] and card["s"] == "video"
    assert "b" not in card  # the best face may be on another frame: no box rather than a wrong one
    ow, oh, image = Report(out).preview(card["i"])
    assert (ow, oh) == (320, 240)
    assert _colour(image) == "green"  # second 1

    # With the per-file results kept, the best face's own frame is shown, with its box.
    kept = FileResult("clip.mp4", "video", faces=[
        Face(box=(0, 0, 10, 10), landmarks=np.zeros((5, 2)), score=0.9, time=1.0),
        Face(box=box, landmarks=np.zeros((5, 2)), score=0.9, time=2.0)])
    write_html(result_for(photos, [match], files=[kept]), out)
    card = Report(out).section("Anna")["m"][0]
    assert card["v"][3] == 2.0 and card["b"] == list(box)
    assert _colour(Report(out).preview(card["i"])[2]) == "blue"


def _colour(image: Image.Image) -> str:
    r, g, b = np.asarray(image.convert("RGB"), np.float32).reshape(-1, 3).mean(axis=0)
    return {0: "red", 1: "green", 2: "blue"}[int(np.argmax([r, g, b]))]


def test_previews_come_from_the_safe_decoder(tmp_path: Path) -> None:
    """Upright by EXIF, broken files give None, video frames by seek agree with sampling."""
    sideways = Image.new("RGB", (400, 200), (200, 50, 50))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    sideways.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    made = thumbs.photo(tmp_path / "rot.jpg", side=100)
    assert made is not None and (made.width, made.height) == (50, 100)
    assert (made.orig_width, made.orig_height) == (200, 400)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    assert thumbs.photo(tmp_path / "broken.jpg") is None
    assert thumbs.photo(tmp_path / "missing.jpg") is None
    assert thumbs.video_frame(tmp_path / "broken.jpg", 1.0) is None
    make_video(tmp_path / "clip.mp4", seconds=8)  # a keyframe a second: found by seeking
    for second, colour in ((5, "green"), (6, "blue"), (4, "red")):
        frame = thumbs.video_frame(tmp_path / "clip.mp4", float(second))
        assert frame is not None and _colour(Image.open(io.BytesIO(frame.jpeg))) == colour
    crop = thumbs.photo(photo(tmp_path / "face.jpg", (4000, 3000), box=(1800, 1300, 200, 260)),
                        side=128, crop=(1800, 1300, 200, 260))
    assert crop is not None and crop.orig_width < 600  # the region around the face only


# --------------------------------------------------------------------------- delivery


def _args(**paths) -> argparse.Namespace:
    return argparse.Namespace(**{"csv": None, "json": None, "html": None, "copy": None,
                                 **paths})


def test_an_interrupted_run_writes_name_partial_html(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photo(photos / "a.jpg")
    target = tmp_path / "found.html"
    said: list[str] = []
    complete = result_for(photos, [Match("a.jpg", "Anna", 0.2, (1, 2, 3, 4))])
    assert deliver(_args(html=target), complete, said.append) == 0
    before = target.read_bytes()

    stopped = result_for(photos, [Match("a.jpg", "Anna", 0.1, (1, 2, 3, 4))],
                         summary=Summary(interrupted=True))
    assert deliver(_args(html=target), stopped, said.append) == 130
    partial = tmp_path / "found.partial.html"
    assert target.read_bytes() == before  # the complete report is never replaced
    assert "Interrupted" in partial.read_text(encoding="utf-8")
    assert any(line.startswith(f"Partial HTML written: {partial}") for line in said)

    assert deliver(_args(html=target), complete, said.append) == 0
    assert not partial.exists()  # a complete report makes the partial one stale


def test_only_our_own_report_is_ever_replaced(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photo(photos / "a.jpg")
    result = result_for(photos, [Match("a.jpg", "Anna", 0.2, (1, 2, 3, 4))])
    picture = photo(tmp_path / "holiday.jpg")
    assert "not a report" in check_writable(picture, "html")
    (tmp_path / "run.json").write_text('{ "facefinder": "report", "model": "x" }')
    assert "not a report" in check_writable(tmp_path / "run.json", "html")
    assert "does not exist" in check_writable(tmp_path / "nope" / "r.html", "html")
    assert "folder" in check_writable(tmp_path, "html")
    with pytest.raises(FileExistsError):
        write_html(result, picture)
    said: list[str] = []
    assert deliver(_args(html=picture), result, said.append) == 3
    assert Image.open(picture).size == (640, 480)
    ours = tmp_path / "found.html"
    assert check_writable(ours, "html") is None
    write_html(result, ours)
    assert check_writable(ours, "html") is None
    write_html(result, ours)  # replaced in place
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # no temp left


def test_the_command_refuses_an_html_target_before_the_search(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facefinder.cli import main

    photos = tmp_path / "photos"
    picture = photo(photos / "a.jpg")
    before = picture.read_bytes()
    assert main([str(photos), "--html", str(picture), "--no-index", "--no-progress"]) == 2
    assert "--html" in capsys.readouterr().err and picture.read_bytes() == before
    same = tmp_path / "r.html"
    assert main([str(photos), "--csv", str(same), "--html", str(same), "--no-index",
                 "--no-progress"]) == 2
    assert "same file" in capsys.readouterr().err and not same.exists()


def test_fifty_thousand_matches_stay_under_a_size_bound(tmp_path: Path) -> None:
    """The size a 50,000-photo report gets, with previews as big as the caps allow.

    Real files would take minutes to read here, so the previews are made by the real
    encoder (:func:`thumbs.from_pixels`, with the side, quality and byte cap the report
    asks for) from 20 noisy pictures - noise being what JPEG compresses worst.
    """
    rng = np.random.default_rng(1)
    pictures = [np.clip(rng.normal(128, 60, (300, 400, 3)), 0, 255).astype(np.uint8)
                for _ in range(20)]
    cache: dict[tuple, thumbs.Thumbnail] = {}
    asked: set[tuple[int, int, int]] = set()

    def make(job: PreviewJob) -> thumbs.Thumbnail:
        key = (hash(job.path) % 20, job.side, job.quality, job.max_bytes)
        asked.add((job.side, job.quality, job.max_bytes))
        if key not in cache:
            cache[key] = thumbs.from_pixels(pictures[key[0]], (4000, 3000), side=job.side,
                                            quality=job.quality, max_bytes=job.max_bytes)
        return cache[key]

    count = 50_000
    people = ["Anna", "Ben", "Carla", "Dario"]
    matches = [Match(f"Photos/{n // 500:03d}/IMG_{n:05d}.jpg", people[n % 4],
                     0.1 + (n % 991) / 5000, (1200, 800, 300, 360),
                     taken=f"20{n % 24:02d}-07-14 12:00:00", taken_from="exif")
               for n in range(count)]
    out = tmp_path / "big.html"
    write_html(result_for(tmp_path / "photos", matches), out, make=make, workers=2)

    side, quality, cap = preview_settings(count)
    assert asked == {(side, quality, cap)} and cap <= 2_000
    assert all(len(t.jpeg) <= cap for t in cache.values())
    size = out.stat().st_size
    assert size <= count * 3_000, f"{size / count:.0f} bytes per match"
    report = Report(out)
    assert sum(len(p["m"]) for p in report.data["people"]) == count
    assert len(report.blocks) == -(-count // report.data["chunk"])
    assert report.preview(count - 1) is not None


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def album(celebrities: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """reference/<2 people>/ and photos/ with their held-out photos, a stranger, a broken
    file and a photo whose name is markup."""
    root = tmp_path_factory.mktemp("html_album")
    copy_references(celebrities, root, ("madonna", "ben_afflek"), 3)
    photos = root / "photos"
    for person in ("madonna", "ben_afflek"):
        for n, source in enumerate(sorted((celebrities / "val" / person).glob("*.jpg"))):
            target = photos / person.split("_")[0].title() / f"{n}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    shutil.copy(sorted((celebrities / "val" / "madonna").glob("*.jpg"))[0],
                photos / "<img src=x onerror=alert(1)>.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a photo")
    return root


def test_finder_writes_a_report_whose_previews_decode(album: Path, models_dir: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "finder.py", str(album / "photos"), "--reference",
         str(album / "reference"), "--html", str(out), "--index", str(tmp_path / "i.sqlite"),
         "--models", str(models_dir), "--no-progress", "--jobs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"HTML written: {out}" in done.stderr + done.stdout
    report = Report(out)
    assert {p["n"] for p in report.data["people"]} == {"madonna", "ben_afflek"}
    cards = [c for p in report.data["people"] for c in p["m"] + p["y"]]
    assert len(report.section("madonna")["m"]) >= 2
    assert len(report.section("ben_afflek")["m"]) >= 2
    for card in cards:
        ow, oh, image = report.preview(card["i"])
        x, y, w, h = card["b"]
        assert x < ow and y < oh and x + w > 0 and y + h > 0  # on the picture
        assert max(image.size) <= preview_settings(len(cards))[0]
    assert [u[0] for u in report.data["unreadable"]] == ["broken.jpg"]
    assert "<img src=x onerror=alert(1)>.jpg" in {c["p"] for c in cards}
    assert set(report.tags) <= OUR_TAGS


# --------------------------------------------------------------------------- in a browser


def test_report_in_chromium_pages_and_shows_every_preview(
        page, console_errors, screenshot, celebrities: Path, tmp_path: Path) -> None:
    """Opened from file:// with its Content-Security-Policy in force: every preview of a
    page decodes, the pager moves, a hostile name is text, and nothing logs an error
    (a CSP violation would)."""
    photos = tmp_path / "photos Família"
    sources = sorted((celebrities / "val").rglob("*.jpg"))
    matches = []
    for n in range(PAGE * 2 + 7):
        source = sources[n % len(sources)]
        rel = f"{source.parent.name}/{n:03d} {source.name}"
        if n == 5:
            rel = f"odd/{n:03d} <img src=x onerror=alert(1)>.jpg"
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, photos / rel)
        with Image.open(source) as image:
            w, h = image.size
        matches.append(Match(rel, "Madonna & <b>friends</b>", round(0.05 + n / 1000, 4),
                             (w // 4, h // 5, w // 2, h // 2),
                             taken=f"{2000 + n % 20}-01-01 12:00:00", taken_from="exif",
                             confirmed=n == 3))
    maybes = [Match(matches[n].rel, "Madonna & <b>friends</b>", 0.4 + n / 100,
                    matches[n].box) for n in range(3)]
    out = tmp_path / "report Família.html"
    write_html(result_for(photos, matches, maybes=maybes,
                          summary=Summary(files_scanned=120, images_read=115,
                                          unreadable=[("broken.jpg", "not an image")])), out)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(out.as_uri())
    page.wait_for_selector("#person-0 figure")
    figures = "#person-0 > div:first-of-type figure"

    def previews_loaded() -> list[int]:
        page.wait_for_function("[...document.images].every(i => i.complete)")
        return page.eval_on_selector_all(f"{figures} img", "imgs => imgs.map(i => i.naturalWidth)")

    widths = previews_loaded()
    assert len(widths) == PAGE and all(w > 0 for w in widths)
    assert page.locator(f"{figures} .box").count() == PAGE
    first = page.eval_on_selector_all(f"{figures} .path", "p => p.map(e => e.textContent)")
    assert any("<img src=x onerror=alert(1)>" in text for text in first)
    assert page.text_content("#person-0 h2").startswith("Madonna & <b>friends</b>: 103 photos")
    screenshot(page, "html-report-page-1", full_page=False)

    page.click("#person-0 >> text=next ›")
    page.wait_for_function("document.querySelector('#person-0 .bar span')"
                           ".textContent.startsWith('page 2 of 3')")
    second = page.eval_on_selector_all(f"{figures} .path", "p => p.map(e => e.textContent)")
    assert len(second) == PAGE and not set(second) & set(first)
    assert all(w > 0 for w in previews_loaded())
    page.fill("#person-0 .bar input", "3")
    page.dispatch_event("#person-0 .bar input", "change")
    page.wait_for_function("document.querySelector('#person-0 .bar span')"
                           ".textContent.startsWith('page 3 of 3')")
    assert len(previews_loaded()) == 7
    page.select_option("#person-0 .bar select", "oldest first")
    dates = page.eval_on_selector_all(f"{figures} .meta", "m => m.map(e => e.textContent)")
    assert dates[0].startswith("2000-01-01")
    assert page.locator("#person-0 figure.maybe").count() == 3
    assert "not an image" in page.text_content("#unreadable")
    screenshot(page, "html-report")
    assert not dialogs, dialogs
    assert not console_errors, console_errors
