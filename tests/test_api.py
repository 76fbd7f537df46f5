"""The Python API: ``Finder`` used as a library, as the README shows it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT
from testdata import group_photo

from facefinder import AnalysisSettings, FileDone, Finder, FinderError, Notice, Started
from facefinder.cli import main


@pytest.fixture(scope="module")
def finder(celeb_album: Path, models_dir: Path) -> Finder:
    return Finder(celeb_album / "reference", models=models_dir, jobs=2)


def test_api_gives_the_cli_matches_exactly(finder: Finder, celeb_album: Path,
                                           models_dir: Path, tmp_path: Path) -> None:
    """The CLI is a layer over the API: both answer the same."""
    events: list = []
    result = finder.find(celeb_album / "collection", on_event=events.append)
    out = tmp_path / "cli.json"
    assert main([str(celeb_album / "collection"), "--reference", str(celeb_album / "reference"),
                 "--models", str(models_dir), "--no-progress", "--no-index", "--jobs", "2",
                 "--json", str(out)]) == 0
    cli = json.loads(out.read_text(encoding="utf-8"))["matches"]
    assert {(m["path"], m["person"], m["distance"]) for m in cli} == {
        (m.rel, m.person, round(float(m.distance), 4)) for m in result.matches}
    assert len(result.matches) >= 20
    started = [e for e in events if isinstance(e, Started)]
    done = [e for e in events if isinstance(e, FileDone)]
    assert len(started) == 1 and started[0].people == result.people
    assert len(done) == result.summary.files_scanned == len(result.files) == 25
    assert all(f.faces and f.faces[0].embedding is not None for f in result.files)
    assert result.summary.matches_per_person == dict(Counter(m.person for m in result.matches))
    assert set(result.summary.matches_per_person) == set(result.people)


def test_a_run_is_cancelled_without_keyboard_interrupt(finder: Finder, celeb_album: Path) -> None:
    """A web page or another thread stops a run with an Event; what was done is returned."""
    cancel = threading.Event()

    def on_event(event: object) -> None:
        if isinstance(event, FileDone) and event.done >= 3:
            cancel.set()

    result = finder.find(celeb_album / "collection", on_event=on_event, cancel=cancel)
    assert result.interrupted and result.summary.interrupted
    assert 3 <= result.summary.files_scanned < 25


def test_faces_of_one_photo(finder: Finder) -> None:
    """faces(path): every face of a group photo with its box and embedding."""
    found = finder.faces(group_photo())
    assert found.error is None and found.size == (1280, 886)
    assert len(found.faces) == 6
    assert all(f.embedding is not None and f.embedding.shape == (128,) for f in found.faces)


def test_two_finders_in_one_process_do_not_trip_over_each_other(
        celeb_album: Path, models_dir: Path) -> None:
    """Settings and loaded models belong to a Finder: two used at once, from two threads,
    each get their own answer."""
    photos = celeb_album / "collection"
    with Finder(celeb_album / "reference", models=models_dir, jobs=1) as small, \
            Finder(celeb_album / "reference", models=models_dir, jobs=1,
                   settings=AnalysisSettings(min_face=2000)) as strict:
        alone = small.find(photos)
        outcomes: dict[str, object] = {}

        def run(name: str, finder: Finder) -> None:
            try:
                outcomes[name] = finder.find(photos)
            except FinderError as exc:
                outcomes[name] = exc

        threads = [threading.Thread(target=run, args=("small", small)),
                   threading.Thread(target=run, args=("strict", strict))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    assert isinstance(outcomes["strict"], FinderError)  # every reference face "too small"
    assert "no usable reference face" in str(outcomes["strict"])
    together = outcomes["small"]
    assert [(m.rel, m.person) for m in together.matches] == [(m.rel, m.person)
                                                             for m in alone.matches]


def test_bad_input_is_one_typed_error(finder: Finder, celeb_album: Path) -> None:
    """Errors the user can fix come as FinderError with one line, never a traceback."""
    photo = next((celeb_album / "collection").rglob("*.jpg"))
    with pytest.raises(FinderError, match="is a file, not a folder"):
        finder.find(photo)
    with pytest.raises(FinderError, match="not found"):
        finder.find(celeb_album / "nowhere")
    with pytest.raises(FinderError, match=r"outside 0\.05-0\.8.*default 0\.32"):
        finder.find(celeb_album / "collection", threshold=32)
    with pytest.raises(FinderError, match="no such folder"):
        finder.find(celeb_album / "collection", people=["Nobody"])


def test_notices_come_as_events(celeb_album: Path, models_dir: Path, tmp_path: Path) -> None:
    """A note on a reference photo reaches the caller as a Notice event."""
    refs = tmp_path / "reference"
    (refs / "Ben").mkdir(parents=True)
    for photo in sorted((celeb_album / "reference" / "ben_afflek").glob("*.jpg"))[:2]:
        (refs / "Ben" / photo.name).write_bytes(photo.read_bytes())
    (refs / "stray.jpg").write_bytes(photo.read_bytes())
    events: list = []
    Finder(refs, models=models_dir, jobs=1).find(celeb_album / "collection",
                                                 on_event=events.append)
    notes = [e.text for e in events if isinstance(e, Notice)]
    assert any("stray.jpg" in n and "not in a person's folder" in n for n in notes)


def test_readme_python_example_runs_and_finds_the_demo_people(models_dir: Path) -> None:
    """The README's library example, run as written, finds the demo album's people."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "README has no python example under 'Use it from Python'"
    if models_dir != ROOT / "models":
        pytest.skip("the example uses the models folder beside finder.py")
    done = subprocess.run([sys.executable, "-c", code.group(1)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for person in ("Ben Affleck", "Elton John", "Jerry Seinfeld", "Madonna", "Mindy Kaling"):
        assert person in done.stdout


def test_cancelled_before_the_search_says_nothing_was_searched(finder: Finder,
                                                              celeb_album: Path) -> None:
    """Stopped while the references were read: the result says no photo was looked at."""
    cancel = threading.Event()
    cancel.set()
    result = finder.find(celeb_album / "collection", cancel=cancel)
    assert result.interrupted and not result.searched and not result.complete
    assert result.summary.files_scanned == 0 and result.matches == []
