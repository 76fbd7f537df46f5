"""Questions across the index: --all, --any, --without, --since/--until, face counts, and
output sorted by capture time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from facefinder.cli import EXIT_USAGE, main
from facefinder.query import Query, QueryError, parse_date

PEOPLE = ("madonna", "ben_afflek")


def _dated(image: Image.Image, path: Path, when: str) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = when  # DateTimeOriginal
    image.save(path, quality=92, exif=exif)


@pytest.fixture(scope="module")
def album(celebrities: Path, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("query_album")
    faces = {}
    for person in PEOPLE:
        photos = sorted((celebrities / "train" / person).glob("*.jpg"))[:4]
        (root / "reference" / person).mkdir(parents=True)
        for photo in photos:
            shutil.copy(photo, root / "reference" / person / photo.name)
        faces[person] = Image.open(photos[0]).convert("RGB")
    photos = root / "photos"
    photos.mkdir()
    _dated(faces["madonna"], photos / "a.jpg", "2003:05:01 10:00:00")
    _dated(faces["ben_afflek"], photos / "b.jpg", "2005:07:01 10:00:00")
    both = Image.new("RGB", (760, 400), (90, 90, 90))
    for n, person in enumerate(PEOPLE):
        face = faces[person].resize((faces[person].width * 360 // faces[person].height, 360))
        both.paste(face, (20 + 380 * n, 20))
    _dated(both, photos / "c.jpg", "2004:06:15 10:00:00")
    return root / "reference", photos


def ask(album, models_dir: Path, tmp_path: Path, *options: str) -> list[tuple[str, str]]:
    """Matches (in report order) of one run with ``options``; all runs share an index."""
    refs, photos = album
    out = tmp_path / "r.json"
    index = photos.parent / "shared.sqlite"
    code = main([str(photos), "--reference", str(refs), "--json", str(out), "--index",
                 str(index), "--models", str(models_dir), "--no-progress", "--jobs", "1",
                 *options])
    assert code == 0
    return [(m["path"], m["person"]) for m in json.loads(out.read_text())["matches"]]


def test_any_lists_everyone_sorted_by_capture_time(album, models_dir, tmp_path):
    assert ask(album, models_dir, tmp_path) == [
        ("a.jpg", "madonna"), ("c.jpg", "ben_afflek"), ("c.jpg", "madonna"),
        ("b.jpg", "ben_afflek"),
    ]
    assert ask(album, models_dir, tmp_path, "--any", "ben_afflek") == [
        ("c.jpg", "ben_afflek"), ("b.jpg", "ben_afflek")]


def test_all_and_without(album, models_dir, tmp_path):
    assert ask(album, models_dir, tmp_path, "--all", "madonna", "ben_afflek") == [
        ("c.jpg", "ben_afflek"), ("c.jpg", "madonna")]
    assert ask(album, models_dir, tmp_path, "--without", "ben_afflek") == [("a.jpg", "madonna")]
    assert ask(album, models_dir, tmp_path, "--person", "madonna", "--without",
               "ben_afflek") == [("a.jpg", "madonna")]


def test_since_until_and_face_counts(album, models_dir, tmp_path):
    assert {p for p, _ in ask(album, models_dir, tmp_path, "--since", "2004")} == {"b.jpg",
                                                                                  "c.jpg"}
    assert {p for p, _ in ask(album, models_dir, tmp_path, "--until", "2004-06")} == {
        "a.jpg", "c.jpg"}
    assert {p for p, _ in ask(album, models_dir, tmp_path, "--since", "2004-06-15",
                              "--until", "2004-06-15")} == {"c.jpg"}
    assert {p for p, _ in ask(album, models_dir, tmp_path, "--min-faces", "2")} == {"c.jpg"}
    assert {p for p, _ in ask(album, models_dir, tmp_path, "--max-faces", "1")} == {
        "a.jpg", "b.jpg"}


def test_bad_questions_exit_2(album, models_dir, capsys):
    refs, photos = album
    base = [str(photos), "--reference", str(refs), "--models", str(models_dir), "--no-index"]
    assert main([*base, "--all", "Grandma"]) == EXIT_USAGE
    assert "Grandma" in capsys.readouterr().err
    assert main([*base, "--since", "2004-13"]) == EXIT_USAGE
    assert main([*base, "--since", "yesterday"]) == EXIT_USAGE


def test_date_bounds_are_inclusive_prefixes():
    assert parse_date("2004", "--since") == "2004"
    with pytest.raises(QueryError):
        parse_date("04-06-2004", "--since")
    with pytest.raises(QueryError):
        Query(since="2005", until="2004")
