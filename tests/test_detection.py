"""Detection that does not miss what a person sees, and phone-sized photos read cheaply.

Real models, real faces: the 5-celebrity set and t1.jpg (6 faces) from PyPI packages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefinder.analyse import AnalysisJob, ModelCache, analyse_files
from facefinder.decode import load_image
from facefinder.records import FileResult
from facefinder.vision.registry import model_spec

try:
    from testdata import celebrity_dataset, group_photo
except ImportError:  # tests/ imported as a package
    from tests.testdata import celebrity_dataset, group_photo


@pytest.fixture(scope="module")
def analyse(models_dir: Path):
    job = AnalysisJob(model_spec("Facenet"), models_dir)
    models = ModelCache()

    def run(paths: list[Path]) -> list[FileResult]:
        return analyse_files([(p, p.name, "image") for p in paths], job, models)

    return run


def test_every_celebrity_face_cut_to_its_box_is_found(analyse, tmp_path: Path) -> None:
    """A reference cut tight to the face (no margin) is still a face: all 118 of the set.

    Without the bordered second look 5 of these were not found.
    """
    photos = sorted(celebrity_dataset().rglob("*.jpg"))
    assert len(photos) == 118
    crops = []
    for photo, result in zip(photos, analyse(photos), strict=True):
        assert result.faces, f"no face in the full photo {photo.name}"
        x, y, w, h = max(result.faces, key=lambda f: f.score).box
        crop = tmp_path / f"{photo.parent.name}-{photo.stem}.png"
        with Image.open(photo) as image:
            image.convert("RGB").crop((x, y, x + w, y + h)).save(crop)
        crops.append(crop)
    missed = [c.name for c, r in zip(crops, analyse(crops), strict=True) if not r.faces]
    assert missed == []


def test_tight_crop_face_is_placed_on_the_crop(analyse, tmp_path: Path) -> None:
    """The bordered look maps the face back onto the photo: box inside it, covering most."""
    photo = group_photo()
    (face, *_) = sorted(analyse([photo])[0].faces, key=lambda f: -f.score)
    x, y, w, h = face.box
    crop = tmp_path / "tight.png"
    with Image.open(photo) as image:
        image.convert("RGB").crop((x, y, x + w, y + h)).save(crop)
    (result,) = analyse([crop])
    assert len(result.faces) == 1
    bx, by, bw, bh = result.faces[0].box
    assert bx >= 0 and by >= 0 and bx + bw <= w and by + bh <= h
    assert bw * bh >= 0.5 * w * h
    assert result.faces[0].skipped is None and result.faces[0].embedding is not None


def test_no_face_photo_stays_empty_after_the_second_look(analyse, tmp_path: Path) -> None:
    """The bordered retry must not invent faces in a photo without any (sky, wall)."""
    rng = np.random.default_rng(3)
    sky = np.linspace(90, 200, 480, dtype=np.float32)[:, None, None] * np.ones((480, 640, 3))
    noisy = np.clip(sky + rng.normal(0, 4, sky.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "sky.jpg"
    Image.fromarray(noisy).save(path, quality=90)
    (result,) = analyse([path])
    assert result.error is None and result.faces == []


def test_phone_sized_jpeg_finds_the_same_faces_as_the_small_photo(
    analyse, tmp_path: Path
) -> None:
    """A 12 MP JPEG (t1.jpg enlarged to 4032 px) is read at JPEG DCT scale, and its faces
    come back in the 12 MP photo's coordinates, where the small photo's faces are."""
    small = group_photo()
    with Image.open(small) as image:
        factor = 4032 / image.width
        big = image.convert("RGB").resize((4032, round(image.height * factor)),
                                          Image.Resampling.BICUBIC)
    path = tmp_path / "IMG_0001.jpg"
    big.save(path, quality=90)
    decoded = load_image(path, 1600, coarse=True)
    assert decoded.rgb.shape[1] == 2016  # DCT scaling 1/2, no resampling to 1600
    assert decoded.scale == pytest.approx(0.5)
    one, two = analyse([small, path])
    assert len(one.faces) == len(two.faces) == 6
    assert two.size == big.size
    for face in one.faces:
        centre = np.array(face.box[:2]) + np.array(face.box[2:]) / 2
        nearest = min(
            two.faces,
            key=lambda f: np.linalg.norm(np.array(f.box[:2]) + np.array(f.box[2:]) / 2
                                         - centre * factor))
        assert nearest.box[2] == pytest.approx(face.box[2] * factor, rel=0.15)
        assert np.linalg.norm(np.array(nearest.box[:2]) + np.array(nearest.box[2:]) / 2
                              - centre * factor) < 0.1 * face.box[2] * factor
        # the same person: the two crops embed close together
        assert float(nearest.embedding @ face.embedding) > 0.8


def test_coarse_decode_stops_at_a_cheap_size(tmp_path: Path) -> None:
    """``coarse``: the long side ends in [max_side, 2 * max_side): DCT scaling for JPEG,
    a whole-number box reduction for other formats; small photos stay as they are."""
    with Image.open(group_photo()) as image:
        big = image.convert("RGB").resize((4000, 2770))
    jpeg, png = tmp_path / "big.jpg", tmp_path / "big.png"
    big.save(jpeg, quality=90)
    big.save(png, compress_level=1)
    assert load_image(jpeg, 800, coarse=True).rgb.shape[:2] == (693, 1000)  # 1/4
    assert load_image(jpeg, 1600, coarse=True).rgb.shape[:2] == (1385, 2000)
    assert load_image(png, 800, coarse=True).rgb.shape[:2] == (554, 800)  # reduce(5)
    assert load_image(png, 1600, coarse=True).rgb.shape[:2] == (1385, 2000)  # reduce(2)
    assert load_image(group_photo(), 1600, coarse=True).scale == 1.0


def test_an_older_stick_gets_the_int8_detector_without_the_network(
        models_dir: Path, tmp_path: Path) -> None:
    """A stick prepared by an earlier version has the float detector and the demo album:
    the INT8 detector is built from them, offline, instead of fetching anything."""
    import json
    import shutil

    from facefinder.models import catalog
    from facefinder.models.fetch import ensure_models

    old = tmp_path / "models"
    shutil.copytree(models_dir, old, ignore=shutil.ignore_patterns(
        catalog.CENTERFACE_INT8_FILE, "objects", "centernet*", ".download-*"))
    manifest = json.loads((old / catalog.MANIFEST).read_text(encoding="utf-8"))
    manifest["files"].pop(catalog.CENTERFACE_INT8_FILE)
    (old / catalog.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    said: list[str] = []
    files = ensure_models(old, ["centerface", "demo", "facenet", "centerface-int8"],
                          allow_fetch=False, say=said.append)
    built = files[catalog.CENTERFACE_INT8_FILE]
    assert built.is_file() and catalog.CENTERFACE_INT8_FILE in catalog.read_manifest(old)
    assert not any("Fetching" in line for line in said)
    # the same bytes as a build from the archive: an index keeps its analysis key
    assert catalog.read_manifest(old)[catalog.CENTERFACE_INT8_FILE] == catalog.read_manifest(
        models_dir)[catalog.CENTERFACE_INT8_FILE]


def test_small_faces_in_a_12_mp_photo_are_found(analyse, models_dir: Path,
                                                 tmp_path: Path) -> None:
    """Faces 50 px wide in a 4000x3000 photo (the back row of a group photo) are 10 px on
    the detector's 800 px copy, too small for it; the closer look where its heatmap hints
    at a face finds them, in the photo's coordinates, trusted and embedded."""
    from facefinder.analyse import _resized

    sources = [sorted(folder.glob("*.jpg"))[0]
               for folder in sorted((celebrity_dataset() / "train").iterdir())]
    rng = np.random.default_rng(5)
    ramp = np.linspace(70, 190, 3000, dtype=np.float32)[:, None, None]
    wall = np.clip(ramp + rng.normal(0, 5, (3000, 4000, 3)), 0, 255).astype(np.uint8)
    canvas = Image.fromarray(wall)
    pasted = []
    for i, (source, result) in enumerate(zip(sources, analyse(sources), strict=True)):
        x1, y1, w, h = max(result.faces, key=lambda f: f.score).box
        factor = 50 / w
        with Image.open(source) as image:
            head = image.convert("RGB").crop((x1 - w, y1 - h, x1 + 2 * w, y1 + 2 * h))
        head = head.resize((round(head.width * factor), round(head.height * factor)),
                           Image.Resampling.LANCZOS)
        at = (400 + 700 * i, 900 + 400 * (i % 2))
        canvas.paste(head, at)
        pasted.append((at[0] + 50, at[1] + round(h * factor), 50, round(h * factor)))
    path = tmp_path / "IMG_0002.jpg"
    canvas.save(path, quality=90)

    def over(face, box) -> bool:
        x, y, w, h = box
        return (x <= face.box[0] + face.box[2] / 2 <= x + w
                and y <= face.box[1] + face.box[3] / 2 <= y + h)

    # The detector alone, on the copy the first look gets, does not see them.
    pipe = ModelCache().get(AnalysisJob(model_spec("Facenet"), models_dir))
    shown = _resized(Image.open(path).convert("RGB"), 800)
    scale = 4000 / shown.width
    first = [FaceBox(d.box * scale) for d in pipe.detector.detect(np.asarray(shown))]
    assert not any(over(f, box) for f in first for box in pasted)
    (result,) = analyse([path])
    for box in pasted:
        hits = [f for f in result.faces if over(f, box)]
        assert len(hits) == 1, f"face at {box}: {len(hits)} detections"
        assert hits[0].skipped is None and hits[0].embedding is not None
        assert hits[0].box[2] == pytest.approx(50, rel=0.25)
    assert len(result.faces) == len(pasted)  # nothing invented on the wall


class FaceBox:
    """A detector box (x1, y1, x2, y2) seen as a record's (x, y, w, h)."""

    def __init__(self, corners: np.ndarray) -> None:
        x1, y1, x2, y2 = (float(v) for v in corners)
        self.box = (x1, y1, x2 - x1, y2 - y1)


def test_the_closer_look_runs_on_the_fast_detector(models_dir: Path) -> None:
    """A part cut from a big photo goes to the INT8 copy even when it is smaller than
    what ``fast_from`` sends there (it is part of a big photo, not a small photo), while
    ``detect`` keeps the float file for a picture that size."""
    pipe = ModelCache().get(AnalysisJob(model_spec("Facenet"), models_dir))
    detector = pipe.detector
    with Image.open(group_photo()) as image:
        part = np.asarray(image.convert("RGB").resize((300, 200)))
    assert part.shape[0] * part.shape[1] < model_spec("Facenet").detector.fast_from

    def boxes(found) -> list[list[float]]:
        return [d.box.tolist() for d in found]

    assert boxes(detector.detect_part(part)) == boxes(detector.fast.detect(part))
    assert boxes(detector.detect(part)) == boxes(detector.exact.detect(part))
    assert boxes(detector.fast.detect(part)) != boxes(detector.exact.detect(part))


def test_closer_regions_surround_each_hinted_cell_and_join_those_that_touch() -> None:
    """Each hinted heatmap cell gets ``CLOSER_REACH`` px of the detector's copy around
    its centre, in the decoded photo's pixels; cells whose surroundings touch share one
    region, cells far apart get their own (a hint alone costs a small region, not a
    64 px square of the copy)."""
    from facefinder.analyse import CLOSER_REACH, _closer_regions
    from facefinder.vision.centerface import STRIDE

    shown = Image.new("RGB", (800, 600))
    hot = np.zeros((150, 200), bool)
    hot[10, 10] = True  # alone
    hot[100, 50] = hot[104, 57] = True  # 4 and 7 cells apart: surroundings touch
    hot[147, 197] = True  # near the corner: the region is cut at the photo's edge
    regions = sorted(_closer_regions(hot, shown, (2000, 1500)))
    scale = 2000 / 800

    def around(row: int, col: int) -> tuple[int, int, int, int]:
        cx, cy = col * STRIDE + STRIDE / 2, row * STRIDE + STRIDE / 2
        return (round((cx - CLOSER_REACH) * scale), round((cy - CLOSER_REACH) * scale),
                round((cx + CLOSER_REACH) * scale), round((cy + CLOSER_REACH) * scale))

    x1, y1, _, _ = around(100, 50)
    _, _, x2, y2 = around(104, 57)
    last = around(147, 197)
    assert regions == sorted([around(10, 10), (x1, y1, x2, y2),
                              (last[0], last[1], 2000, 1500)])
    assert _closer_regions(np.zeros((150, 200), bool), shown, (2000, 1500)) == []


def test_closer_regions_follow_a_diagonal_chain_of_cells() -> None:
    """Cells touching only corner to corner after their surroundings are added are one
    group: a region per connected group, never two overlapping looks at one face."""
    from facefinder.analyse import _clusters

    mask = np.zeros((12, 12), bool)
    mask[2, 2] = mask[3, 3] = mask[4, 4] = True  # a diagonal: 8-connected
    mask[2, 8] = mask[3, 8] = True  # a column
    mask[10, 0] = True
    assert sorted(_clusters(mask)) == [(2, 2, 5, 5), (2, 8, 4, 9), (10, 0, 11, 1)]
    mask[:] = False
    mask[0, 0:3] = mask[1, 2] = mask[2, 0:3] = True  # a U turned on its side: one group
    assert _clusters(mask) == [(0, 0, 3, 3)]
