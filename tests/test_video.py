"""Videos: frames sampled, faces matched only when seen in enough frames, time spans right."""

from __future__ import annotations

import csv
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefinder.cli import main
from facefinder.sightings import confirmed

DEVSET = Path("/work/shared/devset")
FPS = 5


def run(args: list, models_dir: Path) -> int:
    return main([*map(str, args), "--models", str(models_dir), "--no-progress"])


def make_video(path: Path, face: Image.Image | None, shown: set[int], seconds: int,
               rotation: int = 0) -> None:
    """An MPEG-4 clip at FPS frames/s: ``face`` on the seconds in ``shown``, grey elsewhere.

    ``rotation``: stored turned, with a display matrix saying how to show it upright, as
    a phone stores a portrait video (-90) or one filmed upside down (180)."""
    import av

    canvas = Image.new("RGB", (640, 480), (128, 128, 128))
    with_face = canvas.copy()
    if face is not None:
        scaled = face.resize((face.width * 360 // face.height, 360))
        with_face.paste(scaled, ((640 - scaled.width) // 2, 60))
    # what turning it by ``rotation`` (counter-clockwise) shows upright: turned back
    turn = {0: None, -90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180}[rotation]
    if turn is not None:
        canvas, with_face = canvas.transpose(turn), with_face.transpose(turn)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = *canvas.size, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        stream.bit_rate = 4_000_000
        stream.time_base = Fraction(1, FPS)
        for n in range(seconds * FPS):
            picture = with_face if n // FPS in shown else canvas
            frame = av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24")
            frame.pts = n
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def clips(celebrities: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    refs = root / "reference" / "madonna"
    refs.mkdir(parents=True)
    photos = sorted((celebrities / "train" / "madonna").glob("*.jpg"))[:4]
    for photo in photos:
        shutil.copy(photo, refs / photo.name)
    face = Image.open(photos[0]).convert("RGB")
    videos = root / "videos"
    (videos / "holiday").mkdir(parents=True)
    make_video(videos / "holiday" / "clip.mp4", face, {3, 4, 5}, 8)  # seen 3 s - 5 s
    make_video(videos / "stray.mp4", face, {2}, 6)  # one frame only: not trusted
    make_video(videos / "empty.mov", None, set(), 3)
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    return root


def test_video_is_reported_with_the_right_time_span(clips, models_dir, tmp_path):
    out, table, dest = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "found"
    code = run([clips / "videos", "--reference", clips / "reference", "--json", out,
                "--csv", table, "--copy", dest, "--jobs", "1"], models_dir)
    assert code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    matches = data["matches"]
    assert [(m["path"], m["person"]) for m in matches] == [("holiday/clip.mp4", "madonna")]
    assert (matches[0]["first_s"], matches[0]["last_s"], matches[0]["frames"]) == (3.0, 5.0, 3)
    assert [u["path"] for u in data["unreadable"]] == ["broken.mp4"]
    assert data["summary"]["videos_read"] == 3
    with table.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:6] == ["path", "person", "distance", "box", "model", "threshold"]
    assert (rows[0]["first_s"], rows[0]["last_s"], rows[0]["frames"]) == ("3.0", "5.0", "3")
    copied = dest / "madonna" / "holiday" / "clip.mp4"
    assert copied.read_bytes() == (clips / "videos" / "holiday" / "clip.mp4").read_bytes()


def test_video_frame_rate_option_changes_the_sampling(clips, models_dir, tmp_path):
    out = tmp_path / "r.json"
    code = run([clips / "videos" / "holiday", "--reference", clips / "reference",
                "--json", out, "--video-fps", "2", "--jobs", "1"], models_dir)
    assert code == 0
    (match,) = json.loads(out.read_text(encoding="utf-8"))["matches"]
    # Frames come every 0.2 s, so the sample due at 5.5 s is the frame at 5.6 s.
    assert (match["first_s"], match["last_s"], match["frames"]) == (3.0, 5.6, 6)


def test_a_phone_video_stored_turned_is_searched_upright(clips, celebrities, models_dir,
                                                         tmp_path):
    """A phone stores a portrait video's frames sideways (an upside-down one turned
    over) and says how to show them: the face is found as it is watched, with the
    same box as in the upright clip."""
    face = Image.open(sorted((celebrities / "train" / "madonna").glob("*.jpg"))[0])
    folder = tmp_path / "phone"
    folder.mkdir()
    for name, rotation in (("upright.mp4", 0), ("portrait.mp4", -90), ("over.mp4", 180)):
        make_video(folder / name, face.convert("RGB"), {1, 2, 3}, 5, rotation)
    out = tmp_path / "r.json"
    assert run([folder, "--reference", clips / "reference", "--json", out, "--jobs", "1"],
               models_dir) == 0
    found = {m["path"]: m for m in json.loads(out.read_text(encoding="utf-8"))["matches"]}
    assert set(found) == {"upright.mp4", "portrait.mp4", "over.mp4"}
    upright = np.array(found["upright.mp4"]["box"])
    for name in ("portrait.mp4", "over.mp4"):
        assert np.abs(np.array(found[name]["box"]) - upright).max() <= 12, found[name]
        assert (found[name]["first_s"], found[name]["last_s"]) == (1.0, 3.0)


def test_a_damaged_spot_early_in_a_video_loses_only_that_spot(clips, celebrities,
                                                               models_dir, tmp_path):
    """A bad sector or a copy gone wrong near the start of a clip: the frames after the
    damage are still searched (one damaged packet ended the video before)."""
    face = Image.open(sorted((celebrities / "train" / "madonna").glob("*.jpg"))[0])
    folder = tmp_path / "damaged"
    folder.mkdir()
    clip = folder / "clip.mp4"
    make_video(clip, face.convert("RGB"), {3, 4, 5}, 8)
    data = bytearray(clip.read_bytes())
    at = len(data) // 20  # in the picture data of the first second
    data[at:at + 4000] = bytes(range(256)) * 15 + bytes(160)
    clip.write_bytes(bytes(data))
    out = tmp_path / "r.json"
    assert run([folder, "--reference", clips / "reference", "--json", out, "--jobs", "1"],
               models_dir) == 0
    (match,) = json.loads(out.read_text(encoding="utf-8"))["matches"]
    assert (match["path"], match["first_s"], match["last_s"]) == ("clip.mp4", 3.0, 5.0)


def test_one_sighting_is_not_enough():
    assert not confirmed([4.0], sampled=10, fps=1)
    assert not confirmed([1.0, 9.0], sampled=10, fps=1)  # two strays far apart
    assert confirmed([3.0, 4.0], sampled=10, fps=1)
    assert confirmed([0.0], sampled=1, fps=1)  # a clip shorter than one sampling step


@pytest.mark.skipif(not (DEVSET / "collection" / "Videos").is_dir(), reason="no devset here")
def test_devset_crowd_video_gives_no_false_match(models_dir, tmp_path):
    out = tmp_path / "r.json"
    code = run([DEVSET / "collection" / "Videos", "--reference", DEVSET / "reference",
                "--json", out, "--jobs", "1"], models_dir)
    assert code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["matches"] == [] and data["unreadable"] == []
    assert data["summary"]["videos_read"] == 1


def test_a_video_too_big_to_decode_is_refused_from_its_size(tmp_path, monkeypatch):
    """A 62 KB file of 16000 x 16000 frames took 2 GB to decode: a video's frame size is
    counted against the decode budget before any frame is decoded (here with a budget
    just under this small clip's, so that the file stays small)."""
    from facefinder import video
    from facefinder.video import VideoError, sample_frames

    clip = tmp_path / "clip.mp4"
    make_video(clip, None, set(), 1)
    monkeypatch.setattr(video, "DECODE_BUDGET_BYTES", 640 * 480 * video.VIDEO_BYTES_PER_PIXEL - 1)
    with pytest.raises(VideoError, match="too large"):
        sample_frames(clip, 1.0, 800)
    monkeypatch.setattr(video, "DECODE_BUDGET_BYTES", 640 * 480 * video.VIDEO_BYTES_PER_PIXEL)
    info, frames = sample_frames(clip, 1.0, 800)
    assert info.size == (640, 480) and len(list(frames)) == 1
