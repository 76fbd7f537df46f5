"""``--annotate DIR``: drawings of what was found, beside the originals, never over anything.

Real faces (the 5-celebrity set), the real models, the command line as a user runs it.
The photo searched is stored sideways with an EXIF Orientation that makes viewers show
it upright: the drawing must be upright too, with the person's box on the face.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefinder import Finder
from facefinder.annotate import PERSON_COLOUR
from facefinder.cli import main

PERSON = "madonna"
ORIENTATION = 0x0112


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def album(celebrities: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """reference/madonna/ (train photos), and photos/Trip 2019/sideways.jpg: a val photo
    of her stored rotated a quarter turn, with Orientation 6 ("rotate 90 CW to view"),
    and upright.png, the same photo as a viewer shows it (for where the face is)."""
    from conftest import copy_references

    root = tmp_path_factory.mktemp("annotate")
    refs = copy_references(celebrities, root, [PERSON], 8)
    source = sorted((celebrities / "val" / PERSON).glob("*.jpg"))[0]
    upright = Image.open(source).convert("RGB")
    upright.save(root / "upright.png")
    folder = root / "photos" / "Trip 2019"
    folder.mkdir(parents=True)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: sideways
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    stored.save(folder / "sideways.jpg", quality=95, exif=exif.tobytes())
    return {"root": root, "refs": refs, "photos": root / "photos",
            "photo": folder / "sideways.jpg", "upright": root / "upright.png"}


def _run(album: dict[str, Path], dest: Path, capsys) -> tuple[int, str]:
    code = main([str(album["photos"]), "--reference", str(album["refs"]), "--person", PERSON,
                 "--index", str(album["root"] / "index.sqlite"), "--annotate", str(dest),
                 "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_annotated_copy_is_upright_with_the_box_on_the_face_and_never_overwrites(
        album: dict[str, Path], models_dir: Path, tmp_path: Path, capsys) -> None:
    before = _sha(album["photo"])
    dest = tmp_path / "boxes"
    code, said = _run(album, dest, capsys)
    assert code == 0, said
    drawing = dest / PERSON / "Trip 2019" / "sideways.jpg"
    assert drawing.is_file(), said
    assert _sha(album["photo"]) == before  # the original is only read

    # Where the face really is: the detector on the upright picture (no EXIF involved).
    with Finder(album["refs"], models=models_dir, jobs=1) as finder:
        faces = [f for f in finder.faces(album["upright"]).faces if f.embedding is not None]
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    upright = np.asarray(Image.open(album["upright"]).convert("RGB"), np.int32)
    drawn = np.asarray(Image.open(drawing).convert("RGB"), np.int32)
    assert drawn.shape == upright.shape  # upright, full size: not the stored sideways shape
    sidecar = json.loads((drawing.parent / "sideways.jpg.json").read_text("utf-8"))
    assert sidecar["source"] == "Trip 2019/sideways.jpg"
    assert [p["person"] for p in sidecar["people"]] == [PERSON]
    box = sidecar["people"][0]["box"]
    assert max(abs(a - b) for a, b in zip(box, (x, y, w, h), strict=True)) <= 3, (box, x, y)
    assert 0 < sidecar["people"][0]["distance"] < 0.6

    magenta = np.array(PERSON_COLOUR)
    inset = 1  # the outline is drawn inwards from the box, at least 2 px wide
    edges = {"left": (y + h // 2, x + inset), "right": (y + h // 2, x + w - 1 - inset),
             "bottom": (y + h - 1 - inset, x + w // 2), "top": (y + inset, x + w // 2)}
    for name, (row, col) in edges.items():
        assert np.abs(drawn[row, col] - magenta).max() < 60, (name, drawn[row, col])
        assert np.abs(upright[row, col] - magenta).max() >= 60, name  # not so before
    centre = drawn[y + h // 2, x + w // 2]
    assert np.abs(centre - upright[y + h // 2, x + w // 2]).max() < 40  # the face itself

    # A second run finds its own drawing there: nothing new, nothing replaced.
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    stamps = [p.stat().st_mtime_ns for p in files]
    code, said = _run(album, dest, capsys)
    assert code == 0 and "0 new, 1 already there" in said, said
    assert sorted(p for p in dest.rglob("*") if p.is_file()) == files
    assert [p.stat().st_mtime_ns for p in files] == stamps


def test_a_different_file_with_the_name_is_kept_and_the_drawing_renamed(
        album: dict[str, Path], models_dir: Path, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "boxes"
    taken = dest / PERSON / "Trip 2019" / "sideways.jpg"
    taken.parent.mkdir(parents=True)
    shutil.copy(album["upright"], taken)  # the user's own file under that name
    theirs = _sha(taken)
    code, said = _run(album, dest, capsys)
    assert code == 0, said
    assert _sha(taken) == theirs
    renamed = taken.parent / "sideways (2).jpg"
    assert renamed.is_file() and (taken.parent / "sideways (2).jpg.json").is_file()
    assert f"{PERSON}/Trip 2019/sideways (2).jpg" in said  # where it is, folders and all
    assert not [p for p in taken.parent.iterdir() if ".partial" in p.name]


def test_a_video_gets_a_contact_sheet_of_the_frames_where_its_person_is_seen(
        album: dict[str, Path], celebrities: Path, models_dir: Path, tmp_path: Path,
        capsys) -> None:
    from test_video import make_video

    photos = tmp_path / "photos"
    photos.mkdir()
    # One of her reference photos: a face matched well clear of the threshold in every
    # frame, so the test is about the sheet and not about how close a match is.
    face = Image.open(sorted((celebrities / "train" / PERSON).glob("*.jpg"))[0]).convert("RGB")
    make_video(photos / "clip.mp4", face, {2, 3, 4, 5}, 8)
    dest = tmp_path / "boxes"
    code = main([str(photos), "--reference", str(album["refs"]), "--person", PERSON,
                 "--no-index", "--annotate", str(dest), "--no-progress"])
    said = capsys.readouterr()
    assert code == 0, said.err
    sheet = dest / PERSON / "clip.mp4.sheet.jpg"
    sidecar = json.loads((dest / PERSON / "clip.mp4.sheet.jpg.json").read_text("utf-8"))
    assert sidecar["people"][0]["first_s"] == 2.0 and sidecar["people"][0]["last_s"] == 5.0
    assert {f["time_s"] for f in sidecar["faces"]} <= {2.0, 3.0, 4.0, 5.0}
    with Image.open(sheet) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"), np.int32)
    assert width > 2 * height  # three frames side by side
    close = np.abs(pixels - np.array(PERSON_COLOUR)).max(axis=2) < 60
    assert close.sum() > 1000  # the faces' outlines and the labels


def test_a_video_found_for_its_cat_gets_a_sheet_of_the_cat_frames_with_its_box(
        tmp_path: Path, capsys) -> None:
    """``--with cat --annotate``: no person asked, the sheet shows the frames where the
    detector saw the cat (not the grey frames before and after), boxed and captioned."""
    from test_video import make_video
    from testdata import skimage_photo

    from facefinder.annotate import OBJECT_COLOUR

    photos = tmp_path / "photos"
    photos.mkdir()
    cat = Image.open(skimage_photo("chelsea")).convert("RGB")
    make_video(photos / "cat.mp4", cat, {2, 3}, 6)
    dest = tmp_path / "boxes"
    code = main([str(photos), "--with", "cat", "--no-index", "--annotate", str(dest),
                 "--no-progress"])
    said = capsys.readouterr()
    assert code == 0, said.err
    sidecar = json.loads((dest / "cat" / "cat.mp4.sheet.jpg.json").read_text("utf-8"))
    cat_times = {o["time_s"] for o in sidecar["objects"] if o["class"] == "cat"}
    assert cat_times and cat_times <= {2.0, 3.0}
    with Image.open(dest / "cat" / "cat.mp4.sheet.jpg") as image:
        width = image.size[0]
        pixels = np.asarray(image.convert("RGB"), np.int32)
    assert width == len(cat_times) * 480  # one tile per frame with the cat, none grey
    amber = np.abs(pixels - np.array(OBJECT_COLOUR)).max(axis=2) < 60
    assert amber.sum() > 500  # the cat's outline and its label
    grey = (np.abs(pixels - 128).max(axis=2) < 6).mean()
    assert grey < 0.5  # the frames shown are the cat's, not the empty grey ones


@pytest.mark.parametrize("asked", ["dogs", "Puppy", "pet"])
def test_a_sheet_for_an_object_asked_in_other_words_shows_that_objects_frames(
        asked: str) -> None:
    """``--with dogs`` (or "puppy", "pet": words the query accepts for dog) names the
    drawings' folder as typed; the contact sheet still picks the frames where a dog is
    seen, not frames of every object the video shows (people at 0 s and 1 s here)."""
    from facefinder.annotate import _moments, _Target, targets
    from facefinder.object_names import resolve
    from facefinder.records import FileResult, ObjectBox

    objects = [ObjectBox("person", 0.9, (0, 0, 10, 20), 0.0),
               ObjectBox("person", 0.9, (0, 0, 10, 20), 1.0),
               ObjectBox("dog", 0.7, (5, 5, 10, 10), 4.0),
               ObjectBox("person", 0.8, (0, 0, 10, 20), 4.0),
               ObjectBox("dog", 0.6, (6, 5, 10, 10), 5.0)]
    video = FileResult("walk.mp4", "video", objects=objects)
    (target,) = targets([], [video], [video], asked, resolve(asked))
    assert target.folder == asked and isinstance(target, _Target)
    assert _moments(target) == [(4.0, "dog"), (5.0, "dog")]


def test_a_sheet_for_two_objects_asked_shows_the_frames_of_both() -> None:
    """``--with dog --with cat`` (a file with both): one folder named for both words,
    and the sheet shows the frames of either, not the dog's alone."""
    from facefinder.annotate import _moments, targets
    from facefinder.records import FileResult, ObjectBox

    objects = [ObjectBox("person", 0.9, (0, 0, 10, 20), 0.0),
               ObjectBox("dog", 0.7, (5, 5, 10, 10), 2.0),
               ObjectBox("cat", 0.6, (50, 5, 10, 10), 6.0)]
    video = FileResult("yard.mp4", "video", objects=objects)
    (target,) = targets([], [video], [video], "dog + cat", {"dog", "cat"})
    assert target.folder == "dog + cat"
    assert _moments(target) == [(2.0, "dog"), (6.0, "cat")]


def test_a_sheet_frame_shows_only_the_objects_of_that_frame() -> None:
    """A frame where the detector found nothing gets no boxes: not those of the frame a
    second before (at 1 frame/s the dog has moved by then), nor half a second (2/s)."""
    from facefinder.annotate import _objects_at
    from facefinder.records import ObjectBox

    dog = ObjectBox("dog", 0.7, (5, 5, 10, 10), 1.0)
    cat = ObjectBox("cat", 0.6, (50, 5, 10, 10), 3.0)
    photo_box = ObjectBox("dog", 0.9, (0, 0, 4, 4), None)
    objects = [dog, cat, photo_box]
    assert _objects_at(objects, 1.0) == [dog]
    assert _objects_at(objects, 3.0) == [cat]
    assert _objects_at(objects, 2.0) == []
    assert _objects_at(objects, 1.5) == []
    assert _objects_at(objects, 0.0) == []


def test_a_file_name_that_is_not_unicode_gets_its_sidecar(tmp_path: Path) -> None:
    """Linux names may be any bytes: the sidecar holds the name as JSON escapes that
    read back as the name the folder listing gave (not a failure on every run)."""
    from facefinder.annotate import _sidecar, _Target

    name = "bad\udcff\udcfe.jpg"  # the bytes ff fe, as os.listdir gives them
    target = _Target(name, PERSON, "image", [], [], [])
    _sidecar(tmp_path / "bad__.jpg.json", target, tmp_path / name, "bad__.jpg")
    document = json.loads((tmp_path / "bad__.jpg.json").read_bytes())
    assert document["source"] == name and document["drawing"] == "bad__.jpg"
