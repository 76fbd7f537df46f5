"""``--xmp``: the names and face regions written for the copies, read back by ExifTool.

The finder runs end to end (``cli.main``) on real faces from the 5-celebrity set, stored
the ways cameras store them: a plain JPEG with ICC profile, comment and XMP of its own,
JPEGs turned sideways with Exif orientation 6 and 8, an iPhone-style HEIC (orientation 6),
and one photo of two people. What is written is read back by an independent reader,
ExifTool (Debian's ``libimage-exiftool-perl``): names, keywords, and each region turned
upright the way a viewer turns the pixels (Pillow's Exif transpose, not the finder's own
geometry), which must cover the face box the finder reported (IoU > 0.9). The originals'
bytes and their folder's listing must not change.

ExifTool is looked for on PATH; without it, as root on Debian/Ubuntu, Debian's package is
installed (once, under a lock shared by parallel sessions), otherwise these tests are
skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_references
from debian import PackageUnavailable, install
from PIL import Image, ImageCms, ImageOps

from facefinder import xmp
from facefinder.cli import EXIT_UNDELIVERED, EXIT_USAGE, main
from facefinder.records import Match

PEOPLE = ["madonna", "ben_afflek"]
HOW_TO_INSTALL = "install ExifTool (Debian/Ubuntu: `apt-get install libimage-exiftool-perl`)"
TO_STORED = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


# --------------------------------------------------------------------------- ExifTool


@pytest.fixture(scope="session")
def exiftool() -> str:
    try:
        return install("libimage-exiftool-perl", lambda: shutil.which("exiftool"),
                       how_to=HOW_TO_INSTALL)
    except PackageUnavailable as error:
        pytest.skip(str(error))


def one(tool: str, path: Path, args: tuple[str, ...] = ("-struct", "-RegionInfo", "-Subject",
                                                        "-TagsList")) -> dict:
    """ExifTool's answer for one file."""
    return next(iter(read_tags(tool, path, args=args).values()))


def read_tags(tool: str, *paths: Path, args: tuple[str, ...] = ("-struct", "-RegionInfo",
                                                                   "-Subject", "-TagsList")
              ) -> dict[str, dict]:
    """ExifTool's answer per file, keyed by path."""
    out = subprocess.run([tool, "-j", *args, *map(str, paths)], check=True,
                         capture_output=True, text=True).stdout
    return {entry["SourceFile"]: entry for entry in json.loads(out)}


# --------------------------------------------------------------------------- photos


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(root).as_posix(): (sha(p), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _portrait(photo: Path, pad: int = 90) -> Image.Image:
    """The photo on a taller canvas, so that turning it swaps width and height."""
    face = Image.open(photo).convert("RGB")
    canvas = Image.new("RGB", (face.width, face.height + pad), (120, 120, 120))
    canvas.paste(face, (0, pad // 3))
    return canvas


def _stored(upright: Image.Image, orientation: int) -> tuple[Image.Image, bytes]:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Camera maker"
    return upright.transpose(TO_STORED[orientation]), exif.tobytes()


@pytest.fixture(scope="module")
def album(celebrities: Path, tmp_path_factory: pytest.TempPathFactory,
          exiftool: str) -> Path:
    """photos/ as cameras store them, and reference/ (five photos a person)."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    root = tmp_path_factory.mktemp("xmp_album")
    copy_references(celebrities, root, PEOPLE, 5)
    photos = root / "photos" / "Trip 2019"
    photos.mkdir(parents=True)
    madonna = _portrait(sorted((celebrities / "val" / "madonna").glob("*.jpg"))[0])
    ben = Image.open(sorted((celebrities / "val" / "ben_afflek").glob("*.jpg"))[0])
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    madonna.save(photos / "plain.jpg", quality=92, icc_profile=icc, comment=b"family trip",
                 exif=exif.tobytes())
    subprocess.run([exiftool, "-q", "-overwrite_original", "-XMP-dc:Subject=Holiday",
                    "-XMP-xmp:Rating=4", str(photos / "plain.jpg")], check=True)
    for orientation in (6, 8):
        pixels, tags = _stored(madonna, orientation)
        pixels.save(photos / f"sideways {orientation}.JPG", quality=92, exif=tags)
    pixels, tags = _stored(madonna, 6)
    pixels.save(photos / "IMG_0001.HEIC", format="HEIF", quality=90, exif=tags)
    height = 260
    a = madonna.resize((madonna.width * height // madonna.height, height))
    b = ben.convert("RGB").resize((ben.width * height // ben.height, height))
    both = Image.new("RGB", (a.width + b.width + 60, height + 30), (200, 200, 200))
    both.paste(a, (10, 15))
    both.paste(b, (a.width + 50, 15))
    both.save(photos / "both.jpg", quality=92)
    return root


def run(album: Path, models_dir: Path, index: Path, *args: str | Path) -> int:
    return main([str(album / "photos"), "--reference", str(album / "reference"),
                 "--index", str(index), "--models", str(models_dir), "--no-progress",
                 "--jobs", "1", *map(str, args)])


def originals(album: Path) -> dict[str, tuple[str, int]]:
    return snapshot(album / "photos")


def upright_box(area: dict, dims: dict, orientation: int) -> tuple[int, int, int, int]:
    """A region (stored image, normalised centre) turned upright as a viewer turns pixels."""
    w, h = area["W"] * dims["W"], area["H"] * dims["H"]
    x, y = area["X"] * dims["W"] - w / 2, area["Y"] * dims["H"] - h / 2
    mask = Image.new("L", (dims["W"], dims["H"]), 0)
    mask.paste(255, (round(x), round(y), round(x + w), round(y + h)))
    mask.getexif()[0x0112] = orientation
    x0, y0, x1, y1 = ImageOps.exif_transpose(mask).getbbox()
    return x0, y0, x1 - x0, y1 - y0


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def clipped(box, size) -> tuple[int, int, int, int]:
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    return x0, y0, min(size[0], x + w) - x0, min(size[1], y + h) - y0


def check_regions(tool: str, album: Path, dest: Path, report: Path, *, embedded: bool
                  ) -> None:
    """Every copy's XMP names everyone found in its photo, and boxes each face."""
    matches = json.loads(report.read_text(encoding="utf-8"))["matches"]
    people: dict[str, dict[str, list[int]]] = {}
    for m in matches:
        people.setdefault(m["path"], {})[m["person"]] = m["box"]
    assert set(people) == {f"Trip 2019/{n}" for n in (
        "plain.jpg", "sideways 6.JPG", "sideways 8.JPG", "IMG_0001.HEIC", "both.jpg")}
    assert set(people["Trip 2019/both.jpg"]) == set(PEOPLE)
    copies = [(rel, person, dest / person / rel) for rel in people for person in people[rel]]
    xmp_of = {copy: (copy if embedded and copy.suffix.lower() == ".jpg"
                     else copy.with_name(copy.name + ".xmp")) for _, _, copy in copies}
    tags = read_tags(tool, *xmp_of.values())
    meta = read_tags(tool, *(c for _, _, c in copies),
                     args=("-n", "-Orientation", "-ImageWidth", "-ImageHeight"))
    for rel, _person, copy in copies:
        found = tags[str(xmp_of[copy])]
        info = meta[str(copy)]
        regions = found["RegionInfo"]["RegionList"]
        assert sorted(r["Name"] for r in regions) == sorted(people[rel]), copy
        assert {r["Type"] for r in regions} == {"Face"}
        subjects = found["Subject"] if isinstance(found["Subject"], list) else [found["Subject"]]
        assert set(people[rel]) <= set(subjects)
        assert {f"People/{p}" for p in people[rel]} <= set(
            found["TagsList"] if isinstance(found["TagsList"], list) else [found["TagsList"]])
        dims = found["RegionInfo"]["AppliedToDimensions"]
        # MWG: regions apply to the image as stored (what ExifTool reports as its size).
        assert (dims["W"], dims["H"]) == (info["ImageWidth"], info["ImageHeight"]), copy
        orientation = info.get("Orientation", 1)
        turned = orientation in (5, 6, 7, 8)
        upright = (dims["H"], dims["W"]) if turned else (dims["W"], dims["H"])
        expected = {"sideways 6.JPG": 6, "sideways 8.JPG": 8, "IMG_0001.HEIC": 6}
        assert orientation == expected.get(copy.name, 1), copy
        for region in regions:
            got = upright_box(region["Area"], dims, orientation)
            want = clipped(people[rel][region["Name"]], upright)
            assert iou(got, want) > 0.9, (copy, region["Name"], got, want)


# --------------------------------------------------------------------------- tests


def test_sidecars_name_everyone_found_and_box_their_faces(
        album: Path, models_dir: Path, exiftool: str, tmp_path: Path, capsys) -> None:
    before = originals(album)
    dest, report, index = tmp_path / "found", tmp_path / "r.json", tmp_path / "i.sqlite"
    assert run(album, models_dir, index, "--copy", dest, "--xmp", "--json", report) == 0
    check_regions(exiftool, album, dest, report, embedded=False)
    # A sidecar holds the finder's names only: the photo's own XMP stays in the photo.
    assert one(exiftool, dest / "madonna/Trip 2019/plain.jpg.xmp")["Subject"] == ["madonna"]
    assert originals(album) == before  # not a byte, not a new file beside them
    assert "6 sidecars written" in capsys.readouterr().err
    assert not [p for p in dest.rglob("*") if ".partial-" in p.name]

    # A re-run changes nothing and makes no new file.
    written = snapshot(dest)
    assert run(album, models_dir, index, "--copy", dest, "--xmp") == 0
    assert snapshot(dest) == written
    assert "0 sidecars written, 6 unchanged" in capsys.readouterr().err
    assert originals(album) == before


def test_embed_changes_only_the_xmp_segment_and_a_rerun_knows_its_copies(
        album: Path, models_dir: Path, exiftool: str, tmp_path: Path, capsys) -> None:
    before = originals(album)
    dest, report, index = tmp_path / "found", tmp_path / "r.json", tmp_path / "i.sqlite"
    assert run(album, models_dir, index, "--copy", dest, "--xmp", "embed",
               "--json", report) == 0
    check_regions(exiftool, album, dest, report, embedded=True)
    out = capsys.readouterr().err
    assert "1 sidecar written, 5 JPEG copies annotated" in out
    assert sorted(p.name for p in dest.rglob("*.xmp")) == ["IMG_0001.HEIC.xmp"]

    for copy in dest.rglob("*"):
        if copy.suffix.lower() != ".jpg":
            continue
        original = album / "photos" / copy.relative_to(dest / copy.parts[-3])
        old, new = original.read_bytes(), copy.read_bytes()
        assert old != new
        assert _segments_but_xmp(old) == _segments_but_xmp(new), copy  # byte for byte
    plain = dest / "madonna/Trip 2019/plain.jpg"
    kept = one(exiftool, plain, args=("-a", "-G1", "-Subject", "-Rating", "-Comment", "-Make"))
    assert kept["XMP-dc:Subject"] == ["Holiday", "madonna"]  # the photo's own kept
    assert kept["XMP-xmp:Rating"] == 4
    assert kept["File:Comment"] == "family trip" and kept["IFD0:Make"] == "Camera maker"

    # Re-runs (with embed, with sidecars, without --xmp) know the annotated copies: no
    # "name (2).jpg", nothing copied again, nothing rewritten.
    written = snapshot(dest)
    assert run(album, models_dir, index, "--copy", dest, "--xmp", "embed") == 0
    assert run(album, models_dir, index, "--copy", dest) == 0
    assert snapshot(dest) == written
    out = capsys.readouterr().err
    assert out.count("0 new, 6 already there") == 2
    assert "0 sidecars written, 0 JPEG copies annotated, 6 unchanged" in out
    assert originals(album) == before


def _segments_but_xmp(data: bytes) -> list[bytes]:
    """Every JPEG segment but the XMP one, and the image data after them, as bytes."""
    out, pos = [], 2
    while data[pos + 1] != 0xDA:
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if not data[pos + 4:end].startswith(b"http://ns.adobe.com/xap/1.0/\x00"):
            out.append(data[pos:end])
        pos = end
    return [*out, data[pos:]]


def test_a_rejected_face_is_not_written_and_a_rerun_takes_its_name_out(
        album: Path, models_dir: Path, exiftool: str, tmp_path: Path) -> None:
    from facefinder import Finder
    from facefinder.api import open_index
    from facefinder.records import Decision, parse_face_id

    dest, report, index = tmp_path / "found", tmp_path / "r.json", tmp_path / "i.sqlite"
    assert run(album, models_dir, index, "--copy", dest, "--xmp", "--json", report) == 0
    wrong = next(m for m in json.loads(report.read_text(encoding="utf-8"))["matches"]
                 if m["path"] == "Trip 2019/both.jpg" and m["person"] == "madonna")
    key, n = parse_face_id(wrong["face"])
    finder = Finder(album / "reference", models=models_dir, index=index, jobs=1)
    try:
        with open_index(index) as faces:
            faces.decide(finder.settings_ids(faces)["image"],
                         Decision(key, n, "madonna", "no", tuple(wrong["box"])))
    finally:
        finder.close()

    assert run(album, models_dir, index, "--copy", dest, "--xmp") == 0
    ben = one(exiftool, dest / "ben_afflek/Trip 2019/both.jpg.xmp")
    assert [r["Name"] for r in ben["RegionInfo"]["RegionList"]] == ["ben_afflek"]
    assert ben["Subject"] == ["ben_afflek"]
    fresh = tmp_path / "fresh"
    assert run(album, models_dir, index, "--copy", fresh, "--xmp") == 0
    assert not (fresh / "madonna/Trip 2019/both.jpg").exists()
    assert b"madonna" not in (fresh / "ben_afflek/Trip 2019/both.jpg.xmp").read_bytes()


def test_what_an_app_wrote_into_the_finders_xmp_is_kept_on_a_rerun(
        album: Path, models_dir: Path, exiftool: str, tmp_path: Path) -> None:
    """A keyword or rating a photo app (here ExifTool) added to the finder's sidecar or
    to an annotated copy survives the next run; the finder's own names are kept current."""
    dest, index = tmp_path / "found", tmp_path / "i.sqlite"
    assert run(album, models_dir, index, "--copy", dest, "--xmp") == 0
    sidecar = dest / "madonna/Trip 2019/plain.jpg.xmp"
    subprocess.run([exiftool, "-q", "-overwrite_original", "-XMP-dc:Subject+=Beach",
                    "-XMP-xmp:Rating=5", str(sidecar)], check=True)
    assert run(album, models_dir, index, "--copy", dest, "--xmp") == 0
    tags = one(exiftool, sidecar, args=("-Subject", "-Rating", "-struct", "-RegionInfo"))
    assert sorted(tags["Subject"]) == ["Beach", "madonna"] and tags["Rating"] == 5
    assert [r["Name"] for r in tags["RegionInfo"]["RegionList"]] == ["madonna"]

    embedded = tmp_path / "embedded"
    assert run(album, models_dir, index, "--copy", embedded, "--xmp", "embed") == 0
    copy = embedded / "madonna/Trip 2019/plain.jpg"
    subprocess.run([exiftool, "-q", "-overwrite_original", "-XMP-dc:Subject+=Beach",
                    str(copy)], check=True)
    assert run(album, models_dir, index, "--copy", embedded, "--xmp", "embed") == 0
    assert sorted(one(exiftool, copy, args=("-Subject",))["Subject"]) == [
        "Beach", "Holiday", "madonna"]
    assert not list(copy.parent.glob("plain (2)*"))


def test_a_sidecar_name_taken_by_another_file_is_left_and_said(
        album: Path, models_dir: Path, tmp_path: Path, capsys) -> None:
    dest, index = tmp_path / "found", tmp_path / "i.sqlite"
    theirs = dest / "madonna" / "Trip 2019" / "plain.jpg.xmp"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    assert run(album, models_dir, index, "--copy", dest, "--xmp") == EXIT_UNDELIVERED
    assert theirs.read_bytes() == b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"
    out = capsys.readouterr().err
    assert "5 sidecars written, 0 unchanged, 1 FAILED" in out
    assert ("no XMP for madonna/Trip 2019/plain.jpg: plain.jpg.xmp is already there and is "
            "not the finder's: left as it was") in out


@pytest.mark.parametrize("args", [["--xmp"], ["--xmp", "embed"], ["--copy", "X", "--xmp",
                                                                  "everywhere"]])
def test_xmp_is_refused_before_the_search_without_copy_or_a_mode(
        args: list[str], tmp_path: Path, capsys) -> None:
    started = time.monotonic()
    assert main([str(tmp_path), *args, "--index", str(tmp_path / "i.sqlite")]) == EXIT_USAGE
    err = capsys.readouterr()
    lines = [line for line in (err.out + err.err).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("finder: error: --xmp"), lines
    assert time.monotonic() - started < 5 and not (tmp_path / "i.sqlite").exists()


def test_without_exiv2_the_finder_runs_and_xmp_says_how_to_install_it(
        tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "exiv2", None)  # import exiv2 -> ImportError
    xmp._exiv2.cache_clear()
    try:
        assert xmp.unavailable() == xmp.NEEDS_EXIV2
        code = main([str(tmp_path), "--copy", str(tmp_path / "c"), "--xmp",
                     "--index", str(tmp_path / "i.sqlite")])
    finally:
        xmp._exiv2.cache_clear()
    assert code == EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"finder: error: {xmp.NEEDS_EXIV2}"


def test_a_video_gets_a_sidecar_with_its_people_and_when_they_are_seen(
        exiftool: str, tmp_path: Path) -> None:
    original = tmp_path / "photos" / "party.mp4"
    original.parent.mkdir()
    original.write_bytes(b"a video, as far as this test goes")
    copy = tmp_path / "found" / "Ana" / "party.mp4"
    copy.parent.mkdir(parents=True)
    shutil.copy(original, copy)
    seen = [Match("party.mp4", "Ana", 0.2, (1, 2, 50, 50), first=12.0, last=65.4),
            Match("party.mp4", "Bob", 0.2, (90, 2, 50, 50), first=3600.0, last=3725.0)]
    done = xmp.annotate({("party.mp4", "Ana"): copy}, seen, tmp_path / "photos", "embed")
    assert (done.written, done.failed) == (1, [])
    found = one(exiftool, copy.with_name("party.mp4.xmp"),
                args=("-Subject", "-TagsList", "-Description"))
    assert found["Subject"] == ["Ana", "Bob"]
    assert found["TagsList"] == ["People/Ana", "People/Bob"]
    assert found["Description"] == "Ana 0:12-1:05; Bob 1:00:00-1:02:05"
    assert copy.read_bytes() == original.read_bytes()
    again = xmp.annotate({("party.mp4", "Ana"): copy}, seen, tmp_path / "photos", "embed")
    assert (again.written, again.unchanged) == (0, 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_regions_follow_all_eight_orientations_as_pillow_turns_pixels(orientation) -> None:
    upright, box = (480, 640), (60, 80, 120, 150)
    cx, cy, w, h = xmp.mwg_area(box, upright=upright, orientation=orientation)
    dims = dict(zip("WH", upright[::-1] if orientation >= 5 else upright, strict=True))
    got = upright_box({"X": cx, "Y": cy, "W": w, "H": h}, dims, orientation)
    assert all(abs(a - b) <= 1 for a, b in zip(got, box, strict=True)), (orientation, got)
